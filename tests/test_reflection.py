"""SQLite and MariaDB reflection reused between autogenerate calls: the same answers, never a stale one."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import execute, fresh_database, with_driver

from framefox_magic.manager import AlembicManager

DATABASE_SCHEMA = [
    "CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE, "
    "budget NUMERIC(10, 2) DEFAULT 0)",
    "CREATE TABLE hero (id INTEGER PRIMARY KEY, name VARCHAR(50), team_id INTEGER REFERENCES team (id), "
    "age INTEGER CHECK (age > 0), secret TEXT)",
    "CREATE INDEX ix_hero_name ON hero (name)",
    "CREATE TABLE legacy (id INTEGER PRIMARY KEY)",
    "CREATE VIEW hero_names AS SELECT name FROM hero",
]
# the same without what SQLite's table recreate cannot carry over (a view, unnamed constraints)
PLAIN_SCHEMA = [
    "CREATE TABLE team (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, "
    "budget NUMERIC(10, 2) DEFAULT 0)",
    "CREATE TABLE hero (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50), "
    "team_id INTEGER REFERENCES team (id), age INTEGER, secret TEXT)",
    "CREATE INDEX ix_hero_name ON hero (name)",
    "CREATE TABLE legacy (id INTEGER PRIMARY KEY)",
]


def models(unique_name: bool = True) -> sa.MetaData:
    """Models that differ from DATABASE_SCHEMA in columns, types, indexes and tables."""
    metadata = sa.MetaData()
    sa.Table("team", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(80), nullable=False, unique=unique_name),
             sa.Column("budget", sa.Numeric(10, 2), server_default="0"),
             sa.Column("motto", sa.String(100)))
    sa.Table("hero", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(50)),
             sa.Column("team_id", sa.Integer, sa.ForeignKey("team.id")),
             sa.Column("age", sa.Integer),
             sa.Index("ix_hero_age", "age"))
    sa.Table("power", metadata, sa.Column("id", sa.Integer, primary_key=True))
    return metadata


def build(path: Path, statements: list[str]) -> None:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    build(path, DATABASE_SCHEMA)
    return path


@pytest.fixture
def db_url(database: Path) -> str:
    """The SQLite file with the schema the models drift from (conftest's `manager` targets it)."""
    return f"sqlite:///{database}"


@pytest.fixture
def metadata() -> sa.MetaData:
    return models()


@contextmanager
def statements_run() -> Iterator[list[str]]:
    """Every SQL statement any engine runs inside the block."""
    seen: list[str] = []

    def record(connection, cursor, statement, *rest) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def rows(diff) -> list[tuple]:
    return [(row.op, row.table, row.target, row.detail, row.destructive) for row in diff.rows]


def table_reflections(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("PRAGMA") and "table_xinfo" in s]


def test_repeated_diff_gives_the_same_rows_without_reflecting_the_tables_again(manager, project, database):
    with statements_run() as first_run:
        first = rows(manager.diff())
    with statements_run() as second_run:
        second = rows(manager.diff())

    assert {op for op, *_ in first} >= {"add_column", "drop_column", "alter_column", "create_index",
                                        "drop_index", "create_table", "drop_table"}
    assert second == first
    assert len(table_reflections(first_run)) >= 3  # team, hero, legacy
    assert table_reflections(second_run) == []
    fresh = AlembicManager(f"sqlite:///{database}", project_root=project, metadata=models())
    assert rows(fresh.diff()) == first


def test_a_column_added_by_another_connection_shows_in_the_next_diff(manager, database):
    before = rows(manager.diff())
    build(database, ["ALTER TABLE legacy ADD COLUMN note TEXT", "ALTER TABLE hero ADD COLUMN extra INTEGER"])

    after = rows(manager.diff())

    new_rows = [row[:3] for row in after if row not in before]
    assert new_rows == [("drop_column", "hero", "extra")]


def test_a_database_file_replaced_by_another_schema_is_reflected_anew(manager, database):
    manager.diff()
    database.unlink()
    replaced = [sql.replace("secret TEXT", "secret TEXT, nickname TEXT") for sql in DATABASE_SCHEMA]
    build(database, replaced)  # as many schema changes as before: only the catalog's text differs

    targets = [(op, table, target) for op, table, target, *_ in rows(manager.diff())]

    assert ("drop_column", "hero", "nickname") in targets


def test_revision_after_a_diff_writes_every_change_and_then_nothing_is_left(project, tmp_path):
    database = tmp_path / "plain.db"
    build(database, PLAIN_SCHEMA)
    url = f"sqlite:///{database}"
    manager = AlembicManager(url, project_root=project, metadata=models(unique_name=False))
    manager.init()
    manager.diff()

    written = manager.revision("align with the models")
    source = Path(written.path).read_text()
    manager.upgrade()

    for expected in ("'motto'", "'secret'", "ix_hero_age", "ix_hero_name", "'power'", "'legacy'"):
        assert expected in source
    assert manager.check().rows == []
    assert set(sa.inspect(sa.create_engine(f"sqlite:///{database}")).get_table_names()) == {
        "alembic_version", "team", "hero", "power"
    }


def add_env_option(project: Path, option: str) -> None:
    """Add one `"name": value,` entry at the end of the options env.py passes to context.configure()
    (where a later entry wins over the template's own)."""
    env = project / "migrations" / "env.py"
    anchor = "\n    }\n    enable_postgresql_enums("
    source = env.read_text()
    assert anchor in source
    env.write_text(source.replace(anchor, f"\n        {option}{anchor}"))


def test_a_changed_table_filter_is_honoured(manager, project, database):
    manager.diff()
    add_env_option(project, '"include_name": lambda name, kind, parent: '
                            'not (kind == "table" and name == "legacy"),')

    tables = {table for op, table, *_ in rows(manager.diff())}

    assert "legacy" not in tables
    assert {"team", "hero", "power"} <= tables


# ---------------------------------------------------------------- MariaDB/MySQL and PostgreSQL

MARIADB_SCHEMA = [
    "CREATE TABLE team (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
    "budget NUMERIC(10, 2) DEFAULT 0, CONSTRAINT uq_team_name UNIQUE (name))",
    "CREATE TABLE hero (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), team_id INTEGER, "
    "age INTEGER, secret TEXT, CONSTRAINT fk_hero_team FOREIGN KEY (team_id) REFERENCES team (id), "
    "CONSTRAINT ck_hero_age CHECK (age > 0))",
    "CREATE INDEX ix_hero_name ON hero (name)",
    "CREATE TABLE legacy (id INTEGER NOT NULL PRIMARY KEY)",
    "CREATE VIEW hero_names AS SELECT name FROM hero",
]
# each made from another connection between two comparisons (a tuple: all its statements between the
# same two), applied one after the other
MARIADB_CHANGES = [
    "ALTER TABLE legacy ADD COLUMN note VARCHAR(20)",
    "ALTER TABLE hero DROP COLUMN secret",
    "ALTER TABLE legacy CHANGE note remark VARCHAR(20)",
    "ALTER TABLE hero MODIFY name VARCHAR(60)",
    "ALTER TABLE hero MODIFY name VARCHAR(60) NOT NULL",
    "ALTER TABLE team ALTER budget SET DEFAULT 5",
    "ALTER TABLE hero MODIFY age INTEGER COMMENT 'in years'",
    "ALTER TABLE hero COMMENT = 'people with powers'",
    "CREATE INDEX ix_hero_age ON hero (age)",
    "DROP INDEX ix_hero_name ON hero",
    "ALTER TABLE legacy ADD CONSTRAINT uq_legacy_remark UNIQUE (remark)",
    "ALTER TABLE hero DROP FOREIGN KEY fk_hero_team",
    "ALTER TABLE hero ADD CONSTRAINT fk_hero_team_again FOREIGN KEY (team_id) REFERENCES team (id)",
    "ALTER TABLE hero DROP CONSTRAINT ck_hero_age",
    "ALTER TABLE hero ADD CONSTRAINT ck_hero_age CHECK (age > 1)",
    # a foreign key made again under its name (InnoDB needs two statements), between two comparisons:
    # with another rule; then on another column only (only KEY_COLUMN_USAGE tells that one)
    ("ALTER TABLE hero DROP FOREIGN KEY fk_hero_team_again",
     "ALTER TABLE hero ADD CONSTRAINT fk_hero_team_again FOREIGN KEY (team_id) REFERENCES team (id) "
     "ON DELETE CASCADE"),
    ("ALTER TABLE hero DROP FOREIGN KEY fk_hero_team_again",
     "ALTER TABLE hero ADD CONSTRAINT fk_hero_team_again FOREIGN KEY (age) REFERENCES team (id) "
     "ON DELETE CASCADE"),
    "ALTER TABLE hero DROP CONSTRAINT ck_hero_age, ADD CONSTRAINT ck_hero_years CHECK (age > 1)",
    "ALTER TABLE legacy DROP INDEX uq_legacy_remark, ADD INDEX uq_legacy_remark (remark)",
    "ALTER TABLE team DROP PRIMARY KEY, ADD PRIMARY KEY (id, name)",
    "CREATE TABLE power (id INTEGER NOT NULL PRIMARY KEY)",
    "DROP TABLE legacy",
    "ALTER TABLE team MODIFY name VARCHAR(40) NOT NULL COLLATE utf8mb4_bin",
    "ALTER TABLE team CONVERT TO CHARACTER SET latin1",
    "CREATE OR REPLACE VIEW hero_names AS SELECT name, age FROM hero",
]
POSTGRESQL_SCHEMA = [
    "CREATE TABLE team (id SERIAL PRIMARY KEY, name VARCHAR(40) NOT NULL, "
    "budget NUMERIC(10, 2) DEFAULT 0, CONSTRAINT uq_team_name UNIQUE (name))",
    "CREATE TABLE hero (id SERIAL PRIMARY KEY, name VARCHAR(50), team_id INTEGER, "
    "age INTEGER, secret TEXT, CONSTRAINT fk_hero_team FOREIGN KEY (team_id) REFERENCES team (id), "
    "CONSTRAINT ck_hero_age CHECK (age > 0))",
    "CREATE INDEX ix_hero_name ON hero (name)",
    "CREATE TABLE legacy (id INTEGER PRIMARY KEY)",
    "CREATE VIEW hero_names AS SELECT name FROM hero",
    "CREATE SCHEMA elsewhere",
    "CREATE TABLE elsewhere.place (id INTEGER PRIMARY KEY)",
]
POSTGRESQL_CHANGES = [
    "ALTER TABLE legacy ADD COLUMN note VARCHAR(20)",
    "ALTER TABLE hero DROP COLUMN secret",
    "ALTER TABLE legacy RENAME COLUMN note TO remark",
    "ALTER TABLE hero ALTER COLUMN age TYPE BIGINT",
    "ALTER TABLE hero ALTER COLUMN name SET NOT NULL",
    "ALTER TABLE team ALTER COLUMN budget SET DEFAULT 5",
    "COMMENT ON COLUMN hero.age IS 'in years'",
    "COMMENT ON TABLE hero IS 'people with powers'",
    "CREATE INDEX ix_hero_age ON hero (age)",
    "DROP INDEX ix_hero_name",
    "ALTER TABLE legacy ADD CONSTRAINT uq_legacy_remark UNIQUE (remark)",
    "ALTER TABLE hero DROP CONSTRAINT fk_hero_team",
    "ALTER TABLE hero ADD CONSTRAINT fk_hero_team_again FOREIGN KEY (team_id) REFERENCES team (id)",
    "ALTER TABLE hero DROP CONSTRAINT ck_hero_age",
    "ALTER TABLE hero ADD CONSTRAINT ck_hero_age CHECK (age > 1)",
    "CREATE TABLE power (id INTEGER PRIMARY KEY)",
    "DROP TABLE legacy",
    'ALTER TABLE team ALTER COLUMN name TYPE VARCHAR(40) COLLATE "C"',
    "CREATE OR REPLACE VIEW hero_names AS SELECT name, age FROM hero",
    "CREATE TYPE mood AS ENUM ('sad')",
    "ALTER TABLE hero ADD COLUMN mood mood",
    "ALTER TYPE mood ADD VALUE 'happy'",
    "ALTER TABLE hero ADD COLUMN place_id INTEGER REFERENCES elsewhere.place (id)",
    "ALTER TABLE elsewhere.place RENAME TO spot",  # only the name hero's foreign key shows changes
    "ALTER INDEX ix_hero_age RENAME TO ix_hero_years",
]
SERVERS = {  # backend -> (its schema, its changes, what only a reflection of the tables runs)
    "mysql": (MARIADB_SCHEMA, MARIADB_CHANGES, "SHOW CREATE TABLE"),
    "postgresql": (POSTGRESQL_SCHEMA, POSTGRESQL_CHANGES, "pg_attribute.attname AS name"),
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> str:
    """MariaDB/MySQL, then PostgreSQL."""
    return request.param


@pytest.fixture
def server_url(server: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(server, tmp_path) as url:
        execute(url, *SERVERS[server][0])
        yield url


@pytest.fixture
def server_manager(server_url: str, project: Path) -> AlembicManager:
    manager = AlembicManager(server_url, project_root=project, metadata=models())
    manager.init()
    add_env_option(project, '"compare_server_default": True,')
    # on PostgreSQL a comparison that creates the version table in its transaction reflects anew
    manager.create_version_table()
    return manager


def server_reflections(server: str, statements: list[str]) -> list[str]:
    marker = SERVERS[server][2]
    return [s for s in statements if marker.lower() in s.lower()]


def test_server_repeated_diff_gives_the_same_rows_without_reflecting_the_tables_again(
        server, server_manager, server_url, project):
    with statements_run() as first_run:
        first = rows(server_manager.diff())
    with statements_run() as second_run:
        second = rows(server_manager.diff())

    assert {op for op, *_ in first} >= {"add_column", "drop_column", "alter_column", "create_index",
                                        "drop_index", "create_table", "drop_table"}
    assert second == first
    assert server_reflections(server, first_run)
    assert server_reflections(server, second_run) == []
    fresh = AlembicManager(server_url, project_root=project, metadata=models())
    assert rows(fresh.diff()) == first


def test_server_every_kind_of_schema_change_from_another_connection_shows_in_the_next_diff(
        server, server_manager, server_url, project):
    before = rows(server_manager.diff())
    fresh = AlembicManager(server_url, project_root=project, metadata=models())
    seen_changes = 0
    for change in SERVERS[server][1]:
        execute(server_url, *((change,) if isinstance(change, str) else change))
        with statements_run() as run:
            after = rows(server_manager.diff())

        assert server_reflections(server, run), f"not reflected again after: {change}"
        fresh._reflection.__init__()  # the reference: a comparison that reflects everything
        assert after == rows(fresh.diff()), change
        seen_changes += after != before
        before = after
    assert seen_changes >= 14  # the rest (collations, views, enum values...) alembic does not compare


def test_server_a_column_added_by_another_process_shows_in_the_next_diff(server_manager, server_url):
    before = rows(server_manager.diff())
    script = ("import sqlalchemy as sa, sys; engine = sa.create_engine(sys.argv[1]); "
              "connection = engine.connect(); "
              "connection.exec_driver_sql('ALTER TABLE hero ADD COLUMN extra INTEGER'); "
              "connection.commit(); connection.close()")
    subprocess.run([sys.executable, "-c", script, with_driver(server_url)], check=True)

    after = rows(server_manager.diff())

    assert [row[:3] for row in after if row not in before] == [("drop_column", "hero", "extra")]


def test_server_a_change_in_another_database_keeps_the_reflection(server, server_manager, tmp_path):
    first = rows(server_manager.diff())
    with fresh_database(server, tmp_path) as other_url:
        execute(other_url, *SERVERS[server][0], "ALTER TABLE hero ADD COLUMN extra INTEGER",
                "DROP TABLE legacy")
        with statements_run() as run:
            second = rows(server_manager.diff())

    assert second == first
    assert server_reflections(server, run) == []


def test_postgresql_a_change_in_another_schema_leaves_the_diff_right(tmp_path, project):
    with fresh_database("postgresql", tmp_path) as url:
        execute(url, *POSTGRESQL_SCHEMA)
        manager = AlembicManager(url, project_root=project, metadata=models())
        manager.init()
        manager.create_version_table()
        first = rows(manager.diff())
        execute(url, "ALTER TABLE elsewhere.place ADD COLUMN note TEXT",
                "CREATE TABLE elsewhere.more (id INT)")

        assert rows(manager.diff()) == first


def test_server_revision_after_a_diff_writes_every_change_and_then_nothing_is_left(server_manager, project):
    server_manager.diff()

    written = server_manager.revision("align with the models", no_rename=True)
    server_manager.upgrade()

    source = Path(written.path).read_text()
    for expected in ("'motto'", "'secret'", "ix_hero_age", "ix_hero_name", "'power'", "'legacy'"):
        assert expected in source
    fresh = AlembicManager(server_manager.url, project_root=project, metadata=models())
    left = rows(server_manager.diff())
    assert left == rows(fresh.diff())
    # all that may be left is alembic comparing the server's default '0.00' with the model's '0'
    assert {row[:3] for row in left} <= {("alter_column", "team", "budget")}


# ---------------------------------------------------------------- PostgreSQL: sequence owners


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def serial_tables(count: int, default: str = "new") -> sa.MetaData:
    """Models of tables whose id and counter columns are SERIAL in the database."""
    metadata = sa.MetaData()
    for index in range(count):
        sa.Table(f"item{index}", metadata,
                 sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("counter", sa.Integer, nullable=False),
                 sa.Column("state", sa.String(10), server_default=default))
    return metadata


def create_serial_tables(url: str, count: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for index in range(count):
            connection.execute(sa.text(
                f"CREATE TABLE item{index} (id SERIAL PRIMARY KEY, counter SERIAL, "
                "state VARCHAR(10) DEFAULT 'new')"
            ))
    engine.dispose()


def test_postgresql_serial_columns_are_recognised_from_one_owner_query(postgresql_url, project):
    create_serial_tables(postgresql_url, 5)
    manager = AlembicManager(postgresql_url, project_root=project, metadata=serial_tables(5))
    manager.init()
    add_env_option(project, '"compare_server_default": True,')

    with statements_run() as seen:
        assert manager.check().rows == []  # no SERIAL default reported as a change

    assert len([statement for statement in seen if "refobjsubid" in statement]) == 1
    manager.metadata = serial_tables(5, default="old")
    changed = {(row.op, row.table, row.target) for row in manager.diff().rows}
    assert changed == {("alter_column", f"item{index}", "state") for index in range(5)}


def alembic_rows(url: str, metadata: sa.MetaData, **options) -> list[tuple]:
    """What alembic's own autogenerate finds, without this project's reflection reuse."""
    from alembic.autogenerate import produce_migrations
    from alembic.runtime.migration import MigrationContext

    from framefox_magic.diff import rows_from_ops

    engine = sa.create_engine(with_driver(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, **options})
            operations = produce_migrations(context, metadata).upgrade_ops.ops
    finally:
        engine.dispose()
    diff_rows = rows_from_ops(operations, dialect="postgresql")
    return sorted((row.op, row.table, row.target, row.detail, row.destructive) for row in diff_rows)


def unmarked(diff_rows: list[tuple]) -> list[tuple]:
    """The rows without the rename hints this project adds to alembic's operations."""
    return [(op, table, target, re.sub(r"(; )?could be a rename: .*", "", detail), *rest)
            for op, table, target, detail, *rest in diff_rows]


def test_postgresql_over_100_tables_every_table_is_read_at_once_and_the_diff_is_alembics(
        postgresql_url, project):
    # above 100 compared tables that are most of the schema, the reflection reads every table
    # unfiltered, as alembic's own pre-cache does; a table left out by include_name stays out
    create_serial_tables(postgresql_url, 120)
    metadata = serial_tables(118, default="old")
    manager = AlembicManager(postgresql_url, project_root=project, metadata=metadata)
    manager.init()
    manager.create_version_table()
    add_env_option(project, '"compare_server_default": True,')
    add_env_option(project, '"include_name": lambda name, kind, parent: name != "item119",')
    options = {"compare_server_default": True, "include_name": lambda name, kind, parent: name != "item119"}

    first = sorted(unmarked(rows(manager.diff())))
    assert first == alembic_rows(postgresql_url, metadata, **options)
    execute(postgresql_url, "ALTER TABLE item3 ADD COLUMN note TEXT", "DROP TABLE item117")
    second = sorted(unmarked(rows(manager.diff())))

    assert {(op, table) for op, table, *_ in first} == {
        *{("alter_column", f"item{index}") for index in range(118)}, ("drop_table", "item118")}
    assert {("drop_column", "item3"), ("create_table", "item117")} <= {row[:2] for row in second}
    assert second == alembic_rows(postgresql_url, metadata, **options)


def test_postgresql_a_sequence_default_the_column_does_not_own_is_compared(postgresql_url, project):
    engine = sa.create_engine(postgresql_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SEQUENCE ticket_numbers"))
        connection.execute(sa.text(
            "CREATE TABLE ticket (id SERIAL PRIMARY KEY, number INTEGER DEFAULT nextval('ticket_numbers'), "
            "copy INTEGER DEFAULT nextval('ticket_id_seq'))"
        ))
    engine.dispose()
    metadata = sa.MetaData()
    sa.Table("ticket", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("number", sa.Integer), sa.Column("copy", sa.Integer))
    manager = AlembicManager(postgresql_url, project_root=project, metadata=metadata)
    manager.init()
    add_env_option(project, '"compare_server_default": True,')

    rows = manager.diff().rows

    assert [(row.op, row.table, row.target, row.detail) for row in rows] == [
        ("alter_column", "ticket", "number", "server default None"),
        ("alter_column", "ticket", "copy", "server default None"),  # its sequence belongs to id
    ]


# ---------------------------------------------------------------- the extension


def plugin_is_registered() -> bool:
    from alembic.runtime.plugins import Plugin
    from alembic.util import CommandError, PriorityDispatcher

    from framefox_magic.reflection import PLUGIN_NAME

    try:
        Plugin.populate_autogenerate_priority_dispatch(PriorityDispatcher(), [PLUGIN_NAME])
    except CommandError:
        return False
    return True


def test_a_repeated_diff_in_a_shell_is_reused_and_unload_ext_takes_the_plugin_away(shell, tmp_path):
    database = tmp_path / "app.db"
    build(database, PLAIN_SCHEMA)
    shell.user_ns["models"] = models(unique_name=False)
    shell.run_cell(f"%migrate init --url sqlite:///{database}").raise_error()
    shell.run_cell("%config MigrateMagics.metadata = '__main__:models'").raise_error()

    first = shell.run_cell("%migrate diff")
    with statements_run() as second_run:
        second = shell.run_cell("%migrate diff")

    assert rows(second.result) == rows(first.result) != []
    assert table_reflections(second_run) == []
    assert plugin_is_registered()
    shell.run_cell("%unload_ext framefox_magic").raise_error()
    assert not plugin_is_registered()
