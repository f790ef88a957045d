"""AlembicManager: the one wrapper over alembic's Python API that every front end calls.

Each method is the public face of a command; the work lives in the rooms: runtime (plumbing),
reading, migrating, authoring, housekeeping."""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import authoring, dialects, housekeeping, migrating, quickread, reading, runtime, settings
from .errors import ChangesDetected, translated

# kept importable from here: other modules and notebooks use these names
from .housekeeping import TEMPLATE_FILES  # noqa: F401
from .metadata import check_spec, resolve_metadata
from .migrating import StepCallback
from .reflection import ReflectionCache
from .render import counted
from .results import (
    CellRevision,
    Diff,
    Erd,
    Graph,
    History,
    Lint,
    Outcome,
    Plan,
    Rehearsal,
    RevisionInfo,
    RevisionList,
    SqlScript,
    Squash,
    Status,
    TargetInfo,
)
from .runtime import _ALEMBIC_LOCK, pending_explained  # noqa: F401
from .runtime import quiet_alembic_logging as _quiet_alembic_logging  # noqa: F401
from .runtime import require_revision as _require_revision  # noqa: F401

if TYPE_CHECKING:
    from .fanout import Fanout
    from .scripts import ScriptCache

BACKUPS_KEPT = dialects.BACKUPS_KEPT


class AlembicManager:
    """Alembic migrations for one project: a database URL, a migrations folder and a MetaData."""

    version_table: str | None = None  # when env.py names its version table in a way not read from source
    version_table_schema: str | None = None

    def __init__(
        self,
        url: str | None = None,
        migrations_dir: str | os.PathLike[str] | None = None,
        metadata: Any = None,
        project_root: str | os.PathLike[str] = ".",
        lock_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        ddl_lock_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.migrations_dir = migrations_dir
        self.metadata = metadata
        self.project_root = project_root
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self.ddl_lock_timeout = ddl_lock_timeout
        self._scripts: ScriptCache | None = None
        self._engines: dict[bool, Any] = {}
        self._engines_url: tuple[str, Any] | None = None
        weakref.finalize(self, runtime.dispose_engines, self._engines)
        self._reflection = ReflectionCache()
        self._read_before = False

    @property
    def url(self) -> str | None:
        """The database URL given to this manager (its repr masks the password)."""
        return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        self._url = settings.secret(value)

    def __repr__(self) -> str:
        target = self.target()
        return f"AlembicManager(url={target.masked_url!r}, migrations_dir={str(target.migrations_dir)!r})"

    # ---------------------------------------------------------------- the target

    def target(self) -> settings.Target:
        """The database URL and migrations folder in force now (resolved on every call)."""
        return settings.resolve(self.url, self.migrations_dir, self.project_root)

    def config(self) -> TargetInfo:
        """Show or set the active target (URL masked) and where each part came from."""
        with translated(self.url):
            target = self.target()
        return TargetInfo(
            url=target.masked_url,
            url_source=target.url_source,
            migrations_dir=str(target.migrations_dir),
            dir_source=target.dir_source,
            metadata=_describe(self.metadata_spec()),
            initialized=(target.migrations_dir / "env.py").is_file(),
        )

    def set_target(self, url: str | None = None, migrations_dir: str | None = None,
                   metadata: str | None = None) -> None:
        """Make these the target from now on; a malformed value is refused and changes nothing."""
        url = settings.secret(url)
        if url:
            with translated(url):
                settings.normalize_url(url, Path(self.project_root).resolve())
        if metadata:
            check_spec(metadata)
        for name, value in (("url", url), ("migrations_dir", migrations_dir), ("metadata", metadata)):
            if value:
                setattr(self, name, value)

    def backup_note(self) -> str | None:
        """Why no backup is taken before a destructive change of this database (None when one is)."""
        with translated(self.url):
            return dialects.no_backup_reason(self.target().url)

    def metadata_spec(self) -> Any:
        """The metadata as configured: this manager's, else pyproject's [tool.framefox_magic]."""
        return self.metadata or settings.tool_defaults(self.project_root).get("metadata")

    def target_metadata(self) -> Any:
        """The MetaData autogenerate compares the database with."""
        return resolve_metadata(self.metadata_spec(), Path(self.project_root).resolve())

    def for_targets(self, spec: str, jobs: int | None = None, keep_going: bool = False) -> Fanout:
        """This project's history over many targets: schemas:PATTERN, file:PATH or sqlite:GLOB."""
        from .fanout import Fanout

        return Fanout(self, spec, jobs=jobs, keep_going=keep_going)


    # ---------------------------------------------------------------- set-up

    def init(self, create_database: bool = False) -> Outcome:
        """Create the migrations folder, versions/, env.py and script.py.mako (idempotent)."""
        return housekeeping.init(self, create_database)

    def create_database(self) -> Outcome:
        """Create the PostgreSQL or MySQL/MariaDB database the URL names, unless it exists."""
        return housekeeping.create_database(self)

    def drop_database(self, name: str | None = None) -> Outcome:
        """Drop a throwaway PostgreSQL or MySQL/MariaDB database (the one the URL names)."""
        return housekeeping.drop_database(self, name)

    def create_version_table(self) -> Outcome:
        """Create the alembic_version table if it does not exist."""
        return housekeeping.create_version_table(self)

    # ---------------------------------------------------------------- reading

    def status(self) -> Status:
        """Current revision(s), heads, pending revisions and whether the database is up to date."""
        if (quick := self._first_reading(quickread.quick_status)) is not None:
            return quick
        with runtime.state(self) as now:
            return reading.status(now)

    def history(self, rev_range: str | None = None) -> History:
        """Every revision, newest first, with applied / current / head flags."""
        if rev_range is None and (quick := self._first_reading(quickread.quick_history)) is not None:
            return quick
        with runtime.state(self) as now:
            return reading.history(now, rev_range)

    def _first_reading(self, read: Callable[..., Any]) -> Any:
        """This manager's first status or history in a process that has not imported alembic, read
        with the standard library when the project is plain enough (else None): a new kernel or
        command line shows it without alembic's import. Later readings use the manager's caches."""
        if self._read_before or "alembic" in sys.modules:
            return None
        self._read_before = True
        return read(self.url, self.migrations_dir, self.project_root, self.version_table,
                    self.version_table_schema)

    def current(self) -> RevisionList:
        """The revision(s) the database is at."""
        with runtime.state(self) as now:
            return reading.listing(now, "Current revision", now.script.get_revisions(now.current))

    def heads(self) -> RevisionList:
        """The newest revision of each branch."""
        with runtime.state(self) as now:
            return reading.listing(now, "Heads", now.script.get_revisions("heads"))

    def branches(self) -> RevisionList:
        """The revisions where the history splits into branches."""
        with runtime.state(self) as now:
            points = [r for r in runtime.walk(now.script) if r.is_branch_point]
            return reading.listing(now, "Branch points", points)

    def graph(self) -> Graph:
        """The revision graph, drawn: branches, merges, heads, applied and pending revisions."""
        history = self.history()
        return Graph(history.revisions, history.url)

    def show(self, rev: str) -> RevisionInfo:
        """One revision: its header, source, operations and SQL."""
        return reading.show(self, rev)

    def erd(self, rev: str | None = None) -> Erd:
        """The schema drawn: tables, columns, keys, relations; of the database, or at revision REV."""
        return reading.erd(self, rev)

    # ---------------------------------------------------------------- comparing

    def diff(self, rev: str | None = None, to: str | None = None) -> Diff:
        """Schema operations: of revision REV, along the path REV to TO, or models vs database."""
        return reading.model_diff(self) if rev is None else reading.diff(self, rev, to)

    def check(self) -> Diff:
        """Fail when the models and the database differ (alembic check); else an empty Diff."""
        diff = reading.model_diff(self)
        if diff.rows:
            raise ChangesDetected(
                f"The models and the database differ ({counted(len(diff.rows), 'operation')}); "
                "create a revision for them.",
                diff,
            )
        diff.title = "No changes: the models match the database"
        return diff

    def has_changes(self) -> bool:
        """Whether the models differ from the database."""
        return bool(reading.model_diff(self).rows)

    # ---------------------------------------------------------------- SQL, plans, safety

    def sql(self, rev_range: str | None = None, downgrade: bool | None = None,
            from_database: bool = False) -> SqlScript:
        """Offline SQL for a range A:B (default base:heads), grouped per revision."""
        return migrating.sql(self, rev_range, downgrade, from_database)

    def plan(self, target_rev: str = "head", downgrade: bool = False) -> Plan:
        """The revisions an upgrade (or downgrade) to TARGET would run, in order; changes nothing."""
        return migrating.plan(self, target_rev, downgrade)

    def rehearse(self, target: str = "head") -> Rehearsal:
        """Apply pending revisions on a throwaway copy, down again, up again; the database stays."""
        return migrating.rehearse(self, target)

    def lint(self, rev_range: str | None = None) -> Lint:
        """Risks per operation of the pending revisions (or RANGE), counted on the live database."""
        return reading.lint(self, rev_range)

    # ---------------------------------------------------------------- changing the database

    def upgrade(self, target: str = "head", on_step: StepCallback | None = None) -> Outcome:
        """Apply revisions up to TARGET (default head; a revision, +N, branch@head)."""
        return migrating.migrate(self, target, downgrade=False, on_step=on_step)

    def downgrade(self, target: str, on_step: StepCallback | None = None) -> Outcome:
        """Revert revisions down to TARGET (-N, a revision, base)."""
        return migrating.migrate(self, target, downgrade=True, on_step=on_step)

    def stamp(self, rev: str, purge: bool = False) -> Outcome:
        """Record REV as the database's revision without running any migration."""
        return migrating.stamp(self, rev, purge)

    def clear_history(self) -> Outcome:
        """Empty the alembic_version table (the schema itself is left as it is)."""
        return housekeeping.clear_history(self)

    # ---------------------------------------------------------------- changing the scripts

    def revision(
        self,
        message: str,
        autogenerate: bool = True,
        *,
        head: str = "head",
        splice: bool = False,
        branch_label: str | None = None,
        depends_on: str | Sequence[str] | None = None,
        rev_id: str | None = None,
        upgrade_body: str | None = None,
        downgrade_body: str | None = None,
        replace: str | None = None,
        renames: Sequence[str] = (),
        no_rename: bool = False,
        allow_drop_all: bool = False,
    ) -> RevisionInfo | None:
        """Write a new revision: autogenerated, empty, or with the given upgrade/downgrade code.

        Returns None when autogenerate finds no change (no file is written). With `replace`, that
        unapplied head is written again under the same id; it is removed even when nothing new is.
        A drop + add that could be a rename raises RenameQuestion unless `renames` (TABLE.COLUMN:NEW,
        TABLE:NEW) or `no_rename` says what was meant.
        An autogenerate that would drop every table of the database (models not found) writes
        nothing and says why, unless `allow_drop_all`.
        """
        return authoring.write_revision(self, authoring.RevisionRequest(
            message, autogenerate, head, splice, branch_label, depends_on, rev_id, upgrade_body,
            downgrade_body, replace, tuple(renames), no_rename, allow_drop_all,
        ))

    def cell_revision_state(self, earlier: str | None) -> CellRevision:
        """What a cell that wrote `earlier` may do now: replace it while it is an unapplied head,
        else write on top of it."""
        return authoring.cell_revision_state(self, earlier)

    def merge(self, revisions: str | Sequence[str], message: str, branch_label: str | None = None,
              rev_id: str | None = None) -> RevisionInfo:
        """Write a revision that joins several heads (default: all of them)."""
        return authoring.merge(self, revisions, message, branch_label, rev_id)

    def squash(self, rev_range: str, message: str, rev_id: str | None = None,
               keep_data: bool = False) -> Squash:
        """Replace the linear run A:B with one revision, proven to build the same schema up and down.
        keep_data carries its data migrations and renames over in order (the same rows proven)."""
        return authoring.squash(self, rev_range, message, rev_id, keep_data)

    def delete(self, rev: str, force: bool = False) -> Outcome:
        """Remove one revision file; an applied revision, or one others build on, needs force."""
        return housekeeping.delete(self, rev, force)

    def check_deletable(self, rev: str) -> None:
        """Refuse a delete that needs force before anyone is asked to confirm it."""
        housekeeping.check_deletable(self, rev)

    def clean(self) -> Outcome:
        """Remove every revision file; env.py and script.py.mako stay."""
        return housekeeping.clean(self)

    def reset(self) -> Outcome:
        """Empty the version table and remove every revision file."""
        cleared = self.clear_history()
        cleaned = self.clean()
        return Outcome("reset", f"{cleared.summary} {cleaned.summary}", files=cleaned.files,
                       backup=cleared.backup)

    # ---------------------------------------------------------------- connections

    def dispose(self) -> None:
        """Close the database connections kept between calls (done too when the URL changes) and
        stop watching the revision folders."""
        runtime.dispose_engines(self._engines)
        if self._scripts is not None:
            self._scripts.close()


def _describe(metadata: Any) -> str:
    """How the configured metadata reads in `config`."""
    if metadata is None:
        return "SQLModel.metadata"
    return metadata if isinstance(metadata, str) else type(metadata).__name__
