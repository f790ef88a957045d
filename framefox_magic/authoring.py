"""Writing revisions: what autogenerate proposes, made ready to run up and down on every dialect."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

MAX_NAME = 60  # under PostgreSQL's 63 and MySQL's 64 characters


def name_new_foreign_keys(directives: Iterable[Any]) -> None:
    """Give each foreign key autogenerate adds to an existing table a name (SQLAlchemy's usual
    convention, fk_<table>_<column>_<referred table>), in upgrade() and in the downgrade() that
    drops it: SQLite's batch mode and every drop_constraint need one."""
    from alembic.operations import ops

    for directive in directives:
        for op in _flattened([*directive.upgrade_ops_list, *directive.downgrade_ops_list]):
            if isinstance(op, ops.CreateForeignKeyOp) and op.constraint_name is None:
                op.constraint_name = _foreign_key_name(op)
            elif (isinstance(op, ops.DropConstraintOp) and op.constraint_name is None
                  and isinstance(op._reverse, ops.CreateForeignKeyOp)):
                op.constraint_name = op._reverse.constraint_name or _foreign_key_name(op._reverse)


def _foreign_key_name(op: Any) -> str:
    return f"fk_{op.source_table}_{'_'.join(op.local_cols)}_{op.referent_table}"[:MAX_NAME]


def _flattened(containers: Iterable[Any]) -> Iterator[Any]:
    """Every operation, inside ModifyTableOps too."""
    for container in containers:
        for op in container.ops:
            if hasattr(op, "ops"):
                yield from _flattened([op])
            else:
                yield op
