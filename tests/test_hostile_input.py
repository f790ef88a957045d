"""Hostile %migrate input (any line, revision id, message, path or URL) ends in a short error or
success, changes nothing when it fails and never writes outside migrations/versions/."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    assert_short,
    create_table,
    files_under,
)
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import AlembicManager, commands
from framefox_magic.errors import MigrationError

HAS_PANEL = importlib.util.find_spec("framefox_magic.widgets") is not None
EXAMPLE_SECONDS = 90  # a bound against hangs, not a speed requirement
HYPOTHESIS = settings(
    deadline=None, database=None, derandomize=True,  # the same examples on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)


def examples(count: int) -> settings:
    """Bounded hypothesis runs: no deadline (databases are slow at times), no example database."""
    return settings(HYPOTHESIS, max_examples=count)


class Hung(BaseException):
    """An example ran past its time bound (BaseException: no `except Exception` swallows it)."""


@contextmanager
def time_bound(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def database_state(url: str) -> tuple[Any, ...]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = sorted(sa.inspect(connection).get_table_names())
            contents = {t: sorted(map(tuple, connection.execute(sa.text(f'SELECT * FROM "{t}"'))))
                        for t in tables}
    finally:
        engine.dispose()
    return tables, contents


SQLITE_URL = "sqlite:///app.db"  # relative: anchored at the project root of each copy


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite project: r1..r3 creating t1..t3, the database at r2 with a row in t1."""
    root = tmp_path_factory.mktemp("template") / "project"
    root.mkdir()
    manager = AlembicManager(url=SQLITE_URL, metadata=sa.MetaData(), project_root=root)
    manager.init()
    for n in (1, 2, 3):
        manager.revision(f"create t{n}", autogenerate=False, rev_id=f"r{n}",
                         upgrade_body=create_table(f"t{n}"), downgrade_body=f'op.drop_table("t{n}")')
    manager.upgrade("r2")
    with sqlite3.connect(root / "app.db") as connection:
        connection.execute("INSERT INTO t1 (id) VALUES (7)")
    connection.close()
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache)
    return root


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


class Copy:
    """A fresh copy of the template project inside a work folder with sentinels around it."""

    def __init__(self, template: Path, scratch: Path) -> None:
        self.work = Path(tempfile.mkdtemp(dir=scratch))
        self.root = self.work / "project"
        shutil.copytree(template, self.root)
        self.temp = self.work / "tmp"  # tempfile.tempdir while the example runs
        self.temp.mkdir()
        for sentinel in (self.work / "outside.txt", self.work / "etc" / "passwd",
                         self.root / "etc" / "passwd", self.root / "migrations" / "x.py"):
            sentinel.parent.mkdir(exist_ok=True)
            sentinel.write_text("sentinel: not a revision\nraise SystemExit('imported a sentinel')\n")
        self.outside_before = self.outside()

    @property
    def versions(self) -> Path:
        return self.root / "migrations" / "versions"

    def manager(self) -> AlembicManager:
        return AlembicManager(url=SQLITE_URL, metadata=sa.MetaData(), project_root=self.root)

    def state(self) -> tuple[Any, ...]:
        """The migrations folder (files and contents) and the database (tables, rows, versions)."""
        return files_under(self.root / "migrations"), database_state(f"sqlite:///{self.root / 'app.db'}")

    def outside(self) -> dict[str, bytes]:
        """Every file in the work folder that is not in the project, plus the sentinels inside it."""
        found = {k: v for k, v in files_under(self.work).items() if not k.startswith("project/")}
        for sentinel in (self.root / "etc" / "passwd", self.root / "migrations" / "x.py"):
            found[str(sentinel)] = sentinel.read_bytes() if sentinel.exists() else b"<gone>"
        return found

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


@contextmanager
def copy_of(template: Path, scratch: Path) -> Iterator[Copy]:
    copy = Copy(template, scratch)
    saved_path, saved_temp = list(sys.path), tempfile.tempdir
    tempfile.tempdir = str(copy.temp)
    try:
        with time_bound():
            yield copy
    finally:
        tempfile.tempdir = saved_temp
        sys.path[:] = saved_path
        copy.remove()


class Frontend:
    """What a sub-command may ask of its front end: no progress display, the real panel."""

    def progress(self, verb: str) -> None:
        return None

    def panel(self, manager: AlembicManager) -> Any:
        if not HAS_PANEL:
            raise MigrationError("no panel")
        from framefox_magic.widgets import MigrationPanel

        return MigrationPanel(manager)


# ---------------------------------------------------------------- the vocabulary of hostile lines

SUB_COMMANDS = sorted(commands.BY_NAME)
FLAGS = sorted(
    {flag for c in commands.COMMANDS for a in (*c.args, *commands.TARGET_OPTIONS) for flag in a.flags
     if flag.startswith("-") and flag not in ("--url", "--dir", "--metadata")}
    | {"-h", "--help", "--", "-", "--nope", "-x", "--yes", "--force", "--purge", "--sql", "--plan"}
)
REVISION_WORDS = (
    "r1", "r2", "r3", "r", "R1", "head", "heads", "base", "+1", "-1", "+2", "-5", "+0", "r1:r2", "base:head",
    "r3:r1", ":", "::", "r1@head", "@", "other@head", "head-1", "r2+1", "heads:base", "r1,r2",
)
HOSTILE_WORDS = (
    "../x", "../../x", "../../etc/passwd", "/etc/passwd", "..", ".", "~", "*", "%s", "%(here)s", "$HOME",
    "\x00", "a\x00b", "\\", "\\U0000", '"""', "'''", "é", "💥", "\u202e", "\ud800", "x" * 300, "\n", "\r",
    "\t", ";", "&&", "|", "$(touch pwned)", "`id`", "{0}", "<script>", "NULL", "DROP TABLE t1;",
)
URLS = (
    "sqlite:///other.db", "sqlite://", "nosuch://x", "postgresql://u:pw@127.0.0.1:1/x",
    "mysql+pymysql://root:pw@127.0.0.1:1/x", "postgresql+nosuchdriver://x", "://", "sqlite:///no/such/x.db",
    "not a url", "postgresql://", "mysql://", "postgresql://127.0.0.1:1", "sqlite:///app.db",
)
DIRS = ("migrations", "other", "no/such")
METADATA = ("nosuch_module_xyz:metadata", "json:loads", ":", "a b:c", "sqlalchemy:MetaData", "x:")


def words() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SUB_COMMANDS + FLAGS + list(REVISION_WORDS) + list(HOSTILE_WORDS)),
        st.text(max_size=12),
        st.sampled_from(["-m", "--message", "--rev-id", "--head", "--branch-label", "--depends-on", "-r"])
        .flatmap(lambda flag: st.one_of(st.sampled_from(HOSTILE_WORDS + REVISION_WORDS), st.text(max_size=20))
                 .map(lambda value: f"{flag} {shlex.quote(value)}")),
        st.sampled_from(URLS).map(lambda url: f"--url {shlex.quote(url)}"),
        st.sampled_from(DIRS).map(lambda folder: f"--dir {folder}"),
        st.sampled_from(METADATA).map(lambda spec: f"--metadata {shlex.quote(spec)}"),
    )


def quoted(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, shlex.quote(word)])


def values(arg: commands.Arg) -> st.SearchStrategy[str]:
    """Hostile values for one argument: revision-like ones where a revision goes."""
    hostile = st.sampled_from(HOSTILE_WORDS + tuple(HOSTILE_MESSAGES.values()))
    if arg.kind == commands.REVISION:
        return st.one_of(st.sampled_from(REVISION_WORDS), hostile, st.text(max_size=16))
    return st.one_of(hostile, st.text(max_size=30), st.sampled_from(REVISION_WORDS))


@st.composite
def grammar_lines(draw: st.DrawFn) -> str:
    """A line the grammar nearly accepts: a sub-command with its arguments, hostile values in them
    (confirmations included: every example runs on its own copy), now and then a stray word."""
    command = draw(st.sampled_from(commands.COMMANDS))
    parts = [command.name]
    for arg in command.args:
        if arg.positional:
            nargs = arg.options.get("nargs")
            if nargs == "?" and draw(st.booleans()):
                continue
            parts += [draw(values(arg)) for _ in range(draw(st.integers(1, 3)) if nargs == "+" else 1)]
        elif arg.options.get("required") or draw(st.booleans()):
            parts.append(draw(st.sampled_from(arg.flags)))
            if arg.options.get("action") != "store_true":
                parts.append(draw(values(arg)))
    if draw(st.integers(0, 4)) == 0:
        parts.insert(draw(st.integers(1, len(parts))), draw(words()))
    quote = draw(st.sampled_from([shlex.quote, shlex.quote, str]))
    return " ".join([parts[0], *map(quote, parts[1:])])


@st.composite
def migrate_lines(draw: st.DrawFn) -> str:
    """A %migrate line: built from the grammar, or a (mostly real) sub-command and hostile words,
    or any text at all."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.text(max_size=60))
    if choice <= 6:
        return draw(grammar_lines())
    head = draw(st.one_of(st.sampled_from(SUB_COMMANDS), st.sampled_from(["help", "", "-o", "statu"]),
                          st.text(max_size=8)))
    rest = draw(st.lists(words().flatmap(quoted), max_size=5))
    return " ".join([head, *rest])


def acceptable_target(args: Any) -> bool:
    """Targets a hostile line may choose stay inside the copy: only the listed URLs, folders and
    metadata specs (a random --dir could be `/`, a random sqlite path anywhere: a user's choice)."""
    return (
        getattr(args, "url", None) in (None, *URLS)
        and getattr(args, "migrations_dir", None) in (None, *DIRS)
        and getattr(args, "metadata", None) in (None, *METADATA)
    )


def run_line(manager: AlembicManager, line: str) -> tuple[str, Any]:
    """("help" | "error" | "ok", value) for one line; any other exception escapes."""
    try:
        args = commands.parse(line)
    except commands.HelpShown as shown:
        return "help", shown.text
    except MigrationError as error:
        return "error", error
    assume(acceptable_target(args))
    try:
        result = commands.execute(manager, args, Frontend())
    except MigrationError as error:
        return "error", error
    return "ok", result


def rendered(result: Any) -> None:
    """Showing a result works too (that is what the notebook does with it)."""
    repr(result)
    if hasattr(result, "_repr_html_"):
        result._repr_html_()


@examples(150)
@given(line=migrate_lines())
@example(line="delete ../../etc/passwd --yes --force")
@example(line="revision -m x --rev-id ../../x")
@example(line="show ../x")
def test_any_migrate_line_ends_in_a_short_error_or_success(template, scratch, line):
    with copy_of(template, scratch) as copy:
        kind, value = run_line(copy.manager(), line)
        if kind == "error":
            assert_short(str(value))
        elif kind == "ok":
            rendered(value)
        assert copy.outside() == copy.outside_before


@examples(150)
@given(line=migrate_lines())
@example(line="stamp r --purge --yes")
@example(line="revision -m 'C:\\Users\\new'")
def test_a_migrate_line_that_fails_changes_nothing(template, scratch, line):
    with copy_of(template, scratch) as copy:
        before = copy.state()
        kind, value = run_line(copy.manager(), line)
        if kind != "ok":
            assert copy.state() == before, f"{line!r} failed ({value}) but changed the project"
        assert copy.outside() == copy.outside_before


# ---------------------------------------------------------------- through a real IPython shell


def magics_of(shell: InteractiveShell) -> Any:
    return shell.magics_manager.registry["MigrateMagics"]


@examples(40)
@given(line=migrate_lines())
@example(line="stamp r --purge --yes")
@example(line="upgrade r3 -o out")
def test_any_migrate_line_in_a_shell_is_a_usage_error_or_success(shell, template, scratch, line, capsys):
    try:
        args = commands.parse(line, extra=(commands.Arg(("-o", "--output"), "", options={"dest": "output"}),))
        assume(acceptable_target(args))
    except (commands.HelpShown, MigrationError):
        pass
    with copy_of(template, scratch) as copy, chdir(copy.root):
        magics = magics_of(shell)
        magics.manager = AlembicManager(url=SQLITE_URL, metadata=sa.MetaData())
        before = copy.state()
        try:
            result = shell.run_line_magic("migrate", line)
        except UsageError as error:
            assert_short(str(error))
            assert copy.state() == before, f"{line!r} failed ({error}) but changed the project"
        else:
            rendered(result)
        assert copy.outside() == copy.outside_before
    capsys.readouterr()


# ---------------------------------------------------------------- revision ids, messages, paths

HOSTILE_REV_IDS = {
    "parent-dir": "../../x",
    "one-up": "../x",
    "absolute": "/tmp/x",
    "slash": "a/b",
    "dots": "..",
    "nul": "x\x00y",
    "space": "x y",
    "too-long": "x" * 33,
    "existing-id": "r1",
    "reserved-base": "base",
}


@pytest.mark.parametrize("via", ["api", "magic"])
@pytest.mark.parametrize("rev_id", HOSTILE_REV_IDS.values(), ids=list(HOSTILE_REV_IDS))
def test_hostile_revision_id_is_refused_and_writes_nothing(rev_id, via, template, scratch, shell):
    with copy_of(template, scratch) as copy, chdir(copy.root):
        before = copy.state()
        if via == "api":
            with pytest.raises(MigrationError) as caught:
                copy.manager().revision("hostile", autogenerate=False, rev_id=rev_id)
        else:
            magics_of(shell).manager = AlembicManager(url=SQLITE_URL, metadata=sa.MetaData())
            with pytest.raises(UsageError) as caught:
                shell.run_line_magic("migrate", f"revision -m hostile --rev-id {shlex.quote(rev_id)}")
        assert_short(str(caught.value))
        assert copy.state() == before
        assert copy.outside() == copy.outside_before
        assert [r.revision for r in copy.manager().history()] == ["r3", "r2", "r1"]


@examples(80)
@given(rev_id=st.one_of(st.text(max_size=40), st.sampled_from(list(HOSTILE_REV_IDS.values())),
                        st.from_regex(r"[A-Za-z0-9_]{1,32}", fullmatch=True)))
def test_any_revision_id_is_refused_or_names_a_file_inside_versions(rev_id, template, scratch):
    with copy_of(template, scratch) as copy:
        before = copy.state()
        try:
            info = copy.manager().revision("any id", autogenerate=False, rev_id=rev_id)
        except MigrationError as error:
            assert_short(str(error))
            assert copy.state() == before
        else:
            path = Path(info.path).resolve()
            assert path.parent == copy.versions.resolve()
            assert info.revision == rev_id
            assert rev_id in [r.revision for r in copy.manager().history()]
        assert copy.outside() == copy.outside_before


HOSTILE_MESSAGES = {
    "slash": "a/b/c",
    "dot-dot": "../../etc/passwd",
    "nul": "before\x00after",
    "very-long": "long " * 2000,
    "triple-quote": 'say """hello"""',
    "windows-path": "C:\\Users\\new\\table",
    "named-escape": "it's \\N{nothing}",
    "trailing-backslash": "ends with \\",
    "newlines": "first\n\nsecond",
    "lone-surrogate": "bad \ud800 text",
    "percent": "100% of %(here)s",
    "html": "<script>alert(1)</script>",
}


def assert_revision_written_or_refused(copy: Copy, before: tuple, write: Any, message: str) -> None:
    """Either a short error with nothing changed, or one new file in versions/ that loads and
    shows the message; either way nothing is written anywhere else."""
    try:
        info = write()
    except (MigrationError, UsageError) as error:
        assert_short(str(error))
        assert copy.state() == before, "the revision failed but the migrations folder changed"
    else:
        new = set(files_under(copy.root / "migrations")) - set(before[0])
        assert len(new) == 1, new
        path = Path(info.path).resolve()
        assert path.parent == copy.versions.resolve()
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
        shown = {r.revision: r.message for r in copy.manager().history()}
        assert info.revision in shown
        if message.isprintable() and message.strip():  # one line of text: it comes back as typed
            assert shown[info.revision].strip() == message.strip()
    assert copy.outside() == copy.outside_before
    assert not list(copy.temp.iterdir()), "something was written to the temporary folder"


@pytest.mark.parametrize("via", ["api", "magic"])
@pytest.mark.parametrize("message", HOSTILE_MESSAGES.values(), ids=list(HOSTILE_MESSAGES))
def test_hostile_message_stays_inside_versions(message, via, template, scratch, shell):
    with copy_of(template, scratch) as copy, chdir(copy.root):
        before = copy.state()
        if via == "api":
            def write() -> Any:
                return copy.manager().revision(message, autogenerate=False)
        else:
            magics_of(shell).manager = AlembicManager(url=SQLITE_URL, metadata=sa.MetaData())

            def write() -> Any:
                return shell.run_line_magic("migrate", f"revision -m {shlex.quote(message)}")

        assert_revision_written_or_refused(copy, before, write, message)


@examples(100)
@given(message=st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.tuples(st.sampled_from(list(HOSTILE_MESSAGES.values()) + list(HOSTILE_WORDS)), st.text(max_size=10))
    .map("".join),
))
def test_any_message_is_written_inside_versions_or_refused(message, template, scratch):
    with copy_of(template, scratch) as copy:
        before = copy.state()
        assert_revision_written_or_refused(
            copy, before, lambda: copy.manager().revision(message, autogenerate=False), message
        )


PATH_LINES = (
    "delete ../../etc/passwd --yes --force",
    "delete ../x --yes --force",
    "delete /etc/passwd --yes --force",
    "delete ../../../outside.txt --yes --force",
    "show ../x",
    "show ../../etc/passwd",
    "diff ../x",
    "sql ../x:r1",
    "upgrade ../x",
    "stamp ../x --yes",
)


@pytest.mark.parametrize("via", ["commands", "magic"])
@pytest.mark.parametrize("line", PATH_LINES)
def test_a_path_where_a_revision_goes_reads_and_moves_nothing(line, via, template, scratch, shell):
    with copy_of(template, scratch) as copy, chdir(copy.root):
        before = copy.state()
        if via == "commands":
            with pytest.raises(MigrationError) as caught:
                commands.execute(copy.manager(), commands.parse(line), Frontend())
        else:
            magics_of(shell).manager = AlembicManager(url=SQLITE_URL, metadata=sa.MetaData())
            with pytest.raises(UsageError) as caught:
                shell.run_line_magic("migrate", line)
        message = str(caught.value)
        assert_short(message)
        assert "sentinel" not in message  # no file outside versions/ was read
        assert copy.state() == before
        assert copy.outside() == copy.outside_before


EMPTY_REVISION_LINES = ("show ''", "upgrade ''", "diff ''", "delete '' --yes", "show @", "sql ':'")


@pytest.mark.parametrize("line", EMPTY_REVISION_LINES)
def test_an_empty_revision_gets_an_actionable_message(line, template, scratch):
    with copy_of(template, scratch) as copy:
        before = copy.state()
        with pytest.raises(MigrationError) as caught:
            commands.execute(copy.manager(), commands.parse(line), Frontend())
        message = str(caught.value)
        assert_short(message)
        assert "AssertionError" not in message  # an internal failure is not a message a user can act on
        assert "revision" in message.lower()
        assert copy.state() == before


URL_SCHEMES = ("postgresql://", "postgresql+psycopg://", "mysql://", "mysql+pymysql://", "nosuch://",
               "postgresql+nosuchdriver://", "mariadb://", "")


@st.composite
def hostile_urls(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.text(max_size=40).filter(lambda u: "sqlite" not in u.lower()))
    if choice == 1:
        return draw(st.sampled_from(URLS))
    # a server URL on a closed local port, with hostile user, password and database parts
    part = st.text(max_size=12)
    user, password, database = draw(part), draw(part), draw(part)
    return (f"{draw(st.sampled_from(URL_SCHEMES))}{user}:{password}@127.0.0.1:"
            f"{draw(st.sampled_from(['1', '0', '99999', 'x', '']))}/{database}")


@examples(80)
@given(url=hostile_urls(), operation=st.sampled_from(["status", "history", "upgrade", "config"]))
def test_any_url_ends_in_a_short_error_or_success(url, operation, template, scratch):
    assume(not re.search(r"sqlite", url, re.IGNORECASE) or url in URLS)
    with copy_of(template, scratch) as copy:
        before = copy.state()
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=copy.root)
        try:
            result = getattr(manager, operation)()
        except MigrationError as error:
            assert_short(str(error))
            assert copy.state() == before
        else:
            rendered(result)
        assert copy.outside() == copy.outside_before




def test_a_very_long_revision_name_or_stray_words_get_a_short_message(template, scratch):
    with copy_of(template, scratch) as copy:
        with pytest.raises(MigrationError) as unknown:
            commands.execute(copy.manager(), commands.parse("sql '" + "long " * 2000 + "'"), Frontend())
        assert str(unknown.value).startswith("No revision 'long long")
        assert_short(str(unknown.value))
        with pytest.raises(MigrationError) as stray:
            commands.parse("sql " + "long " * 2000)
        assert str(stray.value).startswith("unrecognized arguments: long long")
        assert_short(str(stray.value))
