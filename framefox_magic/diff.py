"""Alembic operations as rows of a Diff: from autogenerate, or recorded from a revision script."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    "CreateEnumOp": "create_enum",
    "DropEnumOp": "drop_enum",
    "SyncEnumValuesOp": "sync_enum_values",
    "RenamingSyncEnumValuesOp": "sync_enum_values",
}
_ALWAYS_DESTRUCTIVE = {"drop_table", "drop_column"}
_DATA_CHANGING_SQL = re.compile(r"\b(delete|update|drop|truncate|replace)\b", re.IGNORECASE)
# bytes of storage per integer type name: a change to a smaller one can reject values
_INTEGER_BYTES = {"TINYINT": 1, "SMALLINT": 2, "SMALLINTEGER": 2, "MEDIUMINT": 3, "BIGINT": 8,
                  "BIGINTEGER": 8}
_TEXT_LENGTHS = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215}
_DIALECT: ContextVar[str | None] = ContextVar("framefox_magic_diff_dialect", default=None)


def flatten(operations: Iterable[Any]) -> Iterator[Any]:
    """Every operation, with containers (ModifyTableOps, UpgradeOps) opened up."""
    for operation in operations:
        if hasattr(operation, "ops"):
            yield from flatten(operation.ops)
        else:
            yield operation


def rows_from_ops(operations: Iterable[Any], revision: str | None = None,
                  dialect: str | None = None) -> list[DiffRow]:
    """One row per operation, in order; types written as the database's dialect names them."""
    token = _DIALECT.set(dialect)
    try:
        return [row_from_op(operation, revision) for operation in flatten(operations)]
    finally:
        _DIALECT.reset(token)


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
    """The table, with its schema when it is not the default one (other.audit)."""
    name = None
    for attribute in ("table_name", "source_table"):
        if value := getattr(operation, attribute, None):
            name = str(value)
            break
    else:
        name = getattr(getattr(operation, "table", None), "name", None)
    schema = getattr(operation, "schema", None) or getattr(operation, "source_schema", None)
    return f"{schema}.{name}" if name and schema else name


def _type_text(type_: Any) -> str:
    """A type as the database names it (TIMESTAMP WITH TIME ZONE, INTEGER[]), enums with their values."""
    if type_ is None:
        return "?"
    try:
        text = type_.compile(dialect=_dialect(_DIALECT.get()))
    except Exception:
        try:
            text = str(type_)
        except Exception:
            return type(type_).__name__
    enums = getattr(type_, "enums", None)
    if enums:
        name = getattr(type_, "name", None)
        text = f"{name + ' ' if name else ''}ENUM({', '.join(repr(value) for value in enums)})"
    return text


@functools.cache
def _dialect(name: str | None) -> Any:
    """A dialect to compile types with; SQLAlchemy's default one when the database is unknown."""
    from sqlalchemy.engine import default, make_url

    if name is None:
        return default.StrCompileDialect()
    return make_url(f"{name}://").get_dialect()()


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


def _describe_enum(operation: Any) -> tuple[str | None, str]:
    """alembic-postgresql-enum's operations: the type, its values, what is renamed."""
    name = f"{operation.schema}.{operation.name}" if operation.schema else operation.name
    values = getattr(operation, "enum_values", None)
    if values is not None:
        return name, ", ".join(values)
    detail = f"{', '.join(operation.old_values)} -> {', '.join(operation.new_values)}"
    renamed = getattr(operation, "renamed_values", ())
    if renamed:
        detail += "; renamed " + ", ".join(f"{old} to {new}" for old, new in renamed)
    return name, detail


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
    "create_enum": _describe_enum,
    "drop_enum": _describe_enum,
    "sync_enum_values": _describe_enum,
}


def _sql_text(sqltext: Any) -> str:
    return getattr(sqltext, "text", None) or str(sqltext)


def _is_destructive(name: str, operation: Any) -> bool:
    """Whether the operation can lose data or reject rows that exist (a widening type cannot)."""
    if name in _ALWAYS_DESTRUCTIVE:
        return True
    if name == "execute":
        return bool(_DATA_CHANGING_SQL.search(_sql_text(operation.sqltext)))
    if name == "alter_column":
        if operation.modify_nullable is False:  # NULLs present make it fail (or become defaults)
            return True
        if operation.modify_type is not None:
            return narrows(operation.existing_type, operation.modify_type)
    return False


def type_family(type_: Any) -> str:
    """integer, decimal, float, string, or the type's own name: which values it holds."""
    from sqlalchemy import Float, Integer, Numeric, String

    if isinstance(type_, Integer):
        return "integer"
    if isinstance(type_, Float):
        return "float"
    if isinstance(type_, Numeric):
        return "decimal"
    if isinstance(type_, String) and not getattr(type_, "enums", None):
        return "string"
    return type(type_).__name__.upper()


def integer_bytes(type_: Any) -> int:
    """Storage size of an integer type, in bytes (4 unless it says otherwise)."""
    return _INTEGER_BYTES.get(type(type_).__name__.upper(), 4)


def string_length(type_: Any) -> int | None:
    """The most characters a string type holds; None for no limit."""
    length = getattr(type_, "length", None)
    if length is not None or "mysql" not in type(type_).__module__:
        return length
    return _TEXT_LENGTHS.get(type(type_).__name__.upper())  # MySQL's TEXT types have limits


def narrows(old: Any, new: Any) -> bool:
    """Whether changing a column from type `old` to `new` can lose or reject existing data."""
    if old is None:
        return True  # the script does not say what the column was: assume the worst
    family = type_family(old)
    if family != type_family(new):
        return not (family == "integer" and _holds_any_integer(new))
    if family == "integer":
        return integer_bytes(new) < integer_bytes(old)
    if family == "string":
        before, after = string_length(old), string_length(new)
        return after is not None and (before is None or after < before)
    if family == "decimal":
        return _numeric_narrows(old, new)
    if family == "float":
        return (getattr(new, "precision", None) or 53) < (getattr(old, "precision", None) or 53)
    return type(old) is not type(new) and type(old).__name__.upper() != type(new).__name__.upper()


def _holds_any_integer(type_: Any) -> bool:
    """Unbounded text or an unconstrained decimal: every integer fits."""
    family = type_family(type_)
    if family == "string":
        return string_length(type_) is None
    return family == "decimal" and getattr(type_, "precision", None) is None


def _numeric_narrows(old: Any, new: Any) -> bool:
    """A decimal narrows when it keeps fewer digits before or after the point."""
    if new.precision is None:
        return False
    if old.precision is None:
        return True
    old_scale, new_scale = old.scale or 0, new.scale or 0
    return new_scale < old_scale or new.precision - new_scale < old.precision - old_scale


def record_script(module: Any, dialect_name: str, direction: str = "upgrade",
                  output: Any = None) -> list[Any]:
    """Run a revision's upgrade() (or downgrade()) against recording operations; no database (SQL run
    on op.get_bind() goes to `output`)."""
    from alembic.operations import BatchOperations, Operations
    from alembic.operations.ops import CreateTableOp
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(
        dialect_name=dialect_name, opts={"as_sql": True, "output_buffer": output or _Discard()}
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
