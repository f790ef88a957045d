"""The MetaData autogenerate compares with, and forgetting model classes that are defined again."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterable, Set
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

_loaded_hashes: dict[str, str] = {}
_SPEC = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


def default_metadata() -> MetaData:
    """SQLModel's shared MetaData, which every `table=True` model joins."""
    from sqlmodel import SQLModel

    return SQLModel.metadata


def resolve_metadata(metadata: Any, project_root: Path) -> MetaData:
    """A MetaData from a MetaData, a declarative base, a `module:attr` spec, or None (SQLModel)."""
    if metadata is None:
        return default_metadata()
    if isinstance(metadata, str):
        return load_spec(metadata, project_root)
    return _as_metadata(metadata, repr(metadata))


def load_spec(spec: str, project_root: Path) -> MetaData:
    """Import `module:attr` (re-importing the module when its file changed) and take its MetaData."""
    check_spec(spec)
    module_name, _, attribute = spec.partition(":")
    root = str(project_root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = _fresh_module(module_name, project_root)
        value: Any = module
        for name in (attribute or "metadata").split("."):
            value = getattr(value, name)
    except ImportError as error:
        raise ConfigurationError(f"Cannot import '{module_name}' for the metadata: {error}") from error
    except AttributeError as error:
        raise ConfigurationError(f"'{spec}' does not name a MetaData: {error}") from error
    return _as_metadata(value, spec)


def check_spec(spec: str) -> None:
    """Refuse a metadata spec that is not `module` or `module:attribute`."""
    if not _SPEC.match(spec):
        raise ConfigurationError(f"'{spec}' is not of the form module:attribute.")


def _fresh_module(name: str, project_root: Path) -> Any:
    """The module, imported again (with its package's modules) when one of their files changed."""
    importlib.invalidate_caches()
    family = _family(name, project_root)
    if name in sys.modules and any(_changed(module) for module in family):
        forget_models(lambda cls: cls.__module__ in {m.__name__ for m in family})
        for module in family:
            sys.modules.pop(module.__name__, None)
            _drop_cached_bytecode(module.__file__)
    module = importlib.import_module(name)
    for loaded in _family(name, project_root):
        _loaded_hashes[loaded.__name__] = _content_hash(loaded.__file__)
    return module


def _family(name: str, project_root: Path) -> list[Any]:
    """The loaded modules of the package `name` belongs to, from files inside the project."""
    top = name.split(".")[0]
    root = project_root.resolve()
    found = []
    for module_name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (module_name == top or module_name.startswith(top + ".")) and path \
                and Path(path).resolve().is_relative_to(root):
            found.append(module)
    return found


def _changed(module: Any) -> bool:
    """Whether the module's file differs, by content, from when it was loaded here."""
    known = _loaded_hashes.get(module.__name__)
    return known is not None and _content_hash(module.__file__) != known


def _content_hash(path: str) -> str:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def _drop_cached_bytecode(path: str) -> None:
    """Remove a module's .pyc: an edit of the same size within the same second would reuse it."""
    import importlib.util

    with suppress(NotImplementedError, ValueError, OSError):
        Path(importlib.util.cache_from_source(path)).unlink(missing_ok=True)


def _as_metadata(value: Any, described: str) -> MetaData:
    from sqlalchemy import MetaData

    candidate = getattr(value, "metadata", value)
    if not isinstance(candidate, MetaData):
        raise ConfigurationError(f"{described} is not a MetaData or a declarative base.")
    return candidate


def registries(extra: Iterable[Any] = ()) -> list[Any]:
    """SQLModel's registry and any other declarative registries given (bases or registries)."""
    found = []
    if "sqlmodel" in sys.modules:
        from sqlmodel.main import default_registry

        found.append(default_registry)
    for item in extra:
        registry = getattr(item, "registry", None) or getattr(item, "_sa_registry", None)
        if registry is not None and hasattr(registry, "mappers") and registry not in found:
            found.append(registry)
    return found


def forget_models(
    should_forget: Callable[[type], bool], extra_registries: Iterable[Any] = (),
    keep: Set[int] = frozenset(),
) -> list[str]:
    """Unmap the model classes chosen (but not the mappers whose id is in `keep`) and drop their
    tables from their MetaData; names them."""
    forgotten = []
    for registry in registries(extra_registries):
        for mapper in list(registry.mappers):
            cls = mapper.class_
            if id(mapper) not in keep and should_forget(cls):
                forgotten.append(_forget_class(registry, mapper))
    return forgotten


def _forget_class(registry: Any, mapper: Any) -> str:
    cls = mapper.class_
    table = getattr(cls, "__table__", None)
    manager = mapper.class_manager
    registry._dispose_manager_and_mapper(manager)
    registry._managers.pop(manager, None)
    if table is not None:
        _remove_table(table)
    return cls.__name__


def _remove_table(table: Table) -> None:
    metadata = table.metadata
    if metadata.tables.get(table.key) is table:
        metadata.remove(table)


def begin_redefinition(source: str, namespace: dict[str, Any]) -> PendingRedefinition:
    """Before `source` runs: set aside the notebook's model classes that it defines again.

    A class is set aside when the code defines a class of the same name, or one whose table has
    the same name (`__tablename__`, or SQLModel's lower-cased class name); only classes defined
    in this namespace are touched, never those imported from modules. The cell's outcome decides:
    `commit()` forgets them for good, `rollback()` puts everything back as it was.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return PendingRedefinition(namespace, {}, [], [])
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if not classes:
        return PendingRedefinition(namespace, {}, [], [])
    names = {node.name for node in classes}
    tables = {_table_name(node) for node in classes}
    module = namespace.get("__name__", "__main__")
    bases = [namespace.get(getattr(base, "id", None)) for node in classes for base in node.bases]
    extra = [base for base in bases if base is not None]

    def redefined(cls: type) -> bool:
        if cls.__module__ != module:
            return False
        table = getattr(getattr(cls, "__table__", None), "name", None)
        return cls.__name__ in names or table in tables

    found = registries(extra)
    doomed = [(r, m) for r in found for m in list(r.mappers) if redefined(m.class_)]
    stale = _referring_to({m.class_ for _, m in doomed}, extra) if doomed else []
    pending = PendingRedefinition(namespace, {name: namespace.get(name, _MISSING) for name in names},
                                  extra, stale)
    for registry, mapper in doomed:
        pending.set_aside(registry, mapper)
    return pending


_MISSING = object()


class PendingRedefinition:
    """Model classes set aside while a cell defines them again, until the cell's outcome is known."""

    def __init__(self, namespace: dict[str, Any], names: dict[str, Any], extra: list[Any],
                 stale: list[str]) -> None:
        self.namespace = namespace
        self.names = names
        self.extra = extra
        self.stale = stale
        self.forgotten: list[str] = []
        self._aside: list[tuple[Any, Any, Table | None]] = []
        self._mappers_before = {id(m) for r in registries(extra) for m in r.mappers}

    def set_aside(self, registry: Any, mapper: Any) -> None:
        """Take one class out of the name lookup and its table out of the MetaData, for now."""
        cls = mapper.class_
        table = getattr(cls, "__table__", None)
        registry._dispose_cls(cls)
        if table is not None:
            _remove_table(table)
        self._aside.append((registry, mapper, table))
        self.forgotten.append(cls.__name__)

    def commit(self) -> None:
        """The cell succeeded: the classes set aside are forgotten for good."""
        if not self._aside:
            return
        from sqlalchemy.orm import instrumentation

        for registry, mapper, _table in self._aside:
            mapper._set_dispose_flags()
            instrumentation._instrumentation_factory.unregister(mapper.class_)
            registry._managers.pop(mapper.class_manager, None)
        self._aside.clear()

    def rollback(self) -> None:
        """The cell failed: forget what it mapped and put back the classes and tables set aside."""
        module = self.namespace.get("__name__", "__main__")
        forget_models(lambda cls: cls.__module__ == module, self.extra, keep=self._mappers_before)
        for registry, mapper, table in reversed(self._aside):
            if table is not None:
                _restore_table(table)
            _add_to_name_lookup(registry, mapper.class_)
        self._aside.clear()
        for name, value in self.names.items():
            if value is _MISSING:
                self.namespace.pop(name, None)
            else:
                self.namespace[name] = value


def _add_to_name_lookup(registry: Any, cls: type) -> None:
    """Make a class findable by name again (relationship("Name") strings)."""
    from sqlalchemy.orm import clsregistry

    add_class = getattr(clsregistry, "_add_class", None) or clsregistry.add_class
    add_class(cls.__name__, cls, registry._class_registry)


def _restore_table(table: Table) -> None:
    """Put a table back into its MetaData, in place of any table of that name defined since."""
    metadata = table.metadata
    if table.key in metadata.tables:
        metadata.remove(metadata.tables[table.key])
    metadata._add_table(table.name, table.schema, table)
    for fk in table.foreign_keys:
        _parent, table_key, column = fk._resolve_col_tokens()
        metadata._fk_memos[(table_key, column)].append(fk)


def _referring_to(classes: set[type], extra_registries: Iterable[Any]) -> list[str]:
    """The other models with a relationship to one of these classes (they keep the old class)."""
    from sqlalchemy.orm import RelationshipProperty

    names = {cls.__name__ for cls in classes}
    stale = []
    for registry in registries(extra_registries):
        for mapper in registry.mappers:
            if mapper.class_ in classes:
                continue
            relationships = [p for p in mapper._props.values() if isinstance(p, RelationshipProperty)]
            if any(_relates_to(prop, classes, names) for prop in relationships):
                stale.append(mapper.class_.__name__)
    return stale


def _relates_to(prop: Any, classes: set[type], names: set[str]) -> bool:
    """Whether one relationship points at one of these classes (by name, class or resolved entity)."""
    target = prop.argument
    if callable(target) and not isinstance(target, type):
        target = None  # a lambda: only its resolved entity tells
    if isinstance(target, str):
        return target.rsplit(".", 1)[-1] in names
    entity = getattr(prop, "__dict__", {}).get("entity")  # only when already resolved
    return target in classes or (entity is not None and entity.class_ in classes)


def model_tables(metadata: Any) -> list[Table]:
    """The tables of a MetaData, or of a list of them (as env.py may give autogenerate)."""
    if metadata is None:
        return []
    many = metadata if isinstance(metadata, list | tuple) else [metadata]
    return [table for each in many for table in each.tables.values()]


def drops_every_table(directives: Iterable[Any], metadata: Any) -> list[str]:
    """The tables an autogenerated revision would drop because the models hold no table at all
    (they were not found): every table of the database; else an empty list."""
    from alembic.operations import ops

    if model_tables(metadata):
        return []
    top = [op for d in directives for up in d.upgrade_ops_list for op in up.ops]
    return [op.table_name for op in top if isinstance(op, ops.DropTableOp)]


def drop_all_refusal(dropped: list[str], spec: Any) -> str:
    """Why an autogenerate that drops every table wrote nothing, and how to point at the models."""
    where = spec if isinstance(spec, str) else ("SQLModel.metadata" if spec is None else repr(spec))
    names = ", ".join(sorted(dropped)[:8]) + (", ..." if len(dropped) > 8 else "")
    return (
        f"Not written: this revision would drop every table of the database ({names}). The models "
        f"were looked for in {where}, which holds no table in this process; define or import them "
        "first, or point at them with --metadata module:attribute or `metadata = \"module:attribute\"` "
        "under [tool.framefox_magic] in pyproject.toml. Add --yes to write it anyway."
    )


def _table_name(node: Any) -> str:
    import ast

    for statement in node.body:
        if (isinstance(statement, ast.Assign)
                and any(getattr(t, "id", None) == "__tablename__" for t in statement.targets)
                and isinstance(statement.value, ast.Constant)):
            return str(statement.value.value)
    return node.name.lower()
