"""Revision scripts read from their source: identifiers and docstring without running the file,
and a revision map kept between calls and re-read only where files changed."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import util
from alembic.config import Config
from alembic.script import Script

from .alembic_adapter import HeaderScriptDirectory, is_revision_file, lazy_script

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


class CachedScriptDirectory(HeaderScriptDirectory):
    """A ScriptDirectory that lists revisions from their headers instead of running every file."""

    _ordered: list[Script] | None = None
    _ancestors: dict[tuple[str, ...], frozenset[str]] | None = None
    _skipped: list[str] | None = None
    changed_in_place = False  # alembic added a written revision to this map: build it again next time

    def generate_revision(self, *args: Any, **kwargs: Any) -> Script | None:
        """alembic's, remembering that the map now holds a file that may yet be taken away again."""
        self.changed_in_place = True
        return super().generate_revision(*args, **kwargs)

    def notes(self) -> list[str]:
        """Revision files left out of the listing (their header is not literal and import failed)."""
        self.ordered()
        return list(self._skipped or [])

    def _unknown_parent(self, missing: str) -> Exception:
        """An error naming the revision files whose down_revision is `missing`."""
        from .errors import ConfigurationError

        recursive = bool(self.recursive_version_locations)
        files = [
            self._relative(str(Path(location) / key[0]))
            for location in self.version_folders() for key in _scan(location, recursive)
            if missing in util.to_tuple(
                getattr(_cached_header(location / key[0], key), "down_revision", None), default=())
        ]
        where = ", ".join(files) or "a revision file"
        return ConfigurationError(f"{where}: down_revision '{missing}' names no revision; fix it or "
                                  "remove the file.")

    def _relative(self, path: str) -> str:
        base = Path(self.dir).parent
        return str(Path(path).relative_to(base)) if Path(path).is_relative_to(base) else str(path)

    def ordered(self) -> list[Script]:
        """Every revision in alembic's walk order (newest first), computed once per map."""
        if self._ordered is None:
            try:
                self._ordered = list(self.walk_revisions())
            except KeyError as error:  # alembic only warns about an unknown parent, then trips on it
                raise self._unknown_parent(str(error.args[0])) from None
        return self._ordered

    def ancestors(self, heads: tuple[str, ...]) -> frozenset[str]:
        """The revisions applied when the database is at `heads` (dependencies included)."""
        if self._ancestors is None:
            self._ancestors = {}
        if heads not in self._ancestors:
            self._ancestors[heads] = self.ancestor_ids(heads)
        return self._ancestors[heads]

    def signature(self) -> tuple[FileKey, ...]:
        """What the versions folders hold now: one key per revision file."""
        recursive = bool(self.recursive_version_locations)
        return tuple(key for location in self.version_folders() for key in _scan(location, recursive))

    def load_scripts(self) -> Iterator[Script]:
        """Each revision built from its header; a file is imported here only if its header is not literal."""
        self._skipped = []
        for folder in self.version_folders():
            for key in _scan(folder, bool(self.recursive_version_locations)):
                path = folder / key[0]
                header = self._header(path, key)
                if header is not None:
                    yield _script_from(path, header)
                elif (script := self._imported_alone(path)) is not None:  # not literal: import it
                    yield script

    def _header(self, path: Path, key: FileKey) -> Header | None:
        try:
            return _cached_header(path, key)
        except UnicodeDecodeError as error:
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"{self._relative(str(path))} is not UTF-8 text (byte {error.start}); save it as UTF-8."
            ) from None

    def _imported_alone(self, path: Path) -> Script | None:
        """A revision whose header is not literal, imported by itself; if that fails, its literal
        parts keep it in the history (with a note), else it is left out (with a note)."""
        try:
            return self.import_script(path)
        except Exception as error:
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            header = _read_header_with_ast(path.read_text(encoding="utf-8"), partial=True)
            name = self._relative(str(path))
            if header is None:
                self._skipped = [*(self._skipped or []), f"{name} was not listed: {reason}"]
                return None
            self._skipped = [*(self._skipped or []), f"{name}: its branch labels or dependencies are "
                             f"not literal and importing it failed ({reason}); listed without them"]
            return _script_from(path, header)


def _script_from(path: Path, header: Header) -> Script:
    return lazy_script(path, header.revision, header.down_revision, header.branch_labels,
                       header.depends_on, header.doc)


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


class ScriptCache:
    """Keeps one CachedScriptDirectory per target; rebuilds its map only when files changed."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._signature: tuple[FileKey, ...] | None = None
        self._script: CachedScriptDirectory | None = None

    def get(self, config: Callable[[], Config], key: tuple[Any, ...]) -> CachedScriptDirectory:
        """The script directory for this target, its revision map still valid."""
        script = self._script
        if (script is not None and self._key == key and not script.changed_in_place
                and script.signature() == self._signature):
            return script
        script = _from_config(config())
        self._key, self._script, self._signature = key, script, script.signature()
        return script


def _from_config(config: Config) -> CachedScriptDirectory:
    return CachedScriptDirectory.from_config(config)
