"""MigrationPanel: an ipywidgets view over the same AlembicManager; no migration logic of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from . import commands, render
from .errors import DropsEveryTable, MigrationError, NotUpToDate, RenameQuestion
from .intent import clear_renames
from .manager import AlembicManager
from .results import Graph, History, Outcome, RevisionInfo, no_changes

NOTHING = ""  # the picker's value when no revision is picked
ACTIONS = ("Upgrade", "Downgrade", "Stamp", "Delete", "Refresh", "New revision")
STYLES = {"Upgrade": "primary", "Downgrade": "warning", "Delete": "danger", "New revision": "success"}
TIPS = {
    "Upgrade": "Apply revisions up to the picked one (nothing picked: head)",
    "Downgrade": "Revert revisions down to the picked one (nothing picked: -1)",
    "Stamp": "Record the picked revision (nothing picked: head) without running migrations; asks first",
    "Delete": "Remove the picked revision's file; asks first",
    "Refresh": "Read everything again from the database and the migrations folder",
    "New revision": "Autogenerate a revision from the models, with the message typed beside",
}
BUSY = "Another command is still running; wait for it to finish."

Action = Callable[[], Any]


class MigrationPanel(w.VBox):
    """Status, history and graph, a revision picker with its diff/source/SQL, and the actions."""

    def __init__(self, manager: AlembicManager | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager if manager is not None else AlembicManager()
        self._lock = threading.Lock()
        self._pending: Action | None = None
        self._build_views()
        self._build_controls()
        self.children = self._layout()
        self.add_class("ffm-panel")
        self.refresh()

    # ---------------------------------------------------------------- building

    def _build_views(self) -> None:
        """The read-only parts: header, history, graph, picked revision, model changes, output."""
        self.status = w.HTML()
        self.history = w.HTML()
        self.graph = w.HTML()
        self.revision = w.HTML()
        self.changes = w.HTML()
        self.output = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", bar_style="info",
                                      layout=w.Layout(display="none", width="24em"))
        self.step = w.Label(layout=w.Layout(display="none"))
        self.tabs = w.Tab(
            children=(w.VBox([self.graph, self.history]), self.revision, self.changes),
            titles=("History", "Revision", "Model changes"),
        )

    def _build_controls(self) -> None:
        """The picker, the message box, the action buttons and the confirmation step."""
        self.picker = w.Dropdown(options=[("(none picked)", NOTHING)], value=NOTHING, description="Revision",
                                 style={"description_width": "initial"},
                                 layout=w.Layout(width="34em", max_width="100%"))
        self.picker.observe(self._picked, names="value")
        self.message = w.Text(placeholder="message for a new revision", layout=w.Layout(width="22em"))
        self.buttons = {name: _button(name) for name in ACTIONS}
        handlers = {
            "Upgrade": self._upgrade, "Downgrade": self._downgrade, "Stamp": self._ask_stamp,
            "Delete": self._ask_delete, "Refresh": self._refresh_clicked, "New revision": self._new_revision,
        }
        for name, handler in handlers.items():
            self.buttons[name].on_click(handler)
        self.question = w.Label()
        self.confirm = _button("Confirm", "danger", "Run the command asked about")
        self.cancel = _button("Cancel", "", "Change nothing")
        self.confirm.on_click(self._confirmed)
        self.cancel.on_click(self._cancelled)
        self.confirmation = w.HBox([self.question, self.confirm, self.cancel],
                                   layout=w.Layout(display="none", align_items="center"))

    def _layout(self) -> tuple[w.Widget, ...]:
        """Header, two rows of controls, the confirmation row, progress, output, then the tabs."""
        b = self.buttons
        row = w.Layout(flex_flow="row wrap", align_items="center")
        return (
            self.status,
            w.HBox([self.picker, b["Upgrade"], b["Downgrade"], b["Stamp"], b["Delete"], b["Refresh"]],
                   layout=row),
            w.HBox([self.message, b["New revision"]], layout=row),
            self.confirmation,
            w.HBox([self.progress, self.step], layout=row),
            self.output,
            self.tabs,
        )

    # ---------------------------------------------------------------- reading

    def refresh(self) -> None:
        """Re-read everything shown from the manager (status, history, graph, picked revision, changes)."""
        self.status.value = _html_of(self.manager.status, render.status_badge_html)
        history, shown = _attempt(self.manager.history)
        self.history.value = shown
        self._set_choices(history)
        self.graph.value = shown if history is None else render.html(Graph(history.revisions, history.url))
        self._show_picked()
        self.changes.value = self._model_changes()

    def _set_choices(self, history: History | None) -> None:
        """The picker's revisions, newest first; the pick is kept while that revision exists."""
        revisions = list(history or [])
        options = [("(none picked)", NOTHING)] + [(render.revision_label(r), r.revision) for r in revisions]
        keep = self.picker.value if self.picker.value in {r.revision for r in revisions} else NOTHING
        self.picker.unobserve(self._picked, names="value")
        try:
            self.picker.options = options
            self.picker.value = keep
        finally:
            self.picker.observe(self._picked, names="value")

    def _show_picked(self) -> None:
        """The picked revision: header, operations, highlighted source and SQL."""
        rev = self.picker.value
        if rev == NOTHING:
            self.revision.value = render.note_html(
                "Pick a revision to see its operations, source and SQL. With nothing picked, "
                "Upgrade goes to head and Downgrade goes back one revision.", "No revision picked")
            return
        self.revision.value = _html_of(lambda: self.manager.show(rev))

    def _model_changes(self) -> str:
        """The models compared with the database; the manager's own words when it cannot compare."""
        try:
            return render.html(self.manager.diff())
        except NotUpToDate as error:
            return render.note_html(str(error), "Models vs database")
        except Exception as error:
            return render.error_html(_short(error))

    def _picked(self, change: dict[str, Any]) -> None:
        """A revision was picked: drop any open question, show it, switch to its tab."""
        self._dismiss()
        if not self._lock.acquire(blocking=False):
            return  # a command is running; its refresh will show the pick
        try:
            self._show_picked()
        finally:
            self._lock.release()
        if change["new"] != NOTHING:
            self.tabs.selected_index = 1

    # ---------------------------------------------------------------- actions

    def _upgrade(self, _: w.Button | None = None) -> None:
        """Upgrade to the picked revision, or to head; asks first when it would lose data."""
        target = self.picker.value or "head"
        if self._busy():
            return

        def upgrade() -> Outcome:
            return self._migrate(self.manager.upgrade, "upgrade", target)

        try:
            reason = commands.upgrade_dangers(self.manager, target)
        except MigrationError:
            reason = None  # the upgrade itself says what is wrong
        if reason:
            self._ask(f"{reason} Upgrade anyway?", upgrade)
        else:
            self._run(upgrade)

    def _downgrade(self, _: w.Button | None = None) -> None:
        """Downgrade to the picked revision, or by one revision."""
        target = self.picker.value or "-1"
        if self._busy():
            return
        note = _no_backup_note(self.manager)
        self._ask(f"Downgrade to {target}? Data in what it reverts may be lost.{note}",
                  lambda: self._migrate(self.manager.downgrade, "downgrade", target))

    def _migrate(self, command: Callable[..., Outcome], verb: str, target: str) -> Outcome:
        """One upgrade or downgrade, with the progress bar following each revision."""
        self._show_progress(verb)
        try:
            return command(target, on_step=self._stepped)
        finally:
            self._hide_progress()

    def _new_revision(self, _: w.Button | None = None) -> None:
        """Autogenerate a revision with the typed message, then pick it."""
        message = self.message.value.strip()
        if not message:
            self.output.value = render.error_html("Type a message for the new revision first.")
            return
        self._write_revision(message)

    def _write_revision(self, message: str) -> None:
        """Run the autogenerate; pick what it wrote."""
        written: list[RevisionInfo] = []
        self._run(self._revision_action(message, (), written))
        if written:
            self.message.value = ""
            self.picker.value = written[0].revision

    def _revision_action(self, message: str, renames: Sequence[str], written: list[RevisionInfo],
                         allow_drop_all: bool = False) -> Action:
        """Autogenerate; renames it could hold, or dropping every table, are asked about first."""

        def write() -> Any:
            try:
                info = self.manager.revision(message, autogenerate=True, renames=renames,
                                             allow_drop_all=allow_drop_all)
            except RenameQuestion as asked:
                if offered := clear_renames(asked.candidates):
                    self._ask(f"Write {', '.join(offered)} as rename(s), keeping the data?",
                              self._revision_action(message, offered, written))
                raise
            except DropsEveryTable as refused:
                anyway = self._revision_action(message, renames, written, allow_drop_all=True)
                raise self._ask_drop_all(refused.tables, anyway) from None
            if info is None:
                return no_changes()
            written.append(info)
            return info

        return write

    def _ask_drop_all(self, tables: list[str], write_anyway: Action) -> MigrationError:
        """An autogenerate that would drop every table: ask before writing it; the error saying why."""
        names = ", ".join(sorted(tables))
        self._ask(f"Write a revision that would drop every table of the database ({names})?", write_anyway)
        return MigrationError(
            f"Not written: this revision would drop every table of the database ({names}); no model "
            "was found in this process (define or import them, or set the metadata). "
            "Confirm writes it anyway."
        )

    def _refresh_clicked(self, _: w.Button | None = None) -> None:
        """Refresh: re-read everything, through the same guard as the commands."""
        self._run(None)

    def _ask_stamp(self, _: w.Button | None = None) -> None:
        """First step of Stamp: say what it will do and wait for Confirm."""
        rev = self.picker.value or "head"
        self._ask(f"Stamp the database at {rev} without running any migration?",
                  lambda: self.manager.stamp(rev))

    def _ask_delete(self, _: w.Button | None = None) -> None:
        """First step of Delete: say which file goes and wait for Confirm."""
        rev = self.picker.value
        if rev == NOTHING:
            self._dismiss()
            self.output.value = render.error_html("Pick the revision to delete first.")
            return
        if self._busy():
            return
        try:
            self.manager.check_deletable(rev)
        except MigrationError as error:
            self._dismiss()
            self.output.value = render.error_html(str(error))
            return
        self._ask(f"Delete the file of revision {rev}?", lambda: self.manager.delete(rev))

    def _ask(self, question: str, action: Action) -> None:
        """Show the question with Confirm and Cancel; nothing runs yet."""
        self._pending = action
        self.question.value = question
        self.confirmation.layout.display = "flex"

    def _confirmed(self, _: w.Button | None = None) -> None:
        """Confirm: run what was asked about."""
        action = self._pending
        self._dismiss()
        if action is not None:
            self._run(action)

    def _cancelled(self, _: w.Button | None = None) -> None:
        """Cancel: forget what was asked about; nothing changes."""
        self._dismiss()
        self.output.value = render.note_html("Cancelled: nothing was changed.")

    def _dismiss(self) -> None:
        """Hide the confirmation step and forget its action."""
        self._pending = None
        self.question.value = ""
        self.confirmation.layout.display = "none"

    # ---------------------------------------------------------------- running one command

    def _busy(self) -> bool:
        """Whether a command is running (it is said so): a question asks the database, so it waits."""
        if self._lock.locked():
            self.output.value = render.error_html(BUSY)
            return True
        return False

    def _run(self, action: Action | None) -> None:
        """Run one command (buttons off, one at a time), show its result or error, then re-read all."""
        if not self._lock.acquire(blocking=False):
            self.output.value = render.error_html(BUSY)
            return
        self._set_enabled(False)
        try:
            if action is not None:
                self._dismiss()
                self.output.value = _html_of(action)
            self.refresh()
        finally:
            self._set_enabled(True)
            self._lock.release()

    def _set_enabled(self, enabled: bool) -> None:
        """Turn every control on or off."""
        for control in (*self.buttons.values(), self.confirm, self.cancel, self.picker, self.message):
            control.disabled = not enabled

    def _show_progress(self, verb: str) -> None:
        """Reset and show the progress bar."""
        self.progress.value, self.progress.max = 0, 1
        self.progress.description = verb
        self.step.value = ""
        self.progress.layout.display = self.step.layout.display = None

    def _stepped(self, done: int, total: int, info: RevisionInfo) -> None:
        """One revision done (the manager's on_step callback)."""
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.step.value = f"{done}/{total}: {info.revision} {info.message}"

    def _hide_progress(self) -> None:
        """Hide the progress bar once the command is over."""
        self.progress.layout.display = self.step.layout.display = "none"


def _button(name: str, style: str | None = None, tip: str | None = None) -> w.Button:
    """A built-in button whose description is exactly NAME."""
    style = STYLES.get(name, "") if style is None else style
    return w.Button(description=name, button_style=style, tooltip=tip or TIPS.get(name, name),
                    layout=w.Layout(width="auto", min_width="6.5em"))


def _short(error: Exception) -> str:
    """The message shown for an error: a MigrationError's own, else its type and message."""
    return str(error) if isinstance(error, MigrationError) else f"{type(error).__name__}: {error}"


def _attempt(read: Action, to_html: Callable[[Any], str] = render.html) -> tuple[Any, str]:
    """Call the manager: (result, its HTML), or (None, the short error's HTML)."""
    try:
        result = read()
        return result, to_html(result)
    except Exception as error:
        return None, render.error_html(_short(error))


def _html_of(read: Action, to_html: Callable[[Any], str] = render.html) -> str:
    """Call the manager and give its result, or its error, as HTML."""
    return _attempt(read, to_html)[1]


def _no_backup_note(manager: AlembicManager) -> str:
    """Where the database cannot be backed up first, the sentence that says so."""
    try:
        note = manager.backup_note()
    except MigrationError:
        return ""
    return f" Note: {note}." if note else ""
