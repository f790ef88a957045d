"""Where each revision of the graph is drawn: rows newest first, lanes for branches, long straight
runs folded; pure layout, no markup (render.py draws it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROW_HEIGHT = 22
LANE_WIDTH = 16
FOLD_AT = 40  # graphs larger than this fold long straight runs
FOLD_KEEP = 2  # revisions kept visible at each end of a folded run


class Node:
    """One drawn row: a revision, or a fold standing for a straight run of them."""

    def __init__(self, key: str, parents: Sequence[str], info: Any = None, folded: int = 0) -> None:
        self.key, self.parents, self.info, self.folded = key, list(parents), info, folded
        self.row = self.col = 0


def _plain(info: Any) -> bool:
    """A revision in a straight run: one parent, one child, nothing to point out."""
    return (len(info.parents) == 1 and len(info.children) == 1 and not info.current
            and not info.head and not info.branch_labels)


def graph_nodes(revisions: Sequence[Any]) -> list[Node]:
    """Rows in drawing order (newest first), long straight runs folded, lanes assigned."""
    nodes = [Node(r.revision, r.parents, r) for r in revisions]
    if len(nodes) > FOLD_AT:
        nodes = _fold(nodes)
    _assign_lanes(nodes)
    return nodes


def _fold(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    run: list[Node] = []

    def flush() -> None:
        if len(run) <= 2 * FOLD_KEEP + 2:
            out.extend(run)
        else:
            kept_top, middle, kept_bottom = run[:FOLD_KEEP], run[FOLD_KEEP:-FOLD_KEEP], run[-FOLD_KEEP:]
            fold = Node(f"fold:{middle[0].key}", [kept_bottom[0].key], folded=len(middle))
            kept_top[-1].parents = [fold.key]
            out.extend([*kept_top, fold, *kept_bottom])
        run.clear()

    for node in nodes:
        continues = run and run[-1].parents == [node.key]
        if _plain(node.info) and (not run or continues):
            run.append(node)
            continue
        flush()
        if _plain(node.info):
            run.append(node)
        else:
            out.append(node)
    flush()
    return out


def _assign_lanes(nodes: list[Node]) -> None:
    known = {node.key for node in nodes}
    lanes: list[str | None] = []
    for row, node in enumerate(nodes):
        waiting = [i for i, key in enumerate(lanes) if key == node.key]
        if waiting:
            node.col = waiting[0]
            for extra in waiting[1:]:
                lanes[extra] = None
        else:
            node.col = lanes.index(None) if None in lanes else len(lanes)
            if node.col == len(lanes):
                lanes.append(None)
        node.row = row
        parents = [p for p in node.parents if p in known]
        lanes[node.col] = parents[0] if parents else None
        for parent in parents[1:]:
            if parent not in lanes:
                free = next((i for i, key in enumerate(lanes) if key is None and i != node.col), None)
                if free is None:
                    lanes.append(parent)
                else:
                    lanes[free] = parent
        while lanes and lanes[-1] is None:
            lanes.pop()
