"""Destructive commands ask for --yes, refuse to delete what others build on, keep env.py and
the template, and back SQLite up before they run."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    assert_short,
    create_table,
    database_state,
    execute,
    files_under,
    rows,
    run_cli,
    table_names,
    version_rows,
    write_revision,
)
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError, RevisionProtected

DESTRUCTIVE = {
    "downgrade": "downgrade -1",
    "delete": "delete r3",
    "clear-history": "clear-history",
    "clean": "clean",
    "reset": "reset",
    "stamp --purge": "stamp r1 --purge",
}


def three_revisions_at_r2(manager: AlembicManager, db_url: str) -> None:
    """r1..r3 creating t1..t3 (dropped on downgrade); the database at r2, with a row in t1."""
    for n in (1, 2, 3):
        write_revision(manager, f"r{n}", create_table(f"t{n}"), downgrade=f'op.drop_table("t{n}")')
    manager.upgrade("r2")
    execute(db_url, "INSERT INTO t1 (id) VALUES (42)")


def everything(tmp_path: Path, db_url: str) -> tuple[Any, ...]:
    """Files around the project (the SQLite file itself excepted: compared by content) + database."""
    return files_under(tmp_path, skip=("test.db",)), database_state(db_url)


@pytest.fixture
def at_r2(shell: InteractiveShell, project: Path, db_url: str) -> AlembicManager:
    """A shell whose %migrate targets DB_URL; three revisions, the database at r2."""
    shell.run_line_magic("migrate", f"init --url {db_url}")
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    three_revisions_at_r2(manager, db_url)
    return manager


@pytest.mark.parametrize("line", DESTRUCTIVE.values(), ids=list(DESTRUCTIVE))
def test_destructive_magic_without_yes_is_refused_and_changes_nothing(
    line, shell, at_r2, tmp_path, db_url, capsys
):
    before = everything(tmp_path, db_url)
    capsys.readouterr()

    result = shell.run_cell(f"%migrate {line}")

    output = "".join(capsys.readouterr())
    assert isinstance(result.error_in_exec, UsageError), repr(result.error_in_exec)
    message = str(result.error_in_exec)
    assert "--yes" in message
    assert_short(message)
    assert "Traceback" not in output
    assert everything(tmp_path, db_url) == before
    # the same line with --yes does change something: the refusal was about --yes alone
    shell.run_line_magic("migrate", f"{line} --yes")
    assert everything(tmp_path, db_url) != before


@pytest.mark.parametrize("line", DESTRUCTIVE.values(), ids=list(DESTRUCTIVE))
def test_destructive_cli_without_yes_is_refused_and_changes_nothing(
    line, project, tmp_path, db_url, cli_main
):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    three_revisions_at_r2(manager, db_url)
    before = everything(tmp_path, db_url)

    refused = cli_main(project, db_url, *line.split())

    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    assert_short(refused.stderr)
    assert everything(tmp_path, db_url) == before
    confirmed = cli_main(project, db_url, *line.split(), "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert everything(tmp_path, db_url) != before


def test_delete_refuses_an_applied_revision_unless_forced(shell, at_r2, project, tmp_path, db_url):
    before = everything(tmp_path, db_url)

    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("migrate", "delete r1 --yes")

    assert "r1" in str(caught.value) and "applied" in str(caught.value)
    assert everything(tmp_path, db_url) == before
    shell.run_line_magic("migrate", "delete r1 --yes --force")
    versions = project / "migrations" / "versions"
    assert not list(versions.glob("r1_*.py"))
    assert list((project / "migrations" / ".trash").glob("*/r1_*.py"))


def test_delete_refuses_a_revision_that_others_build_on_unless_forced(shell, at_r2, project, tmp_path,
                                                                      db_url):
    at_r2.downgrade("r1")
    before = everything(tmp_path, db_url)

    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("migrate", "delete r2 --yes")

    assert "r3" in str(caught.value)  # who builds on it
    assert everything(tmp_path, db_url) == before
    shell.run_line_magic("migrate", "delete r2 --yes --force")
    assert not list((project / "migrations" / "versions").glob("r2_*.py"))


def test_delete_refuses_a_revision_another_branch_depends_on(shell, at_r2, tmp_path, db_url):
    at_r2.revision("other", autogenerate=False, rev_id="x1", head="base", branch_label="other",
                   depends_on="r3")
    before = everything(tmp_path, db_url)

    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("migrate", "delete r3 --yes")

    assert "x1" in str(caught.value)
    assert everything(tmp_path, db_url) == before


def test_delete_of_an_applied_revision_through_the_api_needs_force(project, db_url, tmp_path):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    three_revisions_at_r2(manager, db_url)
    before = everything(tmp_path, db_url)

    with pytest.raises(RevisionProtected):
        manager.delete("r2")
    with pytest.raises(RevisionProtected):
        manager.delete("r1")

    assert everything(tmp_path, db_url) == before


def test_cli_delete_of_an_applied_revision_is_refused(project, tmp_path, db_url):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    three_revisions_at_r2(manager, db_url)
    before = everything(tmp_path, db_url)

    refused = run_cli(project, db_url, "delete", "r1", "--yes")

    assert refused.returncode != 0
    assert "r1" in refused.stderr
    assert everything(tmp_path, db_url) == before


@pytest.mark.parametrize("command", ["clean", "reset"])
def test_clean_and_reset_keep_env_py_and_the_template(command, shell, at_r2, project, db_url):
    migrations = project / "migrations"
    env_py = migrations / "env.py"
    env_py.write_text(env_py.read_text() + "\n# edited by the user: keep me\n")
    kept = {name: (migrations / name).read_bytes() for name in ("env.py", "script.py.mako")}
    ini = (project / "alembic.ini").read_bytes()

    shell.run_line_magic("migrate", f"{command} --yes")

    assert not list((migrations / "versions").glob("*.py"))
    assert {name: (migrations / name).read_bytes() for name in kept} == kept
    assert (project / "alembic.ini").read_bytes() == ini
    assert version_rows(db_url) == ([] if command == "reset" else ["r2"])
    assert {"t1", "t2"} <= table_names(db_url)  # the schema itself is left as it is
    # the project still works: a new revision is written from the kept template
    written = shell.run_line_magic("migrate", "revision -m again --rev-id again")
    assert Path(written.path).is_file()
    compile(Path(written.path).read_text(), written.path, "exec")
    if command == "reset":  # after clean the database still names r2, whose file is gone
        assert [r.revision for r in shell.run_line_magic("migrate", "history")] == ["again"]


SQLITE_BACKED_UP = {
    "downgrade": "downgrade -1 --yes",
    "clear-history": "clear-history --yes",
    "reset": "reset --yes",
    "stamp --purge": "stamp r1 --purge --yes",
}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("line", SQLITE_BACKED_UP.values(), ids=list(SQLITE_BACKED_UP))
def test_sqlite_is_backed_up_before_a_destructive_command(line, backend, shell, at_r2, db_url):
    database = Path(sa.make_url(db_url).database)
    tables_before = table_names(db_url)

    result = shell.run_line_magic("migrate", line)

    assert result.backup, "no backup reported"
    backup = Path(result.backup)
    assert backup.is_file()
    assert backup.parent == database.parent / ".backups"
    assert result.backup in repr(result)
    assert result.backup in result._repr_html_()
    copy_url = f"sqlite:///{backup}"
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()
    assert table_names(copy_url) == tables_before
    assert version_rows(copy_url) == ["r2"]
    assert rows(copy_url, "t1") == [(42,)]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_backup_is_reported_by_the_cli(backend, project, tmp_path, db_url):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    three_revisions_at_r2(manager, db_url)

    done = run_cli(project, db_url, "clear-history", "--yes")

    assert done.returncode == 0, done.stderr
    backups = list((tmp_path / ".backups").iterdir())
    assert len(backups) == 1
    assert str(backups[0]) in done.stdout
    assert version_rows(f"sqlite:///{backups[0]}") == ["r2"]
    assert version_rows(db_url) == []


@pytest.mark.parametrize("via", ["api", "magic"])
def test_stamp_purge_to_an_unknown_revision_keeps_the_version_rows(via, shell, at_r2, tmp_path, db_url):
    before = everything(tmp_path, db_url)

    if via == "api":
        with pytest.raises(MigrationError) as caught:
            at_r2.stamp("no_such_rev", purge=True)
    else:
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("migrate", "stamp no_such_rev --purge --yes")

    assert "no_such_rev" in str(caught.value)
    assert version_rows(db_url) == ["r2"]  # a typo must not wipe the version history
    assert database_state(db_url) == before[1]
