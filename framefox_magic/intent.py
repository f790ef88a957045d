"""What the user meant: renames instead of drop + add, and revisions that run up and down on their dialect."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, MigrationError, RenameQuestion

NAMING_NOTE = (
    "When the models set no naming convention, its env.py gives them one (uq_/fk_/pk_<table>_<column>), "
    "so that constraints get names and downgrades can drop them"
)
_RENAME_SPEC = re.compile(r"^(?P<old>[\w$]+(?:\.[\w$]+){0,2}):(?:(?P<new_schema>[\w$]+)\.)?(?P<new>[\w$]+)$")


@dataclass(frozen=True)
class RenameCandidate:
    """A dropped column (or table) and an added one that could be the same thing renamed."""

    kind: str  # "column", "table" or "enum value"
    table: str | None  # the column's table or the enum type; None for a table rename
    old: str
    new: str
    schema: str | None = None
    either: bool = False  # asked as A.B:NEW, which names a column of table A or table B in schema A

    @property
    def spec(self) -> str:
        """How the user names it: hero.name:full_name, hero:person, SCHEMA.hero.name:full_name,
        SCHEMA.hero:person, or ENUM.VALUE:NEW."""
        # an enum's schema is always set by its sync operation: named only when asked for
        prefix = f"{self.schema}." if self.schema and self.kind != "enum value" else ""
        if self.kind == "table":
            return f"{prefix}{self.old}:{self.new}"
        return f"{prefix}{self.table}.{self.old}:{self.new}"

    def readings(self) -> list[RenameCandidate]:
        """What the user may have meant: A.B:NEW is a column of table A or the table B in schema A."""
        if not self.either:
            return [self]
        return [RenameCandidate("column", self.table, self.old, self.new),
                RenameCandidate("table", None, self.old, self.new, schema=self.table)]


def parse_renames(specs: Iterable[str]) -> list[RenameCandidate]:
    """[SCHEMA.]TABLE.COLUMN:NEW and [SCHEMA.]TABLE:NEW as renames; anything else is refused before
    any work. TABLE.COLUMN:NEW may also read SCHEMA.TABLE:NEW; SCHEMA.TABLE:SCHEMA.NEW only that."""
    renames = []
    for spec in specs:
        found = _RENAME_SPEC.match(spec.strip())
        if found is None:
            raise ConfigurationError(
                f"'{spec}' is not a rename: write [SCHEMA.]TABLE.COLUMN:NEW_NAME or [SCHEMA.]TABLE:NEW_NAME."
            )
        parts = found["old"].split(".")
        if found["new_schema"] is not None:
            if len(parts) != 2 or parts[0] != found["new_schema"]:
                raise ConfigurationError(f"'{spec}': a table keeps its schema; write SCHEMA.TABLE:SCHEMA.NEW "
                                         "with the same schema on both sides.")
            renames.append(RenameCandidate("table", None, parts[1], found["new"], schema=parts[0]))
        elif len(parts) == 3:
            renames.append(RenameCandidate("column", parts[1], parts[2], found["new"], schema=parts[0]))
        elif len(parts) == 2:
            renames.append(RenameCandidate("column", parts[0], parts[1], found["new"], either=True))
        else:
            renames.append(RenameCandidate("table", None, parts[0], found["new"]))
    return renames


# ---------------------------------------------------------------- finding candidates


def rename_candidates(upgrade_ops: Any) -> list[RenameCandidate]:
    """Every drop + add in these operations that could be one rename."""
    return [*_column_candidates(upgrade_ops), *_table_candidates(upgrade_ops),
            *_enum_value_candidates(upgrade_ops)]


def _column_candidates(upgrade_ops: Any) -> list[RenameCandidate]:
    from alembic.operations import ops

    found = []
    for group in upgrade_ops.ops:
        if not isinstance(group, ops.ModifyTableOps):
            continue
        drops = [op for op in group.ops if isinstance(op, ops.DropColumnOp)]
        adds = [op for op in group.ops if isinstance(op, ops.AddColumnOp)]
        for drop in drops:
            for add in adds:
                if compatible(drop.to_column(), add.column):
                    found.append(RenameCandidate("column", group.table_name, drop.column_name,
                                                 add.column.name, group.schema))
    return found


def _table_candidates(upgrade_ops: Any) -> list[RenameCandidate]:
    from alembic.operations import ops

    drops = [op for op in upgrade_ops.ops if isinstance(op, ops.DropTableOp)]
    creates = [op for op in upgrade_ops.ops if isinstance(op, ops.CreateTableOp)]
    return [
        RenameCandidate("table", None, drop.table_name, create.table_name, create.schema)
        for drop in drops
        for create in creates
        if drop.schema == create.schema and _same_columns(drop.to_table(), create.to_table())
    ]


def _enum_value_candidates(upgrade_ops: Any) -> list[RenameCandidate]:
    """A PostgreSQL enum that loses a value and gains another (alembic-postgresql-enum's sync op)."""
    found = []
    for op in upgrade_ops.ops:
        if not _is_enum_sync(op):
            continue
        renamed = dict(getattr(op, "renamed_values", ()))
        removed = [v for v in op.old_values if v not in op.new_values and v not in renamed]
        added = [v for v in op.new_values if v not in op.old_values and v not in renamed.values()]
        found += [RenameCandidate("enum value", op.name, old, new, op.schema)
                  for old in removed for new in added]
    return found


def _is_enum_sync(op: Any) -> bool:
    return any(cls.__name__ == "SyncEnumValuesOp" for cls in type(op).__mro__)


def compatible(reflected: Any, model: Any) -> bool:
    """A column that could carry the other's data as it is: same kind of type, same nullability."""
    from sqlalchemy.types import NullType

    if isinstance(reflected.type, NullType) or isinstance(model.type, NullType):
        return False
    return reflected.type._type_affinity is model.type._type_affinity and reflected.nullable == model.nullable


def _same_columns(reflected: Any, model: Any) -> bool:
    old = {column.name: column for column in reflected.columns}
    new = {column.name: column for column in model.columns}
    return bool(old) and old.keys() == new.keys() and all(compatible(old[n], new[n]) for n in old)


def mark_candidates(rows: list, generated_revisions: Sequence[Any]) -> list:
    """Diff rows with each drop and add that could be a rename saying so."""
    from dataclasses import replace

    candidates = [c for script in generated_revisions for ops in script.upgrade_ops_list
                  for c in rename_candidates(ops)]
    marked = []
    for row in rows:
        hints = [c.spec for c in candidates if _is_part_of(row, c)]
        if hints:
            note = "could be a rename: " + ", ".join(f"--rename {spec}" for spec in hints)
            row = replace(row, detail=f"{row.detail}; {note}" if row.detail else note)
        marked.append(row)
    return marked


def _is_part_of(row: Any, candidate: RenameCandidate) -> bool:
    prefix = f"{candidate.schema}." if candidate.schema else ""
    if candidate.kind == "enum value":
        return row.op == "sync_enum_values" and row.target == prefix + str(candidate.table)
    if candidate.kind == "column":
        return row.table == prefix + str(candidate.table) and (
            (row.op, row.target) in (("drop_column", candidate.old), ("add_column", candidate.new))
        )
    tables = (("drop_table", prefix + candidate.old), ("create_table", prefix + candidate.new))
    return (row.op, row.table) in tables


# ---------------------------------------------------------------- writing what was meant


def shape_revision(migration_context: Any, directives: Sequence[Any],
                   renames: Sequence[RenameCandidate] = (), no_rename: bool = False) -> None:
    """An autogenerated revision as the user meant it, in an order its database runs up and down."""
    for script in directives:
        resolve_renames(migration_context, script, renames, no_rename)
        order_for_dialect(script)


def resolve_renames(migration_context: Any, script: Any, renames: Sequence[RenameCandidate],
                    no_rename: bool) -> None:
    """Write the chosen renames into an autogenerated revision; ask about any candidate left."""
    candidates = rename_candidates(script.upgrade_ops)
    default_schema = _default_schema(migration_context)
    chosen = [_matching(rename, candidates, default_schema) for rename in renames]
    for matched in chosen:
        _apply(migration_context, script.upgrade_ops, matched)
    left = rename_candidates(script.upgrade_ops)
    if left and not no_rename:
        raise RenameQuestion(question(left, default_schema), left)
    if renames:
        _renames_first(script.upgrade_ops)
        script.downgrade_ops = script.upgrade_ops.reverse()
        _renames_first(script.downgrade_ops)
        _keys_after_table_renames(script.downgrade_ops)


def _default_schema(migration_context: Any) -> str | None:
    """The schema that unqualified tables live in (public on PostgreSQL), as the user may name it."""
    connection = getattr(migration_context, "connection", None)
    return getattr(getattr(connection, "dialect", None), "default_schema_name", None)


def _matching(rename: RenameCandidate, candidates: Sequence[RenameCandidate],
              default_schema: str | None) -> RenameCandidate:
    """The one candidate a --rename names; refused when none, or when it reads two ways and both match."""
    matched = [c for c in candidates if any(_same(r, c, default_schema) for r in rename.readings())]
    if not matched:
        raise ConfigurationError(_not_a_candidate(rename, candidates))
    if len(matched) > 1:
        ways = " or ".join(f"{_said(c, default_schema)}" for c in matched)
        raise ConfigurationError(f"--rename {rename.spec} could be {ways}; say which. Nothing was written.")
    return matched[0]


def _renames_first(operations: Any) -> None:
    """Columns renamed in a step of their own, before indexes and constraints name them, both ways
    (SQLite's batch mode cannot index a column renamed in the same batch)."""
    from alembic.operations import ops

    rename_column_op, _ = _rename_ops()
    split = []
    for group in operations.ops:
        renamed = [op for op in getattr(group, "ops", []) if isinstance(op, rename_column_op)]
        rest = [op for op in getattr(group, "ops", []) if not isinstance(op, rename_column_op)]
        if renamed and rest:
            split += [ops.ModifyTableOps(group.table_name, renamed, schema=group.schema),
                      ops.ModifyTableOps(group.table_name, rest, schema=group.schema)]
        elif renamed and split and getattr(split[-1], "table_name", None) == group.table_name:
            split.insert(len(split) - 1, group)  # going down, the rename back comes after the rest
        else:
            split.append(group)
    operations.ops = split


def _keys_after_table_renames(operations: Any) -> None:
    """Foreign keys of other tables that point at a renamed table's new name come after the rename."""
    from alembic.operations import ops

    _, rename_table_op = _rename_ops()
    for rename in [op for op in operations.ops if isinstance(op, rename_table_op)]:
        position = operations.ops.index(rename)
        waiting = [group for group in operations.ops[:position] if isinstance(group, ops.ModifyTableOps)
                   and any(getattr(op, "referent_table", None) == rename.new_table_name for op in group.ops)]
        for group in waiting:
            operations.ops.remove(group)
        position = operations.ops.index(rename)
        operations.ops[position + 1:position + 1] = waiting


def _same(rename: RenameCandidate, candidate: RenameCandidate, default_schema: str | None = None) -> bool:
    """TABLE.COLUMN:NEW names a column or, for an enum type, one of its values; a schema, when
    named, must be the candidate's (the default schema names tables that have none)."""
    kinds = {"column", "enum value"} if rename.kind == "column" else {rename.kind}
    schema_ok = rename.schema is None or rename.schema == (candidate.schema or default_schema)
    return candidate.kind in kinds and schema_ok and (rename.table, rename.old, rename.new) == (
        candidate.table, candidate.old, candidate.new
    )


def question(candidates: Sequence[RenameCandidate], default_schema: str | None = None) -> str:
    """The short message that lists every candidate and both ways on (two candidates that read
    alike are named in their explicit forms)."""
    alike = {spec for spec in (c.spec for c in candidates) if [x.spec for x in candidates].count(spec) > 1}
    schema_for = {id(c): default_schema if c.spec in alike else None for c in candidates}
    listed = "; ".join(_said(candidate, schema_for[id(candidate)]) for candidate in candidates)
    first = _explicit(candidates[0], schema_for[id(candidates[0])])
    return (
        f"Did you rename? {listed}. Nothing was written. Run again with --rename {first} "
        "(one --rename per rename; data kept) or with --no-rename (drop + add: the data is lost)."
    )


def clear_renames(candidates: Sequence[RenameCandidate]) -> list[str] | None:
    """The renames to offer as one answer, when no drop or add could pair with two others."""
    olds = [(c.kind, c.table, c.old) for c in candidates]
    news = [(c.kind, c.table, c.new) for c in candidates]
    specs = [c.spec for c in candidates]
    if len(set(olds)) < len(olds) or len(set(news)) < len(news) or len(set(specs)) < len(specs):
        return None
    return [c.spec for c in candidates]


def _said(candidate: RenameCandidate, default_schema: str | None = None) -> str:
    """One candidate as the question lists it; with default_schema, in its explicit form."""
    prefix = f"{candidate.schema}." if candidate.schema else ""
    spec = _explicit(candidate, default_schema)
    if candidate.kind == "column":
        return f"column {prefix}{candidate.table}.{candidate.old} -> {candidate.new} (--rename {spec})"
    if candidate.kind == "enum value":
        return f"enum {candidate.table} value {candidate.old} -> {candidate.new} (--rename {spec})"
    return f"table {prefix}{candidate.old} -> {candidate.new} (--rename {spec})"


def _explicit(candidate: RenameCandidate, default_schema: str | None) -> str:
    """The spec; with default_schema, the form that reads one way only (DEFAULT.TABLE.COLUMN:NEW for
    a column of a table in the default schema, SCHEMA.TABLE:SCHEMA.NEW for a table)."""
    if default_schema is None:
        return candidate.spec
    if candidate.kind == "column" and not candidate.schema:
        return f"{default_schema}.{candidate.spec}"
    if candidate.kind == "table" and candidate.schema:
        return f"{candidate.schema}.{candidate.old}:{candidate.schema}.{candidate.new}"
    return candidate.spec


def _not_a_candidate(rename: RenameCandidate, candidates: Sequence[RenameCandidate]) -> str:
    known = ", ".join(c.spec for c in candidates) or "none"
    return (f"--rename {rename.spec} does not match a drop and an add of a compatible "
            f"{rename.kind} in this revision (candidates: {known}); nothing was written.")


def _apply(migration_context: Any, upgrade_ops: Any, rename: RenameCandidate) -> None:
    if rename.kind == "column":
        _rename_column(migration_context, upgrade_ops, rename)
    elif rename.kind == "enum value":
        _rename_enum_value(upgrade_ops, rename)
    else:
        _rename_table(migration_context, upgrade_ops, rename)


def _rename_enum_value(upgrade_ops: Any, rename: RenameCandidate) -> None:
    """The enum's sync operation casts the old value to the new one (rows keep their value)."""
    sync = next(op for op in upgrade_ops.ops if _is_enum_sync(op) and op.name == rename.table)
    renaming = _enum_renaming_op(type(sync))
    replaced = renaming(sync.schema, sync.name, sync.old_values, sync.new_values, sync.affected_columns,
                        sync.indexes_to_recreate)
    replaced.renamed_values = (*getattr(sync, "renamed_values", ()), (rename.old, rename.new))
    upgrade_ops.ops[upgrade_ops.ops.index(sync)] = replaced


@functools.cache
def _enum_renaming_op(sync_op: type) -> type:
    """alembic-postgresql-enum's sync operation, rendered and reversed with values renamed."""
    from alembic.autogenerate import renderers

    class RenamingSyncEnumValuesOp(sync_op):  # type: ignore[misc, valid-type]
        renamed_values: tuple[tuple[str, str], ...] = ()

        def reverse(self) -> Any:
            back = RenamingSyncEnumValuesOp(self.schema, self.name, self.new_values, self.old_values,
                                            self.affected_columns, self.indexes_to_recreate)
            back.renamed_values = tuple((new, old) for old, new in self.renamed_values)
            return back

    render_sync = renderers.dispatch(sync_op)

    @renderers.dispatch_for(RenamingSyncEnumValuesOp)
    def render(autogen_context: Any, op: Any) -> str:
        text = render_sync(autogen_context, op)
        return text.replace("enum_values_to_rename=[]", f"enum_values_to_rename={list(op.renamed_values)!r}")

    return RenamingSyncEnumValuesOp


def _rename_column(migration_context: Any, upgrade_ops: Any, rename: RenameCandidate) -> None:
    """The drop becomes alter_column(new_column_name=...) in its place; the add goes."""
    from alembic.operations import ops

    group = next(g for g in upgrade_ops.ops if isinstance(g, ops.ModifyTableOps)
                 and g.table_name == rename.table and g.schema == rename.schema)
    drop = next(op for op in group.ops if isinstance(op, ops.DropColumnOp) and op.column_name == rename.old)
    add = next(op for op in group.ops if isinstance(op, ops.AddColumnOp) and op.column.name == rename.new)
    old = drop.to_column()
    changed_type = migration_context.impl.compare_type(old, add.column)
    rename_column_op, _ = _rename_ops()
    renamed = rename_column_op(
        rename.table, rename.old, schema=group.schema, modify_name=rename.new,
        modify_type=add.column.type if changed_type else None,
        existing_type=old.type, existing_nullable=old.nullable,
        existing_server_default=old.server_default.arg if old.server_default is not None else False,
        existing_comment=old.comment,
    )
    group.ops[group.ops.index(drop)] = renamed
    group.ops.remove(add)


def _rename_table(migration_context: Any, upgrade_ops: Any, rename: RenameCandidate) -> None:
    """The create becomes rename_table in its place, followed by what else differs; the drop goes."""
    from alembic.operations import ops

    create = next(op for op in upgrade_ops.ops if isinstance(op, ops.CreateTableOp)
                  and op.table_name == rename.new and op.schema == rename.schema)
    schema = create.schema
    compared = _compared_after_rename(migration_context, rename, schema)
    upgrade_ops.ops = [
        op for op in upgrade_ops.ops
        if not (isinstance(op, (ops.DropTableOp, ops.ModifyTableOps)) and _touches(op, rename.old, schema))
        and not (isinstance(op, ops.ModifyTableOps) and _touches(op, rename.new, schema))
    ]
    position = upgrade_ops.ops.index(create)
    _, rename_table_op = _rename_ops()
    upgrade_ops.ops[position:position + 1] = [rename_table_op(rename.old, rename.new, schema=schema),
                                              *compared]


def _touches(op: Any, table: str, schema: str | None) -> bool:
    return getattr(op, "table_name", None) == table and getattr(op, "schema", None) == schema


def _compared_after_rename(migration_context: Any, rename: RenameCandidate, schema: str | None) -> list:
    """Indexes, constraints and comments of the renamed table compared with the model, by alembic."""
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations import ops
    from sqlalchemy import MetaData, Table

    autogen = AutogenContext(migration_context)
    model = _model_table(autogen.metadata, rename.new, schema)
    reflected = Table(rename.old, MetaData(), schema=schema, autoload_with=migration_context.connection)
    group = ops.ModifyTableOps(rename.new, [], schema=schema)
    autogen.comparators.dispatch("table", qualifier=autogen.dialect.name)(
        autogen, group, schema, rename.old, reflected, model
    )
    for op in group.ops:  # reflected under the old name; after the rename they live on the new one
        if getattr(op, "table_name", None) == rename.old:
            op.table_name = rename.new
    return [] if group.is_empty() else [group]


def _model_table(metadata: Any, name: str, schema: str | None) -> Any:
    for one in metadata if isinstance(metadata, (list, tuple)) else [metadata]:
        table = one.tables.get(f"{schema}.{name}" if schema else name)
        if table is not None:
            return table
    raise MigrationError(f"Table {name} is not in the models.")


@functools.cache
def _rename_ops() -> tuple[type, type]:
    """Rename operations whose reverse is the rename back (alembic's own have no reverse)."""
    from alembic.operations import ops

    class RenameColumn(ops.AlterColumnOp):
        def reverse(self) -> Any:
            back = super().reverse()
            back.column_name, back.modify_name = self.modify_name, self.column_name
            return back

    class RenameTable(ops.RenameTableOp):
        def reverse(self) -> Any:
            return RenameTable(self.new_table_name, self.table_name, schema=self.schema)

    from alembic.autogenerate import renderers

    @renderers.dispatch_for(RenameTable)
    def render_rename_table(autogen_context: Any, op: Any) -> str:
        schema = f", schema={op.schema!r}" if op.schema else ""
        return f"op.rename_table({op.table_name!r}, {op.new_table_name!r}{schema})"

    return RenameColumn, RenameTable


# ---------------------------------------------------------------- running on the dialect


def order_for_dialect(script: Any) -> None:
    """Up and down, operations in an order every database accepts."""
    if _drop_tables_in_dependency_order(script.upgrade_ops):
        script.downgrade_ops = script.upgrade_ops.reverse()  # as alembic makes it, from the new order
        _renames_first(script.downgrade_ops)
        _keys_after_table_renames(script.downgrade_ops)
    for operations in (script.upgrade_ops, script.downgrade_ops):
        _skip_index_drops_of_dropped_tables(operations)
        for group in operations.ops:
            if hasattr(group, "ops") and hasattr(group, "table_name"):
                _drop_constraints_before_indexes_before_columns(group)


def _drop_rank(op: Any) -> int | None:
    from alembic.operations import ops

    if isinstance(op, ops.DropConstraintOp):
        return 0 if op.constraint_type == "foreignkey" else 1
    if isinstance(op, ops.DropIndexOp):
        return 1  # MySQL/MariaDB: an index a foreign key needs goes after that key
    if isinstance(op, ops.DropColumnOp):
        return 2
    return None


def _drop_constraints_before_indexes_before_columns(group: Any) -> None:
    slots = [i for i, op in enumerate(group.ops) if _drop_rank(op) is not None]
    ordered = sorted((group.ops[i] for i in slots), key=_drop_rank)
    for slot, op in zip(slots, ordered, strict=True):
        group.ops[slot] = op


def _skip_index_drops_of_dropped_tables(operations: Any) -> None:
    """A dropped table takes its indexes along; dropping one first fails on MySQL when a key needs it."""
    from alembic.operations import ops

    dropped = {(op.table_name, op.schema) for op in operations.ops if isinstance(op, ops.DropTableOp)}
    for group in operations.ops:
        if isinstance(group, ops.ModifyTableOps) and (group.table_name, group.schema) in dropped:
            group.ops = [op for op in group.ops if not isinstance(op, ops.DropIndexOp)]
    operations.ops = [op for op in operations.ops
                      if not (isinstance(op, ops.ModifyTableOps) and op.is_empty())]


def _drop_tables_in_dependency_order(operations: Any) -> bool:
    """Tables that refer to others are dropped before the tables they refer to; whether it moved any."""
    from alembic.operations import ops

    units = _drop_units(operations.ops)
    slots = [i for i, unit in enumerate(units) if isinstance(unit[-1], ops.DropTableOp)]
    drops = [units[i][-1] for i in slots]
    ordered: list[Any] = []
    while drops:
        names = {op.table_name for op in drops}
        free = [op for op in drops if not (_referrers(op, drops) & names)] or drops[:1]
        ordered.extend(free)
        drops = [op for op in drops if op not in free]
    unit_of = {id(units[i][-1]): units[i] for i in slots}
    moved = [units[i][-1] for i in slots] != ordered
    for slot, drop in zip(slots, ordered, strict=True):
        units[slot] = unit_of[id(drop)]
    operations.ops = [op for unit in units for op in unit]
    return moved


def _drop_units(operations: list[Any]) -> list[list[Any]]:
    """The operations, each drop_table together with the changes to its table just before it."""
    from alembic.operations import ops

    units: list[list[Any]] = []
    for op in operations:
        before = units[-1] if units else []
        if (isinstance(op, ops.DropTableOp) and len(before) == 1
                and isinstance(before[0], ops.ModifyTableOps)
                and _touches(before[0], op.table_name, op.schema)):
            before.append(op)
        else:
            units.append([op])
    return units


def _referrers(op: Any, drops: Sequence[Any]) -> set[str]:
    """The names of the other dropped tables that refer to this one."""
    return {other.table_name for other in drops
            if other is not op and op.table_name in _referred(other)}


def _referred(op: Any) -> set[str]:
    try:
        table = op.to_table()
    except Exception:  # a drop recorded without its table: nothing known about its keys
        return set()
    return {fk.target_fullname.rsplit(".", 1)[0].rsplit(".", 1)[-1] for fk in table.foreign_keys}
