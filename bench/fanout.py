"""Benchmark: one history over many targets, ours against a loop of alembic's own commands.

Run by hand (never part of the tests):
    python bench/fanout.py [--tenants 200] [--files 1000] [--jobs 4] [--postgresql URL]

1. upgrade of 5 revisions (each a table and an index) on N PostgreSQL tenant schemas:
   a loop of `alembic.command.upgrade` with `-x tenant=` in one process, ours with --jobs 1,
   ours with --jobs J, and the floor (the same DDL and version rows sent straight through J psycopg
   connections, nothing else); each on its own set of N fresh schemas in one fresh database, in
   turn over a few rounds. The project has the env.py `init` writes, which both run: ours replays
   each revision's SQL, rendered once (framefox_magic/replay.py).
2. `status --targets` on M SQLite files at head against a loop of `alembic.command.current`
   (each in turn, medians of a few runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from argparse import Namespace
from pathlib import Path

import sqlalchemy as sa

REVISIONS = 5


def make_project(root: Path, url: str):
    """A project with 5 revisions, each creating a table and an index."""
    from framefox_magic import AlembicManager

    manager = AlembicManager(url=url, migrations_dir=str(root / "migrations"), project_root=str(root),
                             metadata=sa.MetaData())
    manager.init()
    for n in range(REVISIONS):
        manager.revision(
            f"table {n}", autogenerate=False, rev_id=f"r{n}",
            upgrade_body=f"op.create_table('t{n}', sa.Column('id', sa.Integer, primary_key=True), "
                         f"sa.Column('name', sa.String(40)))\n"
                         f"op.create_index('ix_t{n}_name', 't{n}', ['name'])",
            downgrade_body=f"op.drop_table('t{n}')",
        )
    return manager


def alembic_config(root: Path, url: str, x: list[str]):
    """alembic's Config as its CLI would build it, with -x arguments."""
    from alembic.config import Config

    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.cmd_opts = Namespace(x=x)
    return config


def timed(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def bench_tenants(admin_url: str, tenants: int, jobs: int, rounds: int, root: Path) -> dict[str, float]:
    """Seconds for each way of upgrading `tenants` schemas from base to head. The work is split into
    rounds, each way taking its turn in each round, so that the machine's ups and downs hit all
    alike (ours pays its worker start-up once per round)."""
    name = f"ffm_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    per_round = tenants // rounds
    try:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            for group in ("a", "b", "c", "d"):
                for n in range(rounds * per_round):
                    connection.execute(sa.text(f"CREATE SCHEMA {group}{n // per_round}_{n:04d}"))
        engine.dispose()
        manager = make_project(root / "tenants", url)
        ways = {"alembic loop": lambda r: alembic_loop(root / "tenants", url, r, per_round),
                "ours --jobs 1": lambda r: ours(manager, f"b{r}", 1, per_round),
                f"ours --jobs {jobs}": lambda r: ours(manager, f"c{r}", jobs, per_round),
                f"floor: the SQL alone, {jobs} connections":
                    lambda r: straight_sql(url, f"d{r}", jobs, per_round)}
        seconds = dict.fromkeys(ways, 0.0)
        for round_number in range(rounds):
            for label, way in ways.items():
                seconds[label] += timed(lambda: way(round_number))  # noqa: B023
        return seconds
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def alembic_loop(root: Path, url: str, round_number: int, count: int) -> None:
    """What alembic offers for tenants: `alembic -x tenant=NAME upgrade head`, once per tenant."""
    from alembic import command

    for n in range(round_number * count, (round_number + 1) * count):
        command.upgrade(alembic_config(root, url, [f"tenant=a{round_number}_{n:04d}"]), "head")


def straight_sql(url: str, prefix: str, jobs: int, count: int) -> None:
    """The floor: the same DDL and version-table rows sent through `jobs` psycopg connections in
    threads, one transaction (one round trip plus the commit) per revision, nothing else."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    schemas = [f"{prefix}_{n:04d}" for n in range(int(prefix[1:]) * count, (int(prefix[1:]) + 1) * count)]

    def tenant(connection, schema: str) -> None:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                           "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
        connection.commit()
        for n in range(REVISIONS):
            version = ("INSERT INTO alembic_version (version_num) VALUES ('r0')" if n == 0 else
                       f"UPDATE alembic_version SET version_num='r{n}' WHERE version_num = 'r{n - 1}'")
            connection.execute(f"CREATE TABLE t{n} (id SERIAL NOT NULL, name VARCHAR(40), PRIMARY KEY (id)); "
                               f"CREATE INDEX ix_t{n}_name ON t{n} (name); {version}".encode())
            connection.commit()

    def chunk(names: list[str]) -> None:
        for schema in names:
            with psycopg.connect(dsn) as connection:
                tenant(connection, schema)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(chunk, [schemas[i::jobs] for i in range(jobs)]))


def ours(manager, prefix: str, jobs: int, count: int) -> None:
    result = manager.for_targets(f"schemas:{prefix}\\_%", jobs=jobs).upgrade()
    assert result.ok and len(result) == count, result


def bench_status(files: int, repeats: int, root: Path) -> dict[str, float]:
    """Seconds to read the revision of `files` SQLite files: alembic's current in a loop, ours."""
    import contextlib
    import io

    from alembic import command

    folder = root / "devices"
    folder.mkdir()
    first = folder / "d0000.db"
    manager = make_project(root / "files", f"sqlite:///{first}")
    manager.upgrade()
    for n in range(1, files):
        shutil.copyfile(first, folder / f"d{n:04d}.db")

    def alembic_loop() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            for path in sorted(folder.glob("*.db")):
                config = alembic_config(root / "files", f"sqlite:///{path}", [])
                config.stdout = io.StringIO()
                command.current(config)

    def ours() -> None:
        result = manager.for_targets(f"sqlite:{folder}/*.db").status()
        assert len(result) == files and result.counts == {"up to date": files}, result.counts

    runs: dict[str, list[float]] = {"alembic current loop": [], "ours status --targets": []}
    for _ in range(repeats):  # in turn; medians
        runs["alembic current loop"].append(timed(alembic_loop))
        runs["ours status --targets"].append(timed(ours))
    return {label: statistics.median(times) for label, times in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="upgrade: each way in turn, this many times")
    parser.add_argument("--repeats", type=int, default=3, help="status: each way in turn, median")
    parser.add_argument("--postgresql", default=os.environ.get(
        "FRAMEFOX_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    import alembic

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, alembic {alembic.__version__}, SQLAlchemy {sa.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        upgrade = bench_tenants(args.postgresql, args.tenants, args.jobs, args.rounds, root)
        status = bench_status(args.files, args.repeats, root)
    base = upgrade["alembic loop"]
    print(f"\nupgrade of {REVISIONS} revisions on {args.tenants} PostgreSQL tenant schemas")
    for label, seconds in upgrade.items():
        print(f"  {label:<38} {seconds:7.2f} s   {base / seconds:5.2f}x vs the alembic loop")
    one, many = upgrade["ours --jobs 1"], upgrade[f"ours --jobs {args.jobs}"]
    floor = upgrade[f"floor: the SQL alone, {args.jobs} connections"]
    print(f"  ours --jobs {args.jobs} vs ours --jobs 1: {one / many:.2f}x; "
          f"ours over the floor: {many / floor:.2f}x")
    print(f"\nstatus of {args.files} SQLite files")
    loop = status["alembic current loop"]
    for label, seconds in status.items():
        print(f"  {label:<22} {seconds:7.2f} s   {loop / seconds:6.1f}x vs the alembic loop")


if __name__ == "__main__":
    main()
