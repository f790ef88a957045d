"""AlembicManager: the one wrapper over alembic's Python API that every front end calls."""

from __future__ import annotations

import gc
import io
import os
import re
import shutil
import string
import textwrap
import threading
import weakref
from argparse import Namespace
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dialects, environment, schema, settings
from .authoring import name_new_foreign_keys
from .diff import record_script, rows_from_ops, unrecorded_row
from .errors import (
    ConfigurationError,
    MigrationError,
    MigrationFailed,
    NotInitialized,
    NotUpToDate,
    RevisionNotFound,
    RevisionProtected,
    translate,
    translated,
    with_suggestion,
)
from .metadata import check_spec, drop_all_refusal, drops_every_table, resolve_metadata
from .reflection import ReflectionCache, reuse_in
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
    SqlBlock,
    SqlScript,
    Squash,
    Status,
    TargetInfo,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .fanout import Fanout
    from .scripts import ScriptCache

# alembic's `op` and `context` proxies are module globals: one command at a time per process
_ALEMBIC_LOCK = threading.RLock()
_REV_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_CREATE_DATE = re.compile(r"^Create Date:\s*(.+?)\s*$", re.MULTILINE)
TEMPLATE_FILES = ("env.py", "script.py.mako")
BACKUPS_KEPT = dialects.BACKUPS_KEPT

StepCallback = Callable[[int, int, RevisionInfo], None]


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
        weakref.finalize(self, _dispose_engines, self._engines)
        self._reflection = ReflectionCache()

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
        made = self.create_database() if create_database else None
        with self._call(initialized=False) as target:
            created = []
            target.versions_dir.mkdir(parents=True, exist_ok=True)
            for name in TEMPLATE_FILES:
                destination = target.migrations_dir / name
                if not destination.exists():
                    destination.write_text(_template(name), encoding="utf-8")
                    created.append(str(destination))
            if ini := self._write_alembic_ini(target):
                created.append(str(ini))
            summary = (
                f"Initialized {target.migrations_dir}" if created
                else f"{target.migrations_dir} was already initialized; nothing changed"
            )
            if str(target.migrations_dir / "env.py") in created:
                from .intent import NAMING_NOTE

                summary += f". {NAMING_NOTE}"
            if made is not None:
                summary = f"{made.summary} {summary}"
            return Outcome("init", summary, files=created)

    def create_database(self) -> Outcome:
        """Create the PostgreSQL or MySQL/MariaDB database the URL names, unless it exists."""
        from . import provisioning

        with self._call(initialized=False) as target:
            name = provisioning.database_name(target.url)
            if provisioning.create_database(target.url):
                return Outcome("create-database", f"Created the database {name}.", files=[name])
            return Outcome("create-database", f"The database {name} exists already; nothing changed.")

    def drop_database(self, name: str | None = None) -> Outcome:
        """Drop a throwaway PostgreSQL or MySQL/MariaDB database (the one the URL names)."""
        from . import provisioning

        with self._call(initialized=False) as target:
            actual = provisioning.database_name(target.url)
            if name is not None and name != actual:
                raise ConfigurationError(f"The URL names the database {actual}, not {name}; nothing dropped.")
            configured = settings.resolve(None, None, self.project_root)
            if name is None and provisioning.same_database(configured.url, target.url):
                raise ConfigurationError(
                    f"{actual} is the database the project's settings point at "
                    f"({configured.url_source}); name it to drop it: `drop-database {actual} --yes`."
                )
            if not provisioning.drop_database(target.url):
                return Outcome("drop-database", f"There is no database {actual}; nothing changed.")
            self._reflection = ReflectionCache()
            return Outcome("drop-database", f"Dropped the database {actual}.")

    def _write_alembic_ini(self, target: settings.Target) -> Path | None:
        if target.alembic_ini or target.pyproject:
            return None
        ini = target.project_root / settings.ALEMBIC_INI
        try:
            location = target.migrations_dir.relative_to(target.project_root).as_posix()
        except ValueError:
            return None
        spec = self.metadata_spec()
        metadata_line = f"target_metadata = {spec}" if isinstance(spec, str) else ""
        text = string.Template(_template("alembic.ini")).substitute(
            script_location=location, metadata_line=metadata_line
        )
        ini.write_text(text.rstrip() + "\n", encoding="utf-8")
        return ini

    def create_version_table(self) -> Outcome:
        """Create the alembic_version table if it does not exist."""
        def ensure(rev: Any, context: Any) -> list:
            context._ensure_version_table()
            return []

        with self._call() as target, self._connect(target) as connection:
            observer = self._write_through_env(target, connection, ensure)
            self._read_back(target, observer)
            table = observer.options.get("version_table") or self._version_table(target)[0]
            return Outcome("init-version-table", f"The {table} table exists.")

    # ---------------------------------------------------------------- reading

    def status(self) -> Status:
        """Current revision(s), heads, pending revisions and whether the database is up to date."""
        with self._call() as target, self._connect(target, reading=True) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            revisions = self._walk(script)
            applied = self._applied(script, current)
            heads = tuple(script.get_heads())
            pending = [r for r in reversed(revisions) if r.revision not in applied]
            return Status(
                current=current,
                heads=heads,
                pending=tuple(r.revision for r in pending),
                up_to_date=not pending and set(current) == set(heads),
                url=target.masked_url,
                pending_revisions=self._with_risk(connection, pending,
                                                  [self._info(r, applied, current) for r in pending]),
                notes=script.notes(),
            )

    def history(self, rev_range: str | None = None) -> History:
        """Every revision, newest first, with applied / current / head flags."""
        with self._call() as target, self._connect(target, reading=True) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            applied = self._applied(script, current)
            base, _, head = (rev_range or "base:heads").partition(":")
            revisions = self._walk(script, base or "base", head or "heads")
            infos = self._with_risk(connection, [r for r in revisions if r.revision not in applied],
                                    [self._info(r, applied, current) for r in revisions])
            return History(infos, target.masked_url, notes=script.notes())

    def current(self) -> RevisionList:
        """The revision(s) the database is at."""
        with self._call() as target, self._connect(target, reading=True) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            applied = self._applied(script, current)
            found = [self._info(r, applied, current) for r in script.get_revisions(current)]
            return RevisionList(found, target.masked_url, title="Current revision")

    def heads(self) -> RevisionList:
        """The newest revision of each branch."""
        return self._listing("Heads", lambda script: script.get_revisions("heads"))

    def branches(self) -> RevisionList:
        """The revisions where the history splits into branches."""
        return self._listing(
            "Branch points", lambda script: [r for r in self._walk(script) if r.is_branch_point]
        )

    def _listing(self, title: str, pick: Callable[[ScriptDirectory], Sequence[Script]]) -> RevisionList:
        with self._call() as target, self._connect(target, reading=True) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            applied = self._applied(script, current)
            found = [self._info(r, applied, current) for r in pick(script)]
            return RevisionList(found, target.masked_url, title=title)

    def graph(self) -> Graph:
        """The revision graph, drawn: branches, merges, heads, applied and pending revisions."""
        history = self.history()
        return Graph(history.revisions, history.url)

    def show(self, rev: str) -> RevisionInfo:
        """One revision: its header, source, operations and SQL."""
        with self._call() as target:
            script = self._script_directory(target)
            found = self._one(script, rev)
            info = self._info(found, *self._flags_if_reachable(target, script))
            info.source = Path(found.path).read_text(encoding="utf-8")
            info.diff = self._recorded_diff(found, target, "upgrade")
        if len(info.parents) <= 1:
            try:
                info.sql = self.sql(f"{info.parents[0] if info.parents else 'base'}:{found.revision}")
            except MigrationError as error:  # e.g. a data migration that reads the database
                reason = str(error).split(". ")[0].rstrip(".")
                info.note = f"No offline SQL for this revision: {reason}."
        return info

    def _flags_if_reachable(self, target: settings.Target,
                            script: ScriptDirectory) -> tuple[Set[str], tuple[str, ...]]:
        """Applied revisions and current heads; nothing when the database does not answer."""
        try:
            with self._connect(target, reading=True) as connection:
                current = self._current_heads(target, connection)
        except Exception:  # showing a file must not need the database
            return set(), ()
        return self._applied(script, current), current

    def erd(self, rev: str | None = None) -> Erd:
        """The schema drawn: tables, columns, keys, relations; of the database, or at revision REV."""
        with self._call() as target:
            script = self._script_directory(target)
            if rev is not None:
                return self._erd_at(target, script, self._one(script, rev))
            with self._connect(target) as connection:
                tables = schema.from_connection(connection, skip=(self._version_table(target)[0],))
                current = self._current_heads(target, connection)
            marked = script.get_revision(current[0]) if len(current) == 1 else None
            title = f"Database schema ({_heads_text(current)})"
            return self._marked_erd(target, tables, marked, title, [])

    def _erd_at(self, target: settings.Target, script: ScriptDirectory, found: Script) -> Erd:
        dialect = _dialect(target.url)
        tables: schema.Tables = {}
        notes = []
        for step in reversed(list(script.iterate_revisions(found.revision, "base"))):
            try:
                tables = schema.replay(record_script(step.module, dialect.name), tables, dialect)
            except Exception as error:  # e.g. a data migration that needs the database
                notes.append(f"{step.revision}: not drawn ({unrecorded_row(step.revision, error).detail}).")
        title = f"Schema at {found.revision} ({found.doc})"
        return self._marked_erd(target, tables, found, title, notes)

    def _marked_erd(self, target: settings.Target, tables: schema.Tables, marked: Script | None,
                    title: str, notes: list[str]) -> Erd:
        """The diagram, with what `marked` (a revision) added, changed and removed."""
        changes: dict[str, str] = {}
        removed: list[str] = []
        if marked is not None:
            try:
                operations = record_script(marked.module, _dialect_name(target.url))
                changes, removed = schema.changes_made_by(operations)
                title += f"; marked: what {marked.revision} changed"
            except Exception:  # nothing to mark when the revision cannot be recorded
                pass
        return Erd(sorted(tables.values(), key=lambda t: t.label), title, changes, removed, notes)

    # ---------------------------------------------------------------- comparing

    def diff(self, rev: str | None = None, to: str | None = None) -> Diff:
        """Schema operations: of revision REV, along the path REV to TO, or models vs database."""
        if rev is None:
            return self._model_diff()
        with self._call() as target:
            script = self._script_directory(target)
            if to is None:
                found = self._one(script, rev)
                return self._recorded_diff(found, target, "upgrade")
            return self._path_diff(script, target, rev, to)

    def check(self) -> Diff:
        """Fail when the models and the database differ (alembic check); else an empty Diff."""
        from .errors import ChangesDetected

        diff = self._model_diff()
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
        return bool(self._model_diff().rows)

    def _model_diff(self) -> Diff:
        from .intent import mark_candidates

        with self._explaining_pending(), self._call() as target, \
                self._connect(target, reading=True) as connection:
            config = self._config(target, connection, autogenerate=True)
            script = self._script_directory(target, config)
            revision_context = self._revision_context(config, script, _revision_args())
            operations = [
                op
                for generated in revision_context.generated_revisions
                for upgrade_ops in generated.upgrade_ops_list
                for op in upgrade_ops.ops
            ]
            rows = rows_from_ops(operations, dialect=connection.dialect.name)
            return Diff(mark_candidates(rows, revision_context.generated_revisions), "Models vs database")

    def _recorded_diff(self, found: Script, target: settings.Target, direction: str) -> Diff:
        dialect = _dialect_name(target.url)
        try:
            rows = rows_from_ops(record_script(found.module, dialect, direction), found.revision, dialect)
        except Exception as error:
            rows = [unrecorded_row(found.revision, error)]
        verb = "upgrade" if direction == "upgrade" else "downgrade"
        return Diff(rows, f"{verb} of {found.revision} ({found.doc})")

    def _path_diff(self, script: ScriptDirectory, target: settings.Target, start: str, end: str) -> Diff:
        lower, upper = _resolve(script, start), _resolve(script, end)
        if self._is_ancestor(script, lower, upper):
            steps = list(reversed(list(script.iterate_revisions(upper, lower))))
            direction = "upgrade"
        elif self._is_ancestor(script, upper, lower):
            steps = list(script.iterate_revisions(lower, upper))
            direction = "downgrade"
        else:
            raise MigrationError(f"{start} and {end} are on different branches: no path between them.")
        rows = [row for step in steps for row in self._recorded_diff(step, target, direction).rows]
        return Diff(rows, f"{direction} from {start} to {end}")

    @staticmethod
    def _is_ancestor(script: ScriptDirectory, lower: str | None, upper: str | None) -> bool:
        if lower is None:
            return True
        if upper is None:
            return False
        return lower in {r.revision for r in script.iterate_revisions(upper, "base")}

    # ---------------------------------------------------------------- SQL and plans

    def sql(self, rev_range: str | None = None, downgrade: bool | None = None,
            from_database: bool = False) -> SqlScript:
        """Offline SQL for a range A:B (default base:heads), grouped per revision."""
        rev_range = rev_range or "base:heads"
        start, _, end = rev_range.rpartition(":")
        _require_revision(end)
        if not start and from_database:
            start = self._one_current_revision()
        start = start or "base"
        with self._call() as target:
            script = self._script_directory(target)
            if downgrade is None:
                downgrade = self._goes_down(script, start, end)
            buffer = io.StringIO()
            config = self._config(target, output_buffer=buffer)

            def steps(rev: Any, context: Any) -> Any:
                return script._downgrade_revs(end, rev) if downgrade else script._upgrade_revs(end, rev)

            self._run_env(config, script, steps, as_sql=True, starting_rev=start, destination_rev=end)
            blocks = _sql_blocks(buffer.getvalue())
            return SqlScript(blocks, _dialect_name(target.url), f"SQL for {start}:{end}")

    def _one_current_revision(self) -> str:
        """The database's single current revision ("base" when none), as the start of a preview."""
        current = self.current().ids
        if len(current) > 1:
            raise MigrationError("The database is at several heads: give the range as FROM:TO.")
        return current[0] if current else "base"

    def _goes_down(self, script: ScriptDirectory, start: str, end: str) -> bool:
        if end in ("head", "heads") or start == end:
            return False
        if end == "base":
            return start != "base"
        lower, upper = _resolve(script, end), _resolve(script, start)
        return lower != upper and self._is_ancestor(script, lower, upper)

    def plan(self, target_rev: str = "head", downgrade: bool = False) -> Plan:
        """The revisions an upgrade (or downgrade) to TARGET would run, in order; changes nothing."""
        with self._call() as target, self._connect(target, reading=True) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            steps = _steps(script, target_rev, current, downgrade)
            infos = [self._info(step.revision, set(), current) for step in steps]
            if not downgrade:
                self._with_risk(connection, [step.revision for step in steps], infos)
            direction = "downgrade" if downgrade else "upgrade"
            diffs = {s.revision.revision: self._recorded_diff(s.revision, target, direction) for s in steps}
            return Plan(direction, target_rev, infos, diffs)

    # ---------------------------------------------------------------- safety before apply

    def rehearse(self, target: str = "head") -> Rehearsal:
        """Apply pending revisions on a throwaway copy, down again, up again; the database stays."""
        from . import safety

        _require_revision(target)
        with self._call() as resolved, self._connect(resolved) as connection:
            script = self._script_directory(resolved)
            current = self._current_heads(resolved, connection)
            steps = _steps(script, target, current, downgrade=False)
            plan = safety.RehearsalPlan(script, current, target, tuple(s.revision for s in steps))
            return safety.rehearse(self._rehearsal_runner(resolved, script), resolved, connection, plan)

    def _rehearsal_runner(self, target: settings.Target, script: ScriptDirectory) -> Any:
        """How a rehearsal runs env.py on its throwaway connection, through this manager's plumbing."""
        from .safety import Runner

        def run(where: settings.Target, connection: Connection, work: Callable[[Any, Any], Any],
                destination: Any, applied: Callable[..., None]) -> None:
            config = self._config(where, connection, on_version_apply=applied)
            self._run_env(config, script, work, destination_rev=destination)

        return Runner(run, self._connect, environment.is_own_template(target.migrations_dir / "env.py"))

    def lint(self, rev_range: str | None = None) -> Lint:
        """Risks per operation of the pending revisions (or RANGE), counted on the live database."""
        from . import safety

        with self._call() as target, self._connect(target) as connection:
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            revisions = self._lint_revisions(script, current, rev_range)
            title = f"Lint of {rev_range}" if rev_range else "Lint of the pending revisions"
            result = safety.lint(connection, revisions, f"{title} ({counted(len(revisions), 'revision')})")
        result._sampler = self._sample_rows
        return result

    @staticmethod
    def _lint_revisions(script: ScriptDirectory, current: Sequence[str],
                        rev_range: str | None) -> list[Script]:
        """A:B: the revisions after A up to B; B alone: the pending ones up to B; nothing: all pending."""
        start, colon, end = (rev_range or "heads").rpartition(":")
        _require_revision(end)
        if not colon:
            return [step.revision for step in _steps(script, end, current, downgrade=False)]
        steps = script._upgrade_revs(end, () if start in ("", "base") else start)
        return [step.revision for step in steps]

    @staticmethod
    def _with_risk(connection: Connection, pending: Sequence[Script],
                   infos: list[RevisionInfo]) -> list[RevisionInfo]:
        """Mark each pending revision among `infos` with its highest lint severity."""
        if pending:
            from . import safety

            lint = safety.lint(connection, pending, "risk")
            for info in infos:
                info.risk = lint.severity_of(info.revision)
        return infos

    def _sample_rows(self, query: Any) -> Any:
        """The rows a lint finding is about, read from the database now."""
        import pandas as pd

        with self._call() as target, self._connect(target) as connection:
            return pd.read_sql(query, connection)

    # ---------------------------------------------------------------- changing the database

    def upgrade(self, target: str = "head", on_step: StepCallback | None = None) -> Outcome:
        """Apply revisions up to TARGET (default head; a revision, +N, branch@head)."""
        return self._migrate(target, downgrade=False, on_step=on_step)

    def downgrade(self, target: str, on_step: StepCallback | None = None) -> Outcome:
        """Revert revisions down to TARGET (-N, a revision, base)."""
        return self._migrate(target, downgrade=True, on_step=on_step)

    def _migrate(self, target_rev: str, downgrade: bool, on_step: StepCallback | None) -> Outcome:
        verb = "downgrade" if downgrade else "upgrade"
        _require_revision(target_rev)
        if ":" in target_rev:
            raise MigrationError(f"A range is for SQL previews: use `{verb} --sql {target_rev}`.")
        with self._call() as target, self._connect(target) as connection, self._database_lock(connection):
            script = self._script_directory(target)
            current = self._current_heads(target, connection)
            planned = _steps(script, target_rev, current, downgrade)
            backup = dialects.backup_sqlite(connection) if downgrade and planned else None
            done: list[RevisionInfo] = []

            def applied(step: Any, heads: tuple[str, ...]) -> None:
                done.append(self._info(planned[len(done)].revision, set(), heads))
                if on_step:
                    on_step(len(done), len(planned), done[-1])

            def steps(rev: Any, context: Any) -> Any:
                if downgrade:
                    return script._downgrade_revs(target_rev, rev)
                return script._upgrade_revs(target_rev, rev)

            observer = environment.Observer(on_step=applied)
            try:
                self._write_through_env(target, connection, steps, observer, destination_rev=target_rev)
            except MigrationError:
                raise
            except Exception as error:
                if observer.started and planned:
                    failed = planned[min(len(done), len(planned) - 1)].revision  # the last one: its commit
                    raise self._failure(target, failed, error, connection, observer) from error
                raise
            now = self._read_back(target, observer)
        _check_reached(verb, observer, planned, now)
        summary = (
            f"{verb.capitalize()}d {counted(len(done), 'revision')}; "
            f"the database is now at {_heads_text(now)}."
            if done else f"Nothing to {verb}: the database is at {_heads_text(now)}."
        )
        unsaved = _no_backup_warning(target, bool(downgrade and done), backup)
        return Outcome(verb, summary, steps=done, backup=backup, warnings=unsaved)

    def _failure(self, target: settings.Target, failed: Script, error: Exception, connection: Connection,
                 observer: environment.Observer) -> MigrationFailed:
        from .errors import database_message

        reason = database_message(error)
        where = environment.project_file_error(error, target.project_root, target.migrations_dir)
        if where is not None and not _is_database_error(error):
            reason = str(where)
        try:
            now = f"the database is at {_heads_text(self._read_back(target, observer))}"
        except Exception as unreadable:  # the first error is the one to report; this only adds to it
            now = f"its revision could not be read back ({translate(unreadable)})"
        message = f"Revision {failed.revision} ({failed.doc}) failed: {reason}"
        if connection.dialect.name in ("mysql", "mariadb"):
            message += (
                f"\nMySQL/MariaDB cannot roll back DDL: revision {failed.revision} may have left "
                f"partial changes. Statements that ran: {_listed(observer.statements)}. Now {now}."
            )
        elif observer.autocommitted:
            message += (
                f"\nStatements of {failed.revision} ran outside a transaction (autocommit_block) and "
                f"may have been kept: {_listed(observer.autocommitted)}. Now {now}."
            )
        else:
            message += f"\nNothing of {failed.revision} was kept; {now}."
        return MigrationFailed(message, failed.revision)

    def stamp(self, rev: str, purge: bool = False) -> Outcome:
        """Record REV as the database's revision without running any migration."""
        with self._call() as target, self._connect(target) as connection, self._database_lock(connection):
            backup = dialects.backup_sqlite(connection) if purge else None
            observer = self._stamp(target, connection, rev, purge)
            now = self._read_back(target, observer)
            return Outcome("stamp", f"Stamped the database at {_heads_text(now)}.", backup=backup)

    def clear_history(self) -> Outcome:
        """Empty the alembic_version table (the schema itself is left as it is)."""
        with self._call() as target, self._connect(target) as connection, self._database_lock(connection):
            before = self._current_heads(target, connection)
            backup = dialects.backup_sqlite(connection) if before else None
            now = self._read_back(target, self._stamp(target, connection, "base", purge=True))
            if now:
                raise MigrationFailed(f"The version table still holds {_heads_text(now)} after clearing it.")
            return Outcome(
                "clear-history",
                f"Cleared the version history ({counted(len(before), 'row')} removed: "
                f"{_heads_text(before)}).",
                backup=backup,
            )

    def _stamp(self, target: settings.Target, connection: Connection, rev: str,
               purge: bool) -> environment.Observer:
        from alembic import util

        script = self._script_directory(target)
        destination = util.to_tuple(rev, default=())
        for wanted in destination:  # resolve first: --purge must not empty the table for a typo
            if wanted != "base":
                self._one(script, wanted)

        def stamp(heads: Any, context: Any) -> Any:
            return script._stamp_revs(destination, heads)

        observer = environment.Observer()
        self._write_through_env(target, connection, stamp, observer, destination_rev=destination, purge=purge)
        return observer

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
        from alembic import util

        from .intent import parse_renames

        message = _docstring_safe(message)
        manual = upgrade_body is not None or downgrade_body is not None
        bodies = _indented_bodies(upgrade_body, downgrade_body) if manual else ("", "")
        fresh_id = util.rev_id()
        with self._explaining_pending(), self._call() as target, \
                self._replacing(target, replace) as replaced, \
                _no_leftovers(target, lambda: rev_id or fresh_id):
            if rev_id is not None:
                _check_new_rev_id(self._script_directory(target), rev_id)
            if replaced:  # in its old place: on its parent, which may have other children now
                rev_id = rev_id or replaced.revision
                head, splice = replaced.head_arg, True
                branch_label = branch_label or replaced.branch_label
            options = {"head": head, "splice": splice, "branch_label": branch_label,
                       "depends_on": depends_on, "rev_id": rev_id or fresh_id}
            intent = {"renames": parse_renames(renames), "no_rename": no_rename}
            if manual:
                config = self._config(target)
                written = self._script_directory(target, config).generate_revision(
                    options.pop("rev_id"), message, refresh=True, upgrades=bodies[0],
                    downgrades=bodies[1], config=config, branch_labels=options.pop("branch_label"),
                    **options,
                )
            else:
                written = self._generate(target, message, autogenerate and not manual, options, intent,
                                         allow_drop_all)
            if written is None:
                return None
            found = self._script_directory(target).get_revision(written.revision)
            info = self._info(found, set(), ())
            info.diff = self._recorded_diff(found, target, "upgrade")
            if replaced:
                info.note = f"replaced the earlier {replaced.revision}"
            return info

    def _generate(self, target: settings.Target, message: str, autogenerate: bool,
                  options: dict[str, Any], intent: dict[str, Any] | None = None,
                  allow_drop_all: bool = False) -> Script | None:
        """alembic's revision command on the cached script directory; None when nothing changed."""
        from .intent import shape_revision

        found_changes: list[bool] = []
        refused: list[str] = []

        def note_changes(context: Any, revision: Any, directives: list) -> None:
            if autogenerate:
                shape_revision(context, directives, **(intent or {}))
            found_changes.append(any(not ops.is_empty() for d in directives for ops in d.upgrade_ops_list))
            name_new_foreign_keys(directives)
            compared = context.opts.get("target_metadata")  # what env.py handed to autogenerate
            dropped = drops_every_table(directives, compared)
            if autogenerate and dropped and not allow_drop_all:
                refused.append(drop_all_refusal(dropped, self.metadata_spec()))

        with self._connect(target, reading=True) as connection:
            config = self._config(target, connection, autogenerate=autogenerate)
            config.cmd_opts.autogenerate = autogenerate  # as `alembic revision --autogenerate` sets it
            script = self._script_directory(target, config)
            arguments = {**_revision_args(), **options, "message": message, "autogenerate": autogenerate}
            revision_context = self._revision_context(config, script, arguments, note_changes)
            written = list(revision_context.generate_scripts())
        if refused:  # raised after alembic's own checks (e.g. several heads); the file goes
            raise MigrationError(refused[0])
        if autogenerate and found_changes and not any(found_changes):
            for leftover in filter(None, written):  # an env.py that does not skip empty runs
                Path(leftover.path).unlink(missing_ok=True)
            return None
        return written[0] if written else None

    def _revision_context(self, config: Config, script: ScriptDirectory, arguments: dict[str, Any],
                          hook: Callable[..., None] | None = None) -> Any:
        """alembic's RevisionContext, filled by running env.py when the revision needs it."""
        from alembic import util
        from alembic.autogenerate.api import RevisionContext

        revision_context = RevisionContext(config, script, arguments, process_revision_directives=hook)
        autogenerate = arguments["autogenerate"]
        if not autogenerate and not util.asbool(config.get_alembic_option("revision_environment")):
            return revision_context

        def fill(rev: Any, context: Any) -> list:
            if autogenerate:
                reuse_in(context, self._reflection)
                revision_context.run_autogenerate(rev, context)
            else:
                revision_context.run_no_autogenerate(rev, context)
            return []

        with _collection_paused():
            self._run_env(config, script, fill, as_sql=False, revision_context=revision_context,
                          template_args=revision_context.template_args)
        return revision_context

    @contextmanager
    def _replacing(self, target: settings.Target, rev: str | None) -> Iterator[_Replacement | None]:
        """Set aside an unapplied head so that it can be written again; put it back on failure."""
        if rev is None:
            yield None
            return
        script = self._script_directory(target)
        found = self._one(script, rev)
        with self._connect(target, reading=True) as connection:
            current = self._current_heads(target, connection)
        if found.revision in self._applied(script, current) or found._all_nextrev:
            raise RevisionProtected(
                f"{found.revision} is applied or has children; it can no longer be replaced."
            )
        replacement = _Replacement(found)
        replacement.set_aside(target)
        try:
            yield replacement
        except BaseException:
            replacement.restore()
            raise

    def cell_revision_state(self, earlier: str | None) -> CellRevision:
        """What a cell that wrote `earlier` may do now: replace it while it is an unapplied head,
        else write on top of it."""
        if earlier is None:
            return CellRevision()
        with self._call() as target, self._connect(target) as connection:
            script = self._script_directory(target)
            found = next((r for r in script.ordered() if r.revision == earlier), None)
            if found is None:
                return CellRevision()
            applied = found.revision in self._applied(script, self._current_heads(target, connection))
        if applied or found._all_nextrev:
            return CellRevision(earlier, applied=applied)
        return CellRevision(earlier, replaceable=earlier)

    def merge(self, revisions: str | Sequence[str], message: str, branch_label: str | None = None,
              rev_id: str | None = None) -> RevisionInfo:
        """Write a revision that joins several heads (default: all of them)."""
        from alembic import util

        message = _docstring_safe(message)
        new_id = rev_id or util.rev_id()
        with self._call() as target, _no_leftovers(target, lambda: new_id):
            config = self._config(target)
            script = self._script_directory(target, config)
            if rev_id is not None:
                _check_new_rev_id(script, rev_id)
            written = script.generate_revision(
                new_id, message, refresh=True, head=revisions,
                branch_labels=branch_label, config=config,
            )
            found = self._script_directory(target).get_revision(written.revision)
            return self._info(found, set(), ())

    def squash(self, rev_range: str, message: str, rev_id: str | None = None) -> Squash:
        """Replace the linear run A:B with one revision, proven to build the same schema up and down."""
        from alembic import util

        from . import authoring

        first, _, last = rev_range.partition(":")
        if not first or not last:
            raise ConfigurationError("Name the run to squash as A:B (its first and last revision).")
        message = _docstring_safe(message)
        with self._call() as target:
            script = self._script_directory(target)
            run = authoring.linear_run(script, self._one(script, first), self._one(script, last))
            authoring.refuse_data_migrations(run, _dialect_name(target.url))
            authoring.check_children_repointable(run)
            with self._connect(target) as connection:
                at_end = authoring.database_at_end(run, self._current_heads(target, connection))
            if rev_id is not None:
                _check_new_rev_id(script, rev_id)
            new_id = rev_id or util.rev_id()
            with authoring.temporary_folder() as scratch:
                proof = authoring.build_and_prove(self, target, run, message, new_id, Path(scratch))
                if not proof.ok:
                    failed = "; ".join(detail for _, ok, detail in proof.checks if not ok)
                    raise authoring.SquashRefused(f"The squashed revision does not build the same schema, so "
                                                  f"nothing was changed: {failed}")
                return self._install_squash(target, run, proof, new_id, at_end)

    def _install_squash(self, target: settings.Target, run: Any, proof: Any, new_id: str,
                        at_end: bool) -> Squash:
        """New file in, revisions built on the run re-pointed, old files to the trash, database stamped."""
        from . import authoring

        installed = target.versions_dir / proof.path.name
        shutil.copy2(proof.path, installed)
        for child in run.children:
            authoring.repoint(child, run.last, new_id)
        trash = _to_trash(target, [Path(r.path) for r in run.revisions])
        warnings = []
        if at_end:
            with self._connect(target) as connection:
                _replace_version_row(connection, self._version_table(target), run.last, new_id)
                now = self._current_heads(target, connection)
            warnings.append(f"The database was at {run.last}: it now records {_heads_text(now)}.")
        info = self._info(self._script_directory(target).get_revision(new_id), set(), ())
        summary = (f"Squashed {len(run.ids)} revisions ({run.ids[0]}..{run.last}) into {new_id}; the old "
                   f"files are kept in {trash}.")
        return Squash(summary, info, tuple(run.ids), proof.checks, str(trash), warnings)

    def delete(self, rev: str, force: bool = False) -> Outcome:
        """Remove one revision file; an applied revision, or one others build on, needs force."""
        with self._call() as target:
            script = self._script_directory(target)
            found = self._one(script, rev)
            current, reasons = self._delete_reasons(target, script, found)
            if reasons and not force:
                raise _refusing_delete(found.revision, reasons)
            path = _inside(Path(found.path), target.versions_dir)
            trash = _to_trash(target, [path])
            warnings = [f"Deleted although {reason}." for reason in reasons]
            if found.revision in current:
                warnings.append(
                    f"The database still records {found.revision}: `stamp` it to a known revision."
                )
            return Outcome("delete", f"Deleted revision {found.revision} ({found.doc}); its file is kept "
                           f"in {trash}.", files=[str(path)], warnings=warnings)

    def check_deletable(self, rev: str) -> None:
        """Refuse a delete that needs force before anyone is asked to confirm it."""
        with self._call() as target:
            script = self._script_directory(target)
            found = self._one(script, rev)
            _current, reasons = self._delete_reasons(target, script, found)
            if reasons:
                raise _refusing_delete(found.revision, reasons)

    def _delete_reasons(self, target: settings.Target, script: ScriptDirectory,
                        found: Script) -> tuple[tuple[str, ...], list[str]]:
        """The database's current heads, and why removing this revision's file needs force."""
        with self._connect(target) as connection:
            current = self._current_heads(target, connection)
        reasons = []
        if found.revision in self._applied(script, current):
            reasons.append("it is applied to the database")
        if dependents := sorted(found._all_nextrev):
            reasons.append(f"{', '.join(dependents)} build{'s' if len(dependents) == 1 else ''} on it")
        return current, reasons

    def clean(self) -> Outcome:
        """Remove every revision file; env.py and script.py.mako stay."""
        with self._call() as target:
            files = sorted(target.versions_dir.glob("*.py"))
            if not files:
                return Outcome("clean", "No revision files to remove.")
            trash = _to_trash(target, files)
            return Outcome("clean", f"Removed {counted(len(files), 'revision file')}; "
                           f"they are kept in {trash}.",
                           files=[str(f) for f in files])

    def reset(self) -> Outcome:
        """Empty the version table and remove every revision file."""
        cleared = self.clear_history()
        cleaned = self.clean()
        return Outcome("reset", f"{cleared.summary} {cleaned.summary}", files=cleaned.files,
                       backup=cleared.backup)

    # ---------------------------------------------------------------- plumbing

    @contextmanager
    def _call(self, initialized: bool = True) -> Iterator[settings.Target]:
        """One command: resolve the target, serialize, keep logging quiet, translate errors."""
        with translated(self.url):
            target = self.target()
        with self._suggesting(target), _ALEMBIC_LOCK, _quiet_alembic_logging(), \
                translated(target.url, self.url):
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
    def _explaining_pending(self) -> Iterator[None]:
        """Comparing the models needs the database at head: say which revisions wait, and what helps."""
        try:
            yield
        except NotUpToDate as error:
            try:
                waiting = self.status().pending_revisions
            except MigrationError:
                raise error from None
            raise NotUpToDate(pending_explained(waiting, hasattr(self, "rehearse"))) from None

    @contextmanager
    def _suggesting(self, target: settings.Target) -> Iterator[None]:
        """A revision that is not found comes with the ids it was probably meant to be."""
        try:
            yield
        except RevisionNotFound as error:
            if error.wanted:
                try:
                    known = [r.revision for r in self._script_directory(target).ordered()]
                except Exception:  # the suggestion is a courtesy: never a second failure
                    known = []
                with_suggestion(error, known)
            raise

    def _config(
        self,
        target: settings.Target,
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
        config.attributes["target_metadata"] = self.target_metadata() if autogenerate else MetaData()
        config.attributes["configure_options"] = configure_options
        config.cmd_opts = Namespace(quiet=True, x=None)  # quiet: no "Generating ..." lines; x: no -x
        return config

    def _script_directory(self, target: settings.Target, config: Config | None = None) -> ScriptDirectory:
        """The revision scripts, listed from their headers and kept while the files are unchanged."""
        if self._scripts is None:
            from .scripts import ScriptCache

            self._scripts = ScriptCache()
        key = (target.migrations_dir, target.alembic_ini, target.pyproject)
        return self._scripts.get(lambda: config or self._config(target), key)

    def _run_env(self, config: Config, script: ScriptDirectory, work: Callable[[Any, Any], Any],
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
                error, Path(self.project_root).resolve(), Path(script.dir))
            if not observer.started and named is not None:
                raise named from error
            raise

    def _write_through_env(self, target: settings.Target, connection: Connection,
                           work: Callable[[Any, Any], Any], observer: environment.Observer | None = None,
                           **options: Any) -> environment.Observer:
        """Run env.py to change the database, observed; then commit what was handed to it."""
        observer = observer or environment.Observer()
        config = self._config(target, connection)
        script = self._script_directory(target, config)
        try:
            with environment.statements_listened(observer):
                self._run_env(config, script, work, observer, **options)
        except BaseException:
            _settle(connection, failed=True)
            raise
        _settle(connection, failed=False)
        return observer

    def _read_back(self, target: settings.Target, observer: environment.Observer) -> tuple[str, ...]:
        """The version table as a fresh connection of our own reads it after a write."""
        table, schema = self._version_table(target)
        where = (observer.options.get("version_table") or table,
                 observer.options.get("version_table_schema") or schema)
        with self._connect(target) as fresh:
            return self._current_heads(target, fresh, where)

    def _version_table(self, target: settings.Target) -> tuple[str, str | None]:
        """The version table's name and schema: env.py's literal, else the setting, else alembic's."""
        shape = environment.env_shape(target.migrations_dir / "env.py")
        tool = settings.tool_defaults(target.project_root)
        table = shape.version_table or self.version_table or tool.get("version_table")
        schema = shape.version_table_schema or self.version_table_schema or tool.get("version_table_schema")
        return table or environment.DEFAULT_VERSION_TABLE, schema

    @contextmanager
    def _connect(self, target: settings.Target, reading: bool = False) -> Iterator[Connection]:
        """A connection for one call, from the engine kept for this URL; `reading`: the call writes
        nothing to the database (listing, comparing with the models)."""
        from sqlalchemy.exc import OperationalError

        from .provisioning import missing_database

        # pooled only then, and only with our own env.py: another env.py may leave session state
        own_env = environment.is_own_template(target.migrations_dir / "env.py")
        engine = self._kept_engine(environment.sync_url(target.url), pooled=reading and own_env)
        try:
            connection = engine.connect()
        except OperationalError as error:
            missing = missing_database(target.url, error)
            if missing is None:
                raise
            raise missing from error
        with connection:
            yield connection

    def _kept_engine(self, url: str, pooled: bool) -> Any:
        """The engine for this URL, made on first use; the URL changing disposes the old ones."""
        if self._engines_url != (url, self._timeouts()):  # a new URL or new timeouts: new engines
            self.dispose()
            self._engines_url = (url, self._timeouts())
        engine = self._engines.get(pooled)
        if engine is None:
            engine = self._engines[pooled] = dialects.engine(url, self._timeouts(), pooled)
        return engine

    def dispose(self) -> None:
        """Close the database connections kept between calls (done too when the URL changes)."""
        _dispose_engines(self._engines)

    def _timeouts(self) -> dialects.Timeouts:
        return dialects.Timeouts(self.connect_timeout, self.lock_timeout, self.ddl_lock_timeout)

    @contextmanager
    def _database_lock(self, connection: Connection) -> Iterator[None]:
        """Serialize migrations across processes; whoever holds the lock is named when it times out."""
        with dialects.migration_lock(connection, self.lock_timeout):
            yield

    def _current_heads(self, target: settings.Target, connection: Connection,
                       where: tuple[str, str | None] | None = None) -> tuple[str, ...]:
        """The revisions recorded in the version table, read directly (env.py is not run)."""
        table, schema = where or self._version_table(target)
        return environment.read_versions(connection, table, schema)

    @staticmethod
    def _walk(script: ScriptDirectory, base: str = "base", head: str = "heads") -> list[Script]:
        if (base, head) == ("base", "heads"):
            return script.ordered()
        return list(script.walk_revisions(base, head))

    @staticmethod
    def _applied(script: ScriptDirectory, current: Sequence[str]) -> frozenset[str]:
        return script.ancestors(tuple(sorted(current)))

    @staticmethod
    def _one(script: ScriptDirectory, rev: str) -> Script:
        _require_revision(rev)
        found = script.get_revision(rev)
        if found is None:
            raise RevisionNotFound(f"No revision '{rev}' (that name means the base).")
        return found

    @staticmethod
    def _info(found: Script, applied: Set[str], current: Sequence[str]) -> RevisionInfo:
        return RevisionInfo(
            **_header_fields(found),
            applied=found.revision in applied,
            current=found.revision in current,
        )


_HEADERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _header_fields(found: Script) -> dict[str, Any]:
    """What a revision says about itself and its place in the map; read once per loaded map."""
    fields = _HEADERS.get(found)
    if fields is None:
        from alembic import util

        fields = _HEADERS[found] = {
            "revision": found.revision,
            "parents": tuple(found._all_down_revisions),
            "message": found.doc or "",
            "created": _created(found),
            "path": str(found.path),
            "branch_labels": tuple(sorted(found.branch_labels)),
            "depends_on": tuple(util.to_tuple(found.dependencies, default=())),
            "head": found.is_head,
            "children": tuple(sorted(found.nextrev)),
        }
    return fields


class _Replacement:
    """An unapplied head set aside while its cell is written again: its file goes to the trash
    (copied there before it leaves the versions folder, so that it always exists somewhere) and
    comes back if writing the new one fails."""

    def __init__(self, found: Script) -> None:
        self.revision = found.revision
        self.path = Path(found.path)
        parents = tuple(found._versioned_down_revisions)
        self.head_arg = parents[0] if len(parents) == 1 else ("base" if not parents else "heads")
        self.branch_label = ",".join(sorted(found.branch_labels)) or None
        self.kept: Path | None = None

    def set_aside(self, target: settings.Target) -> None:
        self.kept = _copy_to_trash(target, self.path)
        self.path.unlink()
        _drop_bytecode(self.path)

    def restore(self) -> None:
        if self.kept is not None and not self.path.exists():
            shutil.copy2(self.kept, self.path)


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


def _refusing_delete(revision: str, reasons: list[str]) -> RevisionProtected:
    return RevisionProtected(
        f"Refusing to delete {revision}: {' and '.join(reasons)}. Downgrade first, or force it."
    )


_RESERVED_IDS = frozenset({"base", "head", "heads", "current"})
_NAMES_A_REVISION = re.compile(r"\w")


def _require_revision(value: str | None) -> None:
    """Refuse an empty or shapeless revision argument before alembic trips over it."""
    if not value or not _NAMES_A_REVISION.search(value):
        raise RevisionNotFound(
            f"'{value or ''}' does not name a revision: use an id (or a unique prefix), head, heads, "
            "base, +N / -N, or branch@head."
        )


def _check_new_rev_id(script: ScriptDirectory, rev_id: str) -> None:
    """A new revision id: a plain name, not a reserved word, not taken."""
    if not _REV_ID.match(rev_id):
        raise ConfigurationError("A revision id is 1-32 letters, digits or underscores.")
    if rev_id.lower() in _RESERVED_IDS:
        raise ConfigurationError(f"'{rev_id}' is a reserved word, not a revision id.")
    if any(r.revision == rev_id for r in script.ordered()):
        raise ConfigurationError(f"A revision '{rev_id}' exists already; pick another id.")


def _docstring_safe(message: str | None) -> str | None:
    """The message as it goes inside the revision's docstring: it reads back exactly as given."""
    if message is None:
        return None
    if "\x00" in message:
        raise ConfigurationError("The message contains a NUL character.")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "The message contains characters that cannot be saved (lone surrogates)."
        ) from None
    return message.replace("\\", "\\\\").replace('"', '\\"')


@contextmanager
def _no_leftovers(target: settings.Target, rev_id: Callable[[], str | None]) -> Iterator[None]:
    """If writing a revision fails, move the file it wrote (new, carrying its id) to the trash;
    files that others wrote meanwhile stay where they are."""
    before = set(target.versions_dir.glob("*.py"))
    try:
        yield
    except BaseException:
        ours = rev_id()
        written = [path for path in set(target.versions_dir.glob("*.py")) - before
                   if ours and _revision_id_of(path) == ours]
        if written:
            _to_trash(target, written)
        raise


def _revision_id_of(path: Path) -> str | None:
    """The revision id a file declares, read from its source without running it."""
    from .scripts import read_header

    try:
        header = read_header(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return header.revision if header else None


def _revision_args() -> dict[str, Any]:
    return {
        "message": None, "autogenerate": True, "sql": False, "head": "head", "splice": False,
        "branch_label": None, "version_path": None, "rev_id": None, "depends_on": None,
    }


def _steps(script: ScriptDirectory, target_rev: str, current: Sequence[str], downgrade: bool) -> list:
    if downgrade:
        return list(script._downgrade_revs(target_rev, tuple(current)))
    return list(script._upgrade_revs(target_rev, tuple(current)))


def _resolve(script: ScriptDirectory, rev: str) -> str | None:
    if rev in ("base", ""):
        return None
    found = script.get_revision(rev if rev not in ("head", "heads") else "head")
    return found.revision if found else None


def _created(found: Script) -> datetime | None:
    match = _CREATE_DATE.search(found.longdoc or "")
    if match:
        try:
            return datetime.fromisoformat(match.group(1))
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(Path(found.path).stat().st_mtime)
    except OSError:
        return None


def _replace_version_row(connection: Connection, where: tuple[str, str | None], old: str, new: str) -> None:
    """Record `new` where the version table records `old` (other heads left as they are)."""
    from sqlalchemy import column, table, update

    versions = table(where[0], column("version_num"), schema=where[1])
    connection.execute(update(versions).where(versions.c.version_num == old).values(version_num=new))
    connection.commit()


def _listed(statements: Sequence[str]) -> str:
    """The last few statements that ran (version table bookkeeping left out), one line each."""
    ran = [s.strip() for s in statements if "alembic_version" not in s]
    return "; ".join(" ".join(s.split())[:120] for s in ran[-5:]) or "none"


def _no_backup_warning(target: settings.Target, changed: bool, backup: str | None) -> list[str]:
    """After a downgrade that changed the database without a backup, say that none was taken."""
    reason = dialects.no_backup_reason(target.url) if changed and backup is None else None
    return [f"No backup was taken: {reason}."] if reason else []


def _heads_text(heads: Sequence[str]) -> str:
    return ", ".join(heads) if heads else "base (no revision)"


def _describe(metadata: Any) -> str:
    if metadata is None:
        return "SQLModel.metadata"
    return metadata if isinstance(metadata, str) else type(metadata).__name__


def _dialect(url: str) -> Any:
    """The SQLAlchemy dialect of a URL, without connecting."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_dialect()()


def _dialect_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


def _dispose_engines(engines: dict[bool, Any]) -> None:
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
    if failed and connection.dialect.name not in ("mysql", "mariadb"):
        connection.rollback()
        return
    try:
        connection.commit()
    except Exception:
        connection.rollback()
        if not failed:
            raise


def _check_reached(verb: str, observer: environment.Observer, planned: Sequence[Any],
                   now: Sequence[str]) -> None:
    """A run that reports success must agree with the version table read back."""
    if planned and not observer.steps:
        raise MigrationFailed(
            f"env.py finished without running the {counted(len(planned), 'planned revision')}; "
            f"the database is at {_heads_text(now)}."
        )
    if observer.steps and set(observer.steps[-1]) != set(now):
        raise MigrationFailed(
            f"The {verb} ran to {_heads_text(observer.steps[-1])}, but the version table reads "
            f"{_heads_text(now)}: env.py's changes were not kept (does it commit its own connection?)."
        )


def _is_database_error(error: BaseException) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(error, SQLAlchemyError)


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


def _template(name: str) -> str:
    return resources.files("framefox_magic").joinpath("templates", name).read_text(encoding="utf-8")


def _indented_bodies(upgrade: str | None, downgrade: str | None) -> tuple[str, str]:
    """Function bodies as alembic's template expects them (first line unindented); checked."""
    bodies = []
    for name, body in (("upgrade", upgrade), ("downgrade", downgrade)):
        code = textwrap.dedent(body or "").strip("\n") or "pass"
        try:
            compile(f"def {name}():\n{textwrap.indent(code, '    ')}\n", f"<{name}>", "exec")
        except SyntaxError as error:
            raise ConfigurationError(
                f"The {name} code does not compile: {error.msg} (line {error.lineno})."
            ) from None
        first, *rest = code.splitlines()
        bodies.append("\n".join([first, *(("    " + line) if line.strip() else "" for line in rest)]))
    return bodies[0], bodies[1]


def _inside(path: Path, folder: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ConfigurationError(f"{path} is outside the versions folder; not touching it.")
    return resolved


def _drop_bytecode(path: Path) -> None:
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


_STEP_MARKER = re.compile(
    r"^-- Running (?P<direction>upgrade|downgrade) (?P<down>[\w, ]*?) ?-> ?(?P<up>[\w, ]*?)(?:, |$)"
)


def _sql_blocks(text: str) -> list[SqlBlock]:
    """Split alembic's offline output at its `-- Running ...` markers, one block per revision."""
    blocks: list[SqlBlock] = []
    label, revision, lines = "Set-up", None, []
    for line in text.splitlines():
        marker = _STEP_MARKER.match(line)
        if marker:
            moved = _trailing_begin(lines)
            if "".join(lines).strip():
                blocks.append(SqlBlock(label, "\n".join(lines).strip() + "\n", revision))
            lines = moved
            upgrade = marker["direction"] == "upgrade"
            revision = (marker["up"] if upgrade else marker["down"]).strip() or None
            label = line.removeprefix("-- Running ").strip()
        lines.append(line)
    if "".join(lines).strip():
        blocks.append(SqlBlock(label, "\n".join(lines).strip() + "\n", revision))
    return blocks


def _trailing_begin(lines: list[str]) -> list[str]:
    """Take a step's opening BEGIN off the end of the previous block."""
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[-1].strip().upper() in ("BEGIN;", "BEGIN TRANSACTION;", "START TRANSACTION;"):
        return [lines.pop()]
    return []


def _stamp_now() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _copy_to_trash(target: settings.Target, path: Path) -> Path:
    """A durable copy of a revision file in the trash, written before the original goes."""
    trash = target.migrations_dir / ".trash" / _stamp_now()
    trash.mkdir(parents=True)
    kept = trash / path.name
    shutil.copy2(path, kept)
    with open(kept, "rb") as copy:
        os.fsync(copy.fileno())
    return kept


def _to_trash(target: settings.Target, files: Sequence[Path]) -> Path:
    """Move revision files out of the versions folder into migrations/.trash/<time>/."""
    trash = target.migrations_dir / ".trash" / _stamp_now()
    trash.mkdir(parents=True)
    for path in files:
        shutil.move(path, trash / path.name)
        _drop_bytecode(path)
    return trash


@contextmanager
def _collection_paused() -> Iterator[None]:
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
def _quiet_alembic_logging() -> Iterator[None]:
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
