"""The magics in a real Jupyter kernel, executed the way "Run all" does (nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import table_names, version_rows
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERO_CELL = '''%%revision -m "create hero"
from sqlmodel import Field, SQLModel

class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
'''


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def execute(nb: nbformat.NotebookNode, folder: Path, kernel: str) -> None:
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=180, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()


def rich_output(cell: nbformat.NotebookNode) -> dict:
    [result] = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    return result.data


def test_model_cell_upgrade_and_history_in_a_kernel(python3_kernel: str, project: Path) -> None:
    nb = notebook(
        "%load_ext framefox_magic",
        "%migrate init",
        HERO_CELL,
        "%migrate upgrade",
        "%migrate history",
        "h = %migrate history\nh.to_frame()[['revision', 'message', 'applied', 'current', 'head']]",
    )
    execute(nb, project, python3_kernel)

    for cell in nb.cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
        streamed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "Traceback" not in streamed
        assert "INFO" not in streamed

    [revision_file] = (project / "migrations" / "versions").glob("*_create_hero.py")
    revision = revision_file.name.split("_", 1)[0]
    database = f"sqlite:///{project / 'database.db'}"
    assert "hero" in table_names(database)
    assert version_rows(database) == [revision]

    written = rich_output(nb.cells[2])
    assert revision in written["text/plain"]
    assert revision in written["text/html"]

    history = rich_output(nb.cells[4])
    assert revision in history["text/html"]
    assert "create hero" in history["text/html"]
    assert revision in history["text/plain"]

    frame = rich_output(nb.cells[5])
    assert revision in frame["text/html"]  # pandas renders the DataFrame as an HTML table
    assert "create hero" in frame["text/plain"]


def test_failing_migrate_cell_stops_run_all(python3_kernel: str, project: Path) -> None:
    nb = notebook(
        "%load_ext framefox_magic",
        "%migrate init",
        "%migrate upgrad",
        "print('still running')",
    )
    with pytest.raises(CellExecutionError) as raised:
        execute(nb, project, python3_kernel)

    assert "Unknown sub-command 'upgrad'. Did you mean 'upgrade'?" in str(raised.value)
    failed = nb.cells[2]
    shown = "".join(o.get("text", "") for o in failed.outputs if o.output_type == "stream")
    errors = [o for o in failed.outputs if o.output_type == "error"]
    assert "Unknown sub-command 'upgrad'" in shown + "".join(e.evalue for e in errors)
    assert "Traceback" not in shown
    assert all("Traceback" not in "".join(e.traceback) for e in errors)
    assert nb.cells[3].outputs == []
    assert (project / "migrations" / "env.py").is_file()


def test_destructive_command_without_yes_stops_run_all(python3_kernel: str, project: Path) -> None:
    nb = notebook(
        "%load_ext framefox_magic",
        "%migrate init",
        HERO_CELL,
        "%migrate upgrade",
        "%migrate downgrade base",
        "print('still running')",
    )
    with pytest.raises(CellExecutionError) as raised:
        execute(nb, project, python3_kernel)

    assert "add --yes" in str(raised.value)
    assert nb.cells[5].outputs == []
    database = f"sqlite:///{project / 'database.db'}"
    assert "hero" in table_names(database)
    assert len(version_rows(database)) == 1
