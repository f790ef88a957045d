"""Alembic operations as rows of a Diff: from autogenerate, or recorded from a revision script."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from .render import counted
from .results import DiffRow

OP_NAMES = {
    "AddColumnOp": "add_column",
    "DropColumnOp": "drop_column",
    "AlterColumnOp": "alter_column",
    "CreateTableOp": "create_table",
    "DropTableOp": "drop_table",
    "RenameTableOp": "rename_table",
    "CreateIndexOp": "create_index",
    "DropIndexOp": "drop_index",
    "CreateForeignKeyOp": "create_foreign_key",
    "CreateUniqueConstraintOp": "create_unique_constraint",
    "CreatePrimaryKeyOp": "create_primary_key",
    "CreateCheckConstraintOp": "create_check_constraint",
    "AddConstraintOp": "add_constraint",
    "DropConstraintOp": "drop_constraint",
    "CreateTableCommentOp": "create_table_comment",
    "DropTableCommentOp": "drop_table_comment",
    "BulkInsertOp": "bulk_insert",
    "ExecuteSQLOp": "execute",
}
_ALWAYS_DESTRUCTIVE = {"drop_table", "drop_column", "drop_index", "drop_constraint"}
_DATA_CHANGING_SQL = re.compile(r"\b(delete|update|drop|truncate|replace)\b", re.IGNORECASE)
_WIDER_TYPES = {
    ("SmallInteger", "Integer"), ("SmallInteger", "BigInteger"), ("Integer", "BigInteger"),
    ("String", "Text"), ("Unicode", "UnicodeText"), ("String", "Unicode"), ("Float", "Double"),
    ("VARCHAR", "TEXT"), ("AutoString", "Text"), ("AutoString", "String"), ("String", "AutoString"),
}


def flatten(operations: Iterable[Any]) -> Iterator[Any]:
    """Every operation, with containers (ModifyTableOps, UpgradeOps) opened up."""
    for operation in operations:
        if hasattr(operation, "ops"):
            yield from flatten(operation.ops)
        else:
            yield operation


def rows_from_ops(operations: Iterable[Any], revision: str | None = None) -> list[DiffRow]:
    """One row per operation, in order."""
    return [row_from_op(operation, revision) for operation in flatten(operations)]


def row_from_op(operation: Any, revision: str | None = None) -> DiffRow:
    """Describe one alembic operation: what it touches, its details, whether it can lose data."""
    name = OP_NAMES.get(type(operation).__name__, type(operation).__name__)
    table = _table_of(operation)
    target, detail = _DESCRIBE.get(name, _describe_generic)(operation)
    return DiffRow(
        revision=revision,
        op=name,
        table=table,
        target=target,
        detail=detail,
        destructive=_is_destructive(name, operation),
    )


def unrecorded_row(revision: str | None, error: BaseException) -> DiffRow:
    """The one row for a script whose operations cannot be recorded without a database."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DiffRow(
        revision=revision,
        op="unrecorded",
        table=None,
        target=None,
        detail=f"operations could not be recorded offline ({type(error).__name__}: {reason})",
        destructive=False,
    )


def _table_of(operation: Any) -> str | None:
    for attribute in ("table_name", "source_table"):
        if value := getattr(operation, attribute, None):
            return str(value)
    table = getattr(operation, "table", None)
    return getattr(table, "name", None)


def _type_text(type_: Any) -> str:
    if type_ is None:
        return "?"
    try:
        return str(type_)
    except Exception:
        return type(type_).__name__


def _column_text(column: Any) -> str:
    text = f"{column.name} {_type_text(column.type)}"
    if column.primary_key:
        text += " PRIMARY KEY"
    elif not column.nullable:
        text += " NOT NULL"
    if column.foreign_keys:
        text += " -> " + ", ".join(fk.target_fullname for fk in column.foreign_keys)
    return text


def _describe_create_table(operation: Any) -> tuple[str | None, str]:
    from sqlalchemy import Column

    columns = [c for c in operation.columns if isinstance(c, Column)]
    return None, ", ".join(_column_text(c) for c in columns)


def _describe_add_column(operation: Any) -> tuple[str | None, str]:
    return operation.column.name, _column_text(operation.column).split(" ", 1)[1]


def _describe_drop_column(operation: Any) -> tuple[str | None, str]:
    return operation.column_name, ""


def _describe_alter_column(operation: Any) -> tuple[str | None, str]:
    changes = []
    if operation.modify_type is not None:
        changes.append(f"type {_type_text(operation.existing_type)} -> {_type_text(operation.modify_type)}")
    if operation.modify_nullable is not None:
        changes.append("NULL allowed" if operation.modify_nullable else "NOT NULL")
    if operation.modify_name is not None:
        changes.append(f"renamed to {operation.modify_name}")
    if operation.modify_server_default is not False:
        changes.append(f"server default {operation.modify_server_default!r}")
    if operation.modify_comment is not False:
        changes.append(f"comment {operation.modify_comment!r}")
    return operation.column_name, "; ".join(changes)


def _describe_index(operation: Any) -> tuple[str | None, str]:
    columns = getattr(operation, "columns", None) or []
    names = ", ".join(getattr(c, "name", None) or str(c) for c in columns)
    unique = " unique" if getattr(operation, "unique", False) else ""
    return operation.index_name, f"({names}){unique}" if names else unique.strip()


def _describe_foreign_key(operation: Any) -> tuple[str | None, str]:
    local = ", ".join(operation.local_cols)
    remote = ", ".join(operation.remote_cols)
    return operation.constraint_name, f"({local}) -> {operation.referent_table}({remote})"


def _describe_constraint(operation: Any) -> tuple[str | None, str]:
    columns = getattr(operation, "columns", None)
    kind = getattr(operation, "constraint_type", None) or ""
    detail = f"({', '.join(map(str, columns))})" if columns else kind
    return getattr(operation, "constraint_name", None), detail


def _describe_rename_table(operation: Any) -> tuple[str | None, str]:
    return operation.new_table_name, f"renamed to {operation.new_table_name}"


def _describe_execute(operation: Any) -> tuple[str | None, str]:
    return None, " ".join(_sql_text(operation.sqltext).split())[:200]


def _describe_bulk_insert(operation: Any) -> tuple[str | None, str]:
    return None, counted(len(operation.rows), "row")


def _describe_generic(operation: Any) -> tuple[str | None, str]:
    return None, ""


_DESCRIBE: dict[str, Callable[[Any], tuple[str | None, str]]] = {
    "create_table": _describe_create_table,
    "add_column": _describe_add_column,
    "drop_column": _describe_drop_column,
    "alter_column": _describe_alter_column,
    "create_index": _describe_index,
    "drop_index": _describe_index,
    "create_foreign_key": _describe_foreign_key,
    "create_unique_constraint": _describe_constraint,
    "create_primary_key": _describe_constraint,
    "create_check_constraint": _describe_constraint,
    "add_constraint": _describe_constraint,
    "drop_constraint": _describe_constraint,
    "rename_table": _describe_rename_table,
    "execute": _describe_execute,
    "bulk_insert": _describe_bulk_insert,
}


def _sql_text(sqltext: Any) -> str:
    return getattr(sqltext, "text", None) or str(sqltext)


def _is_destructive(name: str, operation: Any) -> bool:
    if name in _ALWAYS_DESTRUCTIVE:
        return True
    if name == "execute":
        return bool(_DATA_CHANGING_SQL.search(_sql_text(operation.sqltext)))
    if name == "alter_column" and operation.modify_type is not None:
        return _narrows(operation.existing_type, operation.modify_type)
    return False


def _narrows(old: Any, new: Any) -> bool:
    """Whether changing a column from type `old` to `new` can lose or reject existing data."""
    if old is None:
        return True
    old_name, new_name = type(old).__name__, type(new).__name__
    old_length, new_length = getattr(old, "length", None), getattr(new, "length", None)
    if old_name == new_name or (old_name, new_name) in _WIDER_TYPES:
        if new_length is None:
            return False
        return old_length is None or new_length < old_length
    for attribute in ("precision", "scale"):
        before, after = getattr(old, attribute, None), getattr(new, attribute, None)
        if before is not None and after is not None and after < before:
            return True
    return True


def record_script(module: Any, dialect_name: str, direction: str = "upgrade") -> list[Any]:
    """Run a revision's upgrade() (or downgrade()) against recording operations; no database."""
    from alembic.operations import BatchOperations, Operations
    from alembic.operations.ops import CreateTableOp
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(
        dialect_name=dialect_name, opts={"as_sql": True, "output_buffer": _Discard()}
    )
    recorded: list[Any] = []

    def record(operation: Any) -> Any:
        recorded.append(operation)
        if isinstance(operation, CreateTableOp):
            return operation.to_table(context)
        return None

    @contextmanager
    def batch_alter_table(table_name: str, schema: str | None = None, **kw: Any):
        batch = BatchOperations(context, impl=SimpleNamespace(table_name=table_name, schema=schema))
        batch.invoke = record
        yield batch

    operations = Operations(context)
    operations.invoke = record
    operations.batch_alter_table = batch_alter_table
    operations._install_proxy()
    try:
        getattr(module, direction)()
    finally:
        operations._remove_proxy()
    return recorded


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
