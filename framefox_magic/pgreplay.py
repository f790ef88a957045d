"""PostgreSQL targets replayed as whole scripts: each revision, its version row and its transaction
in one round trip, on a connection each thread keeps from one target to the next.

When every step from a target's revisions to the goal renders offline, alembic's offline mode
renders the run once per starting point, as `alembic upgrade A:B --sql` writes a script for a DBA:
the revisions' SQL, the version table's creation and its rows, a transaction per revision. Each
tenant then gets that script under its own advisory lock (the one every other command takes for
it), with its version table named in its own schema and its `search_path` set as init's env.py
sets it. A failure rolls back the revision it happened in, and the version table is read back at
the end. Anything else (another dialect, a revision that runs its own Python) takes replay.py's
per-target MigrationContext.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import runtime
from .errors import MigrationError, translated

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .fanout import Target
    from .replay import Replayer

Revisions = tuple[str, ...]
# stands for the tenant's schema in the rendered version-table statements; replaced per target
_TENANT = "framefox_tenant_schema_7c1d"
_NOT_STATEMENTS = ("BEGIN;", "COMMIT;")


@dataclass(frozen=True)
class Script:
    """One starting point's run to the goal: a transaction's text per revision."""

    steps: tuple[Any, ...]
    texts: tuple[str, ...]  # BEGIN; the revision's SQL; its version row; COMMIT
    heads: tuple[Revisions, ...]  # the version table's rows after each revision
    first_on_existing_table: str | None = None  # the first text without the version table's CREATE


@dataclass
class KeptConnections:
    """One autocommit connection per thread, kept from one target to the next of the same database
    (a thread moving to another database closes it: a file of many databases opens no more
    connections at a time than there are threads)."""

    local: threading.local = field(default_factory=threading.local)
    opened: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, target: Target) -> Connection:
        """This thread's connection to the target's database, opened the first time."""
        from .fanout import shared_engine

        place = (target.url, target.timeouts)
        if getattr(self.local, "place", None) != place:
            self.forget()
            connection = shared_engine(target).connect().execution_options(isolation_level="AUTOCOMMIT")
            with self.lock:
                self.opened.append(connection)
            self.local.place, self.local.connection = place, connection
        return self.local.connection

    def forget(self) -> None:
        """Close this thread's connection (its session locks go with it)."""
        connection = getattr(self.local, "connection", None)
        self.local.place = self.local.connection = None
        if connection is not None:
            with self.lock:
                self.opened.remove(connection)
            _close_quietly(connection)

    def close(self) -> None:
        """Close every kept connection: the end of the run."""
        with self.lock:
            opened, self.opened = self.opened, []
        for connection in opened:
            _close_quietly(connection)


def _close_quietly(connection: Connection) -> None:
    with suppress(Exception):  # a broken connection: the server has ended its session already
        connection.close()


def migrate(replayer: Replayer, target: Target, run: Any) -> tuple[Revisions, Revisions] | None:
    """Replay the target's run as a script; (before, after) read back, or None when the run does
    not render (then nothing was changed and the lock is released)."""
    if not target.url.startswith("postgresql"):
        return None
    try:
        with translated(target.url):
            connection = replayer.kept.get(target)
            if connection.dialect.name != "postgresql":
                return None
            return _locked_run(replayer, connection, target, run)
    except BaseException:
        replayer.kept.forget()  # an unknown state: closing it rolls back and unlocks
        raise


def _locked_run(replayer: Replayer, connection: Connection, target: Target,
                run: Any) -> tuple[Revisions, Revisions] | None:
    """Under the tenant's lock: read where it is, send each revision's text, read it back. On any
    other error or an interrupt the caller closes the connection: the server rolls back and unlocks."""
    exists = _lock(connection, target, replayer.manager.lock_timeout)
    run.before = _read(connection, target) if exists else ()
    script = replayer.whole_run(connection, run.before, target)
    failure = _send(connection, target, script, run, exists) if script is not None else None
    after = _release(connection, target, exists or run.done > 0)
    if failure is not None:
        raise failure
    return (run.before, after) if script is not None else None


def _send(connection: Connection, target: Target, script: Script, run: Any,
          exists: bool) -> MigrationError | None:
    """Each revision's transaction in turn; the failure of one, named, after its rollback."""
    from sqlalchemy.exc import DBAPIError

    from .fanout import _failed

    schema = _quoted(target.versions_schema) if target.versions_schema else None
    for index, text in enumerate(script.texts):
        if index == 0 and exists and script.first_on_existing_table is not None:
            text = script.first_on_existing_table
        try:
            connection.exec_driver_sql(text.replace(_TENANT, schema) if schema else text)
        except DBAPIError as error:
            connection.exec_driver_sql("ROLLBACK")
            return _failed(script.steps[index].revision, error)
        run.done += 1
        run.heads = script.heads[index]
    return None


def _identifier(name: str) -> str:
    """A PostgreSQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def _quoted(name: str) -> str:
    """An identifier in text sent straight through the driver, which reads %% as %."""
    return _identifier(name).replace("%", "%%")


def _table(target: Target) -> str:
    """The target's version table, qualified when it has a schema."""
    name = _identifier(target.version_table)
    return f"{_identifier(target.versions_schema)}.{name}" if target.versions_schema else name


def _lock(connection: Connection, target: Target, timeout: float) -> bool:
    """Take the target's advisory lock and set a tenant's search_path (one round trip, retried
    while another process holds the lock); whether its version table exists."""
    from sqlalchemy import text

    from .fanout import lock_key, until_locked

    path = ", set_config('search_path', :path, false)" if target.schema else ""
    take = text(f"SELECT pg_try_advisory_lock(:key), to_regclass(:table) IS NOT NULL{path}")
    take = take.bindparams(key=lock_key(target), table=_table(target))
    if target.schema:  # what init's env.py sets for a tenant: its schema first, then public
        take = take.bindparams(path=_identifier(target.schema) + ", public")
    return bool(until_locked(connection, take, timeout)[1])


def _read(connection: Connection, target: Target) -> Revisions:
    """The rows of the target's version table."""
    from sqlalchemy import text

    return tuple(sorted(connection.execute(text(f"SELECT version_num FROM {_table(target)}")).scalars()))


def _release(connection: Connection, target: Target, read: bool) -> Revisions:
    """Read the version table back (when there is one) and release the lock: one round trip."""
    from sqlalchemy import text

    from .fanout import lock_key

    if not read:
        connection.execute(text("SELECT pg_advisory_unlock(:key)").bindparams(key=lock_key(target)))
        return ()
    rows = connection.execute(text(
        f"SELECT (SELECT array_agg(version_num) FROM {_table(target)}), pg_advisory_unlock(:key)"
    ).bindparams(key=lock_key(target))).one()[0]
    return tuple(sorted(rows or ()))


def render(replayer: Replayer, connection: Connection, before: Revisions, target: Target,
           steps: list[Any]) -> Script | None:
    """The run from BEFORE through STEPS, rendered by alembic's offline mode with its version
    table; None when a step must run its own Python on each target."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from .replay import _Collected, renders_offline

    if not all(renders_offline(step) for step in steps):
        return None
    collected, bounds, heads = _Collected(), [], []

    def applied(heads_now: Any, **_: Any) -> None:
        bounds.append(len(collected.writes))
        heads.append(tuple(sorted(heads_now)))

    offline = MigrationContext.configure(dialect=connection.dialect, opts={
        "as_sql": True, "literal_binds": True, "output_buffer": collected, "script": replayer.script,
        "transaction_per_migration": True, "version_table": target.version_table,
        "version_table_schema": _TENANT if target.versions_schema else None,
        "starting_rev": before or None, "fn": lambda *_: steps,
        "on_version_apply": (lambda ctx, step, heads, run_args: applied(heads),)})
    try:
        with runtime._ALEMBIC_LOCK, Operations.context(offline):
            offline.run_migrations()
    except Exception:  # e.g. a batch operation that must reflect the table: not renderable
        return None
    return _script(steps, _statements(collected.writes, bounds, offline.impl.command_terminator),
                   heads, creates_table=not before)


def _statements(writes: list[str], bounds: list[int], terminator: str) -> list[list[str]]:
    """The statements written for each revision (alembic's BEGIN/COMMIT and comments left out)."""
    chunks, start = [], 0
    for end in bounds:
        chunk = []
        for text in writes[start:end]:
            text = text.removesuffix("\n\n")
            if text in _NOT_STATEMENTS or text.startswith("-- Running "):
                continue
            chunk.append(text.removesuffix(terminator) if terminator else text)
        chunks.append(chunk)
        start = end
    return chunks


def _script(steps: list[Any], chunks: list[list[str]], heads: list[Revisions],
            creates_table: bool) -> Script:
    def transaction(statements: list[str]) -> str:
        return "BEGIN;\n" + "".join(f"{statement};\n" for statement in statements) + "COMMIT"

    texts = tuple(transaction(chunk) for chunk in chunks)
    first = transaction(chunks[0][1:]) if creates_table and chunks else None
    return Script(tuple(steps), texts, tuple(heads), first)
