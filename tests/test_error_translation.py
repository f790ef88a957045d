"""alembic's, SQLAlchemy's and the drivers' own errors, raised for real, become one short MigrationError
of the right class."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from framefox_magic import AlembicManager
from framefox_magic.errors import (
    AmbiguousRevision,
    ChangesDetected,
    ConfigurationError,
    DatabaseUnreachable,
    MigrationError,
    MultipleHeads,
    NotInitialized,
    NotUpToDate,
    RevisionNotFound,
    translate,
    translated,
)

NOT_FOUND = "No revision '{}' in the migrations folder (see `history`)"
PICK_ON_BRANCH = ": pick a target on the current branch."


def write_revision(folder: Path, rev: str, down: str | None = None, depends_on: str | None = None) -> None:
    """One revision file, as alembic reads it."""
    (folder / "versions" / f"{rev}.py").write_text(
        f"revision = {rev!r}\ndown_revision = {down!r}\ndepends_on = {depends_on!r}\n"
        "branch_labels = None\n\ndef upgrade():\n    pass\n\ndef downgrade():\n    pass\n"
    )


def script_directory(tmp_path: Path, *revisions: tuple) -> ScriptDirectory:
    """A real alembic ScriptDirectory holding the given (rev, down, depends_on) revisions."""
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    for revision in revisions:
        write_revision(folder, *revision)
    return ScriptDirectory(str(folder))


@pytest.fixture
def branched(tmp_path: Path) -> ScriptDirectory:
    """abc1 -> abc2, then two branches on abc2: ra01 and rb01."""
    return script_directory(tmp_path, ("abc1",), ("abc2", "abc1"), ("ra01", "abc2"), ("rb01", "abc2"))


def raised(call: Callable[[], object]) -> Exception:
    """The error the call raises (it must raise one)."""
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def short(call: Callable[[], object]) -> MigrationError:
    """What the user reads for the error the call raises."""
    return translate(raised(call))


@pytest.mark.parametrize(
    ("ask", "wanted"),
    [
        (lambda s: s.get_revision("nosuch"), "nosuch"),
        (lambda s: s.revision_map.get_revision("nosuch"), "nosuch"),
        (lambda s: s.get_revision("nobranch@head"), "nobranch"),
    ],
    ids=["command-error", "resolution-error", "branch"],
)
def test_unknown_revision_names_the_revision_asked_for(branched, ask, wanted):
    error = short(lambda: ask(branched))

    assert isinstance(error, RevisionNotFound)
    assert error.wanted == wanted
    assert str(error).startswith(NOT_FOUND.format(wanted))


@pytest.mark.parametrize(
    "ask", [lambda s: s.get_revision("abc"), lambda s: s.revision_map.get_revision("abc")],
    ids=["command-error", "resolution-error"],
)
def test_prefix_of_several_revisions_asks_for_more_of_the_id(branched, ask):
    error = short(lambda: ask(branched))

    assert isinstance(error, AmbiguousRevision)
    assert str(error) == "'abc' matches several revisions; type more of its id."


@pytest.mark.parametrize(
    "ask",
    [lambda s: s.get_current_head(), lambda s: s.get_revision("head"), lambda s: s.get_revisions("head")],
    ids=["current-head", "revision", "revisions"],
)
def test_several_heads_where_one_is_needed_suggests_a_merge(branched, ask):
    error = short(lambda: ask(branched))

    assert isinstance(error, MultipleHeads)
    assert "join them with `merge heads -m MESSAGE`" in str(error)


def test_range_across_branches_says_to_pick_on_one_branch(branched):
    error = short(lambda: list(branched.walk_revisions("ra01", "rb01")))

    assert type(error) is MigrationError
    assert str(error) == (
        "Requested range ra01:rb01 does not refer to ancestor/descendant revisions along the same "
        f"branch{PICK_ON_BRANCH}"
    )


def test_revision_files_in_a_cycle_are_named(tmp_path):
    scripts = script_directory(tmp_path, ("c001",), ("c002", "c003"), ("c003", "c002"))

    error = short(lambda: list(scripts.walk_revisions()))

    assert str(error).startswith("The revision files form a cycle (")
    assert "c002" in str(error) and "c003" in str(error)
    assert str(error).endswith("fix the down_revision of one of them.")


def test_dependencies_in_a_cycle_name_depends_on(tmp_path):
    scripts = script_directory(tmp_path, ("d001",), ("d002", "d001", "d003"), ("d003", "d001", "d002"))

    error = short(lambda: list(scripts.walk_revisions()))

    assert "d002" in str(error) and "d003" in str(error)
    assert str(error).endswith("fix the depends_on of one of them.")


@pytest.mark.parametrize(
    "open_scripts",
    [lambda tmp: ScriptDirectory(str(tmp / "nowhere")), lambda tmp: ScriptDirectory.from_config(Config())],
    ids=["no-folder", "no-script-location"],
)
def test_missing_migrations_folder_says_run_init(tmp_path, open_scripts):
    error = short(lambda: open_scripts(tmp_path))

    assert isinstance(error, NotInitialized)
    assert str(error) == "No migrations folder here yet: run `init` first."


def test_malformed_revision_argument_is_blamed_on_the_argument(branched):
    error = short(lambda: branched.get_revision("@"))

    assert str(error) == "alembic could not make sense of that revision argument."


def test_an_assertion_outside_alembic_keeps_its_own_words():
    def check_models() -> None:
        assert 1 + 1 == 3, "models out of date"

    assert str(short(check_models)) == "AssertionError: models out of date"


def test_an_error_raised_from_an_alembic_error_is_read_through_its_cause(branched):
    def env_script() -> None:
        try:
            branched.get_revision("nosuch")
        except CommandError as error:
            raise RuntimeError("env.py could not run the migrations") from error

    error = short(env_script)

    assert isinstance(error, RevisionNotFound)
    assert error.wanted == "nosuch"


@pytest.fixture
def manager(project: Path, db_url: str) -> AlembicManager:
    """An initialized manager with r1 -> r2 and a branch r1 -> rb, the database at r2."""
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    manager.revision("one", autogenerate=False, rev_id="r1")
    manager.revision("two", autogenerate=False, rev_id="r2")
    manager.revision("side", autogenerate=False, rev_id="rb", head="r1", splice=True)
    manager.upgrade("r2")
    return manager


def test_moving_further_than_the_history_goes_says_so(manager):
    with pytest.raises(MigrationError) as caught:
        manager.downgrade("-3")

    assert str(caught.value) == (
        "Cannot downgrade 3 revisions: the database is at r2, 2 revisions above base "
        "(`downgrade -2` or `downgrade base` takes it there)."
    )
    assert manager.status().current == ("r2",)


def test_downgrade_to_another_branch_says_to_pick_on_the_current_branch(manager):
    with pytest.raises(MigrationError) as caught:
        manager.downgrade("rb")

    assert str(caught.value) == (
        f"Destination rb is not a valid downgrade target from current head(s){PICK_ON_BRANCH}"
    )
    assert manager.status().current == ("r2",)


@pytest.fixture
def alembic_project(tmp_path: Path, db_url: str) -> Config:
    """A plain alembic project (alembic's own `init` template) whose env.py declares table hero."""
    config = Config(str(tmp_path / "alembic.ini"), stdout=io.StringIO())
    folder = tmp_path / "plain"
    command.init(config, str(folder))
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", db_url)
    env = folder / "env.py"
    declared = (
        "import sqlalchemy as sa\ntarget_metadata = sa.MetaData()\n"
        "sa.Table('hero', target_metadata, sa.Column('id', sa.Integer, primary_key=True))\n"
    )
    text = env.read_text().replace("target_metadata = None", declared)
    env.write_text(text.replace("fileConfig(config.config_file_name)", "pass"))  # keep pytest's logging
    return config


def test_alembic_check_finding_changes_is_changes_detected(alembic_project):
    error = short(lambda: command.check(alembic_project))

    assert isinstance(error, ChangesDetected)
    assert str(error) == "The models and the database differ (1 operation); create a revision for them."


def test_database_behind_the_scripts_says_upgrade(alembic_project):
    command.revision(alembic_project, "one", rev_id="r1")

    behind = short(lambda: command.current(alembic_project, check_heads=True))
    autogenerate = short(lambda: command.revision(alembic_project, "two", autogenerate=True))

    assert isinstance(behind, NotUpToDate)
    assert str(behind) == "The database is behind the migration scripts: run `upgrade`."
    assert isinstance(autogenerate, NotUpToDate)
    assert str(autogenerate).endswith("run `upgrade` before autogenerating.")


def test_text_that_is_no_url_is_a_configuration_error():
    error = short(lambda: sa.make_url("not a url"))

    assert isinstance(error, ConfigurationError)
    assert str(error) == "That is not a database URL (expected e.g. sqlite:///app.db)."


def test_unknown_dialect_is_named():
    error = short(lambda: sa.create_engine("nosuchdb://host/db"))

    assert isinstance(error, ConfigurationError)
    assert str(error) == "Unknown database dialect or driver 'nosuchdb'."


@pytest.mark.parametrize(
    ("url", "package"),
    [("mysql+mysqldb://root@h/test", "mysqlclient"), ("postgresql+psycopg2://h/d", "psycopg2-binary")],
)
def test_missing_driver_says_what_to_install(url, package):
    error = short(lambda: sa.create_engine(url))

    assert isinstance(error, ConfigurationError)
    assert str(error) == f"The database driver is not installed: pip install {package}"


def unreachable(db_url: str, tmp_path: Path) -> str:
    """A URL on the same backend that nothing answers: a closed port, or a file in no folder."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return url.set(database=str(tmp_path / "no-folder" / "app.db")).render_as_string()
    return url.set(port=1, password="s3cret-pw").render_as_string(hide_password=False)


def test_unreachable_database_is_one_line_without_the_password(db_url, tmp_path):
    url = unreachable(db_url, tmp_path)
    engine = sa.create_engine(url)

    with pytest.raises(DatabaseUnreachable) as caught, translated(url):
        engine.connect()

    assert str(caught.value).startswith("Cannot connect to the database: ")
    assert "\n" not in str(caught.value) and "s3cret-pw" not in str(caught.value)
    assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)


def test_connection_failure_under_another_error_is_still_unreachable(db_url, tmp_path):
    engine = sa.create_engine(unreachable(db_url, tmp_path))

    def env_script() -> None:
        try:
            engine.connect()
        except sa.exc.DBAPIError as error:
            raise RuntimeError("could not configure the migration context") from error

    assert isinstance(short(env_script), DatabaseUnreachable)


def test_statement_the_database_refuses_is_quoted_in_its_words(db_url):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            error = short(lambda: connection.execute(sa.text("SELECT * FROM no_such_table")))
    finally:
        engine.dispose()

    assert type(error) is MigrationError
    assert str(error).startswith("The database refused a statement: ")
    assert "no_such_table" in str(error) and "\n" not in str(error)
