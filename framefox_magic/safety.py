"""Safety before apply: rehearse pending revisions on a throwaway copy, lint each operation."""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MigrationError, database_message
from .results import Rehearsal, RehearsalStep

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from .settings import Target

VERSION_TABLE = "alembic_version"
# revisions that cannot run inside one transaction (PostgreSQL): they need a shadow database
_AUTOCOMMIT_MARKERS = ("autocommit_block", "CONCURRENTLY")

RunEnv = Callable[["Target", "Connection", Callable[[Any, Any], Any], Any, Callable[..., None]], None]


@dataclass(frozen=True)
class Runner:
    """What a rehearsal needs of the manager: run env.py on a connection, and connect to a target."""

    run: RunEnv
    connect: Callable[[Target], AbstractContextManager[Connection]]
    own_env: bool


@dataclass(frozen=True)
class RehearsalPlan:
    """Where the database is, where the rehearsal goes, and the revisions in between."""

    script: ScriptDirectory
    current: tuple[str, ...]
    target: str
    revisions: tuple[Any, ...]  # alembic Scripts, in upgrade order

    @property
    def start(self) -> str:
        """The revision the downgrade returns to."""
        if len(self.current) > 1:
            raise MigrationError("The database is at several heads: merge them before rehearsing.")
        return self.current[0] if self.current else "base"


# ---------------------------------------------------------------- rehearse


def rehearse(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan) -> Rehearsal:
    """Up, down, up on a throwaway copy of the database; the database itself is not changed."""
    result = _rehearse(runner, target, connection, plan)
    result.url = target.masked_url  # the database the user named, not the throwaway one
    return result


def _rehearse(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan) -> Rehearsal:
    plan.start  # noqa: B018 - refuse several heads before anything is copied
    if not plan.revisions:
        return Rehearsal(plan.target, "nothing to rehearse", target.masked_url,
                         notes=["No pending revisions: the database is at the target."])
    dialect = connection.dialect.name
    if dialect == "sqlite":
        with _sqlite_copy(target, connection) as copy, runner.connect(copy) as throwaway:
            return _rehearse_on(runner, copy, throwaway, plan, "copy of the database file (real data)",
                                commit=True)
    if dialect == "postgresql" and runner.own_env and not _needs_autocommit(plan.revisions):
        with _rolled_back(connection):
            mode = "one transaction on the database, rolled back (real data; holds its locks while it runs)"
            return _rehearse_on(runner, target, connection, plan, mode, commit=False)
    with _shadow_database(target, connection) as shadow, runner.connect(shadow) as throwaway:
        _build_from_history(runner, shadow, throwaway, plan)
        mode = "shadow database built from the history"
        if dialect in ("mysql", "mariadb"):
            copied = _copy_rows(connection, throwaway)
            mode += f" ({copied} row(s) copied in)"
        else:
            mode += " (schema only, no rows)"
        return _rehearse_on(runner, shadow, throwaway, plan, mode, commit=True)


def _rehearse_on(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan,
                 mode: str, commit: bool) -> Rehearsal:
    """Run the three phases, comparing the schema after each with the one before."""
    result = Rehearsal(plan.target, mode, target.masked_url)

    def snapshot() -> frozenset[str]:
        facts = schema_snapshot(connection)
        if commit:  # end the inspector's transaction so that each revision gets its own
            connection.commit()
        return facts

    before = snapshot()
    if not _run_phase(runner, target, connection, plan.script, "upgrade", plan.target, plan.revisions,
                      result.steps):
        return result
    up = snapshot()
    if not _run_phase(runner, target, connection, plan.script, "downgrade", plan.start,
                      plan.revisions[::-1], result.steps):
        return result
    result.traces = _differences(before, snapshot())
    result.down_leaves_no_trace = not result.traces
    if _run_phase(runner, target, connection, plan.script, "upgrade", plan.target, plan.revisions,
                  result.steps):
        result.differences = _differences(up, snapshot())
        result.up_again_equals_up = not result.differences
    return result


def _run_phase(runner: Runner, target: Target, connection: Connection, script: ScriptDirectory,
               direction: str, destination: str, revisions: Sequence[Any],
               steps: list[RehearsalStep]) -> bool:
    """One upgrade or downgrade on the throwaway database, a step recorded per revision."""
    from sqlalchemy import event

    done: list[RehearsalStep] = []
    clock = {"start": time.perf_counter(), "statements": 0}

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if VERSION_TABLE not in statement:
            clock["statements"] += 1

    def applied(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        done.append(_step(revisions[len(done)], direction, clock))

    def work(rev: Any, context: Any) -> Any:
        if direction == "downgrade":
            return script._downgrade_revs(destination, rev)
        return script._upgrade_revs(destination, rev)

    event.listen(connection, "before_cursor_execute", count)
    try:
        runner.run(target, connection, work, destination, applied)
    except Exception as error:
        failed = revisions[min(len(done), len(revisions) - 1)]
        done.append(_step(failed, direction, clock, database_message(error)))
    finally:
        event.remove(connection, "before_cursor_execute", count)
        steps.extend(done)
    return all(step.ok for step in done)


def _step(revision: Any, direction: str, clock: dict[str, Any], error: str = "") -> RehearsalStep:
    """A step as it ended now; the clock and statement count start again for the next."""
    now = time.perf_counter()
    step = RehearsalStep(revision.revision, revision.doc or "", direction, round(now - clock["start"], 4),
                         not error, error, clock["statements"])
    clock.update(start=now, statements=0)
    return step


def _needs_autocommit(revisions: Sequence[Any]) -> bool:
    """Whether a revision runs statements that refuse to run inside a transaction."""
    for revision in revisions:
        try:
            source = Path(revision.path).read_text(encoding="utf-8")
        except OSError:
            continue
        if any(marker in source for marker in _AUTOCOMMIT_MARKERS):
            return True
    return False


# ---------------------------------------------------------------- the throwaway databases


@contextmanager
def _sqlite_copy(target: Target, connection: Connection) -> Iterator[Target]:
    """A copy of the SQLite file (the backup API copies a consistent state), removed afterwards."""
    from sqlalchemy.engine import make_url

    folder = Path(tempfile.mkdtemp(prefix="framefox-rehearse-"))
    copy = folder / "rehearse.db"
    database = connection.engine.url.database
    connection.rollback()
    with closing(sqlite3.connect(copy)) as destination:
        if database and database != ":memory:" and Path(database).is_file():
            connection.connection.driver_connection.backup(destination)
    url = make_url(target.url).set(database=str(copy)).render_as_string(hide_password=False)
    try:
        yield replace(target, url=url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _rolled_back(connection: Connection) -> Iterator[None]:
    """One transaction, always rolled back; waiting for a lock fails instead of hanging."""
    connection.rollback()
    transaction = connection.begin()
    connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
    try:
        yield
    finally:
        transaction.rollback()


@contextmanager
def _shadow_database(target: Target, connection: Connection) -> Iterator[Target]:
    """A new database `<db>_rehearse_<random>` on the same server, dropped afterwards."""
    from sqlalchemy import create_engine, exc, pool

    url = connection.engine.url
    name = f"{(url.database or 'db')[:40]}_rehearse_{secrets.token_hex(4)}"
    quoted = connection.dialect.identifier_preparer.quote(name)
    admin = create_engine(url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as session:
            session.exec_driver_sql(f"CREATE DATABASE {quoted}")
    except exc.DBAPIError as error:
        admin.dispose()
        raise MigrationError(_cannot_create(url, error)) from None
    try:
        yield replace(target, url=url.set(database=name).render_as_string(hide_password=False))
    finally:
        _drop_database(admin, quoted)


def _drop_database(admin: Any, quoted: str) -> None:
    force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
    with admin.connect() as session:
        session.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")
    admin.dispose()


def _cannot_create(url: Any, error: Exception) -> str:
    """What to do when the user may not create the throwaway database."""
    user, database = url.username or "this user", url.database or "db"
    grant = (f"GRANT ALL ON `{database}\\_rehearse\\_%`.* TO '{user}'@'%'"
             if url.get_backend_name() in ("mysql", "mariadb") else f"ALTER ROLE {user} CREATEDB")
    return (f"Rehearsal needs a throwaway database on the server, and {user} may not create one. "
            f"Grant it with `{grant}`, or rehearse as a user who may. The server said: "
            f"{database_message(error)}")


def _build_from_history(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan) -> None:
    """Bring the empty shadow database to where the real one is, revision by revision."""
    if not plan.current:
        return
    destination = plan.start

    def work(rev: Any, context: Any) -> Any:
        return plan.script._upgrade_revs(destination, rev)

    try:
        runner.run(target, connection, work, destination, lambda **kw: None)
    except Exception as error:
        raise MigrationError(
            f"Could not build the throwaway database from the history up to {destination}: "
            f"{database_message(error)}"
        ) from None


def _copy_rows(source: Connection, shadow: Connection) -> int:
    """The real database's rows, in place of the shadow's (same server: one INSERT ... SELECT each)."""
    from sqlalchemy import inspect

    prepare = source.dialect.identifier_preparer
    real = prepare.quote(source.engine.url.database)
    shadow_columns = {t: {c["name"] for c in inspect(shadow).get_columns(t)}
                      for t in inspect(shadow).get_table_names() if t != VERSION_TABLE}
    copied = 0
    shadow.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
    for table, columns in shadow_columns.items():
        names = ", ".join(prepare.quote(c["name"]) for c in inspect(source).get_columns(table)
                          if c["name"] in columns)
        quoted = prepare.quote(table)
        shadow.exec_driver_sql(f"DELETE FROM {quoted}")  # rows the history's data migrations wrote
        copied += shadow.exec_driver_sql(
            f"INSERT INTO {quoted} ({names}) SELECT {names} FROM {real}.{quoted}").rowcount
    shadow.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
    shadow.commit()
    source.rollback()
    return copied


# ---------------------------------------------------------------- schema comparison


def schema_snapshot(connection: Connection) -> frozenset[str]:
    """The schema as one line per fact: tables, columns (type, nullability), keys, indexes, enums."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    facts: set[str] = set()
    for table in inspector.get_table_names():
        if table != VERSION_TABLE:
            facts |= _table_facts(inspector, table)
    if connection.dialect.name == "postgresql":
        facts |= {f"enum {e['name']} ({', '.join(e['labels'])})" for e in inspector.get_enums()}
    return frozenset(facts)


def _table_facts(inspector: Any, table: str) -> set[str]:
    facts = {f"table {table}"}
    for column in inspector.get_columns(table):
        null = "NULL" if column["nullable"] else "NOT NULL"
        facts.add(f"column {table}.{column['name']} {column['type']} {null}")
    primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if primary:
        facts.add(f"primary key {table} ({', '.join(primary)})")
    for index in inspector.get_indexes(table):
        unique = " unique" if index.get("unique") else ""
        facts.add(f"index {index['name']} on {table} ({', '.join(map(str, index['column_names']))}){unique}")
    for unique in inspector.get_unique_constraints(table):
        facts.add(f"unique {unique.get('name') or ''} on {table} ({', '.join(unique['column_names'])})")
    for key in inspector.get_foreign_keys(table):
        facts.add(f"foreign key {key.get('name') or ''} on {table} ({', '.join(key['constrained_columns'])})"
                  f" -> {key['referred_table']} ({', '.join(key['referred_columns'])})")
    return facts


def _differences(expected: frozenset[str], found: frozenset[str]) -> list[str]:
    """What `found` has that `expected` has not (+) and what it lacks (-)."""
    return [f"+ {fact}" for fact in sorted(found - expected)] + [
        f"- {fact}" for fact in sorted(expected - found)
    ]
