"""Reading without changing: listings, one revision shown, schema diagrams, diffs and lint."""

from __future__ import annotations

from collections.abc import Sequence, Set
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import authoring, dialects, migrating, runtime, schema, settings
from .diff import record_script, rows_from_ops, unrecorded_row
from .errors import (
    MigrationError,
)
from .render import counted
from .results import (
    Diff,
    Erd,
    History,
    Lint,
    RevisionInfo,
    RevisionList,
    Status,
)

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .manager import AlembicManager


def status(now: runtime.State) -> Status:
    """Current revision(s), heads, pending revisions and whether the database is up to date."""
    heads = tuple(now.script.get_heads())
    # every revision leads up to a head, so a database at every head has applied them all
    at_heads = set(now.current) == set(heads)
    pending = [] if at_heads else [
        r for r in reversed(runtime.walk(now.script)) if r.revision not in now.applied]
    return Status(
        current=now.current,
        heads=heads,
        pending=tuple(r.revision for r in pending),
        up_to_date=not pending and set(now.current) == set(heads),
        url=now.target.masked_url,
        pending_revisions=_with_risk(now, pending, now.infos(pending)),
        notes=now.script.notes(),
    )


def history(now: runtime.State, rev_range: str | None = None) -> History:
    """Every revision of RANGE (default all), newest first, with applied / current / head flags."""
    base, _, head = (rev_range or "base:heads").partition(":")
    revisions = runtime.walk(now.script, base or "base", head or "heads")
    # the whole history, and the database has applied as many of its revisions: every one
    everything = rev_range is None and len(now.applied) == len(revisions)
    pending = [] if everything else [r for r in revisions if r.revision not in now.applied]
    infos = _with_risk(now, pending, now.listed(revisions))
    return History(infos, now.target.masked_url, notes=now.script.notes())


def listing(now: runtime.State, title: str, found: Sequence[Script]) -> RevisionList:
    """Some revisions, flagged, under a title."""
    return RevisionList(now.infos(found), now.target.masked_url, title=title)


def diff(manager: AlembicManager, rev: str, to: str | None) -> Diff:
    """The operations of revision REV, or along the path REV to TO."""
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        if to is None:
            return recorded_diff(manager, runtime.one_revision(script, rev), target, "upgrade")
        return path_diff(manager, script, target, rev, to)


def show(manager: AlembicManager, rev: str) -> RevisionInfo:
    """One revision: its header, source, operations and SQL."""
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        found = runtime.one_revision(script, rev)
        info = runtime.revision_info(found, *_flags_if_reachable(manager, target, script))
        info.source = Path(found.path).read_text(encoding="utf-8")
        info.diff = recorded_diff(manager, found, target, "upgrade")
    if len(info.parents) <= 1:
        try:
            start = info.parents[0] if info.parents else "base"
            info.sql = migrating.sql(manager, f"{start}:{found.revision}")
        except MigrationError as error:  # e.g. a data migration that reads the database
            reason = str(error).split(". ")[0].rstrip(".")
            info.note = f"No offline SQL for this revision: {reason}."
    return info


def _flags_if_reachable(manager: AlembicManager, target: settings.Target,
                        script: ScriptDirectory) -> tuple[Set[str], tuple[str, ...]]:
    """Applied revisions and current heads; nothing when the database does not answer."""
    try:
        with runtime.connect(manager, target, reading=True) as connection:
            current = runtime.current_heads(manager, target, connection)
    except Exception:  # showing a file must not need the database
        return set(), ()
    return runtime.applied_revisions(script, current), current


def erd(manager: AlembicManager, rev: str | None = None) -> Erd:
    """The schema drawn: tables, columns, keys, relations; of the database, or at revision REV."""
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        if rev is not None:
            return _erd_at(manager, target, script, runtime.one_revision(script, rev))
        with runtime.connect(manager, target) as connection:
            tables = schema.from_connection(connection, skip=(runtime.version_table(manager, target)[0],))
            current = runtime.current_heads(manager, target, connection)
        marked = script.get_revision(current[0]) if len(current) == 1 else None
        title = f"Database schema ({runtime.heads_text(current)})"
        return _marked_erd(manager, target, tables, marked, title, [])


def _erd_at(manager: AlembicManager, target: settings.Target, script: ScriptDirectory, found: Script) -> Erd:
    """The schema at revision FOUND, replayed from the revisions up to it."""
    dialect = dialects.dialect_of(target.url)
    tables: schema.Tables = {}
    notes = []
    for step in reversed(list(script.iterate_revisions(found.revision, "base"))):
        try:
            tables = schema.replay(record_script(step.module, dialect.name), tables, dialect)
        except Exception as error:  # e.g. a data migration that needs the database
            notes.append(f"{step.revision}: not drawn ({unrecorded_row(step.revision, error).detail}).")
    title = f"Schema at {found.revision} ({found.doc})"
    return _marked_erd(manager, target, tables, found, title, notes)


def _marked_erd(manager: AlembicManager, target: settings.Target, tables: schema.Tables,
                marked: Script | None,
                title: str, notes: list[str]) -> Erd:
    """The diagram, with what `marked` (a revision) added, changed and removed."""
    changes: dict[str, str] = {}
    removed: list[str] = []
    if marked is not None:
        try:
            operations = record_script(marked.module, dialects.dialect_name(target.url))
            changes, removed = schema.changes_made_by(operations)
            title += f"; marked: what {marked.revision} changed"
        except Exception:  # nothing to mark when the revision cannot be recorded
            pass
    return Erd(sorted(tables.values(), key=lambda t: t.label), title, changes, removed, notes)


def model_diff(manager: AlembicManager) -> Diff:
    """The operations autogenerate finds between the models and the database."""
    from .intent import mark_candidates

    with runtime.explaining_pending(manager), runtime.call(manager) as target, \
            runtime.connect(manager, target, reading=True) as connection:
        config = runtime.make_config(manager, target, connection, autogenerate=True)
        script = runtime.script_directory(manager, target, config)
        revision_context = authoring.filled_revision_context(manager, config, script, runtime.revision_args())
        operations = [
            op
            for generated in revision_context.generated_revisions
            for upgrade_ops in generated.upgrade_ops_list
            for op in upgrade_ops.ops
        ]
        rows = rows_from_ops(operations, dialect=connection.dialect.name)
        return Diff(mark_candidates(rows, revision_context.generated_revisions), "Models vs database")


def recorded_diff(manager: AlembicManager, found: Script, target: settings.Target, direction: str) -> Diff:
    """The operations a revision's upgrade (or downgrade) records, without a database."""
    dialect = dialects.dialect_name(target.url)
    try:
        rows = rows_from_ops(record_script(found.module, dialect, direction), found.revision, dialect)
    except Exception as error:
        rows = [unrecorded_row(found.revision, error)]
    verb = "upgrade" if direction == "upgrade" else "downgrade"
    return Diff(rows, f"{verb} of {found.revision} ({found.doc})")


def path_diff(manager: AlembicManager, script: ScriptDirectory, target: settings.Target, start: str,
              end: str) -> Diff:
    """The operations along the path from START to END, up or down."""
    lower, upper = migrating.resolve(script, start), migrating.resolve(script, end)
    if migrating.is_ancestor(script, lower, upper):
        steps = list(reversed(list(script.iterate_revisions(upper, lower))))
        direction = "upgrade"
    elif migrating.is_ancestor(script, upper, lower):
        steps = list(script.iterate_revisions(lower, upper))
        direction = "downgrade"
    else:
        raise MigrationError(f"{start} and {end} are on different branches: no path between them.")
    rows = [row for step in steps for row in recorded_diff(manager, step, target, direction).rows]
    return Diff(rows, f"{direction} from {start} to {end}")


def lint(manager: AlembicManager, rev_range: str | None = None) -> Lint:
    """Risks per operation of the pending revisions (or RANGE), counted on the live database."""
    from . import safety

    with runtime.call(manager) as target, runtime.connect(manager, target) as connection:
        script = runtime.script_directory(manager, target)
        current = runtime.current_heads(manager, target, connection)
        revisions = lint_revisions(script, current, rev_range)
        title = f"Lint of {rev_range}" if rev_range else "Lint of the pending revisions"
        result = safety.lint(connection, revisions, f"{title} ({counted(len(revisions), 'revision')})")
    result._sampler = partial(_sample_rows, manager)
    return result


def lint_revisions(script: ScriptDirectory, current: Sequence[str],
                    rev_range: str | None) -> list[Script]:
    """A:B: the revisions after A up to B; B alone: the pending ones up to B; nothing: all pending."""
    start, colon, end = (rev_range or "heads").rpartition(":")
    runtime.require_revision(end)
    if not colon:
        return [step.revision for step in migrating.steps_between(script, end, current, downgrade=False)]
    steps = migrating.revisions_to_run(script, end, () if start in ("", "base") else start, False)
    return [step.revision for step in steps]


def _with_risk(now: runtime.State, pending: Sequence[Script],
               infos: Sequence[RevisionInfo]) -> Sequence[RevisionInfo]:
    """with_risk on this state's connection, opened only when something is pending."""
    return with_risk(now.connection, pending, infos) if pending else infos


def with_risk(connection: Connection, pending: Sequence[Script],
              infos: Sequence[RevisionInfo]) -> Sequence[RevisionInfo]:
    """Mark each pending revision among `infos` with its highest lint severity."""
    if pending:
        from . import safety

        lint = safety.lint(connection, pending, "risk")
        for info in infos:
            info.risk = lint.severity_of(info.revision)
    return infos


def _sample_rows(manager: AlembicManager, query: Any) -> Any:
    """The rows a lint finding is about, read from the database now."""
    import pandas as pd

    with runtime.call(manager) as target, runtime.connect(manager, target) as connection:
        return pd.read_sql(query, connection)
