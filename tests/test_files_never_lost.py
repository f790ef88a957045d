"""Files are never lost: a failing command removes only what it wrote, a replaced revision always
exists somewhere, every SQLite URL form is backed up, pruning keeps other databases' backups, and
where no backup can be made the confirmation says so before anything runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import version_rows

from framefox_magic import AlembicManager
from framefox_magic.errors import ConfirmationRequired, MigrationError

OTHER_REVISION = '''"""pulled from elsewhere

Revision ID: pulled1
Revises:
Create Date: 2026-01-01 00:00:00

"""
revision = "pulled1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def manager_for(project: Path, url: str) -> AlembicManager:
    manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    return manager


def everything_under(folder: Path) -> dict[str, str]:
    """Every .py file below FOLDER (versions/ and the trash), by path, with its text."""
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*.py")
            if "__pycache__" not in p.parts}


# ---------------------------------------------------------------- a failing revision


def test_a_failing_revision_keeps_a_file_another_process_wrote_meanwhile(project, tmp_path):
    manager = manager_for(project, f"sqlite:///{tmp_path / 'app.db'}")
    versions = project / "migrations" / "versions"
    template = project / "migrations" / "script.py.mako"
    # the new revision fails when alembic loads it, after another process wrote a file next to it
    writer = f"open({str(versions / 'pulled1_from_elsewhere.py')!r}, 'w').write({OTHER_REVISION!r})"
    template.write_text(template.read_text() + textwrap.dedent(f"""
        import subprocess as _subprocess, sys as _sys
        _subprocess.run([_sys.executable, "-c", {writer!r}], check=True)
        raise RuntimeError("broken template")
        """))

    with pytest.raises(MigrationError, match="broken template"):
        manager.revision("mine", autogenerate=False, rev_id="mine1")

    assert (versions / "pulled1_from_elsewhere.py").read_text() == OTHER_REVISION
    assert not list(versions.glob("mine1_*.py"))
    assert list((project / "migrations" / ".trash").glob("*/mine1_*.py")), "not kept in the trash"


def test_a_crash_while_a_revision_is_replaced_loses_neither_version(project, tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    manager = manager_for(project, url)
    manager.revision("cell", autogenerate=False, rev_id="r1", upgrade_body="# first version\npass")
    crash = f"""
import os
import sqlalchemy as sa
from alembic.script.base import ScriptDirectory
from framefox_magic import AlembicManager
ScriptDirectory.generate_revision = lambda *a, **k: os._exit(3)  # killed while writing
AlembicManager(url={url!r}, metadata=sa.MetaData(), project_root={str(project)!r}).revision(
    "cell", autogenerate=False, upgrade_body="# second version\\npass", replace="r1")
"""
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr

    texts = everything_under(project / "migrations").values()
    assert any("# first version" in text for text in texts), "the first version is gone"


def test_a_replaced_revision_is_in_the_trash_and_comes_back_when_writing_fails(project, tmp_path):
    manager = manager_for(project, f"sqlite:///{tmp_path / 'app.db'}")
    manager.revision("cell", autogenerate=False, rev_id="r1", upgrade_body="# first version\npass")
    versions = project / "migrations" / "versions"

    manager.revision("cell", autogenerate=False, upgrade_body="# second version\npass", replace="r1")
    assert ["# second version" in p.read_text() for p in versions.glob("*.py")] == [True]
    trashed = list((project / "migrations" / ".trash").glob("*/r1_*.py"))
    assert any("# first version" in p.read_text() for p in trashed)

    with pytest.raises(MigrationError):
        manager.revision("cell", autogenerate=False, upgrade_body="nope(", replace="r1")
    assert ["# second version" in p.read_text() for p in versions.glob("*.py")] == [True]


# ---------------------------------------------------------------- backups


def three_steps(manager: AlembicManager) -> None:
    for rev in ("r1", "r2"):
        manager.revision(f"step {rev}", autogenerate=False, rev_id=rev,
                         upgrade_body=f"op.create_table('t_{rev}', sa.Column('id', sa.Integer))",
                         downgrade_body=f"op.drop_table('t_{rev}')")
    manager.upgrade()


def test_a_sqlite_url_in_uri_form_gets_its_backup(project, tmp_path):
    database = tmp_path / "app.db"
    url = f"sqlite:///file:{database}?mode=rwc&uri=true"
    manager = manager_for(project, url)
    three_steps(manager)

    done = manager.downgrade("base")

    assert done.backup, "no backup reported"
    assert Path(done.backup).parent == tmp_path / ".backups"
    assert version_rows(f"sqlite:///{done.backup}") == ["r2"]
    assert version_rows(f"sqlite:///{database}") == []


def test_pruning_keeps_a_sibling_databases_backups_and_the_one_just_made(project, tmp_path):
    backups = tmp_path / ".backups"
    backups.mkdir()
    siblings = {backups / f"app-old-20250101-0000{i:02d}-000000.db" for i in range(20)}
    for path in siblings:
        path.write_bytes(b"a backup of app-old.db")
    manager = manager_for(project, f"sqlite:///{tmp_path / 'app.db'}")
    three_steps(manager)

    done = manager.downgrade("-1")

    assert Path(done.backup).is_file(), "the backup it reported was pruned"
    assert siblings <= set(backups.iterdir()), "another database's backups were removed"


def test_pruning_keeps_the_newest_backups_of_this_database(project, tmp_path):
    backups = tmp_path / ".backups"
    backups.mkdir()
    own = [backups / f"app-20250101-0000{i:02d}-000000.db" for i in range(25)]
    for path in own:
        path.write_bytes(b"an old backup of app.db")
    manager = manager_for(project, f"sqlite:///{tmp_path / 'app.db'}")
    three_steps(manager)

    done = manager.downgrade("-1")

    left = sorted(p for p in backups.iterdir() if p.name.startswith("app-"))
    assert len(left) == 20 and Path(done.backup) in left
    assert own[-19:] == [p for p in left if p != Path(done.backup)]


# ---------------------------------------------------------------- no backup: said before it runs


def no_backup_urls(backend: str, db_url: str) -> str:
    return "sqlite:///:memory:" if backend == "sqlite" else db_url


@pytest.mark.parametrize("line", ["downgrade base", "clear-history", "reset", "stamp r1 --purge"])
def test_the_confirmation_says_where_no_backup_can_be_made(line, backend, db_url, shell, project):
    from IPython.core.error import UsageError

    url = no_backup_urls(backend, db_url)
    shell.run_line_magic("migrate", f"init --url {url}")
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("migrate", line)
    message = str(caught.value)
    assert "--yes" in message and "no backup" in message, message
    assert "Nothing was changed" in message


def test_a_file_database_says_nothing_about_missing_backups(project, tmp_path):
    from framefox_magic import commands

    manager = manager_for(project, f"sqlite:///{tmp_path / 'app.db'}")
    with pytest.raises(ConfirmationRequired) as caught:
        commands.execute(manager, commands.parse("downgrade base"), ui=None)
    assert "backup" not in str(caught.value)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_downgrade_without_backup_warns_in_its_result(backend, db_url, project):
    manager = manager_for(project, db_url)
    three_steps(manager)
    done = manager.downgrade("base")
    assert any("No backup was taken" in w for w in done.warnings), done.warnings


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_the_panel_asks_before_a_downgrade_and_says_no_backup_is_made(backend, db_url, project):
    from framefox_magic.widgets import MigrationPanel

    manager = manager_for(project, db_url)
    three_steps(manager)
    panel = MigrationPanel(manager)

    panel.buttons["Downgrade"].click()

    assert panel.confirmation.layout.display == "flex"
    assert "no backup" in panel.question.value
    assert version_rows(db_url) == ["r2"]
    panel.confirm.click()
    assert version_rows(db_url) == ["r1"]

