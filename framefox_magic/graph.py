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
    nodes = _fold(revisions) if len(revisions) > FOLD_AT else [_node(r) for r in revisions]
    _assign_lanes(nodes)
    return nodes


def _node(info: Any) -> Node:
    return Node(info.revision, info.parents, info)


def _fold(revisions: Sequence[Any]) -> list[Node]:
    """A node per revision drawn, and one per straight run folded (nodes are made only for what is
    drawn: a long history is mostly folded runs)."""
    out: list[Node] = []
    run: list[Any] = []

    def flush() -> None:
        if len(run) <= 2 * FOLD_KEEP + 2:
            out.extend(map(_node, run))
        else:
            kept_top, middle, kept_bottom = run[:FOLD_KEEP], run[FOLD_KEEP:-FOLD_KEEP], run[-FOLD_KEEP:]
            fold = Node(f"fold:{middle[0].revision}", [kept_bottom[0].revision], folded=len(middle))
            top = list(map(_node, kept_top))
            top[-1].parents = [fold.key]
            out.extend([*top, fold, *map(_node, kept_bottom)])
        run.clear()

    for info in revisions:
        plain = _plain(info)
        if plain and (not run or tuple(run[-1].parents) == (info.revision,)):
            run.append(info)
            continue
        flush()
        if plain:
            run.append(info)
        else:
            out.append(_node(info))
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
