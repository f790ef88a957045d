"""Nothing hangs and the lock speaks: connect and DDL lock timeouts, who holds the migration lock,
SQLite upgraders taking turns, long MariaDB database names, and the first error winning when the
connection drops mid-revision."""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import SERVER_URLS, bounded, need_server, table_names, version_rows

from framefox_magic import AlembicManager
from framefox_magic.errors import DatabaseUnreachable, MigrationError, MigrationFailed

SERVERS = ["postgresql", "mysql"]
BOUND = 60  # seconds: a bound against hangs, not a speed requirement

# r1 waits, when run by a helper process, until the test lets it go: the lock stays held meanwhile
WAITING_BODY = """import os, time
from pathlib import Path
bind = op.get_bind()
if os.environ.get("FFM_READY"):
    who = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}.get(bind.dialect.name)
    Path(os.environ["FFM_READY"]).write_text(str(bind.exec_driver_sql(who).scalar() if who else os.getpid()))
    while not Path(os.environ["FFM_RELEASE"]).exists():
        time.sleep(0.05)
"""


def project_with_two(project: Path, url: str, **options: Any) -> AlembicManager:
    """r1 (waits when a helper process runs it), r2 (creates t2)."""
    manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project, **options)
    manager.init()
    manager.revision("wait", autogenerate=False, rev_id="r1", upgrade_body=WAITING_BODY)
    manager.revision("t2", autogenerate=False, rev_id="r2",
                     upgrade_body="op.create_table('t2', sa.Column('id', sa.Integer))",
                     downgrade_body="op.drop_table('t2')")
    return manager


@contextmanager
def upgrade_in_another_process(project: Path, url: str, tmp_path: Path) -> Iterator[str]:
    """Another process upgrading the database, stopped inside r1 with the lock held. Yields its
    session id (PostgreSQL pid, MariaDB connection id) as r1 read it."""
    ready, release = tmp_path / f"ready-{uuid.uuid4().hex}", tmp_path / f"release-{uuid.uuid4().hex}"
    code = ("import sqlalchemy as sa\nfrom framefox_magic import AlembicManager\n"
            f"AlembicManager(url={url!r}, metadata=sa.MetaData(), project_root={str(project)!r}).upgrade()")
    environment = {**os.environ, "FFM_READY": str(ready), "FFM_RELEASE": str(release)}
    other = subprocess.Popen([sys.executable, "-c", code], env=environment, stderr=subprocess.PIPE, text=True)
    try:
        bounded(lambda: _wait_for(ready, other))
        yield ready.read_text()
    finally:
        release.touch()
        _, err = other.communicate(timeout=BOUND)
    assert other.returncode == 0, err


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    import time

    while not path.exists() or not path.read_text():
        assert process.poll() is None, process.stderr.read() if process.stderr else "ended"
        time.sleep(0.05)


@contextmanager
def server_database(server: str, name: str | None = None) -> Iterator[str]:
    need_server(server)
    admin_url = sa.make_url(SERVER_URLS[server])
    name = name or f"ffm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE {name}" + (" WITH (FORCE)" if server == "postgresql" else "")
        with admin.connect() as connection:
            connection.exec_driver_sql(drop)
        admin.dispose()


# ---------------------------------------------------------------- nothing hangs


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word. Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for peer in accepted:
            peer.close()
        listener.close()


@pytest.mark.parametrize("server", SERVERS)
def test_a_server_that_never_answers_fails_after_the_connect_timeout(server, shell):
    scheme = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}[server]
    with silent_server() as port:
        shell.run_line_magic("migrate", f"init --url {scheme}://someone@127.0.0.1:{port}/db")
        shell.run_line_magic("config", "MigrateMagics.connect_timeout = 1")
        magics = shell.magics_manager.registry["MigrateMagics"]
        magics.short_errors = False
        with pytest.raises(DatabaseUnreachable) as caught:
            bounded(lambda: shell.run_line_magic("migrate", "status"))
    assert "Cannot connect" in str(caught.value)


@pytest.mark.servers
@pytest.mark.parametrize("server", SERVERS)
def test_a_migration_blocked_by_a_table_lock_fails_after_the_ddl_lock_timeout(server, project):
    with server_database(server) as url:
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project, ddl_lock_timeout=1)
        manager.init()
        manager.revision("t1", autogenerate=False, rev_id="r1",
                         upgrade_body="op.create_table('t1', sa.Column('id', sa.Integer))")
        manager.revision("c", autogenerate=False, rev_id="r2",
                         upgrade_body="op.add_column('t1', sa.Column('c', sa.Integer))")
        manager.upgrade("r1")
        engine = sa.create_engine(url)
        with engine.connect() as reader:  # a long query keeps t1 in use
            reader.execute(sa.text("SELECT * FROM t1")).all()
            with pytest.raises(MigrationFailed) as caught:
                bounded(manager.upgrade)
        engine.dispose()
        assert version_rows(url) == ["r1"]
    message = str(caught.value)
    assert message.startswith("Revision r2 (c) failed") and "lock" in message.lower(), message


# ---------------------------------------------------------------- who holds the lock


@pytest.mark.servers
@pytest.mark.parametrize("server", SERVERS)
def test_a_held_migration_lock_names_its_holder_and_how_to_end_it(server, project, tmp_path):
    with server_database(server) as url:
        manager = project_with_two(project, url, lock_timeout=0.5)
        with upgrade_in_another_process(project, url, tmp_path) as holder, \
                pytest.raises(MigrationError) as caught:
            bounded(manager.upgrade)
        message = str(caught.value)
        assert "Another process is migrating" in message
        if server == "postgresql":
            assert f"session {holder} " in message and "application 'framefox_magic'" in message
            assert f"pg_terminate_backend({holder})" in message
            assert "since 20" in message and "idle in transaction" in message
        else:
            assert f"connection {holder} " in message and f"KILL {holder};" in message
        assert version_rows(url) == ["r2"]  # the other process went on once released


@pytest.mark.servers
def test_mariadb_databases_with_long_names_do_not_block_each_other(project, tmp_path):
    common = f"ffm_{uuid.uuid4().hex[:8]}_{'x' * 40}"
    with server_database("mysql", common + "_a") as first, server_database("mysql", common + "_b") as second:
        project_with_two(project, first)
        other = project_with_two(tmp_path / "second", second, lock_timeout=0.5)
        with upgrade_in_another_process(project, first, tmp_path):
            bounded(other.upgrade)
            assert version_rows(second) == ["r2"]


# ---------------------------------------------------------------- SQLite takes turns


def _upgrade_in_child(url: str, project: str, results: Any) -> None:
    try:
        done = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project).upgrade()
        results.put(("ok", done.summary))
    except BaseException as error:
        results.put(("error", str(error)))


def test_eight_upgraders_on_one_sqlite_file_all_succeed(project, tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    for number in range(1, 5):
        manager.revision(f"t{number}", autogenerate=False, rev_id=f"r{number}", upgrade_body=(
            f"op.create_table('t{number}', sa.Column('id', sa.Integer))\nimport time\ntime.sleep(0.1)"))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_upgrade_in_child, args=(url, str(project), results))
                for _ in range(8)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=BOUND) for _ in children]
    for child in children:
        child.join(BOUND)

    assert [text for kind, text in outcomes if kind != "ok"] == []
    assert sum(text.startswith("Upgraded 4") for _, text in outcomes) == 1
    assert version_rows(url) == ["r4"]
    assert {"t1", "t2", "t3", "t4"} <= table_names(url)


def test_a_sqlite_upgrader_that_gives_up_says_another_process_is_migrating(project, tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    manager = project_with_two(project, url, lock_timeout=0.5)
    with upgrade_in_another_process(project, url, tmp_path), pytest.raises(MigrationError) as caught:
        bounded(manager.upgrade)
    assert "Another process is migrating this database" in str(caught.value)
    assert version_rows(url) == ["r2"]


# ---------------------------------------------------------------- the first error wins


class Proxy:
    """A TCP proxy on 127.0.0.1 to a database server; `cut()` drops every connection and refuses
    new ones, as a network that went away would."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)

    def cut(self) -> None:
        self.listener.close()
        for each in self.sockets:
            with suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()


@pytest.mark.servers
@pytest.mark.parametrize("server", SERVERS)
def test_a_connection_dropped_mid_revision_names_the_revision(server, project, monkeypatch):
    with server_database(server) as url:
        parsed = sa.make_url(url)
        proxy = Proxy((parsed.host, parsed.port or {"postgresql": 5432, "mysql": 3306}[server]))
        monkeypatch.setitem(sys.modules, "ffm_network", types.SimpleNamespace(cut=proxy.cut))
        through_proxy = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        manager = AlembicManager(url=through_proxy, metadata=sa.MetaData(), project_root=project)
        manager.init()
        manager.revision("cut", autogenerate=False, rev_id="r1", upgrade_body=(
            "op.create_table('t1', sa.Column('id', sa.Integer))\n"
            "import ffm_network\nffm_network.cut()\n"
            "op.create_table('t2', sa.Column('id', sa.Integer))"))
        with pytest.raises(MigrationFailed) as caught:
            bounded(manager.upgrade)
    message = str(caught.value)
    assert message.startswith("Revision r1 (cut) failed"), message
    if server == "mysql":
        assert "may have left partial changes" in message and "CREATE TABLE t1" in message


@pytest.mark.servers
def test_statements_of_an_autocommit_block_are_listed_as_possibly_kept(project):
    with server_database("postgresql") as url:
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
        manager.init()
        manager.revision("index", autogenerate=False, rev_id="r1", upgrade_body=(
            "with op.get_context().autocommit_block():\n"
            "    op.execute('CREATE TABLE kept (id integer)')\n"
            "    op.execute('CREATE INDEX CONCURRENTLY ix_kept ON kept (id)')\n"
            "op.execute('SELECT * FROM no_such_table')"))
        with pytest.raises(MigrationFailed) as caught:
            manager.upgrade()
        assert "kept" in table_names(url)
    message = str(caught.value)
    assert "Nothing of r1 was kept" not in message
    assert re.search(r"may have been kept: CREATE TABLE kept.*CREATE INDEX CONCURRENTLY", message), message
