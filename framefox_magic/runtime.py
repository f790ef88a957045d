"""One command's plumbing: the target, alembic's Config, the cached script directory, running env.py,
connections and the version table, as functions that take the manager first."""

from __future__ import annotations

import gc
import io
import os
import re
import threading
import weakref
from argparse import Namespace
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dialects, environment, settings
from .errors import (
    MigrationError,
    NotInitialized,
    NotUpToDate,
    RevisionNotFound,
    translated,
    with_suggestion,
)
from .headers import created
from .render import counted
from .results import ListedRevisions, RevisionInfo

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .manager import AlembicManager


@dataclass
class State:
    """What a reading command starts from: the target, its scripts, what the database records."""

    target: settings.Target
    script: ScriptDirectory
    current: tuple[str, ...]
    applied: frozenset[str]
    opened: Callable[[], Connection]  # the connection, opened when first asked for

    @cached_property
    def connection(self) -> Connection:
        """A connection to the target (listing a SQLite file's history needs none)."""
        return self.opened()

    def info(self, found: Script) -> RevisionInfo:
        """A revision with its applied / current flags in this state."""
        return revision_info(found, self.applied, self.current)

    def infos(self, found: Sequence[Script]) -> list[RevisionInfo]:
        """Revisions with their applied / current flags in this state (a long history: thousands)."""
        return list(self.listed(found))

    def listed(self, found: Sequence[Script]) -> ListedRevisions:
        """The same, each built when first used."""
        kept = getattr(self.script, "listed_headers", None)  # a map of ours keeps them
        headers = kept(found, _listed_header) if kept else list(map(_listed_header, found))
        return ListedRevisions(headers, self.applied, self.current)


@contextmanager
def locked(manager: AlembicManager) -> Iterator[tuple[settings.Target, Connection]]:
    """One command that writes the version table: its target and a connection holding the migration lock."""
    with call(manager) as target, connect(manager, target) as connection, database_lock(manager, connection):
        yield target, connection


@contextmanager
def state(manager: AlembicManager, reading: bool = True) -> Iterator[State]:
    """One command's target, script directory, current heads and applied revisions."""
    with call(manager) as target, ExitStack() as kept:
        current = sqlite_heads(manager, target) if reading else None
        opened: list[Connection] = []

        def connection() -> Connection:
            if not opened:
                opened.append(kept.enter_context(connect(manager, target, reading=reading)))
            return opened[0]

        if current is None:
            current = current_heads(manager, target, connection())
        script = script_directory(manager, target)
        yield State(target, script, current, applied_revisions(script, current), connection)


def sqlite_heads(manager: AlembicManager, target: settings.Target) -> tuple[str, ...] | None:
    """A plain SQLite file's version table read with sqlite3, read-only, as current_heads reads it
    (the same file and table, rows as stored), without SQLAlchemy's engine and dialect (their
    import and first connection were most of a first `history` beyond alembic's own imports).
    None, and the engine's path answers, when the file is missing (that path creates it), a
    writer holds it (that path waits for it), the table has a schema, or anything fails."""
    if settings.plain_sqlite_url(target.url, target.project_root) != target.url:
        return None
    table, schema = version_table(manager, target)
    database = target.url.split(":///", 1)[1]
    if schema is not None or not os.path.isfile(database):
        return None
    import sqlite3

    from .quickread import sqlite_versions

    try:
        found = sqlite_versions(database, table, timeout=0, in_order=False)
    except sqlite3.Error:
        return None
    return () if found is None else found


@contextmanager
def call(manager: AlembicManager, initialized: bool = True) -> Iterator[settings.Target]:
    """One command: resolve the target, serialize, keep logging quiet, translate errors."""
    with translated(manager.url):
        target = manager.target()
    with _suggesting(manager, target), _ALEMBIC_LOCK, quiet_alembic_logging(), \
            translated(target.url, manager.url):
        if initialized and not (target.migrations_dir / "env.py").is_file():
            raise NotInitialized(f"No migrations folder at {target.migrations_dir}: run `init` first.")
        try:
            yield target
        except Exception as error:  # raised in one of the project's files: name it
            named = environment.project_file_error(error, target.project_root, target.migrations_dir)
            if named is None:
                raise
            raise named from error


@contextmanager
def explaining_pending(manager: AlembicManager) -> Iterator[None]:
    """Comparing the models needs the database at head: say which revisions wait, and what helps."""
    try:
        yield
    except NotUpToDate as error:
        try:
            waiting = manager.status().pending_revisions
        except MigrationError:
            raise error from None
        raise NotUpToDate(pending_explained(waiting, hasattr(manager, "rehearse"))) from None


@contextmanager
def _suggesting(manager: AlembicManager, target: settings.Target) -> Iterator[None]:
    """A revision that is not found comes with the ids it was probably meant to be."""
    try:
        yield
    except RevisionNotFound as error:
        if error.wanted:
            try:
                known = [r.revision for r in script_directory(manager, target).ordered()]
            except Exception:  # the suggestion is a courtesy: never a second failure
                known = []
            with_suggestion(error, known)
        raise


def make_config(manager: AlembicManager, target: settings.Target,
    connection: Any = None,
    autogenerate: bool = False,
    output_buffer: io.StringIO | None = None,
    **configure_options: Any,
) -> Config:
    """The one alembic Config factory: in memory, never a file holding the URL."""
    from alembic.config import Config
    from sqlalchemy import MetaData

    config = Config(
        file_=target.alembic_ini, toml_file=target.pyproject, stdout=io.StringIO(),
        output_buffer=output_buffer,
    )
    config.set_main_option("script_location", str(target.migrations_dir))
    shape = environment.env_shape(target.migrations_dir / "env.py")
    url = environment.async_url(target.url) if shape.wants == "url" else target.url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = _handed(shape, connection)
    _anchor_paths(config, target.project_root)
    config.attributes["target_metadata"] = manager.target_metadata() if autogenerate else MetaData()
    config.attributes["configure_options"] = {**_version_table_options(manager, target), **configure_options}
    config.cmd_opts = Namespace(quiet=True, x=None)  # quiet: no "Generating ..." lines; x: no -x
    return config


def _version_table_options(manager: AlembicManager, target: settings.Target) -> dict[str, str]:
    """The version table the settings name, for the env.py `init` writes (it passes these options to
    `context.configure`): writing goes where reading looks. Another env.py ignores them."""
    table, schema = version_table(manager, target)
    return {"version_table": table, **({"version_table_schema": schema} if schema else {})}


def script_directory(manager: AlembicManager, target: settings.Target,
                     config: Config | None = None) -> ScriptDirectory:
    """The revision scripts, listed from their headers and kept while the files are unchanged."""
    if manager._scripts is None:
        from .scripts import ScriptCache

        manager._scripts = ScriptCache()
    key = (target.migrations_dir, target.alembic_ini, target.pyproject)
    return manager._scripts.get(lambda: config or make_config(manager, target), key)


def run_env(manager: AlembicManager, config: Config, script: ScriptDirectory, work: Callable[[Any, Any], Any],
             observer: environment.Observer | None = None, **options: Any) -> None:
    """Run env.py with `work` as its migration function, as alembic.command does, but on the
    cached script directory (alembic.command would import every revision file again).
    A failure before `work` starts is env.py's own: the error names the file and line."""
    observer = observer or environment.Observer()
    kind = environment.observed_environment(observer)

    def started(rev: Any, context: Any) -> Any:
        observer.started = True
        return work(rev, context)

    try:
        try:
            environment.run_env_file(kind, config, script, started, observer, options)
        except AttributeError as error:
            if observer.started or not _wanted_an_engine(error, config.attributes.get("connection")):
                raise
            config.attributes["connection"] = config.attributes["connection"].engine
            environment.run_env_file(kind, config, script, started, observer, options)
    except Exception as error:
        named = environment.project_file_error(
            error, Path(manager.project_root).resolve(), Path(script.dir))
        if not observer.started and named is not None:
            raise named from error
        raise


def write_through_env(manager: AlembicManager, target: settings.Target, connection: Connection,
                       work: Callable[[Any, Any], Any], observer: environment.Observer | None = None,
                       **options: Any) -> environment.Observer:
    """Run env.py to change the database, observed; then commit what was handed to it."""
    observer = observer or environment.Observer()
    config = make_config(manager, target, connection)
    script = script_directory(manager, target, config)
    try:
        with environment.statements_listened(observer):
            run_env(manager, config, script, work, observer, **options)
    except BaseException:
        _settle(connection, failed=True)
        raise
    _settle(connection, failed=False)
    return observer


def read_back(manager: AlembicManager, target: settings.Target,
              observer: environment.Observer) -> tuple[str, ...]:
    """The version table as a fresh connection of our own reads it after a write."""
    table, schema = version_table(manager, target)
    where = (observer.options.get("version_table") or table,
             observer.options.get("version_table_schema") or schema)
    with connect(manager, target) as fresh:
        return current_heads(manager, target, fresh, where)


def version_table(manager: AlembicManager, target: settings.Target) -> tuple[str, str | None]:
    """The version table's name and schema: env.py's literal, else the setting, else alembic's."""
    return environment.version_table(target, manager.version_table, manager.version_table_schema)


@contextmanager
def connect(manager: AlembicManager, target: settings.Target, reading: bool = False) -> Iterator[Connection]:
    """A connection for one call, from the engine kept for this URL; `reading`: the call writes
    nothing to the database (listing, comparing with the models)."""
    from sqlalchemy.exc import OperationalError

    from .provisioning import missing_database

    # pooled only then, and only with our own env.py: another env.py may leave session state
    own_env = environment.is_own_template(target.migrations_dir / "env.py")
    engine = _kept_engine(manager, environment.sync_url(target.url), pooled=reading and own_env)
    try:
        connection = engine.connect()
    except OperationalError as error:
        missing = missing_database(target.url, error)
        if missing is None:
            raise
        raise missing from error
    with connection:
        yield connection


def _kept_engine(manager: AlembicManager, url: str, pooled: bool) -> Any:
    """The engine for this URL, made on first use; the URL changing disposes the old ones."""
    if manager._engines_url != (url, timeouts(manager)):  # a new URL or new timeouts: new engines
        dispose_engines(manager._engines)  # the revision map and its watch stay: same folders
        manager._engines_url = (url, timeouts(manager))
    engine = manager._engines.get(pooled)
    if engine is None:
        engine = manager._engines[pooled] = dialects.engine(url, timeouts(manager), pooled)
    return engine


def timeouts(manager: AlembicManager) -> dialects.Timeouts:
    """The connect, lock and DDL timeouts this manager was given."""
    return dialects.Timeouts(manager.connect_timeout, manager.lock_timeout, manager.ddl_lock_timeout)


@contextmanager
def database_lock(manager: AlembicManager, connection: Connection) -> Iterator[None]:
    """Serialize migrations across processes; whoever holds the lock is named when it times out."""
    with dialects.migration_lock(connection, manager.lock_timeout):
        yield


def current_heads(manager: AlembicManager, target: settings.Target, connection: Connection,
                   where: tuple[str, str | None] | None = None) -> tuple[str, ...]:
    """The revisions recorded in the version table, read directly (env.py is not run)."""
    table, schema = where or version_table(manager, target)
    return environment.read_versions(connection, table, schema)


def walk(script: ScriptDirectory, base: str = "base", head: str = "heads") -> list[Script]:
    """The revisions from BASE to HEAD, newest first."""
    if (base, head) == ("base", "heads"):
        return script.ordered()
    return list(script.walk_revisions(base, head))


def applied_revisions(script: ScriptDirectory, current: Sequence[str]) -> frozenset[str]:
    """Every revision the database's current heads include (themselves and their ancestors)."""
    return script.ancestors(tuple(sorted(current)))


def one_revision(script: ScriptDirectory, rev: str) -> Script:
    """The revision REV names; a short error when there is none."""
    require_revision(rev)
    found = script.get_revision(rev)
    if found is None:
        raise RevisionNotFound(f"No revision '{rev}' (that name means the base).")
    return found


def revision_info(found: Script, applied: Set[str], current: Sequence[str]) -> RevisionInfo:
    """A revision's header with its applied / current flags."""
    return RevisionInfo.listed([_listed_header(found)], applied, current)[0]


_ALEMBIC_LOCK = threading.RLock()


_HEADERS: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def _listed_header(found: Script) -> tuple[Any, ...]:
    """What a revision says about itself and its place in the map, as RevisionInfo.listed takes it;
    read once per loaded map."""
    header = _HEADERS.get(found)
    if header is None:
        from alembic import util

        header = _HEADERS[found] = (
            found.revision, tuple(found._all_down_revisions), found.doc or "",
            created(found.longdoc, found.path), str(found.path), tuple(sorted(found.branch_labels)),
            tuple(util.to_tuple(found.dependencies, default=())), found.is_head, tuple(sorted(found.nextrev)),
        )
    return header


def pending_explained(waiting: Sequence[RevisionInfo], can_rehearse: bool) -> str:
    """Why the models cannot be compared with the database yet, and what to do instead."""
    listed = ", ".join(f"{r.revision} ({r.message})" for r in waiting[:3])
    listed += ", ..." if len(waiting) > 3 else ""
    is_are = "is" if len(waiting) == 1 else "are"
    first = waiting[0].revision if waiting else "head"
    tryout = "try it on a throwaway copy with `rehearse`, or " if can_rehearse else ""
    return (
        f"{counted(len(waiting), 'revision').capitalize()} {is_are} written but not applied yet: "
        f"{listed}. The models are compared with the database once it is at head. See what "
        f"{'it does' if len(waiting) == 1 else 'they do'} with `diff {first}` (or `upgrade --plan`); "
        f"{tryout}apply {'it' if len(waiting) == 1 else 'them'} with `upgrade`, then compare again."
    )


RESERVED_IDS = frozenset({"base", "head", "heads", "current"})


_NAMES_A_REVISION = re.compile(r"\w")


def require_revision(value: str | None) -> None:
    """Refuse an empty or shapeless revision argument before alembic trips over it."""
    if not value or not _NAMES_A_REVISION.search(value):
        raise RevisionNotFound(
            f"'{value or ''}' does not name a revision: use an id (or a unique prefix), head, heads, "
            "base, +N / -N, or branch@head."
        )


def revision_args() -> dict[str, Any]:
    """alembic's revision command arguments, at their defaults."""
    return {
        "message": None, "autogenerate": True, "sql": False, "head": "head", "splice": False,
        "branch_label": None, "version_path": None, "rev_id": None, "depends_on": None,
    }


def heads_text(heads: Sequence[str]) -> str:
    """Heads as a user reads them ("base (no revision)" when there are none)."""
    return ", ".join(heads) if heads else "base (no revision)"


def dispose_engines(engines: dict[bool, Any]) -> None:
    """Close the engines' pooled connections and forget the engines."""
    kept = list(engines.values())
    engines.clear()
    for engine in kept:
        engine.dispose()


def _handed(shape: environment.EnvShape, connection: Any) -> Any:
    """What env.py expects in config.attributes["connection"]: a Connection, an Engine, or nothing."""
    if connection is None or shape.wants == "url":
        return None
    return connection.engine if shape.wants == "engine" else connection


def _wanted_an_engine(error: AttributeError, handed: Any) -> bool:
    """env.py called .connect() (or used .begin() as a connection) on the Connection handed to it:
    it expects an Engine there."""
    from sqlalchemy.engine import Connection, Transaction

    if not isinstance(handed, Connection):
        return False
    if isinstance(error.obj, Transaction):  # `with handed.begin() as connection:` gave a Transaction
        return error.obj.connection is handed
    return error.obj is handed and error.name == "connect"


def _settle(connection: Connection, failed: bool) -> None:
    """Commit what env.py left open on the connection handed to it (alembic's cookbook leaves it to
    the caller); after a failure, only where DDL is kept anyway (MySQL/MariaDB)."""
    if connection.closed or connection.invalidated or not connection.in_transaction():
        return
    if failed and not dialects.keeps_ddl_after_failure(connection):
        connection.rollback()
        return
    try:
        connection.commit()
    except Exception:
        connection.rollback()
        if not failed:
            raise


def _anchor_paths(config: Config, root: Path) -> None:
    """prepend_sys_path and version_locations are relative to the project, not the kernel's folder."""
    import sys

    for entry in config.get_prepend_sys_paths_list() or []:
        path = str((root / entry).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    locations = config.get_version_locations_list()
    if locations:
        anchored = os.pathsep.join(str((root / location).resolve()) for location in locations)
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", anchored.replace("%", "%%"))


@contextmanager
def collection_paused() -> Iterator[None]:
    """Compare schemas without the garbage collector: it spends much of autogenerate's time
    walking objects that are all still alive; what the comparison leaves is collected once after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(0)  # nothing was promoted while paused: the young generation holds it all


@contextmanager
def quiet_alembic_logging() -> Iterator[None]:
    """Keep alembic's INFO lines out of the notebook, and keep env.py from re-configuring logging."""
    import logging.config

    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    chatty = alembic_logger.isEnabledFor(logging.INFO)
    file_config = logging.config.fileConfig
    if chatty:
        alembic_logger.setLevel(logging.WARNING)
    logging.config.fileConfig = _ignore_file_config
    try:
        yield
    finally:
        logging.config.fileConfig = file_config
        if chatty:
            alembic_logger.setLevel(level)


def _ignore_file_config(*args: Any, **kwargs: Any) -> None:
    """Stands in for logging.config.fileConfig, which would disable the notebook's loggers."""
