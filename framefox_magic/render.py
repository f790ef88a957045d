"""Every piece of HTML (and the plain text twin of each): escaped, themed, MathJax-proof."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from .graph import LANE_WIDTH, ROW_HEIGHT, Node, graph_nodes


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
.ffm .ffm-t tr.gap td{color:var(--jp-ui-font-color2,#57606a);text-align:left;white-space:nowrap}
.ffm .ffm-t tr.destructive td{color:var(--jp-error-color1,#cf222e)}
.ffm .ffm-t td code{white-space:nowrap}
.ffm code,.ffm pre,.ffm .rev{font-family:var(--jp-code-font-family,ui-monospace,monospace);
 font-size:var(--jp-code-font-size,12px)}
.ffm pre{margin:4px 0;padding:6px 8px;background:var(--jp-layout-color2,#f6f8fa);
 border-radius:4px;overflow:auto;max-height:32em;color:var(--jp-content-font-color1,#1f2328)}
.ffm .ffm-t td pre{white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;min-width:22em}
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
.ffm svg .tbl{fill:var(--jp-layout-color0,#fff);stroke:var(--jp-border-color1,#8c959f);stroke-width:1}
.ffm svg .tbl-head{fill:var(--jp-layout-color2,#eaeef2);stroke:none}
.ffm svg .tbl.added{stroke:var(--jp-success-color1,#1a7f37);stroke-width:2}
.ffm svg .row.added{fill:var(--jp-success-color3,#dafbe1)}
.ffm svg .row.changed{fill:var(--jp-warn-color3,#fff8c5)}
.ffm svg .grp{fill:none;stroke:var(--jp-border-color2,#d0d7de);stroke-dasharray:4 3}
.ffm svg .rel{stroke:var(--jp-brand-color1,#0969da);stroke-width:1.3;fill:none;opacity:0.75}
.ffm svg .rel-end{fill:var(--jp-brand-color1,#0969da)}
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


_SEVERITY_KIND = {"danger": "bad", "warn": "warn", "info": "info"}


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
    if getattr(info, "risk", None):
        marks.append((info.risk, _SEVERITY_KIND[info.risk], f"highest lint severity: {info.risk} "
                       "(`lint` lists the risks)"))
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
    badge = _status_badge(status) + risk_badge(status)
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


# A long history is drawn as pandas draws a long frame: over display.max_rows (60) rows, the first
# and last display.min_rows / 2 (5 and 5), here the newest and the oldest, and also the database's
# own revision; the rest stays one call away in to_frame().
PANDAS_DISPLAY_DEFAULTS = (60, 10)


def display_rows() -> tuple[int | None, int | None]:
    """pandas' display.max_rows and display.min_rows; its defaults while pandas is not imported (a
    user who changed them has imported it; importing it only to read them would cost ~0.3 s)."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return PANDAS_DISPLAY_DEFAULTS
    try:
        return pandas.get_option("display.max_rows"), pandas.get_option("display.min_rows")
    except Exception:  # a pandas without these options
        return PANDAS_DISPLAY_DEFAULTS


def history_html(history: Any) -> str:
    """The revisions with their applied / current / head / branch / merge marks (a long history:
    the newest, the oldest and the current ones, saying where the others are)."""
    if not history.revisions:
        return _wrap('<p class="muted">No revisions yet.</p>')
    from .results import applied_count

    total = len(history.revisions)
    applied = applied_count(history.revisions)  # a long history: thousands, built only when used
    title = f"<h4>History: {counted(total, 'revision')}, {applied} applied</h4>"
    rows, shown = _history_rows(history.revisions)
    note = "" if shown == total else (
        f'<p class="muted">Showing {shown} of {total:,} revisions: the newest, the oldest and the '
        "database's, as many as pandas' <code>display.max_rows</code> and <code>display.min_rows</code> "
        "let a DataFrame show. <code>.to_frame()</code> of this result (e.g. <code>%migrate history -o "
        "h</code>, then <code>h.to_frame()</code>) has every one; <code>-r A:B</code> lists a range.</p>")
    return _wrap(f'{title}<div class="scroll">{_table(_REVISION_HEADERS, rows)}</div>{note}')


def _history_rows(revisions: Sequence[Any]) -> tuple[list[tuple[str, list[str]]], int]:
    """The rows drawn and how many revisions they show; a row per run of revisions left out."""
    max_rows, min_rows = display_rows()
    if not max_rows or len(revisions) <= max_rows:  # None or 0: no limit, as in pandas' HTML
        return _revision_rows(revisions), len(revisions)
    side = max(1, (min(min_rows, max_rows) if min_rows else max_rows) // 2)
    last = len(revisions) - 1
    from .results import current_positions

    kept = sorted({*range(side), *range(last - side + 1, last + 1), *current_positions(revisions)})
    rows: list[tuple[str, list[str]]] = []
    previous = -1
    for index in kept:
        if index > previous + 1:
            left_out = f"… {index - previous - 1:,} revisions not shown …"
            rows.append(("gap", [left_out, *[""] * (len(_REVISION_HEADERS) - 1)]))
        rows.extend(_revision_rows([revisions[index]]))
        previous = index
    return rows, len(kept)


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
            (_mark("destructive", "bad", "can lose data") if danger else "") + severity_mark(step.risk),
            f'<span class="rev">{_e(step.revision)}</span>',
            _e(step.message),
            _e(ops),
        ]))
    note = "<p class='muted'>Nothing has been changed.</p>"
    return _wrap(title + _table(("#", "", "revision", "message", "operations"), rows) + note)


def plan_text(plan: Any) -> str:
    rows = [
        (i, "!" if plan.diffs.get(s.revision) and plan.diffs[s.revision].destructive else "",
         s.risk or "", s.revision, s.message)
        for i, s in enumerate(plan.steps, 1)
    ]
    head = f"Plan: {plan.direction} to {plan.target} ({len(plan.steps)} revisions); nothing changed"
    return head + ("\n" + _text_table(("#", "", "risk", "revision", "message"), rows) if rows else "")


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


# ---------------------------------------------------------------- safety before apply


def _verdict(value: bool | None, good: str, bad: str) -> str:
    if value is None:
        return _badge("not reached", "info")
    return _badge(good, "ok") if value else _badge(bad, "bad")


def _rehearsal_badges(rehearsal: Any) -> str:
    failed = rehearsal.failed
    overall = (_badge(f"failed: {failed.revision} {failed.direction}", "bad") if failed
               else _badge("passed", "ok") if rehearsal.ok else _badge("differences", "warn"))
    if not rehearsal.steps:
        return overall
    return overall + _verdict(rehearsal.down_leaves_no_trace, "down leaves no trace", "down leaves a trace") \
        + _verdict(rehearsal.up_again_equals_up, "up again equals up", "up again differs")


def rehearsal_html(rehearsal: Any) -> str:
    """Steps up, down and up again on the throwaway copy, the two verdicts and what differed."""
    title = f"<h4>Rehearsal to {_e(rehearsal.target)}</h4>"
    facts = (f"<dl><dt>on</dt><dd>{_e(rehearsal.mode)}</dd>"
             f"<dt>database</dt><dd><code>{_e(rehearsal.url)}</code> (not changed)</dd></dl>")
    rows = [
        ("destructive" if not step.ok else "", [
            f'<span class="rev">{_e(step.revision)}</span>', _e(step.message), _e(step.direction),
            f"{step.seconds:.3f}", _mark("ok", "ok") if step.ok else _mark("failed", "bad"),
            str(step.statements), _e(step.error),
        ])
        for step in rehearsal.steps
    ]
    table = _table(("revision", "message", "direction", "seconds", "ok", "statements", "error"), rows) \
        if rows else ""
    lists = "".join(
        f"<h4>{_e(heading)}</h4><pre>{_e(chr(10).join(lines))}</pre>"
        for heading, lines in (("What down left behind (+) or took along (-)", rehearsal.traces),
                               ("How up again differs from up", rehearsal.differences)) if lines
    )
    notes = "".join(f"<p class='muted'>{_e(note)}</p>" for note in rehearsal.notes)
    return _wrap(f"{title}<div>{_rehearsal_badges(rehearsal)}</div>{facts}{table}{lists}{notes}")


def _verdict_text(value: bool | None, good: str, bad: str) -> str:
    return f"{good}: not reached" if value is None else good if value else bad


def rehearsal_text(rehearsal: Any) -> str:
    failed = rehearsal.failed
    state = f"FAILED at {failed.revision} ({failed.direction})" if failed else \
        "passed" if rehearsal.ok else "differences found"
    lines = [f"Rehearsal to {rehearsal.target}: {state}", f"  on: {rehearsal.mode}",
             f"  database: {rehearsal.url} (not changed)"]
    if rehearsal.steps:
        down = _verdict_text(rehearsal.down_leaves_no_trace, "down leaves no trace", "down leaves a trace")
        lines += [
            f"  {down}",
            f"  {_verdict_text(rehearsal.up_again_equals_up, 'up again equals up', 'up again differs')}",
            "", _text_table(("revision", "direction", "seconds", "ok", "statements", "error"), [
                (s.revision, s.direction, f"{s.seconds:.3f}", "ok" if s.ok else "FAILED", s.statements,
                 s.error) for s in rehearsal.steps]),
        ]
    if failed:
        lines += ["", f"{failed.revision} {failed.direction} failed: {failed.error}"]
    for heading, found in (("Down left behind (+) or took along (-):", rehearsal.traces),
                           ("Up again differs from up:", rehearsal.differences)):
        if found:
            lines += ["", heading, *(f"  {line}" for line in found)]
    return "\n".join(lines + rehearsal.notes)


def severity_mark(severity: str | None) -> str:
    """A small coloured mark for a severity (danger / warn / info); nothing for none."""
    if not severity:
        return ""
    return _mark(severity, _SEVERITY_KIND.get(severity, "info"), f"highest lint severity: {severity}")


def _lint_summary(lint: Any) -> str:
    counts = {s: sum(f.severity == s for f in lint.findings) for s in ("danger", "warn", "info")}
    badges = "".join(_badge(f"{n} {s}", _SEVERITY_KIND[s]) for s, n in counts.items() if n)
    return badges or _badge("no risks found", "ok")


def lint_html(lint: Any) -> str:
    """One row per risky operation: severity, revision, operation, rule, rows, message, the safer way."""
    title = f"<h4>{_e(lint.title)}</h4>"
    server = f"<p class='muted'>Rules for {_e(lint.dialect)} {_e(lint.server_version)}; rows counted on " \
             f"the database now ({lint.counting_seconds:.3f} s).</p>"
    rows = [
        ("destructive" if f.severity == "danger" else "", [
            severity_mark(f.severity), f'<span class="rev">{_e(f.revision)}</span>',
            f"<code>{_e(f.op)}</code>",
            _e(f.table), f"<code>{_e(f.rule)}</code>", "" if f.rows is None else str(f.rows), _e(f.message),
            _e(f.suggestion),
        ])
        for f in lint.findings
    ]
    headers = ("", "revision", "op", "table", "rule", "rows", "message", "safer way")
    table = _table(headers, rows) if rows else ""
    return _wrap(f"{title}<div>{_lint_summary(lint)}</div>{server}{table}")


def lint_text(lint: Any) -> str:
    head = f"{lint.title}: " + (", ".join(
        f"{sum(f.severity == s for f in lint.findings)} {s}" for s in ("danger", "warn", "info")
        if any(f.severity == s for f in lint.findings)) or "no risks found")
    lines = [head, f"  rules for {lint.dialect} {lint.server_version}"]
    for f in lint.findings:
        rows = "" if f.rows is None else f", {counted(f.rows, 'row')}"
        lines += [f"{f.severity.upper():6} {f.revision} {f.op} {f.table or ''} [{f.rule}{rows}]",
                  f"       {f.message}", f"       safer: {f.suggestion}"]
    return "\n".join(lines)


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
    "Rehearsal": rehearsal_html,
    "Lint": lint_html,
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
    "Rehearsal": rehearsal_text,
    "Lint": lint_text,
}


def html(result: Any) -> str:
    """The HTML of any result object."""
    return _HTML[type(result).__name__](result) + _notes_html(getattr(result, "notes", None) or ())


def text(result: Any) -> str:
    """The plain text of any result object."""
    return _TEXT[type(result).__name__](result) + _notes_text(getattr(result, "notes", None) or ())


def _notes_html(notes: Sequence[str]) -> str:
    """Notes under a result: e.g. revision files left out of a listing, and why."""
    if not notes:
        return ""
    items = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return _wrap(f"<p class='muted'>Notes:</p><ul class='muted'>{items}</ul>")


def _notes_text(notes: Sequence[str]) -> str:
    return "".join(f"\n  note: {note}" for note in notes)


def progress_html(verb: str, done: int, total: int, revision: str, message: str) -> str:
    """A progress bar for a long upgrade or downgrade."""
    bar = f'<progress value="{done}" max="{total}" style="width:16em"></progress>'
    return _wrap(f"<div>{bar} {_e(verb)} {done}/{total}: <span class='rev'>{_e(revision)}</span> "
                 f"{_e(message)}</div>")


def error_html(message: str) -> str:
    """A short error, for the panel's output area."""
    return _wrap(f"<div>{_badge('error', 'bad')}{_e(message)}</div>")


# ---------------------------------------------------------------- the panel's small pieces


def risk_badge(status: Any) -> str:
    """A badge with the highest lint severity among the pending revisions; nothing when none."""
    from .results import highest_severity

    worst = highest_severity(r.risk for r in status.pending_revisions)
    if worst is None:
        return ""
    count = sum(r.risk == worst for r in status.pending_revisions)
    return _badge(f"{worst}: {counted(count, 'pending revision')}", _SEVERITY_KIND[worst])


def status_badge_html(status: Any) -> str:
    """The panel's header line: the status badge, the risk badge, the database's revision and URL."""
    current = ", ".join(status.current) or "<base>"
    return _wrap(f"<div>{_status_badge(status)}{risk_badge(status)}<span class='muted'>database at</span> "
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

def _edge_path(child: Node, parent: Node) -> str:
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


def _svg_node(node: Node, text_x: float) -> str:
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


# ---------------------------------------------------------------- the schema diagram

_NAME_CHARS = 22
_TYPE_CHARS = 16


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def erd_svg(erd: Any) -> str:
    """Tables as boxes (grouped by relations), foreign keys as lines; inline SVG, no script."""
    from .diagram import TABLE_WIDTH, layout

    placed = layout(erd.tables)
    boxes = placed.boxes()
    width, height = placed.width + 2, placed.height + 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" role="img"><title>schema diagram</title>']
    parts += [f'<rect class="grp" x="{g.x + 1:.0f}" y="{g.y + 1:.0f}" width="{g.width:.0f}" '
              f'height="{g.height:.0f}" rx="6"/>' for g in placed.groups if len(g.boxes) > 1]
    parts += [_erd_box(box, erd, TABLE_WIDTH) for box in boxes.values()]
    parts += [_erd_relation(box, column, boxes, TABLE_WIDTH)
              for box in boxes.values() for column in box.table.columns if column.references]
    parts.append("</svg>")
    return "".join(parts)


def _erd_box(box: Any, erd: Any, width: float) -> str:
    from .diagram import HEADER_HEIGHT, ROW_HEIGHT

    table, x, y = box.table, box.x, box.y
    added = " added" if erd.change(table.name) == "added" else ""
    parts = [f'<g data-table="{_e(table.label)}"><title>{_e(table.label)}</title>',
             f'<rect class="tbl{added}" x="{x:.0f}" y="{y:.0f}" width="{width}" '
             f'height="{box.height:.0f}" rx="4"/>',
             f'<rect class="tbl-head" x="{x + 1:.0f}" y="{y + 1:.0f}" width="{width - 2}" '
             f'height="{HEADER_HEIGHT - 2}" rx="3"/>',
             f'<text class="head" x="{x + 8:.0f}" y="{y + 16:.0f}">{_e(_clip(table.label, 30))}</text>']
    for index, column in enumerate(table.columns):
        top = y + HEADER_HEIGHT + index * ROW_HEIGHT
        change = "" if added else erd.change(table.name, column.name)
        if change:
            parts.append(f'<rect class="row {change}" x="{x + 1:.0f}" y="{top:.0f}" width="{width - 2}" '
                         f'height="{ROW_HEIGHT}"/>')
        key = "PK" if column.primary_key else ("FK" if column.references else "")
        name = column.name + ("" if column.nullable or column.primary_key else " *")
        parts.append(f'<text class="muted" x="{x + 8:.0f}" y="{top + 13:.0f}">{key}</text>'
                     f'<text x="{x + 32:.0f}" y="{top + 13:.0f}"><title>{_e(column.name)}</title>'
                     f'{_e(_clip(name, _NAME_CHARS))}</text>'
                     f'<text class="muted" x="{x + width - 8:.0f}" y="{top + 13:.0f}" text-anchor="end">'
                     f'{_e(_clip(column.type, _TYPE_CHARS))}</text>')
    parts.append("</g>")
    return "".join(parts)


def _erd_relation(box: Any, column: Any, boxes: dict[str, Any], width: float) -> str:
    """A curve from a foreign-key column to the column it references."""
    target_table, _, target_column = column.references.rpartition(".")
    target = boxes.get(target_table)
    if target is None:
        return ""
    y1, y2 = box.row_y(column.name), target.row_y(target_column)
    if target.x > box.x:  # target to the right: leave on the right, arrive on its left
        x1, x2, out, into = box.x + width, target.x, 40.0, -40.0
    elif target.x < box.x:
        x1, x2, out, into = box.x, target.x + width, -40.0, 40.0
    else:  # same column (or itself): a loop through the gap on the right
        x1 = x2 = box.x + width
        out = into = 28.0
    return (f'<path class="rel" d="M{x1:.0f},{y1:.0f} C{x1 + out:.0f},{y1:.0f} {x2 + into:.0f},{y2:.0f} '
            f'{x2:.0f},{y2:.0f}"><title>{_e(column.references)}</title></path>'
            f'<circle class="rel-end" cx="{x2:.0f}" cy="{y2:.0f}" r="3"/>')


def erd_html(erd: Any) -> str:
    """The schema diagram with a legend and what the marked revision removed; scrolled when large."""
    if not erd.tables:
        return _wrap(f"<h4>{_e(erd.title)}</h4><p class='muted'>No tables.</p>")
    columns = sum(len(t.columns) for t in erd.tables)
    counts = f"{counted(len(erd.tables), 'table')}, {counted(columns, 'column')}"
    legend = (f"<div class='muted'>{counts}. PK primary key, "
              "FK foreign key, * NOT NULL; green: added, yellow: changed by the marked revision.</div>")
    removed = (f"<div>{_badge('removed', 'bad')}{_e(', '.join(erd.removed))}</div>" if erd.removed else "")
    notes = "".join(f"<p class='muted'>{_e(note)}</p>" for note in erd.notes)
    diagram = f'<div class="scroll">{erd_svg(erd)}</div>'
    return _wrap(f"<h4>{_e(erd.title)}</h4>{legend}{removed}{notes}{diagram}")


def erd_text(erd: Any) -> str:
    """The same schema as indented text: one table, then its columns."""
    lines = [erd.title]
    for table in erd.tables:
        mark = f"  [{erd.change(table.name)}]" if erd.change(table.name) else ""
        lines.append(f"{table.label}{mark}")
        for column in table.columns:
            key = "PK" if column.primary_key else ("FK" if column.references else "  ")
            target = f" -> {column.references}" if column.references else ""
            null = "" if column.nullable or column.primary_key else " NOT NULL"
            change = "" if mark else erd.change(table.name, column.name)
            change = f"  [{change}]" if change else ""
            lines.append(f"  {key} {column.name} {column.type}{null}{target}{change}")
    if erd.removed:
        lines.append(f"removed: {', '.join(erd.removed)}")
    lines.extend(erd.notes)
    return "\n".join(lines)


_HTML["Erd"] = erd_html
_TEXT["Erd"] = erd_text


# ---------------------------------------------------------------- squash


def squash_html(result: Any) -> str:
    """What a squash replaced and wrote, and the checks that prove the new revision equal."""
    rows = [("" if ok else "destructive", [_badge("ok", "ok") if ok else _badge("failed", "bad"),
                                           _e(check), _e(detail)]) for check, ok, detail in result.checks]
    warnings = "".join(f"<div>{_badge('note', 'warn')}{_e(w)}</div>" for w in result.warnings)
    return _wrap(f"<div>{_badge('squashed', 'ok')}{_e(result.summary)}</div>{warnings}"
                 f"<h4>Proof</h4>{_table(('', 'check', 'detail'), rows)}")


def squash_text(result: Any) -> str:
    """The same as plain text."""
    lines = [result.summary, *(f"note: {w}" for w in result.warnings), "Proof:"]
    lines += [f"  [{'ok' if ok else 'FAILED'}] {check}: {detail}" for check, ok, detail in result.checks]
    return "\n".join(lines)


_HTML["Squash"] = squash_html
_TEXT["Squash"] = squash_text


# ---------------------------------------------------------------- many targets

_STATE_KIND = {"failed": "bad", "interrupted": "warn", "not run": "warn", "behind": "warn"}
FANOUT_SHOWN = 200  # rows drawn in HTML; to_frame() has them all
FANOUT_LINES = 40  # rows printed as text


def _revs(revisions: Sequence[str] | None) -> str:
    if revisions is None:
        return "?"
    return ", ".join(revisions) or "<base>"


def _fanout_headline(result: Any) -> str:
    verb = {"status": "Status of", "upgrade": "Upgrade of", "downgrade": "Downgrade of"}
    title = f"{verb.get(result.action, result.action)} {counted(len(result.rows), 'target')} ({result.spec})"
    return title + (": interrupted; run it again to resume" if result.interrupted else "")


def fanout_html(result: Any) -> str:
    """Counts per state as badges, then one row per target, failures first."""
    badges = "".join(_badge(f"{count} {state}", _STATE_KIND.get(state, "ok"))
                     for state, count in result.counts.items())
    status = result.action == "status"
    headers = ["target", "state", "revision" if status else "before", *([] if status else ["after"]),
               *(["pending"] if status else []), "seconds", "error"]
    rows = []
    for row in result.failures_first()[:FANOUT_SHOWN]:
        cells = [f"<code>{_e(row.target)}</code>", _mark(row.state, _STATE_KIND.get(row.state, "ok")),
                 f'<span class="rev">{_e(_revs(row.before))}</span>']
        if not status:
            cells.append(f'<span class="rev">{_e(_revs(row.after))}</span>')
        else:
            cells.append(_e(row.pending))
        cells += [f"{row.seconds:.2f}", f"<pre>{_e(row.error)}</pre>" if row.error else ""]
        rows.append(("destructive" if row.state == "failed" else "", cells))
    tail = _more_rows(len(result.rows))
    return _wrap(f"<h4>{_e(_fanout_headline(result))}</h4><div>{badges}</div>"
                 f"<div class='scroll'>{_table(headers, rows)}</div>{tail}")


def _more_rows(total: int) -> str:
    """The line under a table of targets cut at FANOUT_SHOWN rows."""
    more = total - FANOUT_SHOWN
    return f"<p class='muted'>{counted(more, 'more row')}: see to_frame().</p>" if more > 0 else ""


def fanout_text(result: Any) -> str:
    """The counts per state, then one line per target, failures first."""
    counts = ", ".join(f"{count} {state}" for state, count in result.counts.items())
    table = _text_table(
        ("target", "state", "before", "after", "pending", "seconds", "error"),
        [(r.target, r.state, _revs(r.before), _revs(r.after), "" if r.pending is None else r.pending,
          f"{r.seconds:.2f}", r.error.splitlines()[0] if r.error else "")
         for r in result.failures_first()[:FANOUT_LINES]],
    )
    more = len(result.rows) - FANOUT_LINES
    tail = f"\n... {counted(more, 'more row')}: see to_frame()" if more > 0 else ""
    return f"{_fanout_headline(result)}\n{counts}\n{table}{tail}"


_HTML["FanoutResult"] = fanout_html
_TEXT["FanoutResult"] = fanout_text


def _fanout_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def fanout_progress_html(verb: str, done: int, total: int, counts: dict[str, int]) -> str:
    """The progress bar of a command over many targets."""
    bar = f'<progress value="{done}" max="{total}" style="width:16em"></progress>'
    return _wrap(f"<div>{bar} {_e(verb)} {done}/{total} targets <span class='muted'>"
                 f"{_e(_fanout_counts(counts))}</span></div>")


def fanout_progress_text(verb: str, done: int, total: int, counts: dict[str, int], width: int = 30) -> str:
    """The same progress as one line of text, to be rewritten in place with a carriage return."""
    filled = int(width * done / total) if total else width
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {verb} {done}/{total} {_fanout_counts(counts)}"


_REHEARSAL_KIND = {"failed": "bad", "not run": "warn", "rehearsed": "ok", "nothing to rehearse": "ok"}


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _fanout_rehearsal_head(result: Any) -> str:
    tail = ": interrupted; run it again" if result.interrupted else ""
    return (f"Rehearsal up to {result.goal} on a throwaway copy of {counted(len(result.rows), 'target')} "
            f"({result.spec}){tail}")


def _modes(result: Any) -> str:
    """How the copies were made, once per kind, with how many targets each."""
    modes: dict[str, int] = {}
    for row in result.rows:
        if row.mode:
            modes[row.mode] = modes.get(row.mode, 0) + 1
    return "; ".join(f"{mode} ({n})" for mode, n in modes.items())


def fanout_rehearsal_html(result: Any) -> str:
    """Counts per state, how the copies were made, then one row per target, failures first."""
    badges = "".join(_badge(f"{n} {state}", _REHEARSAL_KIND.get(state, "ok"))
                     for state, n in result.counts.items())
    rows = [("destructive" if row.state == "failed" else "", [
        f"<code>{_e(row.target)}</code>", _mark(row.state, _REHEARSAL_KIND.get(row.state, "ok")),
        str(row.steps), _e(_yes_no(row.down_leaves_no_trace)), _e(_yes_no(row.up_again_equals_up)),
        f"{row.seconds:.2f}", f"<pre>{_e(row.error)}</pre>" if row.error else "",
    ]) for row in result.failures_first()[:FANOUT_SHOWN]]
    headers = ("target", "state", "steps", "down left no trace", "up again same", "seconds", "error")
    tail = _more_rows(len(result.rows))
    how = _modes(result)
    note = ("<p class='muted'>The targets themselves were not changed. Copies: "
            f"{_e(how)}. One target's steps: <code>result.of(TARGET)</code>.</p>") if how else ""
    return _wrap(f"<h4>{_e(_fanout_rehearsal_head(result))}</h4><div>{badges}</div>{note}"
                 f"<div class='scroll'>{_table(headers, rows)}</div>{tail}")


def fanout_rehearsal_text(result: Any) -> str:
    """The same as plain text."""
    counts = ", ".join(f"{n} {state}" for state, n in result.counts.items())
    table = _text_table(
        ("target", "state", "steps", "down left no trace", "up again same", "seconds", "error"),
        [(r.target, r.state, r.steps, _yes_no(r.down_leaves_no_trace), _yes_no(r.up_again_equals_up),
          f"{r.seconds:.2f}", r.error.splitlines()[0] if r.error else "")
         for r in result.failures_first()[:FANOUT_LINES]])
    more = len(result.rows) - FANOUT_LINES
    tail = f"\n... {counted(more, 'more row')}: see to_frame()" if more > 0 else ""
    how = _modes(result)
    unchanged = f"\nThe targets themselves were not changed. Copies: {how}." if how else ""
    return f"{_fanout_rehearsal_head(result)}\n{counts}{unchanged}\n{table}{tail}"


_HTML["FanoutRehearsal"] = fanout_rehearsal_html
_TEXT["FanoutRehearsal"] = fanout_rehearsal_text


def _fanout_lint_head(result: Any, common: Sequence[Any], differ: dict[str, Any]) -> str:
    linted = len(result.targets) - len(result.errors)
    return (f"Lint of {counted(len(result.targets), 'target')} ({result.spec}): "
            f"{counted(len(common), 'finding')} shown once, the same on most targets where its revision is "
            f"pending; {counted(len(differ), 'target')} of {linted} with counts of their own")


def _finding_cells(finding: Any) -> list[str]:
    return [severity_mark(finding.severity), f'<span class="rev">{_e(finding.revision)}</span>',
            f"<code>{_e(finding.rule)}</code>", _e(finding.table),
            "" if finding.rows is None else str(finding.rows), _e(finding.message)]


def fanout_lint_html(result: Any) -> str:
    """Targets that could not be linted first, then the findings whose counts differ by target
    (per target), then the findings common to all, shown once."""
    common, differ = result.parts
    parts = [f"<h4>{_e(_fanout_lint_head(result, common, differ))}</h4>"]
    if result.errors:
        parts.append(f"<h5>{_e(counted(len(result.errors), 'target'))} not linted</h5>" + _table(
            ("target", "error"), [("destructive", [f"<code>{_e(t)}</code>", f"<pre>{_e(e)}</pre>"])
                                  for t, e in result.errors.items()]))
    headers = ("", "revision", "rule", "table", "rows", "message")
    if differ:
        rows = [("destructive" if f.severity == "danger" else "",
                 [f"<code>{_e(t)}</code>", *_finding_cells(f)])
                for t, f in result.per_target()][:FANOUT_SHOWN]
        parts.append("<h5>Differs by target: only the findings whose counts are not the same everywhere</h5>"
                     f"<div class='scroll'>{_table(('target', *headers), rows)}</div>"
                     + _more_rows(len(result.per_target())))
    if common:
        rows = [("destructive" if f.severity == "danger" else "", [*_finding_cells(f), f"{n} of {m}"])
                for f, n, m in common]
        parts.append("<h5>Common: the same on most targets where the revision is pending</h5>"
                     + _table((*headers, "targets"), rows))
    if not (common or differ or result.errors):
        parts.append(f"<div>{_badge('no risks found', 'ok')}</div>")
    return _wrap("".join(parts))


def fanout_lint_text(result: Any) -> str:
    """The same as plain text."""
    common, differ = result.parts
    lines = [_fanout_lint_head(result, common, differ)]
    lines += [f"NOT LINTED {t}: {e.splitlines()[0] if e else ''}" for t, e in result.errors.items()]
    if differ:
        lines.append("Differs by target:")
        lines += [f"  {t}: {f.severity.upper()} {f.revision} {f.rule} {f.table or ''} "
                  f"[{'?' if f.rows is None else counted(f.rows, 'row')}] {f.message}"
                  for t, f in result.per_target()][:FANOUT_LINES]
    if common:
        lines.append("Common to most targets where the revision is pending:")
        lines += [f"  {f.severity.upper()} {f.revision} {f.rule} {f.table or ''} ({n} of {m} targets) "
                  f"{f.message}" for f, n, m in common]
    return "\n".join(lines)


_HTML["FanoutLint"] = fanout_lint_html
_TEXT["FanoutLint"] = fanout_lint_text
