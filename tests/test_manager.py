"""AlembicManager on SQLite, PostgreSQL and MariaDB: every public method, the Framefox scenarios, errors."""

from __future__ import annotations

import configparser
import logging
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import column_names, fresh_database, table_names, version_rows

from framefox_magic.errors import (
    AmbiguousRevision,
    ChangesDetected,
    ConfigurationError,
    DatabaseUnreachable,
    MigrationError,
    MultipleHeads,
    NotInitialized,
    RevisionNotFound,
    RevisionProtected,
)
from framefox_magic.manager import AlembicManager
from framefox_magic.results import HISTORY_COLUMNS, Diff, RevisionInfo

SECRET = "s3cr3tpw"
UNREACHABLE = {
    "postgresql": f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x",
    "mysql": f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/x",
}


# ---------------------------------------------------------------- fixtures and helpers


def define(metadata: sa.MetaData, name: str, *items: sa.Column | sa.Index | sa.Constraint) -> sa.Table:
    """(Re)define a table, as editing a model cell and running it again does."""
    if name in metadata.tables:
        metadata.remove(metadata.tables[name])
    return sa.Table(name, metadata, *items)


def hero(metadata: sa.MetaData, *extra: sa.Column | sa.Index | sa.Constraint) -> sa.Table:
    """The hero model: id, name and any extra columns or indexes."""
    return define(
        metadata, "hero",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        *extra,
    )


def table_revision(manager: AlembicManager, rev_id: str, table: str, **options) -> RevisionInfo:
    """A hand-written revision that creates TABLE (and drops it on downgrade)."""
    return manager.revision(
        f"create {table}",
        rev_id=rev_id,
        upgrade_body=f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade_body=f'op.drop_table("{table}")',
        **options,
    )


def chain(manager: AlembicManager, length: int = 3) -> list[str]:
    """Revisions r1 -> r2 -> ... each creating table t1, t2, ..."""
    return [table_revision(manager, f"r{n}", f"t{n}").revision for n in range(1, length + 1)]


def two_heads(manager: AlembicManager) -> None:
    """r1, then two branches on it: ra (table a) and rb (table b)."""
    table_revision(manager, "r1", "t1")
    table_revision(manager, "ra", "a", head="r1", splice=True)
    table_revision(manager, "rb", "b", head="r1", splice=True)


def revision_files(manager: AlembicManager) -> list[str]:
    """The names of the revision files in the versions folder."""
    return sorted(path.name for path in manager.target().versions_dir.glob("*.py"))


def project_files(root: Path) -> dict[str, bytes]:
    """Every file under ROOT with its content (bytecode caches left out)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def ops(diff: Diff) -> list[tuple[str, str | None, str | None]]:
    """The (op, table, target) of each operation."""
    return [(row.op, row.table, row.target) for row in diff.rows]


def index_names(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {index["name"] for index in sa.inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def foreign_keys(url: str, table: str) -> list[tuple[list[str], str, list[str]]]:
    engine = sa.create_engine(url)
    try:
        return [
            (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
            for fk in sa.inspect(engine).get_foreign_keys(table)
        ]
    finally:
        engine.dispose()


def column_length(url: str, table: str, column: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        found = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(table)}
        return getattr(found[column], "length", None)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- init


def test_init_writes_env_template_versions_folder_and_alembic_ini(project, db_url):
    outcome = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project).init()

    assert (project / "migrations" / "env.py").is_file()
    assert (project / "migrations" / "script.py.mako").is_file()
    assert (project / "migrations" / "versions").is_dir()
    assert (project / "alembic.ini").is_file()
    assert {Path(f).name for f in outcome.files} == {"env.py", "script.py.mako", "alembic.ini"}


def test_init_into_a_named_folder(project, db_url):
    AlembicManager(url=db_url, migrations_dir="db/alembic", project_root=project).init()

    assert (project / "db" / "alembic" / "env.py").is_file()
    assert (project / "db" / "alembic" / "versions").is_dir()


def test_init_a_second_time_changes_nothing(project, db_url):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    before = project_files(project)

    outcome = manager.init()

    assert outcome.files == []
    assert project_files(project) == before


def test_init_keeps_an_edited_env_py(project, db_url):
    manager = AlembicManager(url=db_url, project_root=project)
    manager.init()
    env = project / "migrations" / "env.py"
    env.write_text(env.read_text() + "\n# my edit\n")

    manager.init()

    assert env.read_text().endswith("# my edit\n")


def test_alembic_ini_written_by_init_holds_no_url(project):
    AlembicManager(url=UNREACHABLE["postgresql"], project_root=project).init()

    text = (project / "alembic.ini").read_text()
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser.get("alembic", "sqlalchemy.url", fallback="") == ""
    assert SECRET not in text
    assert "127.0.0.1" not in text


def test_alembic_ini_written_by_init_points_at_the_migrations_folder(project, db_url):
    AlembicManager(url=db_url, migrations_dir="db", project_root=project).init()

    # a manager given no folder finds it through alembic.ini
    assert AlembicManager(url=db_url, project_root=project).target().migrations_dir == project / "db"


# ---------------------------------------------------------------- not initialized


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.status(),
        lambda m: m.history(),
        lambda m: m.upgrade(),
        lambda m: m.revision("x", autogenerate=False),
        lambda m: m.clean(),
    ],
    ids=["status", "history", "upgrade", "revision", "clean"],
)
def test_commands_before_init_raise_not_initialized(project, db_url, call):
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)

    with pytest.raises(NotInitialized, match="init"):
        call(manager)
    assert not (project / "migrations").exists()


def test_config_says_whether_the_folder_is_initialized(project, db_url):
    manager = AlembicManager(url=db_url, project_root=project)
    assert manager.config().initialized is False

    manager.init()

    info = manager.config()
    assert info.initialized is True
    assert info.url_source == "argument"
    assert Path(info.migrations_dir) == project / "migrations"


# ---------------------------------------------------------------- revision


def test_autogenerate_writes_a_revision_for_a_new_table(manager, metadata):
    hero(metadata)

    info = manager.revision("create hero")

    assert isinstance(info, RevisionInfo)
    assert info.message == "create hero"
    assert info.parents == ()
    assert Path(info.path).is_file()
    assert revision_files(manager) == [Path(info.path).name]
    assert ops(info.diff) == [("create_table", "hero", None)]


def test_autogenerate_with_nothing_changed_returns_none_and_writes_no_file(manager, metadata):
    hero(metadata)
    manager.revision("create hero")
    manager.upgrade()
    before = revision_files(manager)

    assert manager.revision("nothing new") is None
    assert revision_files(manager) == before


def test_autogenerate_on_empty_models_and_database_writes_nothing(manager):
    assert manager.revision("nothing") is None
    assert revision_files(manager) == []


def test_empty_revision_is_written_without_operations(manager, metadata):
    hero(metadata)  # models differ, but an empty revision ignores them

    info = manager.revision("placeholder", autogenerate=False)

    assert Path(info.path).is_file()
    assert info.diff.empty
    assert "def upgrade" in Path(info.path).read_text()


def test_manual_revision_runs_the_given_upgrade_and_downgrade(manager, db_url):
    info = table_revision(manager, "m1", "manual_table")

    assert ops(info.diff) == [("create_table", "manual_table", None)]
    manager.upgrade()
    assert "manual_table" in table_names(db_url)
    manager.downgrade("base")
    assert "manual_table" not in table_names(db_url)


def test_manual_revision_with_several_lines_keeps_them_all(manager, db_url):
    manager.revision(
        "two tables",
        upgrade_body=(
            'op.create_table("one", sa.Column("id", sa.Integer, primary_key=True))\n'
            'op.create_table("two", sa.Column("id", sa.Integer, primary_key=True))\n'
        ),
        downgrade_body='op.drop_table("two")\nop.drop_table("one")',
    )

    manager.upgrade()
    assert {"one", "two"} <= table_names(db_url)
    manager.downgrade("base")
    assert not {"one", "two"} & table_names(db_url)


@pytest.mark.parametrize("part", ["upgrade_body", "downgrade_body"])
def test_manual_revision_with_a_syntax_error_is_refused_and_writes_nothing(manager, project, part):
    before = project_files(project)

    with pytest.raises(ConfigurationError, match="does not compile"):
        manager.revision("broken", **{part: "op.create_table(("})

    assert revision_files(manager) == []
    assert project_files(project) == before


def test_rev_id_names_the_revision_and_its_file(manager):
    info = manager.revision("named", autogenerate=False, rev_id="my_rev_1")

    assert info.revision == "my_rev_1"
    assert Path(info.path).name.startswith("my_rev_1")


@pytest.mark.parametrize("rev_id", ["../x", "a/b", "a b", "x" * 33])
def test_invalid_rev_id_is_refused_and_writes_nothing(manager, project, rev_id):
    before = project_files(project)

    with pytest.raises(ConfigurationError):
        manager.revision("bad id", autogenerate=False, rev_id=rev_id)

    assert project_files(project) == before
    assert not (project.parent / "x.py").exists()


def test_revision_on_a_given_head_with_a_branch_label(manager):
    table_revision(manager, "r1", "t1")
    table_revision(manager, "r2", "t2")

    info = manager.revision("feature", autogenerate=False, rev_id="f1", head="r1", splice=True,
                            branch_label="feature")
    follow = manager.revision("feature more", autogenerate=False, rev_id="f2", head="feature@head")

    assert info.parents == ("r1",)
    assert info.branch_labels == ("feature",)
    assert follow.parents == ("f1",)
    assert set(manager.heads().ids) == {"r2", "f2"}


def test_revision_on_a_non_head_needs_splice(manager):
    chain(manager, 2)

    with pytest.raises(MigrationError):
        manager.revision("no splice", autogenerate=False, head="r1")
    assert revision_files(manager) == sorted(["r1_create_t1.py", "r2_create_t2.py"])


def test_revision_message_with_accents_and_quotes(manager):
    info = manager.revision('ajouter l\'élément "héros"', autogenerate=False)

    assert manager.history()[0].message == 'ajouter l\'élément "héros"'
    assert Path(info.path).is_file()


def test_revision_depends_on_another(manager):
    table_revision(manager, "r1", "t1")
    manager.revision("other branch", autogenerate=False, rev_id="o1", head="base", branch_label="other")

    info = manager.revision("needs r1", autogenerate=False, rev_id="o2", head="other@head",
                            depends_on="r1")

    assert info.depends_on == ("r1",)
    assert info.parents[0] == "o1"


def test_replace_writes_the_same_revision_again_with_new_content(manager, metadata):
    hero(metadata)
    first = manager.revision("hero")

    hero(metadata, sa.Column("power", sa.Integer))
    second = manager.revision("hero with power", replace=first.revision)

    assert second.revision == first.revision
    assert revision_files(manager) == [Path(second.path).name]
    source = Path(second.path).read_text()
    assert "power" in source
    assert "hero with power" in source


def test_replace_with_nothing_new_removes_the_revision(manager, metadata):
    hero(metadata)
    first = manager.revision("hero")

    metadata.remove(metadata.tables["hero"])
    assert manager.revision("nothing", replace=first.revision) is None

    assert revision_files(manager) == []


def test_replace_of_an_applied_revision_is_refused(manager, metadata):
    hero(metadata)
    first = manager.revision("hero")
    manager.upgrade()
    content = Path(first.path).read_bytes()

    hero(metadata, sa.Column("power", sa.Integer))
    with pytest.raises(RevisionProtected):
        manager.revision("again", replace=first.revision)

    assert Path(first.path).read_bytes() == content
    assert revision_files(manager) == [Path(first.path).name]


def test_replace_keeps_the_revision_on_its_branch(manager):
    two_heads(manager)

    info = manager.revision(
        "create b2",
        upgrade_body='op.create_table("b2", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade_body='op.drop_table("b2")',
        replace="rb",
    )

    assert info.revision == "rb"
    assert info.parents == ("r1",)
    assert set(manager.heads().ids) == {"ra", "rb"}
    assert "b2" in Path(info.path).read_text()


def test_replace_keeps_the_branch_label(manager):
    table_revision(manager, "r1", "t1", branch_label="core")

    info = manager.revision("again", autogenerate=False, replace="r1")

    assert info.revision == "r1"
    assert info.branch_labels == ("core",)


def test_replace_that_fails_puts_the_earlier_revision_back(manager):
    chain(manager, 2)
    path = Path(manager.show("r2").path)
    content = path.read_bytes()

    with pytest.raises(MigrationError):  # autogenerate on a database that is behind
        manager.revision("again", replace="r2")

    assert path.read_bytes() == content
    assert revision_files(manager) == ["r1_create_t1.py", "r2_create_t2.py"]


def test_replace_of_a_revision_with_children_is_refused(manager):
    chain(manager, 2)

    with pytest.raises(RevisionProtected):
        manager.revision("again", autogenerate=False, replace="r1")
    assert len(revision_files(manager)) == 2


# ---------------------------------------------------------------- upgrade and downgrade


def test_upgrade_applies_every_revision_in_order(manager, db_url):
    chain(manager, 3)

    outcome = manager.upgrade()

    assert [step.revision for step in outcome.steps] == ["r1", "r2", "r3"]
    assert {"t1", "t2", "t3"} <= table_names(db_url)
    assert version_rows(db_url) == ["r3"]


def test_upgrade_reports_each_step(manager):
    chain(manager, 2)
    seen = []

    manager.upgrade(on_step=lambda done, total, info: seen.append((done, total, info.revision)))

    assert seen == [(1, 2, "r1"), (2, 2, "r2")]


def test_upgrade_to_a_revision_stops_there(manager, db_url):
    chain(manager, 3)

    manager.upgrade("r2")

    assert version_rows(db_url) == ["r2"]
    assert "t3" not in table_names(db_url)


def test_upgrade_plus_one_and_downgrade_minus_one(manager, db_url):
    chain(manager, 3)

    manager.upgrade("+1")
    assert version_rows(db_url) == ["r1"]
    manager.upgrade("+1")
    assert version_rows(db_url) == ["r2"]
    assert {"t1", "t2"} <= table_names(db_url)

    manager.downgrade("-1")
    assert version_rows(db_url) == ["r1"]
    assert "t2" not in table_names(db_url)


def test_downgrade_to_base_undoes_everything(manager, db_url):
    chain(manager, 3)
    manager.upgrade()

    outcome = manager.downgrade("base")

    assert [step.revision for step in outcome.steps] == ["r3", "r2", "r1"]
    assert version_rows(db_url) == []
    assert not {"t1", "t2", "t3"} & table_names(db_url)


def test_downgrade_to_a_revision(manager, db_url):
    chain(manager, 3)
    manager.upgrade()

    manager.downgrade("r1")

    assert version_rows(db_url) == ["r1"]
    assert "t1" in table_names(db_url)
    assert not {"t2", "t3"} & table_names(db_url)


def test_upgrade_when_up_to_date_does_nothing(manager, db_url):
    chain(manager, 1)
    manager.upgrade()

    outcome = manager.upgrade()

    assert outcome.steps == []
    assert version_rows(db_url) == ["r1"]


def test_upgrade_past_the_last_revision_is_an_error(manager, db_url):
    chain(manager, 1)
    manager.upgrade()

    with pytest.raises(MigrationError) as caught:
        manager.upgrade("+1")
    assert str(caught.value) == "Cannot upgrade 1 revision: the database is at r1, the head."
    assert version_rows(db_url) == ["r1"]


def test_upgrade_minus_n_says_that_downgrade_goes_down(manager, db_url):
    chain(manager, 2)
    manager.upgrade()

    with pytest.raises(MigrationError) as caught:
        manager.upgrade("-1")

    assert str(caught.value) == (
        "`upgrade -1` would go down: `downgrade -1` takes the database down 1 revision.")
    assert version_rows(db_url) == ["r2"]
    assert manager.upgrade("r2-1").summary == "Nothing to upgrade: the database is at r2."  # a revision below


AT_BASE = "Nothing to downgrade: the database is at base (no revision)."


@pytest.mark.parametrize("goal", ["-1", "-3"])
def test_downgrade_minus_n_at_base_has_nothing_to_downgrade_as_base_has(manager, db_url, goal):
    chain(manager, 1)  # written, never applied

    outcome = manager.downgrade(goal)

    assert outcome.summary == AT_BASE == manager.downgrade("base").summary
    assert outcome.steps == [] and outcome.backup is None
    assert manager.plan(goal, downgrade=True).steps == []
    assert version_rows(db_url) == []
    assert "t1" not in table_names(db_url)


@pytest.mark.parametrize(("at", "move", "said"), [
    ("r1", "-3", "Cannot downgrade 3 revisions: the database is at r1, 1 revision above base "
                 "(`downgrade -1` or `downgrade base` takes it there)."),
    ("r2", "+3", "Cannot upgrade 3 revisions: the database is at r2, 1 revision below the head "
                 "(`upgrade +1` or `upgrade` takes it there)."),
])
def test_moving_further_than_the_history_goes_says_how_far_the_database_can_go(manager, db_url, at, move,
                                                                              said):
    chain(manager, 3)
    manager.upgrade(at)
    move_by = manager.downgrade if move.startswith("-") else manager.upgrade

    with pytest.raises(MigrationError) as caught:
        move_by(move)

    assert str(caught.value) == said
    assert version_rows(db_url) == [at]
    assert "t1" in table_names(db_url) and "t3" not in table_names(db_url)


def test_downgrade_to_below_base_counted_from_a_revision_says_how_far_it_is(manager, db_url):
    chain(manager, 3)
    manager.upgrade()

    with pytest.raises(MigrationError) as caught:
        manager.downgrade("r2-3")

    assert str(caught.value) == "r2-3 is below base: r2 is 2 revisions above base."
    assert version_rows(db_url) == ["r3"]


def test_upgrade_with_a_range_is_refused(manager, db_url):
    chain(manager, 2)

    with pytest.raises(MigrationError, match="sql"):
        manager.upgrade("r1:r2")
    assert version_rows(db_url) == []


def test_failing_revision_is_reported_with_its_id(manager, db_url):
    table_revision(manager, "r1", "t1")
    manager.revision("broken", rev_id="r2", upgrade_body='op.execute("SELECT * FROM no_such_table")')

    with pytest.raises(MigrationError, match="r2"):
        manager.upgrade()
    assert version_rows(db_url) == ["r1"]


def test_failed_revision_keeps_nothing_of_itself(manager, backend, db_url):
    table_revision(manager, "r1", "t1")
    manager.revision(
        "half done",
        rev_id="r2",
        upgrade_body=(
            'op.create_table("half", sa.Column("id", sa.Integer, primary_key=True))\n'
            'op.execute("SELECT * FROM no_such_table")'
        ),
    )

    with pytest.raises(MigrationError) as caught:
        manager.upgrade()

    assert version_rows(db_url) == ["r1"]
    if backend == "mysql":  # MySQL/MariaDB commit DDL at once: the user is told what ran
        assert "cannot roll back" in str(caught.value)
    else:
        assert "half" not in table_names(db_url)
        assert "t1" in table_names(db_url)


# ---------------------------------------------------------------- status, history, current, heads, branches


def test_status_lists_pending_revisions_before_upgrade(manager):
    chain(manager, 2)

    status = manager.status()

    assert status.current == ()
    assert status.heads == ("r2",)
    assert status.pending == ("r1", "r2")
    assert status.up_to_date is False


def test_status_after_upgrade_is_up_to_date(manager):
    chain(manager, 2)
    manager.upgrade()

    status = manager.status()

    assert status.current == ("r2",)
    assert status.pending == ()
    assert status.up_to_date is True


def test_status_part_way(manager):
    chain(manager, 3)
    manager.upgrade("r1")

    status = manager.status()

    assert status.current == ("r1",)
    assert status.pending == ("r2", "r3")
    assert list(status.to_frame()["revision"]) == ["r2", "r3"]


def test_status_url_is_the_database_url(manager, db_url):
    assert manager.status().url == sa.make_url(db_url).render_as_string(hide_password=True)


@pytest.mark.servers
def test_password_is_masked_in_status_and_never_written_or_logged(project, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # PostgreSQL here trusts local connections, so a password in the URL is accepted and ignored
    with fresh_database("postgresql", tmp_path) as url:
        with_password = sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)
        manager = AlembicManager(url=with_password, metadata=sa.MetaData(), project_root=project)
        manager.init()
        table_revision(manager, "r1", "t1")
        manager.upgrade()

        status = manager.status()
        history = manager.history()

    assert SECRET not in status.url
    assert "***" in status.url
    assert SECRET not in repr(status) + status._repr_html_()
    assert SECRET not in history.url + repr(history) + history._repr_html_()
    assert not [name for name, content in project_files(project).items() if SECRET.encode() in content]
    assert SECRET not in caplog.text


def test_history_frame_has_the_documented_columns(manager):
    chain(manager, 2)

    frame = manager.history().to_frame()

    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert list(frame.columns) == [
        "revision", "parents", "message", "created", "applied", "current", "head", "branch_labels", "path",
        "risk",
    ]


def test_history_is_newest_first_with_applied_current_and_head_flags(manager):
    chain(manager, 3)
    manager.upgrade("r2")

    frame = manager.history().to_frame()

    assert list(frame["revision"]) == ["r3", "r2", "r1"]
    assert list(frame["parents"]) == [("r2",), ("r1",), ()]
    assert list(frame["message"]) == ["create t3", "create t2", "create t1"]
    assert list(frame["applied"]) == [False, True, True]
    assert list(frame["current"]) == [False, True, False]
    assert list(frame["head"]) == [True, False, False]
    assert all(Path(path).is_file() for path in frame["path"])
    assert all(isinstance(created, datetime) for created in frame["created"])


def test_history_of_an_empty_folder_is_empty(manager):
    frame = manager.history().to_frame()

    assert len(frame) == 0
    assert list(frame.columns) == list(HISTORY_COLUMNS)


def test_history_of_a_range(manager):
    chain(manager, 4)

    history = manager.history("r2:r3")

    assert [r.revision for r in history] == ["r3", "r2"]


def test_history_shows_branch_labels(manager):
    table_revision(manager, "r1", "t1", branch_label="core")

    frame = manager.history().to_frame()

    assert list(frame["branch_labels"]) == [("core",)]


def test_history_sees_a_revision_file_edited_by_hand(manager):
    chain(manager, 2)
    path = Path(manager.show("r2").path)
    path.write_text(path.read_text().replace("create t2", "create the second table"))

    assert manager.history()[0].message == "create the second table"


def test_history_sees_revision_files_added_and_removed_outside(manager, project):
    from alembic import command
    from alembic.config import Config

    chain(manager, 1)
    config = Config(str(project / "alembic.ini"))
    command.revision(config, "from the shell", rev_id="s1")
    assert [r.revision for r in manager.history()] == ["s1", "r1"]

    next(manager.target().versions_dir.glob("s1_*.py")).unlink()
    assert [r.revision for r in manager.history()] == ["r1"]


def test_current_is_the_revision_the_database_is_at(manager):
    chain(manager, 3)
    assert manager.current().ids == ()

    manager.upgrade("r2")

    assert manager.current().ids == ("r2",)
    assert manager.current().to_frame()["current"].tolist() == [True]


def test_heads_lists_the_tip_of_each_branch(manager):
    two_heads(manager)

    assert set(manager.heads().ids) == {"ra", "rb"}


def test_branches_lists_branch_points(manager):
    two_heads(manager)
    table_revision(manager, "rc", "c", head="ra")

    assert manager.branches().ids == ("r1",)


def test_branches_of_a_straight_history_is_empty(manager):
    chain(manager, 3)

    assert manager.branches().ids == ()


def test_graph_holds_every_revision(manager):
    two_heads(manager)
    manager.upgrade("ra")

    graph = manager.graph()

    assert {r.revision for r in graph.revisions} == {"r1", "ra", "rb"}
    assert {r.revision for r in graph.revisions if r.applied} == {"r1", "ra"}
    assert "<svg" in graph._repr_html_()


# ---------------------------------------------------------------- show


def test_show_gives_source_operations_and_sql(manager, metadata):
    hero(metadata)
    info = manager.revision("create hero", rev_id="h1")

    shown = manager.show("h1")

    assert shown.revision == info.revision
    assert shown.source == Path(info.path).read_text()
    assert ops(shown.diff) == [("create_table", "hero", None)]
    assert "CREATE TABLE hero" in shown.sql.text.replace("`", "").replace('"', "")


def test_show_accepts_a_unique_prefix(manager):
    manager.revision("x", autogenerate=False, rev_id="abcdef1")

    assert manager.show("abc").revision == "abcdef1"


def test_show_head(manager):
    chain(manager, 2)

    assert manager.show("head").revision == "r2"


# ---------------------------------------------------------------- diff and check


def test_diff_without_argument_compares_models_with_database(manager, metadata):
    hero(metadata)

    assert ops(manager.diff()) == [("create_table", "hero", None)]

    manager.revision("hero")
    manager.upgrade()
    hero(metadata, sa.Column("power", sa.Integer))

    assert ops(manager.diff()) == [("add_column", "hero", "power")]


def test_diff_frame_has_the_documented_columns(manager, metadata):
    hero(metadata)

    frame = manager.diff().to_frame()

    assert list(frame.columns) == ["revision", "op", "table", "target", "detail", "destructive"]
    assert frame["op"].tolist() == ["create_table"]


def test_diff_when_models_match_is_empty(manager, metadata):
    hero(metadata)
    manager.revision("hero")
    manager.upgrade()

    assert manager.diff().empty
    assert manager.has_changes() is False


def test_diff_between_revisions_going_up(manager):
    chain(manager, 3)

    diff = manager.diff("r1", "r3")

    assert ops(diff) == [("create_table", "t2", None), ("create_table", "t3", None)]
    assert [row.revision for row in diff.rows] == ["r2", "r3"]


def test_diff_between_revisions_going_down(manager):
    chain(manager, 3)

    diff = manager.diff("r3", "r1")

    assert ops(diff) == [("drop_table", "t3", None), ("drop_table", "t2", None)]
    assert diff.destructive


def test_diff_from_base(manager):
    chain(manager, 2)

    assert ops(manager.diff("base", "r2")) == [("create_table", "t1", None), ("create_table", "t2", None)]


def test_diff_between_branches_is_an_error(manager):
    two_heads(manager)

    with pytest.raises(MigrationError, match="branch"):
        manager.diff("ra", "rb")


def test_check_raises_changes_detected_with_the_diff(manager, metadata):
    hero(metadata)

    with pytest.raises(ChangesDetected) as caught:
        manager.check()

    assert ops(caught.value.diff) == [("create_table", "hero", None)]
    assert manager.has_changes() is True


def test_check_on_a_database_that_is_behind_says_to_upgrade(manager, metadata):
    hero(metadata)
    manager.revision("hero")

    with pytest.raises(MigrationError, match="upgrade"):
        manager.check()


def test_diff_down_a_column_addition_is_destructive(manager, metadata):
    hero(metadata)
    first = manager.revision("create hero")
    manager.upgrade()
    hero(metadata, sa.Column("power", sa.Integer))
    second = manager.revision("add power")

    diff = manager.diff(second.revision, first.revision)

    assert ops(diff) == [("drop_column", "hero", "power")]
    assert diff.destructive is True


@pytest.mark.parametrize(
    ("statement", "destructive"),
    [("DELETE FROM t1", True), ("UPDATE t1 SET id = 1", True), ("INSERT INTO t1 (id) VALUES (1)", False)],
)
def test_diff_of_raw_sql_marks_data_loss(manager, statement, destructive):
    table_revision(manager, "r1", "t1")
    manager.revision("data", rev_id="r2", upgrade_body=f'op.execute("{statement}")')

    diff = manager.diff("r2")

    assert [row.op for row in diff.rows] == ["execute"]
    assert diff.rows[0].destructive is destructive


def test_show_of_a_data_migration_that_needs_the_database(manager):
    manager.revision(
        "data migration",
        rev_id="d1",
        upgrade_body='for row in op.get_bind().execute(sa.text("SELECT 1")):\n    pass',
    )

    shown = manager.show("d1")

    assert len(shown.diff.rows) == 1
    assert "d1" in shown.source


def test_check_passes_with_an_empty_diff_when_models_match(manager, metadata):
    hero(metadata)
    manager.revision("hero")
    manager.upgrade()

    result = manager.check()

    assert isinstance(result, Diff)
    assert result.empty


# ---------------------------------------------------------------- sql and plan


def test_sql_of_a_range_holds_create_table(manager, db_url):
    chain(manager, 2)

    script = manager.sql("base:r1")

    text = script.text.replace("`", "").replace('"', "")
    assert "CREATE TABLE t1" in text
    assert "CREATE TABLE t2" not in text
    assert version_rows(db_url) == []  # nothing ran
    assert "t1" not in table_names(db_url)


def test_sql_of_everything_has_one_block_per_revision(manager):
    chain(manager, 2)

    script = manager.sql()

    assert [b.revision for b in script.blocks if b.revision] == ["r1", "r2"]


def test_sql_going_down_drops(manager):
    chain(manager, 2)

    text = manager.sql("r2:r1").text.replace("`", "").replace('"', "")

    assert "DROP TABLE t2" in text
    assert "DROP TABLE t1" not in text


def test_plan_lists_the_steps_and_changes_nothing(manager, db_url):
    chain(manager, 3)

    plan = manager.plan()

    assert plan.direction == "upgrade"
    assert [s.revision for s in plan.steps] == ["r1", "r2", "r3"]
    assert plan.destructive is False
    assert version_rows(db_url) == []
    assert not {"t1", "t2", "t3"} & table_names(db_url)


def test_plan_of_a_downgrade_is_destructive(manager, db_url):
    chain(manager, 3)
    manager.upgrade()

    plan = manager.plan("r1", downgrade=True)

    assert plan.direction == "downgrade"
    assert [s.revision for s in plan.steps] == ["r3", "r2"]
    assert plan.destructive is True
    assert plan.to_frame()["destructive"].tolist() == [True, True]
    assert version_rows(db_url) == ["r3"]


# ---------------------------------------------------------------- stamp, merge


def test_stamp_records_a_revision_without_running_it(manager, db_url):
    chain(manager, 3)

    manager.stamp("r2")

    assert version_rows(db_url) == ["r2"]
    assert not {"t1", "t2"} & table_names(db_url)
    assert manager.status().pending == ("r3",)


def test_stamp_base_empties_the_version_table(manager, db_url):
    chain(manager, 2)
    manager.upgrade()

    manager.stamp("base")

    assert version_rows(db_url) == []
    assert {"t1", "t2"} <= table_names(db_url)


def test_stamp_purge_replaces_a_revision_whose_file_is_gone(manager, db_url):
    chain(manager, 2)
    manager.upgrade()
    manager.delete("r2", force=True)

    manager.stamp("r1", purge=True)

    assert version_rows(db_url) == ["r1"]
    assert manager.status().up_to_date is True


def test_merge_joins_two_heads(manager, db_url):
    two_heads(manager)

    merged = manager.merge("heads", "join", rev_id="rm")

    assert merged.revision == "rm"
    assert set(merged.parents) == {"ra", "rb"}
    assert manager.heads().ids == ("rm",)
    assert Path(merged.path).is_file()


def test_merge_refuses_an_invalid_rev_id(manager, project):
    two_heads(manager)
    before = project_files(project)

    with pytest.raises(ConfigurationError):
        manager.merge("heads", "join", rev_id="../x")
    assert project_files(project) == before


def test_merge_of_named_revisions(manager):
    two_heads(manager)

    merged = manager.merge(["ra", "rb"], "join")

    assert set(merged.parents) == {"ra", "rb"}


# ---------------------------------------------------------------- delete, version table, clean, reset


def test_delete_removes_an_unapplied_head(manager):
    chain(manager, 2)
    path = Path(manager.show("r2").path)

    manager.delete("r2")

    assert not path.exists()
    assert revision_files(manager) == ["r1_create_t1.py"]
    assert manager.heads().ids == ("r1",)


def test_delete_refuses_an_applied_revision(manager):
    chain(manager, 2)
    manager.upgrade()

    with pytest.raises(RevisionProtected, match="applied"):
        manager.delete("r2")
    assert len(revision_files(manager)) == 2


def test_delete_refuses_a_revision_others_build_on(manager):
    chain(manager, 2)

    with pytest.raises(RevisionProtected, match="r2"):
        manager.delete("r1")
    assert len(revision_files(manager)) == 2


def test_delete_with_force_removes_an_applied_revision(manager, db_url):
    chain(manager, 2)
    manager.upgrade()

    outcome = manager.delete("r2", force=True)

    assert revision_files(manager) == ["r1_create_t1.py"]
    assert outcome.warnings  # the user is told the database still records it
    assert version_rows(db_url) == ["r2"]


def test_delete_with_force_removes_a_parent(manager):
    chain(manager, 2)

    manager.delete("r1", force=True)

    assert revision_files(manager) == ["r2_create_t2.py"]


def test_status_when_the_database_names_a_deleted_revision_suggests_stamp(manager):
    chain(manager, 2)
    manager.upgrade()
    manager.delete("r2", force=True)

    with pytest.raises(RevisionNotFound, match="stamp"):
        manager.status()


def test_create_version_table_twice_is_fine(manager, db_url):
    manager.create_version_table()
    manager.create_version_table()

    assert "alembic_version" in table_names(db_url)


def test_clear_history_of_a_fresh_database(manager, db_url):
    manager.clear_history()

    assert version_rows(db_url) == []


def test_create_version_table(manager, db_url):
    assert "alembic_version" not in table_names(db_url)

    manager.create_version_table()

    assert "alembic_version" in table_names(db_url)
    assert version_rows(db_url) == []
    assert manager.status().current == ()


def test_clear_history_empties_the_version_table_and_keeps_the_schema(manager, db_url):
    chain(manager, 2)
    manager.upgrade()

    manager.clear_history()

    assert version_rows(db_url) == []
    assert {"t1", "t2"} <= table_names(db_url)
    assert len(revision_files(manager)) == 2


def test_clean_removes_revision_files_and_keeps_env_and_template(manager, project, db_url):
    chain(manager, 2)
    manager.upgrade()

    outcome = manager.clean()

    assert revision_files(manager) == []
    assert len(outcome.files) == 2
    assert (project / "migrations" / "env.py").is_file()
    assert (project / "migrations" / "script.py.mako").is_file()
    assert version_rows(db_url) == ["r2"]  # the database is not touched


def test_reset_empties_version_table_and_removes_revision_files(manager, project, db_url):
    chain(manager, 2)
    manager.upgrade()

    manager.reset()

    assert version_rows(db_url) == []
    assert revision_files(manager) == []
    assert (project / "migrations" / "env.py").is_file()
    assert {"t1", "t2"} <= table_names(db_url)
    assert len(manager.history()) == 0


def test_after_reset_a_new_history_can_start(manager, metadata, db_url):
    chain(manager, 1)
    manager.upgrade()
    manager.reset()

    hero(metadata)
    info = manager.revision("fresh start")
    manager.upgrade()

    assert version_rows(db_url) == [info.revision]
    assert "hero" in table_names(db_url)


# ---------------------------------------------------------------- the scenarios of the Framefox docs


def round_trip(manager: AlembicManager, down: str, check_up: Callable[[], None],
               check_down: Callable[[], None]) -> None:
    """upgrade -> downgrade -> upgrade, checking the database after each step."""
    manager.upgrade()
    check_up()
    manager.downgrade(down)
    check_down()
    manager.upgrade()
    check_up()


def test_scenario_create_a_table(manager, metadata, db_url):
    hero(metadata)
    info = manager.revision("create hero")
    assert ops(manager.diff(info.revision)) == [("create_table", "hero", None)]

    def up():
        assert column_names(db_url, "hero") == {"id", "name"}
        assert version_rows(db_url) == [info.revision]

    def down():
        assert "hero" not in table_names(db_url)
        assert version_rows(db_url) == []

    round_trip(manager, "base", up, down)
    assert manager.check().empty


def test_scenario_add_a_column(manager, metadata, db_url):
    hero(metadata)
    first = manager.revision("create hero")
    manager.upgrade()
    hero(metadata, sa.Column("power", sa.Integer))
    info = manager.revision("add power")

    diff = manager.diff(info.revision)
    assert ops(diff) == [("add_column", "hero", "power")]
    assert diff.destructive is False

    def up():
        assert column_names(db_url, "hero") == {"id", "name", "power"}
        assert version_rows(db_url) == [info.revision]

    def down():
        assert column_names(db_url, "hero") == {"id", "name"}
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)
    assert manager.check().empty


def test_scenario_remove_a_column(manager, metadata, db_url):
    hero(metadata, sa.Column("power", sa.Integer))
    first = manager.revision("create hero")
    manager.upgrade()
    hero(metadata)
    info = manager.revision("drop power")

    diff = manager.diff(info.revision)
    assert ops(diff) == [("drop_column", "hero", "power")]
    assert diff.rows[0].destructive is True

    def up():
        assert column_names(db_url, "hero") == {"id", "name"}
        assert version_rows(db_url) == [info.revision]

    def down():
        assert column_names(db_url, "hero") == {"id", "name", "power"}
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, first.revision, up, down)
    assert manager.check().empty


RENAME = 'op.alter_column("hero", "{old}", new_column_name="{new}", existing_type=sa.String(50))'


def test_scenario_rename_a_column_by_hand(manager, metadata, db_url):
    hero(metadata)
    first = manager.revision("create hero")
    manager.upgrade()
    info = manager.revision(
        "rename name to title",
        upgrade_body=RENAME.format(old="name", new="title"),
        downgrade_body=RENAME.format(old="title", new="name"),
    )

    diff = manager.diff(info.revision)
    assert ops(diff) == [("alter_column", "hero", "name")]
    assert "title" in diff.rows[0].detail

    def up():
        assert column_names(db_url, "hero") == {"id", "title"}
        assert version_rows(db_url) == [info.revision]

    def down():
        assert column_names(db_url, "hero") == {"id", "name"}
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)


def test_scenario_change_a_column_type(manager, metadata, db_url):
    hero(metadata)
    first = manager.revision("create hero")
    manager.upgrade()
    define(metadata, "hero", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(100)))
    info = manager.revision("longer names")

    assert ops(manager.diff(info.revision)) == [("alter_column", "hero", "name")]

    def up():
        assert column_length(db_url, "hero", "name") == 100
        assert version_rows(db_url) == [info.revision]

    def down():
        assert column_length(db_url, "hero", "name") == 50
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)
    assert manager.check().empty


def test_scenario_add_an_index(manager, metadata, db_url):
    hero(metadata)
    first = manager.revision("create hero")
    manager.upgrade()
    hero(metadata, sa.Index("ix_hero_name", "name"))
    info = manager.revision("index name")

    assert ops(manager.diff(info.revision)) == [("create_index", "hero", "ix_hero_name")]

    def up():
        assert "ix_hero_name" in index_names(db_url, "hero")
        assert version_rows(db_url) == [info.revision]

    def down():
        assert "ix_hero_name" not in index_names(db_url, "hero")
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)
    assert manager.check().empty


def test_scenario_add_a_foreign_key(manager, metadata, db_url):
    define(metadata, "team", sa.Column("id", sa.Integer, primary_key=True))
    hero(metadata)
    first = manager.revision("create team and hero")
    manager.upgrade()
    hero(metadata, sa.Column("team_id", sa.Integer, sa.ForeignKey("team.id", name="fk_hero_team")))
    info = manager.revision("hero joins a team")

    assert [row.op for row in manager.diff(info.revision).rows] == ["add_column", "create_foreign_key"]
    assert ("create_foreign_key", "hero", "fk_hero_team") in ops(manager.diff(info.revision))

    def up():
        assert foreign_keys(db_url, "hero") == [(["team_id"], "team", ["id"])]
        assert version_rows(db_url) == [info.revision]

    def down():
        assert foreign_keys(db_url, "hero") == []
        assert "team_id" not in column_names(db_url, "hero")
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)
    assert manager.check().empty


def test_scenario_drop_a_table(manager, metadata, db_url):
    hero(metadata)
    define(metadata, "villain", sa.Column("id", sa.Integer, primary_key=True))
    first = manager.revision("hero and villain")
    manager.upgrade()
    metadata.remove(metadata.tables["villain"])
    info = manager.revision("no more villains")

    diff = manager.diff(info.revision)
    assert ops(diff) == [("drop_table", "villain", None)]
    assert diff.destructive is True

    def up():
        assert "villain" not in table_names(db_url)
        assert version_rows(db_url) == [info.revision]

    def down():
        assert "villain" in table_names(db_url)
        assert version_rows(db_url) == [first.revision]

    round_trip(manager, "-1", up, down)
    assert manager.check().empty


def test_scenario_branches_and_a_merge(manager, db_url):
    two_heads(manager)

    with pytest.raises(MultipleHeads):
        manager.upgrade("head")

    manager.upgrade("heads")
    assert {"t1", "a", "b"} <= table_names(db_url)
    assert version_rows(db_url) == ["ra", "rb"]
    assert set(manager.status().current) == {"ra", "rb"}

    manager.merge("heads", "join branches", rev_id="rm")
    assert manager.status().pending == ("rm",)

    def up():
        assert {"t1", "a", "b"} <= table_names(db_url)
        assert version_rows(db_url) == ["rm"]

    def down():
        assert not {"a", "b"} & table_names(db_url)
        assert version_rows(db_url) == ["r1"]

    round_trip(manager, "r1", up, down)


def test_scenario_upgrade_one_branch(manager, db_url):
    two_heads(manager)

    manager.upgrade("ra")

    assert "a" in table_names(db_url)
    assert "b" not in table_names(db_url)
    assert version_rows(db_url) == ["ra"]
    assert manager.status().pending == ("rb",)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.show("nosuch"),
        lambda m: m.diff("nosuch"),
        lambda m: m.upgrade("nosuch"),
        lambda m: m.delete("nosuch"),
        lambda m: m.stamp("nosuch"),
    ],
    ids=["show", "diff", "upgrade", "delete", "stamp"],
)
def test_unknown_revision_raises_revision_not_found(manager, call):
    chain(manager, 1)

    with pytest.raises(RevisionNotFound, match="nosuch"):
        call(manager)


@pytest.mark.parametrize(
    "call",
    [lambda m: m.show("abc"), lambda m: m.upgrade("abc"), lambda m: m.diff("abc")],
    ids=["show", "upgrade", "diff"],
)
def test_ambiguous_prefix_raises_ambiguous_revision(manager, call):
    manager.revision("one", autogenerate=False, rev_id="abc1")
    manager.revision("two", autogenerate=False, rev_id="abc2")

    with pytest.raises(AmbiguousRevision, match="abc"):
        call(manager)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.upgrade("head"),
        lambda m: m.revision("x", autogenerate=False),
        lambda m: (m.upgrade("heads"), m.revision("x")),
        lambda m: m.diff("head", "base"),
    ],
    ids=["upgrade", "revision", "autogenerate", "diff"],
)
def test_multiple_heads_where_one_is_needed(manager, call):
    two_heads(manager)

    with pytest.raises(MultipleHeads, match="merge"):
        call(manager)
    assert len(revision_files(manager)) == 3


@pytest.mark.parametrize("server", sorted(UNREACHABLE))
@pytest.mark.parametrize("call", [lambda m: m.status(), lambda m: m.upgrade()], ids=["status", "upgrade"])
def test_unreachable_database_is_one_short_message(project, server, call):
    manager = AlembicManager(url=UNREACHABLE[server].replace(f":{SECRET}", ""), project_root=project)
    manager.init()

    with pytest.raises(DatabaseUnreachable) as caught:
        call(manager)

    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert len(message) < 300
    assert "Traceback" not in message


@pytest.mark.parametrize("server", sorted(UNREACHABLE))
def test_password_is_never_shown_in_errors(project, server):
    manager = AlembicManager(url=UNREACHABLE[server], project_root=project)
    manager.init()

    with pytest.raises(DatabaseUnreachable) as caught:
        manager.status()

    assert SECRET not in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize("server", sorted(UNREACHABLE))
def test_password_is_never_shown_in_config_or_repr(project, server):
    manager = AlembicManager(url=UNREACHABLE[server], project_root=project)

    info = manager.config()

    assert SECRET not in info.url
    assert "***" in info.url
    assert SECRET not in repr(info)
    assert SECRET not in info._repr_html_()
    assert SECRET not in repr(manager)


def test_password_in_database_url_env_is_masked_in_config(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE["postgresql"])

    info = AlembicManager(project_root=project).config()

    assert info.url_source == "DATABASE_URL"
    assert SECRET not in info.url


def test_bad_url_is_a_configuration_error(project):
    manager = AlembicManager(url="not a url", project_root=project)

    with pytest.raises(ConfigurationError, match="URL"):
        manager.status()


def test_malformed_url_does_not_show_its_password(project):
    manager = AlembicManager(url=f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/x", project_root=project)

    with pytest.raises(MigrationError) as caught:
        manager.init()

    assert SECRET not in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_missing_driver_says_what_to_install(project):
    manager = AlembicManager(url="postgresql+psycopg2://postgres@127.0.0.1:1/x", project_root=project)
    manager.init()

    with pytest.raises(ConfigurationError, match="pip install"):
        manager.status()


# ---------------------------------------------------------------- an existing Alembic project


def test_existing_alembic_project_works_with_its_own_env_py(project, db_url):
    from alembic import command
    from alembic.config import Config

    command.init(Config(str(project / "alembic.ini")), str(project / "alembic"), template="generic")
    notebook_logger = logging.getLogger("notebook.user")
    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)

    assert manager.target().migrations_dir == project / "alembic"
    table_revision(manager, "r1", "t1")
    manager.upgrade()

    assert "t1" in table_names(db_url)
    assert version_rows(db_url) == ["r1"]
    assert manager.status().current == ("r1",)
    manager.downgrade("base")
    assert "t1" not in table_names(db_url)
    assert notebook_logger.disabled is False  # its env.py's fileConfig did not silence the notebook


def test_plain_alembic_runs_the_env_py_written_by_init(project, db_url, monkeypatch):
    from alembic import command
    from alembic.config import Config

    manager = AlembicManager(url=db_url, metadata=sa.MetaData(), project_root=project)
    manager.init()
    table_revision(manager, "r1", "t1")
    monkeypatch.setenv("DATABASE_URL", db_url)

    command.upgrade(Config(str(project / "alembic.ini")), "head")

    assert "t1" in table_names(db_url)
    assert version_rows(db_url) == ["r1"]


# ---------------------------------------------------------------- metadata


def test_metadata_from_a_module_spec(project, db_url):
    module = f"models_{uuid.uuid4().hex[:8]}"
    (project / f"{module}.py").write_text(
        "import sqlalchemy as sa\n"
        "metadata = sa.MetaData()\n"
        'sa.Table("gadget", metadata, sa.Column("id", sa.Integer, primary_key=True))\n'
    )
    manager = AlembicManager(url=db_url, metadata=f"{module}:metadata", project_root=project)
    manager.init()

    assert "gadget" in manager.target_metadata().tables
    assert ops(manager.diff()) == [("create_table", "gadget", None)]
    assert f"target_metadata = {module}:metadata" in (project / "alembic.ini").read_text()


def test_default_metadata_is_sqlmodels(project):
    from sqlmodel import SQLModel

    assert AlembicManager(project_root=project).target_metadata() is SQLModel.metadata


def test_autogenerate_with_sqlmodel_types_can_be_applied(manager, metadata, db_url):
    from sqlmodel.sql.sqltypes import AutoString

    define(metadata, "item", sa.Column("id", sa.Integer, primary_key=True), sa.Column("tag", AutoString(40)))
    info = manager.revision("items")

    assert "sqlmodel" in Path(info.path).read_text()
    manager.upgrade()
    assert column_names(db_url, "item") == {"id", "tag"}


def test_a_version_table_named_in_the_settings_is_the_one_inits_env_py_writes(project, db_url):
    (project / "pyproject.toml").write_text('[tool.framefox_magic]\nversion_table = "app_versions"\n')
    manager = AlembicManager(url=db_url, project_root=project, metadata=sa.MetaData())
    manager.init()
    first = manager.revision("one", autogenerate=False).revision
    manager.upgrade()
    assert manager.status().up_to_date
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            written = connection.execute(sa.text("SELECT version_num FROM app_versions")).scalars().all()
            assert written == [first]
            assert not sa.inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()
    manager.downgrade("base")
    assert manager.status().current == ()
