"""Rehearse: pending revisions up, down and up again on a throwaway copy; the database untouched."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import SERVER_URLS, column_names, need_server, table_names, version_rows

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError
from framefox_magic.results import Rehearsal

ROWS = 2000
CREATE_HERO = '''
op.create_table("hero", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)),
                sa.Column("age", sa.Integer, nullable=True))
'''
ADD_POWER = 'op.add_column("hero", sa.Column("power", sa.Integer, nullable=True))'
DROP_POWER = 'op.drop_column("hero", "power")'
ADD_INDEX = 'op.create_index("ix_hero_name", "hero", ["name"])'
DROP_INDEX = 'op.drop_index("ix_hero_name", table_name="hero")'
AGE_NOT_NULL = '''
with op.batch_alter_table("hero") as batch:
    batch.alter_column("age", existing_type=sa.Integer(), nullable=False)
'''
AGE_NULL = '''
with op.batch_alter_table("hero") as batch:
    batch.alter_column("age", existing_type=sa.Integer(), nullable=True)
'''


@pytest.fixture
def heroes_manager(manager: AlembicManager, db_url: str) -> AlembicManager:
    """A project whose database holds `hero` with ROWS rows, some of them without an age."""
    manager.revision("create hero", upgrade_body=CREATE_HERO, downgrade_body='op.drop_table("hero")')
    manager.upgrade()
    fill_heroes(db_url, ROWS)
    return manager


def own_env_heroes(project: Path, url: str, count: int) -> AlembicManager:
    """A project with an env.py of its own (the README's tenant lines) whose database holds `hero`
    with COUNT rows, some of them without an age."""
    from test_fanout import EXISTING_ENV

    manager = AlembicManager(url=url, project_root=project, metadata=sa.MetaData())
    manager.init()
    (project / "migrations" / "env.py").write_text(EXISTING_ENV)
    manager.revision("create hero", upgrade_body=CREATE_HERO, downgrade_body='op.drop_table("hero")')
    manager.upgrade()
    fill_heroes(url, count)
    return manager


def fill_heroes(url: str, count: int) -> None:
    """Insert `count` heroes in one executemany; every tenth has no age."""
    engine = sa.create_engine(url)
    rows = [{"name": f"hero {i}", "age": None if i % 10 == 0 else i} for i in range(count)]
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO hero (name, age) VALUES (:name, :age)"), rows)
    engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """What a user would check is unchanged, read with a fresh engine."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            return {
                "tables": table_names(url),
                "columns": {c["name"]: c["nullable"] for c in inspector.get_columns("hero")},
                "indexes": [i["name"] for i in inspector.get_indexes("hero")],
                "rows": connection.execute(sa.text("SELECT COUNT(*) FROM hero")).scalar(),
                "versions": version_rows(url),
            }
    finally:
        engine.dispose()


def test_a_good_chain_passes_and_leaves_the_database_as_it_was(
    heroes_manager: AlembicManager, db_url: str,
) -> None:
    power = heroes_manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER).revision
    index = heroes_manager.revision("index name", upgrade_body=ADD_INDEX, downgrade_body=DROP_INDEX).revision
    before = snapshot(db_url)

    rehearsal = heroes_manager.rehearse()

    assert isinstance(rehearsal, Rehearsal)
    assert rehearsal.ok, rehearsal
    assert rehearsal.down_leaves_no_trace is True and rehearsal.up_again_equals_up is True
    frame = rehearsal.to_frame()
    assert list(frame.columns) == ["revision", "message", "direction", "seconds", "ok", "error", "statements"]
    assert list(zip(frame.revision, frame.direction, strict=True)) == [
        (power, "upgrade"), (index, "upgrade"), (index, "downgrade"), (power, "downgrade"),
        (power, "upgrade"), (index, "upgrade"),
    ]
    assert frame.ok.all() and (frame.statements >= 1).all()
    where = {"sqlite": "copy of the database file", "postgresql": "rolled back (real data; holds its locks",
             "mysql": f"shadow database built from the history ({ROWS} rows copied in)"}
    assert where[sa.make_url(db_url).get_backend_name()] in rehearsal.mode
    assert snapshot(db_url) == before
    assert "power" not in column_names(db_url, "hero")


def test_a_downgrade_that_forgets_an_index_is_reported(heroes_manager: AlembicManager, db_url: str) -> None:
    heroes_manager.revision("index name", upgrade_body=ADD_INDEX, downgrade_body="pass")
    before = snapshot(db_url)

    rehearsal = heroes_manager.rehearse()

    assert rehearsal.ok is False
    assert rehearsal.down_leaves_no_trace is False
    again = rehearsal.steps[-1]  # the index left behind is in the way of the next upgrade
    assert [s.direction for s in rehearsal.steps] == ["upgrade", "downgrade", "upgrade"]
    assert (again.ok, rehearsal.up_again_equals_up) == (False, None)
    left = "+ index ix_hero_name on hero (name)"
    assert any(t.startswith(left) for t in rehearsal.traces), rehearsal.traces
    assert "down leaves a trace" in repr(rehearsal)
    assert "ix_hero_name" in rehearsal._repr_html_()
    assert snapshot(db_url) == before


def test_a_revision_that_fails_on_the_data_is_reported_and_the_database_is_untouched(
    heroes_manager: AlembicManager, db_url: str
) -> None:
    first = heroes_manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER).revision
    strict = heroes_manager.revision(
        "age required", upgrade_body=AGE_NOT_NULL, downgrade_body=AGE_NULL
    ).revision
    before = snapshot(db_url)

    rehearsal = heroes_manager.rehearse()

    assert rehearsal.ok is False
    assert [(s.revision, s.direction, s.ok) for s in rehearsal.steps] == [
        (first, "upgrade", True), (strict, "upgrade", False),
    ]
    assert rehearsal.failed.error
    assert rehearsal.down_leaves_no_trace is None
    assert f"FAILED at {strict}" in repr(rehearsal)
    assert snapshot(db_url) == before


def test_what_a_revision_says_is_escaped_in_the_rehearsal_html(heroes_manager: AlembicManager) -> None:
    heroes_manager.revision("<b>power</b> & more", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER)
    html = heroes_manager.rehearse()._repr_html_()
    assert "&lt;b&gt;power&lt;/b&gt; &amp; more" in html and "<b>power" not in html
    assert "var(--jp-" in html


def test_nothing_pending_rehearses_nothing(heroes_manager: AlembicManager) -> None:
    rehearsal = heroes_manager.rehearse()
    assert rehearsal.ok and rehearsal.steps == []
    assert "No pending revisions" in repr(rehearsal)


def test_postgresql_rehearses_a_concurrent_index_on_a_shadow_database_and_drops_it(project: Path,
                                                                                    tmp_path: Path) -> None:
    from conftest import fresh_database

    with fresh_database("postgresql", tmp_path) as url:
        manager = AlembicManager(url=url, project_root=project, metadata=sa.MetaData())
        manager.init()
        manager.revision("create hero", upgrade_body=CREATE_HERO, downgrade_body='op.drop_table("hero")')
        manager.upgrade()
        concurrent = ('with op.get_context().autocommit_block():\n'
                      '    op.create_index("ix_hero_name", "hero", ["name"], postgresql_concurrently=True)')
        manager.revision("index concurrently", upgrade_body=concurrent, downgrade_body=DROP_INDEX)

        rehearsal = manager.rehearse()

        assert rehearsal.ok, rehearsal
        assert "shadow database" in rehearsal.mode
        assert shadow_databases("postgresql", sa.make_url(url).database) == []
        assert [i["name"] for i in sa.inspect(sa.create_engine(url)).get_indexes("hero")] == []


def shadow_databases(backend: str, database: str) -> list[str]:
    """Throwaway databases of this database still on the server."""
    engine = sa.create_engine(SERVER_URLS[backend])
    query = ("SELECT datname FROM pg_database" if backend == "postgresql"
             else "SELECT schema_name FROM information_schema.schemata")
    with engine.connect() as connection:
        names = connection.execute(sa.text(query)).scalars().all()
    engine.dispose()
    return [name for name in names if name.startswith(f"{database}_rehearse_")]


@pytest.mark.parametrize("backend", ["mysql"])
def test_mariadb_rehearses_on_a_shadow_database_with_the_rows_and_drops_it(heroes_manager: AlembicManager,
                                                                          db_url: str) -> None:
    heroes_manager.revision("age required", upgrade_body=AGE_NOT_NULL, downgrade_body=AGE_NULL)
    rehearsal = heroes_manager.rehearse()
    assert "shadow database" in rehearsal.mode and f"{ROWS} rows copied" in rehearsal.mode
    assert rehearsal.failed is not None  # the copied rows hold NULL ages
    assert shadow_databases("mysql", sa.make_url(db_url).database) == []


@pytest.fixture
def limited_mariadb_user(tmp_path: Path) -> Any:
    """A database and a MariaDB user that may use it but not create databases; both dropped after."""
    need_server("mysql")
    from conftest import fresh_database

    user, password = f"ffm_u_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = sa.create_engine(SERVER_URLS["mysql"], isolation_level="AUTOCOMMIT")
    with fresh_database("mysql", tmp_path) as url:
        database = sa.make_url(url).database
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
            connection.exec_driver_sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'%%'")
        try:
            yield sa.make_url(url).set(username=user, password=password), password
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP USER '{user}'@'%%'")
            admin.dispose()


def test_a_mariadb_user_who_may_not_create_databases_gets_a_clear_message(
    limited_mariadb_user: Any, project: Path
) -> None:
    url, password = limited_mariadb_user
    manager = AlembicManager(url=url.render_as_string(hide_password=False), project_root=project,
                             metadata=sa.MetaData())
    manager.init()
    manager.revision("create hero", upgrade_body=CREATE_HERO, downgrade_body='op.drop_table("hero")')

    with pytest.raises(MigrationError) as raised:
        manager.rehearse()

    message = str(raised.value)
    assert "may not create" in message and url.username in message and "GRANT" in message
    assert password not in message
    assert "\n" not in message


def test_the_magic_shows_the_rehearsal(shell: Any, db_url: str) -> None:
    shell.run_line_magic("migrate", f"init --url {db_url}")
    shell.run_line_magic("migrate", 'revision -m "create hero"')
    result = shell.run_line_magic("migrate", "rehearse")
    assert isinstance(result, Rehearsal) and result.ok
    assert "Rehearsal to head: passed" in repr(result)
    assert version_rows(db_url) == []


# ---------------------------------------------------------------- tables made outside the migrations

HAND_MADE_HERO = "CREATE TABLE hero (id INTEGER PRIMARY KEY, name VARCHAR(50), age INTEGER)"
HAND_MADE_TEAM = ("CREATE TABLE team (id INTEGER PRIMARY KEY, hero_id INTEGER REFERENCES hero (id), "
                  "label VARCHAR(20) NOT NULL DEFAULT 'x')")
PG_SERIAL_TEAM = ("CREATE TABLE team (id SERIAL PRIMARY KEY, hero_id INTEGER REFERENCES hero (id), "
                  "label VARCHAR(20) NOT NULL DEFAULT 'x')")
RAW_CREATE = 'op.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY)")'


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
@pytest.mark.parametrize("applied_change_them", [False, True])
def test_a_database_whose_tables_predate_its_migrations_is_rehearsed_on_a_shadow_that_has_them(
    project: Path, db_url: str, backend: str, applied_change_them: bool,
) -> None:
    """An existing database: hero and team were made by hand before the project used migrations; an
    applied revision (raw SQL) made audit; the pending ones change hero and team (or an applied one
    changed hero already, so that the history cannot build the shadow). The shadow database (an
    env.py of the project's own on PostgreSQL, always on MariaDB) has them."""
    from test_fanout import EXISTING_ENV, execute_all

    execute_all(db_url, HAND_MADE_HERO, PG_SERIAL_TEAM if backend == "postgresql" else HAND_MADE_TEAM,
                "INSERT INTO hero (id, name, age) VALUES (1, 'a', 3)")
    manager = AlembicManager(url=db_url, project_root=project, metadata=sa.MetaData())
    manager.init()
    (project / "migrations" / "env.py").write_text(EXISTING_ENV)
    manager.revision("audit", upgrade_body=RAW_CREATE, downgrade_body='op.drop_table("audit")')
    if applied_change_them:
        manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER)
    manager.upgrade()
    if not applied_change_them:
        manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER)
    manager.revision("team score", upgrade_body='op.add_column("team", sa.Column("score", sa.Integer))',
                     downgrade_body='op.drop_column("team", "score")')
    before = snapshot(db_url)

    rehearsal = manager.rehearse()

    assert rehearsal.ok, rehearsal
    assert [(step.message, step.direction) for step in rehearsal.steps][-1:] == [("team score", "upgrade")], \
        repr(rehearsal)
    if applied_change_them:
        assert "shadow database with the database's 3 tables copied in (the history could not build it: " \
            in rehearsal.mode
    else:
        assert "shadow database built from the history, 2 tables made outside the migrations copied in" \
            in rehearsal.mode
    assert "(1 row copied in)" in rehearsal.mode
    assert snapshot(db_url) == before and "score" not in column_names(db_url, "team")
    assert shadow_databases(backend, sa.make_url(db_url).database) == []


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_rehearsal_with_an_existing_env_py_lists_each_step_and_names_the_one_that_failed(
    project: Path, db_url: str, backend: str,
) -> None:
    manager = own_env_heroes(project, db_url, 20)
    power = manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER).revision
    strict = manager.revision("age required", upgrade_body=AGE_NOT_NULL, downgrade_body=AGE_NULL).revision

    good = manager.rehearse(power)
    failing = manager.rehearse()

    assert [(s.revision, s.direction, s.ok) for s in good.steps] == [
        (power, "upgrade", True), (power, "downgrade", True), (power, "upgrade", True)]
    assert good.ok and "(20 rows copied in)" in good.mode
    # the rows are copied in: two heroes without an age stop the change, as they would for real
    assert [(s.revision, s.ok) for s in failing.steps] == [(power, True), (strict, False)]
    assert not failing.ok and f"FAILED at {strict}" in repr(failing)


def test_a_postgresql_shadow_with_the_rows_copied_in_numbers_new_rows_after_them(
    project: Path, tmp_path: Path,
) -> None:
    from conftest import fresh_database

    with fresh_database("postgresql", tmp_path) as url:
        manager = own_env_heroes(project, url, 30)
        manager.revision("a new hero", upgrade_body="op.execute(\"INSERT INTO hero (name) VALUES ('new')\")",
                         downgrade_body="op.execute(\"DELETE FROM hero WHERE name = 'new'\")")

        rehearsal = manager.rehearse()

        assert rehearsal.ok, rehearsal  # the new hero gets id 31, not 1 (taken by a copied row)
        assert "(30 rows copied in)" in rehearsal.mode
        assert rows_of(url) == 30
        assert shadow_databases("postgresql", sa.make_url(url).database) == []


def rows_of(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM hero")).scalar()
    engine.dispose()
    return count


def test_rows_that_do_not_fit_the_shadow_leave_it_with_the_schema_and_say_why(project: Path,
                                                                             tmp_path: Path) -> None:
    from conftest import execute, fresh_database

    with fresh_database("postgresql", tmp_path) as url:
        manager = own_env_heroes(project, url, 3)
        # changed by hand since: the history says age is an integer
        execute(url, "ALTER TABLE hero ALTER COLUMN age TYPE TEXT", "UPDATE hero SET age = 'old'")
        manager.revision("add power", upgrade_body=ADD_POWER, downgrade_body=DROP_POWER)

        rehearsal = manager.rehearse()

        assert rehearsal.ok, rehearsal
        assert "(schema only, no rows: they could not be copied (" in rehearsal.mode
        assert "old" in rehearsal.mode
        assert rows_of(url) == 3
