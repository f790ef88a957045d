"""The notebook face: %migrate and %%revision driven through a real IPython shell."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import HERO_CELL, POWER_CELL, column_names, table_names, version_rows
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic.errors import MigrationError
from framefox_magic.results import Diff, History, Outcome, RevisionInfo, Status

SUB_COMMANDS = (
    "status", "init", "config", "history", "current", "heads", "branches", "show", "diff", "check",
    "sql", "upgrade", "downgrade", "revision", "stamp", "merge", "delete", "init-version-table",
    "clear-history", "clean", "reset", "graph", "rehearse", "lint", "panel",
)
HISTORY_COLUMNS = [
    "revision", "parents", "message", "created", "applied", "current", "head", "branch_labels", "path",
    "risk",
]

POWER_AND_AGE_CELL = POWER_CELL + "    age: int | None = None\n"


# ---------------------------------------------------------------- the shell




def run(shell: InteractiveShell, code: str) -> Any:
    """Run a cell that must succeed; its value."""
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def fails(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], code: str) -> str:
    """Run a cell that must fail with one short UsageError line and no traceback; the message."""
    capsys.readouterr()
    result = shell.run_cell(code)
    output = "".join(capsys.readouterr())
    assert not result.success
    assert isinstance(result.error_in_exec, UsageError), repr(result.error_in_exec)
    message = str(result.error_in_exec)
    assert "Traceback" not in output
    assert "\n" not in message.strip()
    assert output.strip().splitlines() == [f"UsageError: {message}"]
    return message


def versions(project: Path) -> list[Path]:
    return sorted((project / "migrations" / "versions").glob("*.py"))


def init(shell: InteractiveShell, url: str) -> None:
    run(shell, f"%migrate init --url {url}")


def hero_applied_power_pending(shell: InteractiveShell, url: str) -> tuple[str, str]:
    """create hero (applied) and add power (pending): the two revision ids."""
    init(shell, url)
    first = run(shell, HERO_CELL).revision
    run(shell, "%migrate upgrade")
    second = run(shell, POWER_CELL).revision
    return first, second


def snapshot(project: Path, url: str) -> tuple[Any, ...]:
    """Everything a destructive command could change: files, version rows, schema."""
    files = {p.name: p.read_text() for p in (project / "migrations").rglob("*.py")}
    tables = table_names(url)
    return files, version_rows(url), tables, {t: column_names(url, t) for t in tables}


def completions(shell: InteractiveShell, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in shell.Completer.completions(text, len(text))]


def body_of(source: str, function: str) -> str:
    """The text of one top-level function in a revision file."""
    match = re.search(rf"^def {function}\(.*?(?=^def |\Z)", source, re.MULTILINE | re.DOTALL)
    assert match, f"no {function}() in:\n{source}"
    return match.group(0)


# ---------------------------------------------------------------- prototyping


def test_prototyping_flow(shell: InteractiveShell, project: Path, db_url: str) -> None:
    created = run(shell, f"%migrate init --url {db_url}")
    assert isinstance(created, Outcome)
    assert (project / "migrations" / "env.py").is_file()
    assert (project / "migrations" / "script.py.mako").is_file()
    assert (project / "migrations" / "versions").is_dir()

    first = run(shell, HERO_CELL)
    assert isinstance(first, RevisionInfo)
    assert [p.name for p in versions(project)] == [f"{first.revision}_create_hero.py"]
    assert "create_table" in versions(project)[0].read_text()

    run(shell, "%migrate upgrade")
    assert "hero" in table_names(db_url)
    assert version_rows(db_url) == [first.revision]

    second = run(shell, POWER_CELL)
    again = run(shell, POWER_CELL)
    assert again.revision == second.revision
    assert len(versions(project)) == 2
    edited = run(shell, POWER_AND_AGE_CELL)
    assert edited.revision == second.revision
    files = versions(project)
    assert len(files) == 2
    second_file = next(p for p in files if p.name.startswith(second.revision))
    assert "'power'" in second_file.read_text()
    assert "'age'" in second_file.read_text()

    history = run(shell, "%migrate history")
    assert isinstance(history, History)
    assert [r.revision for r in history] == [second.revision, first.revision]

    diff = run(shell, f"%migrate diff {second.revision}")
    assert isinstance(diff, Diff)
    frame = diff.to_frame()
    assert set(frame["op"]) == {"add_column"}
    assert set(frame["table"]) == {"hero"}
    assert set(frame["target"]) == {"power", "age"}

    run(shell, "%migrate upgrade")
    assert {"power", "age"} <= column_names(db_url, "hero")
    assert version_rows(db_url) == [second.revision]

    run(shell, "%migrate downgrade -1 --yes")
    assert version_rows(db_url) == [first.revision]
    assert column_names(db_url, "hero") == {"id", "name"}


def test_history_assigned_with_equals_gives_a_frame(shell: InteractiveShell, db_url: str) -> None:
    first, second = hero_applied_power_pending(shell, db_url)
    run(shell, "h = %migrate history")
    history = shell.user_ns["h"]
    assert isinstance(history, History)
    frame = history.to_frame()
    assert list(frame.columns) == HISTORY_COLUMNS
    assert frame["revision"].tolist() == [second, first]
    assert frame["message"].tolist() == ["add power", "create hero"]
    assert frame["parents"].tolist() == [(first,), ()]
    assert frame["applied"].tolist() == [False, True]
    assert frame["current"].tolist() == [False, True]
    assert frame["head"].tolist() == [True, False]
    assert frame["path"].map(lambda p: Path(p).is_file()).all()


def test_output_option_stores_the_result(shell: InteractiveShell, db_url: str) -> None:
    init(shell, db_url)
    written = run(shell, HERO_CELL.replace('"create hero"', '"create hero" -o rev', 1))
    assert shell.user_ns["rev"].revision == written.revision

    shown = run(shell, "%migrate status -o st")
    assert isinstance(shell.user_ns["st"], Status)
    assert shell.user_ns["st"].pending == (written.revision,) == shown.pending

    run(shell, "%migrate history -o hist")
    assert isinstance(shell.user_ns["hist"], History)
    assert [r.revision for r in shell.user_ns["hist"]] == [written.revision]


def test_manual_revision_with_downgrade_section(shell: InteractiveShell, project: Path, db_url: str) -> None:
    init(shell, db_url)
    written = run(shell, '''%%revision -m "sidekick table" --manual
op.create_table(
    "sidekick",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)
# downgrade
op.drop_table("sidekick")
''')
    assert isinstance(written, RevisionInfo)
    [path] = versions(project)
    source = path.read_text()
    assert 'op.create_table(\n        "sidekick",' in body_of(source, "upgrade")
    assert "drop_table" not in body_of(source, "upgrade")
    assert 'op.drop_table("sidekick")' in body_of(source, "downgrade")

    run(shell, "%migrate upgrade")
    assert "sidekick" in table_names(db_url)
    assert version_rows(db_url) == [written.revision]
    run(shell, "%migrate downgrade base --yes")
    assert "sidekick" not in table_names(db_url)
    assert version_rows(db_url) == []


def test_revision_without_changes_writes_nothing(
    shell: InteractiveShell, project: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    init(shell, db_url)
    run(shell, HERO_CELL)
    run(shell, "%migrate upgrade")
    capsys.readouterr()
    outcome = run(shell, HERO_CELL.replace('"create hero"', '"nothing new"', 1))
    assert "No changes detected" in repr(outcome)
    assert "No changes detected" in capsys.readouterr().out
    assert len(versions(project)) == 1

    outcome = run(shell, '%migrate revision --autogenerate -m "still nothing"')
    assert "No changes detected" in repr(outcome)
    assert len(versions(project)) == 1


def test_rerunning_an_edited_model_cell(shell: InteractiveShell, project: Path, db_url: str) -> None:
    init(shell, db_url)
    run(shell, "from sqlmodel import Field, SQLModel")
    model = '''
class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
'''
    run(shell, model)
    run(shell, model)
    edited = model + "    secret_name: str = ''\n"
    result = shell.run_cell(edited)
    assert result.success, result.error_in_exec

    diff = run(shell, "%migrate diff").to_frame()
    assert diff["op"].tolist() == ["create_table"]
    assert "secret_name" in diff["detail"][0]

    run(shell, '%migrate revision --autogenerate -m "create hero"')
    [path] = versions(project)
    assert "'secret_name'" in path.read_text()
    run(shell, "%migrate upgrade")
    assert column_names(db_url, "hero") == {"id", "name", "secret_name"}


@pytest.fixture
def models_module(project: Path) -> Iterator[Path]:
    """project/models.py; forgotten by the import system afterwards."""
    path = project / "models.py"
    yield path
    sys.modules.pop("models", None)
    while str(project) in sys.path:
        sys.path.remove(str(project))


def write_models(path: Path, columns: str, when: float) -> None:
    path.write_text(
        "from sqlmodel import Field, SQLModel\n\n\n"
        "class Item(SQLModel, table=True):\n"
        "    id: int | None = Field(default=None, primary_key=True)\n" + columns
    )
    os.utime(path, (when, when))


def test_metadata_module_is_read_again_when_edited(
    shell: InteractiveShell, project: Path, db_url: str, models_module: Path
) -> None:
    write_models(models_module, "    name: str\n", 1_700_000_000)
    run(shell, f"%migrate init --url {db_url} --metadata models:SQLModel.metadata")
    first = run(shell, '%migrate revision --autogenerate -m "create item"')
    assert first is not None
    run(shell, "%migrate upgrade")
    assert column_names(db_url, "item") == {"id", "name"}

    write_models(models_module, "    name: str\n    price: int = 0\n", 1_700_000_100)
    diff = run(shell, "%migrate diff").to_frame()
    assert diff[["op", "table", "target"]].values.tolist() == [["add_column", "item", "price"]]
    run(shell, '%migrate revision --autogenerate -m "item price" --apply')
    assert column_names(db_url, "item") == {"id", "name", "price"}


def test_metadata_defined_in_the_notebook_itself(shell: InteractiveShell, db_url: str) -> None:
    run(shell, "import sqlalchemy as sa\nmodels = sa.MetaData()\n"
               "sa.Table('item', models, sa.Column('id', sa.Integer, primary_key=True))")
    run(shell, f"%migrate init --url {db_url} --metadata __main__:models")
    run(shell, '%migrate revision --autogenerate -m "create item" --apply')
    assert column_names(db_url, "item") == {"id"}

    run(shell, "models.tables['item'].append_column(sa.Column('price', sa.Integer))")
    diff = run(shell, "%migrate diff").to_frame()

    assert diff[["op", "table", "target"]].values.tolist() == [["add_column", "item", "price"]]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%migrate upgrad", "Unknown sub-command 'upgrad'. Did you mean 'upgrade'?"),
        ("%migrate frobnicate", "Unknown sub-command 'frobnicate'"),
        ("%migrate upgrade --bogus", "unrecognized arguments: --bogus"),
        ("%migrate history --frobnicate 3", "unrecognized arguments: --frobnicate"),
        ('%migrate revision -m "unclosed', "Cannot split the line"),
        ("%%revision\nx = 1", "-m/--message"),
        ('%%revision -m "broken" --manual\nop.create_table(', "does not compile"),
    ],
)
def test_command_line_mistakes(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], project: Path, line: str, expected: str
) -> None:
    run(shell, "%migrate init")
    assert expected in fails(shell, capsys, line)
    assert versions(project) == []


@pytest.mark.parametrize(
    "line", ["%migrate show nosuch", "%migrate diff nosuch", "%migrate upgrade nosuch",
             "%migrate downgrade nosuch --yes"],
)
def test_bad_revision(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], db_url: str, line: str
) -> None:
    first, _ = hero_applied_power_pending(shell, db_url)
    message = fails(shell, capsys, line)
    assert "'nosuch'" in message
    assert version_rows(db_url) == [first]


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere",
     "mysql+pymysql://someone:s3cret@127.0.0.1:1/nowhere"],
)
def test_unreachable_database(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], url: str) -> None:
    run(shell, f"%migrate init --url {url}")
    message = fails(shell, capsys, "%migrate status")
    assert message.startswith("Cannot connect to the database")
    assert "s3cret" not in message
    assert "s3cret" not in (Path("alembic.ini")).read_text()


@pytest.mark.parametrize(
    "command",
    ["downgrade -1", "downgrade base", "delete {second}", "clear-history", "clean", "reset"],
)
def test_destructive_commands_need_yes(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], project: Path, db_url: str, command: str
) -> None:
    _, second = hero_applied_power_pending(shell, db_url)
    before = snapshot(project, db_url)
    message = fails(shell, capsys, f"%migrate {command.format(second=second)}")
    assert "--yes" in message
    assert snapshot(project, db_url) == before


def test_downgrade_minus_one_at_base_needs_yes_then_says_nothing_to_downgrade(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], project: Path, db_url: str
) -> None:
    init(shell, db_url)
    run(shell, HERO_CELL)  # written, never applied: the database is at base
    before = snapshot(project, db_url)
    assert "--yes" in fails(shell, capsys, "%migrate downgrade -1")

    capsys.readouterr()
    outcome = run(shell, "%migrate downgrade -1 --yes")

    said = "Nothing to downgrade: the database is at base (no revision)."
    assert isinstance(outcome, Outcome) and outcome.summary == said
    assert said in repr(outcome) and said in outcome._repr_html_()
    assert "error" not in "".join(capsys.readouterr()).lower()
    files, rows, tables, _ = snapshot(project, db_url)
    assert (files, rows, tables - {"alembic_version"}) == (before[0], [], before[2] - {"alembic_version"})
    assert not (project.parent / ".backups").exists()  # where a SQLite test.db would be backed up
    after_minus_one = snapshot(project, db_url)  # as `downgrade base` leaves it (an empty version table)
    assert run(shell, "%migrate downgrade base --yes").summary == said
    assert snapshot(project, db_url) == after_minus_one


def test_delete_applied_revision_needs_force(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], project: Path, db_url: str
) -> None:
    first, second = hero_applied_power_pending(shell, db_url)
    message = fails(shell, capsys, f"%migrate delete {first} --yes")
    assert first in message
    assert "applied" in message
    assert len(versions(project)) == 2

    run(shell, f"%migrate delete {second} --yes")
    assert [p.name for p in versions(project)] == [f"{first}_create_hero.py"]

    run(shell, f"%migrate delete {first} --yes --force")
    assert versions(project) == []
    assert version_rows(db_url) == [first]


def test_full_traceback_is_one_option_away(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(shell, "%migrate init")
    run(shell, "%config MigrateMagics.short_errors = False")
    capsys.readouterr()
    result = shell.run_cell("%migrate show nosuch")
    output = "".join(capsys.readouterr())
    assert isinstance(result.error_in_exec, MigrationError)
    assert not isinstance(result.error_in_exec, UsageError)
    assert "Traceback" in output
    assert "nosuch" in output

    run(shell, "%config MigrateMagics.short_errors = True")
    assert "nosuch" in fails(shell, capsys, "%migrate show nosuch")


# ---------------------------------------------------------------- help


def test_help_lists_every_sub_command(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run(shell, "%migrate help") is None
    listed = capsys.readouterr().out
    for name in SUB_COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", listed, re.MULTILINE), name


def test_question_mark_shows_the_sub_commands(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    run(shell, "%migrate?")
    shown = capsys.readouterr().out
    for name in SUB_COMMANDS:
        assert re.search(rf"^\s*{re.escape(name)}\s+\S", shown, re.MULTILINE), name


@pytest.mark.parametrize("line", ["%migrate upgrade --help", "%migrate help upgrade"])
def test_help_of_one_sub_command(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    capsys.readouterr()
    assert run(shell, line) is None
    shown = capsys.readouterr().out
    assert "%migrate upgrade" in shown
    assert "--sql" in shown
    assert "--plan" in shown
    assert not (project / "migrations").exists()


# ---------------------------------------------------------------- notebook conveniences


def test_variables_and_expressions_expand(shell: InteractiveShell, project: Path) -> None:
    run(shell, "%migrate init")
    first = run(shell, HERO_CELL).revision
    run(shell, f"rev = {first!r}")
    assert run(shell, "%migrate show $rev").revision == first
    assert run(shell, "%migrate show {rev[:6]}").revision == first
    run(shell, 'msg = "empty step"')
    written = run(shell, '%migrate revision -m "$msg"')
    assert written.message == "empty step"
    assert written.parents == (first,)
    assert any(p.name.endswith("_empty_step.py") for p in versions(project))


def test_tab_completion(shell: InteractiveShell) -> None:
    run(shell, "%migrate init")
    first = run(shell, HERO_CELL).revision
    assert "upgrade" in completions(shell, "%migrate up")
    assert "clear-history" in completions(shell, "%migrate cle")
    assert "--yes" in completions(shell, "%migrate downgrade --y")
    assert {"--sql", "--url"} <= set(completions(shell, "%migrate upgrade --"))
    after_show = set(completions(shell, "%migrate show "))
    assert {first, "head", "heads", "base"} <= after_show
    assert completions(shell, f"%migrate show {first[:4]}") == [first]
    assert first in completions(shell, "%migrate upgrade ")


def test_revision_cell_options_complete(shell: InteractiveShell) -> None:
    assert "--apply" in completions(shell, "%%revision -m x --ap")
    assert "--manual" in completions(shell, "%%revision -m x --man")


def _ours(objects: list[Any]) -> list[Any]:
    return [o for o in objects if getattr(o, "__module__", "").startswith("framefox_magic")]


def test_unload_and_reload(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(_ours(shell.events.callbacks["pre_run_cell"])) == 1
    assert len(_ours(shell.Completer.custom_matchers)) == 1

    run(shell, "%unload_ext framefox_magic")
    assert shell.find_line_magic("migrate") is None
    assert shell.find_cell_magic("revision") is None
    assert _ours(shell.events.callbacks["pre_run_cell"]) == []
    assert _ours(shell.Completer.custom_matchers) == []
    assert not any(type(c).__name__ == "MigrateMagics" for c in shell.configurables)
    assert "upgrade" not in completions(shell, "%migrate up")
    result = shell.run_cell("%migrate status")
    assert isinstance(result.error_in_exec, UsageError)

    run(shell, "%reload_ext framefox_magic")
    assert shell.find_line_magic("migrate") is not None
    assert shell.find_cell_magic("revision") is not None
    assert len(_ours(shell.events.callbacks["pre_run_cell"])) == 1
    assert len(_ours(shell.Completer.custom_matchers)) == 1
    assert "upgrade" in completions(shell, "%migrate up")
    assert isinstance(run(shell, "%migrate init"), Outcome)

    run(shell, "%reload_ext framefox_magic")
    assert len(_ours(shell.events.callbacks["pre_run_cell"])) == 1
    assert len(_ours(shell.Completer.custom_matchers)) == 1


def test_settings_made_with_config_survive_a_reload(shell: InteractiveShell, project: Path) -> None:
    url = f"sqlite:///{project / 'configured.db'}"
    run(shell, f"%config MigrateMagics.url = {url!r}")
    run(shell, "%reload_ext framefox_magic")
    assert run(shell, "%migrate config").url == url
    run(shell, "%unload_ext framefox_magic")
    run(shell, "%load_ext framefox_magic")
    run(shell, "%migrate init")
    assert run(shell, "%migrate status").url == url


def test_url_given_once_is_kept(shell: InteractiveShell, project: Path, db_url: str) -> None:
    init(shell, db_url)
    target = run(shell, "%migrate config")
    assert sa.make_url(target.url).database == sa.make_url(db_url).database
    run(shell, "%migrate init-version-table")
    assert "alembic_version" in table_names(db_url)
    status = run(shell, "%migrate status")
    assert sa.make_url(status.url).database == sa.make_url(db_url).database
    assert not (project / "database.db").exists()


def test_password_is_not_shown_or_written(shell: InteractiveShell, project: Path) -> None:
    url = "postgresql+psycopg://someone:t0psecret@127.0.0.1:1/nowhere"
    run(shell, f"%migrate init --url {url}")
    shown = run(shell, "%migrate config")
    assert "t0psecret" not in repr(shown)
    assert "t0psecret" not in shown._repr_html_()
    for path in project.rglob("*"):
        if path.is_file():
            assert "t0psecret" not in path.read_text(errors="replace"), path


def test_relative_paths_follow_cd(shell: InteractiveShell, project: Path) -> None:
    first, second = project / "first", project / "second"
    first.mkdir()
    second.mkdir()
    run(shell, f"%cd {first}")
    run(shell, "%migrate init --url sqlite:///app.db")
    written = run(shell, HERO_CELL).revision
    run(shell, "%migrate upgrade")
    assert "hero" in table_names(f"sqlite:///{first / 'app.db'}")

    run(shell, f"%cd {second}")
    run(shell, "%migrate init")
    assert (second / "migrations" / "env.py").is_file()
    assert len(run(shell, "%migrate history")) == 0
    run(shell, "%migrate init-version-table")
    assert (second / "app.db").is_file()

    run(shell, "%cd ..")
    run(shell, "%cd first")
    assert [r.revision for r in run(shell, "%migrate history")] == [written]
    assert run(shell, "%migrate status").current == (written,)


# ---------------------------------------------------------------- logging


def test_alembic_logging_stays_quiet(
    shell: InteractiveShell, db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    mine = logging.getLogger("mine")
    caplog.set_level(logging.INFO)
    capsys.readouterr()
    hero_applied_power_pending(shell, db_url)
    run(shell, "%migrate upgrade")
    run(shell, "%migrate downgrade base --yes")
    output = "".join(capsys.readouterr())
    assert "INFO" not in output
    assert "Running upgrade" not in output
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")
            and r.levelno <= logging.INFO] == []
    assert mine.disabled is False
    mine.info("still heard")
    assert "still heard" in caplog.text


def test_existing_alembic_project_does_not_disable_loggers(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    command.init(AlembicConfig(str(project / "alembic.ini")), str(project / "migrations"))
    assert "fileConfig" in (project / "migrations" / "env.py").read_text()
    mine = logging.getLogger("mine")
    capsys.readouterr()
    written = run(shell, '%migrate revision -m "first"')
    run(shell, "%migrate upgrade")
    output = "".join(capsys.readouterr())
    assert version_rows(f"sqlite:///{project / 'database.db'}") == [written.revision]
    assert mine.disabled is False
    assert "INFO" not in output


TEAM_AND_HERO = '''
from sqlmodel import Field, Relationship, Session, SQLModel, create_engine, select

class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    heroes: list["Hero"] = Relationship(back_populates="team")

class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes")
'''
USE_MODELS = '''
engine = create_engine(url)
with Session(engine) as session:
    team = Team(name="Preventers")
    session.add(Hero(name="Rusty", team=team, **extra))
    session.commit()
    names = [hero.name for hero in session.exec(select(Hero)).all()]
    members = [hero.name for hero in team.heroes]
engine.dispose()
'''


def test_related_models_rerun_in_one_cell_still_work_in_a_session(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{project / 'database.db'}"
    shell.user_ns.update(url=url, extra={})
    run(shell, "%migrate init")
    assert shell.run_cell(TEAM_AND_HERO).success
    run(shell, '%migrate revision -m "teams" --autogenerate')
    run(shell, "%migrate upgrade")
    edited = TEAM_AND_HERO.replace("    team_id", "    age: int = 0\n    team_id")
    assert shell.run_cell(edited).success
    assert "still refer" not in capsys.readouterr().err
    run(shell, '%migrate revision -m "hero age" --autogenerate')
    run(shell, "%migrate upgrade")
    shell.user_ns["extra"] = {"age": 30}
    assert shell.run_cell(USE_MODELS).success
    assert shell.user_ns["names"] == ["Rusty"] and shell.user_ns["members"] == ["Rusty"]
    assert "age" in column_names(url, "hero")


def test_rerunning_one_of_two_related_model_cells_says_which_model_to_rerun(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    team_cell, hero_cell = TEAM_AND_HERO.split("class Hero")
    assert shell.run_cell(team_cell).success
    assert shell.run_cell("class Hero" + hero_cell).success
    capsys.readouterr()
    assert shell.run_cell("class Hero" + hero_cell).success
    err = capsys.readouterr().err
    assert "Team still refer(s) to the earlier Hero" in err
    assert "Traceback" not in err


def test_a_target_chosen_with_url_survives_reload_ext_so_upgrade_goes_where_it_did(
    shell: InteractiveShell, project: Path
) -> None:
    other = f"sqlite:///{project / 'other.db'}"
    init(shell, other)
    first = run(shell, HERO_CELL).revision
    run(shell, "%reload_ext framefox_magic")
    assert run(shell, "%migrate config").url == other
    run(shell, "%unload_ext framefox_magic")
    run(shell, "%load_ext framefox_magic")
    assert run(shell, HERO_CELL).revision == first  # the same cell's revision is written again, not a second
    run(shell, "%migrate upgrade")
    assert version_rows(other) == [first]
    assert not (project / "database.db").exists()


def test_a_url_set_with_config_while_unloaded_wins_over_the_earlier_target(
    shell: InteractiveShell, project: Path
) -> None:
    init(shell, f"sqlite:///{project / 'other.db'}")
    run(shell, "%unload_ext framefox_magic")
    configured = f"sqlite:///{project / 'configured.db'}"
    run(shell, f"%config MigrateMagics.url = {configured!r}")
    run(shell, "%load_ext framefox_magic")
    assert run(shell, "%migrate config").url == configured


def test_a_new_shell_in_the_same_process_never_takes_an_earlier_shells_target(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (keyed by the shell's id(), a shell made at a discarded one's address took its target: the
    # suite saw a SQLite test run against an earlier test's PostgreSQL database)
    from conftest import ipython_shell

    other = f"sqlite:///{project / 'other.db'}"
    with ipython_shell(monkeypatch) as first:
        run(first, f"%migrate config --url {other}")
    with ipython_shell(monkeypatch) as second:
        monkeypatch.chdir(project)
        assert run(second, "%migrate config").url != other
