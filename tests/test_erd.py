"""`%migrate erd`: the schema drawn, of the database or at a revision, with one revision's changes marked."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from framefox_magic.manager import AlembicManager
from framefox_magic.results import Erd
from framefox_magic.schema import ColumnShape, TableShape

TEAM = ("op.create_table('team', sa.Column('id', sa.Integer(), primary_key=True), "
        "sa.Column('name', sa.String(50), nullable=False))")
HERO = ("op.create_table('hero', sa.Column('id', sa.Integer(), primary_key=True), "
        "sa.Column('name', sa.String(50)), sa.Column('secret', sa.String(20)), "
        "sa.Column('team_id', sa.Integer(), sa.ForeignKey('team.id')))")
DROP_SECRET = "with op.batch_alter_table('hero') as batch:\n    batch.drop_column('secret')"
ADD_SECRET = "op.add_column('hero', sa.Column('secret', sa.String(20)))"


@pytest.fixture
def applied_manager(project: Path, db_url: str) -> AlembicManager:
    """Three revisions: team, hero (a foreign key to team), then hero loses a column; all applied."""
    manager = AlembicManager(url=db_url, project_root=project)
    manager.init()
    for message, up, down in (("create team", TEAM, "op.drop_table('team')"),
                              ("create hero", HERO, "op.drop_table('hero')"),
                              ("drop secret", DROP_SECRET, ADD_SECRET)):
        manager.revision(message, autogenerate=False, upgrade_body=up, downgrade_body=down)
    manager.upgrade()
    return manager


def columns(erd: Erd) -> dict[str, dict[str, object]]:
    """The diagram's rows by 'table.column'."""
    frame = erd.to_frame()
    return {f"{row['table']}.{row['column']}": dict(row) for _, row in frame.iterrows()}


def test_erd_of_the_database_reads_tables_columns_and_keys(applied_manager: AlembicManager) -> None:
    erd = applied_manager.erd()
    rows = columns(erd)
    assert [t.name for t in erd.tables] == ["hero", "team"]  # the version table is not drawn
    assert set(rows) == {"hero.id", "hero.name", "hero.team_id", "team.id", "team.name"}
    assert rows["hero.team_id"]["references"] == "team.id"
    assert rows["team.id"]["primary_key"] and not rows["team.name"]["nullable"]
    assert "VARCHAR(50)" in str(rows["team.name"]["type"]).upper()
    assert erd.removed == ["hero.secret"]  # what the current revision took away


def test_erd_at_a_revision_is_the_schema_then_with_its_changes_marked(
    applied_manager: AlembicManager,
) -> None:
    second = applied_manager.history()[1]
    assert second.message == "create hero"
    erd = applied_manager.erd(second.revision)
    rows = columns(erd)
    assert "hero.secret" in rows  # still there at that revision
    assert erd.change("hero") == "added" and erd.change("team") == ""
    assert rows["hero.team_id"]["change"] == "added" and rows["team.id"]["change"] == ""
    first = applied_manager.erd(applied_manager.history()[2].revision)
    assert [t.name for t in first.tables] == ["team"]


def test_a_revision_that_cannot_be_replayed_is_named_in_a_note(applied_manager: AlembicManager) -> None:
    applied_manager.revision("read the database", autogenerate=False,
                     upgrade_body="count = op.get_bind().execute(sa.text('SELECT 1')).scalar()")
    erd = applied_manager.erd("head")
    assert [t.name for t in erd.tables] == ["hero", "team"]
    assert len(erd.notes) == 1 and "not drawn" in erd.notes[0]


class _Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svg += tag == "svg"
        self.tables += [value or "" for name, value in attrs if name == "data-table"]


def test_the_magic_draws_every_table_escaped(shell, db_url: str) -> None:
    shell.run_line_magic("migrate", f"init --url {db_url}")
    hostile = "op.create_table('<b>x</b>', sa.Column('id', sa.Integer(), primary_key=True))"
    shell.run_line_magic("migrate", "revision -m t --rev-id r1")
    path = next(Path("migrations/versions").glob("r1*.py"))
    path.write_text(path.read_text().replace("    pass\n", f"    {hostile}\n", 1))
    shell.run_line_magic("migrate", "upgrade")
    erd = shell.run_line_magic("migrate", "erd")
    html = erd._repr_html_()
    parser = _Svg()
    parser.feed(html)
    assert parser.svg == 1 and parser.tables == ["<b>x</b>"]
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" in repr(erd)
    at_revision = shell.run_line_magic("migrate", "erd r1")
    assert [t.name for t in at_revision.tables] == ["<b>x</b>"]


def test_sixty_tables_are_all_drawn_grouped_and_scrollable() -> None:
    tables = [TableShape(f"t{i}", [ColumnShape("id", "INTEGER", False, True),
                                   ColumnShape("parent_id", "INTEGER", True, False,
                                               f"t{i // 2}.id" if i else None)]) for i in range(60)]
    tables += [TableShape("loner", [ColumnShape("id", "INTEGER", False, True)])]
    html = Erd(tables, "big")._repr_html_()
    parser = _Svg()
    parser.feed(html)
    assert sorted(parser.tables) == sorted(t.name for t in tables)
    assert 'class="scroll"' in html and html.count('class="rel"') == 59
    assert len(re.findall(r'class="grp"', html)) == 1  # the 60 related tables in one frame; the loner alone
