"""Revision files read with the standard library only: the folder scan and each file's header
(identifiers and docstring, without running the file). Nothing here imports alembic or SQLAlchemy,
so the quick readings (quickread.py) can use it."""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_HEADER_NAMES = frozenset({"revision", "down_revision", "branch_labels", "depends_on"})
FileKey = tuple[str, int, int, int]  # name, inode, mtime (ns), size: changes whenever the file does


@dataclass(frozen=True)
class Header:
    """What listing a revision needs, read from its source."""

    revision: str
    down_revision: Any
    branch_labels: Any
    depends_on: Any
    doc: str | None


_headers: dict[tuple[str, FileKey], Header | None] = {}
_CREATE_DATE = re.compile(r"^Create Date:\s*(.+?)\s*$", re.MULTILINE)


def message(doc: str | None) -> str:
    """A revision's message as alembic's `Script.doc` gives it: the docstring's first paragraph."""
    return re.split("\n\n", (doc or "").strip())[0]


def created(doc: str | None, path: str | os.PathLike[str]) -> datetime | None:
    """When a revision was written: its docstring's Create Date, else its file's modification time."""
    match = _CREATE_DATE.search(doc or "")
    if match:
        try:
            return datetime.fromisoformat(match.group(1))
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime)
    except OSError:
        return None


_ASSIGNMENT = re.compile(
    r"^(revision|down_revision|branch_labels|depends_on)\b[^=\n]*=[ \t]*(.+?)[ \t]*$", re.MULTILINE
)
_PLAIN_STRING = re.compile(r"""^(['"])([^'"\\]*)\1$""")
_DOCSTRING = re.compile(r'\A(?:[ \t]*#[^\n]*\n|[ \t]*\n)*"""([^\\]*?)"""', re.DOTALL)


def read_header(source: str) -> Header | None:
    """The module docstring and the four identifiers, when they are literals; else None."""
    return _read_header_quickly(source) or _read_header_with_ast(source)


def _read_header_quickly(source: str) -> Header | None:
    """The common shape of a revision file, without parsing it; None when it is not that shape."""
    values: dict[str, Any] = {}
    for name, text in _ASSIGNMENT.findall(source):
        if name in values:
            return None
        if text == "None":
            values[name] = None
        elif match := _PLAIN_STRING.match(text):
            values[name] = match.group(2)
        else:
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return None
    docstring = _DOCSTRING.match(source)
    if len(values) != 4 or not isinstance(values["revision"], str) or docstring is None:
        return None
    return Header(values["revision"], values["down_revision"], values["branch_labels"],
                  values["depends_on"], docstring.group(1))


def _read_header_with_ast(source: str, partial: bool = False) -> Header | None:
    """The header by parsing; with `partial`, labels and dependencies that are not literal are None."""
    cut = source.find("\ndef ")
    try:
        tree = ast.parse(source[:cut] if cut > 0 else source)
    except SyntaxError:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return None
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in _HEADER_NAMES:
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                if not partial or target.id in ("revision", "down_revision"):
                    return None
                values[target.id] = None
    if not isinstance(values.get("revision"), str) or "down_revision" not in values:
        return None
    return Header(
        values["revision"], values["down_revision"], values.get("branch_labels"),
        values.get("depends_on"), ast.get_docstring(tree, clean=False),
    )



def is_revision_file(name: str) -> bool:
    """Whether alembic reads a `.py` file of this name as a revision (not `__init__`, not `.#`)."""
    return name.endswith(".py") and not name.startswith((".#", "__init__")) and "\n" not in name


def _scan(folder: Path, recursive: bool = False, prefix: str = "") -> list[FileKey]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    keys = []
    for entry in entries:
        if recursive and entry.is_dir() and entry.name != "__pycache__":
            keys.extend(_scan(Path(entry.path), True, f"{prefix}{entry.name}/"))
        elif is_revision_file(entry.name):
            stat = entry.stat()
            keys.append((prefix + entry.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    keys.sort()
    return keys


def _cached_header(path: Path, key: FileKey) -> Header | None:
    cache_key = (str(path.parent), key)
    if cache_key not in _headers:
        _headers[cache_key] = read_header(path.read_text(encoding="utf-8"))
    return _headers[cache_key]


def forget_headers(paths: list[str] | None, folders: list[str]) -> None:
    """Drop the headers kept for these files or folders (None: every file under `folders`), so that
    an edit that kept the size and time stamp is read again."""
    prefixes = tuple(f"{path}/" for path in (folders if paths is None else paths))
    named = set() if paths is None else set(paths)
    for cache_key in list(_headers):
        parent, key = cache_key
        path = os.path.join(parent, key[0].rsplit("/", 1)[-1])
        if path in named or path.startswith(prefixes):
            del _headers[cache_key]
