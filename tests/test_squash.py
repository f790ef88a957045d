"""`%migrate squash A:B`: one revision replaces a linear run, proven to build the same schema first."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import table_names, version_rows

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
    with pytest.raises(SquashRefused, match=f"{revisions[-1]} moves data"):
        prototyped_manager.squash(f"{revisions[0]}:{revisions[-1]}", "x")
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
