"""A project's env.py as it is: what it expects (read from its source, never run to find out), its
version table, and runs of it observed from outside (steps applied, statements sent)."""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import settings
from .errors import ConfigurationError, MigrationError

DEFAULT_VERSION_TABLE = "alembic_version"
_ASYNC_NAMES = frozenset({"async_engine_from_config", "create_async_engine", "run_sync", "AsyncEngine"})
_SYNC_DRIVERS = {"aiosqlite": "", "asyncpg": None, "psycopg_async": "psycopg", "aiomysql": None,
                 "asyncmy": None, "aioodbc": "pyodbc"}


@dataclass(frozen=True)
class EnvShape:
    """What env.py expects in config.attributes["connection"], and the version table it names."""

    wants: str = "connection"  # "connection", "engine", or "url" (builds its own async engine)
    version_table: str | None = None
    version_table_schema: str | None = None


OWN_TEMPLATE_MARKER = "written by framefox_magic"


def is_own_template(env_py: Path) -> bool:
    """Whether env.py is the one `init` writes (it uses the connection handed in, and never commits)."""
    try:
        with env_py.open(encoding="utf-8") as file:
            return OWN_TEMPLATE_MARKER in file.read(400)
    except (OSError, UnicodeDecodeError):
        return False


def env_shape(env_py: Path) -> EnvShape:
    """env.py's shape, read from its source with ast (cached while the file is unchanged)."""
    try:
        stat = env_py.stat()
    except OSError:
        return EnvShape()
    return _shape(str(env_py), stat.st_mtime_ns, stat.st_size)


def version_table(target: settings.Target, table: str | None = None,
                  schema: str | None = None) -> tuple[str, str | None]:
    """The version table's name and schema: env.py's literal, else the one given (the manager's
    setting), else the project's [tool.framefox_magic] setting, else alembic's."""
    shape = env_shape(target.migrations_dir / "env.py")
    tool = settings.tool_defaults(target.project_root)
    table = shape.version_table or table or tool.get("version_table")
    schema = shape.version_table_schema or schema or tool.get("version_table_schema")
    return table or DEFAULT_VERSION_TABLE, schema


@lru_cache(maxsize=32)
def _shape(path: str, mtime: int, size: int) -> EnvShape:
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return EnvShape()
    nodes = list(ast.walk(tree))  # walked once, not six times (2 ms of a first command)
    names = {n.id for n in nodes if isinstance(n, ast.Name)}
    names |= {n.attr for n in nodes if isinstance(n, ast.Attribute)}
    wants = "url" if names & _ASYNC_NAMES else ("engine" if _connects_on_attribute(nodes) else "connection")
    table, schema = _configured_version_table(nodes)
    return EnvShape(wants, table, schema)


def _is_connection_attribute(node: ast.AST) -> bool:
    """`config.attributes["connection"]` or `config.attributes.get("connection", ...)`."""
    if isinstance(node, ast.Subscript):
        return _names_attributes(node.value) and _is_text(node.slice, "connection")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return _names_attributes(node.func.value) and bool(node.args) and _is_text(node.args[0], "connection")
    return False


def _names_attributes(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "attributes"


def _is_text(node: ast.AST, text: str) -> bool:
    return isinstance(node, ast.Constant) and node.value == text


def _connects_on_attribute(nodes: list[ast.AST]) -> bool:
    """Whether env.py calls .connect() / .begin() on what it took from the attribute, unchecked."""
    holders: set[str] = set()
    reassigned: set[str] = set()  # also bound to something else: .connect() may be on that
    for node in nodes:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values = node.value.values if isinstance(node.value, ast.BoolOp) else [node.value]
            found = any(_is_connection_attribute(v) for v in values)
            (holders if found else reassigned).add(node.targets[0].id)
    holders -= reassigned
    checked = {
        arg.id for node in nodes
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
        for arg in node.args[:1] if isinstance(arg, ast.Name)
    }
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("connect", "begin"):
            owner = node.func.value
            named = isinstance(owner, ast.Name) and owner.id in holders - checked
            if named or _is_connection_attribute(owner):
                return True
    return False


def _configured_version_table(nodes: list[ast.AST]) -> tuple[str | None, str | None]:
    """The literal version_table / version_table_schema env.py passes to context.configure."""
    found: dict[str, str] = {}
    calls = (n for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute))
    for node in calls:
        if node.func.attr == "configure":
            for keyword in node.keywords:
                if keyword.arg in ("version_table", "version_table_schema") \
                        and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
                    found.setdefault(keyword.arg, keyword.value.value)
    return found.get("version_table"), found.get("version_table_schema")


# ---------------------------------------------------------------- URLs for each side


def sync_url(url: str) -> str:
    """The URL with a synchronous driver: what our own reading connections use."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if driver not in _SYNC_DRIVERS:
        return url
    replacement = _SYNC_DRIVERS[driver]
    name = settings._installed_driver(backend) if replacement is None and backend in settings._DRIVERS \
        else backend + (f"+{replacement}" if replacement else "")
    return parsed.set(drivername=name).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with an asyncio driver, for an env.py that builds an async engine from it."""
    import importlib.util

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if driver in _SYNC_DRIVERS:
        return url
    choices = {"sqlite": ("aiosqlite",), "postgresql": ("psycopg_async", "asyncpg"),
               "mysql": ("aiomysql", "asyncmy"), "mariadb": ("aiomysql", "asyncmy")}.get(backend, ())
    for choice in choices:
        module = "psycopg" if choice == "psycopg_async" else choice
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"{backend}+{choice}").render_as_string(hide_password=False)
    raise ConfigurationError(
        f"env.py runs asyncio but no async driver for {backend} is installed: pip install "
        f"{' or '.join(choices) or 'an async driver'}."
    )


# ---------------------------------------------------------------- observing a run


@dataclass
class Observer:
    """What one run of env.py did: the steps alembic applied, the statements sent, its options."""

    on_step: Callable[[Any, tuple[str, ...]], None] | None = None
    steps: list[tuple[str, ...]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    autocommitted: list[str] = field(default_factory=list)  # outside any transaction: kept on failure
    options: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    threads: set[int] = field(default_factory=set)

    def applied(self, ctx: Any = None, step: Any = None, heads: Any = (), run_args: Any = None,
                **_: Any) -> None:
        """alembic's on_version_apply: one step done; statements from now on belong to the next."""
        self.steps.append(tuple(heads))
        self.statements.clear()
        self.autocommitted.clear()
        if self.on_step:
            self.on_step(step, tuple(heads))

    def statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() in self.threads:
            self.statements.append(statement)
            if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                self.autocommitted.append(statement)


def observed_environment(observer: Observer) -> Callable[..., Any]:
    """An EnvironmentContext whose configure() adds our hooks to whatever env.py passes."""
    from alembic import util
    from alembic.runtime.environment import EnvironmentContext

    def create(*args: Any, **kwargs: Any) -> Any:
        context = EnvironmentContext(*args, **kwargs)
        configure = context.configure

        def observed_configure(*positional: Any, **options: Any) -> None:
            theirs = util.to_tuple(options.get("on_version_apply"), default=())
            options["on_version_apply"] = (*theirs, observer.applied)
            observer.options = {k: v for k, v in options.items() if k.startswith("version_table")}
            configure(*positional, **options)

        context.configure = observed_configure  # the `context` proxy calls the instance's attribute
        return context

    return create


@contextmanager
def statements_listened(observer: Observer) -> Iterator[None]:
    """Listen on every Engine while env.py runs (it may build its own), this call's threads only."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    observer.threads.add(threading.get_ident())
    event.listen(Engine, "before_cursor_execute", observer.statement)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", observer.statement)


def run_env_file(environment: Callable[..., Any], config: Any, script: Any, work: Callable[..., Any],
                 observer: Observer | None, options: dict[str, Any]) -> None:
    """Run env.py; in a thread of its own when an event loop runs here (asyncio.run would refuse)."""

    def run() -> None:
        if observer is not None:
            observer.threads.add(threading.get_ident())
        with environment(config, script, fn=work, **options):
            script.run_env()

    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    failures: list[BaseException] = []
    worker = threading.Thread(target=_catching(run, failures), name="framefox-env")
    worker.start()
    worker.join()
    if failures:
        raise failures[0]


def _catching(run: Callable[[], None], failures: list[BaseException]) -> Callable[[], None]:
    def target() -> None:
        try:
            run()
        except BaseException as error:  # handed back to the caller's thread
            failures.append(error)

    return target


# ---------------------------------------------------------------- the version table


def read_versions(connection: Any, table: str, schema: str | None) -> tuple[str, ...]:
    """The revisions in the version table; () only when the table does not exist."""
    from sqlalchemy import column, exc, inspect, select
    from sqlalchemy import table as table_clause

    from .errors import version_table_error

    try:
        if schema is None and (found := _sqlite_versions(connection, table)) is not None:
            return found
        if not inspect(connection).has_table(table, schema=schema):
            return ()
        query = select(column("version_num")).select_from(table_clause(table, schema=schema))
        return tuple(connection.execute(query).scalars().all())
    except exc.DBAPIError as error:
        raise version_table_error(error, f"{schema}.{table}" if schema else table) from error
    finally:
        if not connection.closed and not connection.invalidated:
            connection.rollback()


def _sqlite_versions(connection: Any, table: str) -> tuple[str, ...] | None:
    """On SQLite, the rows with one query on the driver's own connection (a warm `status` spent
    most of its SQL time in SQLAlchemy's table check and statement execution); None when the
    table is missing, so the general path answers. A file another process keeps locked is
    reported now: the general path would wait the busy timeout a second time."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    if connection.dialect.name != "sqlite" or connection.dialect.driver != "pysqlite":
        return None
    driver = connection.connection.dbapi_connection
    quoted = table.replace('"', '""')
    statement = f'SELECT version_num FROM "{quoted}"'
    try:
        return tuple(row[0] for row in driver.execute(statement).fetchall())
    except sqlite3.OperationalError as error:
        if getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise OperationalError(statement, None, error) from error
        return None
    except sqlite3.Error:
        return None


# ---------------------------------------------------------------- errors from the project's files


def project_file_error(error: BaseException, root: Path, migrations_dir: Path) -> MigrationError | None:
    """A short error naming the project file (and line) the failure came from, if it did."""
    import traceback

    from alembic.script.revision import RevisionError
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, MigrationError | SQLAlchemyError | CommandError | RevisionError):
        return None  # alembic's and the database's own verdicts: errors.py words them
    frames = [f for f in traceback.extract_tb(error.__traceback__) if _inside(f.filename, migrations_dir)]
    if isinstance(error, SyntaxError) and error.filename and _inside(error.filename, migrations_dir):
        return ConfigurationError(f"{_relative(error.filename, root)}, line {error.lineno}: "
                                  f"SyntaxError: {error.msg}")
    if not frames:
        return None
    where = f"{_relative(frames[-1].filename, root)}, line {frames[-1].lineno}"
    if isinstance(error, ModuleNotFoundError):
        return ConfigurationError(
            f"{where} imports '{error.name}', which this kernel cannot import: install the application "
            "into this kernel's environment (e.g. pip install -e .) or put its folder on sys.path "
            "(prepend_sys_path in alembic.ini)."
        )
    first = (str(error).strip().splitlines() or [""])[0]
    return ConfigurationError(f"{where}: {type(error).__name__}: {first}".rstrip(": "))


def _inside(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def _relative(filename: str, root: Path) -> str:
    path = Path(filename).resolve()
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)
