"""The one place that reaches past alembic's public API, for reading revision headers and keeping
the revision map; everything else in the package uses what this module offers.

Read in alembic 1.18.0 and 1.20.1 (the same code in both); the lowest-versions CI job and
tests/test_script_headers.py run against them. Private members used:

- ``ScriptDirectory._load_revisions``: the loader ``ScriptDirectory.__init__`` hands to its
  ``RevisionMap``; overridden here so revisions can be listed from their headers.
- ``ScriptDirectory._version_locations``: the version folders as absolute paths (package
  resources resolved), as alembic itself scans them.
- ``Script._from_path``: imports one revision file the way alembic does (legacy ids, encodings).
- ``RevisionMap._get_ancestor_nodes``: the revisions below some heads, dependencies included,
  without the topological sort ``iterate_revisions`` adds.
- ``alembic.script.base._default_file_template``: the ``file_template`` default of ``from_config``.

Public but not in alembic's documented API: the ``Script(module, rev_id, path)`` constructor,
``alembic.util.load_python_file`` and ``alembic.util.coerce_resource_to_filename``. The rule in
``is_revision_file`` (in headers.py, which imports no alembic) copies
``alembic.script.base._only_source_rev_file``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from alembic import util
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.base import _default_file_template

from .headers import is_revision_file  # noqa: F401  # kept importable from here


class HeaderScriptDirectory(ScriptDirectory):
    """A ScriptDirectory whose revisions come from `load_scripts` (for source files)."""

    @classmethod
    def from_config(cls, config: Config) -> Self:
        """This class built from a Config, each option read as ScriptDirectory.from_config reads it."""
        location = config.get_alembic_option("script_location")
        if location is None:
            raise util.CommandError("No 'script_location' key found in configuration.")
        slug_length = config.get_alembic_option("truncate_slug_length")
        if prepend := config.get_prepend_sys_paths_list():
            sys.path[:0] = prepend
        return cls(
            util.coerce_resource_to_filename(location),
            file_template=config.get_alembic_option("file_template", _default_file_template),
            truncate_slug_length=int(slug_length) if slug_length is not None else None,
            sourceless=config.get_alembic_boolean_option("sourceless"),
            output_encoding=config.get_alembic_option("output_encoding", "utf-8"),
            version_locations=config.get_version_locations_list(),
            timezone=config.get_alembic_option("timezone"),
            hooks=config.get_hooks_list(),
            recursive_version_locations=config.get_alembic_boolean_option("recursive_version_locations"),
            messaging_opts=config.messaging_opts,
        )

    def _load_revisions(self) -> Iterator[Script]:
        if self.sourceless:  # compiled files carry no source to read: alembic's own loading
            return super()._load_revisions()
        return self.load_scripts()

    def load_scripts(self) -> Iterator[Script]:
        """Every revision in the version folders; alembic's loading unless a subclass knows better."""
        return super()._load_revisions()

    def version_folders(self) -> list[Path]:
        """The version folders, absolute, in the order alembic scans them."""
        return [Path(location) for location in self._version_locations]

    def import_script(self, path: Path) -> Script | None:
        """The revision in `path`, imported as alembic imports it (None when it is not a revision)."""
        return Script._from_path(self, str(path))

    def ancestor_ids(self, heads: tuple[str, ...]) -> frozenset[str]:
        """The revisions applied when the database is at `heads` (dependencies included)."""
        if not heads:
            return frozenset()
        revision_map = self.revision_map
        found = revision_map._get_ancestor_nodes(revision_map.get_revisions(heads))
        return frozenset(revision.revision for revision in found)


def lazy_script(path: Path, revision: str, down_revision: Any, branch_labels: Any, depends_on: Any,
                doc: str | None) -> Script:
    """A Script from its header; the file is imported the first time anything else is asked of it."""
    module = types.ModuleType(path.stem, doc)
    module.__file__ = str(path)
    module.revision, module.down_revision = revision, down_revision
    module.branch_labels, module.depends_on = branch_labels, depends_on
    loaded: list[types.ModuleType] = []

    def load_on_first_use(name: str) -> Any:  # a module's __getattr__ (PEP 562): names not set above
        if name.startswith("_"):  # alembic probes optional private names; only the file has the rest
            raise AttributeError(name)
        if not loaded:
            loaded.append(util.load_python_file(str(path.parent), path.name))
        return getattr(loaded[0], name)

    module.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    return Script(module, revision, path)
