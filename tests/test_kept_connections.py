"""Reads reuse the database connection between calls, and still see what others wrote; the
connections kept go away when the target changes or the extension is unloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import fresh_database
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import AlembicManager


def _record(url: str, revision: str | None) -> None:
    """Another connection (as another process would) rewrites the version table."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM alembic_version"))
        if revision:
            connection.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    engine.dispose()


def _open_connections(url: str) -> int:
    """Sessions other than ours connected to this database on the server."""
    parsed = sa.make_url(url)
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        if parsed.get_backend_name() == "postgresql"
        else "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :name AND ID <> CONNECTION_ID()"
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        count = connection.execute(sa.text(query), {"name": parsed.database}).scalar()
    engine.dispose()
    return int(count or 0)


def test_status_sees_what_another_process_recorded(project: Path, db_url: str) -> None:
    manager = AlembicManager(url=db_url, project_root=project, metadata=sa.MetaData())
    manager.init()
    first = manager.revision("one", autogenerate=False).revision
    second = manager.revision("two", autogenerate=False).revision
    manager.upgrade(first)
    assert manager.status().current == (first,)
    for expected in (second, None, first, second):
        _record(db_url, expected)
        status = manager.status()
        assert status.current == ((expected,) if expected else ())
        assert manager.history()[0].applied == (expected == second)
        assert status.up_to_date == (expected == second)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_unload_and_a_new_target_release_the_connections(
    shell: InteractiveShell, project: Path, tmp_path: Path, backend: str
) -> None:
    with fresh_database(backend, tmp_path) as url, fresh_database(backend, tmp_path) as other:
        shell.run_line_magic("migrate", f"init --url {url}")
        shell.run_line_magic("migrate", "upgrade")
        for _ in range(3):
            shell.run_line_magic("migrate", "status")
        assert _open_connections(url) == 1  # one kept for the next read, not one per call
        shell.run_line_magic("migrate", f"config --url {other}")
        shell.run_line_magic("migrate", "status")
        assert _open_connections(url) == 0
        assert _open_connections(other) == 1
        shell.run_line_magic("unload_ext", "framefox_magic")
        assert _open_connections(other) == 0
