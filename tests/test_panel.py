"""MigrationPanel from Python: buttons clicked, the database and the shown widgets checked."""

from __future__ import annotations

import html
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import pytest
import sqlalchemy as sa
from conftest import table_names, version_rows
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic.manager import AlembicManager
from framefox_magic.widgets import ACTIONS, BUSY, MigrationPanel

HERO = ("op.create_table('hero', sa.Column('id', sa.Integer(), primary_key=True), "
        "sa.Column('name', sa.String(50)))")
TEAM = "op.create_table('team', sa.Column('id', sa.Integer(), primary_key=True))"


@dataclass
class Project:
    """A project with two unapplied revisions, and the MetaData its models match once applied."""

    root: Path
    manager: AlembicManager
    metadata: sa.MetaData
    first: str
    second: str

    @property
    def url(self) -> str:
        """The SQLite file's URL."""
        return f"sqlite:///{self.root / 'database.db'}"

    def revision_files(self) -> set[str]:
        """The revision ids that have a file in versions/."""
        return {path.name.split("_", 1)[0] for path in (self.root / "migrations" / "versions").glob("*.py")}


@pytest.fixture
def proj(project: Path) -> Project:
    """Two manual revisions (hero, then team), neither applied."""
    metadata = sa.MetaData()
    sa.Table("hero", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(50)))
    sa.Table("team", metadata, sa.Column("id", sa.Integer, primary_key=True))
    manager = AlembicManager(project_root=project, metadata=metadata)
    manager.init()
    first = manager.revision("create hero", autogenerate=False, upgrade_body=HERO,
                             downgrade_body="op.drop_table('hero')")
    second = manager.revision("create team", autogenerate=False, upgrade_body=TEAM,
                              downgrade_body="op.drop_table('team')")
    return Project(project, manager, metadata, first.revision, second.revision)


@pytest.fixture
def panel(proj: Project) -> MigrationPanel:
    """The panel over the project's manager."""
    return MigrationPanel(proj.manager)


def text(value: str) -> str:
    """What a rendered HTML value reads as: styles and tags dropped, entities decoded, spaces squeezed."""
    value = re.sub(r"<style>.*?</style>", " ", value, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", value)).split())


def click(panel: MigrationPanel, name: str) -> None:
    """Click the panel's button whose description is NAME."""
    found = [b for b in buttons(panel) if b.description == name]
    assert len(found) == 1, f"expected one {name!r} button, found {len(found)}"
    found[0].click()


def buttons(widget: widgets.Widget) -> list[widgets.Button]:
    """Every Button inside a widget tree."""
    if isinstance(widget, widgets.Button):
        return [widget]
    return [b for child in getattr(widget, "children", ()) for b in buttons(child)]


def shown(widget: widgets.Widget) -> bool:
    """Whether a widget is laid out (not display: none)."""
    return widget.layout.display != "none"


# ---------------------------------------------------------------- what it shows


def test_shows_status_history_graph_picker_and_model_changes(panel: MigrationPanel, proj: Project) -> None:
    assert sorted(b.description for b in buttons(panel)) == sorted([*ACTIONS, "Confirm", "Cancel"])
    assert "2 pending" in text(panel.status.value)
    history = text(panel.history.value)
    assert "History: 2 revisions, 0 applied" in history
    assert proj.first in history and proj.second in history
    assert "<svg" in panel.graph.value and f'data-revision="{proj.second}"' in panel.graph.value
    assert [value for _, value in panel.picker.options] == ["", proj.second, proj.first]
    assert "No revision picked" in text(panel.revision.value)
    assert "written but not applied yet" in text(panel.changes.value)
    assert panel.output.value == ""
    assert not shown(panel.confirmation) and not shown(panel.progress)


def test_picking_a_revision_shows_its_diff_source_and_sql(panel: MigrationPanel, proj: Project) -> None:
    panel.picker.value = proj.first
    shown_text = text(panel.revision.value)
    assert f"upgrade of {proj.first}" in shown_text and "create_table" in shown_text
    code = html.unescape(re.sub(r"<[^>]+>", "", panel.revision.value))  # highlighted: tokens in spans
    assert "Source" in shown_text and "op.create_table('hero'" in code
    assert "SQL (sqlite)" in shown_text and "CREATE TABLE hero" in code
    assert 'class="hl"' in panel.revision.value  # highlighted
    assert panel.tabs.selected_index == 1


# ---------------------------------------------------------------- upgrade and downgrade


def test_upgrade_applies_everything_with_progress(panel: MigrationPanel, proj: Project) -> None:
    before = (panel.status.value, panel.history.value, panel.graph.value)
    steps: list[tuple[int, int]] = []
    panel.progress.observe(lambda change: steps.append((change["new"], panel.progress.max)), names="value")
    click(panel, "Upgrade")
    assert {"hero", "team"} <= table_names(proj.url)
    assert version_rows(proj.url) == [proj.second]
    assert steps == [(1, 2), (2, 2)]
    assert not shown(panel.progress)
    assert "Upgraded 2 revisions" in text(panel.output.value)
    assert "up to date" in text(panel.status.value)
    assert "History: 2 revisions, 2 applied" in text(panel.history.value)
    assert (panel.status.value, panel.history.value, panel.graph.value) != before
    assert "No schema changes" in text(panel.changes.value)
    assert all(not b.disabled for b in buttons(panel))


def test_upgrade_to_the_picked_revision(panel: MigrationPanel, proj: Project) -> None:
    panel.picker.value = proj.first
    click(panel, "Upgrade")
    assert "hero" in table_names(proj.url) and "team" not in table_names(proj.url)
    assert "1 pending" in text(panel.status.value)
    assert panel.picker.value == proj.first  # the pick survives the refresh


def test_downgrade_goes_back_one_or_to_the_picked_revision(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Upgrade")
    click(panel, "Downgrade")
    assert shown(panel.confirmation) and "-1" in panel.question.value
    assert version_rows(proj.url) == [proj.second]  # nothing runs before Confirm
    click(panel, "Confirm")
    assert version_rows(proj.url) == [proj.first]
    assert "team" not in table_names(proj.url)
    assert "1 pending" in text(panel.status.value)
    click(panel, "Upgrade")
    panel.picker.value = proj.first
    click(panel, "Downgrade")
    click(panel, "Confirm")
    assert version_rows(proj.url) == [proj.first]


def test_downgrade_at_base_asks_then_says_there_is_nothing_to_downgrade(panel: MigrationPanel,
                                                                       proj: Project) -> None:
    click(panel, "Downgrade")
    click(panel, "Confirm")
    shown_text = text(panel.output.value)
    assert "Nothing to downgrade: the database is at base (no revision)." in shown_text
    assert "error" not in shown_text
    assert version_rows(proj.url) == []
    assert all(not b.disabled for b in buttons(panel))


def test_an_unexpected_exception_is_shown_with_its_type(panel: MigrationPanel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(panel.manager, "upgrade", broken)
    click(panel, "Upgrade")
    assert "error RuntimeError: the disk caught fire" in text(panel.output.value)
    assert all(not b.disabled for b in buttons(panel))


# ---------------------------------------------------------------- the confirmation step


def test_delete_asks_first_and_cancel_keeps_the_file(panel: MigrationPanel, proj: Project) -> None:
    panel.picker.value = proj.second
    click(panel, "Delete")
    assert shown(panel.confirmation) and proj.second in panel.question.value
    assert proj.second in proj.revision_files()
    click(panel, "Cancel")
    assert not shown(panel.confirmation)
    assert proj.second in proj.revision_files()
    assert "nothing was changed" in text(panel.output.value)
    click(panel, "Confirm")  # nothing is pending any more
    assert proj.second in proj.revision_files()


def test_delete_confirmed_removes_the_file(panel: MigrationPanel, proj: Project) -> None:
    panel.picker.value = proj.second
    click(panel, "Delete")
    click(panel, "Confirm")
    assert proj.revision_files() == {proj.first}
    assert f"Deleted revision {proj.second}" in text(panel.output.value)
    assert proj.second not in text(panel.history.value)
    assert [value for _, value in panel.picker.options] == ["", proj.first]
    assert panel.picker.value == ""
    assert "1 pending" in text(panel.status.value)


def test_delete_with_nothing_picked_says_so(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Delete")
    assert not shown(panel.confirmation)
    assert "Pick the revision to delete first" in text(panel.output.value)
    assert proj.revision_files() == {proj.first, proj.second}


def test_deleting_an_applied_revision_shows_the_error(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Upgrade")
    panel.picker.value = proj.first
    click(panel, "Delete")
    click(panel, "Confirm")
    shown_text = text(panel.output.value)
    assert shown_text.startswith("error Refusing to delete") and "applied" in shown_text
    assert proj.revision_files() == {proj.first, proj.second}


def test_stamp_asks_first_and_only_confirm_stamps(panel: MigrationPanel, proj: Project) -> None:
    panel.picker.value = proj.first
    click(panel, "Stamp")
    assert shown(panel.confirmation) and proj.first in panel.question.value
    assert version_rows(proj.url) == []
    click(panel, "Cancel")
    assert version_rows(proj.url) == []
    click(panel, "Stamp")
    click(panel, "Confirm")
    assert version_rows(proj.url) == [proj.first]
    assert "hero" not in table_names(proj.url)  # stamped, not migrated
    assert "1 pending" in text(panel.status.value)
    assert not shown(panel.confirmation)


def test_stamp_with_nothing_picked_stamps_head(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Stamp")
    assert "head" in panel.question.value
    click(panel, "Confirm")
    assert version_rows(proj.url) == [proj.second]


def test_another_action_drops_the_open_question(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Stamp")
    click(panel, "Upgrade")
    assert not shown(panel.confirmation)
    click(panel, "Confirm")
    assert version_rows(proj.url) == [proj.second]
    assert "Upgraded 2" in text(panel.output.value)


# ---------------------------------------------------------------- new revisions


def test_new_revision_with_a_message(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "Upgrade")
    sa.Table("villain", proj.metadata, sa.Column("id", sa.Integer, primary_key=True))
    panel.changes.value = ""
    click(panel, "Refresh")
    assert "create_table villain" in text(panel.changes.value)
    panel.message.value = "add villain"
    click(panel, "New revision")
    new = proj.revision_files() - {proj.first, proj.second}
    assert len(new) == 1
    (revision,) = new
    assert "add villain" in text(panel.output.value)
    assert panel.picker.value == revision and panel.message.value == ""
    assert "add villain" in text(panel.history.value)
    assert "1 pending" in text(panel.status.value)
    assert "create_table" in text(panel.revision.value)


def test_new_revision_needs_a_message_and_a_change(panel: MigrationPanel, proj: Project) -> None:
    click(panel, "New revision")
    assert "Type a message" in text(panel.output.value)
    panel.message.value = "too early"
    click(panel, "New revision")
    assert "written but not applied yet" in text(panel.output.value)
    click(panel, "Upgrade")
    panel.message.value = "nothing to do"
    click(panel, "New revision")
    assert "No changes detected" in text(panel.output.value)
    assert proj.revision_files() == {proj.first, proj.second}


# ---------------------------------------------------------------- staying true


def test_refresh_shows_what_was_done_elsewhere(panel: MigrationPanel, proj: Project) -> None:
    AlembicManager(project_root=proj.root).upgrade()  # as a %migrate cell would
    assert "2 pending" in text(panel.status.value)
    click(panel, "Refresh")
    assert "up to date" in text(panel.status.value)
    assert "2 applied" in text(panel.history.value)


def test_no_second_command_while_one_runs(panel: MigrationPanel, proj: Project) -> None:
    seen: list[tuple[bool, str]] = []

    def meanwhile(change: dict) -> None:
        if change["new"] != 1:
            return
        seen.append((all(b.disabled for b in panel.buttons.values()), ""))
        other = threading.Thread(target=panel.buttons["Upgrade"].click)
        other.start()
        other.join(timeout=30)
        seen.append((not other.is_alive(), text(panel.output.value)))
        panel.buttons["Refresh"].click()  # and from this thread too
        seen.append((True, text(panel.output.value)))

    panel.progress.observe(meanwhile, names="value")
    click(panel, "Upgrade")
    assert seen[0][0], "the buttons are disabled while a command runs"
    assert seen[1] == (True, f"error {BUSY}")
    assert seen[2] == (True, f"error {BUSY}")
    assert version_rows(proj.url) == [proj.second]
    assert "Upgraded 2" in text(panel.output.value)
    assert all(not b.disabled for b in buttons(panel))


def test_an_uninitialized_project_shows_what_to_do(project: Path) -> None:
    panel = MigrationPanel(AlembicManager(project_root=project, metadata=sa.MetaData()))
    assert "run `init` first" in text(panel.status.value)
    click(panel, "Upgrade")
    assert "run `init` first" in text(panel.output.value)


# ---------------------------------------------------------------- %migrate panel


def test_migrate_panel_magic(shell: InteractiveShell, proj: Project) -> None:
    panel = shell.run_line_magic("migrate", "panel")
    assert isinstance(panel, MigrationPanel)
    assert "2 pending" in text(panel.status.value)
    click(panel, "Upgrade")
    assert {"hero", "team"} <= table_names(proj.url)
    shell.run_line_magic("migrate", "downgrade base --yes")
    click(panel, "Refresh")
    assert "2 pending" in text(panel.status.value)


def test_a_revision_that_would_drop_every_table_asks_and_only_confirm_writes_it(project: Path) -> None:
    manager = AlembicManager(project_root=project, metadata=sa.MetaData())  # the models were not found
    manager.init()
    manager.revision("create hero", autogenerate=False, upgrade_body=HERO,
                     downgrade_body="op.drop_table('hero')")
    manager.upgrade()
    panel = MigrationPanel(manager)
    files = set((project / "migrations" / "versions").glob("*.py"))

    panel.message.value = "oops"
    click(panel, "New revision")
    assert shown(panel.confirmation)
    assert "drop every table" in panel.question.value and "hero" in panel.question.value
    assert "--yes" not in text(panel.output.value) + panel.question.value
    click(panel, "Cancel")
    assert set((project / "migrations" / "versions").glob("*.py")) == files

    click(panel, "New revision")
    click(panel, "Confirm")
    [written] = set((project / "migrations" / "versions").glob("*.py")) - files
    assert "op.drop_table('hero')" in written.read_text()
