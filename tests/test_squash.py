"""`%migrate squash A:B`: one revision replaces a linear run, proven to build the same schema first."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import execute as execute_sql
from conftest import rows, table_names, version_rows

from framefox_magic.authoring import SquashRefused
from framefox_magic.errors import RevisionNotFound
from framefox_magic.manager import AlembicManager

STEPS = (
    ("create team", "op.create_table('team', sa.Column('id', sa.Integer(), primary_key=True), "
                    "sa.Column('name', sa.String(50), nullable=False))", "op.drop_table('team')"),
    ("create hero", "op.create_table('hero', sa.Column('id', sa.Integer(), primary_key=True), "
                    "sa.Column('name', sa.String(50), nullable=False))", "op.drop_table('hero')"),
    ("hero power", "op.add_column('hero', sa.Column('power', sa.Integer()))",
     "with op.batch_alter_table('hero') as batch:\n    batch.drop_column('power')"),
    ("hero name index", "op.create_index('ix_hero_name', 'hero', ['name'])",
     "op.drop_index('ix_hero_name', table_name='hero')"),
    ("hero team", "with op.batch_alter_table('hero') as batch:\n"
                  "    batch.add_column(sa.Column('team_id', sa.Integer()))\n"
                  "    batch.create_foreign_key('fk_hero_team', 'team', ['team_id'], ['id'])",
     "with op.batch_alter_table('hero') as batch:\n"
     "    batch.drop_constraint('fk_hero_team', type_='foreignkey')\n    batch.drop_column('team_id')"),
    ("mission", "op.create_table('mission', sa.Column('id', sa.Integer(), primary_key=True), "
                "sa.Column('title', sa.String(80)))", "op.drop_table('mission')"),
)


@pytest.fixture
def prototyped_manager(project: Path, db_url: str) -> AlembicManager:
    """A prototyping run of six revisions, written by hand."""
    manager = AlembicManager(url=db_url, project_root=project)
    manager.init()
    for message, up, down in STEPS:
        manager.revision(message, autogenerate=False, upgrade_body=up, downgrade_body=down)
    return manager


def ids(manager: AlembicManager) -> list[str]:
    """Revision ids, oldest first."""
    return list(reversed(manager.history().ids))


def schema_of(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def test_squash_of_an_applied_run_proves_installs_and_stamps(
    prototyped_manager: AlembicManager, db_url: str,
) -> None:
    prototyped_manager.upgrade()
    before, revisions = schema_of(db_url), ids(prototyped_manager)
    result = prototyped_manager.squash(f"{revisions[0]}:{revisions[-1]}", "prototype schema")
    assert result.ok and [ok for _, ok, _ in result.checks] == [True, True]
    assert "3 tables equal" in result.checks[0][2]
    new = result.revision.revision
    assert ids(prototyped_manager) == [new]
    assert version_rows(db_url) == [new]  # the database was at the end of the run: stamped
    assert schema_of(db_url) == before  # nothing ran on the real database
    trash = Path(result.trash)
    assert sorted(p.name.split("_")[0] for p in trash.glob("*.py")) == sorted(revisions)
    prototyped_manager.downgrade("base")
    assert table_names(db_url) <= {"alembic_version"}
    prototyped_manager.upgrade()
    assert schema_of(db_url) == before


def test_squash_of_a_pending_run_leaves_the_database_alone(
    prototyped_manager: AlembicManager, db_url: str,
) -> None:
    revisions = ids(prototyped_manager)
    prototyped_manager.upgrade(revisions[1])
    result = prototyped_manager.squash(f"{revisions[2]}:{revisions[-1]}", "the rest")
    assert ids(prototyped_manager) == [*revisions[:2], result.revision.revision]
    assert version_rows(db_url) == [revisions[1]]
    prototyped_manager.upgrade()
    assert set(schema_of(db_url)) >= {"team", "hero", "mission"}
    assert "team_id" in schema_of(db_url)["hero"]


def test_a_database_inside_the_run_is_refused_and_nothing_moves(
    prototyped_manager: AlembicManager, db_url: str,
) -> None:
    revisions = ids(prototyped_manager)
    prototyped_manager.upgrade(revisions[2])
    files = sorted(p.name for p in Path(prototyped_manager.target().versions_dir).glob("*.py"))
    with pytest.raises(SquashRefused, match=f"database is at {revisions[2]}, inside the run"):
        prototyped_manager.squash(f"{revisions[0]}:{revisions[-1]}", "x")
    assert sorted(p.name for p in Path(prototyped_manager.target().versions_dir).glob("*.py")) == files
    assert version_rows(db_url) == [revisions[2]]


def test_a_run_with_a_data_migration_is_refused(prototyped_manager: AlembicManager) -> None:
    seed = "op.execute(\"INSERT INTO team (name) VALUES ('x')\")"
    prototyped_manager.revision("seed", autogenerate=False, upgrade_body=seed)
    revisions = ids(prototyped_manager)
    with pytest.raises(SquashRefused, match=f"{revisions[-1]} moves data") as refused:
        prototyped_manager.squash(f"{revisions[0]}:{revisions[-1]}", "x")
    assert "--keep-data" in str(refused.value)  # the way on is named
    assert ids(prototyped_manager) == revisions


def test_revisions_built_on_the_run_are_repointed(prototyped_manager: AlembicManager, db_url: str) -> None:
    revisions = ids(prototyped_manager)
    result = prototyped_manager.squash(f"{revisions[0]}:{revisions[3]}", "first four")
    new = result.revision.revision
    assert ids(prototyped_manager) == [new, *revisions[4:]]
    assert prototyped_manager.history()[1].parents == (new,)
    prototyped_manager.upgrade()
    assert {"team", "hero", "mission"} <= set(schema_of(db_url))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_magic_needs_yes_and_shows_the_proof(shell, backend: str) -> None:
    shell.run_line_magic("migrate", "init")
    for message, up, _ in STEPS[:2]:
        shell.run_cell(f"%%revision -m '{message}' --manual\n{up}\n# downgrade\npass")
    first, last = (r.revision for r in reversed(list(shell.run_line_magic("migrate", "history"))))
    refused = shell.run_cell(f"%migrate squash {first}:{last} -m both")
    assert not refused.success and "--yes" in str(refused.error_in_exec)
    result = shell.run_line_magic("migrate", f"squash {first}:{last} -m both --yes")
    assert "Proof" in repr(result) and "[ok]" in repr(result)
    assert "squashed" in result._repr_html_()
    with pytest.raises(Exception, match="No revision"):
        shell.run_line_magic("migrate", f"squash {first}:{last} -m again --yes")


def test_an_unknown_revision_is_a_short_error(prototyped_manager: AlembicManager) -> None:
    with pytest.raises(RevisionNotFound):
        prototyped_manager.squash("nope:head", "x")


def test_an_autogenerated_table_with_an_indexed_foreign_key_downgrades(project: Path, db_url: str) -> None:
    """MariaDB refuses to drop an index that backs a foreign key; dropping the table takes both."""
    metadata = sa.MetaData()
    sa.Table("team", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("hero", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("team_id", sa.Integer, sa.ForeignKey("team.id"), index=True))
    manager = AlembicManager(url=db_url, metadata=metadata, project_root=project)
    manager.init()
    manager.revision("team and hero")
    manager.upgrade()
    assert {"team", "hero"} <= table_names(db_url)
    manager.downgrade("base")
    assert table_names(db_url) <= {"alembic_version"}


# ---------------------------------------------------------------- --keep-data

SEED_TEAM = ("seed team", "op.execute(\"INSERT INTO team (id, name) VALUES (1, 'Avengers')\")",
             "op.execute('DELETE FROM team')")
SEED_HEROES = ("seed heroes", "op.bulk_insert(table('hero', column('id'), column('name')), HEROES)",
               "op.execute('DELETE FROM hero')")
JOIN_TEAM = ("heroes join the team",
             "bind = op.get_bind()\nbind.execute(sa.text('UPDATE hero SET team_id = 1'))",
             "op.get_bind().execute(sa.text('UPDATE hero SET team_id = NULL'))")
# the seed of heroes keeps its rows and its import at the top of its file, as a hand-written one would
HEROES_HEADER = ("from sqlalchemy.sql import column, table\n\n"
                 "HEROES = [{'id': 1, 'name': 'Tony'}, {'id': 2, 'name': 'Steve'}]\n")


@pytest.fixture
def seeded_manager(project: Path, db_url: str) -> AlembicManager:
    """The prototyping run with three data migrations in it: an INSERT, a bulk insert, code on the bind."""
    manager = AlembicManager(url=db_url, project_root=project)
    manager.init()
    steps = [*STEPS[:2], SEED_TEAM, STEPS[2], SEED_HEROES, *STEPS[3:5], JOIN_TEAM, STEPS[5]]
    for message, up, down in steps:
        info = manager.revision(message, autogenerate=False, upgrade_body=up, downgrade_body=down)
        if message == "seed heroes":
            path = Path(info.path)
            text = path.read_text()
            marker = "\n\n# revision identifiers"
            path.write_text(text.replace(marker, f"\n{HEROES_HEADER}{marker}", 1))
    return manager


def test_keep_data_carries_the_data_migrations_over_in_order(seeded_manager: AlembicManager,
                                                             db_url: str) -> None:
    revisions = ids(seeded_manager)
    seeds = [revisions[2], revisions[4], revisions[7]]
    result = seeded_manager.squash(f"{revisions[0]}:{revisions[-1]}", "prototype with data", keep_data=True)
    assert result.ok, result.checks
    assert [ok for _, ok, _ in result.checks] == [True, True, True, True]
    assert "rows" in result.checks[1][0] and "team: 1 row" in result.checks[1][2]
    new = result.revision.revision
    assert ids(seeded_manager) == [new]
    source = Path(result.revision.path).read_text()
    upgrade = source.split("def upgrade()", 1)[1].split("def downgrade()", 1)[0]
    calls = [line.strip() for line in upgrade.splitlines() if line.strip().startswith("_")]
    assert [c for c in calls if not c.startswith("_upgrade_schema")] == [f"_upgrade_{r}()" for r in seeds]
    assert "from sqlalchemy.sql import column, table" in source and "HEROES = [" in source
    assert version_rows(db_url) == []  # the run was not applied: the database is left alone
    seeded_manager.upgrade()
    assert rows(db_url, "team") == [(1, "Avengers")]
    assert sorted((r[0], r[1], r[-1]) for r in rows(db_url, "hero")) == [(1, "Tony", 1), (2, "Steve", 1)]
    seeded_manager.downgrade("base")
    assert table_names(db_url) <= {"alembic_version"}


def test_keep_data_refuses_when_the_rows_would_differ(seeded_manager: AlembicManager) -> None:
    """A default that filled the rows already there, then dropped: one add_column would leave them empty."""
    seeded_manager.revision("team score", autogenerate=False,
                            upgrade_body="op.add_column('team', sa.Column('score', sa.Integer(), "
                                         "server_default='7'))",
                            downgrade_body="with op.batch_alter_table('team') as batch:\n"
                                           "    batch.drop_column('score')")
    seeded_manager.revision("no default", autogenerate=False,
                            upgrade_body="with op.batch_alter_table('team') as batch:\n"
                                         "    batch.alter_column('score', existing_type=sa.Integer(), "
                                         "server_default=None)",
                            downgrade_body="with op.batch_alter_table('team') as batch:\n"
                                           "    batch.alter_column('score', existing_type=sa.Integer(), "
                                           "server_default='7')")
    revisions = ids(seeded_manager)
    with pytest.raises(SquashRefused, match="rows") as refused:
        seeded_manager.squash(f"{revisions[0]}:{revisions[-1]}", "x", keep_data=True)
    assert "team" in str(refused.value) and "7" in str(refused.value)
    assert ids(seeded_manager) == revisions


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_magic_takes_keep_data(shell, backend: str) -> None:
    shell.run_line_magic("migrate", "init")
    for message, up, down in (*STEPS[:1], SEED_TEAM, STEPS[1]):
        shell.run_cell(f"%%revision -m '{message}' --manual\n{up}\n# downgrade\n{down}")
    first, _, last = (r.revision for r in reversed(list(shell.run_line_magic("migrate", "history"))))
    refused = shell.run_cell(f"%migrate squash {first}:{last} -m all --yes")
    assert "--keep-data" in str(refused.error_in_exec)
    result = shell.run_line_magic("migrate", f"squash {first}:{last} -m all --keep-data --yes")
    assert "rows" in repr(result) and "[ok]" in repr(result) and "FAILED" not in repr(result)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_cli_takes_keep_data(seeded_manager: AlembicManager, project: Path, db_url: str, cli_main,
                                 backend: str) -> None:
    revisions = ids(seeded_manager)
    done = cli_main(project, db_url, "squash", f"{revisions[0]}:{revisions[-1]}", "-m", "all", "--keep-data",
                    "--yes")
    assert done.returncode == 0, done.stderr
    assert "rows" in done.stdout and len(ids(seeded_manager)) == 1


def test_a_run_that_renames_a_column_is_carried_over_with_keep_data(prototyped_manager: AlembicManager,
                                                                    db_url: str) -> None:
    """Autogenerate would write a rename as drop + add and lose the column's rows."""
    rename = ("with op.batch_alter_table('hero') as batch:\n"
              "    batch.alter_column('name', new_column_name='full_name', existing_type=sa.String(50), "
              "existing_nullable=False)")
    back = rename.replace("'name', new_column_name='full_name'", "'full_name', new_column_name='name'")
    prototyped_manager.revision("full name", autogenerate=False, upgrade_body=rename, downgrade_body=back)
    prototyped_manager.revision("hero motto", autogenerate=False,
                                upgrade_body="op.add_column('hero', sa.Column('motto', sa.String(40)))",
                                downgrade_body="with op.batch_alter_table('hero') as batch:\n"
                                               "    batch.drop_column('motto')")
    revisions = ids(prototyped_manager)
    prototyped_manager.upgrade(revisions[5])
    execute_sql(db_url, "INSERT INTO hero (id, name) VALUES (1, 'Tony')")
    with pytest.raises(SquashRefused, match="--keep-data") as refused:
        prototyped_manager.squash(f"{revisions[6]}:{revisions[-1]}", "x")
    assert "renames" in str(refused.value)
    result = prototyped_manager.squash(f"{revisions[6]}:{revisions[-1]}", "hero names", keep_data=True)
    assert result.ok
    prototyped_manager.upgrade()
    assert [(r[0], r[1]) for r in rows(db_url, "hero")] == [(1, "Tony")]
    assert "full_name" in schema_of(db_url)["hero"]
    prototyped_manager.downgrade(revisions[5])
    assert "name" in schema_of(db_url)["hero"] and [r[0] for r in rows(db_url, "hero")] == [1]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_message_reads_back_as_given(prototyped_manager: AlembicManager, backend: str) -> None:
    revisions = ids(prototyped_manager)
    message = 'he said "hi" \\o/'
    prototyped_manager.squash(f"{revisions[0]}:{revisions[1]}", message)
    assert prototyped_manager.history()[-1].message == message
