"""Benchmark what a user types: the %migrate magic through a real IPython shell, the
`framefox-migrate` command line as a new process, cold reads in a fresh process, 5,000 revisions.

Run by hand (never part of the tests):  python bench/magic.py [--quick] [--mariadb URL]
Ratios are ours / the baseline's, timed in turn in one run (paired medians): below 1 is faster.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
# as an installed package runs: from compiled bytecode (pip writes it at install time)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DATABASE_URL")}

REVISION_FILE = '''"""step {index}

Revision ID: {revision}
Revises: {down}
Create Date: 2026-01-01 00:00:00.{index:06d}

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {revision!r}
down_revision: Union[str, Sequence[str], None] = {down_revision!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table("t{index}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("t{index}")
'''


# ---------------------------------------------------------------- projects


def make_project(root: Path, revisions: int) -> tuple[Path, str]:
    """A linear project of `revisions` files, written directly; its SQLite database stamped at head."""
    import sqlalchemy as sa

    from framefox_magic import AlembicManager

    root.mkdir(parents=True)
    url = f"sqlite:///{root / 'database.db'}"
    manager = AlembicManager(url=url, project_root=root, metadata=sa.MetaData())
    manager.init()
    versions = root / "migrations" / "versions"
    down = None
    for index in range(revisions):
        revision = f"{index + 1:012x}"
        (versions / f"{revision}_step_{index}.py").write_text(REVISION_FILE.format(
            index=index, revision=revision, down=down or "", down_revision=down))
        down = revision
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(versions)], check=True)  # as alembic leaves it
    manager.stamp("heads")
    return root, url


# ---------------------------------------------------------------- measuring


def seconds(run: Callable[[], Any]) -> float:
    """Wall time of one run, the garbage collector paused as timeit does (so that neither side of a
    pair pays for the garbage the other left)."""
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


FASTEST: dict[str, float] = {}


def in_turn(ours: Callable[[], float], theirs: Callable[[], float], repeat: int) -> tuple[float, float]:
    """Paired medians: each pair runs ours then theirs, so the machine's ups and downs hit both.
    The fastest of each side is kept too: on a busy machine a run longer than the scheduler's time
    slice is often interrupted, which inflates medians of a few milliseconds."""
    pairs = [(ours(), theirs()) for _ in range(repeat)]
    FASTEST["ours"], FASTEST["theirs"] = min(p[0] for p in pairs), min(p[1] for p in pairs)
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


ROWS: list[dict[str, Any]] = []


def report(label: str, baseline: str, ours: float, theirs: float, goal: str) -> None:
    ratio = ours / theirs
    fastest = FASTEST.pop("ours", float("nan")) / FASTEST.pop("theirs", float("nan"))
    load = os.getloadavg()[0]  # the machine is shared: how busy it was when the row was measured
    ROWS.append({"measure": label, "baseline": baseline, "ours_ms": ours * 1000,
                 "theirs_ms": theirs * 1000, "ratio": ratio, "fastest": fastest, "goal": goal,
                 "load": load})
    print(f"{label:<58} {baseline:<34} {ours * 1000:9.2f} ms {theirs * 1000:9.2f} ms "
          f"{ratio:8.3f}x  (fastest {fastest:.3f}x)  goal {goal}  load {load:.1f}", flush=True)


def process_seconds(code: str, cwd: Path | None = None) -> float:
    """Run `code` in a new Python process that prints the seconds it measured itself."""
    done = subprocess.run([PYTHON, "-c", code], cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True)
    return float(done.stdout.strip().splitlines()[-1])


def process_wall(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of a whole new process (start-up included)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env or ENV, check=True, capture_output=True)
    return time.perf_counter() - start


# ---------------------------------------------------------------- 1. the warm magic


def shell_with_extension(url: str, root: Path) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()  # a new shell, as a new kernel has
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "framefox_magic")
    os.chdir(root)
    shell.run_line_magic("config", f"MigrateMagics.url = {url!r}")
    return shell


def floor_status(versions: Path | None, database: Path) -> Callable[[], Any]:
    """The physical floor of `status`: one scan of the versions folder and one SELECT (without
    `versions`: the SELECT alone, the floor when the kernel reports that the folder is unchanged)."""

    def run() -> Any:
        keys = versions and sorted(
            (e.name, e.stat().st_mtime_ns) for e in os.scandir(versions) if e.name.endswith(".py"))
        connection = sqlite3.connect(database)
        try:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            connection.close()
        return keys, rows

    return run


BLOCK = 30


def in_blocks(run: Callable[[], Any]) -> Callable[[], float]:
    """The time per call of BLOCK calls in a row."""
    return lambda: seconds(lambda: [run() for _ in range(BLOCK)]) / BLOCK


def warm_magic(root: Path, url: str, size: int, repeat: int, cli_repeat: int) -> None:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    shell = shell_with_extension(url, root)
    magic = lambda: shell.run_line_magic("migrate", "status")  # noqa: E731
    assert magic().up_to_date

    def alembic_status() -> Any:  # fresh in-process alembic: current + heads
        config = Config()
        config.set_main_option("script_location", str(root / "migrations"))
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
        engine.dispose()
        return current, ScriptDirectory.from_config(config).get_heads()

    ours, theirs = in_turn(lambda: seconds(magic), lambda: seconds(alembic_status), repeat)
    report(f"%migrate status warm, {size} revisions", "alembic in-process current+heads",
           ours, theirs, "<= 0.02 (>= 50x faster)")
    floor = floor_status(root / "migrations" / "versions", root / "database.db")
    ours, theirs = in_turn(lambda: seconds(magic), lambda: seconds(floor), repeat)
    report(f"%migrate status warm, {size} revisions", "floor: folder scan + one SELECT",
           ours, theirs, "<= 2")
    select = floor_status(None, root / "database.db")
    ours, theirs = in_turn(lambda: seconds(magic), lambda: seconds(select), repeat)
    report(f"%migrate status warm, {size} revisions", "one SELECT alone (sqlite3, connect included)",
           ours, theirs, "(what is left)")
    # blocks of calls: on a busy machine a single call of 2 ms is often cut by the scheduler
    ours, theirs = in_turn(in_blocks(magic), in_blocks(floor), max(5, repeat // 3))
    report(f"%migrate status warm, {size} revisions, blocks of {BLOCK}", "floor, blocks of the same size",
           ours, theirs, "<= 2")
    if cli_repeat:
        alembic = [str(BIN / "alembic"), "-x", f"url={url}"]
        cli = lambda: process_wall([*alembic, "current"], root) + process_wall([*alembic, "heads"], root)  # noqa: E731
        ours, theirs = in_turn(lambda: seconds(magic), cli, cli_repeat)
        report(f"%migrate status warm, {size} revisions", "alembic CLI current + heads",
               ours, theirs, "<= 0.0033 (>= 300x faster)")
    shell.run_line_magic("unload_ext", "framefox_magic")


# ---------------------------------------------------------------- 2. cold history, 5,000 revisions


COLD_OURS = """
import os, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "framefox_magic")
shell.run_line_magic("config", "MigrateMagics.url = {url!r}")
start = time.perf_counter()
history = shell.run_line_magic("migrate", "history")
elapsed = time.perf_counter() - start
assert len(history) == {size}, len(history)
print(elapsed)
"""

COLD_ALEMBIC = """
import os, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
start = time.perf_counter()
from alembic.config import Config
from alembic.script import ScriptDirectory
config = Config()
config.set_main_option("script_location", "migrations")
revisions = list(ScriptDirectory.from_config(config).walk_revisions())
elapsed = time.perf_counter() - start
assert len(revisions) == {size}, len(revisions)
print(elapsed)
"""


# the manager's own path, as every first reading took before the quick one (and as any project that
# is not a SQLite chain at its head takes): alembic and SQLAlchemy imported in the timed call
WITHOUT_QUICK = """
from framefox_magic.manager import AlembicManager
AlembicManager._first_reading = lambda self, read: None
"""

# what the quick reading moves to the next command: alembic's import, paid by the second one
THEN_STATUS = """
status = shell.run_line_magic("migrate", "status")
assert status.up_to_date
"""

ALEMBIC_THEN_CURRENT = """
import sqlalchemy
from alembic.runtime.migration import MigrationContext
with sqlalchemy.create_engine({url!r}).connect() as connection:
    current = MigrationContext.configure(connection).get_current_heads()
assert len(current) == 1
"""


TIMER_STOPS = "elapsed = time.perf_counter() - start"


def _then(code: str, more: str) -> str:
    """CODE with MORE run inside its timed part (before the time is taken)."""
    return code.replace(TIMER_STOPS, more + TIMER_STOPS)


def _without_quick(code: str) -> str:
    """CODE with the manager's first reading done on its own path (alembic imported)."""
    shell = "shell = InteractiveShell.instance()"
    return code.replace(shell, WITHOUT_QUICK + shell)


def cold_history(root: Path, url: str, size: int, repeat: int) -> None:
    """First `%migrate history` in a fresh process vs alembic's ScriptDirectory walk there; the same
    on the manager's own path; and the first two commands (history, then status) against the walk
    and `current`, since the quick reading's saving is alembic's import, which the next command pays."""
    ours, theirs = COLD_OURS.format(url=url, size=size), COLD_ALEMBIC.format(size=size)
    rows = [
        ("%migrate history cold (fresh kernel)", "alembic ScriptDirectory walk", ours, theirs, "<= 1.0"),
        ("%migrate history cold, the manager's own path (no quick reading)", "alembic ScriptDirectory walk",
         _without_quick(ours), theirs, "(context)"),
        ("%migrate history, then %migrate status (fresh kernel)", "alembic walk, then current",
         _then(ours, THEN_STATUS), _then(theirs, ALEMBIC_THEN_CURRENT.format(url=url)), "(context)"),
    ]
    for label, baseline, our_code, their_code, goal in rows:
        timed = in_turn(partial(process_seconds, our_code, root), partial(process_seconds, their_code, root),
                        repeat)
        report(f"{label}, {size} revisions", baseline, *timed, goal)


def warm_history(projects: dict[int, tuple[Path, str]], small: int, large: int, repeat: int) -> None:
    """Warm history (magic + HTML) at `large` revisions over its time at `small`, timed in turn; and
    the same ratio for the floor (the folder scan alone), which grows with the number of files."""
    from IPython.core.interactiveshell import InteractiveShell

    shells = {}
    for size in (small, large):  # two shells side by side, each on its own project
        root, url = projects[size]
        shells[size] = shell = InteractiveShell()
        shell.run_line_magic("load_ext", "framefox_magic")
        shell.run_line_magic("config", f"MigrateMagics.url = {url!r}")
        shell.run_line_magic("config", f"MigrateMagics.migrations_dir = {str(root / 'migrations')!r}")
        history = shell.run_line_magic("migrate", "history")
        html = history._repr_html_()  # a long history draws its newest, current and oldest rows (as pandas)
        assert len(history.revisions) == size and html.count("<tr") > 10

    def listed(size: int, what: str = "history") -> Callable[[], float]:
        return lambda: seconds(lambda: shells[size].run_line_magic("migrate", what)._repr_html_())

    for what in ("history", "graph"):
        at_large, at_small = in_turn(listed(large, what), listed(small, what), repeat)
        report(f"%migrate {what} warm + HTML, {large} vs {small} revisions", f"the same at {small}",
               at_large, at_small, "<= 3")
    floors = {size: floor_status(projects[size][0] / "migrations" / "versions",
                                 projects[size][0] / "database.db") for size in (small, large)}
    at_large, at_small = in_turn(lambda: seconds(floors[large]), lambda: seconds(floors[small]), repeat)
    report(f"floor (folder scan + one SELECT), {large} vs {small} revisions", f"the same at {small}",
           at_large, at_small, "(the physical part)")
    for shell in shells.values():
        shell.run_line_magic("unload_ext", "framefox_magic")


MEMORY = """
import gc, tracemalloc
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "framefox_magic")
shell.run_line_magic("config", "MigrateMagics.url = {url!r}")
import alembic.script, sqlalchemy, pandas  # imports are not what a listing holds
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
shell.run_cell("h = %migrate history\\nhtml = h._repr_html_()\\nframe = h.to_frame()")
shell.run_cell("graph = %migrate graph\\ngraph_html = graph._repr_html_()")
gc.collect()
print((tracemalloc.get_traced_memory()[0] - before) / 2**20)
"""


def memory(root: Path, url: str, size: int) -> None:
    held = process_seconds(MEMORY.format(url=url), root)  # prints MiB, not seconds
    print(f"memory held after listing {size} revisions (result kept): {held:.1f} MiB  goal <= 50", flush=True)
    ROWS.append({"measure": f"memory held after `h = %migrate history`, {size} revisions (MiB)",
                 "baseline": "", "ours_ms": held, "theirs_ms": float("nan"), "ratio": float("nan"),
                 "goal": "<= 50 MiB", "load": os.getloadavg()[0]})


# ---------------------------------------------------------------- 3. the CLI, 4. loading


def cli(root: Path, url: str, size: int, repeat: int) -> None:
    env = {**ENV, "DATABASE_URL": url}
    ours, theirs = in_turn(
        lambda: process_wall([str(BIN / "framefox-migrate"), "status"], root, env),
        lambda: process_wall([str(BIN / "alembic"), "-x", f"url={url}", "current"], root), repeat)
    report(f"framefox-migrate status (new process), {size} revisions", "alembic current",
           ours, theirs, "<= 0.6")


def loading(repeat: int) -> None:
    shell = "from IPython.core.interactiveshell import InteractiveShell; s = InteractiveShell.instance()"
    load = shell + "; s.run_line_magic('load_ext', 'framefox_magic')"
    ours, theirs = in_turn(
        lambda: process_wall([PYTHON, "-c", load], HERE),
        lambda: process_wall([PYTHON, "-c", shell], HERE), repeat)
    report("IPython shell + %load_ext framefox_magic", "the IPython shell alone", ours, theirs, "<= 1.1")


# ---------------------------------------------------------------- report


def write(path: Path, command: str) -> None:
    lines = [f"Reproduce: `{command}`", "",
             "| measure | baseline | ours (ms) | baseline (ms) | ratio | fastest / fastest | goal | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in ROWS:
        fastest = row.get("fastest", float("nan"))
        lines.append(f"| {row['measure']} | {row['baseline']} | {row['ours_ms']:.2f} | "
                     f"{row['theirs_ms']:.2f} | {row['ratio']:.3f} | {fastest:.3f} | {row['goal']} | "
                     f"{row.get('load', float('nan')):.1f} |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def needed_sizes(parts: set[str], quick: bool) -> set[int]:
    """The projects the chosen parts read (writing 5,000 files takes a while)."""
    sizes: set[int] = set()
    if "warm" in parts:
        sizes.add(500)
    if "cold" in parts:
        sizes |= {30, 300} | (set() if quick else {3000})
    if ("large" in parts or "memory" in parts) and not quick:
        sizes |= {500, 5000}
    if "cli" in parts:
        sizes |= {30, 500}
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 5,000 revisions")
    parser.add_argument("--only", help="comma-separated parts: warm,cold,large,memory,cli,load")
    args = parser.parse_args()
    parts = set((args.only or "warm,cold,large,memory,cli,load").split(","))
    repeat = 5 if args.quick else 15
    sizes = needed_sizes(parts, args.quick)
    with tempfile.TemporaryDirectory() as folder:
        projects = {size: make_project(Path(folder) / f"linear{size}", size) for size in sorted(sizes)}
        print(f"projects written: {sorted(sizes)}", flush=True)
        if "warm" in parts:
            warm_magic(*projects[500], 500, repeat * 2, cli_repeat=0 if args.quick else 3)
        if "cold" in parts:
            for size in (30, 300) if args.quick else (30, 300, 3000):
                cold_history(*projects[size], size, repeat=3 if args.quick else 7)
        if "large" in parts and not args.quick:
            warm_history(projects, 500, 5000, repeat=7)
        if "memory" in parts and not args.quick:
            memory(*projects[5000], 5000)
        if "cli" in parts:
            for size in (30, 500):
                cli(*projects[size], size, repeat=3 if args.quick else 7)
        if "load" in parts:
            loading(repeat=3 if args.quick else 9)
        os.chdir(HERE)  # the shells' exit handlers read the working folder, about to be removed
    write(HERE / "MAGIC_RESULTS.md", "python bench/magic.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
