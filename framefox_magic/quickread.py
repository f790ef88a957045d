"""`status` and `history` of a SQLite project read with the standard library alone: the revision
headers and one SELECT with sqlite3, so that `framefox-migrate status|history` and a kernel's first
`%migrate status|history` answer without importing alembic or SQLAlchemy (their imports were most of
that time). It answers only when the database is at the one head and the history is a plain chain
or tree (a chain, for `history`) of literal headers; for anything more (pending revisions and their
risks, several heads, merges, labels, dependencies, other databases, version folders set in the
configuration, errors) it answers None and the manager answers instead."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import environment, settings
from .headers import Header, _cached_header, _scan, created, message

if TYPE_CHECKING:
    from .results import History, Status

PathLike = str | os.PathLike[str]
AtHead = tuple[settings.Target, list[tuple[Path, Header]], str]  # the target, its files, the one head


def quick_status(url: str | None = None, migrations_dir: PathLike | None = None,
                 project_root: PathLike = ".", version_table: str | None = None,
                 version_table_schema: str | None = None) -> Status | None:
    """The up-to-date Status the manager would give, read with sqlite3; None when it needs the manager."""
    found = _at_the_one_head(url, migrations_dir, project_root, version_table, version_table_schema)
    if found is None:
        return None
    from .results import Status

    target, _, head = found
    return Status(current=(head,), heads=(head,), pending=(), up_to_date=True, url=target.masked_url)


def quick_history(url: str | None = None, migrations_dir: PathLike | None = None,
                  project_root: PathLike = ".", version_table: str | None = None,
                  version_table_schema: str | None = None) -> History | None:
    """The History the manager would give of a chain applied to its head, read with sqlite3; None
    when it needs the manager."""
    found = _at_the_one_head(url, migrations_dir, project_root, version_table, version_table_schema)
    if found is None or (chain := _newest_first(*found[1:])) is None:
        return None
    from .results import History, ListedRevisions

    target, _, head = found
    listed = ListedRevisions(chain, frozenset(row[0] for row in chain), (head,))
    return History(listed, target.masked_url, notes=[])


def _at_the_one_head(url: str | None, migrations_dir: PathLike | None, project_root: PathLike,
                     table: str | None, schema: str | None) -> AtHead | None:
    """The target, its revision files and their one head, when a plain project's database is at it."""
    try:
        target = settings.resolve(url, migrations_dir, project_root)
        if not _plain_project(target):
            return None
        files = _headers(target.versions_dir)
        head = only_head(None if files is None else [header for _, header in files])
        table, schema = environment.version_table(target, table, schema)
        if head is None or schema is not None:
            return None
        current = recorded_versions(target.url.split(":///", 1)[1], table)
    except Exception:  # whatever went wrong, the manager's own path reports it properly
        return None
    return (target, files, head) if current == (head,) else None  # type: ignore[return-value]


def _newest_first(files: list[tuple[Path, Header]], head: str) -> list[tuple[Any, ...]] | None:
    """Each revision of a chain from HEAD down, as RevisionInfo.listed takes it; None when one merges
    (only_head has made sure that every revision leads down from HEAD, so without a merge the walk
    down meets them all)."""
    below = {header.revision: (path, header) for path, header in files}
    rows: list[tuple[Any, ...]] = []
    child: tuple[str, ...] = ()
    revision: str | None = head
    while revision is not None:
        path, header = below[revision]
        parents = _as_tuple(header.down_revision) or ()  # only_head has checked each is a tuple
        if len(parents) > 1:
            return None
        rows.append((revision, parents, message(header.doc), created(header.doc, path), str(path), (), (),
                     not child, child))
        child, revision = (revision,), (parents[0] if parents else None)
    return rows


def _plain_project(target: settings.Target) -> bool:
    """A plain SQLite file, an initialized folder, and the versions folder alembic's default."""
    if settings.plain_sqlite_url(target.url, target.project_root) != target.url:
        return False
    if target.pyproject is not None or not (target.migrations_dir / "env.py").is_file():
        return False
    ini = settings._ini_options(target.alembic_ini) if target.alembic_ini else {}
    return not {"version_locations", "recursive_version_locations"} & set(ini)


def _headers(folder: Path) -> list[tuple[Path, Header]] | None:
    """Every revision file and its header; None when one is not literal (the manager imports those)."""
    files = [(folder / key[0], _cached_header(folder / key[0], key)) for key in _scan(folder)]
    return None if any(header is None for _, header in files) else files  # type: ignore[return-value]


def _as_tuple(value: object) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def only_head(headers: Iterable[Header] | None) -> str | None:
    """The one head of a history whose every revision leads down from it (no cycle, no unknown
    parent, no labels or dependencies); None otherwise."""
    if headers is None:
        return None
    downs: dict[str, tuple[str, ...]] = {}
    for header in headers:
        down = _as_tuple(header.down_revision)
        if down is None or header.branch_labels or header.depends_on or header.revision in downs:
            return None
        downs[header.revision] = down
    children = dict.fromkeys(downs, 0)
    for parents in downs.values():
        for parent in parents:
            if parent not in children:
                return None
            children[parent] += 1
    heads = [revision for revision, count in children.items() if count == 0]
    return heads[0] if len(heads) == 1 and _all_below(heads[0], downs, children) else None


def _all_below(head: str, downs: dict[str, tuple[str, ...]], children: dict[str, int]) -> bool:
    """Whether every revision is reached from HEAD, each after all its children (so: no cycle)."""
    waiting, ready, seen = dict(children), [head], 0
    while ready:
        seen += 1
        for parent in downs[ready.pop()]:
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
    return seen == len(downs)


def recorded_versions(database: str, table: str) -> tuple[str, ...] | None:
    """The version table's rows, read only (the file is never created); None when there is no
    such file or table."""
    if not Path(database).is_absolute() or not Path(database).is_file():
        return None
    return sqlite_versions(database, table)


def sqlite_versions(database: str, table: str, timeout: float = 5.0,
                    in_order: bool = True) -> tuple[str, ...] | None:
    """The rows of a SQLite file's version table (sorted, or as stored when not `in_order`), the
    file opened read-only; None when it has no such table; sqlite3.Error when the file cannot be
    read (or, with `timeout` 0, while a writer holds it)."""
    uri = f"{Path(database).as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as connection:
        found = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        if found is None:
            return None
        quoted = table.replace('"', '""')
        rows = [row[0] for row in connection.execute(f'SELECT version_num FROM "{quoted}"')]
        return tuple(sorted(rows) if in_order else rows)
