"""The magics in a terminal IPython (`ipython` at a shell prompt), as its user types them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import version_rows


def ipython_session(project: Path, *lines: str) -> subprocess.CompletedProcess[str]:
    """Type the lines into a terminal IPython in the project folder; what it printed."""
    typed = "\n".join([*lines, "exit", ""])
    command = [sys.executable, "-m", "IPython", "--no-banner", "--simple-prompt", "--colors=NoColor"]
    return subprocess.run(command, cwd=project, input=typed, capture_output=True, text=True, timeout=120)


def test_upgrade_in_a_terminal_shows_progress_as_text_not_html_objects(project: Path) -> None:
    done = ipython_session(
        project,
        "%load_ext framefox_magic",
        "%migrate init",
        "%migrate revision -m one",
        "%migrate revision -m two",
        "%migrate upgrade",
    )
    shown = done.stdout + done.stderr
    assert "IPython.core.display.HTML object" not in shown
    assert "upgrade 1/2" in shown and "upgrade 2/2" in shown
    assert "Upgraded 2 revisions" in shown
    assert len(version_rows(f"sqlite:///{project / 'database.db'}")) == 1
