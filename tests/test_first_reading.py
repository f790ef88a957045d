"""A new kernel's first `%migrate history` or `status`, and `framefox-migrate history|status`, on a
plain SQLite project at its head: read with the standard library (no alembic import), and exactly
what the manager shows; anything the quick reading cannot answer is answered by the manager."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import write_revision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framefox_magic import AlembicManager
from framefox_magic.quickread import quick_history

HYPOTHESIS = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])


def project_with(project: Path, *ids: str) -> AlembicManager:
    """An initialized SQLite project with a chain of empty revisions IDS."""
    manager = AlembicManager(url=f"sqlite:///{project / 'app.db'}", metadata=sa.MetaData(),
                             project_root=project)
    manager.init()
    for rev_id in ids:
        write_revision(manager, rev_id)
    return manager


def shown(result: Any) -> tuple[str, str, str]:
    """What a user sees of a listing: its text, its rows and its HTML."""
    return repr(result), result.to_frame().to_json(date_format="iso"), result._repr_html_()


FIRST_IN_A_KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "framefox_magic")
shell.run_line_magic("config", "MigrateMagics.url = {url!r}")
seen = []
for command in {commands!r}:
    result = shell.run_line_magic("migrate", command)
    seen.append([command, "alembic" in sys.modules, repr(result), result._repr_html_()])
print(json.dumps(seen))
"""


@pytest.mark.parametrize("commands", [("history", "graph", "status", "history"), ("status", "history")])
def test_the_first_reading_in_a_new_kernel_shows_what_the_manager_shows_without_importing_alembic(
    project: Path, commands: tuple[str, ...],
) -> None:
    manager = project_with(project, "a1", "b2", "c3")
    manager.upgrade()
    code = FIRST_IN_A_KERNEL.format(url=manager.url, commands=commands)
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                          check=True, env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    fresh = AlembicManager(url=manager.url, project_root=project)
    expected = {"history": fresh.history(), "graph": fresh.graph(), "status": fresh.status()}
    assert [(command, imported) for command, imported, _, _ in seen] == [
        (command, index > 0) for index, command in enumerate(commands)]
    for command, _, text, html in seen:
        assert (text, html) == (repr(expected[command]), expected[command]._repr_html_())
    assert re.search(r"current,head +c3 " if commands[0] == "history" else "up to date", seen[0][2])


@given(
    messages=st.lists(st.text(st.characters(codec="utf-8", exclude_characters='"\\\r'), max_size=30),
                      min_size=1, max_size=6),
    dated=st.lists(st.sampled_from(["2026-03-01 10:20:30.123456", "2026-03-01T10:20:30", "yesterday",
                                    "", None]), min_size=6, max_size=6),
    blank_lines=st.integers(0, 2),
)
@HYPOTHESIS
def test_history_read_quickly_is_what_the_manager_shows_for_any_chain_of_revisions(
    messages: list[str], dated: list[str | None], blank_lines: int,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        manager = project_with(project)
        down = None
        for index, message in enumerate(messages):  # written by hand: the messages are any text
            created = "" if dated[index] is None else f"Create Date: {dated[index]}\n"
            gap = "\n" * blank_lines
            doc = f"{message}\n{gap}\nRevision ID: r{index}\nRevises: {down or ''}\n{created}"
            (project / "migrations" / "versions" / f"r{index}_step.py").write_text(
                f'"""{doc}"""\nrevision = "r{index}"\ndown_revision = {down!r}\n'
                "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n", encoding="utf-8")
            down = f"r{index}"
        manager.stamp("heads")
        quick = quick_history(manager.url, None, project)
        assert quick is not None
        assert shown(quick) == shown(AlembicManager(url=manager.url, project_root=project).history())


def _pending(manager: AlembicManager) -> None:
    manager.upgrade("a1")


def _merged(manager: AlembicManager) -> None:
    manager.revision("side", autogenerate=False, rev_id="c3", head="a1", splice=True)
    manager.merge(["b2", "c3"], "join", rev_id="d4")
    manager.upgrade("heads")


def _not_literal(manager: AlembicManager) -> None:
    manager.upgrade()
    path = Path(write_revision(manager, "c3"))
    source = path.read_text()
    assert "revision: str = 'c3'" in source
    path.write_text(source.replace("revision: str = 'c3'", "revision: str = 'c' + '3'"))
    manager.upgrade()


def _nothing_applied(manager: AlembicManager) -> None:
    sqlite3.connect(manager.url.split("///")[1]).close()


@pytest.mark.parametrize("situation", [_pending, _merged, _not_literal, _nothing_applied])
def test_history_the_quick_reading_cannot_answer_reads_as_the_manager_says(
    project: Path, cli_main: Any, situation: Any
) -> None:
    manager = project_with(project, "a1", "b2")
    situation(manager)
    assert quick_history(manager.url, None, project) is None
    expected = AlembicManager(url=manager.url, project_root=project).history()
    assert cli_main(project, manager.url, "history").stdout == repr(expected) + "\n"


def test_history_on_the_command_line_reads_as_the_manager_says_without_importing_alembic(
    project: Path,
) -> None:
    manager = project_with(project, "a1", "b2")
    manager.upgrade()
    expected = repr(AlembicManager(url=manager.url, project_root=project).history())
    probe = (
        "import contextlib, io, sys\n"
        "from framefox_magic import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    assert cli.main(['history']) == 0\n"
        "print(repr(shown.getvalue()))\n"
        "print(sorted(m for m in ('alembic', 'sqlalchemy', 'framefox_magic.manager') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True,
                          check=True, env={**os.environ, "DATABASE_URL": manager.url})
    printed, imported = done.stdout.strip().splitlines()
    assert printed == repr(expected + "\n")
    assert imported == "[]"


def test_a_kernel_named_version_table_is_read_by_the_first_history(project: Path) -> None:
    manager = project_with(project, "a1", "b2")
    manager.upgrade()
    with sa.create_engine(manager.url).begin() as connection:
        connection.exec_driver_sql("ALTER TABLE alembic_version RENAME TO old_version")
    assert quick_history(manager.url, None, project, version_table="old_version") is not None
    assert quick_history(manager.url, None, project) is None  # alembic_version is gone: the manager says so
    named = AlembicManager(url=manager.url, project_root=project)
    named.version_table = "old_version"
    assert re.search(r"current,head +b2 ", repr(named.history()))
