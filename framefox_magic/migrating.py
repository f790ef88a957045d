"""Changing the database: upgrade, downgrade, stamp, offline SQL, plans and rehearsals."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from . import dialects, environment, reading, runtime, settings
from .errors import (
    MigrationError,
    MigrationFailed,
    translate,
)
from .render import counted
from .results import (
    Outcome,
    Plan,
    Rehearsal,
    RevisionInfo,
    SqlBlock,
    SqlScript,
)

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .manager import AlembicManager

StepCallback = Callable[[int, int, RevisionInfo], None]


def is_ancestor(script: ScriptDirectory, lower: str | None, upper: str | None) -> bool:
    """Whether LOWER comes before UPPER in the history (None: the base)."""
    if lower is None:
        return True
    if upper is None:
        return False
    return lower in {r.revision for r in script.iterate_revisions(upper, "base")}


def sql(manager: AlembicManager, rev_range: str | None = None, downgrade: bool | None = None,
        from_database: bool = False) -> SqlScript:
    """Offline SQL for a range A:B (default base:heads), grouped per revision."""
    rev_range = rev_range or "base:heads"
    start, _, end = rev_range.rpartition(":")
    runtime.require_revision(end)
    if not start and from_database:
        start = _one_current_revision(manager)
    start = start or "base"
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        if downgrade is None:
            downgrade = _goes_down(manager, script, start, end)
        buffer = io.StringIO()
        config = runtime.make_config(manager, target, output_buffer=buffer)

        work = step_function(script, end, downgrade)
        runtime.run_env(manager, config, script, work, as_sql=True, starting_rev=start, destination_rev=end)
        blocks = _sql_blocks(buffer.getvalue())
        return SqlScript(blocks, dialects.dialect_name(target.url), f"SQL for {start}:{end}")


def _one_current_revision(manager: AlembicManager) -> str:
    """The database's single current revision ("base" when none), as the start of a preview."""
    current = manager.current().ids
    if len(current) > 1:
        raise MigrationError("The database is at several heads: give the range as FROM:TO.")
    return current[0] if current else "base"


def _goes_down(manager: AlembicManager, script: ScriptDirectory, start: str, end: str) -> bool:
    """Whether the SQL range START:END runs downwards."""
    if end in ("head", "heads") or start == end:
        return False
    if end == "base":
        return start != "base"
    lower, upper = resolve(script, end), resolve(script, start)
    return lower != upper and is_ancestor(script, lower, upper)


def plan(manager: AlembicManager, target_rev: str = "head", downgrade: bool = False) -> Plan:
    """The revisions an upgrade (or downgrade) to TARGET would run, in order; changes nothing."""
    with runtime.call(manager) as target, runtime.connect(manager, target, reading=True) as connection:
        script = runtime.script_directory(manager, target)
        current = runtime.current_heads(manager, target, connection)
        steps = steps_between(script, target_rev, current, downgrade)
        infos = [runtime.revision_info(step.revision, set(), current) for step in steps]
        if not downgrade:
            reading.with_risk(connection, [step.revision for step in steps], infos)
        direction = "downgrade" if downgrade else "upgrade"
        diffs = {s.revision.revision: reading.recorded_diff(manager, s.revision, target, direction)
                 for s in steps}
        return Plan(direction, target_rev, infos, diffs)


def rehearse(manager: AlembicManager, target: str = "head") -> Rehearsal:
    """Apply pending revisions on a throwaway copy, down again, up again; the database stays."""
    from . import safety

    runtime.require_revision(target)
    with runtime.call(manager) as resolved, runtime.connect(manager, resolved) as connection:
        script = runtime.script_directory(manager, resolved)
        current = runtime.current_heads(manager, resolved, connection)
        steps = steps_between(script, target, current, downgrade=False)
        plan = safety.RehearsalPlan(script, current, target, tuple(s.revision for s in steps))
        return safety.rehearse(_rehearsal_runner(manager, resolved, script), resolved, connection, plan)


def _rehearsal_runner(manager: AlembicManager, target: settings.Target, script: ScriptDirectory) -> Any:
    """How a rehearsal runs env.py on its throwaway connection, through this manager's plumbing."""
    from .safety import Runner

    def run(where: settings.Target, connection: Connection, work: Callable[[Any, Any], Any],
            destination: Any, on_step: Callable[[Any, Any], None]) -> None:
        config = runtime.make_config(manager, where, connection)
        # each step seen through alembic's on_version_apply, added to whatever env.py configures
        runtime.run_env(manager, config, script, work, environment.Observer(on_step=on_step),
                        destination_rev=destination)

    own_env = environment.is_own_template(target.migrations_dir / "env.py")
    return Runner(run, partial(runtime.connect, manager), own_env)


def migrate(manager: AlembicManager, target_rev: str, downgrade: bool,
            on_step: StepCallback | None) -> Outcome:
    """Upgrade or downgrade to TARGET, each revision observed; the outcome read back from the database."""
    verb = "downgrade" if downgrade else "upgrade"
    runtime.require_revision(target_rev)
    if ":" in target_rev:
        raise MigrationError(f"A range is for SQL previews: use `{verb} --sql {target_rev}`.")
    with runtime.locked(manager) as (target, connection):
        script = runtime.script_directory(manager, target)
        current = runtime.current_heads(manager, target, connection)
        planned = steps_between(script, target_rev, current, downgrade)
        backup = dialects.backup_sqlite(connection) if downgrade and planned else None
        observer, done = _observed(planned, on_step)
        work = step_function(script, target_rev, downgrade)
        try:
            runtime.write_through_env(manager, target, connection, work, observer, destination_rev=target_rev)
        except MigrationError:
            raise
        except Exception as error:
            if observer.started and planned:
                failed = planned[min(len(done), len(planned) - 1)].revision  # the last one: its commit
                raise _failure(manager, target, failed, error, connection, observer) from error
            raise
        now = runtime.read_back(manager, target, observer)
    _check_reached(verb, observer, planned, now)
    unsaved = _no_backup_warning(target, bool(downgrade and done), backup)
    return Outcome(verb, _migrated(verb, done, now), steps=done, backup=backup, warnings=unsaved)


def _observed(planned: Sequence[Any],
              on_step: StepCallback | None) -> tuple[environment.Observer, list[RevisionInfo]]:
    """An observer of env.py's run that lists each revision applied and reports it to on_step."""
    done: list[RevisionInfo] = []

    def applied(step: Any, heads: tuple[str, ...]) -> None:
        done.append(runtime.revision_info(planned[len(done)].revision, set(), heads))
        if on_step:
            on_step(len(done), len(planned), done[-1])

    return environment.Observer(on_step=applied), done


def _migrated(verb: str, done: Sequence[RevisionInfo], now: Sequence[str]) -> str:
    """The summary of an upgrade or downgrade, from the version table read back."""
    if not done:
        return f"Nothing to {verb}: the database is at {runtime.heads_text(now)}."
    return (f"{verb.capitalize()}d {counted(len(done), 'revision')}; "
            f"the database is now at {runtime.heads_text(now)}.")


def revisions_to_run(script: ScriptDirectory, destination: Any, heads: Any, downgrade: bool) -> Any:
    """The revisions from HEADS to DESTINATION in the order they run: the one up-or-down choice."""
    if downgrade:
        if down_from_base(script, destination, heads):
            return ()
        _check_reach(script, destination, heads)
        return script._downgrade_revs(destination, heads)
    _check_reach_up(script, destination, heads)
    return script._upgrade_revs(destination, heads)


# alembic's relative target (1.20.1, script/revision.py, _relative_destination), going down: [BRANCH@][REV]-N
_RELATIVE_DOWN = re.compile(r"(?:(?P<branch>.+?)@)?(?P<symbol>\w+)?-(?P<steps>\d+)")


def _relative_down(destination: Any) -> re.Match[str] | None:
    """DESTINATION's parts when it goes N >= 1 revisions down, from the database or from a revision."""
    found = _RELATIVE_DOWN.fullmatch(destination) if isinstance(destination, str) else None
    return found if found is not None and int(found["steps"]) > 0 else None


def down_from_base(script: ScriptDirectory, destination: Any, heads: Any) -> bool:
    """Whether DESTINATION counts down from where the database is (`-N`, `BRANCH@-N`) and the
    database is at base: nothing to run, as for `downgrade base` (alembic would refuse the walk)."""
    from alembic import util

    found = _relative_down(destination)
    if found is None or found["symbol"] or util.to_tuple(heads, default=()):
        return False
    try:  # a branch that does not exist stays alembic's error
        return not found["branch"] or bool(script.get_revisions(found["branch"]))
    except Exception:
        return False


def _check_reach(script: ScriptDirectory, destination: Any, heads: Any) -> None:
    """A relative downgrade that would go below base is refused, saying how far down it can go;
    anything less plain (a branch, several heads, a merge on the way) is left to alembic."""
    from alembic import util

    found = _relative_down(destination)
    current = tuple(set(util.to_tuple(heads, default=())))
    if found is None or found["branch"] or (not found["symbol"] and len(current) != 1):
        return
    steps, start = int(found["steps"]), found["symbol"] or current[0]
    height = _height(script, start, steps)
    if height is None or height >= steps:
        return
    above = f"{counted(height, 'revision')} above base"
    if found["symbol"]:
        raise MigrationError(f"{destination} is below base: {start} is {above}.")
    raise MigrationError(
        f"Cannot downgrade {counted(steps, 'revision')}: the database is at {start}, {above} "
        f"(`downgrade -{height}` or `downgrade base` takes it there)."
    )


_RELATIVE_UP = re.compile(r"\+(?P<steps>\d+)")


def _check_reach_up(script: ScriptDirectory, destination: Any, heads: Any) -> None:
    """`upgrade -N` is refused as going down, and `upgrade +N` beyond the head says how far up the
    database can go; anything less plain (a branch, a revision, several heads, a fork) is alembic's."""
    from alembic import util

    if not isinstance(destination, str):
        return
    down = _relative_down(destination)
    if down is not None and not (down["branch"] or down["symbol"]):
        raise MigrationError(f"`upgrade {destination}` would go down: `downgrade {destination}` takes the "
                             f"database down {counted(int(down['steps']), 'revision')}.")
    up = _RELATIVE_UP.fullmatch(destination)
    current = tuple(set(util.to_tuple(heads, default=())))
    if up is None or len(current) != 1:
        return
    steps = int(up["steps"])
    in_line = _in_a_line(script, current[0], steps + 1, lambda found: tuple(found.nextrev))
    if in_line is None or in_line > steps:
        return
    depth = in_line - 1  # the revisions above the database's
    if depth == 0:
        raise MigrationError(f"Cannot upgrade {counted(steps, 'revision')}: the database is at {current[0]}, "
                             "the head.")
    raise MigrationError(
        f"Cannot upgrade {counted(steps, 'revision')}: the database is at {current[0]}, "
        f"{counted(depth, 'revision')} below the head (`upgrade +{depth}` or `upgrade` takes it there)."
    )


def _height(script: ScriptDirectory, revision: str, most: int) -> int | None:
    """How many revisions REVISION is above base, counted up to MOST; None when alembic's walk
    down would not be one line (an unknown revision, a merge)."""
    from alembic import util

    return _in_a_line(script, revision, most, lambda found: util.to_tuple(found.down_revision, default=()))


def _in_a_line(script: ScriptDirectory, revision: str, most: int,
               onward: Callable[[Any], tuple[str, ...]]) -> int | None:
    """How many revisions follow one another from REVISION on (itself included), ONWARD giving each
    one's next (its parents, or its children), counted up to MOST; None when the way forks or
    REVISION is unknown."""
    try:
        found = script.get_revision(revision)
    except Exception:  # unknown or ambiguous: alembic's own error says which
        return None
    count = 0
    while found is not None and count < most:
        following = onward(found)
        if len(following) > 1:
            return None
        count += 1
        found = script.get_revision(following[0]) if following else None
    return count or None


def step_function(script: ScriptDirectory, destination: Any, downgrade: bool) -> Callable[[Any, Any], Any]:
    """env.py's migration function: the revisions from where the database is to DESTINATION."""
    return lambda rev, context: revisions_to_run(script, destination, rev, downgrade)


def _failure(manager: AlembicManager, target: settings.Target, failed: Script, error: Exception,
             connection: Connection,
             observer: environment.Observer) -> MigrationFailed:
    """The failed revision named, with what the database kept and where it now is."""
    from .errors import database_message

    reason = database_message(error)
    where = environment.project_file_error(error, target.project_root, target.migrations_dir)
    if where is not None and not _is_database_error(error):
        reason = str(where)
    try:
        now = f"the database is at {runtime.heads_text(runtime.read_back(manager, target, observer))}"
    except Exception as unreadable:  # the first error is the one to report; this only adds to it
        now = f"its revision could not be read back ({translate(unreadable)})"
    message = f"Revision {failed.revision} ({failed.doc}) failed: {reason}"
    if dialects.keeps_ddl_after_failure(connection):
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


def stamp(manager: AlembicManager, rev: str, purge: bool = False) -> Outcome:
    """Record REV as the database's revision without running any migration."""
    with runtime.locked(manager) as (target, connection):
        backup = dialects.backup_sqlite(connection) if purge else None
        observer = stamp_through_env(manager, target, connection, rev, purge)
        now = runtime.read_back(manager, target, observer)
        return Outcome("stamp", f"Stamped the database at {runtime.heads_text(now)}.", backup=backup)


def stamp_through_env(manager: AlembicManager, target: settings.Target, connection: Connection, rev: str,
           purge: bool) -> environment.Observer:
    """Record REV in the version table through env.py, without running migrations."""
    from alembic import util

    script = runtime.script_directory(manager, target)
    destination = util.to_tuple(rev, default=())
    for wanted in destination:  # resolve first: --purge must not empty the table for a typo
        if wanted != "base":
            runtime.one_revision(script, wanted)

    def stamp(heads: Any, context: Any) -> Any:
        return script._stamp_revs(destination, heads)

    observer = environment.Observer()
    runtime.write_through_env(manager, target, connection, stamp, observer, destination_rev=destination,
                              purge=purge)
    return observer


def steps_between(script: ScriptDirectory, target_rev: str, current: Sequence[str], downgrade: bool) -> list:
    """The revisions an upgrade (or downgrade) from CURRENT to TARGET would run, in order."""
    return list(revisions_to_run(script, target_rev, tuple(current), downgrade))


def resolve(script: ScriptDirectory, rev: str) -> str | None:
    """The revision id REV names; None for the base."""
    if rev in ("base", ""):
        return None
    found = script.get_revision(rev if rev not in ("head", "heads") else "head")
    return found.revision if found else None


def _listed(statements: Sequence[str]) -> str:
    """The last few statements that ran (version table bookkeeping left out), one line each."""
    ran = [s.strip() for s in statements if "alembic_version" not in s]
    return "; ".join(" ".join(s.split())[:120] for s in ran[-5:]) or "none"


def _no_backup_warning(target: settings.Target, changed: bool, backup: str | None) -> list[str]:
    """After a downgrade that changed the database without a backup, say that none was taken."""
    reason = dialects.no_backup_reason(target.url) if changed and backup is None else None
    return [f"No backup was taken: {reason}."] if reason else []


def _check_reached(verb: str, observer: environment.Observer, planned: Sequence[Any],
                   now: Sequence[str]) -> None:
    """A run that reports success must agree with the version table read back."""
    if planned and not observer.steps:
        raise MigrationFailed(
            f"env.py finished without running the {counted(len(planned), 'planned revision')}; "
            f"the database is at {runtime.heads_text(now)}."
        )
    if observer.steps and set(observer.steps[-1]) != set(now):
        raise MigrationFailed(
            f"The {verb} ran to {runtime.heads_text(observer.steps[-1])}, but the version table reads "
            f"{runtime.heads_text(now)}: env.py's changes were not kept (does it commit its own connection?)."
        )


def _is_database_error(error: BaseException) -> bool:
    """Whether the error came from the database (not from the project's code)."""
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(error, SQLAlchemyError)


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
