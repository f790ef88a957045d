"""Every piece of HTML (and the plain text twin of each): escaped, themed, MathJax-proof."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """'1 revision', '2 revisions': a count with its noun in the right number."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"


# Table rules carry two classes (.ffm .ffm-t) to outrank JupyterLab's own output-table rules.
STYLE = """<style>
.ffm{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-ui-font-size1,13px);
 color:var(--jp-ui-font-color1,#1f2328);line-height:1.45}
.ffm table.ffm-t{border-collapse:collapse;margin:4px 0;font-size:inherit}
.ffm .ffm-t th{text-align:left;font-weight:600;border-bottom:1px solid var(--jp-border-color1,#8c959f);
 padding:3px 10px 3px 0;background:none;color:var(--jp-ui-font-color1,#1f2328)}
.ffm .ffm-t td{text-align:left;vertical-align:top;padding:3px 10px 3px 0;border-bottom:1px solid
 var(--jp-border-color2,#d0d7de);background:none;color:inherit}
.ffm .ffm-t tbody tr:nth-child(odd){background:none}
.ffm .ffm-t tr.pending td{color:var(--jp-ui-font-color2,#57606a);font-style:italic}
.ffm .ffm-t tr.destructive td{color:var(--jp-error-color1,#cf222e)}
.ffm code,.ffm pre,.ffm .rev{font-family:var(--jp-code-font-family,ui-monospace,monospace);
 font-size:var(--jp-code-font-size,12px)}
.ffm pre{margin:4px 0;padding:6px 8px;background:var(--jp-layout-color2,#f6f8fa);
 border-radius:4px;overflow:auto;max-height:32em;color:var(--jp-content-font-color1,#1f2328)}
.ffm h4{margin:8px 0 4px;font-size:1.05em;color:var(--jp-ui-font-color1,#1f2328)}
.ffm .badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;margin-right:8px}
.ffm .ok{background:var(--jp-success-color3,#dafbe1);color:var(--jp-success-color0,#116329)}
.ffm .warn{background:var(--jp-warn-color3,#fff8c5);color:var(--jp-warn-color0,#7d4e00)}
.ffm .bad{background:var(--jp-error-color3,#ffebe9);color:var(--jp-error-color0,#a40e26)}
.ffm .info{background:var(--jp-info-color3,#ddf4ff);color:var(--jp-info-color0,#0a3069)}
.ffm .muted{color:var(--jp-ui-font-color2,#57606a)}
.ffm .mark{font-size:0.85em;padding:0 5px;border-radius:8px;margin-right:3px;white-space:nowrap}
.ffm dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:4px 0}
.ffm dt{font-weight:600}.ffm dd{margin:0}
.ffm .scroll{max-height:640px;overflow:auto}
.ffm .hl .k,.ffm .hl .kn,.ffm .hl .kd,.ffm .hl .ow{color:var(--jp-mirror-editor-keyword-color,#008000);
 font-weight:600}
.ffm .hl .s,.ffm .hl .s1,.ffm .hl .s2,.ffm .hl .sd,.ffm .hl .sa,.ffm .hl .se{
 color:var(--jp-mirror-editor-string-color,#ba2121)}
.ffm .hl .c,.ffm .hl .c1,.ffm .hl .cm,.ffm .hl .ch{color:var(--jp-mirror-editor-comment-color,#408080);
 font-style:italic}
.ffm .hl .m,.ffm .hl .mi,.ffm .hl .mf{color:var(--jp-mirror-editor-number-color,#080)}
.ffm .hl .nf,.ffm .hl .nc{color:var(--jp-mirror-editor-def-color,#00f)}
.ffm .hl .nb,.ffm .hl .bp{color:var(--jp-mirror-editor-builtin-color,#008000)}
.ffm .hl .o{color:var(--jp-mirror-editor-operator-color,#aa22ff)}
.ffm .hl .nd{color:var(--jp-mirror-editor-meta-color,#aa22ff)}
.ffm svg text{font-family:var(--jp-code-font-family,ui-monospace,monospace);font-size:12px;
 fill:var(--jp-ui-font-color1,#1f2328)}
.ffm svg .edge{stroke:var(--jp-ui-font-color2,#8c959f);stroke-width:1.5;fill:none}
.ffm svg .node{stroke:var(--jp-brand-color1,#0969da);stroke-width:2;fill:var(--jp-brand-color1,#0969da)}
.ffm svg .node.pending{fill:var(--jp-layout-color0,#fff)}
.ffm svg .node.current{stroke:var(--jp-success-color1,#1a7f37);fill:var(--jp-success-color1,#1a7f37)}
.ffm svg .ring{stroke:var(--jp-success-color1,#1a7f37);stroke-width:2;fill:none}
.ffm svg .folded{fill:var(--jp-layout-color2,#eaeef2);stroke:var(--jp-border-color1,#8c959f)}
.ffm svg text.muted{fill:var(--jp-ui-font-color2,#57606a)}
.ffm svg text.head{font-weight:700}
</style>"""


def _e(value: Any) -> str:
    """Escape anything for HTML; None shows as nothing."""
    return "" if value is None else escape(str(value), quote=True)


def _wrap(body: str) -> str:
    """The outer element: theme-aware styles, and classes that tell MathJax to leave `$` alone."""
    return f'<div class="ffm tex2jax_ignore mathjax_ignore">{STYLE}{body}</div>'


def _badge(label: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(label)}</span>'


def _mark(label: str, kind: str, title: str = "") -> str:
    return f'<span class="mark {kind}" title="{_e(title)}">{_e(label)}</span>'


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    """An HTML table; every cell must already be escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{css}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        for css, cells in rows
    )
    return f'<table class="ffm-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _parents(parents: Sequence[str]) -> str:
    return ", ".join(parents) if parents else "<base>"


def highlight(code: str, language: str = "python") -> str:
    """Code as highlighted HTML (pygments escapes it); colours follow the notebook theme."""
    from pygments import highlight as pygmentize
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer, SqlLexer

    lexer = SqlLexer() if language == "sql" else PythonLexer()
    return pygmentize(code, lexer, HtmlFormatter(cssclass="hl", wrapcode=True))


# ---------------------------------------------------------------- revision marks


def _marks(info: Any) -> list[tuple[str, str, str]]:
    """(label, css kind, explanation) for the flags of one revision."""
    marks = []
    if info.current:
        marks.append(("current", "ok", "the database is at this revision"))
    elif info.applied:
        marks.append(("applied", "info", "applied to the database"))
    else:
        marks.append(("pending", "warn", "not applied yet"))
    if info.head:
        marks.append(("head", "info", "newest revision of its branch"))
    if info.is_merge:
        marks.append(("merge", "info", "joins " + ", ".join(info.parents)))
    if info.is_branch_point:
        marks.append(("branch", "warn", "several revisions grow from here"))
    marks.extend((f"@{label}", "info", "branch label") for label in info.branch_labels)
    return marks


def _revision_rows(revisions: Iterable[Any], flags: bool = True) -> list[tuple[str, list[str]]]:
    rows = []
    for info in revisions:
        marks = "".join(_mark(*m) for m in _marks(info)) if flags else ""
        css = "" if (info.applied or not flags) else "pending"
        rows.append((css, [
            marks,
            f'<span class="rev">{_e(info.revision)}</span>',
            f'<span class="rev">{_e(_parents(info.parents))}</span>',
            _e(info.message),
            _e(_when(info.created)),
        ]))
    return rows


_REVISION_HEADERS = ("", "revision", "parents", "message", "created")


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table for terminals."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [min(max(len(row[i]) for row in cells), 60) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c[:60].ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _text_flags(info: Any) -> str:
    return ",".join(label for label, _, _ in _marks(info))


def _text_revisions(revisions: Iterable[Any]) -> str:
    return _text_table(
        ("flags", "revision", "parents", "message", "created"),
        [(_text_flags(r), r.revision, _parents(r.parents), r.message, _when(r.created)) for r in revisions],
    )


# ---------------------------------------------------------------- one renderer per result


def _status_badge(status: Any) -> str:
    """The one badge: several heads, no revisions yet, up to date, or N pending."""
    if len(status.heads) > 1:
        return _badge(f"{len(status.heads)} heads", "warn")
    if not status.heads:
        return _badge("no revisions yet", "info")
    if status.up_to_date:
        return _badge("up to date", "ok")
    return _badge(f"{len(status.pending)} pending", "warn")


def status_html(status: Any) -> str:
    """A badge (up to date / N pending / several heads), where the database is, the pending list."""
    badge = _status_badge(status)
    facts = (
        f"<dl><dt>database</dt><dd><code>{_e(status.url)}</code></dd>"
        f"<dt>current</dt><dd><code>{_e(', '.join(status.current) or '<base>')}</code></dd>"
        f"<dt>heads</dt><dd><code>{_e(', '.join(status.heads) or '-')}</code></dd></dl>"
    )
    pending = ""
    if status.pending_revisions:
        pending = "<h4>Pending, in order</h4>" + _table(
            _REVISION_HEADERS, _revision_rows(status.pending_revisions)
        )
    return _wrap(f"<div>{badge}</div>{facts}{pending}")


def status_text(status: Any) -> str:
    state = "up to date" if status.up_to_date else f"{len(status.pending)} pending"
    if len(status.heads) > 1:
        state += f", {len(status.heads)} heads"
    lines = [
        f"Status: {state}",
        f"  database: {status.url}",
        f"  current:  {', '.join(status.current) or '<base>'}",
        f"  heads:    {', '.join(status.heads) or '-'}",
    ]
    if status.pending_revisions:
        lines += ["", "Pending, in order:", _text_revisions(status.pending_revisions)]
    return "\n".join(lines)


def history_html(history: Any) -> str:
    """Every revision with its applied / current / head / branch / merge marks."""
    if not history.revisions:
        return _wrap('<p class="muted">No revisions yet.</p>')
    applied = sum(r.applied for r in history.revisions)
    title = f"<h4>History: {counted(len(history.revisions), 'revision')}, {applied} applied</h4>"
    body = _table(_REVISION_HEADERS, _revision_rows(history.revisions))
    return _wrap(f'{title}<div class="scroll">{body}</div>')


def history_text(history: Any) -> str:
    if not history.revisions:
        return "No revisions yet."
    return f"History ({len(history.revisions)} revisions, newest first)\n" + _text_revisions(history)


def revisionlist_html(listing: Any) -> str:
    if not listing.revisions:
        return _wrap(f"<h4>{_e(listing.title)}</h4><p class='muted'>none</p>")
    return _wrap(f"<h4>{_e(listing.title)}</h4>" + _table(_REVISION_HEADERS, _revision_rows(listing)))


def revisionlist_text(listing: Any) -> str:
    if not listing.revisions:
        return f"{listing.title}: none"
    return f"{listing.title}\n" + _text_revisions(listing)


def diff_html(diff: Any) -> str:
    """The operations table; destructive rows are marked."""
    if not diff.rows:
        return _wrap(f"<h4>{_e(diff.title)}</h4><p class='muted'>No schema changes.</p>")
    show_revision = len({row.revision for row in diff.rows}) > 1
    headers = (("revision",) if show_revision else ()) + ("", "op", "table", "target", "detail")
    rows = []
    for row in diff.rows:
        warning = _mark("destructive", "bad", "can lose data") if row.destructive else ""
        cells = [f'<span class="rev">{_e(row.revision)}</span>'] if show_revision else []
        cells += [warning, f"<code>{_e(row.op)}</code>", _e(row.table), _e(row.target), _e(row.detail)]
        rows.append(("destructive" if row.destructive else "", cells))
    count = sum(row.destructive for row in diff.rows)
    summary = _badge(counted(len(diff.rows), "operation"), "info")
    if count:
        summary += _badge(f"{count} destructive", "bad")
    return _wrap(f"<h4>{_e(diff.title)}</h4><div>{summary}</div>" + _table(headers, rows))


def diff_text(diff: Any) -> str:
    if not diff.rows:
        return f"{diff.title}: no schema changes."
    rows = [
        ("!" if r.destructive else "", r.revision or "", r.op, r.table or "", r.target or "", r.detail)
        for r in diff.rows
    ]
    return f"{diff.title}\n" + _text_table(("", "revision", "op", "table", "target", "detail"), rows)


def revisioninfo_html(info: Any) -> str:
    """One revision: header, highlighted source, its operations and its SQL."""
    marks = "".join(_mark(*m) for m in _marks(info)) if (info.applied or info.current) else ""
    facts = [
        ("revision", f'<span class="rev">{_e(info.revision)}</span> {marks}'),
        ("message", _e(info.message)),
        ("parents", f'<span class="rev">{_e(_parents(info.parents))}</span>'),
        ("created", _e(_when(info.created))),
        ("file", f"<code>{_e(info.path)}</code>"),
    ]
    if info.branch_labels:
        facts.append(("branch labels", _e(", ".join(info.branch_labels))))
    if info.depends_on:
        facts.append(("depends on", _e(", ".join(info.depends_on))))
    if info.note:
        facts.append(("note", _e(info.note)))
    parts = ["<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    if info.diff is not None:
        parts.append(_unwrap(diff_html(info.diff)))
    if info.source is not None:
        parts.append("<h4>Source</h4>" + highlight(info.source))
    if info.sql is not None:
        parts.append(f"<h4>SQL ({_e(info.sql.dialect)})</h4>" + highlight(info.sql.text, "sql"))
    return _wrap("".join(parts))


def revisioninfo_text(info: Any) -> str:
    lines = [
        f"Revision {info.revision}: {info.message}",
        f"  parents: {_parents(info.parents)}",
        f"  created: {_when(info.created)}",
        f"  file:    {info.path}",
    ]
    if info.note:
        lines.append(f"  note:    {info.note}")
    if info.diff is not None:
        lines += ["", diff_text(info.diff)]
    if info.source is not None:
        lines += ["", info.source]
    return "\n".join(lines)


def sqlscript_html(script: Any) -> str:
    """The SQL per revision, highlighted."""
    if not script.blocks:
        return _wrap(f"<h4>{_e(script.title)}</h4><p class='muted'>No SQL.</p>")
    parts = [f"<h4>{_e(script.title)} ({_e(script.dialect)})</h4>"]
    for block in script.blocks:
        parts.append(f"<div class='muted'>{_e(block.label)}</div>" + highlight(block.sql, "sql"))
    return _wrap("".join(parts))


def sqlscript_text(script: Any) -> str:
    return script.text or "-- no SQL"


def outcome_html(outcome: Any) -> str:
    """What a command did: its summary, the revisions it ran, warnings, files, a backup."""
    kind = "warn" if outcome.warnings else "ok"
    parts = [f"<div>{_badge(outcome.action, kind)}{_e(outcome.summary)}</div>"]
    parts += [f"<div class='muted'>&#9888; {_e(w)}</div>" for w in outcome.warnings]
    if outcome.backup:
        parts.append(f"<div class='muted'>Backup of the database: <code>{_e(outcome.backup)}</code></div>")
    if outcome.steps:
        parts.append(_table(_REVISION_HEADERS, _revision_rows(outcome.steps, flags=False)))
    if outcome.files:
        parts.append("<ul>" + "".join(f"<li><code>{_e(f)}</code></li>" for f in outcome.files) + "</ul>")
    return _wrap("".join(parts))


def outcome_text(outcome: Any) -> str:
    lines = [outcome.summary, *(f"warning: {w}" for w in outcome.warnings)]
    if outcome.backup:
        lines.append(f"backup: {outcome.backup}")
    lines += [f"  {s.revision}  {s.message}" for s in outcome.steps]
    lines += [f"  {f}" for f in outcome.files]
    return "\n".join(lines)


def plan_html(plan: Any) -> str:
    """The revisions that would run, in order, destructive ones flagged; nothing was changed."""
    steps = counted(len(plan.steps), "revision")
    title = f"<h4>Plan: {_e(plan.direction)} to {_e(plan.target)} ({steps})</h4>"
    if not plan.steps:
        return _wrap(title + "<p class='muted'>Nothing to do.</p>")
    rows = []
    for index, step in enumerate(plan.steps, 1):
        diff = plan.diffs.get(step.revision)
        ops = ", ".join(dict.fromkeys(r.op for r in diff.rows)) if diff else ""
        danger = diff is not None and diff.destructive
        rows.append(("destructive" if danger else "", [
            str(index),
            _mark("destructive", "bad", "can lose data") if danger else "",
            f'<span class="rev">{_e(step.revision)}</span>',
            _e(step.message),
            _e(ops),
        ]))
    note = "<p class='muted'>Nothing has been changed.</p>"
    return _wrap(title + _table(("#", "", "revision", "message", "operations"), rows) + note)


def plan_text(plan: Any) -> str:
    rows = [
        (i, "!" if plan.diffs.get(s.revision) and plan.diffs[s.revision].destructive else "",
         s.revision, s.message)
        for i, s in enumerate(plan.steps, 1)
    ]
    head = f"Plan: {plan.direction} to {plan.target} ({len(plan.steps)} revisions); nothing changed"
    return head + ("\n" + _text_table(("#", "", "revision", "message"), rows) if rows else "")


def targetinfo_html(info: Any) -> str:
    state = _badge("initialized", "ok") if info.initialized else _badge("not initialized", "warn")
    rows = [
        ("", ["database", f"<code>{_e(info.url)}</code>", _e(info.url_source)]),
        ("", ["migrations", f"<code>{_e(info.migrations_dir)}</code>", _e(info.dir_source)]),
        ("", ["metadata", f"<code>{_e(info.metadata)}</code>", ""]),
    ]
    return _wrap(f"<div>{state}</div>" + _table(("setting", "value", "from"), rows))


def targetinfo_text(info: Any) -> str:
    return "\n".join([
        f"database:   {info.url}  ({info.url_source})",
        f"migrations: {info.migrations_dir}  ({info.dir_source})"
        + ("" if info.initialized else "  [not initialized]"),
        f"metadata:   {info.metadata}",
    ])


def _unwrap(fragment: str) -> str:
    """A rendered fragment without its outer wrapper, for nesting inside another."""
    opening = f'<div class="ffm tex2jax_ignore mathjax_ignore">{STYLE}'
    return fragment.removeprefix(opening).removesuffix("</div>")


_HTML: dict[str, Callable[[Any], str]] = {
    "Status": status_html,
    "History": history_html,
    "RevisionList": revisionlist_html,
    "Diff": diff_html,
    "RevisionInfo": revisioninfo_html,
    "SqlScript": sqlscript_html,
    "Outcome": outcome_html,
    "Plan": plan_html,
    "TargetInfo": targetinfo_html,
}
_TEXT: dict[str, Callable[[Any], str]] = {
    "Status": status_text,
    "History": history_text,
    "RevisionList": revisionlist_text,
    "Diff": diff_text,
    "RevisionInfo": revisioninfo_text,
    "SqlScript": sqlscript_text,
    "Outcome": outcome_text,
    "Plan": plan_text,
    "TargetInfo": targetinfo_text,
}


def html(result: Any) -> str:
    """The HTML of any result object."""
    return _HTML[type(result).__name__](result)


def text(result: Any) -> str:
    """The plain text of any result object."""
    return _TEXT[type(result).__name__](result)


def progress_html(verb: str, done: int, total: int, revision: str, message: str) -> str:
    """A progress bar for a long upgrade or downgrade."""
    bar = f'<progress value="{done}" max="{total}" style="width:16em"></progress>'
    return _wrap(f"<div>{bar} {_e(verb)} {done}/{total}: <span class='rev'>{_e(revision)}</span> "
                 f"{_e(message)}</div>")


def error_html(message: str) -> str:
    """A short error, for the panel's output area."""
    return _wrap(f"<div>{_badge('error', 'bad')}{_e(message)}</div>")


# ---------------------------------------------------------------- the panel's small pieces


def status_badge_html(status: Any) -> str:
    """The panel's header line: the status badge, the database's revision and its masked URL."""
    current = ", ".join(status.current) or "<base>"
    return _wrap(f"<div>{_status_badge(status)}<span class='muted'>database at</span> "
                 f"<code>{_e(current)}</code> <span class='muted'>&middot; {_e(status.url)}</span></div>")


def note_html(message: str, title: str | None = None) -> str:
    """A short muted note under an optional heading, for the panel's empty or waiting views."""
    heading = f"<h4>{_e(title)}</h4>" if title else ""
    return _wrap(f"{heading}<p class='muted'>{_e(message)}</p>")


def revision_label(info: Any) -> str:
    """One revision as a line of plain text (for pickers): id, message, flags."""
    message = info.message if len(info.message) <= 60 else info.message[:59] + "\u2026"
    return f"{info.revision}  {message}  ({_text_flags(info)})"


# ---------------------------------------------------------------- the revision graph

ROW_HEIGHT = 22
LANE_WIDTH = 16
FOLD_AT = 40  # graphs larger than this fold long straight runs
FOLD_KEEP = 2  # revisions kept visible at each end of a folded run


class _Node:
    """One drawn row: a revision, or a fold standing for a straight run of them."""

    def __init__(self, key: str, parents: Sequence[str], info: Any = None, folded: int = 0) -> None:
        self.key, self.parents, self.info, self.folded = key, list(parents), info, folded
        self.row = self.col = 0


def _plain(info: Any) -> bool:
    """A revision in a straight run: one parent, one child, nothing to point out."""
    return (len(info.parents) == 1 and len(info.children) == 1 and not info.current
            and not info.head and not info.branch_labels)


def graph_nodes(revisions: Sequence[Any]) -> list[_Node]:
    """Rows in drawing order (newest first), long straight runs folded, lanes assigned."""
    nodes = [_Node(r.revision, r.parents, r) for r in revisions]
    if len(nodes) > FOLD_AT:
        nodes = _fold(nodes)
    _assign_lanes(nodes)
    return nodes


def _fold(nodes: list[_Node]) -> list[_Node]:
    out: list[_Node] = []
    run: list[_Node] = []

    def flush() -> None:
        if len(run) <= 2 * FOLD_KEEP + 2:
            out.extend(run)
        else:
            kept_top, middle, kept_bottom = run[:FOLD_KEEP], run[FOLD_KEEP:-FOLD_KEEP], run[-FOLD_KEEP:]
            fold = _Node(f"fold:{middle[0].key}", [kept_bottom[0].key], folded=len(middle))
            kept_top[-1].parents = [fold.key]
            out.extend([*kept_top, fold, *kept_bottom])
        run.clear()

    for node in nodes:
        continues = run and run[-1].parents == [node.key]
        if _plain(node.info) and (not run or continues):
            run.append(node)
            continue
        flush()
        if _plain(node.info):
            run.append(node)
        else:
            out.append(node)
    flush()
    return out


def _assign_lanes(nodes: list[_Node]) -> None:
    known = {node.key for node in nodes}
    lanes: list[str | None] = []
    for row, node in enumerate(nodes):
        waiting = [i for i, key in enumerate(lanes) if key == node.key]
        if waiting:
            node.col = waiting[0]
            for extra in waiting[1:]:
                lanes[extra] = None
        else:
            node.col = lanes.index(None) if None in lanes else len(lanes)
            if node.col == len(lanes):
                lanes.append(None)
        node.row = row
        parents = [p for p in node.parents if p in known]
        lanes[node.col] = parents[0] if parents else None
        for parent in parents[1:]:
            if parent not in lanes:
                free = next((i for i, key in enumerate(lanes) if key is None and i != node.col), None)
                if free is None:
                    lanes.append(parent)
                else:
                    lanes[free] = parent
        while lanes and lanes[-1] is None:
            lanes.pop()


def _edge_path(child: _Node, parent: _Node) -> str:
    x1, y1 = _x(child.col), _y(child.row)
    x2, y2 = _x(parent.col), _y(parent.row)
    bend = ROW_HEIGHT * 0.8
    if x1 == x2:
        return f"M{x1},{y1} L{x2},{y2}"
    if x2 > x1:  # out to a lane on the right, then down it
        return f"M{x1},{y1} Q{x2},{y1} {x2},{y1 + bend} L{x2},{y2}"
    return f"M{x1},{y1} L{x1},{y2 - bend} Q{x1},{y2} {x2},{y2}"  # down, then into the lane


def _x(col: int) -> float:
    return 10 + col * LANE_WIDTH


def _y(row: int) -> float:
    return 12 + row * ROW_HEIGHT


def graph_svg(revisions: Sequence[Any]) -> str:
    """The DAG as inline SVG: no script, no external program."""
    nodes = graph_nodes(revisions)
    by_key = {node.key: node for node in nodes}
    lanes = max((node.col for node in nodes), default=0) + 1
    text_x = _x(lanes) + 6
    width = text_x + 720
    height = _y(len(nodes)) - ROW_HEIGHT + 12
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img"><title>revision graph</title>']
    for node in nodes:
        for parent in node.parents:
            if parent in by_key:
                parts.append(f'<path class="edge" d="{_edge_path(node, by_key[parent])}"/>')
    for node in nodes:
        parts.append(_svg_node(node, text_x))
    parts.append("</svg>")
    return "".join(parts)


def _svg_node(node: _Node, text_x: float) -> str:
    x, y = _x(node.col), _y(node.row)
    if node.folded:
        return (f'<g class="fold"><rect class="folded" x="{x - 5}" y="{y - 7}" width="10" height="14" '
                'rx="3"/>'
                f'<text class="muted" x="{text_x}" y="{y + 4}">… {node.folded} revisions in a straight line …'
                "</text></g>")
    info = node.info
    state = "current" if info.current else ("applied" if info.applied else "pending")
    shapes = f'<circle class="node {state}" cx="{x}" cy="{y}" r="5"/>'
    if info.current:
        shapes += f'<circle class="ring" cx="{x}" cy="{y}" r="8"/>'
    tags = [label for label, _, _ in _marks(info) if label not in ("applied",)]
    label = (f'<tspan class="rev">{_e(info.revision)}</tspan>  {_e(info.message[:80])}'
             f'<tspan class="muted">  {_e(" ".join(f"[{t}]" for t in tags))}</tspan>')
    css = ' class="head"' if info.head else ""
    title = f"<title>{_e(info.revision)}: {_e(info.message)}</title>"
    return (f'<g data-revision="{_e(info.revision)}">{title}{shapes}'
            f'<text{css} x="{text_x}" y="{y + 4}">{label}</text></g>')


def graph_html(graph: Any) -> str:
    """The revision graph as inline SVG, scrolled when long."""
    if not graph.revisions:
        return _wrap('<p class="muted">No revisions yet.</p>')
    legend = (f"<div class='muted'>{counted(len(graph.revisions), 'revision')}: filled = applied, hollow = "
              "pending, ringed = the database's current revision</div>")
    return _wrap(f'{legend}<div class="scroll">{graph_svg(graph.revisions)}</div>')


def graph_text(graph: Any) -> str:
    """The same layout in characters, for terminals."""
    if not graph.revisions:
        return "No revisions yet."
    nodes = graph_nodes(graph.revisions)
    lanes = max(node.col for node in nodes) + 1
    lines = []
    for node in nodes:
        cells = ["|"] * lanes
        if node.folded:
            cells[node.col] = ":"
            lines.append(" ".join(cells) + f"  ... {node.folded} revisions ...")
            continue
        info = node.info
        cells[node.col] = "@" if info.current else ("*" if info.applied else "o")
        tags = ",".join(label for label, _, _ in _marks(info) if label != "applied")
        lines.append(" ".join(cells) + f"  {info.revision} {info.message} ({tags})")
    return "\n".join(lines)


_HTML["Graph"] = graph_html
_TEXT["Graph"] = graph_text
