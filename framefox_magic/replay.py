"""Revisions rendered once per dialect, replayed per target: the fast path of a fan-out migration.

A revision's `upgrade()` / `downgrade()` is run once per dialect (and server version) in alembic's
offline mode, and the SQL it writes is kept. Each target then gets alembic's own MigrationContext
on its own connection (in a thread; no `op` or `context` proxy is involved), whose steps send the
kept SQL: alembic still reads and writes the version table (in the tenant's schema), opens one
transaction per revision with its version row on PostgreSQL and does what it does on MariaDB and
SQLite, where DDL is not transactional.

Only for the env.py that `init` writes, unchanged (see `replayable_env`): the per-connection work
it does (the tenant's `search_path` and `schema_translate_map`, the version table's schema, one
transaction per revision) is done here the same way. A revision that reads the database, asks
whether it runs offline, or cannot be rendered offline runs its own Python instead, online, on the
target's connection, one such revision at a time in the process (alembic's proxies are shared).
A PostgreSQL target whose whole run renders gets it as one script instead (pgreplay.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pgreplay, runtime, settings
from .errors import MigrationError, translated
from .results import FanoutRow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .fanout import Target
    from .manager import AlembicManager

Revisions = tuple[str, ...]

# what a revision's source uses when it depends on the database or on the mode it runs in, or makes
# values that must differ by target (rendered once, every target would get the same one)
_ONLINE_ONLY = re.compile(
    r"\b(get_bind|get_context|is_offline_mode|run_async|get_x_argument|inspect"
    r"|uuid\d|random|secrets|(datetime|date|timezone)\.(now|utcnow|today)|time\.time)\b"
    r"|from\s+alembic\s+import\s+[^\n]*\bcontext\b|alembic\.context\b"
)


@lru_cache(maxsize=8)
def _template_text() -> str:
    from importlib import resources

    text = resources.files("framefox_magic").joinpath("templates", "env.py").read_text(encoding="utf-8")
    return _normalized(text)


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@lru_cache(maxsize=32)
def _same_as_template(path: str, mtime_ns: int, size: int) -> bool:
    try:
        return _normalized(Path(path).read_text(encoding="utf-8")) == _template_text()
    except (OSError, UnicodeDecodeError):
        return False


def replayable_env(migrations_dir: Path) -> bool:
    """Whether env.py is exactly the one `init` writes: then what it does per connection is known
    and done here; any other env.py (hooks, its own engine, events) runs for each target."""
    env_py = Path(migrations_dir) / "env.py"
    try:
        stat = env_py.stat()
    except OSError:
        return False
    return _same_as_template(str(env_py), stat.st_mtime_ns, stat.st_size)


class _Collected:
    """An output buffer keeping each statement alembic writes in offline mode as one string."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def dialect_key(connection: Connection) -> tuple[Any, ...]:
    """What the rendered SQL depends on: the dialect, its driver, the server's version."""
    dialect = connection.dialect
    return type(dialect), dialect.server_version_info, getattr(dialect, "is_mariadb", False)


def render(connection: Connection, step: Any) -> tuple[str, ...] | None:
    """The statements a revision step sends, rendered offline for this connection's dialect;
    None when it must run its own Python on each target."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    if not renders_offline(step):
        return None
    collected = _Collected()
    offline = MigrationContext.configure(
        dialect=connection.dialect,
        opts={"as_sql": True, "literal_binds": True, "output_buffer": collected},
    )
    terminator = offline.impl.command_terminator
    try:
        with runtime._ALEMBIC_LOCK, Operations.context(offline):
            step.migration_fn()
    except Exception:  # e.g. a batch operation that must reflect the table: not renderable
        return None
    statements = []
    for text in collected.writes:
        text = text.removesuffix("\n\n")
        statements.append(text.removesuffix(terminator) if terminator else text)
    return tuple(statements)


def renders_offline(step: Any) -> bool:
    """Whether the step's revision can be rendered once for every target (its source reads no
    database, asks for no mode and makes no value per run)."""
    source = _source(step.revision)
    return source is not None and not _ONLINE_ONLY.search(source)


def _source(script: Any) -> str | None:
    try:
        return Path(script.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@dataclass
class Replayer:
    """One run's rendered revisions, shared by the threads that replay them on targets."""

    manager: AlembicManager
    project: settings.Target
    script: Any
    goal: str
    downgrade: bool
    rendered: dict[tuple[Any, ...], tuple[str, ...] | None] = field(default_factory=dict)
    scripts: dict[tuple[Any, ...], pgreplay.Script | None] = field(default_factory=dict)
    kept: pgreplay.KeptConnections = field(default_factory=pgreplay.KeptConnections)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def statements(self, connection: Connection, step: Any) -> tuple[str, ...] | None:
        """The step's SQL for this dialect, rendered by the first target that needs it."""
        key = (dialect_key(connection), step.revision.revision, self.downgrade)
        with self.lock:
            if key not in self.rendered:
                self.rendered[key] = render(connection, step)
            return self.rendered[key]

    def whole_run(self, connection: Connection, before: Revisions, target: Target) -> pgreplay.Script | None:
        """The whole run from BEFORE as one script per revision, rendered by the first target that
        starts there; None when it does not render."""
        key = (dialect_key(connection), before, bool(target.versions_schema), target.version_table)
        with self.lock:
            if key not in self.scripts:
                steps = self.plan(before)
                self.scripts[key] = pgreplay.render(self, connection, before, target, steps)
            return self.scripts[key]

    def plan(self, heads: Any) -> list[Any]:
        """The revision steps from these heads to the goal (the revision map is not thread-safe)."""
        from .fanout import at_goal
        from .migrating import revisions_to_run

        with self.lock:
            if at_goal(self.script, tuple(heads), self.goal):
                return []
            return list(revisions_to_run(self.script, self.goal, heads, self.downgrade))


def migrate_row(replayer: Replayer, target: Target) -> FanoutRow:
    """Upgrade or downgrade one target by replaying the rendered revisions; the row tells what its
    version table says (read back after a failure), as the alembic-per-target path does."""
    from .fanout import current_of

    began = time.perf_counter()
    run = _Run()
    try:
        replayed = pgreplay.migrate(replayer, target, run)
        if replayed is None:  # not a PostgreSQL target, or its run does not render whole
            run = _Run()
            replayed = _migrate(replayer, target, run)
        before, after = replayed
    except MigrationError as error:
        try:
            after = current_of(target)
        except MigrationError:
            after = None
        return FanoutRow(target.label, run.before, after, time.perf_counter() - began, False,
                         str(error), "failed")
    state = ("downgraded" if replayer.downgrade else "upgraded") if run.done else "already at goal"
    return FanoutRow(target.label, before, after, time.perf_counter() - began, True, "", state)


@dataclass
class _Run:
    """What happened on one target: where it started, the steps planned, those applied."""

    before: Revisions | None = None
    planned: list[Any] = field(default_factory=list)
    done: int = 0
    heads: Revisions = ()


def _migrate(replayer: Replayer, target: Target, run: _Run) -> tuple[Revisions, Revisions]:
    """One target on its own connection under its own lock; (before, after)."""
    from .dialects import backup_sqlite
    from .fanout import shared_engine, target_lock

    with translated(target.url), shared_engine(target).connect() as connection, \
            target_lock(connection, target, replayer.manager.lock_timeout,
                        _search_path(connection, target.schema)):
        if replayer.downgrade:
            backup_sqlite(connection)
        if target.schema:  # unqualified names in the revisions that run their own Python
            connection.execution_options(schema_translate_map={None: target.schema})
        _run_steps(replayer, connection, target, run)
        before = run.before or ()
        return before, run.heads if run.done else before


def _search_path(connection: Connection, schema: str | None) -> str | None:
    """What init's env.py sets for a tenant on PostgreSQL: its schema first, then public."""
    if not schema or connection.dialect.name != "postgresql":
        return None
    return f"{connection.dialect.identifier_preparer.quote_identifier(schema)}, public"


def _run_steps(replayer: Replayer, connection: Connection, target: Target, run: _Run) -> None:
    """alembic's MigrationContext with init's env.py options; its steps send the rendered SQL."""
    from alembic.runtime.migration import MigrationContext

    from .fanout import _failed

    def applied(heads: Any, **_: Any) -> None:  # what alembic wrote in the revision's transaction
        run.done += 1
        run.heads = tuple(sorted(heads))

    context = MigrationContext.configure(connection, opts={
        "version_table": target.version_table, "version_table_schema": target.versions_schema,
        "transaction_per_migration": True,
        "fn": lambda heads, ctx: _steps(replayer, ctx, target, run, heads),
        "on_version_apply": (applied,),
    })
    try:
        with context.begin_transaction():
            context.run_migrations()
    except Exception as error:
        if run.done < len(run.planned):
            raise _failed(run.planned[run.done].revision, error) from error
        raise


def _steps(replayer: Replayer, context: Any, target: Target, run: _Run,
           heads: Any) -> Iterator[Any]:
    """The steps to the goal, each replaying its SQL (or running its own Python)."""
    run.before = tuple(sorted(heads))
    run.planned = replayer.plan(heads)
    for step in run.planned:
        statements = replayer.statements(context.connection, step)
        yield replace_step(step, _sender(context.connection, statements) if statements is not None
                           else _online(replayer, context, target, step.migration_fn))


def replace_step(step: Any, migration_fn: Callable[[], None]) -> Any:
    """The same revision step, doing something else for its migration function."""
    step.migration_fn = migration_fn
    return step


def _sender(connection: Connection, statements: tuple[str, ...]) -> Callable[[], None]:
    """Send the statements; PostgreSQL's drivers take a revision's statements in one round trip
    (they run in the revision's transaction either way, and the server stops at the first error)."""
    if connection.dialect.name == "postgresql" and len(statements) > 1:
        statements = (";\n".join(statements),)

    def send() -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)

    return send


def _online(replayer: Replayer, migration_context: Any, target: Target,
            function: Callable[[], None]) -> Callable[[], None]:
    """The revision's own Python on this target, as env.py would run it: `op` and `context` set up
    for this connection (one such revision at a time in the process: they are shared proxies)."""
    from alembic.operations import Operations
    from alembic.runtime.environment import EnvironmentContext

    def run_online(**kw: Any) -> None:
        with runtime._ALEMBIC_LOCK:
            config = runtime.make_config(replayer.manager, replace(replayer.project, url=target.url),
                                         migration_context.connection)
            config.attributes["tenant_schema"] = target.schema
            with EnvironmentContext(config, replayer.script, as_sql=False) as environment, \
                    Operations.context(migration_context):
                environment._migration_context = migration_context
                function(**kw)

    return run_online
