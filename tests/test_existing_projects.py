"""Existing Alembic projects, used as they are: their env.py in every common style, read without
running it, written through it, and the state reported read back from the database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import table_names

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError, MigrationFailed

CORPUS = Path(__file__).parent / "corpus"
ALEMBIC = Path(sys.executable).with_name("alembic")
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg_async",
                 "mysql": "mysql+aiomysql"}
STYLES = ("cookbook", "own_engine", "connection_engine", "expects_engine", "async_env", "flask_style",
          "custom_table")
APP_MODULES = ("corpus_app", "corpus_flask_app")


@dataclass
class Existing:
    """An Alembic project as its developers left it: alembic.ini, migrations/env.py, two revisions."""

    root: Path
    url: str
    style: str

    @property
    def version_table(self) -> str:
        return "app_versions" if self.style == "custom_table" else "alembic_version"

    def manager(self) -> AlembicManager:
        return AlembicManager(project_root=self.root)

    def versions(self) -> list[str]:
        """The revisions in the project's version table, read with a fresh engine."""
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table(self.version_table):
                    return []
                query = sa.text(f"SELECT version_num FROM {self.version_table}")
                return sorted(connection.execute(query).scalars())
        finally:
            engine.dispose()

    def record(self, revision: str) -> None:
        """Put the database at `revision` by hand, as another tool would have left it."""
        engine = sa.create_engine(self.url)
        with engine.begin() as connection:
            connection.execute(sa.text(
                f"CREATE TABLE {self.version_table} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(sa.text(f"INSERT INTO {self.version_table} VALUES ('{revision}')"))
        engine.dispose()

    def add_revision(self, name: str) -> None:
        shutil.copy(CORPUS / "versions" / name, self.root / "migrations" / "versions" / name)

    def remove_application(self) -> None:
        shutil.rmtree(self.root / "app")
        _forget_application()

    def alembic(self, *args: str) -> str:
        """Plain alembic's command line, run in the project folder."""
        done = subprocess.run([str(ALEMBIC), *args], cwd=self.root, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "CORPUS_FLASK_DATABASE_URL": self.url})
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr


def _forget_application() -> None:
    for name in APP_MODULES:
        sys.modules.pop(name, None)


def make_project(root: Path, style: str, url: str, backend: str) -> Existing:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    shutil.copy(CORPUS / "envs" / f"{style}.py", root / "migrations" / "env.py")
    for name in ("a1_create_hero.py", "b2_create_team.py"):
        shutil.copy(CORPUS / "versions" / name, versions / name)
    shutil.copytree(CORPUS / "app", root / "app")
    ini_url = url
    if style == "async_env":
        ini_url = sa.make_url(url).set(drivername=ASYNC_DRIVERS[backend]).render_as_string(False)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = migrations\nprepend_sys_path = app\npath_separator = os\n"
        f"sqlalchemy.url = {ini_url.replace('%', '%%')}\n", encoding="utf-8")
    return Existing(root, url, style)


@pytest.fixture
def style() -> str:
    return "cookbook"


@pytest.fixture
def existing(tmp_path: Path, db_url: str, backend: str, style: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Existing]:
    """The project, with the kernel working elsewhere (so prepend_sys_path must be read from the ini)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORPUS_FLASK_DATABASE_URL", db_url)
    monkeypatch.setattr(sys, "path", list(sys.path))
    _forget_application()
    project = make_project(tmp_path / "existing", style, db_url, backend)
    context = None
    if style == "flask_style":  # as a notebook does: import the app, push its context
        sys.path.insert(0, str(project.root / "app"))
        from corpus_flask_app import app, db

        context = app.app_context()
        context.push()
    yield project
    if context is not None:
        db.engine.dispose()
        context.pop()
    _forget_application()


every_style = pytest.mark.parametrize("style", STYLES)
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.mark.parametrize(("backend", "style"), [
    *(("sqlite", style) for style in (*STYLES, "missing_app")),
    *((backend, style) for backend in ("postgresql", "mysql") for style in ("cookbook", "custom_table",
                                                                            "missing_app")),
])
def test_history_and_status_with_and_without_the_application(existing: Existing) -> None:
    manager = existing.manager()
    assert manager.status().pending == ("a1", "b2")
    existing.remove_application()
    existing.record("a1")

    history = manager.history()
    status = manager.status()

    assert history.ids == ("b2", "a1")
    assert [r.applied for r in history] == [False, True]
    assert status.current == ("a1",) and status.pending == ("b2",) and not status.up_to_date
    assert manager.current().ids == ("a1",)
    assert manager.heads().ids == ("b2",)
    assert manager.graph().ids == ("b2", "a1")


def test_writing_without_the_application_names_env_py_and_the_module(tmp_path: Path, db_url: str,
                                                                      backend: str) -> None:
    project = make_project(tmp_path / "project", "missing_app", db_url, backend)

    with pytest.raises(MigrationError) as raised:
        project.manager().upgrade()

    message = str(raised.value)
    assert "env.py" in message and "corpus_not_installed" in message
    assert "sys.path" in message and "\n" not in message
    assert project.versions() == [] and "hero" not in table_names(db_url)


@every_style
def test_upgrade_downgrade_and_a_failing_revision_report_what_the_database_holds(existing: Existing) -> None:
    manager = existing.manager()
    seen: list[str] = []

    upgraded = manager.upgrade(on_step=lambda done, total, step: seen.append(
        f"{done}/{total} {step.revision}"))

    assert seen == ["1/2 a1", "2/2 b2"]
    assert upgraded.summary.startswith("Upgraded 2 revisions") and "b2" in upgraded.summary
    assert existing.versions() == ["b2"]
    assert {"hero", "team"} <= table_names(existing.url)

    downgraded = manager.downgrade("a1")

    assert downgraded.summary.startswith("Downgraded 1 revision;") and "a1" in downgraded.summary
    assert existing.versions() == ["a1"]
    assert "team" not in table_names(existing.url) and "hero" in table_names(existing.url)
    assert manager.status().current == ("a1",)

    existing.add_revision("c3_broken.py")
    with pytest.raises(MigrationFailed) as raised:
        manager.upgrade()

    message = str(raised.value)
    assert raised.value.revision == "c3"
    assert message.startswith("Revision c3 (broken step) failed")
    held = existing.versions()
    assert manager.status().current == tuple(held)
    assert f"the database is at {', '.join(held) or 'base'}" in message
    if existing.url.startswith("mysql"):
        assert "Statements that ran: CREATE TABLE sidekick" in message


@pytest.mark.parametrize(("backend", "style"), [("sqlite", "cookbook"), ("postgresql", "async_env"),
                                                ("mysql", "custom_table")])
def test_plain_alembic_agrees_and_stamps_are_kept(existing: Existing) -> None:
    existing.manager().upgrade()

    assert "b2 (head)" in existing.alembic("current")

    existing.alembic("downgrade", "a1")

    manager = existing.manager()
    assert manager.status().current == ("a1",)
    assert existing.versions() == ["a1"]

    assert manager.stamp("b2").summary == "Stamped the database at b2."
    assert existing.versions() == ["b2"] and "b2 (head)" in existing.alembic("current")
    manager.clear_history()
    assert existing.versions() == [] and manager.status().current == ()


NOT_LITERAL = '''"""labelled from the application

Revision ID: d4
"""
from corpus_not_installed import labels

revision = "d4"
down_revision = "b2"
branch_labels = (labels.CONTRACT,)
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


@sqlite_only
def test_a_file_whose_header_is_not_literal_is_imported_alone_and_named(existing: Existing) -> None:
    (existing.root / "migrations" / "versions" / "d4_labelled.py").write_text(NOT_LITERAL, encoding="utf-8")
    manager = existing.manager()

    history = manager.history()

    assert history.ids == ("d4", "b2", "a1") and history[0].branch_labels == ()
    assert len(history.notes) == 1
    assert history.notes[0].startswith("migrations/versions/d4_labelled.py: its branch labels or "
                                       "dependencies are not literal and importing it failed "
                                       "(ModuleNotFoundError: No module named 'corpus_not_installed')")
    assert "d4_labelled.py" in repr(history) and "d4_labelled.py" in history._repr_html_()


@sqlite_only
def test_a_file_whose_revision_id_is_not_literal_is_left_out_and_named(existing: Existing) -> None:
    broken = NOT_LITERAL.replace('revision = "d4"', "revision = labels.REVISION")
    (existing.root / "migrations" / "versions" / "d4_labelled.py").write_text(broken, encoding="utf-8")

    history = existing.manager().history()

    assert history.ids == ("b2", "a1")
    assert history.notes == ["migrations/versions/d4_labelled.py was not listed: ModuleNotFoundError: "
                             "No module named 'corpus_not_installed'"]


@sqlite_only
def test_a_file_whose_header_is_not_literal_but_imports_is_listed(existing: Existing) -> None:
    labelled = NOT_LITERAL.replace("from corpus_not_installed import labels\n", "LABEL = 'contract'\n")
    labelled = labelled.replace("(labels.CONTRACT,)", "(LABEL,)")
    (existing.root / "migrations" / "versions" / "d4_labelled.py").write_text(labelled, encoding="utf-8")

    history = existing.manager().history()

    assert history.ids == ("d4", "b2", "a1") and history[0].branch_labels == ("contract",)
    assert history.notes == []


@sqlite_only
def test_version_locations_in_several_folders_are_all_listed(existing: Existing) -> None:
    extra = existing.root / "plugins" / "billing" / "versions"
    extra.mkdir(parents=True)
    (existing.root / "migrations" / "versions" / "b2_create_team.py").rename(extra / "b2_create_team.py")
    ini = existing.root / "alembic.ini"
    ini.write_text(ini.read_text() + "version_locations = migrations/versions:plugins\n"
                   "recursive_version_locations = true\n", encoding="utf-8")
    manager = existing.manager()

    assert manager.history().ids == ("b2", "a1")
    manager.upgrade()
    assert existing.versions() == ["b2"]
    assert manager.status().up_to_date


@sqlite_only
def test_a_revision_file_that_is_not_utf8_is_named(existing: Existing) -> None:
    path = existing.root / "migrations" / "versions" / "e5_latin1.py"
    path.write_bytes(b'"""caf\xe9"""\nrevision = "e5"\ndown_revision = "b2"\n')

    with pytest.raises(MigrationError, match=r"migrations/versions/e5_latin1\.py is not UTF-8"):
        existing.manager().history()


@sqlite_only
@pytest.mark.filterwarnings("ignore:Revision zz9 referenced")
def test_an_unknown_down_revision_is_named(existing: Existing) -> None:
    orphan = (CORPUS / "versions" / "b2_create_team.py").read_text().replace('"b2"', '"f6"')
    (existing.root / "migrations" / "versions" / "f6_orphan.py").write_text(
        orphan.replace('down_revision = "a1"', 'down_revision = "zz9"'), encoding="utf-8")

    named = r"migrations/versions/f6_orphan\.py: down_revision 'zz9' names no rev"
    with pytest.raises(MigrationError, match=named):
        existing.manager().history()


@sqlite_only
def test_an_empty_sqlalchemy_url_counts_as_absent(existing: Existing) -> None:
    (existing.root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\nsqlalchemy.url =\n",
                                               encoding="utf-8")

    info = existing.manager().config()

    assert info.url_source.startswith("default")


@sqlite_only
def test_a_malformed_url_in_alembic_ini_names_the_file(existing: Existing) -> None:
    (existing.root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n"
                                               "sqlalchemy.url = not a url\n", encoding="utf-8")

    with pytest.raises(MigrationError, match=r"URL from alembic\.ini is not a database URL"):
        existing.manager().status()


@pytest.mark.parametrize("style", ["expects_engine"])
def test_an_env_py_that_wants_an_engine_in_a_way_not_read_from_its_source(existing: Existing) -> None:
    env = existing.root / "migrations" / "env.py"
    env.write_text(env.read_text().replace('config.attributes.get("connection")',
                                           'getattr(config, "attributes").get("connection")'))

    existing.manager().upgrade()

    assert existing.versions() == ["b2"] and {"hero", "team"} <= table_names(existing.url)


@sqlite_only
def test_a_revision_that_imports_a_missing_module_is_named_with_its_line(existing: Existing) -> None:
    path = existing.root / "migrations" / "versions" / "b2_create_team.py"
    path.write_text(path.read_text().replace("from alembic import op\n",
                                             "from alembic import op\nimport corpus_reports\n"))
    manager = existing.manager()
    assert manager.history().ids == ("b2", "a1")

    with pytest.raises(MigrationError) as raised:
        manager.upgrade()

    assert str(raised.value).startswith("migrations/versions/b2_create_team.py, line 9 imports "
                                        "'corpus_reports', which this kernel cannot import")
    assert existing.versions() == []


@sqlite_only
def test_an_alembic_ini_that_cannot_be_parsed_is_named_with_its_line(existing: Existing) -> None:
    ini = existing.root / "alembic.ini"
    ini.write_text(ini.read_text() + "this line is not an option\n", encoding="utf-8")

    with pytest.raises(MigrationError, match=r"^alembic\.ini, line 6 cannot be read"):
        existing.manager().status()


# ---------------------------------------------------------------- the version table: read, or an error


@sqlite_only
def test_a_file_that_is_not_a_database_is_an_error_not_base(existing: Existing) -> None:
    Path(sa.make_url(existing.url).database).write_bytes(b"this is not a database" * 100)
    manager = existing.manager()

    with pytest.raises(MigrationError, match="not a SQLite database"):
        manager.status()
    with pytest.raises(MigrationError, match="Cannot read the version table"):
        manager.delete("a1")
    assert (existing.root / "migrations" / "versions" / "a1_create_hero.py").exists()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_user_who_may_not_read_the_version_table_gets_an_error_not_base(existing: Existing,
                                                                         backend: str) -> None:
    import uuid

    existing.manager().upgrade("a1")
    role = f"ffm_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(existing.url, isolation_level="AUTOCOMMIT")
    database = sa.make_url(existing.url).database
    with admin.connect() as connection:
        if backend == "postgresql":
            connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
            connection.execute(sa.text(f"GRANT CONNECT ON DATABASE {database} TO {role}"))
        else:
            connection.execute(sa.text(f"CREATE USER '{role}'@'%'"))
            connection.execute(sa.text(f"GRANT SELECT ON {database}.hero TO '{role}'@'%'"))
    reader = sa.make_url(existing.url).set(username=role).render_as_string(False)
    try:
        manager = AlembicManager(url=reader, project_root=existing.root)
        with pytest.raises(MigrationError, match="permission denied"):
            manager.status()
        with pytest.raises(MigrationError, match="Cannot read the version table"):
            manager.delete("a1")
        assert (existing.root / "migrations" / "versions" / "a1_create_hero.py").exists()
    finally:
        with admin.connect() as connection:
            if backend == "postgresql":
                connection.execute(sa.text(f"DROP OWNED BY {role}"))
                connection.execute(sa.text(f"DROP ROLE {role}"))
            else:
                connection.execute(sa.text(f"DROP USER '{role}'@'%'"))
        admin.dispose()


@pytest.mark.parametrize("style", ["async_env"])
def test_an_async_env_runs_where_an_event_loop_is_running(existing: Existing) -> None:
    import asyncio

    async def in_a_notebook_cell() -> str:  # a Jupyter kernel runs cells inside its event loop
        return existing.manager().upgrade().summary

    summary = asyncio.run(in_a_notebook_cell())

    assert summary.startswith("Upgraded 2 revisions")
    assert existing.versions() == ["b2"]


@sqlite_only
@pytest.mark.parametrize("style", ["custom_table"])
def test_a_version_table_env_py_computes_comes_from_the_settings(existing: Existing, shell: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env = existing.root / "migrations" / "env.py"
    computed = "config = context.config\nTABLE = 'app_' + 'versions'"
    env.write_text(env.read_text().replace('version_table="app_versions"', "version_table=TABLE")
                   .replace("config = context.config", computed))
    existing.record("a1")
    assert existing.manager().status().current == ()

    (existing.root / "pyproject.toml").write_text('[tool.framefox_magic]\nversion_table = "app_versions"\n')
    assert existing.manager().status().current == ("a1",)

    (existing.root / "pyproject.toml").unlink()
    monkeypatch.chdir(existing.root)  # the notebook opened in the project
    shell.run_line_magic("config", "MigrateMagics.version_table = 'app_versions'")
    assert shell.run_line_magic("migrate", "status").current == ("a1",)


@pytest.mark.parametrize(("backend", "style"), [("postgresql", "custom_table")])
def test_a_version_table_in_its_own_schema(existing: Existing) -> None:
    env = existing.root / "migrations" / "env.py"
    env.write_text(env.read_text().replace('version_table="app_versions"',
                                           'version_table="app_versions", version_table_schema="meta"'))
    engine = sa.create_engine(existing.url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA meta"))
    manager = existing.manager()

    manager.upgrade("a1")

    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT version_num FROM meta.app_versions")).scalars().all()
    assert rows == ["a1"]
    engine.dispose()
    assert manager.status().current == ("a1",) and manager.history()[1].applied


@sqlite_only
def test_an_env_py_that_fails_as_it_loads_is_named_with_its_line(existing: Existing) -> None:
    env = existing.root / "migrations" / "env.py"
    lines = env.read_text().splitlines()
    lines.insert(5, 'raise RuntimeError("SECRET_KEY is not set")')
    env.write_text("\n".join(lines) + "\n")

    with pytest.raises(MigrationError) as raised:
        existing.manager().upgrade()

    assert str(raised.value) == "migrations/env.py, line 6: RuntimeError: SECRET_KEY is not set"
    assert existing.manager().history().ids == ("b2", "a1")
