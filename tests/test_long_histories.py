"""A history of thousands of revisions lists, renders and draws whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from framefox_magic import AlembicManager

REVISIONS = 5000
REVISION_FILE = '''"""step {index} <{index}>

Revision ID: {revision}
Revises: {down}
Create Date: 2026-01-01 00:00:00

"""
revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''


@pytest.fixture(scope="module")
def long_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A project of 5,000 linear revisions, the database at the middle one."""
    root = tmp_path_factory.mktemp("long")
    manager = AlembicManager(url=f"sqlite:///{root / 'db.sqlite'}", project_root=root, metadata=sa.MetaData())
    manager.init()
    ids, down = [], None
    for index in range(REVISIONS):
        revision = f"r{index:05d}"
        (root / "migrations" / "versions" / f"{revision}_step.py").write_text(REVISION_FILE.format(
            index=index, revision=revision, down=down or "", down_revision=down))
        ids.append(revision)
        down = revision
    manager.stamp(ids[REVISIONS // 2])
    return root, ids


def _manager(root: Path) -> AlembicManager:
    return AlembicManager(url=f"sqlite:///{root / 'db.sqlite'}", project_root=root, metadata=sa.MetaData())


def test_history_lists_every_revision_and_renders_the_newest_the_current_and_the_oldest(
    long_project: tuple[Path, list[str]],
) -> None:
    root, ids = long_project
    history = _manager(root).history()
    assert history.ids == tuple(reversed(ids))
    assert sum(r.applied for r in history) == REVISIONS // 2 + 1
    assert [r.revision for r in history if r.current] == [ids[REVISIONS // 2]]
    html = history._repr_html_()
    revision_column = r'<td><span class="rev">(r\d{5})</span></td><td><span class="rev">(?:r\d{5}|&lt;base)'
    newest_first = list(reversed(ids))
    assert re.findall(revision_column, html) == [*newest_first[:5], ids[REVISIONS // 2], *newest_first[-5:]]
    assert html.count("step 4999 &lt;4999&gt;") == 1
    assert f"Showing 11 of {REVISIONS:,} revisions" in html and "to_frame()" in html
    frame = history.to_frame()
    assert len(frame) == REVISIONS and frame["applied"].sum() == REVISIONS // 2 + 1


def test_status_and_graph_of_a_long_history(long_project: tuple[Path, list[str]]) -> None:
    root, ids = long_project
    manager = _manager(root)
    status = manager.status()
    assert status.current == (ids[REVISIONS // 2],)
    assert status.pending == tuple(ids[REVISIONS // 2 + 1:])
    assert not status.up_to_date
    drawn = manager.graph()._repr_html_()
    for shown in (ids[-1], ids[REVISIONS // 2], ids[0]):
        assert f'data-revision="{shown}"' in drawn
    assert "revisions in a straight line" in drawn


def test_a_long_history_at_head_reads_like_a_list_of_its_revisions(
    long_project: tuple[Path, list[str]],
) -> None:
    root, ids = long_project
    manager = AlembicManager(url=f"sqlite:///{root / 'at_head.sqlite'}", project_root=root,
                             metadata=sa.MetaData())
    manager.stamp("heads")
    history = manager.history()
    html = history._repr_html_()
    assert f"History: {REVISIONS} revisions, {REVISIONS} applied" in html
    assert "Showing 10 of 5,000 revisions" in html  # the newest 5 (the current among them), the oldest 5
    newest = history[0]
    assert (newest.revision, newest.current, newest.applied) == (ids[-1], True, True)
    assert history[0] is newest and history[-1].revision == ids[0]
    assert [r.revision for r in history[1:3]] == [ids[-2], ids[-3]]
    with pytest.raises(IndexError):
        history[REVISIONS]
    everything = list(history)
    assert everything[0] is newest and len(everything) == REVISIONS
    assert history.revisions == everything and all(r.applied for r in everything)
    assert history.to_frame()["revision"].tolist() == list(reversed(ids))
