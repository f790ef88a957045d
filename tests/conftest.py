"""Shared fixtures: a fresh database per test on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

SERVER_URLS = {
    "postgresql": os.environ.get(
        "FRAMEFOX_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("FRAMEFOX_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ("sqlite", "postgresql", "mysql")
REQUIRE_SERVERS = os.environ.get("FRAMEFOX_REQUIRE_SERVERS") == "1"


@functools.cache
def server_problem(backend: str) -> str | None:
    """Why the server for this backend cannot be used, or None when it can."""
    url = sa.make_url(SERVER_URLS[backend])
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        first_line = str(error).strip().splitlines()[0]
        return f"{backend} server at {url.render_as_string()} is not reachable: {first_line}"
    return None


def need_server(backend: str) -> None:
    """Skip (or, with FRAMEFOX_REQUIRE_SERVERS=1, fail) when the backend's server is down."""
    if backend == "sqlite":
        return
    problem = server_problem(backend)
    if problem is None:
        return
    if REQUIRE_SERVERS:
        pytest.fail(f"FRAMEFOX_REQUIRE_SERVERS=1 but the {problem}")
    pytest.skip(problem)


class ServerDatabases:
    """New databases on one server, each made one test ahead and dropped after its test, in a thread
    of their own: every test still gets a database no test used, without waiting for the server's
    CREATE DATABASE and DROP DATABASE (file work that was most of a server test's set-up)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.admin_url = sa.make_url(SERVER_URLS[backend])
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{backend}-databases")
        self.next: Future[str] | None = None

    def take(self) -> str:
        """The URL of a new, empty database; the next one is made meanwhile."""
        name = self.next.result() if self.next else self._create()
        self.next = self.worker.submit(self._create)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def give_back(self, url: str) -> None:
        """Drop the database, after whatever the test left connected to it."""
        self.worker.submit(self._drop, sa.make_url(url).database)

    def close(self) -> None:
        """Drop what is left (the database made ahead included) and wait for it."""
        if self.next is not None:
            self.worker.submit(self._drop, self.next.result())
        self.worker.shutdown(wait=True)
        self.admin.dispose()

    def _create(self) -> str:
        name = f"ffm_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
        return name

    def _drop(self, name: str) -> None:
        drop = f"DROP DATABASE {name}" + (" WITH (FORCE)" if self.backend == "postgresql" else "")
        with self.admin.connect() as connection:
            connection.execute(sa.text(drop))


_SERVER_DATABASES: dict[str, ServerDatabases] = {}


@pytest.fixture(scope="session", autouse=True)
def _server_databases() -> Iterator[None]:
    """Whatever databases the session made are dropped before it ends."""
    yield
    for databases in _SERVER_DATABASES.values():
        databases.close()


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on the backend; dropped afterwards. Yields its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    need_server(backend)
    if backend not in _SERVER_DATABASES:
        _SERVER_DATABASES[backend] = ServerDatabases(backend)
    databases = _SERVER_DATABASES[backend]
    url = databases.take()
    try:
        yield url
    finally:
        databases.give_back(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each of the three databases in turn."""
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database on the current backend."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder."""
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DATABASE_URL leaks in from the machine; SQLModel's shared registry is emptied after."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    yield
    from framefox_magic.metadata import forget_models

    forget_models(lambda cls: True)


_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def with_driver(url: str) -> str:
    """A bare postgresql:// or mysql:// URL with the driver the tests install (SQLAlchemy 2.0 would
    pick psycopg2, 2.1 psycopg)."""
    parsed = sa.make_url(url)
    return parsed.set(drivername=_DRIVERS.get(parsed.drivername, parsed.drivername)).render_as_string(
        hide_password=False)


@pytest.fixture
def metadata() -> sa.MetaData:
    """The models of one test, kept apart from SQLModel's shared metadata."""
    return sa.MetaData()


@pytest.fixture
def manager(project: Path, db_url: str, metadata: sa.MetaData) -> Any:
    """An initialized manager on a fresh database, comparing against the `metadata` fixture."""
    from framefox_magic import AlembicManager

    manager = AlembicManager(url=db_url, metadata=metadata, project_root=project)
    manager.init()
    return manager


def assert_short(message: str) -> None:
    """The documented short error: a handful of lines, no traceback text."""
    assert message.strip(), "empty error message"
    assert len(message.strip().splitlines()) <= 6, message
    assert len(message) < 2000, message
    assert "Traceback" not in message, message
    assert 'File "' not in message, message


def create_table(name: str) -> str:
    """An upgrade statement creating table NAME with an integer primary key."""
    return f'op.create_table("{name}", sa.Column("id", sa.Integer, primary_key=True))'


def write_revision(manager: Any, rev_id: str, *statements: str, downgrade: str = "") -> str:
    """A hand-written revision with the given upgrade statements; its file path."""
    info = manager.revision(
        f"step {rev_id}", autogenerate=False, rev_id=rev_id,
        upgrade_body="\n".join(statements), downgrade_body=downgrade or None,
    )
    return info.path


def rows(url: str, table: str) -> list[tuple]:
    """Every row of TABLE, read with a fresh engine."""
    engine = sa.create_engine(with_driver(url))
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run STATEMENTS in one transaction with a fresh engine."""
    engine = sa.create_engine(with_driver(url))
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def files_under(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ROOT with its content (bytecode caches, journals and SKIP names left out)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.name not in skip
        and not path.name.endswith("-journal")
    }


CLI = Path(sys.executable).with_name("framefox-migrate")


def run_cli(project: Path, url: str, *words: str) -> subprocess.CompletedProcess[str]:
    """`framefox-migrate WORDS` in a real process, in PROJECT, with DATABASE_URL set to URL."""
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "framefox_magic.cli"]
    environment = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([*command, *words], cwd=project, env=environment, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture
def cli_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`framefox-migrate` run through cli.main in this process: like run_cli, without the start-up."""
    from framefox_magic import cli

    def run(project: Path, url: str, *words: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DATABASE_URL", url)
        capsys.readouterr()
        code = cli.main(list(words))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["framefox-migrate", *words], code, out, err)

    return run


def table_names(url: str) -> set[str]:
    """The tables that exist in the database now."""
    engine = sa.create_engine(with_driver(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def column_names(url: str, table: str) -> set[str]:
    """The columns of a table as the database has them now."""
    engine = sa.create_engine(with_driver(url))
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def version_rows(url: str) -> list[str]:
    """The revisions recorded in alembic_version."""
    engine = sa.create_engine(with_driver(url))
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return []
            return sorted(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def database_state(url: str) -> tuple[Any, ...]:
    """Tables, version rows and every table's rows, read with fresh engines."""
    tables = sorted(table_names(url))
    contents = {t: sorted(rows(url, t)) for t in tables}
    return tables, version_rows(url), contents


def _runs_this_python(argv: list[str]) -> bool:
    # jupyter_client swaps a bare "python" for the interpreter it runs in
    return bool(argv) and (argv[0] in ("python", "python3") or Path(argv[0]) == Path(sys.executable))


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A 'python3' kernelspec that runs this interpreter; installed into a tmp prefix if needed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if _runs_this_python(spec.argv):
            return "python3"
    except NoSuchKernel:
        pass
    prefix = tmp_path / "jupyter-prefix"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    assert _runs_this_python(KernelSpecManager().get_kernel_spec("python3").argv)
    return "python3"


HERO_CELL = '''%%revision -m "create hero"
from sqlmodel import Field, SQLModel

class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
'''
POWER_CELL = '''%%revision -m "add power"
class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    power: int = 0
'''


@contextmanager
def ipython_shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh IPython shell with the extension loaded; unloaded and cleared afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])  # the shell replaces it
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "framefox_magic")
    try:
        yield ip
    finally:
        discard_shell(ip)


def discard_shell(ip: Any) -> None:
    """Unload the extension and drop the shell, including its exit hook (each one would run a
    full garbage collection when pytest exits)."""
    import atexit

    from IPython.core.interactiveshell import InteractiveShell

    if "framefox_magic" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "framefox_magic")
    atexit.unregister(ip.atexit_operations)
    InteractiveShell.clear_instance()


@pytest.fixture
def shell(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh IPython shell working in the empty project folder, with the extension loaded."""
    monkeypatch.chdir(project)
    with ipython_shell(monkeypatch) as ip:
        yield ip


def bounded(run: Callable[[], Any], seconds: float = 60) -> Any:
    """Run in a thread and give its result (or raise its error); fail instead of hanging the suite."""
    import threading

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
