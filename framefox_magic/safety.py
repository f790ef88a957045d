"""Safety before apply: rehearse pending revisions on a throwaway copy, lint each operation."""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dialects import shadow_database
from .diff import OP_NAMES, flatten, integer_bytes, narrows, record_script, string_length, type_family
from .errors import MigrationError, database_message
from .render import counted
from .results import Lint, LintFinding, Rehearsal, RehearsalStep

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from .settings import Target

VERSION_TABLE = "alembic_version"
# revisions that cannot run inside one transaction (PostgreSQL): they need a shadow database
_AUTOCOMMIT_MARKERS = ("autocommit_block", "CONCURRENTLY")

# env.py run on a connection: (target, connection, migration function, destination, on_step), where
# on_step(step, heads) is called as each revision is applied (environment.Observer's on_step)
RunEnv = Callable[["Target", "Connection", Callable[[Any, Any], Any], Any, Callable[[Any, Any], None]], None]


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


def rehearse(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan,
             schema: str | None = None) -> Rehearsal:
    """Up, down, up on a throwaway copy of the database (of one SCHEMA of it, the default schema
    while it runs); the database itself is not changed."""
    result = _rehearse(runner, target, connection, plan, schema)
    result.url = target.masked_url  # the database the user named, not the throwaway one
    return result


def _rehearse(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan,
              schema: str | None = None) -> Rehearsal:
    """Pick the throwaway database for the dialect and rehearse there."""
    plan.start  # noqa: B018 - refuse several heads before anything is copied
    if not plan.revisions:
        return Rehearsal(plan.target, "nothing to rehearse", target.masked_url,
                         notes=["No pending revisions: the database is at the target."])
    dialect = connection.dialect.name
    if dialect == "sqlite":
        with _sqlite_copy(target, connection) as copy, runner.connect(copy) as throwaway:
            _no_durability(throwaway)
            return _rehearse_on(runner, copy, throwaway, plan, "copy of the database file (real data)",
                                commit=True)
    if dialect == "postgresql" and runner.own_env and not _needs_autocommit(plan.revisions):
        with _rolled_back(connection):
            where = "its schema" if schema else "the database"
            mode = f"one transaction on {where}, rolled back (real data; holds its locks while it runs)"
            _as_default_schema(connection, schema, local=True)
            return _rehearse_on(runner, target, connection, plan, mode, commit=False, schema=schema)
    with ExitStack() as stack:
        shadow, throwaway, mode = _prepared_shadow(stack, runner, target, connection, plan, schema)
        copied = (_copy_rows(connection, throwaway) if dialect in ("mysql", "mariadb")
                  else _copy_rows_through_here(connection, throwaway, schema))
        mode += f" ({counted(copied, 'row')} copied in)" if isinstance(copied, int) else \
            f" (schema only, no rows: {copied})"
        return _rehearse_on(runner, shadow, throwaway, plan, mode, commit=True, schema=schema)


def _as_default_schema(connection: Connection, schema: str | None, local: bool, create: bool = False) -> None:
    """Unqualified names mean SCHEMA on this connection: for alembic's operations (the translate
    map) and for raw SQL (search_path; SET LOCAL ends with the rolled-back transaction)."""
    if not schema:
        return
    quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
    if create:
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    connection.exec_driver_sql(f"SET {'LOCAL ' if local else ''}search_path TO {quoted}, public")
    if not local:
        connection.commit()
    connection.execution_options(schema_translate_map={None: schema})


def _rehearse_on(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan,
                 mode: str, commit: bool, schema: str | None = None) -> Rehearsal:
    """Run the three phases, comparing the schema after each with the one before."""
    result = Rehearsal(plan.target, mode, target.masked_url)

    def snapshot() -> frozenset[str]:
        facts = schema_snapshot(connection, schema)
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

    from .migrating import step_function

    done: list[RehearsalStep] = []
    clock = {"start": time.perf_counter(), "statements": 0}

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if VERSION_TABLE not in statement:
            clock["statements"] += 1

    def applied(step: Any, heads: Any) -> None:
        done.append(_step(revisions[len(done)], direction, clock))

    work = step_function(script, destination, downgrade=direction == "downgrade")

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


def _no_durability(connection: Connection) -> None:
    """The copy is thrown away: no waiting for the disk at each commit."""
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA synchronous = OFF")
    driver.execute("PRAGMA journal_mode = MEMORY")


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
    url = connection.engine.url.render_as_string(hide_password=False)
    with shadow_database(url, "rehearse") as shadow:
        yield replace(target, url=shadow)


def _unobserved(step: Any, heads: Any) -> None:
    """No step is reported while the shadow is made."""


def _build_from_history(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan) -> None:
    """Bring the empty shadow database to where the real one is, revision by revision."""
    if not plan.current:
        return
    from .migrating import step_function

    destination = plan.start

    work = step_function(plan.script, destination, downgrade=False)
    try:
        runner.run(target, connection, work, destination, _unobserved)
    except Exception as error:
        raise MigrationError(
            f"Could not build the throwaway database from the history up to {destination}: "
            f"{database_message(error)}"
        ) from None


# ---------------------------------------------------------------- tables made outside the migrations
# An existing database often has tables made before its project used migrations (by hand, by
# another tool): no revision creates them, yet revisions change them. A shadow database built from
# the history gets them copied in (structure only) after it is built; when an applied revision
# changes one, the history cannot build it, and the shadow is a copy of the real tables instead.

def _prepared_shadow(stack: ExitStack, runner: Runner, target: Target, connection: Connection,
                     plan: RehearsalPlan, schema: str | None) -> tuple[Target, Connection, str]:
    """A shadow database at the real one's revision (dropped when STACK closes), a connection to
    it, and how it was made."""
    attempt = stack.enter_context(ExitStack())  # closed early when the history cannot build it
    shadow, throwaway = _new_shadow(attempt, runner, target, connection, schema)
    try:
        _build_from_history(runner, shadow, throwaway, plan)
    except MigrationError as failed:
        missing = _missing_tables(connection, throwaway, schema)
        attempt.close()  # the half-built shadow is dropped
        if not missing:
            raise
        return _copied_shadow(stack, runner, target, connection, plan, schema, str(failed))
    outside = _copy_tables(connection, throwaway, _missing_tables(connection, throwaway, schema), schema)
    mode = "shadow database built from the history"
    if outside:
        mode += f", {counted(outside, 'table')} made outside the migrations copied in"
    return shadow, throwaway, mode


def _copied_shadow(stack: ExitStack, runner: Runner, target: Target, connection: Connection,
                   plan: RehearsalPlan, schema: str | None, failure: str) -> tuple[Target, Connection, str]:
    """A shadow database holding a copy of the real tables' structure, stamped at the real one's
    revision: for when the history cannot build one (FAILURE), as tables made outside it changed."""
    shadow, throwaway = _new_shadow(stack, runner, target, connection, schema)
    copied = _copy_tables(connection, throwaway, _missing_tables(connection, throwaway, schema), schema)
    _stamp(runner, shadow, throwaway, plan)
    reason = failure.split(": ", 1)[-1]
    return shadow, throwaway, (f"shadow database with the database's {counted(copied, 'table')} "
                               f"copied in (the history could not build it: {reason})")


def _new_shadow(stack: ExitStack, runner: Runner, target: Target, connection: Connection,
                schema: str | None) -> tuple[Target, Connection]:
    """A new, empty shadow database (dropped when STACK closes) and a connection to it."""
    shadow = stack.enter_context(_shadow_database(target, connection))
    throwaway = stack.enter_context(runner.connect(shadow))
    _as_default_schema(throwaway, schema, local=False, create=True)
    return shadow, throwaway


def _missing_tables(source: Connection, shadow: Connection, schema: str | None) -> list[str]:
    """The real database's tables (of SCHEMA) that the shadow lacks, the version table aside."""
    from sqlalchemy import inspect

    missing = set(inspect(source).get_table_names(schema=schema)) - set(
        inspect(shadow).get_table_names(schema=schema)) - {VERSION_TABLE}
    source.rollback()
    shadow.commit()
    return sorted(missing)


def _copy_tables(source: Connection, shadow: Connection, names: Sequence[str], schema: str | None) -> int:
    """The real tables NAMES made in the shadow (structure only); how many."""
    if names and source.dialect.name in ("mysql", "mariadb"):
        _create_like(source, shadow, names)
    elif names:
        _create_from_reflection(source, shadow, names, schema)
    shadow.commit()
    source.rollback()
    return len(names)


def _stamp(runner: Runner, target: Target, connection: Connection, plan: RehearsalPlan) -> None:
    """Record the real database's revision in the shadow's version table, through env.py."""
    if not plan.current:
        return
    start = (plan.start,)
    runner.run(target, connection, lambda heads, context: plan.script._stamp_revs(start, heads), start,
               _unobserved)


def _create_like(source: Connection, shadow: Connection, names: Sequence[str]) -> None:
    """The real tables NAMES made in the shadow like the real ones, on the same server (columns and
    indexes; MariaDB/MySQL copy no foreign keys)."""
    prepare = source.dialect.identifier_preparer
    real = prepare.quote(source.engine.url.database)
    for table in names:
        quoted = prepare.quote(table)
        shadow.exec_driver_sql(f"CREATE TABLE {quoted} LIKE {real}.{quoted}")


def _create_from_reflection(source: Connection, shadow: Connection, names: Sequence[str],
                            schema: str | None) -> None:
    """The real tables NAMES made in the shadow (another database) from their reflection: columns,
    keys, indexes, checks and the foreign keys among them. A serial column becomes a serial of the
    shadow's own (the real one's sequence is not there)."""
    from sqlalchemy import MetaData

    copied = MetaData()
    copied.reflect(source, schema=schema, only=list(names), resolve_fks=False)
    for table in copied.tables.values():
        for column in table.columns:
            default = column.server_default
            if default is not None and str(getattr(default, "arg", "")).startswith("nextval("):
                column.server_default = None
        for constraint in list(table.foreign_key_constraints):
            if constraint.elements[0].target_fullname.split(".")[-2] not in names:
                table.constraints.discard(constraint)
                for element in constraint.elements:
                    element.parent.foreign_keys.discard(element)
    copied.create_all(shadow)


def _copy_rows(source: Connection, shadow: Connection) -> int:
    """The real database's rows, in place of the shadow's (same server: one INSERT ... SELECT each)."""
    from sqlalchemy import inspect

    prepare = source.dialect.identifier_preparer
    real = prepare.quote(source.engine.url.database)
    shadow.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
    shadow_columns = {t: {c["name"] for c in inspect(shadow).get_columns(t)}
                      for t in inspect(shadow).get_table_names() if t != VERSION_TABLE}
    copied = 0
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


def _copy_rows_through_here(source: Connection, shadow: Connection, schema: str | None) -> int | str:
    """The real database's rows (of SCHEMA), in place of the shadow's, on PostgreSQL: another
    database, so each table is streamed with COPY through this process, parents before children,
    and each serial's sequence is moved past the rows. How many; or why none were (the shadow then
    holds the schema alone)."""
    from sqlalchemy import MetaData, inspect

    if source.dialect.driver != "psycopg":
        return f"the {source.dialect.driver} driver cannot stream them; psycopg (3) can"
    tables = MetaData()
    tables.reflect(shadow, schema=schema)
    real = set(inspect(source).get_table_names(schema=schema))
    ordered = [t for t in tables.sorted_tables if t.name in real and t.name != VERSION_TABLE]
    try:
        copied = _copy_tables_rows(source, shadow, ordered, schema)
    except Exception as error:  # e.g. a foreign key cycle, or a column the history typed differently
        shadow.rollback()
        source.rollback()
        return f"they could not be copied ({database_message(error)})"
    shadow.commit()
    source.rollback()
    return copied


def _copy_tables_rows(source: Connection, shadow: Connection, tables: Sequence[Any],
                      schema: str | None) -> int:
    """Each table's rows streamed from the real database into the shadow's (emptied first)."""
    prepare = shadow.dialect.identifier_preparer
    with source.connection.driver_connection.cursor() as reading, \
            shadow.connection.driver_connection.cursor() as writing:
        if tables:  # rows the history's data migrations wrote (and any that point at them)
            writing.execute(f"TRUNCATE {', '.join(prepare.format_table(t) for t in tables)} CASCADE")
        return sum(_stream_rows(source, reading, writing, table, schema) for table in tables)


def _stream_rows(source: Connection, reading: Any, writing: Any, table: Any, schema: str | None) -> int:
    """One table's rows, COPY out of the real database into COPY in to the shadow; then its serial
    and identity sequences moved past them. How many rows."""
    from sqlalchemy import inspect

    prepare = source.dialect.identifier_preparer
    present = {c["name"] for c in inspect(source).get_columns(table.name, schema=schema)}
    columns = [c for c in table.columns if c.name in present and c.computed is None]
    names = ", ".join(prepare.quote(c.name) for c in columns)
    quoted = prepare.format_table(table)
    with reading.copy(f"COPY (SELECT {names} FROM {quoted}) TO STDOUT") as rows, \
            writing.copy(f"COPY {quoted} ({names}) FROM STDIN") as into:
        for chunk in rows:
            into.write(chunk)
    copied = max(writing.rowcount, 0)
    for column in filter(_is_serial, columns):  # its next value comes after the rows copied
        value = prepare.quote(column.name)
        writing.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), max({value})) FROM {quoted} "
                        f"HAVING max({value}) IS NOT NULL", (quoted, column.name))
    return copied


def _is_serial(column: Any) -> bool:
    """Whether the column's values come from a sequence (serial or identity)."""
    default = getattr(column.server_default, "arg", None)
    return (default is not None and str(default).startswith("nextval(")) or column.identity is not None


# ---------------------------------------------------------------- schema comparison


def schema_snapshot(connection: Connection, schema: str | None = None) -> frozenset[str]:
    """The schema (the default one, or SCHEMA) as one line per fact: tables, columns (type,
    nullability), keys, indexes, enums."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    facts: set[str] = set()
    for table in inspector.get_table_names(schema=schema):
        if table != VERSION_TABLE:
            facts |= _table_facts(inspector, table, schema)
    if connection.dialect.name == "postgresql":
        facts |= {f"enum {e['name']} ({', '.join(e['labels'])})" for e in inspector.get_enums(schema=schema)}
    return frozenset(facts)


def _table_facts(inspector: Any, table: str, schema: str | None = None) -> set[str]:
    """One table's columns, primary key, indexes, unique and foreign keys, as lines."""
    facts = {f"table {table}"}
    for column in inspector.get_columns(table, schema=schema):
        null = "NULL" if column["nullable"] else "NOT NULL"
        facts.add(f"column {table}.{column['name']} {column['type']} {null}")
    primary = inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
    if primary:
        facts.add(f"primary key {table} ({', '.join(primary)})")
    for index in inspector.get_indexes(table, schema=schema):
        unique = " unique" if index.get("unique") else ""
        facts.add(f"index {index['name']} on {table} ({', '.join(map(str, index['column_names']))}){unique}")
    for unique in inspector.get_unique_constraints(table, schema=schema):
        facts.add(f"unique {unique.get('name') or ''} on {table} ({', '.join(unique['column_names'])})")
    for key in inspector.get_foreign_keys(table, schema=schema):
        facts.add(f"foreign key {key.get('name') or ''} on {table} ({', '.join(key['constrained_columns'])})"
                  f" -> {key['referred_table']} ({', '.join(key['referred_columns'])})")
    return facts


def _differences(expected: frozenset[str], found: frozenset[str]) -> list[str]:
    """What `found` has that `expected` has not (+) and what it lacks (-)."""
    return [f"+ {fact}" for fact in sorted(found - expected)] + [
        f"- {fact}" for fact in sorted(expected - found)
    ]


# ---------------------------------------------------------------- lint

_VOLATILE_DEFAULT = re.compile(
    r"\b(random|gen_random_uuid|uuid_generate_v\d\w*|clock_timestamp|timeofday|nextval)\s*\(", re.IGNORECASE
)


@dataclass
class LintContext:
    """The live database a lint counts on, and what it found so far."""

    connection: Connection
    dialect: str  # sqlite, postgresql, mysql or mariadb
    version: tuple[int, ...]
    tables: dict[str, set[str]]  # live table -> its columns
    strict: bool = True  # MySQL/MariaDB: a bad value fails instead of becoming a zero value
    revision: str = ""
    findings: list[LintFinding] = field(default_factory=list)
    queries: list[Any] = field(default_factory=list)
    counting_seconds: float = 0.0

    def live(self, table: str | None, column: str | None = None) -> bool:
        """Whether the table (and column) exist in the database now, so that rows can be counted."""
        return table in self.tables and (column is None or column in self.tables[table])

    def count(self, query: Any) -> int | None:
        """Run a counting query on the live database; None when it cannot be run."""
        from sqlalchemy import exc

        started = time.perf_counter()
        try:
            return int(self.connection.execute(query).scalar() or 0)
        except exc.DBAPIError:
            self.connection.rollback()
            return None
        finally:
            self.counting_seconds += time.perf_counter() - started

    def add(self, op: str, table: str | None, rule: str, severity: str, rows: int | None, message: str,
            suggestion: str, sample: Any = None) -> None:
        """Record one finding, with the query that lists its offending rows."""
        self.findings.append(LintFinding(self.revision, op, table, rule, severity, rows, message, suggestion))
        self.queries.append(sample)


Recorder = Callable[[Any, str], list[Any]]


def lint(connection: Connection, revisions: Sequence[Any], title: str, schema: str | None = None,
         recorder: Recorder | None = None) -> Lint:
    """One finding per risky operation of each revision script, counted on the live database (in
    SCHEMA as the default one when given); `recorder` may share recorded operations between calls."""
    started = time.perf_counter()
    _as_default_schema(connection, schema, local=False)  # a session setting: the counting queries
    context = _lint_context(connection, schema)  # roll back after each failure
    for revision in revisions:
        context.revision = revision.revision
        for operation in _recorded(context, revision, recorder or record_upgrade):
            name = OP_NAMES.get(type(operation).__name__, "")
            for rule in RULES.get(name, ()):
                rule(context, name, operation)
    connection.rollback()
    result = Lint(context.findings, title, [r.revision for r in revisions], context.dialect,
                  ".".join(map(str, context.version)))
    result.counting_seconds = round(context.counting_seconds, 4)
    result.checking_seconds = round(time.perf_counter() - started - context.counting_seconds, 4)
    result._queries = context.queries
    return result


def record_upgrade(revision: Any, dialect: str) -> list[Any]:
    """A revision's upgrade operations for a dialect, recorded without running them."""
    return list(flatten(record_script(revision.module, dialect, "upgrade")))


def _recorded(context: LintContext, revision: Any, recorder: Recorder) -> list[Any]:
    """The revision's upgrade operations, recorded without running them; a finding when it cannot be."""
    dialect = "mysql" if context.dialect == "mariadb" else context.dialect
    try:
        return recorder(revision, dialect)
    except Exception as error:
        context.add("unrecorded", None, "not-checked", "info", None,
                    f"The operations could not be read without running them ({database_message(error)}).",
                    "Rehearse it instead: `rehearse` runs it on a throwaway copy.")
        return []


def _lint_context(connection: Connection, schema: str | None = None) -> LintContext:
    """The live tables and columns, the dialect (MariaDB told apart) and the server version."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    tables = {t: {c["name"] for c in inspector.get_columns(t, schema=schema)}
              for t in inspector.get_table_names(schema=schema)}
    dialect = connection.dialect.name
    if dialect == "mysql" and getattr(connection.dialect, "is_mariadb", False):
        dialect = "mariadb"
    version = tuple(v for v in (connection.dialect.server_version_info or ()) if isinstance(v, int))
    if dialect == "sqlite":
        version = sqlite3.sqlite_version_info
    strict = True
    if dialect in ("mysql", "mariadb"):
        mode = connection.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() or ""
        strict = "STRICT_TRANS_TABLES" in mode or "STRICT_ALL_TABLES" in mode
    return LintContext(connection, dialect, version, tables, strict)


def _table(name: str, *columns: str, schema: str | None = None) -> Any:
    """A lightweight table clause for building the counting queries; no reflection."""
    from sqlalchemy import column, table

    return table(name, *(column(c) for c in columns), schema=schema)


def _all_rows(source: Any, *where: Any) -> Any:
    """SELECT * FROM source WHERE ... LIMIT 20: the sample a user looks at."""
    from sqlalchemy import select, text

    return select(text("*")).select_from(source).where(*where).limit(20)


def _counted(context: LintContext, source: Any, *where: Any) -> int | None:
    """SELECT COUNT(*) FROM source WHERE ..., on the live database."""
    from sqlalchemy import func, select

    return context.count(select(func.count()).select_from(source).where(*where))


def _table_rows(context: LintContext, table: str, schema: str | None = None) -> int | None:
    """How many rows the table holds now; None when it does not exist yet."""
    return _counted(context, _table(table, schema=schema)) if context.live(table) else None


# ---------------------------------------------------------------- rules: data lost


def _drop_table(context: LintContext, op: str, operation: Any) -> None:
    """Data lost: the rows of a dropped table (a warning when it is empty)."""
    table = operation.table_name
    rows = _table_rows(context, table, operation.schema)
    severity = "danger" if rows else "warn"
    context.add(op, table, "drop-table", severity, rows,
                f"Dropping {table} deletes its {_rows_text(rows)}.",
                "Keep a copy first (CREATE TABLE ... AS SELECT, or a backup); or rename the table now "
                "and drop it in a later revision, once nothing reads it.",
                _all_rows(_table(table, schema=operation.schema)) if rows else None)


def _drop_column(context: LintContext, op: str, operation: Any) -> None:
    """Data lost: the non-null values of a dropped column (a warning when there are none)."""
    table, column = operation.table_name, operation.column_name
    source = _table(table, column, schema=operation.schema)
    rows = _counted(context, source, source.c[column].is_not(None)) if context.live(table, column) else None
    context.add(op, table, "drop-column", "danger" if rows else "warn", rows,
                f"Dropping {table}.{column} deletes {_values_text(rows)}.",
                "Copy the values somewhere first if they matter; drop the column only once no code "
                "reads it (expand/contract).",
                _all_rows(source, source.c[column].is_not(None)) if rows else None)


def _narrowing(context: LintContext, op: str, operation: Any) -> None:
    """Data lost or blocking: values that no longer fit a narrower type."""
    new, old = operation.modify_type, operation.existing_type
    if new is None or not narrows(old, new):
        return
    table, column = operation.table_name, operation.column_name
    source = _table(table, column, schema=operation.schema)
    misfit = _misfit(context, source.c[column], old, new)
    exact = misfit is not None
    if misfit is None:
        misfit = source.c[column].is_not(None)
    rows = _counted(context, source, misfit) if context.live(table, column) else None
    if exact and rows == 0:
        return
    what = "value(s) that no longer fit" if exact else "value(s) that must be converted"
    context.add(op, table, "narrowing-type", "danger" if rows and exact else "warn", rows,
                f"{table}.{column} changes from {old} to {new}: {_count_text(rows)} {what}.",
                "Fix or shorten those values first (an UPDATE in an earlier revision), or add a column of "
                "the new type, backfill it, and switch over (expand/contract).",
                _all_rows(source, misfit) if rows else None)


def _misfit(context: LintContext, column: Any, old: Any, new: Any) -> Any:
    """The condition a value fails when it does not fit the new type; None when it cannot say."""
    from sqlalchemy import func

    family = type_family(new)
    if family != type_family(old):
        return None
    if family == "string":
        length = func.length if context.dialect == "sqlite" else func.char_length
        return length(column) > string_length(new)
    if family == "integer":
        limit = 2 ** (8 * integer_bytes(new) - 1)
        return (column >= limit) | (column < -limit)
    if family == "decimal" and new.precision is not None:
        scale = new.scale or 0
        return (func.abs(column) >= 10 ** (new.precision - scale)) | (column != func.round(column, scale))
    return None


# ---------------------------------------------------------------- rules: data that blocks


def _not_null(context: LintContext, op: str, operation: Any) -> None:
    """Blocking: NULLs in a column made NOT NULL."""
    if operation.modify_nullable is not False:
        return
    table, column = operation.table_name, operation.column_name
    if not context.live(table, column):
        return
    source = _table(table, column, schema=operation.schema)
    rows = _counted(context, source, source.c[column].is_(None))
    if rows:
        lenient = not context.strict
        context.add(op, table, "not-null-violation", "danger", rows,
                    f"{counted(rows, 'row')} {'holds' if rows == 1 else 'hold'} NULL in {table}.{column}: "
                    "making it NOT NULL "
                    + ("turns them into the type's zero value (sql_mode is not strict)." if lenient
                       else "fails."),
                    "Backfill first (UPDATE ... SET column = ... WHERE column IS NULL), then make it "
                    "NOT NULL.",
                    _all_rows(source, source.c[column].is_(None)))


def _add_not_null(context: LintContext, op: str, operation: Any) -> None:
    """Blocking: a NOT NULL column without a server default added to a table with rows."""
    column = operation.column
    if column.nullable or column.server_default is not None or column.primary_key:
        return
    table = operation.table_name
    rows = _table_rows(context, table, operation.schema)
    if context.dialect == "sqlite" or rows:
        fills = context.dialect in ("mysql", "mariadb")
        context.add(op, table, "add-not-null-column", "warn" if fills or not rows else "danger", rows,
                    f"{table}.{column.name} is added NOT NULL without a server default: the "
                    f"{_rows_text(rows)} present "
                    + ("get the type's zero value." if fills else "make it fail."),
                    "Add it nullable (or with a server_default), backfill, then make it NOT NULL.")


def _unique(context: LintContext, op: str, operation: Any) -> None:
    """Blocking: duplicates under a new unique constraint or unique index."""
    if op == "create_index" and not operation.unique:
        return
    table = operation.table_name
    columns = [getattr(c, "name", None) or str(c) for c in operation.columns]
    if not all(context.live(table, c) for c in columns):
        return
    source = _table(table, *columns, schema=operation.schema)
    groups = _duplicates(source, columns)
    from sqlalchemy import func, select

    rows = context.count(select(func.coalesce(func.sum(groups.c.copies), 0)))
    if rows:
        keys = ", ".join(columns)
        context.add(op, table, "unique-violation", "danger", rows,
                    f"{counted(rows, 'row')} of {table} share a value of ({keys}): "
                    "the unique constraint fails.",
                    "Remove or merge the duplicates first (samples('unique-violation') lists them).",
                    select(groups).order_by(groups.c.copies.desc()).limit(20))


def _duplicates(source: Any, columns: Sequence[str]) -> Any:
    """The duplicated key values, with how many rows hold each."""
    from sqlalchemy import and_, func, select

    keys = [source.c[c] for c in columns]
    return (select(*keys, func.count().label("copies")).where(and_(*(k.is_not(None) for k in keys)))
            .group_by(*keys).having(func.count() > 1).subquery())


def _foreign_key(context: LintContext, op: str, operation: Any) -> None:
    """Blocking: rows that point to nothing under a new foreign key."""
    from sqlalchemy import and_, exists, select

    table, referent = operation.source_table, operation.referent_table
    local, remote = list(operation.local_cols), list(operation.remote_cols)
    if not (all(context.live(table, c) for c in local) and all(context.live(referent, c) for c in remote)):
        return
    source = _table(table, *local, schema=operation.kw.get("source_schema")).alias("child")
    target = _table(referent, *remote, schema=operation.kw.get("referent_schema")).alias("parent")
    matched = exists(select(1).select_from(target).where(
        and_(*(target.c[r] == source.c[c] for c, r in zip(local, remote, strict=True)))))
    orphan = and_(*(source.c[c].is_not(None) for c in local), ~matched)
    rows = _counted(context, source, orphan)
    if rows:
        checked = context.dialect != "sqlite"
        context.add(op, table, "foreign-key-violation", "danger" if checked else "warn", rows,
                    f"{counted(rows, 'row')} of {table} point to no row of {referent}: "
                    + ("the foreign key fails." if checked else "SQLite keeps them, unchecked."),
                    "Delete those rows or point them at existing ones first; on PostgreSQL you can add the "
                    "key NOT VALID and VALIDATE it after the clean-up.",
                    _all_rows(source, orphan))


def _check(context: LintContext, op: str, operation: Any) -> None:
    """Blocking: rows that fail a new CHECK constraint."""
    from sqlalchemy import text

    table = operation.table_name
    if not context.live(table):
        return
    condition = operation.condition
    if not isinstance(condition, str):
        condition = str(condition.compile(dialect=context.connection.dialect,
                                          compile_kwargs={"literal_binds": True}))
    failing = text(f"NOT ({condition})")  # a NULL result passes a check, as NOT (NULL) selects nothing
    source = _table(table, schema=operation.schema)
    rows = _counted(context, source, failing)
    if rows:
        context.add(op, table, "check-violation", "danger", rows,
                    f"{counted(rows, 'row')} of {table} fail the check ({condition}).",
                    "Fix those rows first; on PostgreSQL add the check NOT VALID and VALIDATE it later.",
                    _all_rows(source, failing))


# ---------------------------------------------------------------- rules: locks and rewrites


def _pg_alter_type(context: LintContext, op: str, operation: Any) -> None:
    """PostgreSQL: a type change that rewrites the table under ACCESS EXCLUSIVE."""
    new, old = operation.modify_type, operation.existing_type
    if context.dialect != "postgresql" or new is None or not context.live(operation.table_name):
        return
    if old is not None and _pg_binary_coercible(old, new):
        return
    table = operation.table_name
    context.add(op, table, "pg-alter-type-rewrite", "warn", _table_rows(context, table, operation.schema),
                f"Changing the type of {table}.{operation.column_name} to {new} rewrites the table under an "
                "ACCESS EXCLUSIVE lock: reads and writes wait.",
                "Add a new column of the new type, backfill it in batches, switch the code, then drop the "
                "old column (expand/contract); or run it in a quiet window.")


def _pg_binary_coercible(old: Any, new: Any) -> bool:
    """Type changes PostgreSQL makes without rewriting: longer VARCHAR, VARCHAR to TEXT, wider NUMERIC."""
    family = type_family(old)
    if family != type_family(new) or family not in ("string", "decimal"):
        return False
    if family == "string":
        return not narrows(old, new)
    return (old.scale or 0) == (new.scale or 0) and not narrows(old, new)


def _pg_set_not_null(context: LintContext, op: str, operation: Any) -> None:
    """PostgreSQL: SET NOT NULL scans the table under ACCESS EXCLUSIVE."""
    table = operation.table_name
    if context.dialect != "postgresql" or operation.modify_nullable is not False or not context.live(table):
        return
    column = operation.column_name
    shortcut = (" (PostgreSQL 12+ then skips the scan)" if context.version >= (12,) else "")
    context.add(op, table, "pg-set-not-null-scan", "warn", _table_rows(context, table, operation.schema),
                f"SET NOT NULL on {table}.{column} scans the whole table under an ACCESS EXCLUSIVE lock.",
                f"Add CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it, then SET NOT NULL"
                f"{shortcut} and drop the check.")


def _pg_index_concurrently(context: LintContext, op: str, operation: Any) -> None:
    """PostgreSQL: CREATE INDEX without CONCURRENTLY blocks writes."""
    table = operation.table_name
    if context.dialect != "postgresql" or not context.live(table):
        return
    if operation.kw.get("postgresql_concurrently"):
        return
    context.add(op, table, "pg-index-not-concurrent", "warn", _table_rows(context, table, operation.schema),
                f"CREATE INDEX {operation.index_name} blocks writes to {table} while it builds.",
                "op.create_index(..., postgresql_concurrently=True) inside "
                "`with op.get_context().autocommit_block():`.")


def _pg_not_valid(context: LintContext, op: str, operation: Any) -> None:
    """PostgreSQL: a foreign key or check without NOT VALID scans while blocking writes."""
    table = getattr(operation, "source_table", None) or operation.table_name
    if context.dialect != "postgresql" or not context.live(table) or operation.kw.get("postgresql_not_valid"):
        return
    kind = "foreign key" if op == "create_foreign_key" else "check"
    locked = f"{table} and {operation.referent_table}" if op == "create_foreign_key" else table
    context.add(op, table, "pg-constraint-not-valid", "warn", _table_rows(context, table),
                f"Adding the {kind} {operation.constraint_name} scans {table} while it blocks writes to "
                f"{locked}.",
                f"Create it with postgresql_not_valid=True, then in a later revision: "
                f"ALTER TABLE {table} VALIDATE CONSTRAINT {operation.constraint_name}.")


def _pg_volatile_default(context: LintContext, op: str, operation: Any) -> None:
    """PostgreSQL: a volatile default (any default before 11) rewrites every row."""
    table, column = operation.table_name, operation.column
    if context.dialect != "postgresql" or column.server_default is None or not context.live(table):
        return
    default = str(getattr(column.server_default, "arg", column.server_default))
    if context.version >= (11,) and not _VOLATILE_DEFAULT.search(default):
        return
    why = "a volatile default" if context.version >= (11,) else "a default before PostgreSQL 11"
    context.add(op, table, "pg-volatile-default", "warn", _table_rows(context, table, operation.schema),
                f"{table}.{column.name} is added with {why} ({default}): every row is rewritten under an "
                "ACCESS EXCLUSIVE lock.",
                "Add the column without a default (or with a constant one), backfill in batches, then set "
                "the default.")


def _mysql_algorithm(context: LintContext, op: str, operation: Any) -> None:
    """MySQL/MariaDB: the ALTER algorithm for this operation and server version."""
    if context.dialect not in ("mysql", "mariadb"):
        return
    table = getattr(operation, "source_table", None) or operation.table_name
    if not context.live(table):
        return
    algorithm = _mysql_algorithm_for(context, op, operation)
    if algorithm is None:
        return
    copy = algorithm == "COPY"
    context.add(op, table, "mysql-algorithm-copy" if copy else "mysql-table-rebuild",
                "warn" if copy else "info", _table_rows(context, table),
                f"On {context.dialect} {'.'.join(map(str, context.version[:3]))} this {op} runs with "
                f"ALGORITHM={algorithm}: " + ("the table is copied and writes wait." if copy
                                              else "the table is rebuilt in place."),
                "On a big table use an online schema change tool (gh-ost, pt-online-schema-change) or a "
                "quiet window; a newer server may do it INSTANT.")


def _mysql_algorithm_for(context: LintContext, op: str, operation: Any) -> str | None:
    """COPY, INPLACE (a rebuild) or None (INSTANT, or in place without a rebuild)."""
    mariadb, version = context.dialect == "mariadb", context.version
    if op == "add_column":
        return None if version >= ((10, 3, 2) if mariadb else (8, 0, 12)) else "INPLACE"
    if op == "drop_column":
        return None if version >= ((10, 4) if mariadb else (8, 0, 29)) else "INPLACE"
    if op == "create_foreign_key":
        return "COPY"  # INPLACE only with foreign_key_checks off
    if operation.modify_type is not None and not _mysql_varchar_growth(operation):
        return "COPY"
    if operation.modify_nullable is not None:
        return "INPLACE"
    return None


def _mysql_varchar_growth(operation: Any) -> bool:
    """A longer VARCHAR whose length prefix keeps its size (utf8mb4: both under or both over 64 chars)."""
    old, new = operation.existing_type, operation.modify_type
    if old is None or type_family(old) != "string" or type_family(new) != "string":
        return False
    before, after = string_length(old), string_length(new)
    return before is not None and after is not None and after >= before and (before < 64) == (after < 64)


def _sqlite_batch_copy(context: LintContext, op: str, operation: Any) -> None:
    """SQLite: batch mode copies the whole table (once per table and revision)."""
    table = getattr(operation, "source_table", None) or operation.table_name
    if context.dialect != "sqlite" or not context.live(table) or _said(context, table, "sqlite-batch-copy"):
        return  # one copy per table and revision: a batch block runs all its changes in one copy
    rows = _table_rows(context, table)
    context.add(op, table, "sqlite-batch-copy", "info", rows,
                f"SQLite cannot {op.replace('_', ' ')} in place: batch mode copies {table} "
                f"({_rows_text(rows)}) into a new table and drops the old one.",
                "Group the changes to one table in one batch_alter_table block so it is copied once.")


# ---------------------------------------------------------------- rules: running code broken


def _rename_column(context: LintContext, op: str, operation: Any) -> None:
    """Running code broken: a renamed column."""
    if operation.modify_name is None:
        return
    table = operation.table_name
    context.add(op, table, "rename-breaks-code", "warn", None,
                f"Renaming {table}.{operation.column_name} to {operation.modify_name} breaks code deployed "
                "with the previous revision, which still uses the old name.",
                "Expand/contract: add the new column, write both, backfill, move the readers, then drop the "
                "old column in a later revision.")


def _rename_table(context: LintContext, op: str, operation: Any) -> None:
    """Running code broken: a renamed table."""
    context.add(op, operation.table_name, "rename-breaks-code", "warn", None,
                f"Renaming {operation.table_name} to {operation.new_table_name} breaks code deployed with "
                "the previous revision.",
                "Expand/contract: create the new table (or a view with the old name), move the code, then "
                "drop the old name in a later revision.")


def _drop_breaks_code(context: LintContext, op: str, operation: Any) -> None:
    """Running code broken: a dropped column or table the previous code may use."""
    table = operation.table_name
    what = f"{table}.{operation.column_name}" if op == "drop_column" else table
    context.add(op, table, "drop-breaks-code", "warn", None,
                f"Code deployed with the previous revision may still read or write {what}.",
                "Deploy code that no longer uses it first; drop it in a later revision (expand/contract).")


RULES: dict[str, tuple[Callable[[LintContext, str, Any], None], ...]] = {
    "drop_table": (_drop_table, _drop_breaks_code),
    "drop_column": (_drop_column, _drop_breaks_code, _mysql_algorithm, _sqlite_batch_copy),
    "alter_column": (_narrowing, _not_null, _rename_column, _pg_alter_type, _pg_set_not_null,
                     _mysql_algorithm, _sqlite_batch_copy),
    "add_column": (_add_not_null, _pg_volatile_default, _mysql_algorithm),
    "create_index": (_unique, _pg_index_concurrently),
    "create_unique_constraint": (_unique, _sqlite_batch_copy),
    "create_foreign_key": (_foreign_key, _pg_not_valid, _mysql_algorithm, _sqlite_batch_copy),
    "create_check_constraint": (_check, _pg_not_valid, _sqlite_batch_copy),
    "drop_constraint": (_sqlite_batch_copy,),
    "rename_table": (_rename_table,),
}


def _said(context: LintContext, table: str, rule: str) -> bool:
    """Whether this revision already has a finding of `rule` on `table`."""
    return any((f.revision, f.table, f.rule) == (context.revision, table, rule) for f in context.findings)


def _count_text(rows: int | None) -> str:
    """A count for a message."""
    return "an unknown number of" if rows is None else str(rows)


def _rows_text(rows: int | None) -> str:
    """A row count for a message."""
    return "rows (not counted: not in the database yet)" if rows is None else counted(rows, "row")


def _values_text(rows: int | None) -> str:
    """A count of values for a message."""
    if rows is None:
        return "its values (not counted: not in the database yet)"
    return counted(rows, "non-null value")
