"""What users read: every result rendered as HTML (parsed, escaped, themed) and as text."""

from __future__ import annotations

import re
from datetime import datetime
from html.parser import HTMLParser

import pytest

from framefox_magic import render
from framefox_magic.results import (
    Diff,
    DiffRow,
    Graph,
    History,
    ListedRevisions,
    Outcome,
    Plan,
    RevisionInfo,
    RevisionList,
    SqlBlock,
    SqlScript,
    Status,
    TargetInfo,
)

HOSTILE = "<script>alert(1)</script> & $x$ \"quoted\" 'single'"


class Page(HTMLParser):
    """A small DOM: tags seen, their attributes, the text, and whether tags balance."""

    VOID = {"br", "img", "hr", "meta", "input", "link", "circle", "rect", "path"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] in ("style", "title"):
            return
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    def names(self) -> list[str]:
        return [tag for tag, _ in self.tags]


def parse(html: str) -> Page:
    page = Page(html)
    assert not page.stack, f"unclosed tags: {page.stack}"
    return page


def info(revision: str, **fields) -> RevisionInfo:
    defaults = {"message": f"message of {revision}", "created": datetime(2026, 1, 2, 3, 4)}
    return RevisionInfo(revision, **{**defaults, **fields})


def hostile_results() -> list[object]:
    """One of every result type, each carrying the hostile string wherever a user string goes."""
    revision = info("a1", message=HOSTILE, branch_labels=(HOSTILE,), path=HOSTILE, note=HOSTILE,
                    applied=True, current=True, head=True, source=f"# {HOSTILE}\nx = 1\n")
    diff = Diff([DiffRow("a1", "execute", HOSTILE, HOSTILE, HOSTILE, True)], HOSTILE)
    revision.diff = diff
    revision.sql = SqlScript([SqlBlock(HOSTILE, f"-- {HOSTILE}\nSELECT 1;", "a1")], "sqlite", HOSTILE)
    return [
        Status(("a1",), ("a1",), (), True, HOSTILE, []),
        Status((), ("a1",), ("a1",), False, HOSTILE, [info("a1", message=HOSTILE)]),
        History([revision], HOSTILE),
        RevisionList([revision], HOSTILE, title=HOSTILE),
        diff,
        revision,
        revision.sql,
        Outcome(HOSTILE, HOSTILE, [revision], [HOSTILE], None, HOSTILE, [HOSTILE]),
        Plan("upgrade", HOSTILE, [revision], {"a1": diff}),
        TargetInfo(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, False),
        Graph([revision], HOSTILE),
    ]


@pytest.mark.parametrize("result", hostile_results(), ids=lambda r: type(r).__name__)
def test_every_renderer_escapes_user_strings(result: object) -> None:
    html = result._repr_html_()
    page = parse(html)
    assert "script" not in page.names(), "a user string became a <script> element"
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in page.all_text or "alert(1)" in page.all_text


@pytest.mark.parametrize("result", hostile_results(), ids=lambda r: type(r).__name__)
def test_every_result_is_wrapped_against_mathjax_and_themed(result: object) -> None:
    page = parse(result._repr_html_())
    outer_tag, outer = page.tags[0]
    assert outer_tag == "div"
    assert {"ffm", "tex2jax_ignore", "mathjax_ignore"} <= set(outer["class"].split())
    assert "--jp-ui-font-color1" in render.STYLE and "--jp-layout-color0" in render.STYLE


@pytest.mark.parametrize("result", hostile_results(), ids=lambda r: type(r).__name__)
def test_plain_text_is_readable_and_has_no_markup(result: object) -> None:
    text = repr(result)
    assert text.strip()
    assert "<div" not in text and "<table" not in text


def test_status_badge_says_up_to_date_or_pending_or_heads() -> None:
    up = parse(Status(("b",), ("b",), (), True, "sqlite://", [])._repr_html_()).all_text
    pending = parse(Status(("a",), ("b",), ("b",), False, "sqlite://", [info("b")])._repr_html_()).all_text
    heads = parse(Status((), ("b", "c"), ("b", "c"), False, "sqlite://", [])._repr_html_()).all_text
    assert "up to date" in up
    assert "1 pending" in pending and "message of b" in pending
    assert "2 heads" in heads


def test_status_shows_the_masked_url_it_was_given() -> None:
    html = Status((), (), (), True, "postgresql://me:***@db/app", [])._repr_html_()
    assert "postgresql://me:***@db/app" in parse(html).all_text


def test_history_marks_current_applied_pending_head_merge_branch_and_base() -> None:
    history = History([
        info("m", parents=("b", "c"), head=True),
        info("c", parents=("a",), children=("m",), applied=True, current=True),
        info("b", parents=("a",), children=("m",), applied=True),
        info("a", parents=(), children=("b", "c"), applied=True),
    ])
    page = parse(history._repr_html_())
    rows = [cells for cells in _rows(history._repr_html_())]
    assert rows[0][:2] == ["pendingheadmerge", "m"]
    assert "current" in rows[1][0] and "applied" in rows[2][0] and "branch" in rows[3][0]
    assert rows[3][2] == "<base>"
    assert "4 revisions, 3 applied" in page.all_text


def _rows(html: str) -> list[list[str]]:
    """The body rows of the first table, as lists of cell texts."""

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.in_body = self.in_cell = False

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "tbody":
                self.in_body = True
            elif tag == "tr" and self.in_body:
                self.rows.append([])
            elif tag == "td" and self.in_body:
                self.rows[-1].append("")
                self.in_cell = True

        def handle_endtag(self, tag: str) -> None:
            if tag == "td":
                self.in_cell = False
            if tag == "tbody":
                self.in_body = False

        def handle_data(self, data: str) -> None:
            if self.in_cell:
                self.rows[-1][-1] += data

    parser = Cells()
    parser.feed(html)
    return parser.rows


def test_diff_marks_destructive_rows() -> None:
    diff = Diff([
        DiffRow("a", "add_column", "hero", "age", "INTEGER", False),
        DiffRow("a", "drop_column", "hero", "name", "", True),
    ])
    html = diff._repr_html_()
    page = parse(html)
    rows = [attrs for tag, attrs in page.tags if tag == "tr"]
    assert [attrs.get("class") for attrs in rows[1:]] == ["", "destructive"]
    assert "1 destructive" in page.all_text
    assert "!" in repr(diff).splitlines()[-1]


def test_empty_diff_says_no_changes() -> None:
    assert "No schema changes" in parse(Diff([], "Models vs database")._repr_html_()).all_text
    assert "no schema changes" in repr(Diff([], "Models vs database"))


def test_show_highlights_source_and_sql_with_pygments() -> None:
    revision = info("a1", source="def upgrade():\n    op.drop_table('x')\n")
    revision.sql = SqlScript([SqlBlock("Upgrade -> a1", "DROP TABLE x;", "a1")], "postgresql")
    page = parse(revision._repr_html_())
    highlighted = [attrs for tag, attrs in page.tags if tag == "div" and attrs.get("class") == "hl"]
    assert len(highlighted) == 2
    assert any(tag == "span" and attrs.get("class") == "k" for tag, attrs in page.tags)  # 'def' keyword
    assert "DROP TABLE x;" in page.all_text


def linear(count: int, current: int) -> list[RevisionInfo]:
    """count revisions r0..r{count-1}, newest first; r{current} is the database's."""
    revisions = []
    for index in reversed(range(count)):
        revisions.append(info(
            f"r{index}",
            parents=(f"r{index - 1}",) if index else (),
            children=(f"r{index + 1}",) if index < count - 1 else (),
            applied=index <= current, current=index == current, head=index == count - 1,
        ))
    return revisions


def _svg_nodes(html: str) -> dict[str, dict[str, str]]:
    page = parse(html)
    nodes = {}
    current_group = None
    for tag, attrs in page.tags:
        if tag == "g" and attrs.get("data-revision"):
            current_group = attrs["data-revision"]
        elif tag == "circle" and current_group and "node" in attrs.get("class", ""):
            nodes[current_group] = attrs
    return nodes


def test_graph_of_a_linear_history_is_one_lane_with_states() -> None:
    html = Graph(linear(5, 2))._repr_html_()
    assert "<svg" in html and "<script" not in html
    nodes = _svg_nodes(html)
    assert set(nodes) == {f"r{i}" for i in range(5)}
    assert len({attrs["cx"] for attrs in nodes.values()}) == 1
    assert "current" in nodes["r2"]["class"]
    assert "pending" in nodes["r4"]["class"] and "applied" in nodes["r0"]["class"]


def test_graph_of_a_branch_and_merge_uses_two_lanes() -> None:
    revisions = [
        info("m", parents=("b", "c"), head=True),
        info("c", parents=("a",), children=("m",)),
        info("b", parents=("a",), children=("m",)),
        info("a", children=("b", "c"), applied=True, current=True),
    ]
    nodes = _svg_nodes(Graph(revisions)._repr_html_())
    assert nodes["b"]["cx"] != nodes["c"]["cx"]
    assert nodes["m"]["cx"] == nodes["a"]["cx"]
    page = parse(Graph(revisions)._repr_html_())
    assert sum(1 for tag, _ in page.tags if tag == "path") == 4  # m-b, m-c, b-a, c-a


def test_graph_of_two_heads_keeps_both_visible() -> None:
    revisions = [
        info("x", parents=("a",), head=True),
        info("y", parents=("a",), head=True),
        info("a", children=("x", "y"), applied=True, current=True),
    ]
    nodes = _svg_nodes(Graph(revisions)._repr_html_())
    assert nodes["x"]["cx"] != nodes["y"]["cx"]


def test_graph_of_500_revisions_folds_straight_runs_and_scrolls() -> None:
    html = Graph(linear(500, 250))._repr_html_()
    page = parse(html)
    nodes = _svg_nodes(html)
    assert len(nodes) < 40
    assert {"r499", "r250", "r0"} <= set(nodes)  # the head, the current one and the base stay
    assert "revisions in a straight line" in page.all_text
    assert any(tag == "div" and attrs.get("class") == "scroll" for tag, attrs in page.tags)


def branched_headers(count: int) -> list[tuple]:
    """Listing headers, newest first: a main line with a side branch opened and merged back every 60
    revisions, and a branch label; each (revision, parents, message, created, path, branch_labels,
    depends_on, head, children)."""
    made: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    for index in range(count):
        parents = (f"m{index - 1}",) if index else ()
        if index % 60 == 3 and index > 3:
            parents = (f"m{index - 1}", f"s{index - 3}")
        made.append((f"m{index}", parents, ("stable",) if index == 100 else ()))
        if index % 60 == 0 and index:
            made.append((f"s{index}", (f"m{index}",), ()))
    children: dict[str, list[str]] = {}
    for revision, parents, _ in made:
        for parent in parents:
            children.setdefault(parent, []).append(revision)
    return [(revision, parents, "step", None, "", labels, (), not children.get(revision),
             tuple(children.get(revision, ()))) for revision, parents, labels in reversed(made)]


def test_a_graph_drawn_without_building_its_listing_equals_the_graph_of_the_whole_list() -> None:
    headers = branched_headers(400)
    applied = {revision for revision, *_ in headers[250:]}
    drawn = Graph(ListedRevisions(headers, applied, ("m150",)))._repr_html_()
    assert drawn == Graph(list(ListedRevisions(headers, applied, ("m150",))))._repr_html_()
    nodes = _svg_nodes(drawn)
    assert {"m399", "m150", "m100", "m60", "s60", "m63", "m0"} <= set(nodes) and len(nodes) < 100
    assert "current" in nodes["m150"]["class"]
    # drawn again: the same; once the database moves, the layout follows it
    assert Graph(ListedRevisions(headers, applied, ("m150",)))._repr_html_() == drawn
    moved = _svg_nodes(Graph(ListedRevisions(headers, applied | {"m300"}, ("m300",)))._repr_html_())
    assert "current" in moved["m300"]["class"] and "m150" not in moved


def test_progress_bar_escapes_and_counts() -> None:
    page = parse(render.progress_html("upgrade", 3, 10, "abc", HOSTILE))
    assert ("progress", {"value": "3", "max": "10", "style": "width:16em"}) in page.tags
    assert "3/10" in page.all_text and "<script>" not in render.progress_html("u", 1, 2, "a", HOSTILE)


def test_a_long_history_shows_the_newest_the_oldest_and_the_current_and_says_where_the_rest_is() -> None:
    history = History(linear(5000, 1200), "sqlite:///app.db")
    html = history._repr_html_()
    rows = _rows(html)
    shown = [row[1] for row in rows if row[1]]
    # as pandas draws a long frame (display.min_rows 10): the first 5, the last 5; and the database's
    assert shown == ["r4999", "r4998", "r4997", "r4996", "r4995", "r1200", "r4", "r3", "r2", "r1", "r0"]
    gaps = [row[0] for row in rows if not row[1]]
    assert gaps == ["… 3,794 revisions not shown …", "… 1,195 revisions not shown …"]
    text = parse(html).all_text
    assert "Showing 11 of 5,000 revisions" in text and "to_frame()" in text
    assert "display.max_rows" in text and "display.min_rows" in text
    assert len(history.to_frame()) == 5000  # the rest is one call away
    assert "r2500" in repr(history)  # the plain text lists every revision


def test_a_long_history_follows_pandas_display_options() -> None:
    import pandas as pd

    history = History(linear(200, 100), "sqlite:///app.db")
    with pd.option_context("display.max_rows", None):
        assert len(_rows(history._repr_html_())) == 200 and "Showing" not in history._repr_html_()
    with pd.option_context("display.max_rows", 300):
        assert len(_rows(history._repr_html_())) == 200
    with pd.option_context("display.min_rows", 20):
        shown = [row[1] for row in _rows(history._repr_html_()) if row[1]]
        newest, oldest = [f"r{i}" for i in range(199, 189, -1)], [f"r{i}" for i in range(9, -1, -1)]
        assert shown == [*newest, "r100", *oldest]
    with pd.option_context("display.max_rows", 8, "display.min_rows", 20):  # min_rows above max_rows
        shown = [row[1] for row in _rows(history._repr_html_()) if row[1]]
        assert shown == ["r199", "r198", "r197", "r196", "r100", "r3", "r2", "r1", "r0"]
    frame = history.to_frame()
    assert len(frame) == 200
    with pd.option_context("display.max_rows", 60, "display.min_rows", 10):  # the frame shows the same
        in_frame = re.findall(r"<td>(r\d+)</td>", frame._repr_html_())
        ours = [row[1] for row in _rows(history._repr_html_()) if row[1]]
        assert in_frame == [revision for revision in ours if revision != "r100"]


def test_a_history_of_60_revisions_is_shown_whole() -> None:
    html = History(linear(60, 30), "sqlite:///app.db")._repr_html_()
    assert [row[1] for row in _rows(html)] == [f"r{index}" for index in range(59, -1, -1)]
    assert "not shown" not in html and "Showing" not in html
