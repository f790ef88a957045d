"""Lint: each risky operation of a revision, with the rows it touches counted on the live database."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import fresh_database

from framefox_magic import AlembicManager
from framefox_magic.errors import MigrationError
from framefox_magic.results import Lint

ROWS = 3000
HERO = sa.Table(
    "hero", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),  # every name held by three heroes
    sa.Column("code", sa.String(50)),  # unique and short
    sa.Column("bio", sa.String(100)),  # one in thirty longer than 20 characters
    sa.Column("age", sa.Integer),  # one in ten NULL
    sa.Column("level", sa.Integer),  # never NULL, never negative
    sa.Column("score", sa.Integer),  # one in a hundred negative
    sa.Column("big", sa.BigInteger),  # one in three hundred beyond 32 bits
    sa.Column("team_id", sa.Integer),  # one in six points to no team
    sa.Column("squad_id", sa.Integer),  # always a team
    sa.Column("power", sa.Integer),
    sa.Column("spare", sa.Integer),  # always NULL
)
TEAM = sa.Table("team", HERO.metadata, sa.Column("id", sa.Integer, primary_key=True))
EMPTY = sa.Table("empty", HERO.metadata, sa.Column("id", sa.Integer, primary_key=True))


def hero_row(i: int) -> dict[str, Any]:
    return {
        "id": i + 1, "name": f"hero {i % 1000}", "code": f"c{i}",
        "bio": "a long story about a hero" if i % 30 == 0 else "short",
        "age": None if i % 10 == 0 else 20 + i % 50, "level": i % 7, "score": -1 if i % 100 == 0 else i,
        "big": 2**40 if i % 300 == 0 else i, "team_id": i % 12 + 1, "squad_id": i % 10 + 1,
        "power": i, "spare": None,
    }


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """One database per backend, filled on first use: lint only reads it, so every test shares it."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        def url_for(backend: str) -> str:
            if backend not in urls:
                urls[backend] = stack.enter_context(fresh_database(backend, tmp_path_factory.mktemp("lint")))
                fill(urls[backend])
            return urls[backend]

        yield url_for


def fill(url: str) -> None:
    engine = sa.create_engine(url)
    HERO.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(TEAM.insert(), [{"id": i} for i in range(1, 11)])
        connection.execute(HERO.insert(), [hero_row(i) for i in range(ROWS)])
    engine.dispose()


@pytest.fixture
def live(filled: Callable[[str], str], backend: str) -> str:
    """The filled database of the current backend."""
    return filled(backend)


def dialect_of(url: str) -> str:
    return sa.make_url(url).get_backend_name()


def batch(*lines: str) -> str:
    return 'with op.batch_alter_table("hero") as b:\n' + textwrap.indent("\n".join(lines), "    ")


ADD_NULLABLE = 'op.add_column("hero", sa.Column("extra", sa.Integer, nullable=True))'
ALL = ("sqlite", "postgresql", "mysql")
# rule, dialects, a revision that triggers it -> {dialect: (severity, rows)}, one that does not
CASES = [
    ("drop-table", ALL, 'op.drop_table("hero")', ("danger", ROWS), 'op.drop_table("empty")', ("warn", 0)),
    ("drop-column", ALL, batch('b.drop_column("age")'), ("danger", 2700), batch('b.drop_column("spare")'),
     ("warn", 0)),
    ("narrowing-type", ALL,
     batch('b.alter_column("bio", existing_type=sa.String(100), type_=sa.String(20))'), ("danger", 100),
     batch('b.alter_column("code", existing_type=sa.String(50), type_=sa.String(10))'), None),
    ("narrowing-type", ALL,
     batch('b.alter_column("big", existing_type=sa.BigInteger(), type_=sa.Integer())'), ("danger", 10),
     batch('b.alter_column("level", existing_type=sa.BigInteger(), type_=sa.Integer())'), None),
    ("not-null-violation", ALL, batch('b.alter_column("age", existing_type=sa.Integer(), nullable=False)'),
     ("danger", 300), batch('b.alter_column("level", existing_type=sa.Integer(), nullable=False)'), None),
    ("add-not-null-column", ALL, 'op.add_column("hero", sa.Column("x", sa.Integer, nullable=False))',
     {"sqlite": ("danger", ROWS), "postgresql": ("danger", ROWS), "mysql": ("warn", ROWS)},
     'op.add_column("hero", sa.Column("x", sa.Integer, nullable=False, server_default="0"))', None),
    ("unique-violation", ALL, 'op.create_index("ix_name", "hero", ["name"], unique=True)', ("danger", ROWS),
     'op.create_index("ix_code", "hero", ["code"], unique=True)', None),
    ("unique-violation", ALL, batch('b.create_unique_constraint("uq_name", ["name"])'), ("danger", ROWS),
     batch('b.create_unique_constraint("uq_code", ["code"])'), None),
    ("foreign-key-violation", ALL, batch('b.create_foreign_key("fk_team", "team", ["team_id"], ["id"])'),
     {"sqlite": ("warn", 500), "postgresql": ("danger", 500), "mysql": ("danger", 500)},
     batch('b.create_foreign_key("fk_squad", "team", ["squad_id"], ["id"])'), None),
    ("check-violation", ALL, batch('b.create_check_constraint("ck_score", "score >= 0")'), ("danger", 30),
     batch('b.create_check_constraint("ck_level", "level >= 0")'), None),
    ("rename-breaks-code", ALL,
     batch('b.alter_column("power", new_column_name="strength", existing_type=sa.Integer())'),
     ("warn", None), ADD_NULLABLE, None),
    ("drop-breaks-code", ALL, 'op.drop_column("hero", "power")', ("warn", None), ADD_NULLABLE, None),
    ("pg-alter-type-rewrite", ("postgresql",),
     'op.alter_column("hero", "level", existing_type=sa.Integer(), type_=sa.BigInteger())', ("warn", ROWS),
     'op.alter_column("hero", "code", existing_type=sa.String(50), type_=sa.String(100))', None),
    ("pg-set-not-null-scan", ("postgresql",),
     'op.alter_column("hero", "level", existing_type=sa.Integer(), nullable=False)', ("warn", ROWS),
     'op.alter_column("hero", "level", existing_type=sa.Integer(), nullable=True)', None),
    ("pg-index-not-concurrent", ("postgresql",), 'op.create_index("ix_level", "hero", ["level"])',
     ("warn", ROWS),
     'with op.get_context().autocommit_block():\n'
     '    op.create_index("ix_level", "hero", ["level"], postgresql_concurrently=True)', None),
    ("pg-constraint-not-valid", ("postgresql",),
     'op.create_foreign_key("fk_squad", "hero", "team", ["squad_id"], ["id"])', ("warn", ROWS),
     'op.create_foreign_key("fk_squad", "hero", "team", ["squad_id"], ["id"], postgresql_not_valid=True)',
     None),
    ("pg-volatile-default", ("postgresql",),
     'op.add_column("hero", sa.Column("luck", sa.Float, server_default=sa.text("random()")))', ("warn", ROWS),
     'op.add_column("hero", sa.Column("luck", sa.Float, server_default="0"))', None),
    ("mysql-algorithm-copy", ("mysql",),
     'op.alter_column("hero", "level", existing_type=sa.Integer(), type_=sa.BigInteger())', ("warn", ROWS),
     'op.alter_column("hero", "code", existing_type=sa.String(50), type_=sa.String(60))', None),
    ("mysql-table-rebuild", ("mysql",),
     'op.alter_column("hero", "level", existing_type=sa.Integer(), nullable=False)', ("info", ROWS),
     'op.alter_column("hero", "power", existing_type=sa.Integer(), new_column_name="strength")', None),
    ("sqlite-batch-copy", ("sqlite",), batch('b.drop_column("spare")', 'b.drop_column("power")'),
     ("info", ROWS), ADD_NULLABLE, None),
]


def project_for(url: str, root: Path) -> AlembicManager:
    root.mkdir()
    manager = AlembicManager(url=url, project_root=root, metadata=sa.MetaData())
    manager.init()
    return manager


def found(lint: Lint, rule: str) -> list[tuple[str, int | None]]:
    return [(f.severity, f.rows) for f in lint.findings if f.rule == rule]


RULE_CASES = [
    pytest.param(backend, rule, trigger, expected, quiet, quiet_expected, id=f"{rule}-{backend}-{index}")
    for backend in ALL  # grouped by backend: each database is filled once
    for index, (rule, dialects, trigger, expected, quiet, quiet_expected) in enumerate(CASES)
    if backend in dialects
]


@pytest.mark.parametrize(("backend", "rule", "trigger", "expected", "quiet", "quiet_expected"), RULE_CASES)
def test_each_rule_fires_on_the_revision_that_risks_it_and_not_on_the_safe_one(
    live: str, tmp_path: Path, rule: str, trigger: str, expected: Any, quiet: str, quiet_expected: Any,
) -> None:
    dialect = dialect_of(live)
    manager = project_for(live, tmp_path / "project")
    risky = manager.revision("risky", upgrade_body=trigger).revision
    safe = manager.revision("safe", upgrade_body=quiet).revision

    if isinstance(expected, dict):
        expected = expected[dialect]
    assert found(manager.lint(f"base:{risky}"), rule) == [expected]
    assert found(manager.lint(f"{risky}:{safe}"), rule) == ([quiet_expected] if quiet_expected else [])


def test_lint_reads_the_live_rows_and_changes_nothing(live: str, tmp_path: Path) -> None:
    manager = project_for(live, tmp_path / "project")
    body = "\n".join([batch('b.create_unique_constraint("uq_name", ["name"])'),
                      batch('b.create_foreign_key("fk_team", "team", ["team_id"], ["id"])'),
                      batch('b.create_check_constraint("ck_score", "score >= 0")')])
    manager.revision("risky", upgrade_body=body)

    lint = manager.lint()

    frame = lint.to_frame()
    assert list(frame.columns) == ["revision", "op", "table", "rule", "severity", "rows", "message",
                                   "suggestion"]
    assert frame.suggestion.str.len().min() > 20
    duplicates = lint.samples("unique-violation")
    assert list(duplicates.columns) == ["name", "copies"] and len(duplicates) == 20
    assert (duplicates.copies == 3).all()
    orphans = lint.samples("foreign-key-violation")
    assert len(orphans) == 20 and set(orphans.team_id) <= {11, 12}
    assert (lint.samples("check-violation").score < 0).all()
    with pytest.raises(MigrationError, match="No rows to show for 'drop-table'"):
        lint.samples("drop-table")
    engine = sa.create_engine(live)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM hero")).scalar() == ROWS
        assert not sa.inspect(connection).has_table("alembic_version")
    engine.dispose()


def test_lint_shows_as_a_table_in_html_and_as_text(live: str, tmp_path: Path) -> None:
    manager = project_for(live, tmp_path / "project")
    manager.revision("risky", upgrade_body=batch('b.create_check_constraint("ck_score", "score >= 0")'))
    lint = manager.lint()
    html = lint._repr_html_()
    assert "check-violation" in html and "(score &gt;= 0)" in html and "var(--jp-" in html
    assert "DANGER" in repr(lint) and "safer:" in repr(lint)


def test_lint_of_a_clean_revision_finds_nothing(live: str, tmp_path: Path) -> None:
    manager = project_for(live, tmp_path / "project")
    manager.revision("add", upgrade_body=ADD_NULLABLE)
    lint = manager.lint()
    assert lint.findings == [] and lint.highest is None
    assert "no risks found" in repr(lint)


# ---------------------------------------------------------------- risk where users look

CREATE_TEAM = ('op.create_table("team", sa.Column("id", sa.Integer, primary_key=True), '
               'sa.Column("motto", sa.String(50)), sa.Column("spare", sa.Integer))')
DROP_MOTTO = 'op.drop_column("team", "motto")'  # 2000 mottos lost: danger
DROP_SPARE = 'op.drop_column("team", "spare")'  # only NULLs: a warning


@pytest.fixture
def risky(db_url: str, project: Path) -> tuple[AlembicManager, str, str]:
    """team with 2000 rows applied; pending: dropping the empty `spare` (warn), then `motto` (danger)."""
    manager = AlembicManager(url=db_url, project_root=project, metadata=sa.MetaData())
    manager.init()
    manager.revision("create team", upgrade_body=CREATE_TEAM, downgrade_body='op.drop_table("team")')
    manager.upgrade()
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO team (id, motto) VALUES (:id, :motto)"),
                           [{"id": i, "motto": f"motto {i}"} for i in range(1, 2001)])
    engine.dispose()
    warn = manager.revision("drop spare", upgrade_body=DROP_SPARE).revision
    danger = manager.revision("drop motto", upgrade_body=DROP_MOTTO).revision
    return manager, warn, danger


def test_status_history_and_plan_carry_each_pending_revisions_highest_severity(risky) -> None:
    manager, warn, danger = risky
    status = manager.status()
    assert [(r.revision, r.risk) for r in status.pending_revisions] == [(warn, "warn"), (danger, "danger")]
    assert status.to_frame().risk.tolist() == ["warn", "danger"]
    history = manager.history().to_frame().set_index("revision").risk
    assert (history[warn], history[danger]) == ("warn", "danger")
    assert history.isna().sum() == 1  # the applied revision carries none
    assert manager.plan().to_frame().risk.tolist() == ["warn", "danger"]
    assert "danger: 1 pending revision" in status._repr_html_()
    from framefox_magic import render

    assert "danger" in render.status_badge_html(status)


def test_upgrade_over_a_danger_needs_yes_and_a_warning_does_not(risky, shell, db_url) -> None:
    from conftest import column_names, version_rows
    from IPython.core.error import UsageError

    manager, warn, danger = risky
    shell.run_line_magic("migrate", f"config --url {db_url} --dir {manager.target().migrations_dir}")
    shell.run_line_magic("migrate", f"upgrade {warn}")
    assert version_rows(db_url) == [warn]
    with pytest.raises(UsageError, match=f"{danger} drop-column on team \\(2000 row"):
        shell.run_line_magic("migrate", "upgrade")
    assert version_rows(db_url) == [warn] and "motto" in column_names(db_url, "team")
    shell.run_line_magic("migrate", "upgrade --plan")  # looking needs no --yes
    shell.run_line_magic("migrate", "upgrade --yes")
    assert version_rows(db_url) == [danger] and "motto" not in column_names(db_url, "team")


def test_the_setting_turns_the_danger_question_off(risky, shell, db_url) -> None:
    from conftest import version_rows

    manager, _, danger = risky
    shell.run_line_magic("config", "MigrateMagics.confirm_dangerous_upgrade = False")
    shell.run_line_magic("migrate", f"config --url {db_url} --dir {manager.target().migrations_dir}")
    shell.run_line_magic("migrate", "upgrade")
    assert version_rows(db_url) == [danger]


def test_the_command_line_refuses_a_danger_without_yes(risky, db_url, monkeypatch, capsys) -> None:
    from conftest import version_rows

    from framefox_magic import cli

    manager, _, danger = risky
    monkeypatch.chdir(manager.project_root)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert cli.main(["upgrade"]) == 1
    assert "--yes" in capsys.readouterr().err and version_rows(db_url) != [danger]
    assert cli.main(["upgrade", "--yes"]) == 0
    assert version_rows(db_url) == [danger]


def test_the_panel_asks_before_an_upgrade_over_a_danger(risky, db_url) -> None:
    from conftest import version_rows

    from framefox_magic.widgets import MigrationPanel

    manager, _, danger = risky
    panel = MigrationPanel(manager)
    assert "danger: 1 pending revision" in panel.status.value
    panel._upgrade()
    assert panel.confirmation.layout.display != "none" and "drop-column" in panel.question.value
    assert version_rows(db_url) != [danger]
    panel._confirmed()
    assert version_rows(db_url) == [danger]
