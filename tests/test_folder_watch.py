"""A warm command knows the revision folders did not change from the kernel's change notification
(inotify, on local Linux filesystems) instead of looking at each file; every change to them is seen
by the next command, and where notification would not be exact, the folders are scanned as before."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_script_headers import Project, revision_file

from framefox_magic import AlembicManager, watching

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])
# the kernel reports changes where the tests' files live (ext4, tmpfs, ... on Linux): the warm path
# under test is the watch; elsewhere the same behaviour comes from the scan
WATCHABLE = sys.platform.startswith("linux") and (
    watching.filesystem_type(tempfile.gettempdir()) in watching.LOCAL_FILESYSTEMS)


def watched(made: Project) -> bool:
    return made.manager._scripts is not None and made.manager._scripts.watching


def messages(made: Project) -> list[str]:
    return [info.message for info in made.manager.history()]


@pytest.fixture
def made(project: Path, db_url: str) -> Project:
    return Project(project, db_url)


@pytest.fixture
def two(made: Project) -> Project:
    made.write("a1_hero.py", "a1", None, "create hero")
    made.write("b2_team.py", "b2", "a1", "create team")
    assert messages(made) == ["create team", "create hero"]
    assert watched(made) == WATCHABLE
    return made


@sqlite_only
def test_a_file_edited_in_place_is_seen_even_with_its_size_and_time_stamp_kept(two: Project) -> None:
    path = two.versions / "b2_team.py"
    before = path.stat()
    with open(path, "r+b") as file:  # the same inode, the same size: only the words change
        source = file.read()
        file.seek(0)
        file.write(source.replace(b"create team", b"create crew"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same time stamp

    if WATCHABLE:  # a folder scan cannot see this edit; the kernel reports it
        assert messages(two) == ["create crew", "create hero"]
    path.write_text(path.read_text().replace("create crew", "create a team"))
    assert messages(two) == ["create a team", "create hero"]
    assert watched(two) == WATCHABLE


@sqlite_only
def test_a_file_touched_then_rewritten_with_the_same_size_is_seen(two: Project) -> None:
    path = two.versions / "a1_hero.py"
    path.touch()
    assert messages(two) == ["create team", "create hero"]
    path.write_text(path.read_text().replace("create hero", "create hera"))

    assert two.manager.history()[-1].message == "create hera"


@sqlite_only
def test_added_removed_and_renamed_files_are_seen(two: Project) -> None:
    two.write("c3_power.py", "c3", "b2", "add power")
    assert two.manager.heads().ids == ("c3",)

    (two.versions / "c3_power.py").rename(two.versions / "c3_power.py.bak")
    assert two.manager.heads().ids == ("b2",)
    (two.versions / "c3_power.py.bak").rename(two.versions / "c3_more_power.py")
    assert two.manager.heads().ids == ("c3",)
    (two.versions / "c3_more_power.py").unlink()
    assert two.manager.heads().ids == ("b2",) and watched(two) == WATCHABLE


@sqlite_only
def test_a_file_written_by_another_process_is_seen(two: Project) -> None:
    source = revision_file("c3", "b2", "add power", two.marker)
    target = two.versions / "c3_power.py"
    write = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    subprocess.run([sys.executable, "-c", write, str(target), source], check=True)

    assert two.manager.heads().ids == ("c3",)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
@sqlite_only
def test_a_forked_child_leaves_the_change_notices_to_its_parent(two: Project) -> None:
    two.write("c3_power.py", "c3", "b2", "add power")
    child = os.fork()
    if child == 0:  # the child reads the history too, then leaves at once
        code = 0 if two.manager.heads().ids == ("c3",) else 1
        os._exit(code)
    assert os.waitpid(child, 0)[1] == 0

    assert two.manager.heads().ids == ("c3",)


@sqlite_only
def test_a_migrations_folder_replaced_under_the_same_name_is_seen(two: Project) -> None:
    migrations = two.versions.parent
    migrations.rename(migrations.with_name("old_migrations"))  # no event inside versions/ itself
    shutil.copytree(migrations.with_name("old_migrations"), migrations)
    (two.versions / "b2_team.py").unlink()

    assert messages(two) == ["create hero"]


@sqlite_only
def test_the_magic_shows_a_revision_added_after_a_warm_status(two: Project, shell, monkeypatch) -> None:
    shell.run_line_magic("config", f"MigrateMagics.url = {two.url!r}")
    assert shell.run_line_magic("migrate", "status").heads == ("b2",)
    assert shell.run_line_magic("migrate", "status").heads == ("b2",)
    two.write("c3_power.py", "c3", "b2", "add power")

    assert shell.run_line_magic("migrate", "status").heads == ("c3",)
    history = shell.run_line_magic("migrate", "history")
    assert [row.revision for row in history.revisions] == ["c3", "b2", "a1"]


def with_settings(made: Project, *lines: str) -> None:
    ini = made.root / "alembic.ini"
    ini.write_text(ini.read_text() + "".join(f"{line}\n" for line in lines), encoding="utf-8")


@sqlite_only
def test_a_new_subfolder_and_a_file_in_it_are_seen_with_recursive_locations(made: Project) -> None:
    with_settings(made, "version_locations = %(here)s/migrations/versions",
                  "recursive_version_locations = true")
    made.write("a1_hero.py", "a1", None, "create hero")
    assert messages(made) == ["create hero"]

    made.write("billing/2024/b2_invoice.py", "b2", "a1", "create invoice")
    assert messages(made) == ["create invoice", "create hero"]
    made.write("billing/2024/b2_invoice.py", "b2", "a1", "create the invoice")  # watched since
    assert messages(made) == ["create the invoice", "create hero"]
    (made.versions / "billing").rename(made.versions / "billing_old")  # still inside the folder
    (made.versions / "billing_old" / "2024" / "b2_invoice.py").unlink()
    assert messages(made) == ["create hero"] and watched(made) == WATCHABLE


@sqlite_only
def test_several_version_locations_are_each_watched(made: Project) -> None:
    other = made.root / "more_versions"
    other.mkdir()
    with_settings(made, f"version_locations = %(here)s/migrations/versions{os.pathsep}%(here)s/more_versions")
    made.write("a1_hero.py", "a1", None, "create hero")
    assert messages(made) == ["create hero"]

    (other / "b2_team.py").write_text(revision_file("b2", "a1", "create team", made.marker))
    assert messages(made) == ["create team", "create hero"] and watched(made) == WATCHABLE


@sqlite_only
def test_a_symlinked_revision_file_is_scanned_and_its_edits_are_seen(two: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared" / "c3_power.py"
    elsewhere.parent.mkdir()
    elsewhere.write_text(revision_file("c3", "b2", "add power", two.marker))
    (two.versions / "c3_power.py").symlink_to(elsewhere)
    assert messages(two)[0] == "add power"
    assert not watched(two)  # an edit to the target would not be reported in this folder

    elsewhere.write_text(revision_file("c3", "b2", "add more power", two.marker))
    assert messages(two)[0] == "add more power"


@sqlite_only
def test_on_a_filesystem_without_exact_notification_the_folder_is_scanned(
        made: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "LOCAL_FILESYSTEMS", frozenset())  # as on NFS, CIFS, FUSE, 9p
    made.write("a1_hero.py", "a1", None, "create hero")
    assert messages(made) == ["create hero"] and not watched(made)

    made.write("a1_hero.py", "a1", None, "create the hero")
    made.write("b2_team.py", "b2", "a1", "create team")
    assert messages(made) == ["create team", "create the hero"]


def open_descriptors() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@sqlite_only
def test_managers_that_go_away_or_are_disposed_leave_no_descriptor_open(project: Path, db_url: str) -> None:
    first = AlembicManager(url=db_url, project_root=project)
    first.init()
    before = open_descriptors()
    for _ in range(200):  # more than the kernel's default 128 inotify instances per user
        manager = AlembicManager(url=db_url, project_root=project)
        manager.history()
        del manager
    assert open_descriptors() == before

    manager = AlembicManager(url=db_url, project_root=project)
    manager.history()
    assert manager._scripts.watching == WATCHABLE
    manager.dispose()
    assert open_descriptors() == before and not manager._scripts.watching


@sqlite_only
def test_bytecode_and_other_files_beside_the_revisions_do_not_make_the_folder_read_again(
        made: Project) -> None:
    made.write("a1_hero.py", "a1", None, "create hero", labels='tuple(["heroes"])')  # imported to read
    assert messages(made) == ["create hero"] and made.imports() == ["a1"]

    (made.versions / "__pycache__").mkdir(exist_ok=True)  # what importing a revision leaves
    (made.versions / "__pycache__" / "a1_hero.cpython-311.pyc").write_bytes(b"")
    (made.versions / "NOTES.txt").write_text("ask before squashing\n")
    (made.versions / ".#a1_hero.py").write_text("")  # an editor's lock file

    assert messages(made) == ["create hero"] and made.imports() == ["a1"]
    made.write("a1_hero.py", "a1", None, "create the hero table", labels='tuple(["heroes"])')
    assert messages(made) == ["create the hero table"] and made.imports() == ["a1", "a1"]
