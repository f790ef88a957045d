"""One command over many targets: tenant schemas, databases listed in a file, SQLite files.

Reading (status) runs one query per target in threads: no alembic state is involved. Migrating a
project whose env.py is the one `init` writes replays each revision's SQL, rendered once per
dialect, on every target in threads (replay.py; on PostgreSQL whole scripts, pgreplay.py). Any
other env.py runs for each target: alembic's `op` and `context` are process-wide proxies, so
parallel targets then run in worker processes (one alembic at a time in each). Either way each
target has its own connection under its own lock.
"""

from __future__ import annotations

import os
import string
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import environment, replay, runtime, settings
from .dialects import Timeouts
from .errors import ConfigurationError, MigrationError, MigrationFailed, translated
from .results import FanoutLint, FanoutRehearsal, FanoutResult, FanoutRow, RehearsalRow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .manager import AlembicManager

TargetCallback = Callable[[int, int, FanoutRow], None]
Revisions = tuple[str, ...]
DEFAULT_JOBS = 4
STATUS_THREADS = 16
_LOCK_NAME = "framefox_magic_migrations"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class Target:
    """One database to run a command on: a URL (password kept in memory only), maybe a schema."""

    url: str
    schema: str | None = None
    version_table: str = "alembic_version"
    version_table_schema: str | None = None  # the project's setting; a tenant's table is in its schema
    shown: str | None = None  # how the user named it (a file found by a relative glob), if not the URL
    timeouts: Timeouts = field(default_factory=Timeouts)  # the session's: connect, migration lock, DDL lock

    @property
    def versions_schema(self) -> str | None:
        """The schema of this target's version table: the tenant's own, else the configured one."""
        return self.schema or self.version_table_schema

    @property
    def label(self) -> str:
        """How the target is shown: the schema, the SQLite file, or the masked URL."""
        if self.shown:
            return self.shown
        if self.schema:
            return self.schema
        if self.url.startswith("sqlite"):
            return self.url.split("///", 1)[-1]
        return settings.mask_url(self.url)


# ---------------------------------------------------------------- target specs


def expand(spec: str, base_url: str, project_root: Path) -> list[Target]:
    """The targets a spec names: `schemas:PATTERN`, `file:PATH` or `sqlite:GLOB`."""
    kind, _, value = spec.partition(":")
    if not value:
        raise ConfigurationError(
            f"'{spec}' is not a target spec: use schemas:PATTERN, file:PATH or sqlite:GLOB."
        )
    readers = {"schemas": _schemas, "file": _listed, "sqlite": _sqlite_files}
    if kind not in readers:
        raise ConfigurationError(f"Unknown kind of targets '{kind}': use schemas:, file: or sqlite:.")
    targets = readers[kind](value, base_url, project_root)
    if not targets:
        raise ConfigurationError(f"No targets match '{spec}'.")
    return targets


def _like(pattern: str) -> str:
    """A glob (`*`, `?`) as a LIKE pattern; a pattern using `%` or `_` is taken as LIKE already."""
    return pattern.replace("*", "%").replace("?", "_")


def _schemas(pattern: str, base_url: str, project_root: Path) -> list[Target]:
    """The PostgreSQL schemas of the configured database whose names match the pattern."""
    from sqlalchemy import create_engine, pool, text

    url = settings.normalize_url(base_url, project_root)
    engine = create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name != "postgresql":
        raise ConfigurationError("schemas: targets need a PostgreSQL database as the configured URL.")
    query = text(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE :pattern "
        "AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY nspname"
    )
    try:
        with translated(url), engine.connect() as connection:
            names = connection.execute(query, {"pattern": _like(pattern)}).scalars().all()
    finally:
        engine.dispose()
    return [Target(url, name) for name in names]


def _listed(path: str, base_url: str, project_root: Path) -> list[Target]:
    """One URL per line of a file; `#` starts a comment line; `${VAR}` comes from the environment."""
    file = (project_root / Path(path).expanduser()).resolve()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigurationError(f"Cannot read the targets file {file}: {error.strerror}.") from None
    targets = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            url = string.Template(line).substitute(os.environ)
        except KeyError as missing:
            variable = missing.args[0]
            raise ConfigurationError(f"{file.name} line {number}: ${{{variable}}} is not set.") from None
        except ValueError:
            raise ConfigurationError(f"{file.name} line {number}: a stray $ (write $$ for one).") from None
        with translated(url):
            targets.append(Target(settings.normalize_url(url, file.parent)))
    return targets


def _sqlite_files(pattern: str, base_url: str, project_root: Path) -> list[Target]:
    """The SQLite files matching a glob, relative to the project folder unless absolute."""
    expanded = Path(pattern).expanduser()
    if expanded.is_absolute():
        found = sorted(Path(expanded.anchor).glob(str(expanded.relative_to(expanded.anchor))))
        return [Target(f"sqlite:///{path}") for path in found if path.is_file()]
    root = project_root.resolve()
    return [Target(f"sqlite:///{path}", shown=str(path.relative_to(root)))
            for path in sorted(root.glob(pattern)) if path.is_file()]


def with_version_table(targets: list[Target], where: tuple[str, str | None],
                       timeouts: Timeouts | None = None) -> list[Target]:
    """The targets with the project's version table (env.py's literal, else the settings) and the
    session's timeouts (made anew, not `replace`d: a thousand files)."""
    table, schema = where
    timeouts = timeouts or Timeouts()
    return [Target(t.url, t.schema, table, schema, t.shown, timeouts) for t in targets]


# ---------------------------------------------------------------- reading one target


def read_version(connection: Connection, schema: str | None,
                 name: str = "alembic_version") -> tuple[str, ...]:
    """The revisions in the target's version table; a table that does not exist means none."""
    from sqlalchemy import column, exc, inspect, select, table

    versions = table(name, column("version_num"), schema=schema)
    try:
        heads = connection.execute(select(versions.c.version_num)).scalars().all()
    except exc.DBAPIError:
        connection.rollback()
        if inspect(connection).has_table(name, schema=schema):
            raise
        heads = []
    connection.rollback()
    return tuple(sorted(heads))


def shared_engine(target: Target) -> Any:
    """One engine per URL and timeouts, per process (its dialect set up once); NullPool: each use
    connects anew, bounded by the session's connect and DDL lock timeouts."""
    return _engine(target.url, target.timeouts)


@lru_cache(maxsize=32)
def _engine(url: str, timeouts: Timeouts) -> Any:
    from .dialects import engine
    from .environment import sync_url

    return engine(sync_url(url), timeouts)


def current_of(target: Target) -> tuple[str, ...]:
    """The target's revisions, read with a connection of its own."""
    with translated(target.url), shared_engine(target).connect() as connection:
        return read_version(connection, target.versions_schema, target.version_table)


def _read_sqlite(target: Target) -> FanoutRow:
    """A SQLite file's revisions read with the stdlib driver, opened read-only."""
    import sqlite3

    from .quickread import sqlite_versions

    began = time.perf_counter()
    path = target.url.split("///", 1)[-1]
    try:
        heads = sqlite_versions(path, target.version_table) or ()
    except sqlite3.Error as error:
        return FanoutRow(target.label, None, None, time.perf_counter() - began, False,
                         f"Cannot read {path}: {error}.", "failed")
    return FanoutRow(target.label, heads, heads, time.perf_counter() - began, True, "", "")


def _read_chunk(targets: Sequence[Target]) -> list[FanoutRow]:
    """Targets of one database (e.g. its tenant schemas) read over one connection, a query each."""
    if targets[0].url.startswith("sqlite"):
        return [_read_sqlite(target) for target in targets]
    began, rows = time.perf_counter(), []
    try:
        with translated(targets[0].url), shared_engine(targets[0]).connect() as connection:
            for target in targets:
                rows.append(_read_one(connection, target))
    except MigrationError as error:
        return [*rows, *(FanoutRow(t.label, None, None, time.perf_counter() - began, False, str(error),
                                   "failed") for t in targets[len(rows):])]
    return rows


def _read_one(connection: Connection, target: Target) -> FanoutRow:
    from sqlalchemy import exc

    from .errors import database_message

    began = time.perf_counter()
    try:
        current = read_version(connection, target.versions_schema, target.version_table)
    except exc.DBAPIError as error:
        if connection.invalidated:
            raise
        connection.rollback()
        return FanoutRow(target.label, None, None, time.perf_counter() - began, False,
                         database_message(error), "failed")
    return FanoutRow(target.label, current, current, time.perf_counter() - began, True, "", "")


def _chunks(by_url: dict[str, list[int]], threads: int) -> list[list[int]]:
    """Split each database's targets over its share of the threads; SQLite files in one chunk
    (local files: threads only add contention for the interpreter)."""
    per_url = max(1, threads // len(by_url))
    chunks = []
    for key, indexes in by_url.items():
        ways = 1 if key == "sqlite" else min(per_url, len(indexes))
        chunks.extend(indexes[i::ways] for i in range(ways))
    return chunks


def read_all(targets: Sequence[Target], threads: int = STATUS_THREADS,
             on_row: Callable[[FanoutRow], None] | None = None) -> list[FanoutRow]:
    """Every target's revisions, one query each, in threads; targets sharing a database share
    a few connections instead of opening one each. `on_row` sees each row as it arrives."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    by_url: dict[str, list[int]] = {}
    for index, target in enumerate(targets):  # SQLite files: no server, any thread reads any file
        key = "sqlite" if target.url.startswith("sqlite") else target.url
        by_url.setdefault(key, []).append(index)
    chunks = _chunks(by_url, threads)
    rows: list[FanoutRow | None] = [None] * len(targets)
    with ThreadPoolExecutor(max(1, min(threads, len(chunks)))) as pool:
        futures = {pool.submit(_read_chunk, [targets[i] for i in chunk]): chunk for chunk in chunks}
        for future in as_completed(futures):
            for index, row in zip(futures[future], future.result(), strict=True):
                rows[index] = row
                if on_row:
                    on_row(row)
    return rows  # type: ignore[return-value]


# ---------------------------------------------------------------- rehearsing and linting many
# Rehearsals run env.py (alembic's process-wide `op`): worker processes, as migrations do. Each
# target gets a throwaway copy of its own (a SQLite file copy, a rolled-back transaction on its
# PostgreSQL schema or database, a shadow database on MariaDB), so targets rehearse in parallel;
# a failed rehearsal is a finding, not a reason to stop the others. Lint reads only: its counting
# queries run in threads; each revision's operations are recorded once per dialect, under the lock
# (recording installs alembic's `op` proxy too).


def tenant_url(url: str, schema: str | None) -> str:
    """A PostgreSQL URL whose every connection has SCHEMA first in its search path (libpq's
    `options`): env.py may connect on its own, from the URL, to a throwaway copy."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not schema or parsed.get_backend_name() != "postgresql":
        return url
    name = schema if schema.isidentifier() and schema.islower() else \
        '"' + schema.replace('"', '""').replace(" ", "\\ ") + '"'
    return parsed.update_query_dict({"options": f"-csearch_path={name},public"}).render_as_string(
        hide_password=False)


@contextmanager
def _throwaway_connection(place: settings.Target, schema: str | None = None) -> Iterator[Connection]:
    """A connection to a throwaway copy (SCHEMA first in its search path), its engine disposed of
    with it."""
    from .dialects import engine
    from .environment import sync_url

    made = engine(sync_url(tenant_url(place.url, schema)))
    try:
        with made.connect() as connection:
            yield connection
    finally:
        made.dispose()


def _rehearsal_runner(manager: AlembicManager, place: settings.Target, script: Any,
                      schema: str | None) -> Any:
    """How a rehearsal runs env.py on a target's copy. In the real database's rolled-back transaction
    the connection already has the tenant as its default schema and env.py is not handed the tenant
    (the template commits the search path it sets); a throwaway database gets it as a migration does."""
    from functools import partial

    from . import safety

    options = {"version_table_schema": schema} if schema else {}

    def run(where: settings.Target, connection: Connection, work: Callable[[Any, Any], Any],
            destination: Any, on_step: Callable[[Any, Any], None]) -> None:
        copy = where.url != place.url
        if copy:  # the tenant first in the search path of any connection env.py makes
            where = replace(where, url=tenant_url(where.url, schema))
        config = runtime.make_config(manager, where, connection, **options)
        if copy:  # on the real database's rolled-back transaction, the template would commit
            config.attributes["tenant_schema"] = schema
        # each step seen through alembic's on_version_apply, added to whatever env.py configures
        runtime.run_env(manager, config, script, work, environment.Observer(on_step=on_step),
                        destination_rev=destination)

    own_env = environment.is_own_template(place.migrations_dir / "env.py")
    return safety.Runner(run, partial(_throwaway_connection, schema=schema), own_env)


def rehearse_row(manager: AlembicManager, project: settings.Target, target: Target,
                 goal: str) -> RehearsalRow:
    """Rehearse the target's pending revisions up to GOAL on a throwaway copy of it."""
    from . import safety
    from .migrating import steps_between
    from .runtime import _ALEMBIC_LOCK, quiet_alembic_logging

    began = time.perf_counter()
    place = replace(project, url=target.url)
    try:
        with _ALEMBIC_LOCK, quiet_alembic_logging(), translated(target.url), \
                shared_engine(target).connect() as connection:
            script = runtime.script_directory(manager, place)
            current = read_version(connection, target.versions_schema, target.version_table)
            steps = steps_between(script, goal, current, downgrade=False)
            plan = safety.RehearsalPlan(script, current, goal, tuple(s.revision for s in steps))
            runner = _rehearsal_runner(manager, place, script, target.schema)
            rehearsal = safety.rehearse(runner, place, connection, plan, schema=target.schema)
    except MigrationError as error:
        return RehearsalRow(target.label, "failed", False, seconds=round(time.perf_counter() - began, 3),
                            error=str(error))
    return RehearsalRow.of(target.label, rehearsal, time.perf_counter() - began)


def _worker_rehearse(project: settings.Target, lock_timeout: float, target: Target,
                     goal: str) -> RehearsalRow:
    """In a worker process: one rehearsal."""
    return rehearse_row(worker_manager(project, lock_timeout), project, target, goal)


def _nothing_to_rehearse(row: FanoutRow, goal: str) -> RehearsalRow:
    return RehearsalRow(row.target, "nothing to rehearse", True, seconds=row.seconds,
                        error="" if row.ok else row.error)


class Recorder:
    """Each revision's upgrade operations, recorded once per dialect and shared by the targets."""

    def __init__(self) -> None:
        self.recorded: dict[tuple[str, str], list[Any]] = {}

    def __call__(self, revision: Any, dialect: str) -> list[Any]:
        from .runtime import _ALEMBIC_LOCK
        from .safety import record_upgrade

        key = (revision.revision, dialect)
        with _ALEMBIC_LOCK:
            if key not in self.recorded:
                self.recorded[key] = record_upgrade(revision, dialect)
            return self.recorded[key]


def lint_one(script: Any, target: Target, rev_range: str | None,
             recorder: Recorder) -> tuple[list[str], list[Any]]:
    """The revisions linted on this target (its pending ones, or RANGE) and the findings."""
    from . import safety
    from .reading import lint_revisions

    with translated(target.url), shared_engine(target).connect() as connection:
        current = read_version(connection, target.versions_schema, target.version_table)
        revisions = lint_revisions(script, current, rev_range)
        found = safety.lint(connection, revisions, target.label, schema=target.schema, recorder=recorder)
    return [r.revision for r in revisions], list(found.findings)


def lint_all(script: Any, targets: Sequence[Target], rev_range: str | None, threads: int,
             on_target: TargetCallback | None = None) -> FanoutLint:
    """Lint every target in threads; the result keeps per target only what differs."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    result = FanoutLint("", [t.label for t in targets])
    recorder = Recorder()
    with ThreadPoolExecutor(max(1, min(threads, len(targets)))) as pool:
        futures = {pool.submit(lint_one, script, t, rev_range, recorder): t for t in targets}
        for done, future in enumerate(as_completed(futures), 1):
            label = futures[future].label
            try:
                result.linted[label], result.findings[label] = future.result()
                state = "linted"
            except MigrationError as error:
                result.errors[label], state = str(error), "failed"
            if on_target:
                on_target(done, len(targets), FanoutRow(label, None, None, 0.0, state == "linted", "", state))
    result.findings = {t: result.findings[t] for t in result.targets if t in result.findings}
    return result


# ---------------------------------------------------------------- migrating one target


def lock_key(target: Target) -> int:
    """The PostgreSQL advisory lock of a target: a tenant's own, else the manager's."""
    name = f"{_LOCK_NAME}:{target.schema}" if target.schema else _LOCK_NAME
    return zlib.crc32(name.encode())


def until_locked(connection: Connection, take: Any, timeout: float) -> Any:
    """Run TAKE (its first column: whether the lock was taken) until it is, waiting up to TIMEOUT
    while another process holds it; its row."""
    deadline = time.monotonic() + timeout
    while not (row := connection.execute(take).one())[0]:
        connection.rollback()
        if time.monotonic() > deadline:
            raise MigrationError(f"Another process is migrating this target (waited {timeout:g} s).")
        time.sleep(0.05)
    return row


@contextmanager
def target_lock(connection: Connection, target: Target, timeout: float,
                search_path: str | None = None) -> Iterator[None]:
    """Serialize migrations of one target across processes; tenant schemas each have their own.
    The lock belongs to the session: it outlives transactions and is released when the connection,
    which is used for this target alone (NullPool), closes: no release statement is needed.
    `search_path` (PostgreSQL): the session's, set in the same round trip as the lock."""
    from sqlalchemy import text

    dialect = connection.dialect.name
    if dialect == "postgresql":
        take = text("SELECT pg_try_advisory_lock(:key)" + (
            ", set_config('search_path', :path, false)" if search_path else "")).bindparams(
            key=lock_key(target))
        if search_path:
            take = take.bindparams(path=search_path)
    elif dialect in ("mysql", "mariadb"):
        name = f"{_LOCK_NAME}:{connection.engine.url.database}"[:64]
        take = text("SELECT GET_LOCK(:name, 0)").bindparams(name=name)
    else:
        yield
        return
    until_locked(connection, take, timeout)
    if search_path:  # kept for the session: a setting made in a transaction lasts if it commits
        connection.commit()
    else:  # migrations start their own transactions; the lock stays with the session
        connection.rollback()
    yield


def at_goal(script: Any, current: Sequence[str], goal: str) -> bool:
    """Whether the target is already where a goal (head, heads, base, a revision) would take it."""
    if goal.startswith(("+", "-")) or "@" in goal:
        return False
    if goal == "base":
        return not current
    wanted = script.get_revisions("heads" if goal == "head" and len(script.get_heads()) > 1 else goal)
    return set(current) == {found.revision for found in wanted if found is not None}


def _nothing_to_do(script: Any, row: FanoutRow, goal: str, downgrade: bool) -> bool:
    """Whether a target read fine and is where the goal takes it; going down `-N` from base, too."""
    from .migrating import down_from_base

    if not row.ok:
        return False
    return at_goal(script, row.after or (), goal) or (downgrade and down_from_base(script, goal, row.after))


def migrate_row(manager: AlembicManager, project: settings.Target, target: Target, goal: str,
                downgrade: bool) -> FanoutRow:
    """Upgrade or downgrade one target to the goal; the row tells what its version table says."""
    began = time.perf_counter()
    seen: dict[str, tuple[str, ...]] = {}
    try:
        before, after, ran = _migrate(manager, replace(project, url=target.url), target, goal, downgrade,
                                      seen)
    except MigrationError as error:
        try:
            after = current_of(target)
        except MigrationError:
            after = None
        return FanoutRow(target.label, seen.get("before"), after, time.perf_counter() - began, False,
                         str(error), "failed")
    moved = ran or after != before  # the steps alembic reported, or the version table read back
    state = ("downgraded" if downgrade else "upgraded") if moved else "already at goal"
    return FanoutRow(target.label, before, after, time.perf_counter() - began, True, "", state)


def _migrate(manager: AlembicManager, project: settings.Target, target: Target, goal: str,
             downgrade: bool, seen: dict[str, Revisions]) -> tuple[Revisions, Revisions, int]:
    """Run alembic on one target in its own connection; (before, after, revisions run).
    `seen` gets the revisions alembic found first, for the row of a target that then fails."""
    from .dialects import backup_sqlite
    from .runtime import _ALEMBIC_LOCK, quiet_alembic_logging

    with _ALEMBIC_LOCK, quiet_alembic_logging(), translated(target.url), \
            shared_engine(target).connect() as connection, \
            target_lock(connection, target, manager.lock_timeout):
        if downgrade:
            backup_sqlite(connection)
        ran = _run_alembic(manager, project, connection, target, goal, downgrade, seen)
        if "before" not in seen:  # an env.py that did not run the migrations
            seen["before"] = read_version(connection, target.versions_schema, target.version_table)
        return seen["before"], read_version(connection, target.versions_schema, target.version_table), ran


def _run_alembic(manager: AlembicManager, project: settings.Target, connection: Connection,
                 target: Target, goal: str, downgrade: bool, seen: dict[str, tuple[str, ...]]) -> int:
    """env.py with the tenant schema handed in; the revisions it starts from are alembic's own read
    of the version table; a failing revision is named in the error."""
    from .migrating import revisions_to_run

    script = runtime.script_directory(manager, project)
    planned: list[Any] = []
    done: list[Any] = []
    # each step seen through alembic's on_version_apply, added to whatever env.py configures
    observer = environment.Observer(on_step=lambda step, heads: done.append(step))

    def steps(rev: Any, context: Any) -> Any:
        seen["before"] = tuple(sorted(rev))
        if not at_goal(script, seen["before"], goal):
            planned.extend(revisions_to_run(script, goal, rev, downgrade))
        return planned

    config = runtime.make_config(manager, project, connection)
    config.attributes["tenant_schema"] = target.schema
    if target.schema:  # a tenant's version table is in its own schema
        config.attributes["configure_options"]["version_table_schema"] = target.schema
    try:
        runtime.run_env(manager, config, script, steps, observer, destination_rev=goal)
    except Exception as error:
        if len(done) < len(planned):
            raise _failed(planned[len(done)].revision, error) from error
        raise
    return len(done)


def _failed(revision: Any, error: BaseException) -> MigrationFailed:
    """The failure of one target's revision, named (the row keeps the revision it stopped at)."""
    from .errors import database_message

    return MigrationFailed(f"Revision {revision.revision} ({revision.doc}) failed: {database_message(error)}",
                           revision.revision)


# ---------------------------------------------------------------- running many


_WORKER_MANAGERS: dict[tuple[Any, ...], Any] = {}


def _ignore_interrupts() -> None:
    """Worker processes leave Ctrl-C to the parent, which stops handing out targets."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_migrate(project: settings.Target, lock_timeout: float, target: Target, goal: str,
                    downgrade: bool) -> FanoutRow:
    """In a worker process: one target."""
    return migrate_row(worker_manager(project, lock_timeout), project, target, goal, downgrade)


def worker_manager(project: settings.Target, lock_timeout: float) -> AlembicManager:
    """In a worker process: one manager per project, its scripts loaded once for every target."""
    from .manager import AlembicManager

    key = (project.migrations_dir, project.alembic_ini, project.pyproject, lock_timeout)
    manager = _WORKER_MANAGERS.get(key)
    if manager is None:
        manager = _WORKER_MANAGERS[key] = AlembicManager(
            project.url, project.migrations_dir, None, project.project_root, lock_timeout)
    return manager


_PRELOAD = ["framefox_magic.fanout", "framefox_magic.manager", "alembic.runtime.environment",
            "alembic.op", "sqlalchemy", "psycopg", "psycopg2", "pymysql"]


def _worker_context() -> Any:
    """Fresh worker processes, never a fork of a threaded notebook kernel: forkserver (its server
    imports alembic once, then forks each worker from it) where the platform has it, else spawn."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def not_run(before: tuple[str, ...] | None, row: FanoutRow, reason: str,
            ran_for: float | None = None) -> FanoutRow:
    """A target that did not finish (stopped by a failure or an interrupt), as read again now: one
    interrupted in its run (RAN_FOR seconds) is at the last revision that committed, if any."""
    moved = row.ok and row.after != before
    if moved:  # stopped inside its run: what committed stays, the revision it was in does not
        reason = "interrupted part-way: the revisions that committed are kept"
    elif ran_for is not None and row.ok:
        reason = "interrupted before any of its revisions committed"
    interrupted = moved or (ran_for is not None and row.ok)
    return FanoutRow(row.target, before, row.after, ran_for or 0.0, False, row.error or reason,
                     "interrupted" if interrupted else "not run")


class Runner:
    """Hands targets out (in turn or to worker processes) and gathers one row per target."""

    def __init__(self, jobs: int, keep_going: bool, on_target: TargetCallback | None) -> None:
        self.jobs = max(1, jobs)
        self.keep_going = keep_going
        self.on_target = on_target
        self.rows: dict[int, FanoutRow] = {}
        self.stopped = ""
        self.began: dict[int, float] = {}  # when each target was handed out
        self.ran_for: dict[int, float] = {}  # the seconds of each target interrupted in its run

    def _record(self, index: int, row: FanoutRow, total: int) -> None:
        self.rows[index] = row
        if not row.ok and not self.keep_going and not self.stopped:
            self.stopped = f"not started: stopped after {row.target} failed"
        if self.on_target:
            self.on_target(len(self.rows), total, row)

    def run(self, targets: Sequence[Target], work: Callable[[Target], FanoutRow],
            pooled: Callable[[Any, Target], Any] | None, threaded: bool = False) -> list[FanoutRow]:
        """Every target's row, in the targets' order; interrupting stops handing out targets.
        `threaded`: `work` runs in threads (it needs no alembic proxy), else `pooled` in workers."""
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        jobs = min(self.jobs, len(targets))
        try:
            if jobs <= 1 or (pooled is None and not threaded):
                self._in_turn(targets, work)
            elif threaded:
                with ThreadPoolExecutor(jobs, thread_name_prefix="fanout") as pool:
                    self._in_pool(targets, jobs, lambda target: pool.submit(work, target))
            else:
                with ProcessPoolExecutor(jobs, mp_context=_worker_context(),
                                         initializer=_ignore_interrupts) as pool:
                    self._in_pool(targets, jobs, lambda target: pooled(pool, target))
        except KeyboardInterrupt:
            self.stopped = "not started: interrupted"
            self.ran_for = {index: time.perf_counter() - began for index, began in self.began.items()
                            if index not in self.rows}
        except BrokenProcessPool:  # a worker was killed (e.g. out of memory): the rest is read back
            self.stopped = "not finished: a worker process ended unexpectedly; run again to resume"
        return [self.rows.get(i) for i in range(len(targets))]  # type: ignore[misc]

    def _in_turn(self, targets: Sequence[Target], work: Callable[[Target], FanoutRow]) -> None:
        for index, target in enumerate(targets):
            if self.stopped:
                return
            self.began[index] = time.perf_counter()
            self._record(index, work(target), len(targets))

    def _in_pool(self, targets: Sequence[Target], jobs: int, submit: Callable[[Target], Any]) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        queue = list(enumerate(targets))[::-1]
        running: dict[Any, int] = {}
        try:
            while queue or running:
                while queue and len(running) < jobs and not self.stopped:
                    index, target = queue.pop()
                    self.began[index] = time.perf_counter()
                    running[submit(target)] = index
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._record(running.pop(future), future.result(), len(targets))
        except KeyboardInterrupt:
            self.stopped = "not started: interrupted"
            for future, index in running.items():  # the running ones finish their target
                self.rows[index] = future.result()
            raise


class Fanout:
    """One migration history over many targets: status, upgrade and downgrade for each."""

    def __init__(self, manager: AlembicManager, spec: str, jobs: int | None = None,
                 keep_going: bool = False) -> None:
        self.manager = manager
        self.spec = spec
        self.jobs = jobs or DEFAULT_JOBS
        self.keep_going = keep_going
        with translated(manager.url):
            project = manager.target()
        self.targets = with_version_table(expand(spec, project.url, project.project_root),
                                          runtime.version_table(manager, project), runtime.timeouts(manager))
        self._last_read: list[FanoutRow] = []

    def __len__(self) -> int:
        return len(self.targets)

    def _script(self, goal: str | None = None) -> Any:
        """The project's revisions; a goal that names a revision must exist (a typo touches nothing)."""
        with runtime.call(self.manager) as project:
            script = runtime.script_directory(self.manager, project)
            if goal and not goal.startswith(("+", "-")) and "@" not in goal \
                    and goal not in ("base", "head", "heads"):
                runtime.one_revision(script, goal)
            return script

    def _read_all(self) -> list[FanoutRow]:
        """One query per target, in threads."""
        self._last_read = read_all(self.targets)
        return self._last_read

    def _read_again(self, targets: list[Target], reason: str,
                    ran_for: dict[Target, float]) -> dict[Target, FanoutRow]:
        """Rows for targets that did not finish, their revisions read back from each database;
        RAN_FOR: the seconds of those interrupted in their run."""
        if not targets:
            return {}
        before = {t: r.after for t, r in zip(self.targets, self._last_read, strict=True)}
        rows = [not_run(before[t], row, reason, ran_for.get(t))
                for t, row in zip(targets, read_all(targets), strict=True)]
        return dict(zip(targets, rows, strict=True))

    def status(self, on_target: TargetCallback | None = None) -> FanoutResult:
        """Where each target is and how many revisions it is behind; env.py is not run."""
        script = self._script()
        heads = set(script.get_heads())
        revisions = [found.revision for found in script.ordered()]
        done: list[FanoutRow] = []

        def judge(row: FanoutRow) -> None:
            if row.ok:
                applied = runtime.applied_revisions(script, row.after or ())
                row.pending = sum(1 for revision in revisions if revision not in applied)
                row.state = "up to date" if set(row.after or ()) == heads else "behind"
            done.append(row)
            if on_target:
                on_target(len(done), len(self.targets), row)

        return FanoutResult("status", self.spec, read_all(self.targets, on_row=judge))

    def rehearse(self, goal: str = "head", on_target: TargetCallback | None = None) -> FanoutRehearsal:
        """Rehearse each target's pending revisions up to GOAL on a throwaway copy of it (up, down,
        up); the targets are not changed. A failure does not stop the others."""
        from functools import partial

        runtime.require_revision(goal)
        if ":" in goal:
            raise MigrationError("--targets takes one goal revision, not a range.")
        script = self._script(goal)
        before = {t: r for t, r in zip(self.targets, self._read_all(), strict=True)}
        todo = [t for t in self.targets if not (before[t].ok and at_goal(script, before[t].after, goal))]
        with translated(self.manager.url):
            project = self.manager.target()
        timeout = self.manager.lock_timeout
        runner = Runner(self.jobs, True, on_target)
        rows = runner.run(todo, partial(rehearse_row, self.manager, project, goal=goal),
                          lambda pool, target: pool.submit(_worker_rehearse, project, timeout, target, goal)
                          ) if todo else []
        ran = dict(zip(todo, rows, strict=True))
        result = [(ran[t] or RehearsalRow(t.label, "not run", False, error=runner.stopped)) if t in ran
                  else _nothing_to_rehearse(before[t], goal) for t in self.targets]
        return FanoutRehearsal(self.spec, goal, result, interrupted="interrupted" in runner.stopped)

    def lint(self, rev_range: str | None = None, on_target: TargetCallback | None = None) -> FanoutLint:
        """Lint each target's pending revisions (or RANGE), counted on its own rows; what is the same
        everywhere is reported once, the rest per target."""
        start, _, end = (rev_range or "heads").rpartition(":")
        for named in (start, end):
            if named:
                self._script(named)
        result = lint_all(self._script(), self.targets, rev_range, self.jobs, on_target)
        result.spec = self.spec
        return result

    def upgrade(self, goal: str = "head", on_target: TargetCallback | None = None) -> FanoutResult:
        """Upgrade every target to GOAL; targets already there are skipped."""
        return self._migrate(goal, False, on_target)

    def downgrade(self, goal: str, on_target: TargetCallback | None = None) -> FanoutResult:
        """Downgrade every target to GOAL; targets already there are skipped."""
        return self._migrate(goal, True, on_target)

    def _migrate(self, goal: str, downgrade: bool, on_target: TargetCallback | None) -> FanoutResult:
        from functools import partial

        from .runtime import require_revision

        require_revision(goal)
        if ":" in goal:
            raise MigrationError("--targets takes one goal revision, not a range.")
        script = self._script(goal)
        verb = "downgrade" if downgrade else "upgrade"
        before = {t: r for t, r in zip(self.targets, self._read_all(), strict=True)}
        todo = [t for t in self.targets if not _nothing_to_do(script, before[t], goal, downgrade)]
        with translated(self.manager.url):
            project = self.manager.target()
        timeout = self.manager.lock_timeout
        if replay.replayable_env(project.migrations_dir):  # rendered once, replayed in threads
            replayer = replay.Replayer(self.manager, project, script, goal, downgrade)
            runner = Runner(self.jobs, self.keep_going, on_target)
            try:
                with runtime.quiet_alembic_logging():
                    rows = runner.run(todo, partial(replay.migrate_row, replayer), None, threaded=True)
            finally:
                replayer.kept.close()
        else:  # env.py of the project's own: run for each target, in worker processes
            runner = Runner(self.jobs, self.keep_going, on_target)
            rows = runner.run(
                todo, partial(migrate_row, self.manager, project, goal=goal, downgrade=downgrade),
                lambda pool, target: pool.submit(_worker_migrate, project, timeout, target, goal,
                                                 downgrade),
            )
        ran = dict(zip(todo, rows, strict=True))
        left = self._read_again([t for t in todo if ran[t] is None], runner.stopped,
                                {todo[index]: seconds for index, seconds in runner.ran_for.items()})
        result = [ran[t] or left[t] if t in ran else replace(before[t], state="already at goal")
                  for t in self.targets]
        return FanoutResult(verb, self.spec, result, interrupted="interrupted" in runner.stopped)
