"""Where each table of a schema diagram goes: tables joined by foreign keys are grouped, each group
packed in short columns, groups placed on shelves; pure geometry, no markup, linear in size."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TABLE_WIDTH = 250
HEADER_HEIGHT = 24
ROW_HEIGHT = 18
GAP = 36
GROUP_PADDING = 14
MAX_WIDTH = 1400
MAX_GROUP_COLUMNS = 4


@dataclass
class Box:
    """A table's place: top-left corner and size."""

    table: Any
    x: float = 0
    y: float = 0

    @property
    def height(self) -> float:
        """Header plus one row per column."""
        return HEADER_HEIGHT + ROW_HEIGHT * max(len(self.table.columns), 1) + 4

    def row_y(self, column: str) -> float:
        """The vertical middle of a column's row (the header's middle for an unknown column)."""
        names = [c.name for c in self.table.columns]
        if column not in names:
            return self.y + HEADER_HEIGHT / 2
        return self.y + HEADER_HEIGHT + ROW_HEIGHT * names.index(column) + ROW_HEIGHT / 2


@dataclass
class Group:
    """Tables joined by foreign keys, drawn inside one frame."""

    boxes: list[Box] = field(default_factory=list)
    x: float = 0
    y: float = 0
    width: float = 0
    height: float = 0


@dataclass
class Layout:
    """The whole picture: groups of boxes, and the canvas size."""

    groups: list[Group]
    width: float
    height: float

    def boxes(self) -> dict[str, Box]:
        """Every table's box, by table name."""
        return {box.table.name: box for group in self.groups for box in group.boxes}


def layout(tables: Sequence[Any]) -> Layout:
    """Place every table: related ones together, the largest groups first."""
    groups = [_pack_group(members) for members in _related_groups(tables)]
    width, height = _shelve(groups)
    return Layout(groups, width, height)


def _related_groups(tables: Sequence[Any]) -> list[list[Any]]:
    """Tables joined (either way) by foreign keys, biggest group first; loners last, by name."""
    by_name = {table.name: table for table in tables}
    parent = {name: name for name in by_name}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for table in tables:
        for target in table.referenced_tables():
            if target in by_name:
                parent[root(table.name)] = root(target)
    members: dict[str, list[Any]] = {}
    for table in tables:
        members.setdefault(root(table.name), []).append(table)
    return sorted(members.values(), key=lambda group: (-len(group), group[0].name))


def _pack_group(members: list[Any]) -> Group:
    """Short columns, each table into the column that is shortest so far (referenced ones first)."""
    columns = min(MAX_GROUP_COLUMNS, max(1, math.ceil(math.sqrt(len(members)))))
    ordered = _neighbours_first(members)
    heights = [0.0] * columns
    group = Group()
    for table in ordered:
        column = heights.index(min(heights))
        box = Box(table, GROUP_PADDING + column * (TABLE_WIDTH + GAP), GROUP_PADDING + heights[column])
        heights[column] += box.height + GAP
        group.boxes.append(box)
    used = sum(1 for h in heights if h)
    group.width = 2 * GROUP_PADDING + used * TABLE_WIDTH + (used - 1) * GAP
    group.height = 2 * GROUP_PADDING + max(heights) - GAP
    return group


def _neighbours_first(members: list[Any]) -> list[Any]:
    """Breadth-first from the most referenced table, so related tables land next to each other."""
    by_name = {table.name: table for table in members}
    links: dict[str, set[str]] = {name: set() for name in by_name}
    for table in members:
        for target in table.referenced_tables():
            if target in by_name and target != table.name:
                links[table.name].add(target)
                links[target].add(table.name)
    start = max(sorted(by_name), key=lambda name: len(links[name]))
    ordered, queue, seen = [], deque([start]), {start}
    while queue:
        name = queue.popleft()
        ordered.append(by_name[name])
        for neighbour in sorted(links[name] - seen):
            seen.add(neighbour)
            queue.append(neighbour)
    return ordered


def _shelve(groups: list[Group]) -> tuple[float, float]:
    """Groups left to right, a new shelf when the row is full; returns the canvas size."""
    x = y = shelf_height = width = 0.0
    for group in groups:
        if x and x + group.width > MAX_WIDTH:
            x, y, shelf_height = 0.0, y + shelf_height + GAP, 0.0
        group.x, group.y = x, y
        for box in group.boxes:
            box.x += x
            box.y += y
        x += group.width + GAP
        shelf_height = max(shelf_height, group.height)
        width = max(width, x - GAP)
    return max(width, 1.0), max(y + shelf_height, 1.0)
