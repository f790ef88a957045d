"""A database password never shows: not in output, HTML, widgets, reprs, logs, warnings,
tracebacks, files or a saved notebook, whichever front end is used."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import traceback
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    HERO_CELL,
    POWER_CELL,
    SERVER_URLS,
    create_table,
    discard_shell,
    need_server,
    run_cli,
    table_names,
    version_rows,
)
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from framefox_magic import AlembicManager, commands
from framefox_magic.errors import MigrationError

HAS_PANEL = importlib.util.find_spec("framefox_magic.widgets") is not None
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Evidence:
    """Every piece of text the package produced during a session, with where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: Any) -> None:
        self.texts.append((where, text if isinstance(text, str) else repr(text)))

    def result(self, where: str, value: Any) -> None:
        self.add(f"{where}: str", str(value))
        self.add(f"{where}: repr", repr(value))
        if hasattr(value, "_repr_html_"):
            self.add(f"{where}: html", value._repr_html_() or "")
        if hasattr(value, "to_frame"):
            self.add(f"{where}: frame", value.to_frame().to_string())
        if hasattr(value, "children") or hasattr(value, "value"):
            for n, text in enumerate(widget_texts(value)):
                self.add(f"{where}: widget text {n}", text)

    def error(self, where: str, error: BaseException) -> None:
        self.add(f"{where}: traceback", "".join(traceback.format_exception(error)))
        seen: set[int] = set()
        stack: list[BaseException | None] = [error]
        while stack:
            current = stack.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            self.add(f"{where}: {type(current).__name__} str", str(current))
            self.add(f"{where}: {type(current).__name__} repr", repr(current))
            self.add(f"{where}: {type(current).__name__} args", repr(current.args))
            self.add(f"{where}: traceback of {type(current).__name__}",
                     "".join(traceback.format_exception(current)))
            stack += [current.__cause__, current.__context__, getattr(current, "orig", None)]

    def files(self, root: Path) -> None:
        for path in root.rglob("*"):
            self.add(f"file name {path}", path.name)
            if path.is_file():
                self.add(f"file {path}", path.read_bytes().decode("utf-8", "replace"))

    def leaks(self, *secrets: str, typed: tuple[str, ...] = ()) -> list[str]:
        """Where a secret shows up. TYPED: source lines the user typed, which IPython itself echoes
        in a traceback (`----> 1 get_ipython().run_line_magic(...)`); they are not this package's."""
        found = []
        for where, text in self.texts:
            text = ANSI.sub("", text)
            for line in typed:
                text = text.replace(line, "<typed by the user>")
            if any(secret in text for secret in secrets):
                found.append(where)
        return found


def widget_texts(widget: Any) -> Iterator[str]:
    """The text every widget of a panel shows: HTML values, labels, options, tooltips."""
    seen: set[int] = set()
    stack = [widget]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for name in ("value", "description", "tooltip", "placeholder"):
            text = getattr(current, name, None)
            if isinstance(text, str):
                yield text
        for option in getattr(current, "options", ()) or ():
            yield repr(option)
        for title in getattr(current, "titles", ()) or ():
            yield str(title)
        stack += list(getattr(current, "children", ()) or ())


class Collected(logging.Handler):
    def __init__(self, evidence: Evidence) -> None:
        super().__init__(logging.DEBUG)
        self.evidence = evidence
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.evidence.add(f"log {record.name}", self.format(record))
        except Exception as error:  # a record that cannot be formatted: keep what it holds
            self.evidence.add(f"log {record.name} (unformatted: {error})", f"{record.msg!r} {record.args!r}")


@contextmanager
def everything_recorded(evidence: Evidence) -> Iterator[None]:
    """Logging at DEBUG on the root, alembic and sqlalchemy loggers, and every warning."""
    handler = Collected(evidence)
    loggers = [logging.getLogger(), logging.getLogger("alembic"), logging.getLogger("sqlalchemy")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            evidence.add(f"warning {warning.category.__name__}", f"{warning.message} {warning.filename}")
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


PASSWORDS = {"plain": "", "url-special": "/p@ss:w0rd?#"}


@pytest.fixture(params=PASSWORDS.values(), ids=list(PASSWORDS))
def secret_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(URL, secret): a PostgreSQL role with a password that owns a fresh database. Local trust
    auth accepts any password; what matters is that the string never shows up."""
    need_server("postgresql")
    token = uuid.uuid4().hex[:12]
    secret = f"s3cr3t-{token}"
    password = secret + request.param
    role, database = f"ffm_role_{token}", f"ffm_{token}"
    admin = sa.create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        connection.exec_driver_sql(f"CREATE DATABASE {database} OWNER {role}")
    url = sa.URL.create("postgresql", username=role, password=password, host="127.0.0.1", port=5432,
                        database=database).render_as_string(hide_password=False)
    assert secret in url
    try:
        yield url, secret
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def wrong_port(url: str) -> str:
    return sa.make_url(url).set(port=1).render_as_string(hide_password=False)


BROKEN_CELL = '''%%revision -m "broken" --manual --rev-id broken
op.execute("SELECT * FROM no_such_table")
'''


def notebook_session(url: str) -> list[tuple[str, bool | None]]:
    """(cell, should it succeed) for a whole session; None: either is fine."""
    bad = wrong_port(url)
    return [
        (f"%migrate init --url {url}", True),
        ("%migrate config", True),
        (HERO_CELL, True),
        ("%migrate upgrade", True),
        ("%migrate history", True),
        ("%migrate status", True),
        ("%migrate current", True),
        ("%migrate heads", True),
        ("%migrate show head", True),
        ("%migrate diff", True),
        ("%migrate diff head", True),
        ("%migrate sql", True),
        ("%migrate upgrade --sql", True),
        ("%migrate upgrade --plan", True),
        ("%migrate graph", True),
        ("%migrate check", True),
        (POWER_CELL, True),
        ("%migrate check", False),
        ("%migrate downgrade base", False),
        ("%migrate downgrade base --yes", True),
        ("%migrate upgrade -o done", True),
        (BROKEN_CELL, True),
        ("%migrate upgrade", False),
        (f"%migrate status --url {bad}", False),
        (f"%migrate config --url {url}", True),
        ("%config MigrateMagics.short_errors = False", True),
        ("%migrate upgrade", False),
        (f"%migrate status --url {bad}", False),
        (f"%migrate config --url {url}", True),
        ("%config MigrateMagics.short_errors = True", True),
        ("%migrate panel", True),
        ("%migrate delete broken --yes", True),
        ("%migrate stamp head --purge --yes", True),
        ("%migrate history", True),
    ]


@pytest.mark.servers
def test_password_never_appears_in_a_notebook_session(secret_url, tmp_path, monkeypatch, capsys):
    url, secret = secret_url
    project = tmp_path / "notebook"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    evidence = Evidence()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    try:
        with everything_recorded(evidence):
            shell.run_line_magic("load_ext", "framefox_magic")
            for cell, should_succeed in notebook_session(url):
                where = cell.replace(url, "<URL>").replace(wrong_port(url), "<WRONG PORT URL>")[:60]
                result = shell.run_cell(cell)
                out, err = capsys.readouterr()
                evidence.add(f"stdout of {where}", out)
                evidence.add(f"stderr of {where}", err)
                if result.result is not None:
                    evidence.result(where, result.result)
                for error in (result.error_before_exec, result.error_in_exec):
                    if error is not None:
                        evidence.error(where, error)
                if should_succeed is not None:
                    assert result.success is should_succeed, (where, out[-800:], err[-800:])
            evidence.result("user variable done", shell.user_ns["done"])  # stored by -o
    finally:
        discard_shell(shell)
    evidence.files(tmp_path)
    typed = tuple(
        line.strip() for cell, _ in notebook_session(url)
        for line in shell.transform_cell(cell).splitlines() if line.startswith("get_ipython()")
    )

    assert len(evidence.texts) > 100  # the session really produced output to look through
    assert evidence.leaks(secret, typed=typed) == []


def fill(path: Path, function: str, body: str) -> None:
    """Put BODY into upgrade() or downgrade() of a revision file written without one."""
    source = path.read_text()
    filled = re.sub(rf'(def {function}\(\) -> None:\n    """\w+ schema."""\n)    pass\n',
                    lambda m: m.group(1) + f"    {body}\n", source, count=1)
    assert filled != source
    path.write_text(filled)


def cli_steps(url: str) -> list[tuple[tuple[str, ...], str, bool | None, bool]]:
    """(words, DATABASE_URL, should it succeed, in a real process) for a whole CLI session;
    None: either is fine. Most steps run through cli.main in this process; two in a real one."""
    bad = wrong_port(url)
    return [
        (("init",), url, True, False),
        (("config",), url, True, True),
        (("revision", "-m", "one", "--rev-id", "c1"), url, True, False),
        (("upgrade",), url, True, False),
        (("status",), url, True, False),
        (("history",), url, True, False),
        (("current",), url, True, False),
        (("heads",), url, True, False),
        (("show", "c1"), url, True, False),
        (("diff", "c1"), url, True, False),
        (("diff",), url, True, False),
        (("sql",), url, True, False),
        (("upgrade", "--sql"), url, True, False),
        (("graph",), url, True, False),
        (("check",), url, None, False),
        (("downgrade", "base"), url, False, False),
        (("downgrade", "base", "--yes"), url, True, False),
        (("upgrade",), url, True, False),
        (("revision", "-m", "broken", "--rev-id", "c2"), url, True, False),
        (("upgrade",), url, False, True),
        (("status",), bad, False, False),
        (("history",), bad, False, False),
        (("stamp", "c1", "--purge", "--yes"), url, True, False),
        (("panel",), url, False, False),
        (("--help",), url, True, False),
    ]


def recorded_cli(cli_main: Any, project: Path, url: str, words: tuple[str, ...],
                 evidence: Evidence) -> tuple[int, str, str]:
    """cli.main in this process: (exit code, stdout, stderr); logs, warnings and any exception
    that escapes (a real process would print its traceback and exit 1) go into EVIDENCE."""
    try:
        with everything_recorded(evidence):
            done = cli_main(project, url, *words)
    except SystemExit as exit_:
        evidence.add(f"exit of {' '.join(words)}", exit_.code)
        return (0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1), "", ""
    except Exception as error:
        evidence.error(" ".join(words), error)
        return 1, "", ""
    return done.returncode, done.stdout, done.stderr


@pytest.mark.servers
def test_password_never_appears_through_the_cli(secret_url, tmp_path, cli_main):
    url, secret = secret_url
    project = tmp_path / "cli"
    project.mkdir()
    evidence = Evidence()
    versions = project / "migrations" / "versions"
    for words_, target, should_succeed, real_process in cli_steps(url):
        where = " ".join(words_) + (" (wrong port)" if target != url else "")
        if real_process:
            done = run_cli(project, target, *words_)
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            code, out, err = recorded_cli(cli_main, project, target, words_, evidence)
        evidence.add(f"stdout of {where}", out)
        evidence.add(f"stderr of {where}", err)
        if should_succeed is not None:
            assert (code == 0) is should_succeed, (where, out[-800:], err[-800:])
        if words_[:2] == ("revision", "-m"):
            written = next(versions.glob(f"{words_[-1]}_*.py"))
            if words_[-1] == "c1":
                fill(written, "upgrade", create_table("cli_table"))
                fill(written, "downgrade", 'op.drop_table("cli_table")')
            else:
                fill(written, "upgrade", 'op.execute("SELECT * FROM nowhere")')
    evidence.files(tmp_path)

    assert "cli_table" in table_names(url)
    assert version_rows(url) == ["c1"]
    assert evidence.leaks(secret) == []


@pytest.mark.servers
@pytest.mark.skipif(not HAS_PANEL, reason="framefox_magic/widgets.py is not there yet")
def test_password_never_appears_in_the_panel(secret_url, tmp_path):
    from framefox_magic.widgets import MigrationPanel

    url, secret = secret_url
    evidence = Evidence()
    project = tmp_path / "panel"
    project.mkdir()
    with everything_recorded(evidence):
        manager = AlembicManager(url=url, metadata=sa.MetaData(), project_root=project)
        manager.init()
        manager.revision("create a", autogenerate=False, rev_id="p1", upgrade_body=create_table("a"),
                         downgrade_body='op.drop_table("a")')
        manager.revision("broken", autogenerate=False, rev_id="p2",
                         upgrade_body='op.execute("SELECT * FROM nowhere")')
        panel = MigrationPanel(manager)
        evidence.result("panel", panel)
        for rev in ("p1", "p2"):
            panel.picker.value = rev
            evidence.result(f"panel with {rev} picked", panel)
        panel.picker.value = "p1"
        panel.buttons["Upgrade"].click()
        evidence.result("panel after upgrade", panel)
        panel.picker.value = "p2"
        panel.buttons["Upgrade"].click()  # fails: its error is shown in the panel
        evidence.result("panel after a failed upgrade", panel)
        unreachable = MigrationPanel(AlembicManager(url=wrong_port(url), metadata=sa.MetaData(),
                                                    project_root=project))
        evidence.result("panel on an unreachable database", unreachable)
    evidence.files(tmp_path)

    assert version_rows(url) == ["p1"]
    assert "nowhere" in panel.output.value  # the failure is shown
    assert evidence.leaks(secret) == []


# ---------------------------------------------------------------- the password stays inside the manager


@pytest.mark.servers
def test_config_shows_the_url_masked_after_init_with_a_password(secret_url, shell, capsys):
    url, secret = secret_url
    shell.run_line_magic("migrate", f"init --url {url}")
    capsys.readouterr()
    shell.run_line_magic("config", "MigrateMagics")
    shell.run_line_magic("config", "MigrateMagics.url")
    magics = shell.magics_manager.registry["MigrateMagics"]
    shown = capsys.readouterr().out + repr(magics.url) + repr(magics.manager.url)
    kept = str(magics.manager.url)
    assert "***" in shown and secret not in shown
    assert kept == url


@pytest.mark.servers
def test_setting_the_url_trait_keeps_the_real_url_and_shows_it_masked(secret_url, shell):
    url, secret = secret_url
    shell.run_line_magic("migrate", "init")
    magics = shell.magics_manager.registry["MigrateMagics"]
    magics.url = url
    assert secret not in magics.url and "***" in magics.url
    assert str(magics.manager.url) == url  # the manager keeps the real one
    assert shell.run_line_magic("migrate", "status").current == ()


@pytest.mark.servers
def test_every_repr_masks_the_password(secret_url, tmp_path):
    url, secret = secret_url
    manager = AlembicManager(url=url, project_root=tmp_path)
    shown = [repr(manager), repr(manager.target()), repr(manager.url), repr(manager.target().url),
             repr(manager.config()), repr(vars(manager)), repr(commands.parse(f"status --url {url}"))]
    assert [text for text in shown if secret in text] == []


@pytest.mark.servers
def test_a_password_with_a_bare_at_sign_is_parsed_right(tmp_path):
    token = uuid.uuid4().hex[:12]
    head, tail = f"head{token}", f"tail{token}"
    role, database = f"ffm_role_{token}", f"ffm_{token}"
    admin = sa.create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{head}@{tail}'")
        connection.exec_driver_sql(f"CREATE DATABASE {database} OWNER {role}")
    try:
        url = f"postgresql://{role}:{head}@{tail}@127.0.0.1:5432/{database}"  # not percent-encoded
        manager = AlembicManager(url=url, project_root=tmp_path)
        manager.init()
        shown = [repr(manager.config()), repr(manager.status())]
        with pytest.raises(MigrationError) as caught:
            AlembicManager(url=url.replace(":5432", ":1"), project_root=tmp_path).status()
        shown.append(str(caught.value))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()
    assert f"{role}:***@127.0.0.1" in shown[0]
    assert [text for text in shown if head in text or tail in text] == []


VERBOSE_CELLS = (
    "%config MigrateMagics.short_errors = False",
    "%xmode Verbose",
    BROKEN_CELL,
    "%migrate upgrade",  # a revision fails
    "%migrate status",  # the database does not answer (DATABASE_URL points at a closed port)
    "%migrate upgrade",
)


@pytest.mark.servers
def test_verbose_tracebacks_carry_no_password(secret_url, shell, monkeypatch, capsys):
    url, secret = secret_url
    monkeypatch.setenv("DATABASE_URL", url)
    outputs = []
    shell.run_line_magic("migrate", "init")
    for number, cell in enumerate(VERBOSE_CELLS):
        if number == 4:
            monkeypatch.setenv("DATABASE_URL", wrong_port(url))
        shell.run_cell(cell)
        outputs.append(ANSI.sub("", "".join(capsys.readouterr())))
    assert "Traceback" in outputs[3] and "Traceback" in outputs[4]
    assert [cell for cell, out in zip(VERBOSE_CELLS, outputs, strict=True) if secret in out] == []


@pytest.mark.servers
def test_a_saved_notebook_holds_no_password(secret_url, tmp_path, python3_kernel):
    import nbformat
    from nbclient import NotebookClient

    url, secret = secret_url
    project = tmp_path / "saved"
    project.mkdir()
    (project / "url.txt").write_text(url)
    cells = [
        "url = open('url.txt').read()",
        "%load_ext framefox_magic",
        "%migrate init --url $url",
        "%config MigrateMagics",
        "%migrate config",
        "from framefox_magic import AlembicManager\nAlembicManager(url=url).target()",
        "%config MigrateMagics.short_errors = False\n%xmode Verbose",
        BROKEN_CELL,
        "%migrate upgrade",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(nb, kernel_name=python3_kernel, timeout=180, allow_errors=True,
                   resources={"metadata": {"path": str(project)}}).execute()
    saved = project / "saved.ipynb"
    nbformat.write(nb, saved)

    text = saved.read_text()
    assert "Traceback" in text or "traceback" in text  # the failing upgrade is in there
    assert "***" in text
    assert secret not in text
