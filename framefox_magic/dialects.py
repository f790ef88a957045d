"""What differs per database: engines and their timeouts, the migration lock, backups, and
throwaway databases to build and compare schemas in."""

from __future__ import annotations

import hashlib
import re
import secrets
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MigrationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

LOCK_NAME = "framefox_magic_migrations"
APPLICATION_NAME = "framefox_magic"
MYSQL_LOCK_NAME_LIMIT = 64
BACKUPS_KEPT = 20
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class MigrationLocked(MigrationError):
    """Another process holds this database's migration lock."""


@dataclass(frozen=True)
class Timeouts:
    """How long to wait: for a connection, for the migration lock, and for a table lock in DDL."""

    connect: float = 10.0
    migration_lock: float = 60.0
    ddl_lock: float | None = None


# ---------------------------------------------------------------- engines


def engine(url: str, timeouts: Timeouts = Timeouts(), pooled: bool = False) -> Engine:
    """An engine: bounded connects, keepalives, a named session, real SQLite BEGINs; `pooled` keeps
    one server connection open between reads (opening one is most of a short read's cost)."""
    from sqlalchemy import create_engine, pool
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    arguments = connect_args(parsed, timeouts)
    if pooled and parsed.get_backend_name() != "sqlite":
        made = create_engine(parsed, pool_size=1, max_overflow=2, pool_pre_ping=True, connect_args=arguments)
    else:
        made = create_engine(parsed, poolclass=pool.NullPool, connect_args=arguments)
    if made.dialect.name == "sqlite":
        _take_over_sqlite_transactions(made)
    if made.dialect.driver == "pymysql":
        _unbounded_reads(made)
    if made.dialect.name in ("mysql", "mariadb") and timeouts.ddl_lock:
        _set_on_connect(made, f"SET SESSION lock_wait_timeout = {max(1, round(timeouts.ddl_lock))}")
    return made


def connect_args(url: Any, timeouts: Timeouts) -> dict[str, Any]:
    """The driver's own options for connect timeout, keepalives, session name and DDL lock wait."""
    backend, _, driver = url.drivername.partition("+")
    seconds = max(1, round(timeouts.connect))
    if backend == "postgresql" and driver in ("", "psycopg", "psycopg2"):
        options = {"connect_timeout": seconds, "application_name": APPLICATION_NAME, **_KEEPALIVE}
        if timeouts.ddl_lock:
            options["options"] = f"-c lock_timeout={round(timeouts.ddl_lock * 1000)}"
        return options
    if backend in ("mysql", "mariadb") and driver == "pymysql":
        # pymysql's connect_timeout covers the TCP connect only; the handshake is bounded by a read
        # timeout that _unbounded_reads lifts once connected (a long migration may read for hours)
        return {"connect_timeout": seconds, "read_timeout": seconds, "program_name": APPLICATION_NAME}
    if backend in ("mysql", "mariadb") and driver in ("", "mysqldb"):
        return {"connect_timeout": seconds}
    if backend == "sqlite":
        return {"timeout": timeouts.migration_lock}  # the busy timeout: wait for a writer, then fail
    return {}


def _unbounded_reads(made: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(made, "connect")
    def _no_read_timeout(dbapi_connection: Any, record: Any) -> None:
        if hasattr(dbapi_connection, "_read_timeout"):
            dbapi_connection._read_timeout = None  # pymysql re-applies it before its next read


def _set_on_connect(made: Engine, statement: str) -> None:
    from sqlalchemy import event

    @event.listens_for(made, "connect")
    def _configure(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)


def _take_over_sqlite_transactions(made: Engine) -> None:
    """pysqlite commits DDL on its own; take over BEGIN so a failed revision rolls back whole."""
    from sqlalchemy import event

    @event.listens_for(made, "connect")
    def _autocommit_driver(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(made, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


# ---------------------------------------------------------------- the migration lock


@contextmanager
def migration_lock(connection: Connection, wait: float) -> Iterator[None]:
    """One migrating process per database: an advisory lock, GET_LOCK, or a lock file for SQLite."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        with _sqlite_lock(connection, wait):
            yield
        return
    if dialect not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    take, give, holder = _lock_statements(connection)
    _acquire(connection, take, wait, holder)
    try:
        yield
    except BaseException:
        _release_quietly(connection, give)  # the failure that got us here is the one to report
        raise
    _release(connection, give)


def _lock_statements(connection: Connection) -> tuple[Any, Any, Any]:
    from sqlalchemy import text

    if connection.dialect.name == "postgresql":
        key = zlib.crc32(LOCK_NAME.encode())
        return (text("SELECT pg_try_advisory_lock(:key)").bindparams(key=key),
                text("SELECT pg_advisory_unlock(:key)").bindparams(key=key),
                lambda: _postgresql_holder(connection, key))
    name = mysql_lock_name(connection.engine.url.database or "")
    return (text("SELECT GET_LOCK(:name, 0)").bindparams(name=name),
            text("SELECT RELEASE_LOCK(:name)").bindparams(name=name),
            lambda: _mysql_holder(connection, name))


def mysql_lock_name(database: str) -> str:
    """GET_LOCK's name for this database: its own name when that fits in 64 characters, else a hash."""
    name = f"{LOCK_NAME}:{database}"
    if len(name) <= MYSQL_LOCK_NAME_LIMIT:
        return name
    return f"{LOCK_NAME}:{hashlib.sha256(database.encode()).hexdigest()[:32]}"


def _acquire(connection: Connection, take: Any, wait: float, holder: Any) -> None:
    deadline = time.monotonic() + wait
    while not connection.execute(take).scalar():
        connection.commit()
        if time.monotonic() > deadline:
            raise MigrationLocked(
                f"Another process is migrating this database (waited {wait:g} s for its lock). "
                f"{holder()}"
            )
        time.sleep(0.05)
    connection.commit()


def _release(connection: Connection, give: Any) -> None:
    connection.rollback()
    connection.execute(give)
    connection.commit()


def _release_quietly(connection: Connection, give: Any) -> None:
    """Release after a failure; if that fails too, the server frees the lock with the session."""
    with suppress(Exception):  # the connection is gone, and its lock with it
        _release(connection, give)


def _postgresql_holder(connection: Connection, key: int) -> str:
    """Who holds the advisory lock (pg_locks joined with pg_stat_activity) and how to end it."""
    from sqlalchemy import text

    query = text(
        "SELECT a.pid, a.application_name, a.usename, a.state, "
        "COALESCE(a.xact_start, a.backend_start) AS since "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).bindparams(key=key)
    row = connection.execute(query).first()
    connection.commit()
    if row is None:
        return "Try again when it has finished."
    since = row.since.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if row.since else "unknown"
    return (
        f"It is held by PostgreSQL session {row.pid} (application '{row.application_name or '?'}', "
        f"user {row.usename}, {row.state}, since {since}). Wait for it to finish, or end it with "
        f"SELECT pg_terminate_backend({row.pid});"
    )


def _mysql_holder(connection: Connection, name: str) -> str:
    """Which connection holds GET_LOCK's lock (IS_USED_LOCK) and how to end it."""
    from sqlalchemy import text

    holder = connection.execute(text("SELECT IS_USED_LOCK(:name)").bindparams(name=name)).scalar()
    connection.commit()
    if holder is None:
        return "Try again when it has finished."
    return (
        f"It is held by connection {holder} (see SHOW PROCESSLIST). Wait for it to finish, "
        f"or end it with KILL {holder};"
    )


@contextmanager
def _sqlite_lock(connection: Connection, wait: float) -> Iterator[None]:
    """A lock file next to the database: concurrent migrators take turns instead of failing."""
    from filelock import FileLock, Timeout

    path = sqlite_file(connection)
    if path is None:
        yield
        return
    lock = FileLock(str(path) + ".migrate-lock", timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise MigrationLocked(
            f"Another process is migrating this database (waited {wait:g} s for "
            f"{path.name}.migrate-lock); try again when it has finished."
        ) from None
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------- backups


def sqlite_file(connection: Connection) -> Path | None:
    """The file of a SQLite database, whatever form its URL takes; None for a memory database."""
    if connection.dialect.name != "sqlite":
        return None
    from sqlalchemy import text

    rows = connection.execute(text("PRAGMA database_list")).all()
    connection.rollback()
    main = next((row[2] for row in rows if row[1] == "main"), "")
    return Path(main) if main else None


def no_backup_reason(url: str) -> str | None:
    """Why no backup can be taken before a destructive change of this database; None when it can."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        return f"no backup is taken of a {backend} database: take one yourself first"
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory":
        return "no backup can be taken of an in-memory database"
    return None


def backup_sqlite(connection: Connection, keep: int = BACKUPS_KEPT) -> str | None:
    """Copy a SQLite database file before a destructive change; keep its newest few copies."""
    import sqlite3

    source = sqlite_file(connection)
    if source is None or not source.is_file() or source.stat().st_size == 0:
        return None
    folder = source.parent / ".backups"
    folder.mkdir(exist_ok=True)
    suffix = source.suffix or ".db"
    destination = folder / f"{source.stem}-{datetime.now():%Y%m%d-%H%M%S-%f}{suffix}"
    connection.rollback()
    with sqlite3.connect(destination) as copy:
        connection.connection.driver_connection.backup(copy)
    copy.close()
    _prune_backups(folder, source.stem, suffix, keep, destination)
    return str(destination)


def _prune_backups(folder: Path, stem: str, suffix: str, keep: int, made: Path) -> None:
    """Remove the oldest backups of this database only (never a sibling's, never the one just made)."""
    own = re.compile(rf"{re.escape(stem)}-\d{{8}}-\d{{6}}-\d{{6}}{re.escape(suffix)}")
    backups = sorted(p for p in folder.iterdir() if own.fullmatch(p.name) and p != made)
    for old in backups[:max(0, len(backups) - (keep - 1))]:
        old.unlink()


# ---------------------------------------------------------------- throwaway databases


@contextmanager
def shadow_database(url: str, purpose: str) -> Iterator[str]:
    """A new, empty database beside the one at `url` (a temporary file for SQLite), dropped after."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"framefox-{purpose}-") as folder:
            yield parsed.set(database=str(Path(folder) / "shadow.db"), query={}).render_as_string(
                hide_password=False)
        return
    name = f"{(parsed.database or 'db')[:40]}_{purpose}_{secrets.token_hex(4)}".lower()
    _create_database(parsed, name, purpose)
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(parsed, name)


def server_engine(parsed: URL) -> Engine:
    """An autocommit engine on the server's maintenance database (CREATE/DROP DATABASE)."""
    from sqlalchemy import create_engine, pool

    # URL.set() ignores None; the named tuple's _replace can clear the database
    server = parsed._replace(database="postgres" if parsed.get_backend_name() == "postgresql" else None)
    return create_engine(server, isolation_level="AUTOCOMMIT", poolclass=pool.NullPool,
                         connect_args=connect_args(server, Timeouts()))


def _create_database(parsed: URL, name: str, purpose: str) -> None:
    from sqlalchemy import exc, text

    engine = server_engine(parsed)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except exc.DBAPIError as error:
        raise MigrationError(_cannot_create(parsed, purpose, error)) from None
    finally:
        engine.dispose()


def _cannot_create(url: URL, purpose: str, error: Exception) -> str:
    """What to do when the user may not create the throwaway database."""
    from .errors import database_message

    user, database = url.username or "this user", url.database or "db"
    grant = (f"GRANT ALL ON `{database}\\_{purpose}\\_%`.* TO '{user}'@'%'"
             if url.get_backend_name() in ("mysql", "mariadb") else f"ALTER ROLE {user} CREATEDB")
    return (f"{purpose.capitalize()} needs a throwaway database on the server, and {user} may not create "
            f"one. Grant it with `{grant}`, or run it as a user who may. The server said: "
            f"{database_message(error)}")


def _drop_database(parsed: URL, name: str) -> None:
    from sqlalchemy import text

    force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
    engine = server_engine(parsed)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    finally:
        engine.dispose()


def dialect_of(url: str) -> Any:
    """The SQLAlchemy dialect of a URL, without connecting."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_dialect()()


def dialect_name(url: str) -> str:
    """The backend name of a URL (sqlite, postgresql, mysql, mariadb), without connecting."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


def keeps_ddl_after_failure(connection: Connection) -> bool:
    """MySQL/MariaDB commit each DDL statement: a failed revision may leave part of its changes."""
    return connection.dialect.name in ("mysql", "mariadb")
