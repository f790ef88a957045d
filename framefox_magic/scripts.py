"""Revision scripts read from their source: identifiers and docstring without running the file,
and a revision map kept between calls and re-read only where files changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import util
from alembic.config import Config
from alembic.script import Script

from . import watching
from .alembic_adapter import HeaderScriptDirectory, lazy_script

# kept importable from here
from .headers import (  # noqa: F401
    FileKey,
    Header,
    _cached_header,
    _read_header_with_ast,
    _scan,
    forget_headers,
    read_header,
)
from .watching import FolderWatch


class CachedScriptDirectory(HeaderScriptDirectory):
    """A ScriptDirectory that lists revisions from their headers instead of running every file."""

    _ordered: list[Script] | None = None
    _ordered_headers: list[Any] | None = None
    _headers: dict[str, Any] | None = None
    _ancestors: dict[tuple[str, ...], frozenset[str]] | None = None
    _skipped: list[str] | None = None
    changed_in_place = False  # alembic added a written revision to this map: build it again next time

    def listed_headers(self, found: list[Script], header: Callable[[Script], Any]) -> list[Any]:
        """header(r) of each revision found, kept with this map: the whole history (walk order) as
        one list, others by revision."""
        if found is self._ordered:
            if self._ordered_headers is None:
                self._ordered_headers = [header(r) for r in found]
            return self._ordered_headers
        if self._headers is None:
            self._headers = {}
        kept = self._headers
        return [kept[r.revision] if r.revision in kept else kept.setdefault(r.revision, header(r))
                for r in found]

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

    def watch(self) -> FolderWatch | None:
        """A kernel watch on the version folders, where it reports every change (else None)."""
        if self.sourceless:  # compiled revisions live in __pycache__, which is not watched
            return None
        return watching.watch(self.version_folders(), bool(self.recursive_version_locations))

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


class ScriptCache:
    """Keeps one CachedScriptDirectory per target; rebuilds its map only when files changed: known
    from the kernel's change notification where it is exact (watching.py), else from a folder scan."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._signature: tuple[FileKey, ...] | None = None
        self._script: CachedScriptDirectory | None = None
        self._watch: FolderWatch | None = None

    def get(self, config: Callable[[], Config], key: tuple[Any, ...]) -> CachedScriptDirectory:
        """The script directory for this target, its revision map still valid."""
        if self._script is not None and self._still_valid(key):
            return self._script
        script = _from_config(config())
        self._forget_changed()
        self._watch = script.watch()  # before the scans below and the one that builds the map
        self._key, self._script = key, script
        self._signature = script.signature() if self._watch is None else None
        return script

    @property
    def watching(self) -> bool:
        """Whether the kernel reports changes to the folders (else each call scans them)."""
        return self._watch is not None

    def _still_valid(self, key: tuple[Any, ...]) -> bool:
        if self._key != key or self._script is None or self._script.changed_in_place:
            return False
        if self._watch is not None:
            return self._watch.unchanged()
        return self._script.signature() == self._signature

    def close(self) -> None:
        """Stop watching the folders (the next call scans them)."""
        if self._watch is not None:
            self._watch.close()
        self._watch = self._script = None

    def _forget_changed(self) -> None:
        """Headers of the files the last watch saw change are read again, even if their size and
        time stamp are the same; then that watch is closed."""
        if self._watch is not None:
            forget_headers(self._watch.changed(), self._watch.folders())
            self._watch.close()


def _from_config(config: Config) -> CachedScriptDirectory:
    return CachedScriptDirectory.from_config(config)
