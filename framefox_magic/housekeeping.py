"""Set-up and tidying: init, the version table, delete, clean, clear-history, the trash folder."""

from __future__ import annotations

import os
import shutil
import string
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dialects, settings
from .errors import (
    ConfigurationError,
    MigrationFailed,
    RevisionProtected,
)
from .reflection import ReflectionCache
from .render import counted
from .results import (
    Outcome,
)

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from .manager import AlembicManager
from . import migrating, runtime


def init(manager: AlembicManager, create_database: bool = False) -> Outcome:
    """Create the migrations folder, versions/, env.py and script.py.mako (idempotent)."""
    made = manager.create_database() if create_database else None
    with runtime.call(manager, initialized=False) as target:
        created = []
        target.versions_dir.mkdir(parents=True, exist_ok=True)
        for name in TEMPLATE_FILES:
            destination = target.migrations_dir / name
            if not destination.exists():
                destination.write_text(_template(name), encoding="utf-8")
                created.append(str(destination))
        if ini := _write_alembic_ini(manager, target):
            created.append(str(ini))
        summary = (
            f"Initialized {target.migrations_dir}" if created
            else f"{target.migrations_dir} was already initialized; nothing changed"
        )
        if str(target.migrations_dir / "env.py") in created:
            from .intent import NAMING_NOTE

            summary += f". {NAMING_NOTE}"
        if made is not None:
            summary = f"{made.summary} {summary}"
        return Outcome("init", summary, files=created)


def create_database(manager: AlembicManager) -> Outcome:
    """Create the PostgreSQL or MySQL/MariaDB database the URL names, unless it exists."""
    from . import provisioning

    with runtime.call(manager, initialized=False) as target:
        name = provisioning.database_name(target.url)
        if provisioning.create_database(target.url):
            return Outcome("create-database", f"Created the database {name}.", files=[name])
        return Outcome("create-database", f"The database {name} exists already; nothing changed.")


def drop_database(manager: AlembicManager, name: str | None = None) -> Outcome:
    """Drop a throwaway PostgreSQL or MySQL/MariaDB database (the one the URL names)."""
    from . import provisioning

    with runtime.call(manager, initialized=False) as target:
        actual = provisioning.database_name(target.url)
        if name is not None and name != actual:
            raise ConfigurationError(f"The URL names the database {actual}, not {name}; nothing dropped.")
        configured = settings.resolve(None, None, manager.project_root)
        if name is None and provisioning.same_database(configured.url, target.url):
            raise ConfigurationError(
                f"{actual} is the database the project's settings point at "
                f"({configured.url_source}); name it to drop it: `drop-database {actual} --yes`."
            )
        if not provisioning.drop_database(target.url):
            return Outcome("drop-database", f"There is no database {actual}; nothing changed.")
        manager._reflection = ReflectionCache()
        return Outcome("drop-database", f"Dropped the database {actual}.")


def _write_alembic_ini(manager: AlembicManager, target: settings.Target) -> Path | None:
    """An alembic.ini pointing at the migrations folder, when the project has none."""
    if target.alembic_ini or target.pyproject:
        return None
    ini = target.project_root / settings.ALEMBIC_INI
    try:
        location = target.migrations_dir.relative_to(target.project_root).as_posix()
    except ValueError:
        return None
    spec = manager.metadata_spec()
    metadata_line = f"target_metadata = {spec}" if isinstance(spec, str) else ""
    text = string.Template(_template("alembic.ini")).substitute(
        script_location=location, metadata_line=metadata_line
    )
    ini.write_text(text.rstrip() + "\n", encoding="utf-8")
    return ini


def create_version_table(manager: AlembicManager) -> Outcome:
    """Create the alembic_version table if it does not exist."""
    def ensure(rev: Any, context: Any) -> list:
        context._ensure_version_table()
        return []

    with runtime.call(manager) as target, runtime.connect(manager, target) as connection:
        observer = runtime.write_through_env(manager, target, connection, ensure)
        runtime.read_back(manager, target, observer)
        table = observer.options.get("version_table") or runtime.version_table(manager, target)[0]
        return Outcome("init-version-table", f"The {table} table exists.")


def clear_history(manager: AlembicManager) -> Outcome:
    """Empty the alembic_version table (the schema itself is left as it is)."""
    with runtime.locked(manager) as (target, connection):
        before = runtime.current_heads(manager, target, connection)
        backup = dialects.backup_sqlite(connection) if before else None
        observer = migrating.stamp_through_env(manager, target, connection, "base", purge=True)
        now = runtime.read_back(manager, target, observer)
        if now:
            raise MigrationFailed(
                f"The version table still holds {runtime.heads_text(now)} after clearing it.")
        return Outcome(
            "clear-history",
            f"Cleared the version history ({counted(len(before), 'row')} removed: "
            f"{runtime.heads_text(before)}).",
            backup=backup,
        )


def delete(manager: AlembicManager, rev: str, force: bool = False) -> Outcome:
    """Remove one revision file; an applied revision, or one others build on, needs force."""
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        found = runtime.one_revision(script, rev)
        current, reasons = _delete_reasons(manager, target, script, found)
        if reasons and not force:
            raise _refusing_delete(found.revision, reasons)
        path = _inside(Path(found.path), target.versions_dir)
        trash = to_trash(target, [path])
        warnings = [f"Deleted although {reason}." for reason in reasons]
        if found.revision in current:
            warnings.append(
                f"The database still records {found.revision}: `stamp` it to a known revision."
            )
        return Outcome("delete", f"Deleted revision {found.revision} ({found.doc}); its file is kept "
                       f"in {trash}.", files=[str(path)], warnings=warnings)


def check_deletable(manager: AlembicManager, rev: str) -> None:
    """Refuse a delete that needs force before anyone is asked to confirm it."""
    with runtime.call(manager) as target:
        script = runtime.script_directory(manager, target)
        found = runtime.one_revision(script, rev)
        _current, reasons = _delete_reasons(manager, target, script, found)
        if reasons:
            raise _refusing_delete(found.revision, reasons)


def _delete_reasons(manager: AlembicManager, target: settings.Target, script: ScriptDirectory,
                    found: Script) -> tuple[tuple[str, ...], list[str]]:
    """The database's current heads, and why removing this revision's file needs force."""
    with runtime.connect(manager, target) as connection:
        current = runtime.current_heads(manager, target, connection)
    reasons = []
    if found.revision in runtime.applied_revisions(script, current):
        reasons.append("it is applied to the database")
    if dependents := sorted(found._all_nextrev):
        reasons.append(f"{', '.join(dependents)} build{'s' if len(dependents) == 1 else ''} on it")
    return current, reasons


def clean(manager: AlembicManager) -> Outcome:
    """Remove every revision file; env.py and script.py.mako stay."""
    with runtime.call(manager) as target:
        files = sorted(target.versions_dir.glob("*.py"))
        if not files:
            return Outcome("clean", "No revision files to remove.")
        trash = to_trash(target, files)
        return Outcome("clean", f"Removed {counted(len(files), 'revision file')}; "
                       f"they are kept in {trash}.",
                       files=[str(f) for f in files])


TEMPLATE_FILES = ("env.py", "script.py.mako")


class Replacement:
    """An unapplied head set aside while its cell is written again: its file goes to the trash
    (copied there before it leaves the versions folder, so that it always exists somewhere) and
    comes back if writing the new one fails."""

    def __init__(self, found: Script) -> None:
        self.revision = found.revision
        self.path = Path(found.path)
        parents = tuple(found._versioned_down_revisions)
        self.head_arg = parents[0] if len(parents) == 1 else ("base" if not parents else "heads")
        self.branch_label = ",".join(sorted(found.branch_labels)) or None
        self.kept: Path | None = None

    def set_aside(self, target: settings.Target) -> None:
        """Copy the file to the trash, then remove it from the versions folder."""
        self.kept = _copy_to_trash(target, self.path)
        self.path.unlink()
        _drop_bytecode(self.path)

    def restore(self) -> None:
        """Put the file back where it was."""
        if self.kept is not None and not self.path.exists():
            shutil.copy2(self.kept, self.path)


def _refusing_delete(revision: str, reasons: list[str]) -> RevisionProtected:
    """The refusal of a delete that needs force, with its reasons."""
    return RevisionProtected(
        f"Refusing to delete {revision}: {' and '.join(reasons)}. Downgrade first, or force it."
    )


@contextmanager
def no_leftovers(target: settings.Target, rev_id: Callable[[], str | None]) -> Iterator[None]:
    """If writing a revision fails, move the file it wrote (new, carrying its id) to the trash;
    files that others wrote meanwhile stay where they are."""
    before = set(target.versions_dir.glob("*.py"))
    try:
        yield
    except BaseException:
        ours = rev_id()
        written = [path for path in set(target.versions_dir.glob("*.py")) - before
                   if ours and _revision_id_of(path) == ours]
        if written:
            to_trash(target, written)
        raise


def _revision_id_of(path: Path) -> str | None:
    """The revision id a file declares, read from its source without running it."""
    from .scripts import read_header

    try:
        header = read_header(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return header.revision if header else None


def _template(name: str) -> str:
    """One of the files `init` writes, from the package's templates."""
    return resources.files("framefox_magic").joinpath("templates", name).read_text(encoding="utf-8")


def _inside(path: Path, folder: Path) -> Path:
    """PATH resolved, refused unless it lies in FOLDER."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ConfigurationError(f"{path} is outside the versions folder; not touching it.")
    return resolved


def _drop_bytecode(path: Path) -> None:
    """Forget the compiled copies of a removed revision file."""
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


def _stamp_now() -> str:
    """A timestamp naming one trash folder."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _copy_to_trash(target: settings.Target, path: Path) -> Path:
    """A durable copy of a revision file in the trash, written before the original goes."""
    trash = target.migrations_dir / ".trash" / _stamp_now()
    trash.mkdir(parents=True)
    kept = trash / path.name
    shutil.copy2(path, kept)
    with open(kept, "rb") as copy:
        os.fsync(copy.fileno())
    return kept


def to_trash(target: settings.Target, files: Sequence[Path]) -> Path:
    """Move revision files out of the versions folder into migrations/.trash/<time>/."""
    trash = target.migrations_dir / ".trash" / _stamp_now()
    trash.mkdir(parents=True)
    for path in files:
        shutil.move(path, trash / path.name)
        _drop_bytecode(path)
    return trash
