"""Reliability: failed upgrades tell the truth, concurrent upgrades apply each revision once, and
destructive commands ask first, keep what they must and back up SQLite before they run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import need_server, table_names, version_rows
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError, MigrationFailed, RevisionProtected

# how manager._database_lock names its lock (pg advisory key / MySQL GET_LOCK name)
LOCK_NAME = "framefox_magic_migrations"
CLI = Path(sys.executable).with_name("framefox-migrate")
BAD_STATEMENT = 'op.execute("SELECT * FROM no_such_table")'


# ---------------------------------------------------------------- helpers


def create_table(name: str) -> str:
    return f'op.create_table("{name}", sa.Column("id", sa.Integer, primary_key=True))'


def write(manager: AlembicManager, rev_id: str, *statements: str, downgrade: str = "") -> str:
    """A hand-written revision with the given upgrade statements; its file path."""
    info = manager.revision(
        f"step {rev_id}", autogenerate=False, rev_id=rev_id,
        upgrade_body="\n".join(statements), downgrade_body=downgrade or None,
    )
    return info.path


def chain_of_four_whose_third_fails(manager: AlembicManager) -> str:
    """r1..r4 creating t1..t4; r3 creates t3, inserts into t1, then runs an invalid statement.
    The path of r3's file."""
    write(manager, "r1", create_table("t1"), downgrade='op.drop_table("t1")')
    write(manager, "r2", create_table("t2"), downgrade='op.drop_table("t2")')
    third = write(manager, "r3", create_table("t3"), 'op.execute("INSERT INTO t1 (id) VALUES (3)")',
                  BAD_STATEMENT, downgrade='op.drop_table("t3")')
    write(manager, "r4", create_table("t4"), downgrade='op.drop_table("t4")')
    return third


def rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def assert_short(message: str) -> None:
    """The documented short error: a handful of lines, no traceback text."""
    assert message.strip(), "empty error message"
    assert len(message.strip().splitlines()) <= 6, message
    assert len(message) < 2000, message
    assert "Traceback" not in message, message
    assert 'File "' not in message, message


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ROOT with its content (bytecode caches and SKIP names left out)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.name not in skip
        and not path.name.endswith("-journal")
    }


def database_state(url: str) -> tuple[Any, ...]:
    tables = sorted(table_names(url))
    contents = {t: sorted(rows(url, t)) for t in tables}
    return tables, version_rows(url), contents


@pytest.fixture
def manager(project: Path, db_url: str) -> AlembicManager:
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    return manager




def cell_error(shell: InteractiveShell, code: str) -> BaseException | None:
    return shell.run_cell(code).error_in_exec


# ---------------------------------------------------------------- 1. a failed upgrade tells the truth


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
    write(manager, "r1", create_table("t1"), BAD_STATEMENT)
    write(manager, "r2", create_table("t2"))

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


# ---------------------------------------------------------------- 2. concurrent upgrades

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
        write(manager, f"r{n}", *statements)
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



def bounded(call: Any, seconds: float = 120) -> Any:
    """Run CALL in a thread and give its result (or raise its error); fail instead of hanging."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


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
        write(manager, "r1", create_table("t1"), downgrade='op.drop_table("t1")')
        write(manager, "r2", create_table("t2"), downgrade='op.drop_table("t2")')
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


# ---------------------------------------------------------------- 5. destructive commands

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
        write(manager, f"r{n}", create_table(f"t{n}"), downgrade=f'op.drop_table("t{n}")')
    manager.upgrade("r2")
    execute(db_url, "INSERT INTO t1 (id) VALUES (42)")


def everything(tmp_path: Path, db_url: str) -> tuple[Any, ...]:
    """Files around the project (the SQLite file itself excepted: compared by content) + database."""
    return tree(tmp_path, skip=("test.db",)), database_state(db_url)


@pytest.fixture
def at_r2(shell: InteractiveShell, project: Path, db_url: str) -> AlembicManager:
    """A shell whose %migrate targets DB_URL; three revisions, the database at r2."""
    shell.run_line_magic("migrate", f"init --url {db_url}")
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    three_revisions_at_r2(manager, db_url)
    return manager


def run_cli(project: Path, db_url: str, *words: str) -> subprocess.CompletedProcess[str]:
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "framefox_magic.cli"]
    environment = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run([*command, *words], cwd=project, env=environment, capture_output=True,
                          text=True, timeout=180)


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
def test_destructive_cli_without_yes_is_refused_and_changes_nothing(line, project, tmp_path, db_url):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    three_revisions_at_r2(manager, db_url)
    before = everything(tmp_path, db_url)

    refused = run_cli(project, db_url, *line.split())

    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    assert_short(refused.stderr)
    assert everything(tmp_path, db_url) == before
    confirmed = run_cli(project, db_url, *line.split(), "--yes")
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
