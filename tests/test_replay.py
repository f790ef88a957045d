"""Fan-out migrations with init's env.py: revisions rendered once per dialect, replayed per target.

Their result must be the one alembic gives when it runs each target on its own (a project whose
env.py is not init's runs that way), on PostgreSQL tenant schemas, MariaDB databases, SQLite files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import fresh_database
from test_fanout import add_customers, make_project, summary, tables_in, versions_in

from framefox_magic import AlembicManager

# a revision with a percent sign in its SQL, and one that reads each target's own data (it cannot be
# rendered once: it runs its own Python on each target, online)
LATER = (
    ("r4", "welcome note", "op.execute(\"INSERT INTO note (id, body) VALUES (1, '100% welcome')\")",
     "op.execute('DELETE FROM note')"),
    ("r5", "count customers",
     "from alembic import context\n"
     "assert not context.is_offline_mode()\n"
     "count = op.get_bind().execute(sa.text('SELECT count(*) FROM customer')).scalar()\n"
     "op.execute(f'INSERT INTO item (id) VALUES ({100 + count})')",
     "op.execute('DELETE FROM item')"),
)
HEAD = "r5"


def project(root: Path, url: str, own_env: bool, later: tuple = LATER) -> AlembicManager:
    """The test history (r1..r5); `own_env`: an env.py that is not init's (alembic per target)."""
    manager = make_project(root, url)
    for rev_id, message, upgrade, downgrade in later:
        manager.revision(message, autogenerate=False, rev_id=rev_id, upgrade_body=upgrade,
                         downgrade_body=downgrade)
    if own_env:
        env_py = root / "migrations" / "env.py"
        env_py.write_text(env_py.read_text() + "\n# the project's own changes\n")
    return manager


class Targets:
    """Two equal groups of targets on one backend: (spec, [(url, schema)]) for groups a and b.
    Target n has n + 1 customers; target 1's customer has no email (revision r2 fails there)."""

    def __init__(self, backend: str, root: Path, stack: ExitStack, count: int = 3) -> None:
        self.groups: dict[str, tuple[str, list[tuple[str, str | None]]]] = {}
        if backend == "postgresql":
            self.home = stack.enter_context(fresh_database("postgresql", root))
            for group in "ab":
                self.groups[group] = (f"schemas:{group}\\_%",
                                      [(self.home, f"{group}_{n}") for n in range(count)])
        elif backend == "mysql":
            self.home = f"sqlite:///{root / 'home.db'}"
            for group in "ab":
                urls = [stack.enter_context(fresh_database("mysql", root)) for _ in range(count)]
                (root / f"{group}.txt").write_text("\n".join(urls) + "\n")
                self.groups[group] = (f"file:{root / group}.txt", [(url, None) for url in urls])
        else:
            self.home = f"sqlite:///{root / 'home.db'}"
            for group in "ab":
                (root / group).mkdir()
                self.groups[group] = (f"sqlite:{root / group}/*.db",
                                      [(f"sqlite:///{root / group}/{n}.db", None) for n in range(count)])
        for _, targets in self.groups.values():
            for number, (url, schema) in enumerate(targets):
                fill(url, schema, number)

    def spec(self, group: str) -> str:
        return self.groups[group][0]

    def state(self, group: str) -> list[tuple]:
        """Each target's version table, tables and rows, read back with a fresh engine."""
        return [(versions_in(url, schema), sorted(tables_in(url, schema)), contents(url, schema))
                for url, schema in self.groups[group][1]]


def fill(url: str, schema: str | None, number: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        if schema:
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
        add_customers(connection, schema, None if number == 1 else "a@b.c")
        prefix = f"{schema}." if schema else ""
        for extra in range(number):
            connection.execute(sa.text(f"INSERT INTO {prefix}customer VALUES ({extra + 2}, 'x@y.z')"))
    engine.dispose()


def contents(url: str, schema: str | None) -> dict[str, list]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            found = sa.inspect(connection).get_table_names(schema=schema)
            prefix = f"{schema}." if schema else ""
            return {table: sorted(map(tuple, connection.execute(sa.text(f"SELECT * FROM {prefix}{table}"))))
                    for table in ("item", "note") if table in found}
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def targets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Targets]:
    with ExitStack() as stack:
        yield Targets(request.param, tmp_path, stack)


def test_replayed_run_gives_what_alembic_gives_on_each_target(targets: Targets, tmp_path: Path) -> None:
    replayed = project(tmp_path / "replayed", targets.home, own_env=False)
    per_target = project(tmp_path / "per_target", targets.home, own_env=True)
    fast = replayed.for_targets(targets.spec("a"), jobs=3, keep_going=True).upgrade()
    slow = per_target.for_targets(targets.spec("b"), jobs=1, keep_going=True).upgrade()
    assert summary(fast) == summary(slow)
    assert [row.state for row in fast] == ["upgraded", "failed", "upgraded"]
    failed = fast.rows[1]
    assert failed.error.startswith("Revision r2 (customer email required) failed: ")
    assert (failed.before, failed.after) == ((), ("r1",))
    assert targets.state("a") == targets.state("b")
    at_head = targets.state("a")[2]
    assert at_head[0] == [HEAD]  # each target counted its own customers (3), the note kept its %
    assert at_head[2] == {"item": [(103,)], "note": [(1, "100% welcome")]}

    back = replayed.for_targets(targets.spec("a"), jobs=3, keep_going=True).downgrade("r3")
    back_slow = per_target.for_targets(targets.spec("b"), jobs=1, keep_going=True).downgrade("r3")
    assert summary(back) == summary(back_slow)
    assert targets.state("a") == targets.state("b")
    assert targets.state("a")[0][2] == {"item": [], "note": []}


def test_interrupted_replay_leaves_each_target_at_a_revision_it_records(targets: Targets,
                                                                         tmp_path: Path) -> None:
    manager = project(tmp_path / "project", targets.home, own_env=False)

    def interrupt_at_first(done: int, total: int, row) -> None:
        raise KeyboardInterrupt

    result = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade(
        on_target=interrupt_at_first)
    assert result.interrupted and not result.ok
    tables_at = {(): {"customer"}, ("r1",): {"customer", "item"}, ("r2",): {"customer", "item"}}
    for row, (versions, tables, _) in zip(result, targets.state("a"), strict=True):
        assert tuple(versions) == row.after
        expected = tables_at.get(row.after, {"customer", "item", "note"})
        assert set(tables) - {"alembic_version"} == expected
    resumed = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
    assert [row.after for row in resumed] == [(HEAD,), ("r1",), (HEAD,)]


def test_revision_failing_half_way_leaves_nothing_of_it_on_postgresql(tmp_path: Path) -> None:
    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack, count=4)
        engine = sa.create_engine(targets.home)  # a_3 already has an index named like r3's second one
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE INDEX ix_note_id ON a_3.customer (id)"))
        engine.dispose()
        manager = project(tmp_path / "project", targets.home, own_env=False)
        result = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        failed = result.rows[3]
        assert failed.error.startswith("Revision r3 (create note) failed: ")
        assert (failed.before, failed.after) == ((), ("r2",))
        versions, tables, _ = targets.state("a")[3]
        assert versions == ["r2"] and "note" not in tables  # r3's CREATE TABLE was rolled back too
        assert [row.state for row in result] == ["upgraded", "failed", "upgraded", "failed"]


def test_a_revision_making_a_value_per_run_gives_each_target_its_own(tmp_path: Path) -> None:
    with ExitStack() as stack:
        targets = Targets("sqlite", tmp_path, stack)
        manager = project(tmp_path / "project", targets.home, own_env=False)
        manager.revision("device id", autogenerate=False, rev_id="r6", upgrade_body=(
            "import uuid\n"
            "op.execute(f\"INSERT INTO note (id, body) VALUES (2, '{uuid.uuid4()}')\")"),
            downgrade_body="op.execute('DELETE FROM note WHERE id = 2')")
        manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        notes = [state[2]["note"] for state in targets.state("a") if state[0] == ["r6"]]
        assert len(notes) == 2 and notes[0] != notes[1]


# ---------------------------------------------------------------- whole scripts on PostgreSQL


def renderable_project(root: Path, url: str, own_env: bool) -> AlembicManager:
    """r1..r4: every revision renders offline, so PostgreSQL tenants get whole scripts."""
    return project(root, url, own_env, later=LATER[:1])


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """Every statement any engine sends to a database during the test."""
    statements: list[str] = []

    def record(conn, cursor, statement, *_):
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield statements
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def transactions(statements: list[str]) -> list[str]:
    return [statement for statement in statements if statement.startswith("BEGIN;")]


def test_each_tenant_gets_a_revision_and_its_version_row_in_one_round_trip(tmp_path: Path,
                                                                           sent: list[str]) -> None:
    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack)
        fast = renderable_project(tmp_path / "fast", targets.home, own_env=False)
        slow = renderable_project(tmp_path / "slow", targets.home, own_env=True)
        sent.clear()
        result = fast.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        # a_0 and a_2 run r1..r4, a_1 runs r1 then fails in r2 (a customer has no email)
        assert len(transactions(sent)) == 4 + 2 + 4
        assert all(text.rstrip().endswith("COMMIT") and "alembic_version" in text
                   for text in transactions(sent))
        expected = slow.for_targets(targets.spec("b"), jobs=1, keep_going=True).upgrade()
        assert summary(result) == summary(expected)
        assert result.rows[1].error.startswith("Revision r2 (customer email required) failed: ")
        assert targets.state("a") == targets.state("b")
        assert targets.state("a")[0][2] == {"item": [], "note": [(1, "100% welcome")]}


def test_tenants_downgraded_to_base_and_upgraded_again_match_alembic(tmp_path: Path) -> None:
    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack)
        fast = renderable_project(tmp_path / "fast", targets.home, own_env=False)
        slow = renderable_project(tmp_path / "slow", targets.home, own_env=True)
        for manager, group in ((fast, "a"), (slow, "b")):
            manager.for_targets(targets.spec(group), jobs=2, keep_going=True).upgrade()
            down = manager.for_targets(targets.spec(group), jobs=2, keep_going=True).downgrade("base")
            assert [row.after for row in down] == [(), (), ()]
        assert targets.state("a") == targets.state("b")  # the version tables stay, empty
        again = fast.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        again_slow = slow.for_targets(targets.spec("b"), jobs=2, keep_going=True).upgrade()
        assert summary(again) == summary(again_slow)
        assert [row.after for row in again] == [("r4",), ("r1",), ("r4",)]
        assert targets.state("a") == targets.state("b")


def test_a_run_leaves_no_lock_and_no_connection_behind(tmp_path: Path) -> None:
    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack, count=6)
        manager = renderable_project(tmp_path / "project", targets.home, own_env=False)
        manager.for_targets(targets.spec("a"), jobs=3, keep_going=True).upgrade()
        engine = sa.create_engine(targets.home)
        with engine.connect() as connection:
            locks = connection.execute(sa.text(  # pg_locks is the server's: this database's only
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalar()
            sessions = connection.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalar()
        engine.dispose()
        assert (locks, sessions) == (0, 0)


def tenants_and_another_session(tmp_path: Path, stack: ExitStack) -> tuple[Targets, AlembicManager,
                                                                          sa.Connection]:
    """Tenants a_0..a_2, the whole-script project, and another session on their database."""
    targets = Targets("postgresql", tmp_path, stack)
    manager = renderable_project(tmp_path / "project", targets.home, own_env=False)
    engine = sa.create_engine(targets.home, poolclass=sa.pool.NullPool)  # closing it ends the session
    stack.callback(engine.dispose)
    return targets, manager, stack.enter_context(engine.connect())


def test_a_tenant_another_process_is_migrating_waits_then_fails_alone(tmp_path: Path) -> None:
    from framefox_magic.fanout import Target, lock_key

    with ExitStack() as stack:
        targets, manager, holder = tenants_and_another_session(tmp_path, stack)
        manager.lock_timeout = 0.3
        holder.execute(sa.text("SELECT pg_advisory_lock(:key)"),
                       {"key": lock_key(Target(targets.home, "a_2"))})
        result = manager.for_targets(targets.spec("a"), jobs=1, keep_going=True).upgrade()
        assert [row.state for row in result] == ["upgraded", "failed", "failed"]
        assert "Another process is migrating this target" in result.rows[2].error
        assert versions_in(targets.home, "a_2") == []
        holder.close()
        resumed = manager.for_targets(targets.spec("a"), jobs=1, keep_going=True).upgrade()
        assert [row.after for row in resumed] == [("r4",), ("r1",), ("r4",)]


def test_an_interrupted_script_run_leaves_tenants_at_revisions_they_record(tmp_path: Path) -> None:
    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack, count=5)
        manager = renderable_project(tmp_path / "project", targets.home, own_env=False)

        def interrupt_at_second(done: int, total: int, row) -> None:
            if done == 2:
                raise KeyboardInterrupt

        result = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade(
            on_target=interrupt_at_second)
        assert result.interrupted
        for row, (versions, tables, _) in zip(result, targets.state("a"), strict=True):
            assert tuple(versions) == row.after
            assert ("note" in tables) == (row.after == ("r4",))
            if row.state == "interrupted":
                assert row.error == "interrupted part-way: the revisions that committed are kept"
            elif row.state == "not run":
                assert row.error == "not started: interrupted"
        resumed = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        assert [row.after for row in resumed] == [("r4",), ("r1",), ("r4",), ("r4",), ("r4",)]


INTERRUPTED_RUN = """
import json, signal
# a kernel handles SIGINT; a process started in the background (a CI job) inherits it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from framefox_magic import AlembicManager
manager = AlembicManager(url={url!r}, migrations_dir={migrations!r}, project_root={root!r})
result = manager.for_targets({spec!r}, jobs=1, keep_going=True).upgrade()
print(json.dumps([result.interrupted, [[r.state, list(r.after), r.error, r.seconds] for r in result.rows]]))
"""


@pytest.mark.parametrize("first_revision_of_the_run", [False, True])
def test_ctrl_c_inside_a_revision_rolls_that_revision_back_and_keeps_the_ones_before(
        tmp_path: Path, first_revision_of_the_run: bool) -> None:
    import json
    import signal
    import subprocess
    import sys

    with ExitStack() as stack:
        targets = Targets("postgresql", tmp_path, stack)
        root = tmp_path / "project"
        manager = renderable_project(root, targets.home, own_env=False)
        if first_revision_of_the_run:
            manager.for_targets(targets.spec("a"), jobs=1).upgrade()
        manager.revision("slow", autogenerate=False, rev_id="r5", upgrade_body=(
            "op.create_table('slow', sa.Column('id', sa.Integer, primary_key=True))\n"
            "op.execute('SELECT pg_sleep(3)')"), downgrade_body="op.drop_table('slow')")
        # a kernel of its own, its main thread running the upgrade; a kernel's interrupt is a SIGINT
        started = time.perf_counter()
        kernel = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN.format(
            url=targets.home, migrations=str(root / "migrations"), root=str(root), spec=targets.spec("a"))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        engine = sa.create_engine(targets.home)
        stack.callback(engine.dispose)
        with engine.connect() as watcher:
            while kernel.poll() is None and not watcher.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND query LIKE '%pg_sleep(3)%' "
                    "AND pid <> pg_backend_pid()")).scalar():
                watcher.rollback()
                time.sleep(0.02)
        kernel.send_signal(signal.SIGINT)
        out, err = kernel.communicate(timeout=60)
        interrupted, rows = json.loads(out.strip().splitlines()[-1])
        assert interrupted, (rows, err)
        why = ("interrupted before any of its revisions committed" if first_revision_of_the_run
               else "interrupted part-way: the revisions that committed are kept")
        assert rows[0][:3] == ["interrupted", ["r4"], why]
        # it ran until the interrupt: at least the revisions before the slow one, not 0.00
        assert 0.01 < rows[0][3] < time.perf_counter() - started
        assert [row[0] for row in rows[1:]] == ["not run", "not run"]
        assert [row[3] for row in rows[1:]] == [0.0, 0.0]
        versions, tables, _ = targets.state("a")[0]
        assert versions == ["r4"] and "slow" not in tables and "note" in tables


def test_a_file_of_many_postgresql_databases_opens_no_more_connections_than_jobs(tmp_path: Path) -> None:
    with ExitStack() as stack:
        urls = [stack.enter_context(fresh_database("postgresql", tmp_path)) for _ in range(5)]
        for number, url in enumerate(urls):
            fill(url, None, number + 2)  # every target can take r2
        (tmp_path / "targets.txt").write_text("\n".join(urls) + "\n")
        manager = renderable_project(tmp_path / "project", f"sqlite:///{tmp_path / 'home.db'}",
                                     own_env=False)
        names = [sa.make_url(url).database for url in urls]
        engine = sa.create_engine(urls[0])
        watcher = stack.enter_context(engine.connect())
        seen: list[int] = []

        def count_sessions(done: int, total: int, row) -> None:
            seen.append(watcher.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(:names) "
                "AND pid <> pg_backend_pid()"), {"names": names}).scalar())
            watcher.rollback()

        result = manager.for_targets(f"file:{tmp_path / 'targets.txt'}", jobs=2).upgrade(
            on_target=count_sessions)
        assert [row.after for row in result] == [("r4",)] * 5
        assert max(seen) <= 2
        assert [versions_in(url) for url in urls] == [["r4"]] * 5
        watcher.close()
        engine.dispose()


def test_a_tenant_whose_table_another_session_locks_fails_after_the_ddl_lock_timeout(
        tmp_path: Path) -> None:
    import threading

    with ExitStack() as stack:
        targets, manager, holder = tenants_and_another_session(tmp_path, stack)
        manager.ddl_lock_timeout = 0.5
        holder.execute(sa.text("LOCK TABLE a_2.customer IN ACCESS EXCLUSIVE MODE"))  # a long report
        release = threading.Timer(15, holder.rollback)  # without the timeout, r2 would wait for it
        release.start()
        result = manager.for_targets(targets.spec("a"), jobs=2, keep_going=True).upgrade()
        release.cancel()
        holder.rollback()
        assert [row.state for row in result] == ["upgraded", "failed", "failed"]
        assert "lock timeout" in result.rows[2].error
        assert result.rows[2].after == ("r1",)
        assert versions_in(targets.home, "a_2") == ["r1"]
