"""Benchmark framefox_magic against alembic, side by side in one run; writes bench/RESULTS.md.

Run by hand (never part of the tests):  python bench/run.py [--quick] [--postgresql URL] [--mariadb URL]
(autogenerate only: --only-autogenerate; one backend/size while iterating: --backend mariadb --tables 500)
Ratios are ours / alembic's: below 1 is faster than alembic.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
TABLES_PER_PROJECT = 10


# ---------------------------------------------------------------- projects


def make_project(root: Path, revisions: int, branched: bool) -> Path:
    """A project whose history has `revisions` hand-written revisions (with branches and merges)."""
    from framefox_magic import AlembicManager

    manager = AlembicManager(project_root=root, metadata=sa.MetaData())
    manager.init()
    last = "base"
    for index in range(revisions):
        table = f"t{index % TABLES_PER_PROJECT}"
        if index < TABLES_PER_PROJECT:
            up = f"op.create_table('{table}', sa.Column('id', sa.Integer, primary_key=True))"
            down = f"op.drop_table('{table}')"
        else:
            up = f"op.add_column('{table}', sa.Column('c{index}', sa.Integer))"
            down = f"op.drop_column('{table}', 'c{index}')"
        if branched and index % 20 == 10:  # a side branch next to this step, merged right after
            manager.revision(f"side {index}", upgrade_body="pass", head="heads")
            manager.revision(f"step {index}", upgrade_body=up, downgrade_body=down,
                             head=last, splice=True)
            last = manager.merge("heads", f"merge {index}").revision
            continue
        last = manager.revision(f"step {index}", upgrade_body=up, downgrade_body=down).revision
    return root


def alembic_config(root: Path, url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(root / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


# ---------------------------------------------------------------- measuring


def seconds(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def timed_in_turn(ours: Callable[[], Any], theirs: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall times of both, run in turn so that the machine's ups and downs hit both alike."""
    samples = [(seconds(ours), seconds(theirs)) for _ in range(repeat)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def peak_memory(run: Callable[[], Any]) -> float:
    """Peak Python allocation during one run, in MiB."""
    gc.collect()
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def cold(make: Callable[[], Callable[[], Any]]) -> Callable[[], Any]:
    """A run that starts with nothing cached in this process (headers, revision map)."""
    from framefox_magic import scripts

    def run() -> Any:
        scripts._headers.clear()
        return make()()

    return run


Row = dict[str, Any]


def compare(rows: list[Row], label: str, ours: Callable[[], Any], theirs: Callable[[], Any],
            baseline: str, repeat: int = 5) -> None:
    ours(), theirs()  # warm imports
    ours_time, theirs_time = timed_in_turn(ours, theirs, repeat)
    rows.append({
        "measure": label, "baseline": baseline,
        "ours_ms": ours_time * 1000, "theirs_ms": theirs_time * 1000,
        "ratio": ours_time / theirs_time,
        "ours_peak_mib": peak_memory(ours), "theirs_peak_mib": peak_memory(theirs),
        "load": os.getloadavg()[0],  # the machine is shared: how busy it was for this row
    })
    print(f"{label:<52} {baseline:<28} {ours_time * 1000:9.1f} ms {theirs_time * 1000:9.1f} ms "
          f"{ours_time / theirs_time:6.3f}x  load {rows[-1]['load']:.1f}", flush=True)


# ---------------------------------------------------------------- the measures


def listing(rows: list[Row], root: Path, size: int, shape: str, cli_repeat: int) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from framefox_magic import AlembicManager

    url = f"sqlite:///{root / 'database.db'}"
    manager = AlembicManager(url=url, project_root=root, metadata=sa.MetaData())
    manager.upgrade("heads")
    config = alembic_config(root, url)

    def alembic_current() -> Any:
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
        engine.dispose()
        return heads

    def alembic_status() -> Any:
        return alembic_current(), ScriptDirectory.from_config(config).get_heads()

    naive = {
        "status": alembic_status,
        "history": lambda: (alembic_current(), list(ScriptDirectory.from_config(config).walk_revisions())),
        "heads": lambda: ScriptDirectory.from_config(config).get_heads(),
        "current": lambda: (alembic_current(), ScriptDirectory.from_config(config).get_revisions("heads")),
    }
    cli = {
        "status": (["current"], ["heads"]), "history": (["history"],), "heads": (["heads"],),
        "current": (["current"],),
    }
    alembic_exe = Path(sys.executable).with_name("alembic")
    for name, theirs in naive.items():
        ours = getattr(manager, name)
        compare(rows, f"{name} warm, {size} revisions {shape}", ours, theirs, "alembic in-process")
        fresh = cold(lambda name=name: getattr(
            AlembicManager(url=url, project_root=root, metadata=sa.MetaData()), name))
        compare(rows, f"{name} cold, {size} revisions {shape}", fresh, theirs, "alembic in-process")
        if cli_repeat:
            def run_cli(commands: tuple = cli[name]) -> None:
                for words in commands:
                    subprocess.run([str(alembic_exe), "-x", f"url={url}", *words], cwd=root,
                                   check=True, capture_output=True)
            compare(rows, f"{name} warm, {size} revisions {shape}", ours, run_cli, "alembic CLI",
                    repeat=cli_repeat)


def migrating(rows: list[Row], root: Path, size: int) -> None:
    from alembic import command

    from framefox_magic import AlembicManager

    database = root / "database.db"
    url = f"sqlite:///{database}"
    manager = AlembicManager(url=url, project_root=root, metadata=sa.MetaData())
    config = alembic_config(root, url)
    steps: list[int] = []

    def ours_up() -> None:
        database.unlink(missing_ok=True)
        manager.upgrade("heads", on_step=lambda done, total, info: steps.append(done))

    def theirs_up() -> None:
        database.unlink(missing_ok=True)
        command.upgrade(config, "heads")

    compare(rows, f"upgrade base->head, {size} revisions", ours_up, theirs_up,
            "alembic.command.upgrade", repeat=3)

    def ours_down() -> None:
        manager.upgrade("heads")
        manager.downgrade("base")

    def theirs_down() -> None:
        command.upgrade(config, "heads")
        command.downgrade(config, "base")

    compare(rows, f"upgrade+downgrade round trip, {size} revisions", ours_down, theirs_down,
            "alembic.command up+down", repeat=3)


def schema(tables: int) -> sa.MetaData:
    metadata = sa.MetaData()
    for index in range(tables):
        sa.Table(
            f"item{index}", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("price", sa.Numeric(10, 2)),
            sa.Column("parent_id", sa.Integer, sa.ForeignKey(f"item{max(index - 1, 0)}.id")),
            sa.Index(f"ix_item{index}_name", "name"),
        )
    return metadata


def autogenerating(rows: list[Row], backend: str, url: str, tables: int, repeat: int = 5) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from framefox_magic import AlembicManager

    metadata = schema(tables)
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with tempfile.TemporaryDirectory() as folder:
        manager = AlembicManager(url=url, project_root=folder, metadata=metadata)
        manager.init()
        manager.create_version_table()

        def theirs() -> Any:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                return compare_metadata(context, metadata)

        def first_diff() -> Any:  # a new manager: nothing reflected or listed before
            return AlembicManager(url=url, project_root=folder, metadata=metadata).diff()

        compare(rows, f"diff, first call, {tables} tables, {backend}", first_diff, theirs,
                "alembic compare_metadata", repeat=repeat)
        def theirs_new_engine() -> Any:  # as alembic's env.py does on every command: a new engine
            fresh = sa.create_engine(url, poolclass=sa.pool.NullPool)
            try:
                with fresh.connect() as connection:
                    context = MigrationContext.configure(connection, opts={"compare_type": True})
                    return compare_metadata(context, metadata)
            finally:
                fresh.dispose()

        compare(rows, f"diff, first call, {tables} tables, {backend}", first_diff, theirs_new_engine,
                "compare_metadata, new engine", repeat=repeat)
        compare(rows, f"diff, first call, over its floor, {tables} tables, {backend}", first_diff,
                paused(theirs), "compare_metadata, collector paused", repeat=repeat)
        compare(rows, f"diff, repeated, {tables} tables, {backend}", manager.diff, theirs,
                "alembic compare_metadata", repeat=repeat)
        compare(rows, f"check, repeated, {tables} tables, {backend}", manager.check, theirs,
                "alembic compare_metadata", repeat=repeat)
        compare(rows, f"revision (no change), repeated, {tables} tables, {backend}",
                lambda: manager.revision("nothing"), theirs, "alembic compare_metadata", repeat=repeat)
        floor = comparison_floor(engine, metadata)
        compare(rows, f"floor: alembic's comparison alone, {tables} tables, {backend}", floor, theirs,
                "alembic compare_metadata", repeat=repeat)
        compare(rows, f"diff, repeated, over that floor, {tables} tables, {backend}", manager.diff, floor,
                "the floor row above", repeat=repeat)
    metadata.drop_all(engine)
    engine.dispose()


def paused(run: Callable[[], Any]) -> Callable[[], Any]:
    """`run` with the garbage collector paused as ours is during a comparison (and collected after):
    a first comparison has to reflect and compare as alembic does, so this is its floor."""
    from framefox_magic import runtime

    def floor() -> Any:
        with runtime.collection_paused():
            return run()

    return floor


def comparison_floor(engine: sa.Engine, metadata: sa.MetaData) -> Callable[[], Any]:
    """What a repeated comparison cannot go below while alembic compares: alembic's own comparison
    of a schema whose reflection it is handed (a fresh copy, as ours is), with the collector paused
    as ours is; no reflection, no freshness check of it, no env.py, no manager."""
    from unittest import mock

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from framefox_magic import reflection, runtime

    kept = reflection.ReflectionCache()

    def floor() -> Any:
        with engine.connect() as connection, \
                mock.patch.object(reflection, "catalog_fingerprint", return_value="given"):
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            reflection.reuse_in(context, kept)
            with runtime.collection_paused():
                return compare_metadata(context, metadata)

    return floor


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database on the server for one run (so that nothing else is touched); dropped after."""
    admin_url = sa.make_url(server_url)
    name = f"ffm_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if admin_url.get_backend_name() == "postgresql" else ""
        drop = f"DROP DATABASE {name}{force}"
        with admin.connect() as connection:
            connection.execute(sa.text(drop))
        admin.dispose()


def loading(rows: list[Row], repeat: int) -> None:
    shell = ("from IPython.core.interactiveshell import InteractiveShell; "
             "s = InteractiveShell.instance()")

    # as an installed package runs: from compiled bytecode (pip writes it at install time)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def process(code: str) -> Callable[[], None]:
        return lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)

    compare(rows, "IPython shell + %load_ext framefox_magic", process(
        shell + "; s.run_line_magic('load_ext', 'framefox_magic')"), process(shell),
        "the IPython shell alone", repeat=repeat)
    code = ("import sys; import framefox_magic.magics; "
            "print(','.join(m for m in ('pandas','alembic','sqlalchemy','ipywidgets') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    print(f"heavy modules imported by loading the extension: {loaded or 'none'}")
    rows.append({"measure": "heavy modules imported by %load_ext", "baseline": "",
                 "ours_ms": float("nan"), "theirs_ms": float("nan"), "ratio": float("nan"),
                 "ours_peak_mib": float("nan"), "theirs_peak_mib": float("nan"), "note": loaded or "none"})


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import alembic

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, alembic {alembic.__version__}, "
            f"SQLAlchemy {sa.__version__}")


def write_results(rows: list[Row], command: str, name: str = "RESULTS.md") -> None:
    lines = [
        "# Benchmark results", "",
        f"Machine: {machine()}.", "",
        f"Reproduce: `{command}` (run by hand; the numbers below are from one run, medians).", "",
        "ratio = ours / baseline, measured in the same run (below 1 means faster than alembic).", "",
        "| measure | baseline | ours (ms) | baseline (ms) | ratio | ours peak (MiB) | baseline peak (MiB) "
        "| load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row.get("note"):
            lines.append(f"| {row['measure']} | | {row['note']} | | | | | |")
            continue
        lines.append(
            f"| {row['measure']} | {row['baseline']} | {row['ours_ms']:.1f} | {row['theirs_ms']:.1f} | "
            f"{row['ratio']:.3f} | {row['ours_peak_mib']:.1f} | {row['theirs_peak_mib']:.1f} | "
            f"{row.get('load', float('nan')):.1f} |"
        )
    (HERE / name).write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, no CLI runs")
    parser.add_argument("--postgresql", default=os.environ.get(
        "FRAMEFOX_BENCH_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--mariadb", default=os.environ.get(
        "FRAMEFOX_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"))
    parser.add_argument("--only-autogenerate", action="store_true", help="the autogenerate rows only")
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql", "mariadb"),
                        help="autogenerate on this backend only (repeatable; implies --only-autogenerate; "
                             "prints the rows, writes no results file)")
    parser.add_argument("--tables", action="append", type=int,
                        help="autogenerate at this many tables only (repeatable; as --backend)")
    parser.add_argument("--repeat", type=int, default=5, help="pairs timed per autogenerate row")
    args = parser.parse_args()
    partial = bool(args.backend or args.tables)
    args.only_autogenerate = args.only_autogenerate or partial
    sizes = () if args.only_autogenerate else (10, 100) if args.quick else (10, 100, 500, 1000)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            for branched in (False, True):
                shape = "branched" if branched else "linear"
                root = make_project(Path(folder) / f"{shape}{size}", size, branched)
                listing(rows, root, size, shape, cli_repeat=0 if args.quick or branched else 3)
                if not branched and size in (100, 500):
                    migrating(rows, root, size)
        backends = args.backend or ("sqlite", "postgresql", "mariadb")
        for tables in args.tables or ((10, 100) if args.quick else (10, 100, 500)):
            if "sqlite" in backends:
                autogenerating(rows, "sqlite", f"sqlite:///{Path(folder) / f'schema{tables}.db'}", tables,
                               args.repeat)
            for backend, server in (("postgresql", args.postgresql), ("mariadb", args.mariadb)):
                if not server or backend not in backends or (tables < 100 and not args.tables):
                    continue
                try:
                    with scratch_database(server) as url:
                        autogenerating(rows, backend, url, tables, args.repeat)
                except sa.exc.OperationalError as error:
                    print(f"{backend} skipped: {str(error).splitlines()[0]}")
    if not args.only_autogenerate:
        loading(rows, repeat=3 if args.quick else 7)
    if partial:
        return
    if args.only_autogenerate:
        write_results(rows, "python bench/run.py --only-autogenerate", "RESULTS-autogenerate.md")
    else:
        write_results(rows, "python bench/run.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
