"""Writing revisions: what autogenerate proposes, made ready to run up and down on every dialect;
and squash, one revision for a linear run, proven to build the same schema (up and down) in
throwaway databases before any file moves."""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dialects, housekeeping, reading, runtime, schema, settings, squashing
from .dialects import shadow_database
from .errors import (
    ConfigurationError,
    DropsEveryTable,
    MigrationError,
    RevisionProtected,
)
from .metadata import drop_all_refusal, drops_every_table
from .reflection import reuse_in
from .render import counted
from .results import (
    CellRevision,
    RevisionInfo,
    Squash,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .manager import AlembicManager

class SquashRefused(MigrationError):
    """The run cannot be squashed (not linear, holds data migrations, the database is inside it,
    or the new revision does not build the same schema)."""


@dataclass
class Run:
    """The revisions to replace, oldest first, what they sit on, and what builds on the last one."""

    revisions: list[Script]
    parent: str | None
    children: list[Script] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The revision ids, oldest first."""
        return [r.revision for r in self.revisions]

    @property
    def last(self) -> str:
        """The newest revision of the run."""
        return self.revisions[-1].revision


def linear_run(script: ScriptDirectory, first: Script, last: Script) -> Run:
    """The revisions from `first` to `last` (both included), refused unless they form a straight line."""
    found, step = [], last
    while True:
        if step.dependencies or len(step._all_down_revisions) > 1:
            raise SquashRefused(f"{step.revision} merges or depends on other revisions: only a straight "
                                "run can be squashed.")
        found.append(step)
        if step.revision == first.revision:
            break
        if not step.down_revision:
            raise SquashRefused(f"{first.revision} is not before {last.revision} in the history.")
        step = script.get_revision(step.down_revision)
        if len(step.nextrev) > 1:
            raise SquashRefused(f"{step.revision} has a branch growing from it: only a straight run can be "
                                "squashed.")
    if len(found) < 2:
        raise SquashRefused("A squash needs at least two revisions (A:B).")
    children = [script.get_revision(child) for child in sorted(last.nextrev)]
    return Run(list(reversed(found)), first.down_revision, children)


def refuse_data_migrations(run: Run, dialect: str) -> None:
    """A run that moves data (op.execute, bulk inserts, code reading the database) is squashed only
    with keep_data (--keep-data), which carries those revisions over in order."""
    for step in run.revisions:
        moved = squashing.moves_data(step, dialect)
        if moved:
            raise SquashRefused(f"{step.revision} {moved}; a data migration is not squashed: carry it over "
                                "in order with --keep-data, or squash the runs before and after it.")


def database_at_end(run: Run, current: Sequence[str]) -> bool:
    """Whether the database is at the run's last revision; refused when it is strictly inside."""
    inside = [rev for rev in current if rev in run.ids[:-1]]
    if inside:
        raise SquashRefused(f"The database is at {inside[0]}, inside the run: upgrade it to {run.last} "
                            "(or downgrade it below the run) first.")
    return run.last in current


_DOWN_REVISION = r"^(down_revision\b[^=\n]*=\s*)(['\"]){rev}\2"


def check_children_repointable(run: Run) -> None:
    """Each revision built on the run must name it as a plain literal we can rewrite."""
    for child in run.children:
        source = Path(child.path).read_text(encoding="utf-8")
        if not re.search(_DOWN_REVISION.format(rev=re.escape(run.last)), source, re.MULTILINE):
            raise SquashRefused(f"{Path(child.path).name} builds on {run.last} but its down_revision is not "
                                "a plain string; point it at the new revision by hand, then squash.")


def repoint(child: Script, old: str, new: str) -> None:
    """Make a revision built on `old` build on `new` (its header only)."""
    path = Path(child.path)
    source = path.read_text(encoding="utf-8")
    pattern = _DOWN_REVISION.format(rev=re.escape(old))
    source = re.sub(pattern, lambda m: f"{m[1]}{m[2]}{new}{m[2]}", source, count=1, flags=re.MULTILINE)
    path.write_text(source.replace(f"Revises: {old}", f"Revises: {new}", 1), encoding="utf-8")


@dataclass
class Proof:
    """The squashed revision, written in a scratch copy of the migrations folder, and the checks."""

    path: Path
    checks: list[tuple[str, bool, str]]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(ok for _, ok, _ in self.checks)

    def refusal(self) -> str:
        """Why the squash is refused: what differs, schema and/or rows, with the details."""
        failed = [(check, detail) for check, ok, detail in self.checks if not ok]
        kinds = sorted({"rows" if "rows" in check else "schema" for check, _ in failed}, reverse=True)
        what = {"rows": "leave the same rows", "schema": "build the same schema"}
        return (f"The squashed revision does not {' or '.join(what[k] for k in kinds)}, so nothing was "
                f"changed: {'; '.join(detail for _, detail in failed)}")


def build_and_prove(manager: AlembicManager, target: settings.Target, run: Run, message: str, rev_id: str,
                    scratch: Path) -> Proof:
    """Write the new revision from the schemas before and after the run, then check it rebuilds them."""
    from .manager import AlembicManager

    folder = _scratch_copy(target, run, scratch, runtime.script_directory(manager, target))

    def project(url: str, migrations: Path, metadata: Any = None) -> AlembicManager:
        return AlembicManager(url=url, migrations_dir=migrations, metadata=metadata,
                              project_root=target.project_root)

    with shadow_database(target.url, "squash") as at_end, shadow_database(target.url, "squash") as before, \
            shadow_database(target.url, "squash") as rebuilt:
        project(at_end, target.migrations_dir).upgrade(run.last)
        expected_end, end_metadata = _snapshot_and_metadata(at_end)
        start = project(before, folder, end_metadata)
        if run.parent:
            start.upgrade(run.parent)
        expected_start, _ = _snapshot_and_metadata(before)
        refuse_renames(run, squashing.renamed_at_start(run.revisions, dialects.dialect_name(target.url),
                                                       expected_start))
        written = start.revision(message, autogenerate=True, rev_id=rev_id)
        if written is None:
            raise SquashRefused(f"The run {run.ids[0]}..{run.last} changes nothing in the schema; delete its "
                                "revisions instead.")
        check = project(rebuilt, folder)
        up = _rebuilt_differences(lambda: check.upgrade(rev_id), expected_end, rebuilt)
        down = _rebuilt_differences(lambda: check.downgrade(run.parent or "base"), expected_start, rebuilt)
    tables = len([name for name in expected_end if not name.startswith("(")])
    checks = [
        (f"upgrade to {rev_id} builds the schema at {run.last}", not up,
         "; ".join(up) or f"{counted(tables, 'table')} equal"),
        (f"downgrade of {rev_id} returns to {run.parent or 'base'}", not down, "; ".join(down) or "equal"),
    ]
    return Proof(Path(written.path), checks)


def build_and_prove_keeping_data(manager: AlembicManager, target: settings.Target, run: Run,
                                 cut: list[squashing.Piece], message: str, rev_id: str,
                                 scratch: Path) -> Proof:
    """Build the new revision piece by piece (schema stretches autogenerated, data migrations carried
    verbatim), then check it builds the same schema and leaves the same rows as the run, up and down."""
    folder = _scratch_copy(target, run, scratch, runtime.script_directory(manager, target))
    project = _projects(target)
    shadow = functools.partial(shadow_database, target.url, "squash")
    with shadow() as old_url, shadow() as work_url, shadow() as rebuilt:
        old, work = project(old_url, target.migrations_dir), project(work_url, folder)
        if run.parent:
            old.upgrade(run.parent)
            work.upgrade(run.parent)
        expected_start, _ = _snapshot_and_metadata(old_url)
        sources = _build_pieces(old, work, old_url, cut, run.parent, folder, message)
        expected_end, rows_end = _snapshot_and_metadata(old_url)[0], squashing.table_contents(old_url)
        rows_down = _rows_after(lambda: old.downgrade(run.parent or "base"), old_url)
        path = _write_composed(project(rebuilt, folder), message, rev_id, sources)
        check = project(rebuilt, folder)
        up = _rebuilt_differences(lambda: check.upgrade(rev_id), expected_end, rebuilt)
        up_rows = squashing.row_differences(rows_end, squashing.table_contents(rebuilt), "the old run",
                                            "the new revision")
        down = _rebuilt_differences(lambda: check.downgrade(run.parent or "base"), expected_start, rebuilt)
        down_rows = None if rows_down is None else squashing.row_differences(
            rows_down, squashing.table_contents(rebuilt), "the old run's downgrade", "the new downgrade")
    parent = run.parent or "base"
    tables = len([name for name in expected_end if not name.startswith("(")])
    checks = [
        (f"upgrade to {rev_id} builds the schema at {run.last}", not up,
         "; ".join(up) or f"{counted(tables, 'table')} equal"),
        (f"upgrade to {rev_id} leaves the rows the run leaves", not up_rows,
         "; ".join(up_rows) or squashing.rows_said(rows_end)),
        (f"downgrade of {rev_id} returns to {parent}", not down, "; ".join(down) or "equal"),
    ]
    if down_rows is not None:
        checks.append((f"downgrade of {rev_id} leaves the rows the run's downgrade leaves", not down_rows,
                       "; ".join(down_rows) or squashing.rows_said(rows_down or {})))
    return Proof(path, checks)


def _projects(target: settings.Target) -> Callable[..., AlembicManager]:
    """Managers on throwaway databases, in the project, for a migrations folder."""
    from .manager import AlembicManager

    def project(url: str, migrations: Path) -> AlembicManager:
        return AlembicManager(url=url, migrations_dir=migrations, project_root=target.project_root)

    return project


def _build_pieces(old: AlembicManager, work: AlembicManager, old_url: str, cut: list[squashing.Piece],
                  parent: str | None, folder: Path, message: str) -> list[tuple[str, str]]:
    """Each piece written in the scratch folder on top of the one before and applied to `work`
    (`old` follows the run); their labels and sources in order. The piece files go again."""
    from alembic import util

    sources, written, head = [], [], parent
    for piece in cut:
        old.upgrade(piece.last)
        if piece.carried:
            step = piece.revisions[0]
            path = folder / "versions" / Path(step.path).name
            source = Path(step.path).read_text(encoding="utf-8")
            squashing.write_source(path, squashing.repointed(source, step.down_revision, head))
            head = step.revision
        else:
            work.metadata = _snapshot_and_metadata(old_url)[1]
            # the run's renames are carried: what autogenerate still pairs up, the run dropped and added
            info = work.revision(message, autogenerate=True, rev_id=util.rev_id(), no_rename=True)
            if info is None:  # this stretch changes nothing the schema shows
                continue
            path, head = Path(info.path), info.revision
        work.upgrade(head)
        written.append(path)
        sources.append((piece.label, path.read_text(encoding="utf-8")))
    for path in written:
        path.unlink()
    return sources


def _write_composed(writer: AlembicManager, message: str, rev_id: str,
                    sources: list[tuple[str, str]]) -> Path:
    """The new revision: the project's template calling each piece, the pieces' code after it."""
    up, down = squashing.calls([label for label, _ in sources])
    info = writer.revision(message, autogenerate=False, rev_id=rev_id, upgrade_body=up, downgrade_body=down)
    path = Path(info.path)
    squashing.write_source(path, squashing.compose(path.read_text(encoding="utf-8"), sources))
    return path


def _rows_after(migrate: Callable[[], Any], url: str) -> dict[str, list[str]] | None:
    """The tables' rows after a step of the old run; None when that step fails."""
    try:
        migrate()
    except MigrationError:
        return None
    return squashing.table_contents(url)


def _rebuilt_differences(migrate: Callable[[], Any], expected: dict[str, Any], url: str) -> list[str]:
    """Run one step of the proof; how the schema then differs from the expected one (or why it failed)."""
    try:
        migrate()
    except MigrationError as error:
        return [f"failed: {str(error).splitlines()[0]}"]
    return schema.differences(expected, _snapshot_and_metadata(url)[0])


def _scratch_copy(target: settings.Target, run: Run, scratch: Path, script: ScriptDirectory) -> Path:
    """The migrations folder with only the revisions below the run, for writing the new one."""
    folder = scratch / "migrations"
    shutil.copytree(target.migrations_dir, folder, ignore=shutil.ignore_patterns(".trash", "__pycache__"))
    below = {r.revision for r in script.iterate_revisions(run.parent, "base")} if run.parent else set()
    for revision in script.walk_revisions():
        if revision.revision not in below:
            (folder / "versions" / Path(revision.path).name).unlink(missing_ok=True)
    return folder


def _snapshot_and_metadata(url: str) -> tuple[dict[str, Any], Any]:
    """A database's schema snapshot, and its reflected MetaData (the version table left out)."""
    from sqlalchemy import MetaData, create_engine, pool

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            found = schema.snapshot(connection, skip=("alembic_version",))
            metadata = MetaData()
            metadata.reflect(connection)
        if "alembic_version" in metadata.tables:
            metadata.remove(metadata.tables["alembic_version"])
        return found, metadata
    finally:
        engine.dispose()


def temporary_folder() -> tempfile.TemporaryDirectory[str]:
    """Where the squashed revision is written and proven before it is installed."""
    return tempfile.TemporaryDirectory(prefix="framefox-squash-")


MAX_NAME = 60  # under PostgreSQL's 63 and MySQL's 64 characters


def name_new_foreign_keys(directives: Iterable[Any]) -> None:
    """Give each foreign key autogenerate adds to an existing table a name (SQLAlchemy's usual
    convention, fk_<table>_<column>_<referred table>), in upgrade() and in the downgrade() that
    drops it: SQLite's batch mode and every drop_constraint need one."""
    from alembic.operations import ops

    for directive in directives:
        for op in _flattened([*directive.upgrade_ops_list, *directive.downgrade_ops_list]):
            if isinstance(op, ops.CreateForeignKeyOp) and op.constraint_name is None:
                op.constraint_name = _foreign_key_name(op)
            elif (isinstance(op, ops.DropConstraintOp) and op.constraint_name is None
                  and isinstance(op._reverse, ops.CreateForeignKeyOp)):
                op.constraint_name = op._reverse.constraint_name or _foreign_key_name(op._reverse)


def _foreign_key_name(op: Any) -> str:
    return f"fk_{op.source_table}_{'_'.join(op.local_cols)}_{op.referent_table}"[:MAX_NAME]


def _flattened(containers: Iterable[Any]) -> Iterator[Any]:
    """Every operation, inside ModifyTableOps too."""
    for container in containers:
        for op in container.ops:
            if hasattr(op, "ops"):
                yield from _flattened([op])
            else:
                yield op


@dataclass(frozen=True)
class RevisionRequest:
    """What `revision` was asked to write (the arguments of AlembicManager.revision)."""

    message: str
    autogenerate: bool = True
    head: str = "head"
    splice: bool = False
    branch_label: str | None = None
    depends_on: str | Sequence[str] | None = None
    rev_id: str | None = None
    upgrade_body: str | None = None
    downgrade_body: str | None = None
    replace: str | None = None
    renames: tuple[str, ...] = ()
    no_rename: bool = False
    allow_drop_all: bool = False

    @property
    def manual(self) -> bool:
        """The upgrade/downgrade code is given: nothing is autogenerated."""
        return self.upgrade_body is not None or self.downgrade_body is not None


def write_revision(manager: AlembicManager, asked: RevisionRequest) -> RevisionInfo | None:
    """Write a new revision (see AlembicManager.revision); None when autogenerate found no change."""
    from alembic import util

    from .intent import parse_renames

    message = docstring_safe(asked.message)
    bodies = _indented_bodies(asked.upgrade_body, asked.downgrade_body) if asked.manual else ("", "")
    chosen = [asked.rev_id or util.rev_id()]
    with runtime.explaining_pending(manager), runtime.call(manager) as target, \
            _replacing(manager, target, asked.replace) as replaced, \
            housekeeping.no_leftovers(target, lambda: chosen[-1]):
        if asked.rev_id is not None:
            check_new_rev_id(runtime.script_directory(manager, target), asked.rev_id)
        options = _placement(asked, replaced, chosen[0])
        chosen.append(options["rev_id"])
        intent = {"renames": parse_renames(asked.renames), "no_rename": asked.no_rename}
        if asked.manual:
            written = _write_manual(manager, target, message, bodies, options)
        else:
            written = _generate(manager, target, message, asked.autogenerate, options, intent,
                                asked.allow_drop_all)
        if written is None:
            return None
        return _written_info(manager, target, written.revision, replaced)


def _placement(asked: RevisionRequest, replaced: housekeeping.Replacement | None,
               fresh_id: str) -> dict[str, Any]:
    """Where the new revision goes: as asked, or in the replaced one's old place (on its parent,
    which may have other children now)."""
    if replaced is None:
        return {"head": asked.head, "splice": asked.splice, "branch_label": asked.branch_label,
                "depends_on": asked.depends_on, "rev_id": fresh_id}
    return {"head": replaced.head_arg, "splice": True,
            "branch_label": asked.branch_label or replaced.branch_label,
            "depends_on": asked.depends_on, "rev_id": asked.rev_id or replaced.revision}


def _write_manual(manager: AlembicManager, target: settings.Target, message: str | None,
                  bodies: tuple[str, str], options: dict[str, Any]) -> Script:
    """A revision with the given upgrade/downgrade code, from the project's script.py.mako."""
    config = runtime.make_config(manager, target)
    options = dict(options)
    return runtime.script_directory(manager, target, config).generate_revision(
        options.pop("rev_id"), message, refresh=True, upgrades=bodies[0], downgrades=bodies[1],
        config=config, branch_labels=options.pop("branch_label"), **options,
    )


def _written_info(manager: AlembicManager, target: settings.Target, revision: str,
                  replaced: housekeeping.Replacement | None) -> RevisionInfo:
    """The revision just written, read back from its file, with its operations."""
    found = runtime.script_directory(manager, target).get_revision(revision)
    info = runtime.revision_info(found, set(), ())
    info.diff = reading.recorded_diff(manager, found, target, "upgrade")
    if replaced:
        info.note = f"replaced the earlier {replaced.revision}"
    return info


def _generate(manager: AlembicManager, target: settings.Target, message: str, autogenerate: bool,
              options: dict[str, Any], intent: dict[str, Any] | None = None,
              allow_drop_all: bool = False) -> Script | None:
    """alembic's revision command on the cached script directory; None when nothing changed."""
    from .intent import shape_revision

    found_changes: list[bool] = []
    refused: list[DropsEveryTable] = []

    def note_changes(context: Any, revision: Any, directives: list) -> None:
        if autogenerate:
            shape_revision(context, directives, **(intent or {}))
        found_changes.append(any(not ops.is_empty() for d in directives for ops in d.upgrade_ops_list))
        name_new_foreign_keys(directives)
        compared = context.opts.get("target_metadata")  # what env.py handed to autogenerate
        dropped = drops_every_table(directives, compared)
        if autogenerate and dropped and not allow_drop_all:
            refused.append(DropsEveryTable(drop_all_refusal(dropped, manager.metadata_spec()), dropped))

    with runtime.connect(manager, target, reading=True) as connection:
        config = runtime.make_config(manager, target, connection, autogenerate=autogenerate)
        config.cmd_opts.autogenerate = autogenerate  # as `alembic revision --autogenerate` sets it
        script = runtime.script_directory(manager, target, config)
        arguments = {**runtime.revision_args(), **options, "message": message, "autogenerate": autogenerate}
        revision_context = filled_revision_context(manager, config, script, arguments, note_changes)
        written = list(revision_context.generate_scripts())
    if refused:  # raised after alembic's own checks (e.g. several heads); the file goes
        raise refused[0]
    if autogenerate and found_changes and not any(found_changes):
        for leftover in filter(None, written):  # an env.py that does not skip empty runs
            Path(leftover.path).unlink(missing_ok=True)
        return None
    return written[0] if written else None


def filled_revision_context(manager: AlembicManager, config: Config, script: ScriptDirectory,
                            arguments: dict[str, Any],
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
            reuse_in(context, manager._reflection)
            revision_context.run_autogenerate(rev, context)
        else:
            revision_context.run_no_autogenerate(rev, context)
        return []

    with runtime.collection_paused():
        runtime.run_env(manager, config, script, fill, as_sql=False, revision_context=revision_context,
                      template_args=revision_context.template_args)
    return revision_context


@contextmanager
def _replacing(manager: AlembicManager, target: settings.Target,
               rev: str | None) -> Iterator[housekeeping.Replacement | None]:
    """Set aside an unapplied head so that it can be written again; put it back on failure."""
    if rev is None:
        yield None
        return
    script = runtime.script_directory(manager, target)
    found = runtime.one_revision(script, rev)
    with runtime.connect(manager, target, reading=True) as connection:
        current = runtime.current_heads(manager, target, connection)
    if not replaceable(found, runtime.applied_revisions(script, current)):
        raise RevisionProtected(
            f"{found.revision} is applied or has children; it can no longer be replaced."
        )
    replacement = housekeeping.Replacement(found)
    replacement.set_aside(target)
    try:
        yield replacement
    except BaseException:
        replacement.restore()
        raise


def cell_revision_state(manager: AlembicManager, earlier: str | None) -> CellRevision:
    """What a cell that wrote `earlier` may do now: replace it while it is an unapplied head,
    else write on top of it."""
    if earlier is None:
        return CellRevision()
    with runtime.call(manager) as target, runtime.connect(manager, target) as connection:
        script = runtime.script_directory(manager, target)
        found = next((r for r in script.ordered() if r.revision == earlier), None)
        if found is None:
            return CellRevision()
        current = runtime.current_heads(manager, target, connection)
        applied = runtime.applied_revisions(script, current)
    if not replaceable(found, applied):
        return CellRevision(earlier, applied=found.revision in applied)
    return CellRevision(earlier, replaceable=earlier)


def replaceable(found: Script, applied: Set[str]) -> bool:
    """The one rule for writing a revision again under its id: it is unapplied and nothing builds on it."""
    return found.revision not in applied and not found._all_nextrev


def merge(manager: AlembicManager, revisions: str | Sequence[str], message: str,
          branch_label: str | None = None,
          rev_id: str | None = None) -> RevisionInfo:
    """Write a revision that joins several heads (default: all of them)."""
    from alembic import util

    message = docstring_safe(message)
    new_id = rev_id or util.rev_id()
    with runtime.call(manager) as target, housekeeping.no_leftovers(target, lambda: new_id):
        config = runtime.make_config(manager, target)
        script = runtime.script_directory(manager, target, config)
        if rev_id is not None:
            check_new_rev_id(script, rev_id)
        written = script.generate_revision(
            new_id, message, refresh=True, head=revisions,
            branch_labels=branch_label, config=config,
        )
        found = runtime.script_directory(manager, target).get_revision(written.revision)
        return runtime.revision_info(found, set(), ())


def squash(manager: AlembicManager, rev_range: str, message: str, rev_id: str | None = None,
           keep_data: bool = False) -> Squash:
    """Replace the linear run A:B with one revision, proven to build the same schema up and down;
    keep_data carries the run's data migrations over in order (and proves the same rows)."""
    from alembic import util

    first, _, last = rev_range.partition(":")
    if not first or not last:
        raise ConfigurationError("Name the run to squash as A:B (its first and last revision).")
    docstring_safe(message)  # refused before any work; revision() escapes it when it writes the file
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        run = linear_run(script, runtime.one_revision(script, first), runtime.one_revision(script, last))
        if not keep_data:
            refuse_data_migrations(run, dialects.dialect_name(target.url))
        cut = squashing.pieces(run.revisions, dialects.dialect_name(target.url)) if keep_data else []
        check_children_repointable(run)
        with runtime.connect(manager, target) as connection:
            at_end = database_at_end(run, runtime.current_heads(manager, target, connection))
        if rev_id is not None:
            check_new_rev_id(script, rev_id)
        new_id = rev_id or util.rev_id()
        with temporary_folder() as scratch:
            if any(piece.carried for piece in cut):
                proof = build_and_prove_keeping_data(manager, target, run, cut, message, new_id,
                                                     Path(scratch))
            else:
                proof = _proved_without_renames(lambda: build_and_prove(manager, target, run, message, new_id,
                                                                        Path(scratch)), run)
            if not proof.ok:
                raise SquashRefused(proof.refusal())
            return _install_squash(manager, target, run, proof, new_id, at_end, squashing.carried_note(cut))


def _proved_without_renames(prove: Callable[[], Proof], run: Run) -> Proof:
    """The proof of a plain squash; refused when autogenerate would ask about renames."""
    from .errors import RenameQuestion

    try:
        return prove()
    except RenameQuestion as asked:
        refuse_renames(run, [c.spec for c in asked.candidates])
        raise


def refuse_renames(run: Run, specs: Sequence[str]) -> None:
    """Written anew, a rename of what was there before the run is a drop + add that loses its rows."""
    if specs:
        raise SquashRefused(
            f"The run {run.ids[0]}..{run.last} renames what was there before it ({', '.join(specs)}); "
            "written anew that is a drop + add that loses the rows: carry the revisions over as they are "
            "with --keep-data, or squash the runs before and after them.")


def _install_squash(manager: AlembicManager, target: settings.Target, run: Any, proof: Any, new_id: str,
                    at_end: bool, carried: str = "") -> Squash:
    """New file in, revisions built on the run re-pointed, old files to the trash, database stamped."""

    installed = target.versions_dir / proof.path.name
    shutil.copy2(proof.path, installed)
    for child in run.children:
        repoint(child, run.last, new_id)
    trash = housekeeping.to_trash(target, [Path(r.path) for r in run.revisions])
    warnings = []
    if at_end:
        with runtime.connect(manager, target) as connection:
            _replace_version_row(connection, runtime.version_table(manager, target), run.last, new_id)
            now = runtime.current_heads(manager, target, connection)
        warnings.append(f"The database was at {run.last}: it now records {runtime.heads_text(now)}.")
    info = runtime.revision_info(runtime.script_directory(manager, target).get_revision(new_id), set(), ())
    summary = (f"Squashed {len(run.ids)} revisions ({run.ids[0]}..{run.last}) into {new_id}{carried}; the "
               f"old files are kept in {trash}.")
    return Squash(summary, info, tuple(run.ids), proof.checks, str(trash), warnings)


_REV_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def check_new_rev_id(script: ScriptDirectory, rev_id: str) -> None:
    """A new revision id: a plain name, not a reserved word, not taken."""
    if not _REV_ID.match(rev_id):
        raise ConfigurationError("A revision id is 1-32 letters, digits or underscores.")
    if rev_id.lower() in runtime.RESERVED_IDS:
        raise ConfigurationError(f"'{rev_id}' is a reserved word, not a revision id.")
    if any(r.revision == rev_id for r in script.ordered()):
        raise ConfigurationError(f"A revision '{rev_id}' exists already; pick another id.")


def docstring_safe(message: str | None) -> str | None:
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


def _replace_version_row(connection: Connection, where: tuple[str, str | None], old: str, new: str) -> None:
    """Record `new` where the version table records `old` (other heads left as they are)."""
    from sqlalchemy import column, table, update

    versions = table(where[0], column("version_num"), schema=where[1])
    connection.execute(update(versions).where(versions.c.version_num == old).values(version_num=new))
    connection.commit()


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
