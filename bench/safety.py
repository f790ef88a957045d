"""Benchmark rehearse and lint on SQLite; run by hand (never part of the tests).

    python bench/safety.py [--rows 100000] [--repeat 3]

rehearse: 20 pending revisions on a table of ROWS rows, against a plain upgrade of the same revisions
(on a fresh copy of the same file each time): goal <= 3x.
lint: 50 pending revisions; the rule checks (goal < 1 s) and the counting queries on the live rows
are reported apart.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

CREATE = ('op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
          'sa.Column("name", sa.String(50)), sa.Column("price", sa.Integer))')


def fill(url: str, rows: int) -> None:
    """ROWS items, inserted by one INSERT ... SELECT over a recursive counter."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO item (id, name, price) SELECT i, 'item ' || i, i % 1000 FROM n", (rows,))
    engine.dispose()


def revision_body(index: int) -> tuple[str, str]:
    """Each revision adds a column and indexes it; its downgrade removes both."""
    column, index_name = f"c{index}", f"ix_item_c{index}"
    up = (f'op.add_column("item", sa.Column("{column}", sa.Integer, nullable=True))\n'
          f'op.create_index("{index_name}", "item", ["{column}"])')
    down = f'op.drop_index("{index_name}", table_name="item")\nop.drop_column("item", "{column}")'
    return up, down


def project(root: Path, rows: int, pending: int, body=revision_body) -> tuple[object, Path]:
    """A project at its first revision (ROWS items) with PENDING revisions to go."""
    from framefox_magic import AlembicManager

    database = root / "bench.db"
    manager = AlembicManager(url=f"sqlite:///{database}", project_root=root, metadata=sa.MetaData())
    manager.init()
    manager.revision("create item", upgrade_body=CREATE, downgrade_body='op.drop_table("item")')
    manager.upgrade()
    fill(f"sqlite:///{database}", rows)
    for index in range(pending):
        up, down = body(index)
        manager.revision(f"step {index}", upgrade_body=up, downgrade_body=down)
    return manager, database


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bench_rehearse(rows: int, repeat: int) -> None:
    from framefox_magic import AlembicManager

    with tempfile.TemporaryDirectory() as folder:
        manager, database = project(Path(folder), rows, 20)
        rehearsals, upgrades = [], []
        for _ in range(repeat):
            rehearsals.append(timed(lambda: manager.rehearse()))
            copy = Path(folder) / "copy.db"
            shutil.copy(database, copy)
            plain = AlembicManager(url=f"sqlite:///{copy}", project_root=folder, metadata=sa.MetaData())
            upgrades.append(timed(lambda plain=plain: plain.upgrade()))
        result = manager.rehearse()
        assert result.ok, result
        rehearse, upgrade = statistics.median(rehearsals), statistics.median(upgrades)
        print(f"rehearse, 20 revisions, {rows} rows: {rehearse:.3f} s; plain upgrade {upgrade:.3f} s; "
              f"ratio {rehearse / upgrade:.2f}x (goal <= 3x)")


def lint_body(index: int) -> tuple[str, str]:
    """A mix of operations that lint has rules for."""
    kinds = [
        f'op.add_column("item", sa.Column("l{index}", sa.Integer, nullable=True))',
        f'op.create_index("ix_l{index}", "item", ["name"], unique=True)',
        f'op.alter_column("item", "name", existing_type=sa.String(50), type_=sa.String({40 - index % 30}))',
        'op.alter_column("item", "price", existing_type=sa.Integer(), nullable=False)',
        f'op.create_check_constraint("ck_{index}", "item", "price >= 0")',
    ]
    return kinds[index % len(kinds)], "pass"


def bench_lint(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manager, _ = project(Path(folder), rows, 50, lint_body)
        runs, walls = [], []
        for _ in range(repeat):
            walls.append(timed(lambda: runs.append(manager.lint())))
        checking = statistics.median(r.checking_seconds for r in runs)
        counting = statistics.median(r.counting_seconds for r in runs)
        wall = statistics.median(walls)
        print(f"lint, 50 revisions, {len(runs[-1].findings)} findings: checks {checking:.3f} s "
              f"(goal < 1 s) + counting queries on {rows} rows {counting:.3f} s; call {wall:.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, SQLAlchemy {sa.__version__}")
    bench_rehearse(args.rows, args.repeat)
    bench_lint(args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
