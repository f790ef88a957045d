"""Writing revisions: what autogenerate proposes, made ready to run up and down on every dialect;
and squash, one revision for a linear run, proven to build the same schema (up and down) in
throwaway databases before any file moves."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import schema
from .dialects import shadow_database
from .diff import record_script
from .errors import MigrationError
from .render import counted

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from .manager import AlembicManager
    from .settings import Target

DATA_OPERATIONS = ("ExecuteSQLOp", "BulkInsertOp")


class SquashRefused(MigrationError):
    """The run cannot be squashed (not linear, holds data migrations, the database is inside it,
    or the new revision does not build the same schema)."""


@dataclass
class Run:
    """The revisions to replace, oldest first, what they sit on, and what builds on the last one."""

    revisions: list[Script]
    parent: str | None
    children: list[Script] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The revision ids, oldest first."""
        return [r.revision for r in self.revisions]

    @property
    def last(self) -> str:
        """The newest revision of the run."""
        return self.revisions[-1].revision


def linear_run(script: ScriptDirectory, first: Script, last: Script) -> Run:
    """The revisions from `first` to `last` (both included), refused unless they form a straight line."""
    found, step = [], last
    while True:
        if step.dependencies or len(step._all_down_revisions) > 1:
            raise SquashRefused(f"{step.revision} merges or depends on other revisions: only a straight "
                                "run can be squashed.")
        found.append(step)
        if step.revision == first.revision:
            break
        if not step.down_revision:
            raise SquashRefused(f"{first.revision} is not before {last.revision} in the history.")
        step = script.get_revision(step.down_revision)
        if len(step.nextrev) > 1:
            raise SquashRefused(f"{step.revision} has a branch growing from it: only a straight run can be "
                                "squashed.")
    if len(found) < 2:
        raise SquashRefused("A squash needs at least two revisions (A:B).")
    children = [script.get_revision(child) for child in sorted(last.nextrev)]
    return Run(list(reversed(found)), first.down_revision, children)


def refuse_data_migrations(run: Run, dialect: str) -> None:
    """A run that moves data (op.execute, bulk inserts, code reading the database) is not squashed."""
    for step in run.revisions:
        try:
            operations = record_script(step.module, dialect, "upgrade")
        except Exception as error:
            raise SquashRefused(f"{step.revision} runs code that needs the database ({error}); a data "
                                "migration is not squashed: squash the runs before and after it.") from None
        moved = [type(op).__name__ for op in operations if type(op).__name__ in DATA_OPERATIONS]
        if moved:
            raise SquashRefused(f"{step.revision} moves data ({', '.join(moved)}); a data migration is not "
                                "squashed: squash the runs before and after it.")


def database_at_end(run: Run, current: Sequence[str]) -> bool:
    """Whether the database is at the run's last revision; refused when it is strictly inside."""
    inside = [rev for rev in current if rev in run.ids[:-1]]
    if inside:
        raise SquashRefused(f"The database is at {inside[0]}, inside the run: upgrade it to {run.last} "
                            "(or downgrade it below the run) first.")
    return run.last in current


_DOWN_REVISION = r"^(down_revision\b[^=\n]*=\s*)(['\"]){rev}\2"


def check_children_repointable(run: Run) -> None:
    """Each revision built on the run must name it as a plain literal we can rewrite."""
    for child in run.children:
        source = Path(child.path).read_text(encoding="utf-8")
        if not re.search(_DOWN_REVISION.format(rev=re.escape(run.last)), source, re.MULTILINE):
            raise SquashRefused(f"{Path(child.path).name} builds on {run.last} but its down_revision is not "
                                "a plain string; point it at the new revision by hand, then squash.")


def repoint(child: Script, old: str, new: str) -> None:
    """Make a revision built on `old` build on `new` (its header only)."""
    path = Path(child.path)
    source = path.read_text(encoding="utf-8")
    pattern = _DOWN_REVISION.format(rev=re.escape(old))
    source = re.sub(pattern, lambda m: f"{m[1]}{m[2]}{new}{m[2]}", source, count=1, flags=re.MULTILINE)
    path.write_text(source.replace(f"Revises: {old}", f"Revises: {new}", 1), encoding="utf-8")


@dataclass
class Proof:
    """The squashed revision, written in a scratch copy of the migrations folder, and the checks."""

    path: Path
    checks: list[tuple[str, bool, str]]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(ok for _, ok, _ in self.checks)


def build_and_prove(manager: AlembicManager, target: Target, run: Run, message: str, rev_id: str,
                    scratch: Path) -> Proof:
    """Write the new revision from the schemas before and after the run, then check it rebuilds them."""
    from .manager import AlembicManager

    folder = _scratch_copy(target, run, scratch, manager._script_directory(target))

    def project(url: str, migrations: Path, metadata: Any = None) -> AlembicManager:
        return AlembicManager(url=url, migrations_dir=migrations, metadata=metadata,
                              project_root=target.project_root)

    with shadow_database(target.url, "squash") as at_end, shadow_database(target.url, "squash") as before, \
            shadow_database(target.url, "squash") as rebuilt:
        project(at_end, target.migrations_dir).upgrade(run.last)
        expected_end, end_metadata = _snapshot_and_metadata(at_end)
        start = project(before, folder, end_metadata)
        if run.parent:
            start.upgrade(run.parent)
        expected_start, _ = _snapshot_and_metadata(before)
        written = start.revision(message, autogenerate=True, rev_id=rev_id)
        if written is None:
            raise SquashRefused(f"The run {run.ids[0]}..{run.last} changes nothing in the schema; delete its "
                                "revisions instead.")
        check = project(rebuilt, folder)
        up = _rebuilt_differences(lambda: check.upgrade(rev_id), expected_end, rebuilt)
        down = _rebuilt_differences(lambda: check.downgrade(run.parent or "base"), expected_start, rebuilt)
    tables = len([name for name in expected_end if not name.startswith("(")])
    checks = [
        (f"upgrade to {rev_id} builds the schema at {run.last}", not up,
         "; ".join(up) or f"{counted(tables, 'table')} equal"),
        (f"downgrade of {rev_id} returns to {run.parent or 'base'}", not down, "; ".join(down) or "equal"),
    ]
    return Proof(Path(written.path), checks)


def _rebuilt_differences(migrate: Callable[[], Any], expected: dict[str, Any], url: str) -> list[str]:
    """Run one step of the proof; how the schema then differs from the expected one (or why it failed)."""
    try:
        migrate()
    except MigrationError as error:
        return [f"failed: {str(error).splitlines()[0]}"]
    return schema.differences(expected, _snapshot_and_metadata(url)[0])


def _scratch_copy(target: Target, run: Run, scratch: Path, script: ScriptDirectory) -> Path:
    """The migrations folder with only the revisions below the run, for writing the new one."""
    folder = scratch / "migrations"
    shutil.copytree(target.migrations_dir, folder, ignore=shutil.ignore_patterns(".trash", "__pycache__"))
    below = {r.revision for r in script.iterate_revisions(run.parent, "base")} if run.parent else set()
    for revision in script.walk_revisions():
        if revision.revision not in below:
            (folder / "versions" / Path(revision.path).name).unlink(missing_ok=True)
    return folder


def _snapshot_and_metadata(url: str) -> tuple[dict[str, Any], Any]:
    """A database's schema snapshot, and its reflected MetaData (the version table left out)."""
    from sqlalchemy import MetaData, create_engine, pool

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            found = schema.snapshot(connection, skip=("alembic_version",))
            metadata = MetaData()
            metadata.reflect(connection)
        if "alembic_version" in metadata.tables:
            metadata.remove(metadata.tables["alembic_version"])
        return found, metadata
    finally:
        engine.dispose()


def temporary_folder() -> tempfile.TemporaryDirectory[str]:
    """Where the squashed revision is written and proven before it is installed."""
    return tempfile.TemporaryDirectory(prefix="framefox-squash-")


MAX_NAME = 60  # under PostgreSQL's 63 and MySQL's 64 characters


def name_new_foreign_keys(directives: Iterable[Any]) -> None:
    """Give each foreign key autogenerate adds to an existing table a name (SQLAlchemy's usual
    convention, fk_<table>_<column>_<referred table>), in upgrade() and in the downgrade() that
    drops it: SQLite's batch mode and every drop_constraint need one."""
    from alembic.operations import ops

    for directive in directives:
        for op in _flattened([*directive.upgrade_ops_list, *directive.downgrade_ops_list]):
            if isinstance(op, ops.CreateForeignKeyOp) and op.constraint_name is None:
                op.constraint_name = _foreign_key_name(op)
            elif (isinstance(op, ops.DropConstraintOp) and op.constraint_name is None
                  and isinstance(op._reverse, ops.CreateForeignKeyOp)):
                op.constraint_name = op._reverse.constraint_name or _foreign_key_name(op._reverse)


def _foreign_key_name(op: Any) -> str:
    return f"fk_{op.source_table}_{'_'.join(op.local_cols)}_{op.referent_table}"[:MAX_NAME]


def _flattened(containers: Iterable[Any]) -> Iterator[Any]:
    """Every operation, inside ModifyTableOps too."""
    for container in containers:
        for op in container.ops:
            if hasattr(op, "ops"):
                yield from _flattened([op])
            else:
                yield op
