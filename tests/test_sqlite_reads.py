"""On a plain SQLite file, reading commands read the version table with the standard library's
sqlite3, read-only, and the answer is the engine's: the same rows in the same order; a missing file
or a writer holding the file takes the engine's path as before."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import create_table, write_revision

from framefox_magic import AlembicManager
from framefox_magic.errors import VersionTableUnreadable

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def two_heads(manager: AlembicManager, db_url: str) -> AlembicManager:
    write_revision(manager, "a1", create_table("a"))
    write_revision(manager, "b2", create_table("b"))
    path = Path(write_revision(manager, "c3", create_table("c")))
    path.write_text(re.sub(r"^(down_revision\b.*= ).*$", r"\1'a1'", path.read_text(), flags=re.MULTILINE))
    manager.upgrade("heads")
    return manager


@sqlite_only
def test_current_heads_are_the_rows_as_the_version_table_holds_them(two_heads: AlembicManager,
                                                                    db_url: str) -> None:
    with closing(sqlite3.connect(db_url.split(":///", 1)[1])) as connection:
        stored = tuple(row[0] for row in connection.execute("SELECT version_num FROM alembic_version"))

    assert two_heads.status().current == stored and set(stored) == {"b2", "c3"}
    assert [info.revision for info in two_heads.current()] == list(stored)
    assert {info.revision for info in two_heads.history() if info.current} == {"b2", "c3"}


def test_a_missing_database_file_is_read_as_before(project: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'not_yet.db'}"
    manager = AlembicManager(url=url, project_root=project)
    manager.init()
    write_revision(manager, "a1", create_table("a"))

    status = manager.status()

    assert status.current == () and status.pending == ("a1",)
    assert (tmp_path / "not_yet.db").exists()  # the engine's path opens (creates) it, as before


@sqlite_only
def test_a_writer_holding_the_file_is_waited_for(two_heads: AlembicManager, db_url: str) -> None:
    two_heads.lock_timeout = 30  # the busy timeout: a bound on this test, should the writer stay
    writer = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    releaser = threading.Thread(target=lambda: (time.sleep(0.5), writer.execute("ROLLBACK")))
    releaser.start()
    try:
        assert set(two_heads.status().current) == {"b2", "c3"}
    finally:
        releaser.join()
        writer.close()


@sqlite_only
def test_listing_a_sqlite_history_needs_no_sqlalchemy_engine(two_heads: AlembicManager, project: Path,
                                                            db_url: str) -> None:
    probe = (f"from framefox_magic import AlembicManager\n"
             f"history = AlembicManager(url={db_url!r}, project_root={str(project)!r}).history()\n"
             "import sys\n"
             "print(sorted(r.revision for r in history if r.current),\n"
             "      'sqlalchemy.dialects.sqlite.pysqlite' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["['b2',", "'c3']", "False"]


@sqlite_only
def test_a_writer_that_stays_is_reported_after_one_lock_timeout_not_two(two_heads: AlembicManager,
                                                                       db_url: str) -> None:
    two_heads.lock_timeout = 2.0
    writer = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    began = time.monotonic()
    try:
        with pytest.raises(VersionTableUnreadable, match="locked by another process"):
            two_heads.status()
        waited = time.monotonic() - began
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert waited < 3.5  # the busy timeout once (2 s), not once for the rows and again for the table
