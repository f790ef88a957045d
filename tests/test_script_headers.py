"""Revision files are listed from their headers: a file runs only when its upgrade() or downgrade()
does, an edited file is seen by the next command, and an unchanged folder is not read again."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import table_names, version_rows

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


def revision_file(rev: str, down: str | None, message: str, marker: Path, labels: str = "None",
                  at_import: str = "") -> str:
    """A revision that creates table `t_<rev>` and records each import of its file in `marker`."""
    return f'''"""{message}

Revision ID: {rev}
Revises: {down or ""}
"""
import sqlalchemy as sa
from alembic import op

with open({str(marker)!r}, "a") as imported:
    imported.write("{rev}\\n")
{at_import}
revision = "{rev}"
down_revision = {down!r}
branch_labels = {labels}
depends_on = None


def upgrade():
    op.create_table("t_{rev}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("t_{rev}")
'''


class Project:
    """A project made by `init`, its revision files written by hand as a developer would."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        self.marker = root.parent / "imports.txt"
        self.manager = AlembicManager(url=url, project_root=root)
        self.manager.init()
        self.versions = root / "migrations" / "versions"

    def write(self, name: str, rev: str, down: str | None, message: str, **options: str) -> Path:
        path = self.versions / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(revision_file(rev, down, message, self.marker, **options), encoding="utf-8")
        return path

    def imports(self) -> list[str]:
        """The revision files imported so far, in order."""
        return self.marker.read_text().split() if self.marker.exists() else []


@pytest.fixture
def made(project: Path, db_url: str) -> Project:
    return Project(project, db_url)


@sqlite_only
def test_listing_revisions_runs_none_of_their_files(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team")

    heads, current = made.manager.heads(), made.manager.current()

    assert [(info.revision, info.message, info.parents) for info in heads] == [("b2", "create team", ("a1",))]
    assert current.ids == ()
    assert made.imports() == []


@sqlite_only
def test_history_of_applied_revisions_runs_none_of_their_files(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team")
    made.manager.upgrade()
    made.marker.unlink()

    history = AlembicManager(url=made.url, project_root=made.root).history()

    assert history.ids == ("b2", "a1") and [info.applied for info in history] == [True, True]
    assert [info.message for info in history] == ["create team", "create hero"]
    assert made.imports() == []


@sqlite_only
def test_a_file_that_raises_at_import_is_still_listed(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_broken.py", "b2", "a1", "needs a missing package",
               at_import="import not_installed_anywhere")

    history = made.manager.history()

    assert history.ids == ("b2", "a1") and history.notes == []
    assert history[0].message == "needs a missing package"
    with pytest.raises(MigrationError):
        made.manager.upgrade()
    assert "t_b2" not in table_names(made.url)


def test_a_file_is_imported_when_its_upgrade_first_runs_and_only_then(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team")
    made.manager.heads()
    assert made.imports() == []

    made.manager.upgrade("a1")
    assert made.imports() == ["a1"]
    made.manager.upgrade()
    assert made.imports() == ["a1", "b2"]
    assert version_rows(made.url) == ["b2"] and {"t_a1", "t_b2"} <= table_names(made.url)
    made.manager.downgrade("a1")

    assert made.imports() == ["a1", "b2"]
    assert version_rows(made.url) == ["a1"] and "t_b2" not in table_names(made.url)


@sqlite_only
def test_an_edited_or_added_file_is_seen_by_the_next_command(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    assert [info.message for info in made.manager.history()] == ["create hero"]

    made.write("a1_hero.py", "a1", None, "create the hero table")
    made.write("b2_team.py", "b2", "a1", "create team")

    assert [info.message for info in made.manager.history()] == ["create team", "create the hero table"]


@sqlite_only
def test_a_non_literal_header_is_imported_alone_and_an_unchanged_folder_is_not_read_again(
        made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team", labels='tuple(["teams"])')

    heads = made.manager.heads()
    made.manager.heads()
    made.manager.current()

    assert [(info.revision, info.branch_labels) for info in heads] == [("b2", ("teams",))]
    assert made.imports() == ["b2"]
    made.write("c3_power.py", "c3", "b2", "add power")
    assert made.manager.heads().ids == ("c3",)
    assert made.imports() == ["b2", "b2"]


@sqlite_only
def test_a_non_literal_header_that_fails_to_import_is_listed_with_a_note(made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team", labels='tuple(["teams"])',
               at_import="import not_installed_anywhere")

    history = made.manager.history()

    assert history.ids == ("b2", "a1") and history[0].branch_labels == ()
    assert history.notes == ["migrations/versions/b2_team.py: its branch labels or dependencies are not "
                             "literal and importing it failed (ModuleNotFoundError: No module named "
                             "'not_installed_anywhere'); listed without them"]


def test_recursive_version_locations_are_listed_and_run(made: Project) -> None:
    ini = made.root / "alembic.ini"
    ini.write_text(ini.read_text() + "version_locations = %(here)s/migrations/versions\n"
                   "recursive_version_locations = true\n", encoding="utf-8")
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("billing/2024/b2_invoice.py", "b2", "a1", "create invoice")
    made.write("billing/__init__.py", "zz", None, "not a revision")

    assert made.manager.heads().ids == ("b2",) and made.manager.history().ids == ("b2", "a1")
    made.manager.upgrade()

    assert version_rows(made.url) == ["b2"] and "t_b2" in table_names(made.url)


def test_every_option_alembic_reads_from_the_config_is_kept(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from framefox_magic.scripts import CachedScriptDirectory

    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = %(here)s/migrations\nfile_template = %%(rev)s\n"
        "truncate_slug_length = 20\noutput_encoding = latin-1\ntimezone = UTC\n"
        "version_locations = %(here)s/migrations/versions\nrecursive_version_locations = true\n"
        "path_separator = os\n\n[post_write_hooks]\nhooks = lint\nlint.type = exec\n"
        "lint.executable = true\n", encoding="utf-8")
    config = Config(str(ini))

    ours, alembics = CachedScriptDirectory.from_config(config), ScriptDirectory.from_config(config)

    kept = {name: value for name, value in vars(alembics).items() if name != "revision_map"}
    assert {name: getattr(ours, name) for name in kept} == kept
    assert ours.truncate_slug_length == 20 and ours.recursive_version_locations
