"""Processes and threads upgrading one database at once apply each revision once; a held lock
ends in a clear message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    assert_short,
    bounded,
    create_table,
    database_state,
    need_server,
    rows,
    table_names,
    version_rows,
    write_revision,
)

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError

# how manager._database_lock names its lock (pg advisory key / MySQL GET_LOCK name)
LOCK_NAME = "framefox_magic_migrations"


CHILD = textwrap.dedent('''
    import sys, time, pathlib
    import sqlalchemy
    from framefox_magic.manager import AlembicManager

    url, migrations, sync, number = sys.argv[1:5]
    manager = AlembicManager(url=url, migrations_dir=migrations, metadata=sqlalchemy.MetaData())
    sync = pathlib.Path(sync)
    (sync / f"ready-{number}").touch()
    deadline = time.monotonic() + 120
    while not (sync / "go").exists():  # start together
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.005)
    manager.upgrade("head")
''')


def logged_chain(manager: AlembicManager, length: int = 4) -> list[str]:
    """r1 creates the log table; each revision creates its own table and logs itself once.
    Every revision fails when applied a second time (its table exists already)."""
    ids = []
    for n in range(1, length + 1):
        statements = [create_table(f"t{n}")]
        if n == 1:
            statements.insert(0, 'op.create_table("run_log", sa.Column("rev", sa.String(8), nullable=False))')
            statements.append("import time\ntime.sleep(0.3)  # a slow first step: the others must wait")
        statements.append(f"op.execute(\"INSERT INTO run_log (rev) VALUES ('r{n}')\")")
        write_revision(manager, f"r{n}", *statements)
        ids.append(f"r{n}")
    return ids


@pytest.mark.servers
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_four_processes_upgrading_at_once_apply_each_revision_once(server, project, tmp_path):
    from conftest import fresh_database

    need_server(server)
    with fresh_database(server, tmp_path) as url:
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
        manager.init()
        ids = logged_chain(manager)
        sync = tmp_path / "sync"
        sync.mkdir()
        migrations = str(project / "migrations")
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, url, migrations, str(sync), str(n)],
                cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for n in range(4)
        ]
        try:
            deadline = time.monotonic() + 120
            while len(list(sync.glob("ready-*"))) < 4 and time.monotonic() < deadline:
                if any(p.poll() is not None for p in processes):
                    break
                time.sleep(0.01)
            (sync / "go").touch()
            results = [p.communicate(timeout=180) for p in processes]
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()

        failures = [(p.returncode, err[-2000:]) for p, (_, err) in zip(processes, results, strict=True)
                    if p.returncode != 0]
        assert failures == []
        assert version_rows(url) == ["r4"]
        assert sorted(r[0] for r in rows(url, "run_log")) == ids  # each revision ran exactly once
        assert {"t1", "t2", "t3", "t4"} <= table_names(url)


@contextmanager
def lock_held(url: str, server: str) -> Iterator[None]:
    """Hold the migration lock from another session, with the key manager._database_lock uses."""
    engine = sa.create_engine(url)
    connection = engine.connect()
    try:
        if server == "postgresql":
            key = zlib.crc32(LOCK_NAME.encode())
            assert connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            release = sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=key)
        else:
            name = f"{LOCK_NAME}:{sa.make_url(url).database}"[:64]
            assert connection.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar() == 1
            release = sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name)
        connection.commit()
        yield
        connection.execute(release)
        connection.commit()
    finally:
        connection.close()
        engine.dispose()


@pytest.mark.servers
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
@pytest.mark.parametrize("operation", ["upgrade", "downgrade"])
def test_a_held_lock_gives_a_clear_message_after_the_timeout(server, operation, project, tmp_path):
    from conftest import fresh_database

    need_server(server)
    with fresh_database(server, tmp_path) as url:
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project, lock_timeout=0.5)
        manager.init()
        write_revision(manager, "r1", create_table("t1"), downgrade='op.drop_table("t1")')
        write_revision(manager, "r2", create_table("t2"), downgrade='op.drop_table("t2")')
        if operation == "downgrade":
            manager.upgrade()
        run = (lambda: manager.upgrade()) if operation == "upgrade" else (lambda: manager.downgrade("base"))
        before = database_state(url)

        with lock_held(url, server):
            with pytest.raises(MigrationError) as caught:
                bounded(run, 60)
            assert database_state(url) == before

        message = str(caught.value)
        assert_short(message)
        assert "another" in message.lower() and "lock" in message.lower(), message
        assert "0.5" in message  # how long it waited
        bounded(run, 60)  # once the other session lets go, the same command goes through
        assert version_rows(url) == (["r2"] if operation == "upgrade" else [])


@pytest.mark.parametrize("managers", ["one manager", "a manager per thread"])
def test_threads_upgrading_and_reading_at_once_are_serialized(managers, project, db_url):
    shared = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    shared.init()
    ids = logged_chain(shared)

    def manager() -> AlembicManager:
        if managers == "one manager":
            return shared
        return AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)

    calls = [manager().upgrade, manager().upgrade, manager().upgrade,
             manager().status, manager().history, manager().current]
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []

    def work(call: Any) -> None:
        try:
            barrier.wait(timeout=60)
            results.append(call())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)

    assert not [t for t in threads if t.is_alive()], "a thread is still running"
    assert errors == []
    assert len(results) == len(calls)
    applied = [step.revision for r in results if getattr(r, "action", None) == "upgrade" for step in r.steps]
    assert sorted(applied) == ids  # the three upgrades applied r1..r4 once between them
    assert version_rows(db_url) == ["r4"]
    assert sorted(r[0] for r in rows(db_url, "run_log")) == ids


