"""Where each revision of the graph is drawn: rows newest first, lanes for branches, long straight
runs folded; pure layout, no markup (render.py draws it)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from operator import attrgetter
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


def _straight(places: Sequence[tuple[Any, ...]]) -> list[bool]:
    """For each (revision, parents, children, current, head, branch_labels): whether it sits in a
    straight run (one parent, one child, nothing to point out)."""
    return [len(parents) == 1 and len(children) == 1 and not (current or head or labels)
            for _, parents, children, current, head, labels in places]


# what the layout reads of a revision; a listing that can outline its revisions gives the same
_PLACE = attrgetter("revision", "parents", "children", "current", "head", "branch_labels")


def graph_nodes(revisions: Sequence[Any]) -> list[Node]:
    """Rows in drawing order (newest first), long straight runs folded, lanes assigned."""
    nodes = _fold(revisions) if len(revisions) > FOLD_AT else [_node(r) for r in revisions]
    _assign_lanes(nodes)
    return nodes


def _node(info: Any) -> Node:
    return Node(info.revision, info.parents, info)


# The rows (positions, and folds) of the last few long listings, each kept while its headers (the
# same list object, kept with its revision map; held here so that its id stays its own) and the
# database's revisions are the same: a warm graph builds only what it draws.
_KEPT_LAYOUTS = 4
_kept: OrderedDict[tuple[int, tuple[str, ...]], tuple[Any, list[Any]]] = OrderedDict()


def _fold(revisions: Sequence[Any]) -> list[Node]:
    """A node per revision drawn, and one per straight run folded; a listing that can outline its
    revisions is walked without building them, and only the drawn ones are built."""
    layout_key = getattr(revisions, "layout_key", None)
    if layout_key is None:
        return _nodes(revisions, _folded_rows(revisions))
    headers, current = layout_key()
    key = (id(headers), current)
    kept = _kept.get(key)
    if kept is None or kept[0] is not headers:
        kept = _kept[key] = (headers, _folded_rows(revisions))
        while len(_kept) > _KEPT_LAYOUTS:
            _kept.popitem(last=False)
    _kept.move_to_end(key)
    return _nodes(revisions, kept[1])


def _folded_rows(revisions: Sequence[Any]) -> list[Any]:
    """Each row drawn: a revision's position, or a fold as (its first revision, the revision below
    it, how many it stands for)."""
    outline = getattr(revisions, "outline", None)
    places = outline() if outline else list(map(_PLACE, revisions))
    rows: list[Any] = []
    run: list[int] = []  # positions of a straight run, newest first

    def flush() -> None:
        if len(run) <= 2 * FOLD_KEEP + 2:
            rows.extend(run)
        else:
            folded = (places[run[FOLD_KEEP]][0], places[run[-FOLD_KEEP]][0], len(run) - 2 * FOLD_KEEP)
            rows.extend([*run[:FOLD_KEEP], folded, *run[-FOLD_KEEP:]])
        run.clear()

    for position, plain in enumerate(_straight(places)):
        if plain and (not run or tuple(places[run[-1]][1]) == (places[position][0],)):
            run.append(position)
            continue
        flush()
        if plain:
            run.append(position)
        else:
            rows.append(position)
    flush()
    return rows


def _nodes(revisions: Sequence[Any], rows: list[Any]) -> list[Node]:
    """The rows as nodes: the revisions drawn built, each fold pointed at by the revision above it."""
    out: list[Node] = []
    for row in rows:
        if isinstance(row, int):
            out.append(_node(revisions[row]))
            continue
        first, below, count = row
        fold = Node(f"fold:{first}", [below], folded=count)
        out[-1].parents = [fold.key]
        out.append(fold)
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
