"""A failing revision in a chain: the database keeps what went before and nothing of the
failing step, status shows it pending, a retry applies the rest, and the magic says which one failed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import (
    assert_short,
    create_table,
    execute,
    rows,
    table_names,
    version_rows,
    write_revision,
)
from IPython.core.error import UsageError

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationFailed

BAD_STATEMENT = 'op.execute("SELECT * FROM no_such_table")'


def chain_of_four_whose_third_fails(manager: AlembicManager) -> str:
    """r1..r4 creating t1..t4; r3 creates t3, inserts into t1, then runs an invalid statement.
    The path of r3's file."""
    write_revision(manager, "r1", create_table("t1"), downgrade='op.drop_table("t1")')
    write_revision(manager, "r2", create_table("t2"), downgrade='op.drop_table("t2")')
    third = write_revision(manager, "r3", create_table("t3"), 'op.execute("INSERT INTO t1 (id) VALUES (3)")',
                  BAD_STATEMENT, downgrade='op.drop_table("t3")')
    write_revision(manager, "r4", create_table("t4"), downgrade='op.drop_table("t4")')
    return third


def test_third_of_four_failing_keeps_the_second_and_nothing_of_the_third(manager, backend, db_url):
    chain_of_four_whose_third_fails(manager)

    with pytest.raises(MigrationFailed) as caught:
        manager.upgrade()

    error = caught.value
    message = str(error)
    assert error.revision == "r3"
    assert "r3" in message
    assert "no_such_table" in message  # the database's own words
    assert_short(message)
    assert version_rows(db_url) == ["r2"]
    tables = table_names(db_url)
    assert {"t1", "t2"} <= tables
    assert "t4" not in tables
    if backend == "mysql":
        # DDL is not transactional: the user is told plainly, with the statements that ran
        assert "partial" in message.lower()
        assert "CREATE TABLE t3" in message
        assert "CREATE TABLE t2" not in message  # only the failing revision's statements
    else:
        assert "t3" not in tables
        assert rows(db_url, "t1") == []  # r3's insert went with it
        assert "partial" not in message.lower()


def test_failure_of_the_first_revision_leaves_the_database_at_base(manager, backend, db_url):
    write_revision(manager, "r1", create_table("t1"), BAD_STATEMENT)
    write_revision(manager, "r2", create_table("t2"))

    with pytest.raises(MigrationFailed) as caught:
        manager.upgrade()

    assert caught.value.revision == "r1"
    assert_short(str(caught.value))
    assert version_rows(db_url) == []
    assert "t2" not in table_names(db_url)
    if backend != "mysql":
        assert "t1" not in table_names(db_url)


def test_status_after_a_failed_upgrade_shows_the_failing_revision_pending(manager, db_url):
    chain_of_four_whose_third_fails(manager)
    with pytest.raises(MigrationFailed):
        manager.upgrade()

    status = manager.status()

    assert status.current == ("r2",)
    assert status.pending == ("r3", "r4")
    assert status.up_to_date is False


def test_retry_after_fixing_the_revision_file_applies_the_rest(manager, backend, db_url):
    third = Path(chain_of_four_whose_third_fails(manager))
    with pytest.raises(MigrationFailed):
        manager.upgrade()
    if backend == "mysql":  # the error said r3 may have left partial changes: the user removes them
        execute(db_url, "DROP TABLE IF EXISTS t3")
    source = third.read_text()
    assert BAD_STATEMENT in source
    third.write_text(source.replace(BAD_STATEMENT, "# fixed: the bad statement is gone"))

    done = manager.upgrade()

    assert [step.revision for step in done.steps] == ["r3", "r4"]
    assert version_rows(db_url) == ["r4"]
    assert {"t1", "t2", "t3", "t4"} <= table_names(db_url)
    assert rows(db_url, "t1") == [(3,)]


def test_failed_upgrade_through_the_magic_is_a_usage_error_naming_the_revision(
    shell, project, backend, db_url, capsys
):
    shell.run_line_magic("migrate", f"init --url {db_url}")
    chain_of_four_whose_third_fails(AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project))
    capsys.readouterr()

    result = shell.run_cell("%migrate upgrade")

    output = "".join(capsys.readouterr())
    assert not result.success
    assert isinstance(result.error_in_exec, UsageError), repr(result.error_in_exec)
    message = str(result.error_in_exec)
    assert "r3" in message
    assert "no_such_table" in message
    assert_short(message)
    assert "Traceback" not in output
    assert version_rows(db_url) == ["r2"]
    if backend != "mysql":
        assert "t3" not in table_names(db_url)


def test_failed_upgrade_through_the_magic_direct_call_raises_usage_error(shell, project, db_url):
    shell.run_line_magic("migrate", f"init --url {db_url}")
    chain_of_four_whose_third_fails(AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project))

    with pytest.raises(UsageError, match="r3"):
        shell.run_line_magic("migrate", "upgrade")


