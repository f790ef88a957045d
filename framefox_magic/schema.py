"""The schema as data, for drawing it: read from a database, or replayed from the operations that
revision scripts record (no database needed), and what one revision changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

ADDED, CHANGED = "added", "changed"


@dataclass
class ColumnShape:
    """One column as a diagram shows it."""

    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False
    references: str | None = None  # "table.column" for a foreign key


@dataclass
class TableShape:
    """One table: its columns, in order, and the tables its foreign keys point at."""

    name: str
    columns: list[ColumnShape] = field(default_factory=list)
    schema: str | None = None

    @property
    def label(self) -> str:
        """The name as users write it, with its schema when it has one."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> ColumnShape | None:
        """The column of that name, if any."""
        return next((c for c in self.columns if c.name == name), None)

    def referenced_tables(self) -> list[str]:
        """The tables this one's foreign keys point at."""
        return sorted({c.references.rsplit(".", 1)[0] for c in self.columns if c.references})


Tables = dict[str, TableShape]


def from_connection(connection: Connection, skip: Iterable[str] = ()) -> Tables:
    """The tables of the database's default schema, as reflected now."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    skipped = set(skip)
    tables: Tables = {}
    for name in sorted(inspector.get_table_names()):
        if name in skipped:
            continue
        primary = set(inspector.get_pk_constraint(name).get("constrained_columns") or ())
        references = _reflected_references(inspector.get_foreign_keys(name))
        tables[name] = TableShape(name, [
            ColumnShape(c["name"], _type_text(c["type"], connection.dialect), bool(c.get("nullable", True)),
                        c["name"] in primary, references.get(c["name"]))
            for c in inspector.get_columns(name)
        ])
    return tables


def _reflected_references(foreign_keys: list[dict[str, Any]]) -> dict[str, str]:
    found = {}
    for key in foreign_keys:
        for local, remote in zip(key["constrained_columns"], key["referred_columns"], strict=False):
            found[local] = f"{key['referred_table']}.{remote}"
    return found


def replay(operations: Iterable[Any], tables: Tables | None = None, dialect: Any = None) -> Tables:
    """Apply recorded alembic operations to a copy of `tables` (default: empty) and return it."""
    import copy

    result = copy.deepcopy(tables) if tables else {}
    for operation in operations:
        handler = _REPLAY.get(type(operation).__name__)
        if handler is not None:
            handler(result, operation, dialect)
    return result


def _column_shape(column: Any, dialect: Any) -> ColumnShape:
    references = next((fk.target_fullname for fk in column.foreign_keys), None)
    return ColumnShape(column.name, _type_text(column.type, dialect), bool(column.nullable),
                       bool(column.primary_key), references)


def _create_table(tables: Tables, op: Any, dialect: Any) -> None:
    from sqlalchemy import Column, ForeignKeyConstraint, PrimaryKeyConstraint

    columns = [_column_shape(c, dialect) for c in op.columns if isinstance(c, Column)]
    table = TableShape(op.table_name, columns, op.schema)
    for item in op.columns:
        if isinstance(item, PrimaryKeyConstraint):
            for name in _constrained(item):
                if shape := table.column(name):
                    shape.primary_key = True
        elif isinstance(item, ForeignKeyConstraint):
            targets = [element.target_fullname for element in item.elements]
            for name, target in zip(item.column_keys, targets, strict=False):
                if shape := table.column(name):
                    shape.references = target
    tables[op.table_name] = table


def _constrained(constraint: Any) -> list[str]:
    """The names of a constraint's columns, whether or not it is attached to a table yet."""
    if len(constraint.columns):
        return list(constraint.columns.keys())
    return [getattr(c, "name", c) for c in getattr(constraint, "_pending_colargs", ())]


def _drop_table(tables: Tables, op: Any, dialect: Any) -> None:
    tables.pop(op.table_name, None)


def _rename_table(tables: Tables, op: Any, dialect: Any) -> None:
    if (table := tables.pop(op.table_name, None)) is not None:
        table.name = op.new_table_name
        tables[op.new_table_name] = table


def _add_column(tables: Tables, op: Any, dialect: Any) -> None:
    table = tables.setdefault(op.table_name, TableShape(op.table_name, schema=op.schema))
    table.columns.append(_column_shape(op.column, dialect))


def _drop_column(tables: Tables, op: Any, dialect: Any) -> None:
    if (table := tables.get(op.table_name)) is not None:
        table.columns = [c for c in table.columns if c.name != op.column_name]


def _alter_column(tables: Tables, op: Any, dialect: Any) -> None:
    table = tables.get(op.table_name)
    column = table.column(op.column_name) if table else None
    if column is None:
        return
    if op.modify_type is not None:
        column.type = _type_text(op.modify_type, dialect)
    if op.modify_nullable is not None:
        column.nullable = bool(op.modify_nullable)
    if op.modify_name is not None:
        column.name = op.modify_name


def _create_foreign_key(tables: Tables, op: Any, dialect: Any) -> None:
    table = tables.get(op.source_table)
    for local, remote in zip(op.local_cols, op.remote_cols, strict=False):
        if table and (column := table.column(local)):
            column.references = f"{op.referent_table}.{remote}"


def _drop_constraint(tables: Tables, op: Any, dialect: Any) -> None:
    if op.constraint_type != "foreignkey" or (table := tables.get(op.table_name)) is None:
        return
    for column in table.columns:  # without the constraint's columns, a named FK drop clears them all
        column.references = None


_REPLAY = {
    "CreateTableOp": _create_table,
    "DropTableOp": _drop_table,
    "RenameTableOp": _rename_table,
    "AddColumnOp": _add_column,
    "DropColumnOp": _drop_column,
    "AlterColumnOp": _alter_column,
    "CreateForeignKeyOp": _create_foreign_key,
    "DropConstraintOp": _drop_constraint,
}


def changes_made_by(operations: Iterable[Any]) -> tuple[dict[str, str], list[str]]:
    """What one revision's operations did: {"table" or "table.column": added|changed}, and what
    they removed ("table" or "table.column")."""
    marks: dict[str, str] = {}
    removed: list[str] = []
    for op in operations:
        kind = type(op).__name__
        table = getattr(op, "table_name", None) or getattr(op, "source_table", None)
        if kind == "CreateTableOp":
            marks[table] = ADDED
        elif kind == "RenameTableOp":
            marks[op.new_table_name] = CHANGED
        elif kind == "AddColumnOp":
            marks.setdefault(f"{table}.{op.column.name}", ADDED)
        elif kind == "AlterColumnOp":
            marks.setdefault(f"{table}.{op.modify_name or op.column_name}", CHANGED)
        elif kind == "CreateForeignKeyOp":
            for column in op.local_cols:
                marks.setdefault(f"{table}.{column}", CHANGED)
        elif kind == "DropTableOp":
            removed.append(table)
        elif kind == "DropColumnOp":
            removed.append(f"{table}.{op.column_name}")
    return marks, removed


def _type_text(type_: Any, dialect: Any) -> str:
    """A column type as the database spells it (the generic name when it cannot be compiled)."""
    if dialect is not None:
        try:
            return str(type_.compile(dialect=dialect))
        except Exception:  # a type this dialect cannot render (e.g. a PostgreSQL type on SQLite)
            pass
    try:
        return str(type_)
    except Exception:
        return type(type_).__name__


def snapshot(connection: Connection, skip: Iterable[str] = ()) -> dict[str, Any]:
    """What makes two schemas the same, in comparable form: per table its columns (type and
    nullability), primary key, foreign keys, indexes and unique constraints; PostgreSQL's enums.
    Constraint and index names are left out: the same structure may carry other generated names."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    skipped = set(skip)
    found: dict[str, Any] = {}
    for name in sorted(set(inspector.get_table_names()) - skipped):
        found[name] = {
            "columns": sorted((c["name"], _type_text(c["type"], connection.dialect), bool(c["nullable"]))
                              for c in inspector.get_columns(name)),
            "primary key": tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ()),
            "foreign keys": sorted((tuple(k["constrained_columns"]), k["referred_table"],
                                    tuple(k["referred_columns"])) for k in inspector.get_foreign_keys(name)),
            "indexes": sorted((tuple(map(str, i["column_names"])), bool(i["unique"]))
                              for i in inspector.get_indexes(name)),
            "unique constraints": sorted(tuple(u["column_names"])
                                         for u in inspector.get_unique_constraints(name)),
        }
    if connection.dialect.name == "postgresql":
        found["(enums)"] = sorted((e["name"], tuple(e["labels"])) for e in inspector.get_enums())
    return found


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Where two snapshots differ, one line each ('table: part: expected ... but found ...')."""
    lines = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            lines.append(f"{table}: missing")
        elif table not in expected:
            lines.append(f"{table}: not expected")
        elif table == "(enums)":
            if expected[table] != actual[table]:
                lines.append(f"enums: expected {expected[table]} but found {actual[table]}")
        else:
            lines += [f"{table}: {part}: expected {expected[table][part]} but found {actual[table][part]}"
                      for part in expected[table] if expected[table][part] != actual[table][part]]
    return lines
