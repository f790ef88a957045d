"""Whole databases on a server: whether one exists, creating it, dropping a throwaway one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, DatabaseUnreachable

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection

_SERVER_BACKENDS = ("postgresql", "mysql", "mariadb")


def database_name(url: str) -> str:
    """The name of the database a server URL points at."""
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name the same database on the same server (drivers and passwords aside)."""
    from sqlalchemy.engine import make_url

    a, b = make_url(first), make_url(second)
    return (a.get_backend_name(), a.host, a.port, a.database) == \
        (b.get_backend_name(), b.host, b.port, b.database)


def _server_url(url: str) -> URL:
    """The URL itself, refused unless it points at a named database on PostgreSQL or MySQL/MariaDB."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() not in _SERVER_BACKENDS:
        raise ConfigurationError(
            "Creating and dropping databases is for PostgreSQL and MySQL/MariaDB; a SQLite "
            "database is a file, created when first used."
        )
    if not parsed.database:
        raise ConfigurationError("The URL names no database (…/DATABASE at its end).")
    return parsed


@contextmanager
def _maintenance(parsed: URL) -> Iterator[Connection]:
    """An autocommit connection to the server, outside the database in question."""
    from .dialects import server_engine

    engine = server_engine(parsed)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


_NO_SUCH_DATABASE = ("3D000", 1049)  # PostgreSQL's invalid_catalog_name, MySQL's ER_BAD_DB_ERROR


def _says_no_such_database(error: BaseException) -> bool:
    """Whether a failed connection was refused because the database does not exist."""
    original = getattr(error, "orig", None) or error
    codes = {getattr(original, "sqlstate", None), next(iter(getattr(original, "args", ())), None)}
    if codes & set(_NO_SUCH_DATABASE):
        return True
    # psycopg 3.2/3.3 give a failed connection no sqlstate; libpq's words are all there is
    return type(original).__module__.startswith("psycopg") and "does not exist" in str(original)


def missing_database(url: str, error: BaseException) -> DatabaseUnreachable | None:
    """After a failed connection: the error saying the database does not exist, when the server
    said so and lacks it; else None (a server that does not answer is not asked again)."""
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() not in _SERVER_BACKENDS or not _says_no_such_database(error):
        return None
    try:
        if database_exists(url):
            return None
    except Exception:  # the server itself does not answer: the original error says it
        return None
    name = database_name(url)
    return DatabaseUnreachable(
        f"The database {name} does not exist on that server: create it with "
        "`init --create-database` (with --url URL when the URL is not configured yet)."
    )


def database_exists(url: str) -> bool:
    """Whether the server holds the database the URL names."""
    from sqlalchemy import text

    parsed = _server_url(url)
    if parsed.get_backend_name() == "postgresql":
        query = text("SELECT 1 FROM pg_database WHERE datname = :name")
    else:
        query = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name")
    with _maintenance(parsed) as connection:
        return connection.execute(query, {"name": parsed.database}).first() is not None


def create_database(url: str) -> bool:
    """Create the database the URL names; False when it existed already."""
    if database_exists(url):
        return False
    parsed = _server_url(url)
    with _maintenance(parsed) as connection:
        name = _quoted(connection, parsed.database)
        suffix = "" if parsed.get_backend_name() == "postgresql" else " CHARACTER SET utf8mb4"
        connection.exec_driver_sql(f"CREATE DATABASE {name}{suffix}")
    return True


def drop_database(url: str) -> bool:
    """Drop the database the URL names (closing its sessions on PostgreSQL); False when absent."""
    if not database_exists(url):
        return False
    parsed = _server_url(url)
    with _maintenance(parsed) as connection:
        name = _quoted(connection, parsed.database)
        force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
        connection.exec_driver_sql(f"DROP DATABASE {name}{force}")
    return True


def _quoted(connection: Any, name: str | None) -> str:
    return connection.dialect.identifier_preparer.quote(name or "")
