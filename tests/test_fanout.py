"""One migration history over many targets: tenant schemas, databases listed in a file, SQLite files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import SERVER_URLS, fresh_database, need_server
from IPython.core.error import UsageError

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError

HEAD = "r3"
REVISIONS = (
    ("r1", "create item",
     "op.create_table('item', sa.Column('id', sa.Integer, primary_key=True))",
     "op.drop_table('item')"),
    ("r2", "customer email required",
     "with op.batch_alter_table('customer') as batch:\n"
     "    batch.alter_column('email', existing_type=sa.String(50), nullable=False)",
     "with op.batch_alter_table('customer') as batch:\n"
     "    batch.alter_column('email', existing_type=sa.String(50), nullable=True)"),
    ("r3", "create note",
     "op.create_table('note', sa.Column('id', sa.Integer, primary_key=True), sa.Column('body', sa.Text))\n"
     "op.create_index('ix_note_id', 'note', ['id'])",
     "op.drop_index('ix_note_id', 'note')\nop.drop_table('note')"),
)


def make_project(root: Path, url: str) -> AlembicManager:
    """A project whose history creates a table, makes a column NOT NULL, creates another table."""
    manager = AlembicManager(url=url, migrations_dir=str(root / "migrations"), project_root=str(root))
    manager.init()
    for rev_id, message, upgrade, downgrade in REVISIONS:
        manager.revision(message, autogenerate=False, rev_id=rev_id, upgrade_body=upgrade,
                         downgrade_body=downgrade)
    return manager


def add_customers(connection: sa.Connection, schema: str | None, email: str | None = "a@b.c") -> None:
    """The tenant's existing data: a customer table with one row (a NULL email breaks r2)."""
    prefix = f"{schema}." if schema else ""
    connection.execute(sa.text(f"CREATE TABLE {prefix}customer (id INTEGER PRIMARY KEY, email VARCHAR(50))"))
    connection.execute(sa.text(f"INSERT INTO {prefix}customer VALUES (1, :email)"), {"email": email})


def versions_in(url: str, schema: str | None = None) -> list[str]:
    """The version table of a target, read with a fresh engine."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version", schema=schema):
                return []
            table = f"{schema}.alembic_version" if schema else "alembic_version"
            return sorted(connection.execute(sa.text(f"SELECT version_num FROM {table}")).scalars())
    finally:
        engine.dispose()


def tables_in(url: str, schema: str | None = None) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def summary(result) -> list[tuple]:
    return [(row.state, row.before, row.after, row.ok) for row in result]


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
def tenants(pg_url: str, tmp_path: Path) -> AlembicManager:
    """19 tenant schemas with customers; tenant_07 has a customer without an email."""
    add_tenant_schemas(pg_url, [f"tenant_{number:02d}" for number in range(19)], without_email="tenant_07")
    return make_project(tmp_path / "project", pg_url)


def add_tenant_schemas(pg_url: str, names: list[str], without_email: str) -> None:
    """A schema per name with a customer table; the one named `without_email` has a customer without one."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        for name in names:
            connection.execute(sa.text(f"CREATE SCHEMA {name}"))
            add_customers(connection, name, None if name == without_email else "a@b.c")
    engine.dispose()


def test_status_over_tenant_schemas_says_which_are_behind(tenants: AlembicManager) -> None:
    result = tenants.for_targets("schemas:tenant_%").status()
    assert [row.target for row in result] == [f"tenant_{n:02d}" for n in range(19)]
    assert {(row.state, row.pending, row.after) for row in result} == {("behind", 3, ())}
    frame = result.to_frame()
    assert list(frame.columns[:4]) == ["target", "state", "before", "after"]
    assert "19 behind" in result._repr_html_()


def test_upgrade_keeps_going_past_a_failing_tenant_then_resumes(tenants: AlembicManager, pg_url: str) -> None:
    fanout = tenants.for_targets("schemas:tenant_%", jobs=4, keep_going=True)
    result = fanout.upgrade()
    rows = {row.target: row for row in result}
    assert rows["tenant_07"].state == "failed" and "r2" in rows["tenant_07"].error
    assert (rows["tenant_07"].before, rows["tenant_07"].after) == ((), ("r1",))
    assert all(rows[t].state == "upgraded" and rows[t].after == (HEAD,) for t in rows if t != "tenant_07")
    for number in range(19):  # read back: each tenant's own version table and tables
        schema = f"tenant_{number:02d}"
        assert versions_in(pg_url, schema) == (["r1"] if number == 7 else [HEAD])
    assert tables_in(pg_url, "tenant_00") == {"alembic_version", "customer", "item", "note"}
    assert tables_in(pg_url, "public") == set()
    assert not result.ok and result.failures_first()[0].target == "tenant_07"

    engine = sa.create_engine(pg_url)  # a tenant arrives; the broken one gets fixed
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA tenant_19"))
        add_customers(connection, "tenant_19")
        connection.execute(sa.text("UPDATE tenant_07.customer SET email = 'fixed@b.c'"))
    engine.dispose()
    again = tenants.for_targets("schemas:tenant_%", jobs=4).upgrade()
    states = {row.target: row.state for row in again}
    assert states.pop("tenant_19") == "upgraded" and states.pop("tenant_07") == "upgraded"
    assert set(states.values()) == {"already at goal"}
    assert all(versions_in(pg_url, f"tenant_{n:02d}") == [HEAD] for n in range(20))


def test_failure_without_keep_going_starts_no_new_target(tenants: AlembicManager, pg_url: str) -> None:
    result = tenants.for_targets("schemas:tenant_%", jobs=1).upgrade()
    states = [row.state for row in result]
    assert states == ["upgraded"] * 7 + ["failed"] + ["not run"] * 11
    assert "tenant_07" in result.rows[8].error
    assert versions_in(pg_url, "tenant_08") == [] and "item" not in tables_in(pg_url, "tenant_08")
    assert result.counts == {"failed": 1, "not run": 11, "upgraded": 7}


def test_parallel_run_gives_the_same_result_as_one_at_a_time(pg_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        for group in ("a", "b"):
            for number in range(6):
                connection.execute(sa.text(f"CREATE SCHEMA {group}_{number}"))
                add_customers(connection, f"{group}_{number}", None if number == 4 else "x@y.z")
    engine.dispose()
    manager = make_project(tmp_path / "project", pg_url)
    one_at_a_time = manager.for_targets("schemas:a_%", jobs=1, keep_going=True).upgrade()
    parallel = manager.for_targets("schemas:b_%", jobs=3, keep_going=True).upgrade()
    assert summary(parallel) == summary(one_at_a_time)
    recorded = {group: [versions_in(pg_url, f"{group}_{n}") for n in range(6)] for group in "ab"}
    assert recorded["a"] == recorded["b"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupted_run_leaves_each_tenant_at_a_revision_it_records(tenants: AlembicManager,
                                                                     pg_url: str, jobs: int) -> None:
    def interrupt_after_three(done: int, total: int, row) -> None:
        if done == 3:
            raise KeyboardInterrupt

    result = tenants.for_targets("schemas:tenant_%", jobs=jobs, keep_going=True).upgrade(
        on_target=interrupt_after_three)
    assert result.interrupted and not result.ok
    assert "not run" in result.counts
    expected_tables = {(): {"customer"}, ("r1",): {"customer", "item"},
                       ("r3",): {"customer", "item", "note"}}
    for row in result:
        recorded = tuple(versions_in(pg_url, row.target))
        assert recorded == row.after
        assert tables_in(pg_url, row.target) - {"alembic_version"} == expected_tables[recorded]
    resumed = tenants.for_targets("schemas:tenant_%", jobs=2, keep_going=True).upgrade()
    assert {row.target: row.after for row in resumed if row.ok} == {
        f"tenant_{n:02d}": (HEAD,) for n in range(19) if n != 7
    }


def test_downgrade_over_tenants_goes_down_in_each_schema(tenants: AlembicManager, pg_url: str) -> None:
    tenants.for_targets("schemas:tenant_1%", jobs=2).upgrade()
    result = tenants.for_targets("schemas:tenant_1%", jobs=2).downgrade("r1")
    assert {(row.state, row.after) for row in result} == {("downgraded", ("r1",))}
    assert tables_in(pg_url, "tenant_12") == {"alembic_version", "customer", "item"}


# ---------------------------------------------------------------- databases and files


@pytest.fixture
def sqlite_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "devices"
    folder.mkdir()
    files = [folder / f"device_{n}.db" for n in range(10)]
    for file in files:
        engine = sa.create_engine(f"sqlite:///{file}")
        with engine.begin() as connection:
            add_customers(connection, None)
        engine.dispose()
    return files


@pytest.fixture
def mariadb_urls() -> Iterator[list[str]]:
    """Five MariaDB databases with random names, each with customers; dropped afterwards."""
    need_server("mysql")
    admin_url = sa.make_url(SERVER_URLS["mysql"])
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"ffm_{uuid.uuid4().hex[:10]}" for _ in range(5)]
    urls = [admin_url.set(database=name).render_as_string(hide_password=False) for name in names]
    with admin.connect() as connection:
        for name in names:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        for url in urls:
            engine = sa.create_engine(url)
            with engine.begin() as connection:
                add_customers(connection, None)
            engine.dispose()
        yield urls
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def test_sqlite_glob_upgrades_every_file_then_reports_them_up_to_date(sqlite_files: list[Path],
                                                                       tmp_path: Path) -> None:
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    with pytest.raises(MigrationError, match="No revision 'r9'"):
        manager.for_targets(f"sqlite:{tmp_path}/devices/*.db").upgrade("r9")
    result = manager.for_targets(f"sqlite:{tmp_path}/devices/*.db", jobs=3).upgrade()
    assert [row.target for row in result] == [str(file) for file in sqlite_files]
    assert {row.state for row in result} == {"upgraded"}
    assert all(versions_in(f"sqlite:///{file}") == [HEAD] for file in sqlite_files)
    status = manager.for_targets(f"sqlite:{tmp_path}/devices/*.db").status()
    assert {(row.state, row.pending) for row in status} == {("up to date", 0)}
    again = manager.for_targets(f"sqlite:{tmp_path}/devices/*.db", jobs=3).upgrade()  # run again: resumes
    assert again.ok and {row.state for row in again} == {"already at goal"}


def test_file_of_urls_mixes_mariadb_and_sqlite(mariadb_urls: list[str], sqlite_files: list[Path],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVICE_DIR", str(tmp_path / "devices"))
    lines = ["# customers on MariaDB", *mariadb_urls, "", "# two devices",
             "sqlite:///${DEVICE_DIR}/device_0.db", "sqlite:///${DEVICE_DIR}/device_1.db"]
    (tmp_path / "targets.txt").write_text("\n".join(lines) + "\n")
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    result = manager.for_targets(f"file:{tmp_path / 'targets.txt'}", jobs=3).upgrade()
    assert len(result) == 7 and result.ok
    assert all(versions_in(url) == [HEAD] for url in mariadb_urls)
    assert tables_in(mariadb_urls[0]) == {"alembic_version", "customer", "item", "note"}
    assert versions_in(f"sqlite:///{sqlite_files[1]}") == [HEAD]
    assert versions_in(f"sqlite:///{sqlite_files[2]}") == []


def test_a_file_naming_an_unset_variable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "targets.txt").write_text("sqlite:///${NOT_SET_ANYWHERE_123}/a.db\n")
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    with pytest.raises(MigrationError, match=r"NOT_SET_ANYWHERE_123\} is not set"):
        manager.for_targets(f"file:{tmp_path / 'targets.txt'}")
    with pytest.raises(MigrationError, match="Unknown kind of targets"):
        manager.for_targets("tenants:x")
    with pytest.raises(MigrationError, match="No targets match"):
        manager.for_targets(f"sqlite:{tmp_path}/nothing/*.db")


# ---------------------------------------------------------------- downgrade -N where some are at base


def below_base(at: str, can: int, asked: int) -> str:
    """What a target that cannot go down ASKED revisions says."""
    return (f"Cannot downgrade {asked} revisions: the database is at {at}, {can} revision"
            f"{'' if can == 1 else 's'} above base (`downgrade -{can}` or `downgrade base` takes it there).")


def test_downgrade_minus_one_over_sqlite_files_leaves_those_at_base_unchanged(sqlite_files: list[Path],
                                                                            tmp_path: Path) -> None:
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    manager.for_targets(f"sqlite:{tmp_path}/devices/device_[0-4].db").upgrade()

    result = manager.for_targets(f"sqlite:{tmp_path}/devices/*.db", jobs=3).downgrade("-1")

    assert result.ok and result.counts == {"downgraded": 5, "already at goal": 5}
    assert summary(result) == [("downgraded", (HEAD,), ("r2",), True)] * 5 + [
        ("already at goal", (), (), True)] * 5
    assert [versions_in(f"sqlite:///{file}") for file in sqlite_files] == [["r2"]] * 5 + [[]] * 5
    assert tables_in(f"sqlite:///{sqlite_files[7]}") == {"customer"}
    backups = {path.name.split("-")[0] for path in (tmp_path / "devices" / ".backups").iterdir()}
    assert backups == {f"device_{n}" for n in range(5)}  # nothing copied for the files left as they were


def test_downgrade_further_than_base_over_sqlite_files_fails_only_where_it_cannot(sqlite_files: list[Path],
                                                                               tmp_path: Path) -> None:
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    manager.for_targets(f"sqlite:{tmp_path}/devices/device_[0-1].db").upgrade()
    manager.for_targets(f"sqlite:{tmp_path}/devices/device_2.db").upgrade("r1")

    spec = f"sqlite:{tmp_path}/devices/device_[0-3].db"
    result = manager.for_targets(spec, keep_going=True).downgrade("-2")

    rows = {Path(row.target).name: row for row in result}
    assert [rows[f"device_{n}.db"].state for n in range(4)] == ["downgraded", "downgraded", "failed",
                                                               "already at goal"]
    assert rows["device_2.db"].error == below_base("r1", 1, 2)
    assert [versions_in(f"sqlite:///{file}") for file in sqlite_files[:4]] == [["r1"], ["r1"], ["r1"], []]
    assert not result.ok and result.failures_first()[0] is rows["device_2.db"]


@pytest.mark.parametrize("env", ["init's", "existing"])
def test_downgrade_minus_one_over_tenants_leaves_those_at_base_unchanged(pg_url: str, tmp_path: Path,
                                                                         env: str) -> None:
    add_tenant_schemas(pg_url, [f"shop_{n}" for n in range(4)], without_email="none")
    manager = make_project(tmp_path / "project", pg_url)
    for name in ("shop_0", "shop_1"):
        manager.for_targets(f"schemas:{name}").upgrade()
    manager.for_targets("schemas:shop_2").upgrade("r1")
    if env == "existing":  # alembic runs it for each target, in worker processes
        (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)

    result = manager.for_targets("schemas:shop_%", jobs=2).downgrade("-1")

    assert summary(result) == [("downgraded", (HEAD,), ("r2",), True)] * 2 + [
        ("downgraded", ("r1",), (), True), ("already at goal", (), (), True)]
    assert result.ok
    assert [versions_in(pg_url, f"shop_{n}") for n in range(4)] == [["r2"], ["r2"], [], []]
    assert tables_in(pg_url, "shop_0") == {"alembic_version", "customer", "item"}
    assert tables_in(pg_url, "shop_3") == {"customer"}

    again = manager.for_targets("schemas:shop_%", jobs=2, keep_going=True).downgrade("-3")
    assert [(row.state, row.after, row.error) for row in again] == [
        ("failed", ("r2",), below_base("r2", 2, 3))] * 2 + [("already at goal", (), "")] * 2
    assert [versions_in(pg_url, f"shop_{n}") for n in range(4)] == [["r2"], ["r2"], [], []]


def test_downgrade_minus_one_over_mariadb_databases_leaves_those_at_base_unchanged(
        mariadb_urls: list[str], tmp_path: Path) -> None:
    (tmp_path / "targets.txt").write_text("\n".join(mariadb_urls[:4]) + "\n")
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    (tmp_path / "first.txt").write_text(mariadb_urls[0] + "\n")
    (tmp_path / "second.txt").write_text(mariadb_urls[1] + "\n")
    manager.for_targets(f"file:{tmp_path}/first.txt").upgrade()
    manager.for_targets(f"file:{tmp_path}/second.txt").upgrade("r1")

    result = manager.for_targets(f"file:{tmp_path}/targets.txt", jobs=2, keep_going=True).downgrade("-2")

    assert [(row.state, row.after, row.error) for row in result] == [
        ("downgraded", ("r1",), ""), ("failed", ("r1",), below_base("r1", 1, 2)),
        ("already at goal", (), ""), ("already at goal", (), "")]
    assert [versions_in(url) for url in mariadb_urls[:4]] == [["r1"], ["r1"], [], []]
    assert tables_in(mariadb_urls[0]) == {"alembic_version", "customer", "item"}
    assert tables_in(mariadb_urls[2]) == {"customer"}


# ---------------------------------------------------------------- the magic


def devices_downgraded_without_yes(shell, tmp_path: Path, upgraded: str, goal: str) -> str:
    """The project in the current folder, the devices matching `upgraded` at head; `downgrade GOAL`
    over every device without --yes is refused. The spec of every device."""
    make_project(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}")
    spec = f"sqlite:{tmp_path}/devices/*.db"
    shell.run_line_magic("migrate", f"upgrade --targets sqlite:{tmp_path}/devices/{upgraded} -j 2")
    with pytest.raises(UsageError, match=r"would change 10 targets: add --yes"):
        shell.run_line_magic("migrate", f"downgrade {goal} --targets {spec}")
    return spec


def test_magic_downgrade_over_targets_needs_yes_and_says_how_many(shell, sqlite_files: list[Path],
                                                                  tmp_path: Path) -> None:
    spec = devices_downgraded_without_yes(shell, tmp_path, "*.db", "base")
    assert versions_in(f"sqlite:///{sqlite_files[0]}") == [HEAD]
    result = shell.run_line_magic("migrate", f"downgrade base --targets {spec} --yes")
    assert result.counts == {"downgraded": 10}
    assert versions_in(f"sqlite:///{sqlite_files[0]}") == []


def test_magic_downgrade_minus_one_over_targets_some_at_base_needs_yes_and_fails_none(
        shell, sqlite_files: list[Path], tmp_path: Path) -> None:
    spec = devices_downgraded_without_yes(shell, tmp_path, "device_[0-2].db", "-1")
    assert versions_in(f"sqlite:///{sqlite_files[0]}") == [HEAD]

    result = shell.run_line_magic("migrate", f"downgrade -1 --targets {spec} --yes")

    assert result.ok and result.counts == {"downgraded": 3, "already at goal": 7}
    html = result._repr_html_()
    assert "failed" not in html and "didn" not in html
    assert [versions_in(f"sqlite:///{file}") for file in sqlite_files] == [["r2"]] * 3 + [[]] * 7


def test_magic_status_over_targets_shows_failures_first(shell, sqlite_files: list[Path],
                                                        tmp_path: Path) -> None:
    make_project(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}")
    (tmp_path / "devices" / "device_5.db").write_text("not a database")
    result = shell.run_line_magic("migrate", f"status --targets sqlite:{tmp_path}/devices/*.db")
    html = result._repr_html_()
    assert "1 failed" in html and "9 behind" in html
    assert html.index("device_5.db") < html.index("device_0.db")
    assert result.failures_first()[0].target.endswith("device_5.db")


def test_files_named_by_a_relative_glob_are_shown_as_the_glob_names_them(shell, tmp_path: Path) -> None:
    make_project(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}")
    (Path.cwd() / "devices").mkdir()
    for number in range(2):
        sa.create_engine(f"sqlite:///devices/device_{number}.db").connect().close()
    result = shell.run_line_magic("migrate", "status --targets sqlite:devices/*.db")
    assert [row.target for row in result] == ["devices/device_0.db", "devices/device_1.db"]
    assert str(Path.cwd()) not in result._repr_html_()


# ---------------------------------------------------------------- env.py with alembic itself


def test_plain_alembic_with_x_tenant_migrates_that_schema(pg_url: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA acme"))
        add_customers(connection, "acme")
    engine.dispose()
    root = tmp_path / "project"
    make_project(root, pg_url)
    config = Config(str(root / "alembic.ini"), cmd_opts=None)
    config.set_main_option("script_location", str(root / "migrations"))
    config.set_main_option("sqlalchemy.url", pg_url)
    config.cmd_opts = type("Options", (), {"x": ["tenant=acme"]})()
    command.upgrade(config, "head")
    assert versions_in(pg_url, "acme") == [HEAD]
    assert tables_in(pg_url, "acme") == {"alembic_version", "customer", "item", "note"}
    assert tables_in(pg_url, "public") == set()


EXISTING_ENV = '''
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run(connection):
    tenant = (config.attributes.get("tenant_schema")
              or context.get_x_argument(as_dictionary=True).get("tenant"))
    if tenant:
        quoted = connection.dialect.identifier_preparer.quote(tenant)
        connection.exec_driver_sql(f"SET search_path TO {quoted}, public")
        connection.commit()
        connection = connection.execution_options(schema_translate_map={None: tenant})
    context.configure(connection=connection, version_table_schema=tenant,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


connectable = config.attributes.get("connection")
if connectable is not None:
    run(connectable)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
'''


def test_an_existing_env_py_with_the_documented_lines_migrates_tenants(pg_url: str,
                                                                          tmp_path: Path) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        for schema in ("shop_a", "shop_b", "public"):
            if schema != "public":
                connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
            add_customers(connection, schema)
    engine.dispose()
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)
    result = manager.for_targets("schemas:shop_%", jobs=2).upgrade()
    assert {(row.target, row.after) for row in result} == {("shop_a", (HEAD,)), ("shop_b", (HEAD,))}
    assert tables_in(pg_url, "shop_b") == {"alembic_version", "customer", "item", "note"}
    status = manager.status()  # the default schema, through the same env.py (no tenant, no -x)
    assert status.current == () and len(status.pending) == 3


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_existing_env_py_with_the_documented_lines_migrates_tenants_with_any_jobs(
        pg_url: str, tmp_path: Path, jobs: int) -> None:
    add_tenant_schemas(pg_url, ["shop_a", "shop_b"], without_email="none")  # nothing in public
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)
    result = manager.for_targets("schemas:shop_%", jobs=jobs).upgrade()
    assert [(row.target, row.state, row.after, row.error) for row in result] == [
        ("shop_a", "upgraded", (HEAD,), ""), ("shop_b", "upgraded", (HEAD,), "")]
    assert [versions_in(pg_url, schema) for schema in ("shop_a", "shop_b")] == [[HEAD], [HEAD]]
    assert tables_in(pg_url, "shop_a") == {"alembic_version", "customer", "item", "note"}
    assert tables_in(pg_url, "public") == set()


def test_an_existing_env_py_names_the_revision_that_failed_on_a_tenant(pg_url: str, tmp_path: Path) -> None:
    add_tenant_schemas(pg_url, ["shop_a", "shop_b"], without_email="shop_b")  # r2 fails on shop_b
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)
    result = manager.for_targets("schemas:shop_%", jobs=1, keep_going=True).upgrade()
    failed = result.failures_first()[0]
    assert (failed.target, failed.state, failed.after) == ("shop_b", "failed", ("r1",))
    assert failed.error.startswith("Revision r2 (customer email required) failed:")
    assert [versions_in(pg_url, schema) for schema in ("shop_a", "shop_b")] == [[HEAD], ["r1"]]


def test_the_many_target_options_complete_and_show_in_help() -> None:
    from framefox_magic import commands

    assert commands.completions("%migrate upgrade --ta", lambda: []) == ["--targets"]
    assert commands.completions("%migrate downgrade -1 --keep", lambda: []) == ["--keep-going"]
    with pytest.raises(commands.HelpShown) as shown:
        commands.parse("status --help")
    assert "--targets" in shown.value.text and "--jobs" in shown.value.text
    assert "--keep-going" not in shown.value.text


# ---------------------------------------------------------------- the project's version table


def record_version(url: str, table: str, revision: str, schema: str | None = None) -> None:
    """Put a target at `revision` in a version table of that name, as the project's env.py would."""
    name = f"{schema}.{table}" if schema else table
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        connection.execute(sa.text(f"INSERT INTO {name} VALUES (:rev)"), {"rev": revision})
    engine.dispose()


def test_status_over_tenants_reads_the_version_table_env_py_names(pg_url: str, tmp_path: Path) -> None:
    execute_all(pg_url, "CREATE SCHEMA shop_a", "CREATE SCHEMA shop_b")
    manager = make_project(tmp_path / "project", pg_url)
    env = tmp_path / "project" / "migrations" / "env.py"
    env.write_text(EXISTING_ENV.replace("transaction_per_migration=True",
                                        'transaction_per_migration=True, version_table="app_versions"'))
    record_version(pg_url, "app_versions", "r2", "shop_a")
    record_version(pg_url, "alembic_version", "r3", "shop_b")  # not this project's table
    result = manager.for_targets("schemas:shop_%").status()
    assert [(row.target, row.after, row.state) for row in result] == [
        ("shop_a", ("r2",), "behind"), ("shop_b", (), "behind")]


def test_status_over_sqlite_files_reads_the_version_table_the_settings_name(tmp_path: Path) -> None:
    root = tmp_path / "project"
    manager = make_project(root, f"sqlite:///{tmp_path / 'main.db'}")
    (root / "pyproject.toml").write_text('[tool.framefox_magic]\nversion_table = "app_versions"\n')
    for name, revision in (("a", "r3"), ("b", None)):
        sa.create_engine(f"sqlite:///{tmp_path / name}.db").connect().close()
        if revision:
            record_version(f"sqlite:///{tmp_path / name}.db", "app_versions", revision)
    result = manager.for_targets(f"sqlite:{tmp_path}/[ab].db").status()
    assert [(row.after, row.state) for row in result] == [(("r3",), "up to date"), ((), "behind")]


def execute_all(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    engine.dispose()


# ---------------------------------------------------------------- rehearse and lint over many


@pytest.fixture
def few_tenants(pg_url: str, tmp_path: Path) -> AlembicManager:
    """Four tenant schemas with a customer each; shop_1's has no email; shop_3 is at r1 already."""
    add_tenant_schemas(pg_url, [f"shop_{number}" for number in range(4)], without_email="shop_1")
    manager = make_project(tmp_path / "project", pg_url)
    manager.for_targets("schemas:shop_3").upgrade("r1")
    return manager


def test_rehearse_over_tenants_leaves_every_schema_as_it_was(few_tenants: AlembicManager,
                                                             pg_url: str) -> None:
    result = few_tenants.for_targets("schemas:shop_%", jobs=2).rehearse()
    rows = {row.target: row for row in result}
    assert rows["shop_1"].state == "failed" and "r2" in rows["shop_1"].error
    assert "null" in rows["shop_1"].error.lower()
    assert all(rows[t].ok and rows[t].down_leaves_no_trace and rows[t].steps == 9
               for t in ("shop_0", "shop_2"))
    assert rows["shop_3"].steps == 6  # r2 and r3 only: up, down, up
    assert "on its schema" in rows["shop_0"].mode and "rolled back" in rows["shop_0"].mode
    for number in range(3):  # read back with a fresh engine: nothing changed
        assert tables_in(pg_url, f"shop_{number}") == {"customer"}
    assert tables_in(pg_url, "shop_3") == {"alembic_version", "customer", "item"}
    assert versions_in(pg_url, "shop_3") == ["r1"] and tables_in(pg_url, "public") == set()
    html = result._repr_html_()
    assert "1 failed" in html and "3 rehearsed" in html and "not changed" in html
    assert html.index("shop_1") < html.index("shop_0")
    assert list(result.to_frame().columns[:4]) == ["target", "state", "ok", "steps"]
    assert result.of("shop_1").failed.revision == "r2"


def test_lint_over_tenants_shows_common_findings_once_and_the_rest_per_tenant(
        few_tenants: AlembicManager, pg_url: str) -> None:
    result = few_tenants.for_targets("schemas:shop_%", jobs=2).lint()
    assert result.differing.keys() == {"shop_1"}
    assert [(f.rule, f.rows) for f in result.differing["shop_1"]] == [("not-null-violation", 1)]
    assert result.differing["shop_1"][0].message.startswith("1 row holds NULL in customer.email")
    frame = result.to_frame()
    assert list(frame.scope) == ["common", "target"]
    common = frame[frame.scope == "common"]
    assert list(common.rule) == ["pg-set-not-null-scan"] and list(common.targets) == [4]
    html = result._repr_html_()
    assert "1 finding shown once, the same on most targets" in html and "1 target of 4 with counts" in html
    assert html.index("Differs by target") < html.index("Common:")

    execute_all(pg_url, "INSERT INTO shop_2.customer VALUES (2, 'c@d.e')")  # one tenant grows
    again = few_tenants.for_targets("schemas:shop_%").lint()
    # what most tenants share is shown once; only the tenants that differ get rows of their own
    assert [(f.rule, f.rows) for f in again.common] == [("pg-set-not-null-scan", 1)]
    assert "3 of 4" in again._repr_html_()
    assert {t: [(f.rule, f.rows) for f in found] for t, found in again.differing.items()} == {
        "shop_1": [("not-null-violation", 1)], "shop_2": [("pg-set-not-null-scan", 2)]}
    per_target = again.to_frame().query("scope == 'target'")  # what would lose data comes first
    assert list(per_target.severity)[:1] == ["danger"] and list(per_target.target)[:1] == ["shop_1"]
    html = again._repr_html_()
    assert html.index("not-null-violation") < html.index("pg-set-not-null-scan")


def test_rehearse_over_mariadb_databases_and_sqlite_files_changes_none(
        mariadb_urls: list[str], sqlite_files: list[Path], tmp_path: Path) -> None:
    lines = [*mariadb_urls[:2], f"sqlite:///{sqlite_files[0]}", f"sqlite:///{sqlite_files[1]}"]
    (tmp_path / "targets.txt").write_text("\n".join(lines) + "\n")
    execute_all(mariadb_urls[1], "UPDATE customer SET email = NULL")
    manager = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'main.db'}")
    result = manager.for_targets(f"file:{tmp_path / 'targets.txt'}", jobs=2).rehearse()
    assert [row.state for row in result] == ["rehearsed", "failed", "rehearsed", "rehearsed"]
    assert "r2" in result.rows[1].error and result.failures_first()[0] is result.rows[1]
    assert "shadow database" in result.rows[0].mode and "copy of the database file" in result.rows[2].mode
    for url in (*mariadb_urls[:2], f"sqlite:///{sqlite_files[0]}"):  # fresh engines: as they were
        assert versions_in(url) == [] and tables_in(url) == {"customer"}
    admin = sa.create_engine(mariadb_urls[0])
    with admin.connect() as connection:  # no shadow database left behind
        left = connection.execute(sa.text("SHOW DATABASES LIKE '%rehearse%'")).scalars().all()
    admin.dispose()
    ours = tuple(sa.make_url(url).database for url in mariadb_urls)
    assert not [name for name in left if name.startswith(ours)]


def test_magic_and_cli_rehearse_and_lint_over_sqlite_files(shell, cli_main, sqlite_files: list[Path],
                                                           tmp_path: Path) -> None:
    make_project(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}")
    execute_all(f"sqlite:///{sqlite_files[3]}", "UPDATE customer SET email = NULL")
    spec = f"sqlite:{tmp_path}/devices/*.db"
    rehearsal = shell.run_line_magic("migrate", f"rehearse --targets {spec} -j 2")
    assert rehearsal.counts == {"failed": 1, "rehearsed": 9}
    assert rehearsal.failures_first()[0].target.endswith("device_3.db")
    assert all(versions_in(f"sqlite:///{file}") == [] for file in sqlite_files)
    lint = shell.run_line_magic("migrate", f"lint --targets {spec}")
    assert list(lint.differing) == [str(sqlite_files[3])]
    assert {f.rule for f in lint.common} == {"sqlite-batch-copy"}
    ran = cli_main(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}", "rehearse", "--targets", spec)
    assert ran.returncode == 1 and "1 failed, 9 rehearsed" in ran.stdout
    assert "The targets themselves were not changed" in ran.stdout


def test_rehearse_over_tenants_with_an_existing_env_py_uses_a_shadow_schema(pg_url: str,
                                                                            tmp_path: Path) -> None:
    execute_all(pg_url, "CREATE SCHEMA shop_a", "CREATE SCHEMA shop_b")
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)
    result = manager.for_targets("schemas:shop_%", jobs=2).rehearse("r1")
    # each revision's step is seen whatever this env.py passes to context.configure
    assert [(row.state, row.down_leaves_no_trace) for row in result] == [("rehearsed", True)] * 2
    assert [[(step.revision, step.direction, step.ok) for step in result.of(target).steps]
            for target in ("shop_a", "shop_b")] == [[("r1", "upgrade", True), ("r1", "downgrade", True),
                                                      ("r1", "upgrade", True)]] * 2
    assert "shadow database" in result.rows[0].mode
    assert tables_in(pg_url, "shop_a") == set() and tables_in(pg_url, "public") == set()


@pytest.mark.parametrize("applied", [None, "r2"])
def test_rehearse_over_tenants_with_an_existing_env_py_whose_customer_table_predates_the_migrations(
        pg_url: str, tmp_path: Path, applied: str | None) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        for tenant in ("shop_a", "shop_b"):
            connection.execute(sa.text(f"CREATE SCHEMA {tenant}"))
            add_customers(connection, tenant)
    engine.dispose()
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)
    if applied:
        manager.for_targets("schemas:shop_%", jobs=1).upgrade(applied)

    result = manager.for_targets("schemas:shop_%", jobs=2).rehearse("head")

    assert [row.state for row in result] == ["rehearsed", "rehearsed"], result
    pending = ["r3"] if applied else ["r1", "r2", "r3"]
    assert [step.revision for step in result.of("shop_a").steps if step.direction == "upgrade"] == pending * 2
    copied = ("shadow database with the database's 2 tables copied in" if applied
              else "shadow database built from the history, 1 table made outside the migrations copied in")
    assert copied in result.rows[0].mode
    assert versions_in(pg_url, "shop_a") == ([applied] if applied else [])
    made = {"customer", "item"} if applied else {"customer"}
    assert tables_in(pg_url, "shop_a") - {"alembic_version"} == made


def test_rehearse_over_tenants_with_an_existing_env_py_fails_where_the_upgrade_would(pg_url: str,
                                                                                      tmp_path: Path) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        for tenant, email in (("shop_a", "a@b.c"), ("shop_b", None)):
            connection.execute(sa.text(f"CREATE SCHEMA {tenant}"))
            add_customers(connection, tenant, email)
    engine.dispose()
    manager = make_project(tmp_path / "project", pg_url)
    (tmp_path / "project" / "migrations" / "env.py").write_text(EXISTING_ENV)

    rehearsal = manager.for_targets("schemas:shop_%", jobs=2).rehearse("head")
    upgrade = manager.for_targets("schemas:shop_%", jobs=2, keep_going=True).upgrade()

    assert [(row.target, row.state) for row in rehearsal] == [("shop_a", "rehearsed"), ("shop_b", "failed")]
    assert "(1 row copied in)" in rehearsal.rows[1].mode
    assert [(row.target, row.ok) for row in upgrade] == [("shop_a", True), ("shop_b", False)]


@pytest.mark.parametrize("jobs", ["0", "-3", "many"])
def test_a_number_of_jobs_below_one_is_refused_before_anything_runs(shell, sqlite_files: list[Path],
                                                                     tmp_path: Path, jobs: str) -> None:
    make_project(Path.cwd(), f"sqlite:///{tmp_path / 'main.db'}")
    result = shell.run_cell(f"%migrate upgrade --targets sqlite:{tmp_path}/devices/*.db --jobs {jobs}")
    assert "--jobs" in str(result.error_in_exec) and "at least 1" in str(result.error_in_exec)
    assert all(versions_in(f"sqlite:///{file}") == [] for file in sqlite_files)
