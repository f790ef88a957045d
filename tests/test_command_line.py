"""`framefox-migrate` as a shell user runs it: piped into other tools, and `status` answered quickly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import CLI, write_revision

from framefox_magic import AlembicManager
from framefox_magic.quickread import quick_status


def project_with(project: Path, *ids: str) -> AlembicManager:
    """An initialized SQLite project with a chain of empty revisions IDS."""
    url = f"sqlite:///{project / 'app.db'}"
    manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    for rev_id in ids:
        write_revision(manager, rev_id)
    return manager


def test_history_piped_into_head_prints_no_broken_pipe_traceback(project: Path) -> None:
    project_with(project, "a1", "b2")
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "framefox_magic.cli"]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{project / 'app.db'}"}
    # `| head` closes the pipe early: the reader is gone before the listing is printed
    process = subprocess.Popen([*command, "history"], cwd=project, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # type: ignore[union-attr]
    error = process.stderr.read()  # type: ignore[union-attr]
    process.wait(timeout=120)
    assert "Traceback" not in error and "BrokenPipeError" not in error, error


def test_status_at_head_on_sqlite_reads_as_the_manager_says_without_importing_alembic(
    project: Path, cli_main: Any
) -> None:
    manager = project_with(project, "a1", "b2")
    manager.upgrade()
    url = f"sqlite:///{project / 'app.db'}"
    expected = repr(manager.status())
    assert "up to date" in expected
    assert repr(quick_status(url, None, project)) == expected
    assert cli_main(project, url, "status").stdout == expected + "\n"
    probe = (
        "import contextlib, io, sys\n"
        "from framefox_magic import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    assert cli.main(['status']) == 0\n"
        "print(repr(shown.getvalue()))\n"
        "print(sorted(m for m in ('alembic', 'sqlalchemy', 'framefox_magic.manager') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, check=True)
    shown, imported = done.stdout.strip().splitlines()
    assert shown == repr(expected + "\n")
    assert imported == "[]"


def _pending(manager: AlembicManager) -> None:
    manager.upgrade("a1")


def _two_heads(manager: AlembicManager) -> None:
    manager.revision("side", autogenerate=False, rev_id="c3", head="a1", splice=True)
    manager.upgrade("heads")


def _depends_on(manager: AlembicManager) -> None:
    manager.revision("needs a1", autogenerate=False, rev_id="c3", depends_on=["a1"])
    manager.upgrade()


def _labelled(manager: AlembicManager) -> None:
    manager.revision("labelled", autogenerate=False, rev_id="c3", branch_label="extra", head="base")
    manager.upgrade("heads")


def _other_version_table(manager: AlembicManager) -> None:
    manager.upgrade()
    with sa.create_engine(manager.url).begin() as connection:
        connection.exec_driver_sql("ALTER TABLE alembic_version RENAME TO old_version")


@pytest.mark.parametrize("situation", [_pending, _two_heads, _depends_on, _labelled, _other_version_table])
def test_status_the_quick_reading_cannot_answer_reads_as_the_manager_says(
    project: Path, cli_main: Any, situation: Any
) -> None:
    manager = project_with(project, "a1", "b2")
    situation(manager)
    url = f"sqlite:///{project / 'app.db'}"
    assert quick_status(url, None, project) is None
    assert cli_main(project, url, "status").stdout == repr(manager.status()) + "\n"


def test_status_never_creates_a_missing_database_file_when_read_quickly(project: Path) -> None:
    project_with(project, "a1")
    assert quick_status(f"sqlite:///{project / 'elsewhere.db'}", None, project) is None
    assert not (project / "elsewhere.db").exists()
