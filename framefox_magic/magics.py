"""%migrate and %%revision: parse the line, call the manager, return the result."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Unicode, observe

from . import commands
from .errors import MigrationError
from .fanout import TargetCallback
from .manager import AlembicManager, StepCallback
from .metadata import Redefinition, forget_redefined
from .reflection import unregister_plugin
from .results import FanoutRow, Outcome, RevisionInfo
from .settings import mask_url

OUTPUT = commands.Arg(
    ("-o", "--output"), "also store the result in this variable", options={"dest": "output"}
)
MANUAL = commands.Arg(
    ("--manual",), "the cell is the body of upgrade(); a line `# downgrade` starts downgrade()",
    options={"action": "store_true"},
)
DOWNGRADE_MARKER = "# downgrade"


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
        self.manager = AlembicManager(self.url, self.migrations_dir, self.metadata,
                                      connect_timeout=self.connect_timeout,
                                      ddl_lock_timeout=self.ddl_lock_timeout)
        self.manager.version_table = self.version_table
        self.manager.version_table_schema = self.version_table_schema
        self._cell_revisions: dict[str, str] = {}
        self._remember_target()  # a URL from the configuration is shown masked from now on

    @observe("url", "migrations_dir", "metadata", "version_table", "version_table_schema", "connect_timeout",
             "ddl_lock_timeout")
    def _target_changed(self, change: Any) -> None:
        manager = getattr(self, "manager", None)  # None while the shell's config is applied in __init__
        if manager is None:
            return
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
                              [-o NAME]

        Without --manual the cell runs first (define or edit SQLModel / SQLAlchemy models in it),
        then the models are compared with the database. Re-running the cell while its revision is
        still an unapplied head writes that revision again instead of adding another.
        """
        with self._errors_shown():
            try:
                args = commands.parse(f"revision {line}", prog="%%revision", extra=(OUTPUT, MANUAL))
            except commands.HelpShown as shown:
                print(shown.text)
                return None
            commands.apply_target(self.manager, args)
            self._remember_target()
            key = self._cell_key(args.message)
            replace = self._replaceable(key)
            if args.manual:
                upgrade, downgrade = split_manual_cell(cell)
                written = self.manager.revision(
                    args.message, autogenerate=False, upgrade_body=upgrade, downgrade_body=downgrade,
                    **self._revision_options(args), replace=replace,
                )
            else:
                self._run_model_cell(cell)
                written = self.manager.revision(
                    args.message, autogenerate=True, **self._revision_options(args), replace=replace,
                )
            result = self._revision_result(key, written, replace, args)
            self._store(args, result)
            return result

    def _remember_target(self) -> None:
        """Keep the traits equal to the target set with --url / --dir / --metadata."""
        for name in ("url", "migrations_dir", "metadata"):
            value = getattr(self.manager, name)
            if name == "url":
                value = _masked(value)
            if (value is None or isinstance(value, str)) and getattr(self, name) != value:
                setattr(self, name, value)

    # ---------------------------------------------------------------- %%revision helpers

    def _run_model_cell(self, cell: str) -> None:
        source = self.shell.transform_cell(cell)
        _warn_stale(forget_redefined(source, self.shell.user_ns))
        self.shell.ex(source)

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

    def _replaceable(self, key: str) -> str | None:
        """The revision this cell wrote earlier, while it is still an unapplied head."""
        earlier = self._cell_revisions.get(key)
        if earlier is None:
            return None
        status = self.manager.status()
        if earlier in status.pending and earlier in status.heads:
            return earlier
        self._cell_revisions.pop(key)
        return None

    def _revision_result(self, key: str, written: RevisionInfo | None, replaced: str | None,
                         args: argparse.Namespace) -> Any:
        if written is None:
            self._cell_revisions.pop(key, None)
            removed = f" The earlier revision {replaced} of this cell was removed." if replaced else ""
            return Outcome("revision", f"No changes detected: no revision was written.{removed}")
        self._cell_revisions[key] = written.revision
        if args.apply:
            written = commands.apply_revision(self.manager, written, self)
            written.note = f"applied{'; replaced ' + replaced if replaced else ''}"
        return written

    # ---------------------------------------------------------------- what commands ask for

    def progress(self, verb: str) -> StepCallback | None:
        """A per-revision progress display, updated in place."""
        if not self.show_progress:
            return None
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


MigrateMagics.migrate.__doc__ = commands.overview()


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


def load(ipython: Any) -> None:
    """Register the magics, the model-cell hook and completion on this shell."""
    if id(ipython) in _LOADED:
        return
    magics = MigrateMagics(shell=ipython, config=ipython.config)
    ipython.register_magics(magics)  # Magics.__init__ has made it configurable (%config)
    hook = _model_cell_hook(ipython)
    ipython.events.register("pre_run_cell", hook)
    matcher = _completer(magics)
    ipython.Completer.custom_matchers.append(matcher)
    _LOADED[id(ipython)] = {"magics": magics, "hook": hook, "matcher": matcher}


def unload(ipython: Any) -> None:
    """Remove the magics, the hook, the completer and the reflection plugin."""
    state = _LOADED.pop(id(ipython), None)
    if state is None:
        return
    unregister_plugin()
    state["magics"].manager.dispose()
    ipython.events.unregister("pre_run_cell", state["hook"])
    if state["matcher"] in ipython.Completer.custom_matchers:
        ipython.Completer.custom_matchers.remove(state["matcher"])
    manager = ipython.magics_manager
    for kind, name in (("line", "migrate"), ("cell", "revision")):
        manager.magics[kind].pop(name, None)
    manager.registry.pop(MigrateMagics.__name__, None)
    ipython.configurables[:] = [c for c in ipython.configurables if c is not state["magics"]]


def _model_cell_hook(ipython: Any) -> Callable[[Any], None]:
    def forget_models_redefined_by(info: Any) -> None:
        source = getattr(info, "raw_cell", "") or ""
        if "class " not in source:
            return
        with suppress(SyntaxError):
            _warn_stale(forget_redefined(ipython.transform_cell(source), ipython.user_ns))

    return forget_models_redefined_by


def _warn_stale(redefinition: Redefinition) -> None:
    """Say which models defined elsewhere still point at the classes this cell replaces."""
    if redefinition.stale:
        print(
            f"Note: {', '.join(redefinition.stale)} still refer(s) to the earlier "
            f"{', '.join(redefinition.forgotten)} through a relationship; run that cell again too "
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
