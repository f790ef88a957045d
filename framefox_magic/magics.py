"""%migrate and %%revision: parse the line, call the manager, return the result."""

from __future__ import annotations

import argparse
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Unicode, observe

from . import commands
from .errors import MigrationError
from .settings import mask_url

if TYPE_CHECKING:  # the manager and its rooms are imported on first use: %load_ext stays light
    from .fanout import TargetCallback
    from .manager import AlembicManager, StepCallback
    from .metadata import PendingRedefinition
    from .results import CellRevision, FanoutRow, RevisionInfo

OUTPUT = commands.Arg(
    ("-o", "--output"), "also store the result in this variable", options={"dest": "output"}
)
MANUAL = commands.Arg(
    ("--manual",), "the cell is the body of upgrade(); a line `# downgrade` starts downgrade()",
    options={"action": "store_true"},
)
DOWNGRADE_MARKER = "# downgrade"


class CellCodeError(Exception):
    """A SyntaxError in a model cell, shown as IPython shows one in a normal cell."""

    def __init__(self, error: SyntaxError, stb: list[str]) -> None:
        super().__init__(f"{type(error).__name__}: {error.msg}")
        self.error = error
        self._stb = stb

    def _render_traceback_(self) -> list[str]:
        return self._stb


@magics_class
class MigrateMagics(Magics):
    """Alembic migrations from the notebook; settings via %config MigrateMagics.<name>."""

    url = Unicode(None, allow_none=True, help="Database URL (default: DATABASE_URL, project "
                  "settings, alembic.ini, then SQLite in the project folder). Shown with its "
                  "password masked; the real one is kept by the manager only.").tag(config=True)
    migrations_dir = Unicode(None, allow_none=True, help="Migrations folder (default: migrations, "
                             "or the script_location of alembic.ini).").tag(config=True)
    metadata = Unicode(None, allow_none=True,
                       help="module:attribute of the MetaData to autogenerate from "
                       "(default: SQLModel.metadata).").tag(config=True)
    version_table = Unicode(None, allow_none=True,
                            help="Version table name, when env.py names it in a way not read from its "
                            "source (default: env.py's literal, else alembic_version).").tag(config=True)
    version_table_schema = Unicode(None, allow_none=True,
                                   help="Schema of the version table (default: env.py's literal, "
                                   "else none).").tag(config=True)
    short_errors = Bool(True, help="Show errors as one short line; False shows the traceback."
                        ).tag(config=True)
    confirm_destructive = Bool(True, help="Destructive commands need --yes.").tag(config=True)
    confirm_dangerous_upgrade = Bool(True, help="An upgrade that would lose data or fail on the rows "
                                     "present (a danger in `lint`) needs --yes.").tag(config=True)
    show_progress = Bool(True, help="Show progress per revision during upgrade/downgrade."
                         ).tag(config=True)
    connect_timeout = Float(10.0, help="Seconds to wait for a database connection.").tag(config=True)
    ddl_lock_timeout = Float(None, allow_none=True, help="Seconds a migration statement may wait for "
                             "a table lock on PostgreSQL / MariaDB (lock_timeout / lock_wait_timeout) "
                             "before it fails; None waits as long as the server does.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._manager: AlembicManager | None = None
        self._cell_revisions: dict[str, str] = {}
        if self.url is not None:
            self.manager  # noqa: B018  # a URL from the configuration is shown masked from now on

    @property
    def manager(self) -> AlembicManager:
        """The manager, made from the settings on first use (the rooms are imported then)."""
        if self._manager is None:
            from .manager import AlembicManager

            self._manager = AlembicManager(self.url, self.migrations_dir, self.metadata,
                                           connect_timeout=self.connect_timeout,
                                           ddl_lock_timeout=self.ddl_lock_timeout)
            self._manager.version_table = self.version_table
            self._manager.version_table_schema = self.version_table_schema
            self._remember_target()
        return self._manager

    @manager.setter
    def manager(self, manager: AlembicManager) -> None:
        """Use this manager from now on (a notebook or a test may hand in its own)."""
        self._manager = manager

    @observe("url", "migrations_dir", "metadata", "version_table", "version_table_schema", "connect_timeout",
             "ddl_lock_timeout")
    def _target_changed(self, change: Any) -> None:
        manager = getattr(self, "_manager", None)  # None while the shell's config is applied in __init__
        if manager is None:
            if change["name"] == "url" and change["new"] is not None and hasattr(self, "_manager"):
                self.manager  # noqa: B018  # made from the new URL, which is shown masked from now on
            return  # else the manager is made from the settings when first used
        name, value = change["name"], change["new"]
        if name == "url" and value is not None and value == _masked(manager.url):
            return  # the trait showing the manager's own URL masked
        setattr(manager, name, value)
        if name == "url":
            self._remember_target()

    # ---------------------------------------------------------------- the magics

    @line_magic
    def migrate(self, line: str) -> Any:
        with self._errors_shown():
            try:
                args = commands.parse(line, extra=(OUTPUT,))
            except commands.HelpShown as shown:
                print(shown.text)
                return None
            self._check_output_name(args)
            try:
                result = commands.execute(self.manager, args, self, confirm=self.confirm_destructive,
                                          confirm_dangers=self.confirm_dangerous_upgrade)
            finally:
                self._remember_target()
            self._store(args, result)
            return result

    @cell_magic
    def revision(self, line: str, cell: str) -> Any:
        """Write a revision from this cell: model code (autogenerate) or, with --manual, upgrade code.

        %%revision -m MESSAGE [--manual] [--apply] [--head REV] [--splice] [--branch-label LABEL]
                              [--depends-on REV] [--rev-id ID] [--rename OLD:NEW] [--no-rename]
                              [--yes] [-o NAME]

        Without --manual the cell runs first (define or edit SQLModel / SQLAlchemy models in it),
        then the models are compared with the database; the cell's models are kept only when it
        succeeds. Re-running the cell while its revision is still an unapplied head writes that
        revision again instead of adding another; once it is applied, the new one goes on top.
        """
        with self._errors_shown():
            try:
                args = commands.parse(f"revision {line}", prog="%%revision", extra=(OUTPUT, MANUAL))
            except commands.HelpShown as shown:
                print(shown.text)
                return None
            self._check_output_name(args)
            with commands.target_from(self.manager, args):
                result = self._write_cell_revision(args, cell)
            self._remember_target()
            self._store(args, result)
            return result

    def _write_cell_revision(self, args: argparse.Namespace, cell: str) -> Any:
        """Run the cell's models (kept only when the revision is written) and write the revision."""
        key = self._cell_key(args.message)
        earlier = self.manager.cell_revision_state(self._cell_revisions.get(key))
        options = {**self._revision_options(args), "replace": earlier.replaceable,
                   "allow_drop_all": args.yes}
        if args.manual:
            upgrade, downgrade = split_manual_cell(cell)
            written = self.manager.revision(
                args.message, autogenerate=False, upgrade_body=upgrade, downgrade_body=downgrade,
                **options,
            )
        else:
            from .metadata import begin_redefinition

            source, code, filename = self._compile_model_code(cell)
            pending = begin_redefinition(source, self.shell.user_ns)
            try:
                self._run_model_code(code, filename)
                written = self.manager.revision(args.message, autogenerate=True, **options)
            except BaseException:
                pending.rollback()
                raise
            _commit(pending)
        return self._revision_result(key, written, earlier, args)

    def _remember_target(self) -> None:
        """Keep the traits equal to the target set with --url / --dir / --metadata."""
        for name in ("url", "migrations_dir", "metadata"):
            value = getattr(self.manager, name)
            if name == "url":
                value = _masked(value)
            if (value is None or isinstance(value, str)) and getattr(self, name) != value:
                setattr(self, name, value)

    # ---------------------------------------------------------------- %%revision helpers

    def _compile_model_code(self, cell: str) -> tuple[str, Any, str]:
        """The cell's code, compiled as IPython compiles a cell (its errors name the cell's lines)."""
        try:
            source = "\n" + self.shell.transform_cell(cell)  # line numbers as the cell shows them
            filename = self.shell.compile.cache(source, self.shell.execution_count)
            return source, self.shell.compile(source, filename, "exec"), filename
        except SyntaxError as error:
            raise self._as_cell_error(error, None) from None

    def _run_model_code(self, code: Any, filename: str) -> None:
        """Run the compiled cell in the user's namespace; its errors show the cell's frames only."""
        try:
            exec(code, self.shell.user_global_ns, self.shell.user_ns)
        except Exception as error:
            raise self._as_cell_error(error, filename) from None

    def _as_cell_error(self, error: BaseException, filename: str | None) -> BaseException:
        """The cell's own error, shown with the cell's frames only (all of them with short_errors off)."""
        if not self.short_errors:
            return error
        if isinstance(error, SyntaxError):
            stb = self.shell.SyntaxTB.structured_traceback(type(error), error, [])
            return CellCodeError(error, stb)
        frames = error.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != filename:
            frames = frames.tb_next
        stb = self.shell.InteractiveTB.structured_traceback(type(error), error, frames or error.__traceback__)
        error._render_traceback_ = lambda: stb  # type: ignore[attr-defined]  # IPython shows this
        return error

    def _check_output_name(self, args: argparse.Namespace) -> None:
        """Refuse an -o name that would hide Python's or IPython's own names."""
        name = getattr(args, "output", None)
        if name is not None:
            commands.check_output_name(name, set(self.shell.user_ns_hidden))

    @staticmethod
    def _revision_options(args: argparse.Namespace) -> dict[str, Any]:
        return {
            "head": args.head, "splice": args.splice, "branch_label": args.branch_label,
            "depends_on": args.depends_on, "rev_id": args.rev_id,
            "renames": args.renames, "no_rename": args.no_rename,
        }

    def _cell_key(self, message: str) -> str:
        """Which cell this is: the notebook's cell id when the front end sends one, else the message."""
        kernel = getattr(self.shell, "kernel", None)
        try:
            cell_id = kernel.get_parent()["metadata"].get("cellId") if kernel else None
        except (AttributeError, KeyError, TypeError):
            cell_id = None
        return f"cell:{cell_id}" if cell_id else f"message:{message}"

    def _revision_result(self, key: str, written: RevisionInfo | None, earlier: CellRevision,
                         args: argparse.Namespace) -> Any:
        if written is None:
            from .results import no_changes

            self._cell_revisions.pop(key, None)
            return no_changes(earlier)
        self._cell_revisions[key] = written.revision
        if args.apply:
            written = commands.apply_revision(self.manager, written, self)
            written.note = "applied"
        written.note = earlier.note_for(written.revision, written.note)
        return written

    # ---------------------------------------------------------------- what commands ask for

    def progress(self, verb: str) -> StepCallback | None:
        """A per-revision progress display, updated in place (lines of text in a terminal)."""
        if not self.show_progress:
            return None
        if getattr(self.shell, "kernel", None) is None:
            return commands.text_progress(verb, sys.stderr)
        from IPython.display import HTML, display

        from .render import progress_html

        handle: list[Any] = []

        def step(done: int, total: int, info: RevisionInfo) -> None:
            if total < 2:
                return
            view = HTML(progress_html(verb, done, total, info.revision, info.message))
            if handle:
                handle[0].update(view)
            else:
                handle.append(display(view, display_id=True))

        return step

    def target_progress(self, verb: str) -> TargetCallback | None:
        """A progress bar over many targets: one display updated in place (a text line in a terminal)."""
        if not self.show_progress:
            return None
        if getattr(self.shell, "kernel", None) is None:
            return commands.text_target_progress(verb, sys.stderr)
        from IPython.display import HTML, display

        from .render import fanout_progress_html

        handle: list[Any] = []
        counts: dict[str, int] = {}

        def step(done: int, total: int, row: FanoutRow) -> None:
            counts[row.state] = counts.get(row.state, 0) + 1
            view = HTML(fanout_progress_html(verb, done, total, counts))
            if handle:
                handle[0].update(view)
            else:
                handle.append(display(view, display_id=True))

        return step

    def panel(self, manager: AlembicManager) -> Any:
        """The widget panel over the same manager."""
        from .widgets import MigrationPanel

        return MigrationPanel(manager)

    # ---------------------------------------------------------------- plumbing

    def _store(self, args: argparse.Namespace, result: Any) -> None:
        if getattr(args, "output", None):
            self.shell.user_ns[args.output] = result

    @contextmanager
    def _errors_shown(self) -> Iterator[None]:
        """Errors a user can act on become one UsageError line (unless short_errors is off)."""
        try:
            yield
        except MigrationError as error:
            if self.short_errors:
                raise UsageError(str(error)) from None
            raise

    def revision_ids(self) -> list[str]:
        """Revision ids for completion (empty when there is no migrations folder yet)."""
        try:
            return [r.revision for r in self.manager.history()]
        except Exception:
            return []


MigrateMagics.migrate.__doc__ = (
    "Alembic migrations: %migrate SUB-COMMAND [options]; `%migrate help` lists the sub-commands.")
# `%migrate?` shows the list of sub-commands, made when asked for (IPython calls a getdoc() it finds)
MigrateMagics.migrate.getdoc = commands.overview  # type: ignore[attr-defined]


def _masked(url: str | None) -> str | None:
    """What the url trait shows: the URL with its password hidden."""
    return None if url is None else mask_url(url)


def split_manual_cell(cell: str) -> tuple[str, str]:
    """The upgrade() body, and the downgrade() body after a `# downgrade` line."""
    upgrade, downgrade, seen_marker = [], [], False
    for line in cell.splitlines():
        if line.strip().lower() == DOWNGRADE_MARKER:
            seen_marker = True
            continue
        (downgrade if seen_marker else upgrade).append(line)
    return "\n".join(upgrade), "\n".join(downgrade)


# ---------------------------------------------------------------- loading and unloading

_LOADED: dict[int, dict[str, Any]] = {}
# What a session chose (--url, --dir, model cells' revisions) outlives %unload_ext / %reload_ext:
# a reload must never send the next upgrade to another database.
# Keyed by the shell itself, weakly: a shell made later at the same address takes nothing from it.
_KEPT: weakref.WeakKeyDictionary[Any, tuple[dict[str, tuple[Any, Any]], dict[str, str]]] = (
    weakref.WeakKeyDictionary())
_KEPT_SETTINGS = ("url", "migrations_dir", "metadata", "version_table", "version_table_schema")


def load(ipython: Any) -> None:
    """Register the magics, the model-cell hooks and completion on this shell."""
    if id(ipython) in _LOADED:
        return
    magics = MigrateMagics(shell=ipython, config=ipython.config)
    _restore(magics, _KEPT.pop(ipython, None))
    ipython.register_magics(magics)  # Magics.__init__ has made it configurable (%config)
    hooks = ModelCellHooks(ipython)
    ipython.events.register("pre_run_cell", hooks.before)
    ipython.events.register("post_run_cell", hooks.after)
    matcher = _completer(magics)
    ipython.Completer.custom_matchers.append(matcher)
    _LOADED[id(ipython)] = {"magics": magics, "hooks": hooks, "matcher": matcher}


def unload(ipython: Any) -> None:
    """Remove the magics, the hooks, the completer and the reflection plugin."""
    state = _LOADED.pop(id(ipython), None)
    if state is None:
        return
    if "framefox_magic.reflection" in sys.modules:  # else no plugin was ever registered
        sys.modules["framefox_magic.reflection"].unregister_plugin()
    magics = state["magics"]
    if magics._manager is not None:  # a manager never made has nothing to keep or release
        manager = magics._manager
        kept = {name: (_configured(ipython, name), getattr(manager, name)) for name in _KEPT_SETTINGS}
        _KEPT[ipython] = (kept, dict(magics._cell_revisions))
        manager.dispose()
    ipython.events.unregister("pre_run_cell", state["hooks"].before)
    ipython.events.unregister("post_run_cell", state["hooks"].after)
    if state["matcher"] in ipython.Completer.custom_matchers:
        ipython.Completer.custom_matchers.remove(state["matcher"])
    manager = ipython.magics_manager
    for kind, name in (("line", "migrate"), ("cell", "revision")):
        manager.magics[kind].pop(name, None)
    manager.registry.pop(MigrateMagics.__name__, None)
    ipython.configurables[:] = [c for c in ipython.configurables if c is not state["magics"]]


def _configured(ipython: Any, name: str) -> Any:
    """A setting as the shell's configuration (%config, ipython_config.py) gives it."""
    return ipython.config.get(MigrateMagics.__name__, {}).get(name)


def _restore(magics: MigrateMagics, kept: tuple[dict[str, tuple[Any, Any]], dict[str, str]] | None) -> None:
    """The target and model cells' revisions of the session before %unload_ext; a setting
    changed with %config meanwhile wins."""
    if kept is None:
        return
    settings, cell_revisions = kept
    for name, (configured, value) in settings.items():
        if _configured(magics.shell, name) == configured:
            setattr(magics.manager, name, value)
    magics._cell_revisions.update(cell_revisions)
    magics._remember_target()


class ModelCellHooks:
    """Around every cell that defines classes: models it defines again are set aside before it
    runs, forgotten when it succeeds, and put back when it fails."""

    def __init__(self, ipython: Any) -> None:
        self.ipython = ipython
        self.pending: PendingRedefinition | None = None

    def before(self, info: Any) -> None:
        """pre_run_cell: set aside the models this cell defines again."""
        self.pending = None
        source = getattr(info, "raw_cell", "") or ""
        if "class " not in source:
            return
        try:
            from .metadata import begin_redefinition

            self.pending = begin_redefinition(self.ipython.transform_cell(source), self.ipython.user_ns)
        except Exception as error:  # a bug here must never cost the user their cell
            print(f"Note: framefox_magic could not prepare this model cell ({error!r}).", file=sys.stderr)

    def after(self, result: Any) -> None:
        """post_run_cell: keep the new definitions when the cell succeeded, else the earlier ones."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        try:
            if getattr(result, "success", True):
                _commit(pending)
            else:
                pending.rollback()
        except Exception as error:
            print(f"Note: framefox_magic could not settle this model cell ({error!r}).", file=sys.stderr)


def _commit(pending: PendingRedefinition) -> None:
    """Forget the classes set aside; say which models defined elsewhere still point at them."""
    pending.commit()
    if pending.stale:
        print(
            f"Note: {', '.join(pending.stale)} still refer(s) to the earlier "
            f"{', '.join(pending.forgotten)} through a relationship; run that cell again too "
            "(or keep related models in one cell). Autogenerate is not affected.",
            file=sys.stderr,
        )


def _completer(magics: MigrateMagics) -> Callable[[Any], Any]:
    from IPython.core.completer import SimpleCompletion, SimpleMatcherResult, context_matcher

    @context_matcher()
    def migrate_matcher(context: Any) -> SimpleMatcherResult:
        line = context.line_with_cursor
        stripped = line.lstrip()
        if not (stripped.startswith("%migrate") or stripped.startswith("%%revision")):
            return {"completions": [], "suppress": False}
        extra: tuple[commands.Arg, ...] = (OUTPUT,)
        if stripped.startswith("%%revision"):
            stripped = "revision" + stripped[len("%%revision"):]
            extra = (OUTPUT, MANUAL)
        found = commands.completions(stripped, magics.revision_ids, extra)
        return {
            "completions": [SimpleCompletion(text=word, type="migrate") for word in found],
            "suppress": bool(found),
        }

    return migrate_matcher
