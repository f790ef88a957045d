"""Revisions read as operations: every kind alembic has, on each dialect, batch blocks included."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefox_magic import AlembicManager

EVERY_KIND = '''
op.create_table("team", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
op.create_table("hero", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(100)),
                sa.Column("team_id", sa.Integer))
op.add_column("hero", sa.Column("age", sa.Integer, nullable=True))
op.alter_column("hero", "name", existing_type=sa.String(100), type_=sa.String(50))
op.alter_column("hero", "age", existing_type=sa.Integer, nullable=False)
op.create_index("ix_hero_name", "hero", ["name"], unique=True)
op.create_foreign_key("fk_hero_team", "hero", "team", ["team_id"], ["id"])
op.create_unique_constraint("uq_team_name", "team", ["name"])
op.create_check_constraint("ck_hero_age", "hero", "age >= 0")
op.bulk_insert(sa.table("team", sa.column("name", sa.String)), [{"name": "a"}, {"name": "b"}])
op.execute("UPDATE hero SET age = 0 WHERE age IS NULL")
op.execute("INSERT INTO team (name) VALUES ('c')")
op.rename_table("team", "squad")
op.drop_constraint("ck_hero_age", "hero", type_="check")
op.drop_index("ix_hero_name", table_name="hero")
op.drop_column("hero", "age")
op.drop_table("squad")
'''
EXPECTED = [
    ("create_table", "team", None, False),
    ("create_table", "hero", None, False),
    ("add_column", "hero", "age", False),
    ("alter_column", "hero", "name", True),  # String(100) -> String(50) narrows
    ("alter_column", "hero", "age", True),  # NOT NULL: rows holding NULL make it fail
    ("create_index", "hero", "ix_hero_name", False),
    ("create_foreign_key", "hero", "fk_hero_team", False),
    ("create_unique_constraint", "team", "uq_team_name", False),
    ("create_check_constraint", "hero", "ck_hero_age", False),
    ("bulk_insert", "team", None, False),
    ("execute", None, None, True),  # UPDATE changes data
    ("execute", None, None, False),  # INSERT only adds
    ("rename_table", "team", "squad", False),
    ("drop_constraint", "hero", "ck_hero_age", False),  # no data goes with a constraint
    ("drop_index", "hero", "ix_hero_name", False),
    ("drop_column", "hero", "age", True),
    ("drop_table", "squad", None, True),
]
BATCH = '''
with op.batch_alter_table("hero") as batch:
    batch.add_column(sa.Column("power", sa.String(20)))
    batch.alter_column("name", existing_type=sa.String(50), new_column_name="alias")
    batch.drop_column("secret")
    batch.create_index("ix_hero_power", ["power"])
'''


def summary(diff) -> list[tuple]:
    return [(row.op, row.table, row.target, row.destructive) for row in diff.rows]


def test_every_operation_kind_is_recorded_in_order_with_destructive_flags(manager: AlembicManager) -> None:
    written = manager.revision("every kind", upgrade_body=EVERY_KIND, downgrade_body="pass")
    diff = manager.diff(written.revision)
    assert summary(diff) == EXPECTED
    assert {row.revision for row in diff.rows} == {written.revision}
    frame = diff.to_frame()
    assert list(frame.columns) == ["revision", "op", "table", "target", "detail", "destructive"]
    assert frame.loc[frame.op == "bulk_insert", "detail"].item() == "2 rows"
    assert "VARCHAR(100) -> VARCHAR(50)" in frame.detail[3]


TYPE_CHANGES = [
    ("sa.VARCHAR(50)", "sa.String(100)", False),
    ("sa.INTEGER()", "sa.BigInteger()", False),
    ("sa.SmallInteger()", "sa.Integer()", False),
    ("sa.VARCHAR(50)", "sa.Text()", False),
    ("sa.Numeric(10, 2)", "sa.Numeric(12, 2)", False),
    ("sa.Integer()", "sa.Text()", False),
    ("sa.String(100)", "sa.String(50)", True),
    ("sa.BigInteger()", "sa.Integer()", True),
    ("sa.Text()", "sa.String(20)", True),
    ("sa.Numeric(10, 2)", "sa.Numeric(10, 1)", True),
    ("sa.String(10)", "sa.Integer()", True),
    ("sa.DateTime()", "sa.Date()", True),
]


@pytest.mark.parametrize(("before", "after", "destructive"), TYPE_CHANGES)
def test_a_widening_type_change_is_not_destructive_and_a_narrowing_one_is(
    manager: AlembicManager, before: str, after: str, destructive: bool
) -> None:
    body = f'op.alter_column("hero", "name", existing_type={before}, type_={after})'
    written = manager.revision("retype", upgrade_body=body, downgrade_body="pass")
    diff = manager.diff(written.revision)
    assert diff.destructive is destructive
    assert diff.to_frame()["destructive"].tolist() == [destructive]


def test_making_a_column_not_null_is_destructive_and_allowing_null_is_not(manager: AlembicManager) -> None:
    strict = 'op.alter_column("hero", "age", existing_type=sa.Integer(), nullable=False)'
    loose = 'op.alter_column("hero", "age", existing_type=sa.Integer(), nullable=True)'
    assert manager.diff(manager.revision("strict", upgrade_body=strict).revision).destructive is True
    assert manager.diff(manager.revision("loose", upgrade_body=loose).revision).destructive is False


def test_recording_touches_no_database(manager: AlembicManager, db_url: str) -> None:
    written = manager.revision("every kind", upgrade_body=EVERY_KIND, downgrade_body="pass")
    manager.diff(written.revision)
    manager.show(written.revision)
    from conftest import table_names

    assert not {"hero", "team", "squad"} & table_names(db_url)


def test_batch_blocks_are_recorded_against_their_table(manager: AlembicManager) -> None:
    written = manager.revision("batch", upgrade_body=BATCH, downgrade_body="pass")
    assert summary(manager.diff(written.revision)) == [
        ("add_column", "hero", "power", False),
        ("alter_column", "hero", "name", False),
        ("drop_column", "hero", "secret", True),
        ("create_index", "hero", "ix_hero_power", False),
    ]
    assert "renamed to alias" in manager.diff(written.revision).rows[1].detail


def test_path_up_and_down_lists_upgrades_then_downgrades_in_order(manager: AlembicManager) -> None:
    create = 'op.create_table("a", sa.Column("id", sa.Integer, primary_key=True))'
    first = manager.revision("one", upgrade_body=create, downgrade_body='op.drop_table("a")').revision
    second = manager.revision("two", upgrade_body='op.add_column("a", sa.Column("x", sa.Integer))',
                              downgrade_body='op.drop_column("a", "x")').revision
    up = manager.diff("base", second)
    assert [(r.revision, r.op) for r in up.rows] == [(first, "create_table"), (second, "add_column")]
    down = manager.diff(second, "base")
    assert [(r.revision, r.op, r.destructive) for r in down.rows] == [
        (second, "drop_column", True), (first, "drop_table", True),
    ]


def test_a_revision_importing_a_missing_package_still_lists(manager: AlembicManager) -> None:
    written = manager.revision("needs a plugin", upgrade_body="pass", downgrade_body="pass")
    path = Path(written.path)
    source = path.read_text().replace("import sqlmodel", "import sqlmodel\nimport not_installed_plugin")
    path.write_text(source)
    listed = [r.revision for r in manager.history()]
    assert written.revision in listed
    assert manager.heads().ids == (written.revision,)
    rows = manager.diff(written.revision).rows
    assert [row.op for row in rows] == ["unrecorded"]
    assert "not_installed_plugin" in rows[0].detail
