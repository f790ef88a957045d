"""The MetaData autogenerate compares with, and forgetting model classes that are defined again."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

_loaded_mtimes: dict[str, float] = {}
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
        module = _fresh_module(module_name)
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


def _fresh_module(name: str) -> Any:
    importlib.invalidate_caches()
    module = sys.modules.get(name)
    if module is None:
        module = importlib.import_module(name)
    elif _file_changed(module, name):
        forget_models(lambda cls: cls.__module__ == name)
        module = importlib.reload(module)
    _loaded_mtimes[name] = _mtime(module)
    return module


def _file_changed(module: Any, name: str) -> bool:
    """Whether the module's file changed since it was loaded here; one with no file (a notebook's
    __main__) never has."""
    return bool(getattr(module, "__file__", None)) and _mtime(module) != _loaded_mtimes.get(name)


def _mtime(module: Any) -> float:
    path = getattr(module, "__file__", None)
    try:
        return Path(path).stat().st_mtime if path else 0.0
    except OSError:
        return 0.0


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
    should_forget: Callable[[type], bool], extra_registries: Iterable[Any] = ()
) -> list[str]:
    """Unmap the model classes chosen and drop their tables from their MetaData; names them."""
    forgotten = []
    for registry in registries(extra_registries):
        for mapper in list(registry.mappers):
            cls = mapper.class_
            if should_forget(cls):
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


def forget_redefined(source: str, namespace: dict[str, Any]) -> Redefinition:
    """Before `source` runs: forget the notebook's model classes that it defines again.

    A class is forgotten when the code defines a class of the same name, or one whose table has
    the same name (`__tablename__`, or SQLModel's lower-cased class name); only classes defined
    in this namespace are touched, never those imported from modules.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return Redefinition([], [])
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if not classes:
        return Redefinition([], [])
    names = {node.name for node in classes}
    tables = {_table_name(node) for node in classes}
    module = namespace.get("__name__", "__main__")
    bases = [namespace.get(getattr(base, "id", None)) for node in classes for base in node.bases]

    def redefined(cls: type) -> bool:
        if cls.__module__ != module:
            return False
        table = getattr(getattr(cls, "__table__", None), "name", None)
        return cls.__name__ in names or table in tables

    extra = [base for base in bases if base is not None]
    doomed = {m.class_ for r in registries(extra) for m in r.mappers if redefined(m.class_)}
    left_behind = _referring_to(doomed, extra)
    return Redefinition(forget_models(redefined, extra), left_behind)


class Redefinition(NamedTuple):
    """What a model cell's run forgot, and which remaining models still point at the old classes."""

    forgotten: list[str]
    stale: list[str]


def _referring_to(classes: set[type], extra_registries: Iterable[Any]) -> list[str]:
    """The other models with a relationship to one of these classes (they keep the old class)."""
    names = {cls.__name__ for cls in classes}
    stale = []
    for registry in registries(extra_registries):
        for mapper in registry.mappers:
            if mapper.class_ in classes:
                continue
            for prop in mapper._props.values():
                target = getattr(prop, "argument", None)
                if isinstance(target, str):
                    hit = target.rsplit(".", 1)[-1] in names
                else:
                    entity = getattr(prop, "__dict__", {}).get("entity")  # ColumnProperty has slots
                    hit = target in classes or (entity is not None and entity.class_ in classes)
                if hit:
                    stale.append(mapper.class_.__name__)
                    break
    return stale


def _table_name(node: Any) -> str:
    import ast

    for statement in node.body:
        if (isinstance(statement, ast.Assign)
                and any(getattr(t, "id", None) == "__tablename__" for t in statement.targets)
                and isinstance(statement.value, ast.Constant)):
            return str(statement.value.value)
    return node.name.lower()
