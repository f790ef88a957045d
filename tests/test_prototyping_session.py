"""Prototyping sessions as people really work: models spread over cells, mistakes, the CLI beside."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import HERO_CELL, column_names, table_names, version_rows
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import cli

TEAM_CELL = '''%%revision -m "add team"
class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
'''
# five models, one per cell, related across cells (foreign keys and relationships by name)
FIVE_MODELS = {
    "Team": '''
class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    heroes: list["Hero"] = Relationship(back_populates="team")
''',
    "Hero": '''
class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes")
''',
    "Power": '''
class Power(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    label: str
    hero_id: int | None = Field(default=None, foreign_key="hero.id")
''',
    "Mission": '''
class Mission(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str
    team_id: int | None = Field(default=None, foreign_key="team.id")
''',
    "Base": '''
class Base(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    city: str
    mission_id: int | None = Field(default=None, foreign_key="mission.id")
''',
}
FIVE_TABLES = {"team", "hero", "power", "mission", "base"}
IMPORTS = "from sqlmodel import Field, Relationship, SQLModel\n"


def ok(shell: InteractiveShell, code: str) -> Any:
    """Run a cell that must succeed; its value."""
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def failed(shell: InteractiveShell, code: str) -> Any:
    """Run a cell that must fail; the error."""
    result = shell.run_cell(code)
    assert not result.success
    return result.error_before_exec or result.error_in_exec


def shown(error: BaseException) -> str:
    """The traceback text IPython shows for an error."""
    render = getattr(error, "_render_traceback_", None)
    return "\n".join(render()) if render else ""


def model_tables() -> set[str]:
    from sqlmodel import SQLModel

    return set(SQLModel.metadata.tables)


def start(shell: InteractiveShell, db_url: str) -> None:
    ok(shell, f"%migrate init --url {db_url}")


# ---------------------------------------------------------------- models across cells


def test_a_second_model_cell_after_upgrade_writes_its_revision(
    shell: InteractiveShell, db_url: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    written = ok(shell, TEAM_CELL)
    ok(shell, "class Foo: pass")

    assert [row.op for row in written.diff.rows] == ["create_table"]
    assert [row.table for row in written.diff.rows] == ["team"]
    assert list((project / "migrations" / "versions").glob("*_add_team.py"))
    err = capsys.readouterr().err
    assert "Error in callback" not in err
    assert "AttributeError" not in err
    ok(shell, "%migrate upgrade")
    assert {"hero", "team"} <= table_names(db_url)


def test_five_related_models_in_five_cells_then_each_edited_and_rerun(
    shell: InteractiveShell, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start(shell, db_url)
    ok(shell, IMPORTS)
    for cell in FIVE_MODELS.values():
        ok(shell, cell)
    assert model_tables() == FIVE_TABLES
    ok(shell, '%migrate revision -m "five models" --autogenerate')
    ok(shell, "%migrate upgrade")
    assert table_names(db_url) >= FIVE_TABLES

    for name, cell in FIVE_MODELS.items():  # edit each in turn: one more column, run it again
        edited = cell.rstrip("\n") + f"\n    note_{name.lower()}: str | None = None\n"
        ok(shell, edited)
        assert model_tables() == FIVE_TABLES
        written = ok(shell, f'%migrate revision -m "note on {name}" --autogenerate')
        assert [(row.op, row.table) for row in written.diff.rows] == [("add_column", name.lower())]
        ok(shell, "%migrate upgrade")
        assert f"note_{name.lower()}" in column_names(db_url, name.lower())
    assert "Error in callback" not in capsys.readouterr().err
    assert ok(shell, "%migrate check").rows == []


def test_five_models_as_five_revision_cells(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, IMPORTS)
    for name, cell in FIVE_MODELS.items():
        written = ok(shell, f'%%revision -m "add {name.lower()}" --apply\n{cell}')
        assert (written.diff.rows[0].op, written.diff.rows[0].table) == ("create_table", name.lower())
    assert table_names(db_url) >= FIVE_TABLES
    assert len(version_rows(db_url)) == 1
    assert ok(shell, "%migrate check").rows == []


def test_a_failing_model_cell_leaves_the_models_as_they_were(
    shell: InteractiveShell, db_url: str
) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    hero_before = ok(shell, "Hero")
    table_before = hero_before.__table__

    typo = HERO_CELL.replace("create hero", "rename hero").replace("Field(default", "Fieldd(default")
    error = failed(shell, typo)
    assert isinstance(error, NameError)
    assert ok(shell, "Hero") is hero_before
    from sqlmodel import SQLModel

    assert SQLModel.metadata.tables["hero"] is table_before
    assert ok(shell, "%migrate check").rows == []  # no drop_table hero proposed
    assert len(list(Path("migrations/versions").glob("*.py"))) == 1

    plain = HERO_CELL.split("\n", 1)[1] + "    age: int = 0\n1 / 0\n"
    assert isinstance(failed(shell, plain), ZeroDivisionError)
    assert SQLModel.metadata.tables["hero"] is table_before
    assert ok(shell, "Hero") is hero_before

    good = HERO_CELL.replace("create hero", "add age") + "    age: int | None = None\n"
    written = ok(shell, good)
    assert [(row.op, row.table) for row in written.diff.rows] == [("add_column", "hero")]
    assert "age" in SQLModel.metadata.tables["hero"].c


def test_a_new_model_in_a_failing_cell_is_not_kept(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    failed(shell, TEAM_CELL.replace("name: str", "name: str\n    raise ValueError('oops')"))
    assert model_tables() == {"hero"}
    assert "Team" not in shell.user_ns


# ---------------------------------------------------------------- errors in the cell's own code


def test_errors_in_a_model_cell_read_like_ipythons_own(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    name_error = failed(shell, HERO_CELL.replace("name: str", "name: strr"))
    text = shown(name_error)
    assert isinstance(name_error, NameError)
    assert "strr" in text
    assert "line 6" in text  # the cell's own line: the magic is line 1
    assert "framefox_magic" not in text and "run_cell_magic" not in text

    syntax = failed(shell, HERO_CELL.replace("name: str", "name: str ="))
    text = shown(syntax)
    assert "SyntaxError" in text and "framefox_magic" not in text
    indentation = failed(shell, HERO_CELL.replace("    name: str", "  name: str"))
    assert "IndentationError" in shown(indentation)
    assert not list(Path("migrations/versions").glob("*.py"))


def test_with_short_errors_off_the_full_traceback_is_kept(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, "%config MigrateMagics.short_errors = False")
    error = failed(shell, HERO_CELL.replace("name: str", "name: strr"))
    assert isinstance(error, NameError)
    assert not hasattr(error, "_render_traceback_")


# ---------------------------------------------------------------- a failing line changes nothing


def test_a_failing_url_does_not_stick(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    failed(shell, "%migrate status --url postgresql://nobody@127.0.0.1:5999/x")
    failed(shell, "%migrate status --url nonsense://nowhere")
    failed(shell, "%migrate status --dir /nonexistent/folder")
    status = ok(shell, "%migrate status")
    assert len(status.pending) == 1
    assert ok(shell, "%config MigrateMagics.url") == db_url


@pytest.mark.parametrize("name", ["__builtins__", "print", "get_ipython", "In", "Out", "exit", "_",
                                  "__", "_i3", "_oh", "_dh", "len", "1x"])
def test_output_names_that_would_hide_the_kernels_own_are_refused(
    shell: InteractiveShell, project: Path, name: str
) -> None:
    before = shell.user_ns.get(name)
    error = failed(shell, f"%migrate init -o {name}")
    assert f"-o {name}" in str(error)
    assert shell.user_ns.get(name) is before
    assert not (project / "migrations").exists()
    ok(shell, "print('still printing')")


# ---------------------------------------------------------------- re-running a revision cell


def test_rerunning_an_applied_revision_cell_says_it_stacked_on_top(
    shell: InteractiveShell, db_url: str
) -> None:
    start(shell, db_url)
    first = ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    again = ok(shell, HERO_CELL + "    age: int | None = None\n")
    assert again.revision != first.revision
    assert again.note == (f"this cell's earlier revision {first.revision} is applied; "
                          f"this wrote {again.revision} on top")


# ---------------------------------------------------------------- the command line beside


def test_the_cli_refuses_an_autogenerate_that_drops_every_table(
    shell: InteractiveShell, db_url: str, project: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    from framefox_magic.metadata import forget_models

    forget_models(lambda cls: True)  # a fresh process: the models only existed in the notebook
    monkeypatch.setenv("DATABASE_URL", db_url)
    capsys.readouterr()
    assert cli.main(["revision", "-m", "oops", "--autogenerate"]) == 1
    err = capsys.readouterr().err
    assert "drop every table" in err and "hero" in err
    assert "SQLModel.metadata" in err and "--metadata" in err and "[tool.framefox_magic]" in err
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 1

    assert cli.main(["revision", "-m", "drop all", "--autogenerate", "--yes"]) == 0
    assert len(list((project / "migrations" / "versions").glob("*_drop_all.py"))) == 1
    assert os.environ["DATABASE_URL"] == db_url


def test_the_notebook_refuses_an_autogenerate_that_drops_every_table(
    shell: InteractiveShell, db_url: str
) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    from framefox_magic.metadata import forget_models

    forget_models(lambda cls: True)
    error = failed(shell, '%migrate revision -m "oops" --autogenerate')
    assert "drop every table" in str(error)
    assert len(list(Path("migrations/versions").glob("*.py"))) == 1
    status = ok(shell, "%migrate status")  # the refused revision is not listed as pending
    assert status.up_to_date and not status.pending_revisions
    written = ok(shell, '%migrate revision -m "oops" --autogenerate --yes')
    assert [op.op for op in written.diff.rows] == ["drop_table"]


# ---------------------------------------------------------------- models from a package


def write_models_package(project: Path, column: str) -> Path:
    """app/models: a package whose __init__ imports hero.py; returns hero.py."""
    package = project / "app" / "models"
    package.mkdir(parents=True, exist_ok=True)
    (project / "app" / "__init__.py").write_text("")
    (package / "base.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase\n\n\nclass Base(DeclarativeBase):\n    pass\n"
    )
    (package / "__init__.py").write_text("from .base import Base\nfrom .hero import Hero\n\n"
                                         "metadata = Base.metadata\n")
    hero = package / "hero.py"
    hero.write_text(
        "from sqlalchemy import Integer, String\nfrom sqlalchemy.orm import Mapped, mapped_column\n\n"
        "from .base import Base\n\n\nclass Hero(Base):\n    __tablename__ = 'hero'\n"
        "    id: Mapped[int] = mapped_column(Integer, primary_key=True)\n"
        f"    {column}: Mapped[str] = mapped_column(String(40))\n"
    )
    return hero


@pytest.fixture
def no_app_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `app` package left imported by another test's project."""
    for name in [n for n in sys.modules if n == "app" or n.startswith("app.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.usefixtures("no_app_modules")
def test_a_models_package_is_read_again_when_a_module_it_imports_changes(
    shell: InteractiveShell, db_url: str, project: Path
) -> None:
    hero = write_models_package(project, "name")
    ok(shell, f"%migrate init --url {db_url} --metadata app.models:metadata")
    ok(shell, '%migrate revision -m "hero" --autogenerate')
    ok(shell, "%migrate upgrade")

    hero.write_text(hero.read_text().replace("name:", "nick:"))  # same size, same second
    rows = ok(shell, "%migrate diff").rows
    assert {(row.op, row.target) for row in rows} >= {("add_column", "nick"), ("drop_column", "name")}

    hero.write_text(hero.read_text().replace("nick:", "name:"))
    assert ok(shell, "%migrate check").rows == []


# ---------------------------------------------------------------- the messages met most


def test_diff_while_a_written_revision_waits_explains_what_helps(
    shell: InteractiveShell, db_url: str
) -> None:
    start(shell, db_url)
    written = ok(shell, HERO_CELL)
    error = failed(shell, "%migrate diff")
    message = str(error)
    assert f"1 revision is written but not applied yet: {written.revision} (create hero)" in message
    assert f"`diff {written.revision}`" in message and "`upgrade`" in message
    assert "run `upgrade` before autogenerating" not in message
    assert "not applied yet" in str(failed(shell, '%migrate revision -m "more" --autogenerate'))
    assert ok(shell, f"%migrate diff {written.revision}").rows[0].op == "create_table"


def test_mistakes_get_a_did_you_mean(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    written = ok(shell, HERO_CELL)
    assert "Did you mean 'upgrade'?" in str(failed(shell, "%migrate up"))
    assert "Did you mean '--autogenerate'?" in str(failed(shell, "%migrate revision -m x --autogenrate"))
    typo = written.revision[:-1] + ("0" if written.revision[-1] != "0" else "1")
    message = str(failed(shell, f"%migrate show {typo}"))
    assert f"Did you mean '{written.revision}'?" in message
    assert "stamp" not in message


def test_counts_are_singular_or_plural(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, HERO_CELL)
    assert ok(shell, "%migrate upgrade").summary.startswith("Upgraded 1 revision;")
    ok(shell, TEAM_CELL)
    ok(shell, '%migrate revision -m "an empty one"')
    assert ok(shell, "%migrate upgrade").summary.startswith("Upgraded 2 revisions;")


def test_deleting_an_applied_revision_is_refused_before_asking(
    shell: InteractiveShell, db_url: str, project: Path
) -> None:
    from framefox_magic.manager import AlembicManager
    from framefox_magic.widgets import MigrationPanel

    start(shell, db_url)
    written = ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    message = str(failed(shell, f"%migrate delete {written.revision}"))
    assert message.startswith(f"Refusing to delete {written.revision}: it is applied")
    assert "--yes" not in message

    panel = MigrationPanel(AlembicManager(db_url, project / "migrations"))
    panel.picker.value = written.revision
    panel.buttons["Delete"].click()
    assert panel.confirmation.layout.display == "none"
    assert "Refusing to delete" in panel.output.value
    assert Path(written.path).is_file()


# ---------------------------------------------------------------- a prototype anywhere


def throwaway_url(backend: str) -> str:
    """The URL of a database that does not exist yet on the backend's server."""
    from conftest import SERVER_URLS, need_server

    need_server(backend)
    return sa.make_url(SERVER_URLS[backend]).set(database=f"ffm_new_{uuid.uuid4().hex[:10]}") \
        .render_as_string(hide_password=False)


def database_exists(url: str) -> bool:
    from framefox_magic.provisioning import database_exists as exists

    return exists(url)


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_a_database_created_for_a_prototype_and_dropped_after(
    shell: InteractiveShell, server: str
) -> None:
    url = throwaway_url(server)
    name = sa.make_url(url).database
    message = str(failed(shell, f"%migrate init --url {url}\n%migrate status"))
    assert f"The database {name} does not exist" in message and "--create-database" in message
    try:
        ok(shell, f"%migrate init --url {url} --create-database")
        assert database_exists(url)
        ok(shell, HERO_CELL)
        ok(shell, "%migrate upgrade")
        assert "hero" in table_names(url)
        assert "--yes" in str(failed(shell, "%migrate drop-database"))
        assert ok(shell, "%migrate drop-database --yes").summary == f"Dropped the database {name}."
        assert not database_exists(url)
    finally:
        from framefox_magic.provisioning import drop_database

        drop_database(url)


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_the_database_the_settings_name_is_dropped_only_when_named(
    shell: InteractiveShell, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from framefox_magic.provisioning import create_database, drop_database

    url = throwaway_url(server)
    name = sa.make_url(url).database
    create_database(url)
    try:
        monkeypatch.setenv("DATABASE_URL", url)
        ok(shell, "%migrate init")
        message = str(failed(shell, "%migrate drop-database --yes"))
        assert "DATABASE_URL" in message and f"drop-database {name} --yes" in message
        assert database_exists(url)
        assert "nothing dropped" in str(failed(shell, "%migrate drop-database other --yes"))
        ok(shell, f"%migrate drop-database {name} --yes")
        assert not database_exists(url)
    finally:
        drop_database(url)


# ---------------------------------------------------------------- in a real Jupyter kernel


def kernel_run(kernel: str, folder: Path, *sources: str) -> list[Any]:
    """Run the cells in a Jupyter kernel as "Run all" does, errors allowed; the cells."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, kernel_name=kernel, timeout=180, allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb.cells


def streamed(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def error_text(cell: Any) -> str:
    return "\n".join("\n".join(o.traceback) for o in cell.outputs if o.output_type == "error")


def test_the_session_of_the_issue_in_a_kernel(python3_kernel: str, project: Path, db_url: str) -> None:
    cells = kernel_run(
        python3_kernel, project,
        "%load_ext framefox_magic", f"%migrate init --url {db_url}", HERO_CELL, "%migrate upgrade",
        TEAM_CELL, "class Foo:\n    pass",
        HERO_CELL.replace("create hero", "typo").replace("Field(default", "Fieldd(default"),
        "%migrate upgrade", "%migrate check",
    )
    for cell in cells:
        assert "Error in callback" not in streamed(cell)
    assert "create_table" in cells[4].outputs[0]["data"]["text/plain"]
    assert "team" in cells[4].outputs[0]["data"]["text/plain"]
    typo = error_text(cells[6])
    assert "NameError" in typo and "Fieldd" in typo
    assert "framefox_magic" not in typo and "run_cell_magic" not in typo
    assert not error_text(cells[8])  # no drop_table hero: the failed cell changed nothing
    assert {"hero", "team"} <= table_names(db_url)
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 2


def test_the_panel_refuses_a_new_revision_that_drops_every_table(
    shell: InteractiveShell, db_url: str, project: Path
) -> None:
    from framefox_magic.manager import AlembicManager
    from framefox_magic.metadata import forget_models
    from framefox_magic.widgets import MigrationPanel

    start(shell, db_url)
    ok(shell, HERO_CELL)
    ok(shell, "%migrate upgrade")
    forget_models(lambda cls: True)
    panel = MigrationPanel(AlembicManager(db_url, project / "migrations"))
    panel.message.value = "oops"
    panel.buttons["New revision"].click()
    assert "drop every table" in panel.output.value
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 1


def test_a_relationship_added_later_upgrades_and_downgrades(shell: InteractiveShell, db_url: str) -> None:
    start(shell, db_url)
    ok(shell, IMPORTS)
    ok(shell, FIVE_MODELS["Team"])
    ok(shell, FIVE_MODELS["Hero"].replace("team: Team | None = Relationship(back_populates=\"heroes\")", "")
       .replace("team_id: int | None = Field(default=None, foreign_key=\"team.id\")", ""))
    ok(shell, '%migrate revision -m "two tables" --autogenerate')
    ok(shell, "%migrate upgrade")
    ok(shell, FIVE_MODELS["Hero"])  # now with team_id -> team.id and a relationship
    written = ok(shell, '%migrate revision -m "hero in a team" --autogenerate')
    assert [row.op for row in written.diff.rows] == ["add_column", "create_foreign_key"]
    ok(shell, "%migrate upgrade")
    ok(shell, "%migrate downgrade -1 --yes")
    assert "team_id" not in column_names(db_url, "hero")
    ok(shell, "%migrate upgrade")
    assert ok(shell, "%migrate check").rows == []
    hero = ok(shell, "Hero(name='Rusty', team=Team(name='Preventers'))")
    assert hero.team.name == "Preventers"
