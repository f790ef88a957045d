"""Benchmark: rehearse and lint over many PostgreSQL tenant schemas, --jobs 1 against --jobs J.

Run by hand (never part of the tests):
    python bench/fanout_safety.py [--tenants 40] [--jobs 4] [--postgresql URL]

Each tenant has a `customer` table with 1,000 rows; the history has 5 revisions (a table and an
index each, then a NOT NULL on customer). Rehearse runs each tenant's 5 revisions up, down and up
in a rolled-back transaction on its schema; lint counts the rows each revision touches. Medians of
3 runs each, the two ways in turn.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REVISIONS = 5


def make_project(root: Path, url: str):
    """Four revisions creating a table and an index each, the fifth making customer.email NOT NULL."""
    from framefox_magic import AlembicManager

    manager = AlembicManager(url=url, migrations_dir=str(root / "migrations"), project_root=str(root),
                             metadata=sa.MetaData())
    manager.init()
    for n in range(REVISIONS - 1):
        manager.revision(
            f"table {n}", autogenerate=False, rev_id=f"r{n}",
            upgrade_body=f"op.create_table('t{n}', sa.Column('id', sa.Integer, primary_key=True), "
                         f"sa.Column('name', sa.String(40)))\n"
                         f"op.create_index('ix_t{n}_name', 't{n}', ['name'])",
            downgrade_body=f"op.drop_table('t{n}')",
        )
    manager.revision("email required", autogenerate=False, rev_id=f"r{REVISIONS - 1}",
                     upgrade_body="op.alter_column('customer', 'email', existing_type=sa.String(50), "
                                  "nullable=False)",
                     downgrade_body="op.alter_column('customer', 'email', existing_type=sa.String(50), "
                                    "nullable=True)")
    return manager


def fill(url: str, tenants: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for n in range(tenants):
            connection.execute(sa.text(f"CREATE SCHEMA tenant_{n:04d}"))
            connection.execute(sa.text(f"CREATE TABLE tenant_{n:04d}.customer "
                                       "(id INTEGER PRIMARY KEY, email VARCHAR(50))"))
            connection.execute(sa.text(f"INSERT INTO tenant_{n:04d}.customer "
                                       "SELECT i, 'c' || i || '@x.y' FROM generate_series(1, 1000) i"))
    engine.dispose()


def timed(run) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--postgresql", default=os.environ.get(
        "FRAMEFOX_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    options = parser.parse_args()
    admin_url = sa.make_url(options.postgresql)
    name = f"ffm_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        fill(url, options.tenants)
        manager = make_project(Path(tempfile.mkdtemp()), url)
        spec = "schemas:tenant_%"
        times: dict[str, list[float]] = {}
        for _ in range(3):
            for jobs in (1, options.jobs):
                times.setdefault(f"rehearse --jobs {jobs}", []).append(
                    timed(lambda j=jobs: manager.for_targets(spec, jobs=j).rehearse()))
                times.setdefault(f"lint --jobs {jobs}", []).append(
                    timed(lambda j=jobs: manager.for_targets(spec, jobs=j).lint()))
        print(f"{options.tenants} tenant schemas, {REVISIONS} revisions; {platform.python_version()}, "
              f"{os.cpu_count()} cores")
        for label, found in times.items():
            runs = [round(t, 2) for t in found]
            print(f"{label:20} median {statistics.median(found):7.2f} s   runs {runs}")
        for verb in ("rehearse", "lint"):
            one, many = (statistics.median(times[f"{verb} --jobs {j}"]) for j in (1, options.jobs))
            print(f"{verb}: --jobs {options.jobs} is {one / many:.2f}x --jobs 1")
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
