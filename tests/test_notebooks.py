"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, and cleans up after itself."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from conftest import server_problem
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
SERVER_TAG = "needs-server"


def _without_server_cells(book: nbformat.NotebookNode) -> int:
    """Drop the cells that need PostgreSQL; returns how many were dropped."""
    kept = [cell for cell in book.cells if SERVER_TAG not in cell.metadata.get("tags", [])]
    dropped = len(book.cells) - len(kept)
    book.cells = kept
    return dropped


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, python3_kernel: str) -> None:
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        f"{path.name} is stored with outputs; clear them before committing"
    )
    problem = server_problem("postgresql")
    if problem and any(SERVER_TAG in c.metadata.get("tags", []) for c in book.cells):
        if os.environ.get("FRAMEFOX_REQUIRE_SERVERS") == "1":
            pytest.fail(f"FRAMEFOX_REQUIRE_SERVERS=1 but the {problem}")
        _without_server_cells(book)
    before = set(os.listdir(tmp_path))
    NotebookClient(
        book, timeout=300, kernel_name=python3_kernel, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        output for cell in book.cells if "raises-exception" not in cell.metadata.get("tags", [])
        for output in cell.get("outputs", []) if output.output_type == "error"
    ]
    assert not errors
    html_outputs = [
        output["data"]["text/html"] for cell in book.cells for output in cell.get("outputs", [])
        if "text/html" in output.get("data", {})
    ]
    assert html_outputs, "the tour shows no rich output"
    assert set(os.listdir(tmp_path)) == before, "the notebook left files behind"
