"""What `init` writes is a standard Alembic environment: plain alembic, its CLI and pytest-alembic run it."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_alembic
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from conftest import column_names, table_names, version_rows
from pytest_alembic.tests import default

from framefox_magic import AlembicManager

MODELS_V1 = '''import sqlalchemy as sa

metadata = sa.MetaData()

hero = sa.Table(
    "hero", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)
'''
MODELS_V2 = MODELS_V1.replace(
    '    sa.Column("name", sa.String(100), nullable=False),\n',
    '    sa.Column("name", sa.String(100), nullable=False, index=True),\n'
    '    sa.Column("power", sa.Integer, nullable=True),\n',
)
ALEMBIC = Path(sys.executable).with_name("alembic")


@dataclass
class History:
    """A project whose migrations folder holds two revisions; the database is left empty."""

    root: Path
    url: str
    first: str
    second: str

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    def metadata(self) -> sa.MetaData:
        """The models as they stand now (models.py, not imported as a module)."""
        return runpy.run_path(str(self.root / "models.py"))["metadata"]


def write_models(path: Path, text: str, when: float) -> None:
    path.write_text(text)
    os.utime(path, (when, when))


@pytest.fixture
def history(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[History]:
    monkeypatch.chdir(project)
    models = project / "models.py"
    write_models(models, MODELS_V1, 1_700_000_000)
    manager = AlembicManager(url=db_url, metadata="models:metadata", project_root=project)
    manager.init()
    first = manager.revision("create hero")
    manager.upgrade()
    write_models(models, MODELS_V2, 1_700_000_100)
    second = manager.revision("hero power")
    manager.downgrade("base")
    assert first is not None and second is not None
    assert "hero" not in table_names(db_url)
    yield History(project, db_url, first.revision, second.revision)
    sys.modules.pop("models", None)
    while str(project) in sys.path:
        sys.path.remove(str(project))


def in_memory_config(history: History, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(history.migrations))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def assert_at_head(history: History) -> None:
    assert {"hero", "alembic_version"} <= table_names(history.url)
    assert {"id", "name", "power"} <= column_names(history.url, "hero")
    assert version_rows(history.url) == [history.second]


def assert_at_base(history: History) -> None:
    assert "hero" not in table_names(history.url)
    assert version_rows(history.url) == []


def test_env_is_standard(history: History) -> None:
    env = (history.migrations / "env.py").read_text()
    assert "fileConfig" not in env
    assert 'config.attributes.get("connection")' in env
    assert (history.migrations / "script.py.mako").is_file()
    assert "import sqlmodel" in (history.migrations / "script.py.mako").read_text()


def test_plain_alembic_with_a_url(history: History) -> None:
    config = in_memory_config(history, history.url)
    command.upgrade(config, "head")
    assert_at_head(history)
    command.downgrade(config, "-1")
    assert version_rows(history.url) == [history.first]
    assert "power" not in column_names(history.url, "hero")
    command.downgrade(config, "base")
    assert_at_base(history)


def test_plain_alembic_with_a_connection(history: History) -> None:
    config = in_memory_config(history)  # no URL: the connection is all env.py gets
    engine = sa.create_engine(history.url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        assert_at_head(history)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert_at_base(history)
    finally:
        engine.dispose()


def test_plain_alembic_with_an_engine(history: History) -> None:
    config = in_memory_config(history)
    engine = sa.create_engine(history.url)
    try:
        config.attributes["connection"] = engine
        command.upgrade(config, "head")
        assert_at_head(history)
        command.downgrade(config, "base")
        assert_at_base(history)
    finally:
        engine.dispose()


def alembic_cli(history: History, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [str(ALEMBIC), "-x", f"url={history.url}", *args],
        cwd=history.root, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_alembic_command_line(history: History) -> None:
    assert (history.root / "alembic.ini").is_file()
    alembic_cli(history, "upgrade", "head")
    assert_at_head(history)
    assert history.second in alembic_cli(history, "current").stdout
    alembic_cli(history, "check")  # target_metadata from alembic.ini: models match the database

    alembic_cli(history, "revision", "--autogenerate", "-m", "nothing new")
    assert len(list((history.migrations / "versions").glob("*.py"))) == 2

    alembic_cli(history, "downgrade", "base")
    assert_at_base(history)


DEFAULT_TESTS: dict[str, Callable[[pytest_alembic.MigrationContext], None]] = {
    "single_head_revision": default.test_single_head_revision,
    "upgrade": default.test_upgrade,
    "model_definitions_match_ddl": default.test_model_definitions_match_ddl,
    "up_down_consistency": default.test_up_down_consistency,
}


@pytest.mark.parametrize("name", DEFAULT_TESTS)
def test_pytest_alembic_default_tests(history: History, name: str) -> None:
    # as pytest-alembic runs them: alembic.ini from the working folder, the engine handed in
    config = pytest_alembic.Config(config_options={"target_metadata": history.metadata()})
    engine = sa.create_engine(history.url)
    try:
        with pytest_alembic.runner(config=config, engine=engine) as alembic_runner:
            assert alembic_runner.heads == [history.second]
            DEFAULT_TESTS[name](alembic_runner)
    finally:
        engine.dispose()
