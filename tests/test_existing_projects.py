"""Existing Alembic projects, used as they are: their env.py in every common style, read without
running it, written through it, and the state reported read back from the database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    project = make_project(tmp_path / "project", style, db_url, backend)
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


@pytest.mark.parametrize("style", (*STYLES, "missing_app"))
def test_history_and_status_without_the_application(existing: Existing) -> None:
    existing.remove_application()
    existing.record("a1")
    manager = existing.manager()

    history = manager.history()
    status = manager.status()

    assert history.ids == ("b2", "a1")
    assert [r.applied for r in history] == [False, True]
    assert status.current == ("a1",) and status.pending == ("b2",) and not status.up_to_date
    assert manager.current().ids == ("a1",)
    assert manager.heads().ids == ("b2",)
    assert manager.graph().ids == ("b2", "a1")


@every_style
def test_history_and_status_with_the_application(existing: Existing) -> None:
    manager = existing.manager()

    status = manager.status()

    assert status.current == () and status.pending == ("a1", "b2")
    assert manager.history().ids == ("b2", "a1")


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
def test_upgrade_and_downgrade_keep_what_they_report(existing: Existing) -> None:
    manager = existing.manager()
    seen: list[str] = []

    upgraded = manager.upgrade(on_step=lambda done, total, step: seen.append(
        f"{done}/{total} {step.revision}"))

    assert seen == ["1/2 a1", "2/2 b2"]
    assert upgraded.summary.startswith("Upgraded 2 revision(s)") and "b2" in upgraded.summary
    assert existing.versions() == ["b2"]
    assert {"hero", "team"} <= table_names(existing.url)

    downgraded = manager.downgrade("a1")

    assert downgraded.summary.startswith("Downgraded 1 revision(s)") and "a1" in downgraded.summary
    assert existing.versions() == ["a1"]
    assert "team" not in table_names(existing.url) and "hero" in table_names(existing.url)
    assert manager.status().current == ("a1",)


@every_style
def test_a_failing_revision_is_named_and_the_state_reported_is_the_databases(existing: Existing) -> None:
    existing.add_revision("c3_broken.py")
    manager = existing.manager()

    with pytest.raises(MigrationFailed) as raised:
        manager.upgrade()

    message = str(raised.value)
    assert raised.value.revision == "c3"
    assert message.startswith("Revision c3 (broken step) failed")
    held = existing.versions()
    assert manager.status().current == tuple(held)
    assert f"the database is at {', '.join(held) or 'base'}" in message
    if existing.url.startswith("mysql"):
        assert "CREATE TABLE sidekick" in message


@pytest.mark.parametrize(("backend", "style"), [("sqlite", "cookbook"), ("postgresql", "async_env"),
                                                ("mysql", "custom_table")])
def test_plain_alembic_agrees(existing: Existing) -> None:
    existing.manager().upgrade()

    assert "b2 (head)" in existing.alembic("current")

    existing.alembic("downgrade", "a1")

    assert existing.manager().status().current == ("a1",)
    assert existing.versions() == ["a1"]
