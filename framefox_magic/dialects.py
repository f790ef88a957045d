"""What differs per database: here, throwaway databases to build and compare schemas in."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MigrationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine


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
    _create_database(parsed, name)
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(parsed, name)


def _server_engine(parsed: URL) -> Engine:
    """An autocommit engine on the server's maintenance database (CREATE/DROP DATABASE)."""
    from sqlalchemy import create_engine, pool

    backend = parsed.get_backend_name()
    database = "postgres" if backend == "postgresql" else None
    return create_engine(parsed.set(database=database), isolation_level="AUTOCOMMIT",
                         poolclass=pool.NullPool)


def _create_database(parsed: URL, name: str) -> None:
    from sqlalchemy import exc, text

    engine = _server_engine(parsed)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except exc.DBAPIError as error:
        first = str(error.orig).strip().splitlines()[0]
        raise MigrationError(
            f"Cannot create the throwaway database {name} that this needs: {first}. Use a role that may "
            "create databases (PostgreSQL: CREATEDB; MySQL/MariaDB: the CREATE privilege)."
        ) from None
    finally:
        engine.dispose()


def _drop_database(parsed: URL, name: str) -> None:
    from sqlalchemy import text

    force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
    engine = _server_engine(parsed)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    finally:
        engine.dispose()
