"""A notebook session played at random: models defined, edited, related and broken in any cell,
revisions written, upgraded and downgraded, earlier cells run again.

Invariants: no unexpected error; the models hold exactly the tables (and columns) of the latest
definitions that succeeded; after an upgrade (and a revision for what plain cells changed), `check`
finds nothing. FRAMEFOX_STATEFUL_EXAMPLES sets the number of examples (default 8), FRAMEFOX_STATEFUL_STEPS the
steps per example (default 12) and FRAMEFOX_STATEFUL_BACKEND the database (sqlite, postgresql or
mysql; default sqlite).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import discard_shell, fresh_database, table_names
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

MODELS = ("Alpha", "Beta", "Gamma", "Delta")  # a model relates only to one named before it
COLUMNS = ("power", "age", "rank")
EXAMPLES = int(os.environ.get("FRAMEFOX_STATEFUL_EXAMPLES", "8"))
STEPS = int(os.environ.get("FRAMEFOX_STATEFUL_STEPS", "12"))
BACKEND = os.environ.get("FRAMEFOX_STATEFUL_BACKEND", "sqlite")
PRELUDE = "from typing import Optional\nfrom sqlmodel import Field, Relationship, SQLModel\n"


@dataclass(frozen=True)
class Model:
    """One model as a cell defines it: its columns and the model it points at, if any."""

    name: str
    columns: frozenset[str] = frozenset()
    points_at: str | None = None

    @property
    def table(self) -> str:
        return self.name.lower()

    def column_names(self) -> set[str]:
        extra = {f"{self.points_at.lower()}_id"} if self.points_at else set()
        return {"id", *self.columns, *extra}

    def source(self, raises: bool = False) -> str:
        lines = [f"class {self.name}(SQLModel, table=True):",
                 "    id: int | None = Field(default=None, primary_key=True)"]
        lines += [f"    {column}: int | None = None" for column in sorted(self.columns)]
        if self.points_at:
            other = self.points_at.lower()
            lines.append(f"    {other}_id: int | None = Field(default=None, foreign_key='{other}.id')")
            lines.append(f"    {other}: Optional['{self.points_at}'] = Relationship()")
        if raises:
            lines.append("raise RuntimeError('a mistake in this cell')")
        return "\n".join(lines) + "\n"


class NotebookSession(RuleBasedStateMachine):
    """A shell with the extension loaded, a project folder and a fresh database per example."""

    sessions_run = 0

    def __init__(self) -> None:
        super().__init__()
        NotebookSession.sessions_run += 1
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        self.stack = ExitStack()
        folder = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))
        self.url = self.stack.enter_context(fresh_database(BACKEND, folder))
        self.cwd, self.main = os.getcwd(), sys.modules["__main__"]
        os.chdir(folder)
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        InteractiveShell.clear_instance()
        self.shell = InteractiveShell.instance(config=config)
        self.run("%load_ext framefox_magic", True)
        self.run(f"%migrate init --url {self.url}", True)
        self.run(PRELUDE, True)
        self.models: dict[str, Model] = {}  # the latest definitions that succeeded
        self.cells: dict[str, tuple[str, bool]] = {}  # cell -> (its text now, is it %%revision)

    def teardown(self) -> None:
        from framefox_magic.metadata import forget_models

        discard_shell(self.shell)
        forget_models(lambda cls: True)
        sys.modules["__main__"] = self.main
        os.chdir(self.cwd)
        self.stack.close()

    # ---------------------------------------------------------------- running cells

    def run(self, code: str, should_succeed: bool) -> Any:
        result = self.shell.run_cell(code)
        error = result.error_before_exec or result.error_in_exec
        assert result.success == should_succeed, f"{code!r}: {error!r}"
        return result.result if result.success else error

    def status(self) -> Any:
        return self.run("%migrate status", True)

    def behind(self, message: str) -> bool:
        """Whether a %%revision cell would find the database behind its revisions."""
        magics = self.shell.magics_manager.registry["MigrateMagics"]
        earlier = magics.manager.cell_revision_state(magics._cell_revisions.get(f"message:{message}"))
        return bool(set(self.status().pending) - {earlier.replaceable})

    def model_cell(self, model: Model, as_revision: bool, raises: bool = False) -> None:
        """Type a definition of `model` into its cell and run it."""
        text = model.source(raises)
        if as_revision:
            # the simulated user answers a rename question with drop + add: models here are column sets
            text = f'%%revision -m "cell {model.name}" --no-rename\n{text}'
        self.cells[model.name] = (text, as_revision)
        self.run_cell_of(model.name, model, raises)

    def run_cell_of(self, name: str, model: Model, raises: bool) -> None:
        text, as_revision = self.cells[name]
        succeeds = not raises and not (as_revision and self.behind(f"cell {name}"))
        self.run(text, succeeds)
        if succeeds:
            self.models[name] = model

    # ---------------------------------------------------------------- the rules

    @rule(name=st.sampled_from(MODELS), columns=st.frozensets(st.sampled_from(COLUMNS)),
          as_revision=st.booleans())
    def define_or_edit_a_model(self, name: str, columns: frozenset[str], as_revision: bool) -> None:
        earlier = self.models.get(name)
        points_at = earlier.points_at if earlier else None  # a relationship, once there, stays
        self.model_cell(Model(name, columns, points_at), as_revision)

    @rule(data=st.data(), as_revision=st.booleans())
    def add_a_relationship(self, data: st.DataObject, as_revision: bool) -> None:
        pairs = [(a, b) for a in self.models for b in self.models
                 if MODELS.index(b) < MODELS.index(a) and self.models[a].points_at is None]
        if not pairs:
            return
        source, target = data.draw(st.sampled_from(sorted(pairs)))
        self.model_cell(replace(self.models[source], points_at=target), as_revision)

    @rule(name=st.sampled_from(MODELS), columns=st.frozensets(st.sampled_from(COLUMNS)),
          as_revision=st.booleans())
    def a_cell_that_raises(self, name: str, columns: frozenset[str], as_revision: bool) -> None:
        earlier = self.models.get(name)
        self.model_cell(Model(name, columns, earlier.points_at if earlier else None), as_revision,
                        raises=True)

    @rule(name=st.sampled_from(MODELS))
    def rerun_an_earlier_cell(self, name: str) -> None:
        if name not in self.cells:
            return
        text, _as_revision = self.cells[name]
        raises = "raise RuntimeError" in text
        model = _model_from(name, text)
        self.run_cell_of(name, model, raises)

    @rule()
    def write_a_revision(self) -> None:
        pending = bool(self.status().pending)
        self.run('%migrate revision -m "by hand" --autogenerate --no-rename', not pending)

    @rule()
    def upgrade_then_check(self) -> None:
        self.run("%migrate upgrade", True)
        if self.models:
            self.run('%migrate revision -m "what plain cells changed" --autogenerate --no-rename', True)
            self.run("%migrate upgrade", True)
            assert self.run("%migrate check", True).rows == []
            assert table_names(self.url) - {"alembic_version"} == {m.table for m in self.models.values()}

    @rule()
    def downgrade_one(self) -> None:
        current = self.status().current
        outcome = self.run("%migrate downgrade -1 --yes", True)
        if not current:  # at base, as `downgrade base` there: nothing to do
            assert outcome.summary == "Nothing to downgrade: the database is at base (no revision)."

    # ---------------------------------------------------------------- invariants

    @invariant()
    def the_models_are_the_latest_successful_definitions(self) -> None:
        from sqlmodel import SQLModel

        tables = SQLModel.metadata.tables
        assert set(tables) == {m.table for m in self.models.values()}
        for model in self.models.values():
            assert set(tables[model.table].c.keys()) == model.column_names()
            assert self.shell.user_ns[model.name].__table__ is tables[model.table]


def _model_from(name: str, text: str) -> Model:
    """The model a cell's text defines (as `Model.source` wrote it)."""
    columns = frozenset(c for c in COLUMNS if f"    {c}: int" in text)
    points_at = next((m for m in MODELS if f"foreign_key='{m.lower()}.id'" in text), None)
    return Model(name, columns, points_at)


NotebookSession.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_random_notebook_session() -> None:
    NotebookSession.TestCase().runTest()
    print(f"{NotebookSession.sessions_run} sessions on {BACKEND}, up to {STEPS} steps each")
