"""Result objects: plain data with `to_frame()`, a readable `__repr__` and `_repr_html_`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from itertools import compress, count
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from . import render

if TYPE_CHECKING:
    import pandas as pd

HISTORY_COLUMNS = (
    "revision", "parents", "message", "created", "applied", "current", "head", "branch_labels", "path",
    "risk",
)
DIFF_COLUMNS = ("revision", "op", "table", "target", "detail", "destructive")


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=list(columns))


class _Result:
    """Shared display plumbing: HTML from render.py, text from the same data."""

    def _repr_html_(self) -> str:
        return render.html(self)

    def __repr__(self) -> str:
        return render.text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(repr=False)
class RevisionInfo(_Result):
    """One revision: its header, its place in the history and, when asked, its content."""

    revision: str
    parents: tuple[str, ...] = ()
    message: str = ""
    created: datetime | None = None
    path: str = ""
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    applied: bool = False
    current: bool = False
    head: bool = False
    children: tuple[str, ...] = ()
    source: str | None = None
    diff: Diff | None = None
    sql: SqlScript | None = None
    note: str = ""
    risk: str | None = None  # the highest lint severity of a pending revision (info, warn, danger)

    @classmethod
    def listed(cls, headers: Iterable[tuple[Any, ...]], applied: Set[str],
               current: Sequence[str]) -> list[RevisionInfo]:
        """Revisions as a listing shows them, flagged; each header is (revision, parents, message,
        created, path, branch_labels, depends_on, head, children). Positional: a long history
        builds thousands, and keywords were half of that time."""
        return [cls(revision, parents, message, created, path, labels, depends_on, revision in applied,
                    revision in current, head, children)
                for revision, parents, message, created, path, labels, depends_on, head, children in headers]

    @property
    def is_merge(self) -> bool:
        """Whether this revision joins several parents."""
        return len(self.parents) > 1

    @property
    def is_branch_point(self) -> bool:
        """Whether several revisions grow from this one."""
        return len(self.children) > 1

    def row(self) -> dict[str, Any]:
        """This revision as a row of `History.to_frame()`."""
        return {name: getattr(self, name) for name in HISTORY_COLUMNS}

    def to_frame(self) -> pd.DataFrame:
        """This revision's operations (one row each)."""
        return (self.diff or Diff()).to_frame()


class ListedRevisions(Sequence):
    """A listing's revisions, each built on first use from the headers kept with the revision map:
    a long history is thousands of revisions and its HTML draws a dozen. Reads like a list."""

    def __init__(self, headers: Sequence[tuple[Any, ...]], applied: Set[str], current: Sequence[str]) -> None:
        self._headers, self._applied, self._current = headers, applied, current
        self._one: dict[int, RevisionInfo] = {}  # built one by one, before all were
        self._all: list[RevisionInfo] | None = None

    def __len__(self) -> int:
        return len(self._headers)

    def __getitem__(self, index: Any) -> Any:
        if self._all is not None or isinstance(index, slice):
            return self._everything()[index]
        position = range(len(self._headers))[index]  # IndexError as a list gives it
        if position not in self._one:
            self._one[position] = RevisionInfo.listed([self._headers[position]], self._applied,
                                                      self._current)[0]
        return self._one[position]

    def __iter__(self) -> Iterator[RevisionInfo]:
        return iter(self._everything())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._everything())

    def _everything(self) -> list[RevisionInfo]:
        if self._all is None:
            built = RevisionInfo.listed(self._headers, self._applied, self._current)
            for position, info in self._one.items():  # the same objects as handed out before
                built[position] = info
            self._all = built
        return self._all

    def outline(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...], bool, bool, tuple[str, ...]]]:
        """Each revision's (revision, parents, children, current, head, branch_labels), without
        building the revisions: a graph walks them all and draws few."""
        current = set(self._current)
        return [(revision, parents, children, revision in current, head, labels)
                for revision, parents, _, _, _, labels, _, head, children in self._headers]

    def layout_key(self) -> tuple[Any, tuple[str, ...]]:
        """What a graph's layout of these revisions depends on: the headers (the same list while the
        revision map is unchanged) and the database's revisions."""
        return self._headers, tuple(self._current)

    def applied_count(self) -> int:
        """How many are applied, without building them."""
        return sum(map(self._applied.__contains__, map(itemgetter(0), self._headers)))

    def current_positions(self) -> list[int]:
        """Where the database's own revisions are, without building them."""
        current = set(self._current)
        return list(compress(count(), map(current.__contains__, map(itemgetter(0), self._headers))))


def applied_count(revisions: Sequence[RevisionInfo]) -> int:
    """How many of these revisions are applied."""
    if isinstance(revisions, ListedRevisions):
        return revisions.applied_count()
    return sum(map(attrgetter("applied"), revisions))


def current_positions(revisions: Sequence[RevisionInfo]) -> list[int]:
    """The positions of the database's own revisions among these."""
    if isinstance(revisions, ListedRevisions):
        return revisions.current_positions()
    return list(compress(count(), map(attrgetter("current"), revisions)))


@dataclass(repr=False)
class _Revisions(_Result):
    """A list of revisions that reads like one: len(), iteration, indexing, ids, to_frame()."""

    revisions: list[RevisionInfo] = field(default_factory=list)
    url: str = ""

    def __len__(self) -> int:
        return len(self.revisions)

    def __iter__(self):
        return iter(self.revisions)

    def __getitem__(self, index: int) -> RevisionInfo:
        return self.revisions[index]

    @property
    def ids(self) -> tuple[str, ...]:
        """The revision identifiers."""
        return tuple(r.revision for r in self.revisions)

    def to_frame(self) -> pd.DataFrame:
        """One row per revision: revision, parents, message, created, applied, current, head, ..."""
        return _frame([r.row() for r in self.revisions], HISTORY_COLUMNS)


@dataclass(repr=False)
class History(_Revisions):
    """Every revision, newest first, with applied / current / head flags."""

    notes: list[str] = field(default_factory=list)  # files left out of the listing, and why


@dataclass(repr=False)
class Status(_Result):
    """Where the database stands against the migration scripts."""

    current: tuple[str, ...] = ()
    heads: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    up_to_date: bool = False
    url: str = ""
    pending_revisions: list[RevisionInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The pending revisions, in the order an upgrade would apply them."""
        return _frame([r.row() for r in self.pending_revisions], HISTORY_COLUMNS)


@dataclass(repr=False)
class RevisionList(_Revisions):
    """A titled list of revisions (current, heads, branches)."""

    title: str = ""


@dataclass(frozen=True)
class DiffRow:
    """One schema operation."""

    revision: str | None
    op: str
    table: str | None
    target: str | None
    detail: str
    destructive: bool


@dataclass(repr=False)
class Diff(_Result):
    """Schema operations: of a revision, along a path, or between the models and the database."""

    rows: list[DiffRow] = field(default_factory=list)
    title: str = "Schema operations"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def empty(self) -> bool:
        """Whether there are no operations."""
        return not self.rows

    @property
    def destructive(self) -> bool:
        """Whether any operation can lose data."""
        return any(row.destructive for row in self.rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per operation: revision, op, table, target, detail, destructive."""
        return _frame([{f.name: getattr(r, f.name) for f in fields(r)} for r in self.rows], DIFF_COLUMNS)


@dataclass(frozen=True)
class SqlBlock:
    """The SQL of one migration step (or of the preamble before the first one)."""

    label: str
    sql: str
    revision: str | None = None


@dataclass(repr=False)
class SqlScript(_Result):
    """Offline SQL for a range of revisions, grouped per revision."""

    blocks: list[SqlBlock] = field(default_factory=list)
    dialect: str = ""
    title: str = "SQL"

    @property
    def text(self) -> str:
        """All of the SQL, as one script."""
        return "\n".join(block.sql for block in self.blocks if block.sql.strip())

    def __str__(self) -> str:
        return self.text

    def to_frame(self) -> pd.DataFrame:
        """One row per step: label, revision, sql."""
        rows = [{"label": b.label, "revision": b.revision, "sql": b.sql} for b in self.blocks]
        return _frame(rows, ("label", "revision", "sql"))


@dataclass(repr=False)
class Outcome(_Result):
    """What a command did: a one-line summary, the revisions it ran, files it touched."""

    action: str
    summary: str
    steps: list[RevisionInfo] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    status: Status | None = None
    backup: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The revisions this command ran, in order."""
        return _frame([r.row() for r in self.steps], HISTORY_COLUMNS)


@dataclass(repr=False)
class Plan(_Result):
    """The revisions an upgrade or downgrade would run, in order; nothing is changed."""

    direction: str
    target: str
    steps: list[RevisionInfo] = field(default_factory=list)
    diffs: dict[str, Diff] = field(default_factory=dict)

    @property
    def destructive(self) -> bool:
        """Whether any step can lose data."""
        return any(diff.destructive for diff in self.diffs.values())

    def to_frame(self) -> pd.DataFrame:
        """One row per step: revision, message, destructive, risk."""
        rows = [
            {
                "revision": step.revision,
                "message": step.message,
                "destructive": self.diffs[step.revision].destructive
                if step.revision in self.diffs else False,
                "risk": step.risk,
            }
            for step in self.steps
        ]
        return _frame(rows, ("revision", "message", "destructive", "risk"))


@dataclass(repr=False)
class TargetInfo(_Result):
    """The active target: masked URL, migrations folder, metadata, and where each came from."""

    url: str
    url_source: str
    migrations_dir: str
    dir_source: str
    metadata: str
    initialized: bool

    def to_frame(self) -> pd.DataFrame:
        """One row per setting: setting, value, source."""
        rows = [
            {"setting": "url", "value": self.url, "source": self.url_source},
            {"setting": "migrations_dir", "value": self.migrations_dir, "source": self.dir_source},
            {"setting": "metadata", "value": self.metadata, "source": ""},
        ]
        return _frame(rows, ("setting", "value", "source"))


@dataclass(repr=False)
class Graph(_Revisions):
    """The revision graph: branches, merges, heads, the database's position, pending revisions."""


ERD_COLUMNS = ("table", "column", "type", "nullable", "primary_key", "references", "change")


@dataclass(repr=False)
class Erd(_Result):
    """The schema drawn: tables, columns, keys and relations; what one revision changed is marked."""

    tables: list[Any] = field(default_factory=list)
    title: str = "Schema"
    changes: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def change(self, table: str, column: str | None = None) -> str:
        """'added' or 'changed' for a table (or one of its columns) the marked revision touched."""
        if column is not None and f"{table}.{column}" in self.changes:
            return self.changes[f"{table}.{column}"]
        return self.changes.get(table, "")

    def to_frame(self) -> pd.DataFrame:
        """One row per column: table, column, type, nullable, primary_key, references, change."""
        rows = [
            {"table": t.label, "column": c.name, "type": c.type, "nullable": c.nullable,
             "primary_key": c.primary_key, "references": c.references, "change": self.change(t.name, c.name)}
            for t in self.tables for c in t.columns
        ]
        return _frame(rows, ERD_COLUMNS)


@dataclass(repr=False)
class Squash(_Result):
    """One revision that replaced a linear run, and the proof that it builds the same schema."""

    summary: str
    revision: RevisionInfo | None = None
    replaced: tuple[str, ...] = ()
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    trash: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check of the proof passed."""
        return all(ok for _, ok, _ in self.checks)

    def to_frame(self) -> pd.DataFrame:
        """One row per check of the proof: check, ok, detail."""
        rows = [{"check": c, "ok": ok, "detail": d} for c, ok, d in self.checks]
        return _frame(rows, ("check", "ok", "detail"))


REHEARSAL_COLUMNS = ("revision", "message", "direction", "seconds", "ok", "error", "statements")


@dataclass(frozen=True)
class RehearsalStep:
    """One revision run up or down on the throwaway database."""

    revision: str
    message: str
    direction: str
    seconds: float
    ok: bool
    error: str
    statements: int


@dataclass(repr=False)
class Rehearsal(_Result):
    """Pending revisions applied, reverted and applied again on a throwaway copy of the database."""

    target: str
    mode: str
    url: str = ""
    steps: list[RehearsalStep] = field(default_factory=list)
    down_leaves_no_trace: bool | None = None
    up_again_equals_up: bool | None = None
    traces: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> RehearsalStep | None:
        """The step that failed, if one did."""
        return next((step for step in self.steps if not step.ok), None)

    @property
    def ok(self) -> bool:
        """Every step ran, down left no trace and up again built the same schema."""
        return self.failed is None and self.down_leaves_no_trace is not False \
            and self.up_again_equals_up is not False

    def to_frame(self) -> pd.DataFrame:
        """One row per step: revision, message, direction, seconds, ok, error, statements."""
        return _frame([{f.name: getattr(s, f.name) for f in fields(s)} for s in self.steps],
                      REHEARSAL_COLUMNS)


LINT_COLUMNS = ("revision", "op", "table", "rule", "severity", "rows", "message", "suggestion")
SEVERITIES = ("info", "warn", "danger")


def highest_severity(severities: Any) -> str | None:
    """The worst of these severities (danger > warn > info); None when there are none."""
    found = [s for s in severities if s in SEVERITIES]
    return max(found, key=SEVERITIES.index) if found else None


@dataclass(frozen=True)
class LintFinding:
    """One operation that carries a risk, with the rows it touches and the safer way."""

    revision: str
    op: str
    table: str | None
    rule: str
    severity: str
    rows: int | None
    message: str
    suggestion: str


@dataclass(repr=False)
class Lint(_Result):
    """Risks per operation of a range of revisions, counted on the live database."""

    findings: list[LintFinding] = field(default_factory=list)
    title: str = "Lint"
    revisions: list[str] = field(default_factory=list)
    dialect: str = ""
    server_version: str = ""
    counting_seconds: float = 0.0
    checking_seconds: float = 0.0
    _queries: list[Any] = field(default_factory=list)
    _sampler: Any = None

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    @property
    def highest(self) -> str | None:
        """The worst severity found."""
        return highest_severity(f.severity for f in self.findings)

    def severity_of(self, revision: str) -> str | None:
        """The worst severity found in one revision."""
        return highest_severity(f.severity for f in self.findings if f.revision == revision)

    @property
    def dangers(self) -> list[LintFinding]:
        """The findings where data would be lost or the migration would fail on the rows present."""
        return [f for f in self.findings if f.severity == "danger"]

    def to_frame(self) -> pd.DataFrame:
        """One row per finding: revision, op, table, rule, severity, rows, message, suggestion."""
        frame = _frame([{f.name: getattr(x, f.name) for f in fields(x)} for x in self.findings],
                       LINT_COLUMNS)
        return frame.astype({"rows": "Int64"})

    def samples(self, rule: str, table: str | None = None) -> pd.DataFrame:
        """Up to 20 rows behind the first finding of RULE (on TABLE), read from the database now."""
        for finding, query in zip(self.findings, self._queries, strict=True):
            if finding.rule == rule and table in (None, finding.table) and query is not None:
                return self._sampler(query)
        known = sorted({f.rule for f, q in zip(self.findings, self._queries, strict=True) if q is not None})
        from .errors import MigrationError

        raise MigrationError(
            f"No rows to show for '{rule}'; rules with samples here: {', '.join(known) or 'none'}."
        )


FANOUT_COLUMNS = ("target", "state", "before", "after", "pending", "seconds", "ok", "error")


@dataclass
class FanoutRow:
    """One target of a command over many: where it was, where it is now, how long, what failed."""

    target: str
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None
    seconds: float
    ok: bool
    error: str = ""
    state: str = ""
    pending: int | None = None

    def row(self) -> dict[str, Any]:
        """This target as a row of `FanoutResult.to_frame()` (revisions joined by commas)."""
        values = {name: getattr(self, name) for name in FANOUT_COLUMNS}
        for name in ("before", "after"):
            values[name] = None if values[name] is None else ", ".join(values[name])
        return values


class _PerTarget(_Result):
    """What results over many targets share: their rows (each with a state and ok), in order."""

    rows: list[Any]
    interrupted: bool

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def ok(self) -> bool:
        """Whether every target succeeded and none was left out."""
        return not self.interrupted and all(row.ok for row in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        """How many targets ended in each state, most worrying first."""
        counts: dict[str, int] = {}
        for row in self.failures_first():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def failures_first(self) -> list[Any]:
        """The rows, failed and not-run targets first, then in the targets' order."""
        return sorted(self.rows, key=_worry)


@dataclass(repr=False)
class FanoutResult(_PerTarget):
    """One command over many targets: a row per target, the failures first when shown."""

    action: str
    spec: str
    rows: list[FanoutRow] = field(default_factory=list)
    interrupted: bool = False

    def to_frame(self) -> pd.DataFrame:
        """One row per target: target, state, before, after, pending, seconds, ok, error."""
        return _frame([row.row() for row in self.rows], FANOUT_COLUMNS)


_WORRY = {"failed": 0, "interrupted": 1, "not run": 1, "behind": 2}


def _worry(row: Any) -> int:
    return _WORRY.get(row.state, 3)


REHEARSAL_ROW_COLUMNS = ("target", "state", "ok", "steps", "down_leaves_no_trace", "up_again_equals_up",
                         "seconds", "mode", "error")


@dataclass
class RehearsalRow:
    """One target's rehearsal on its throwaway copy: how far it got, whether down left no trace."""

    target: str
    state: str  # rehearsed, failed, nothing to rehearse, not run
    ok: bool
    steps: int = 0
    down_leaves_no_trace: bool | None = None
    up_again_equals_up: bool | None = None
    seconds: float = 0.0
    mode: str = ""
    error: str = ""
    rehearsal: Rehearsal | None = None  # every step, the traces a downgrade left

    @classmethod
    def of(cls, target: str, rehearsal: Rehearsal, seconds: float) -> RehearsalRow:
        """The row of a rehearsal that ran; its first problem as the error."""
        state = "nothing to rehearse" if rehearsal.mode == "nothing to rehearse" else (
            "rehearsed" if rehearsal.ok else "failed")
        return cls(target, state, rehearsal.ok, len(rehearsal.steps), rehearsal.down_leaves_no_trace,
                   rehearsal.up_again_equals_up, round(seconds, 3), rehearsal.mode, _first_problem(rehearsal),
                   rehearsal)


def _first_problem(rehearsal: Rehearsal) -> str:
    """What went wrong first: the failed step, what the downgrade left, or how up again differed."""
    failed = rehearsal.failed
    if failed:
        return f"{failed.direction} of {failed.revision} failed: {failed.error}"
    if rehearsal.traces:
        return "the downgrade left: " + "; ".join(rehearsal.traces[:3])
    if rehearsal.differences:
        return "upgrading again gave another schema: " + "; ".join(rehearsal.differences[:3])
    return ""


@dataclass(repr=False)
class FanoutRehearsal(_PerTarget):
    """Pending revisions rehearsed on a throwaway copy of each target; the targets are not changed."""

    spec: str
    goal: str
    rows: list[RehearsalRow] = field(default_factory=list)
    interrupted: bool = False

    def of(self, target: str) -> Rehearsal:
        """One target's rehearsal, step by step (e.g. `result.of('tenant_07')`)."""
        for row in self.rows:
            if row.target == target and row.rehearsal is not None:
                return row.rehearsal
        from .errors import MigrationError

        raise MigrationError(f"No rehearsal of '{target}' here.")

    def to_frame(self) -> pd.DataFrame:
        """One row per target: target, state, ok, steps, down_leaves_no_trace, ..., error."""
        return _frame([{name: getattr(row, name) for name in REHEARSAL_ROW_COLUMNS} for row in self.rows],
                      REHEARSAL_ROW_COLUMNS)


FANOUT_LINT_COLUMNS = ("scope", "target", "targets", *LINT_COLUMNS)


@dataclass(repr=False)
class FanoutLint(_Result):
    """Lint over many targets: findings equal on every target once, the rest per target."""

    spec: str
    targets: list[str]
    findings: dict[str, list[LintFinding]] = field(default_factory=dict)  # target -> its findings
    linted: dict[str, list[str]] = field(default_factory=dict)  # target -> revisions it linted
    errors: dict[str, str] = field(default_factory=dict)  # target -> why it could not be linted

    @property
    def ok(self) -> bool:
        """Whether every target was linted and none has a danger-level finding."""
        dangers = (f for found in self.findings.values() for f in found if f.severity == "danger")
        return not self.errors and next(dangers, None) is None

    def _sharing(self, revision: str) -> list[str]:
        """The linted targets on which REVISION is pending (linted)."""
        return [t for t in self.targets if revision in self.linted.get(t, ())]

    @cached_property
    def parts(self) -> tuple[list[tuple[LintFinding, int, int]], dict[str, list[LintFinding]]]:
        """(finding, targets sharing it, targets where its revision is pending) for what most of those
        targets share, shown once; per target only the findings that differ from that."""
        seen: dict[tuple[Any, ...], dict[str, LintFinding]] = {}
        for target, found in self.findings.items():
            for key, finding in _keyed(found):
                seen.setdefault(key, {})[target] = finding
        common, differ = [], {t: [] for t in self.targets}
        for key, by_target in seen.items():
            pending = len(self._sharing(key[0]))
            groups: dict[tuple[Any, ...], list[str]] = {}
            for target, finding in by_target.items():
                groups.setdefault((finding.severity, finding.rows, finding.message), []).append(target)
            usual = max(groups.values(), key=len)
            if 2 * len(usual) <= pending:  # no count most targets share: every target's own
                usual = []
            else:
                common.append((by_target[usual[0]], len(usual), pending))
            for target in by_target.keys() - set(usual):
                differ[target].append(by_target[target])
        return common, {t: fs for t, fs in differ.items() if fs}

    @property
    def common(self) -> list[LintFinding]:
        """Findings with the same count on most targets where their revision is pending (shown once)."""
        return [finding for finding, _, _ in self.parts[0]]

    @property
    def differing(self) -> dict[str, list[LintFinding]]:
        """Per target, only its findings that differ from what most targets have (or that most lack)."""
        return self.parts[1]

    def per_target(self) -> list[tuple[str, LintFinding]]:
        """The findings that differ by target, worst first (dangers of every target before any warning),
        in the targets' order within a severity."""
        found = [(t, f) for t, fs in self.parts[1].items() for f in fs]
        return sorted(found, key=lambda pair: -SEVERITIES.index(pair[1].severity))

    def to_frame(self) -> pd.DataFrame:
        """scope ('common' once, 'target' per target, worst first), target, targets (how many share it),
        then the lint columns; targets that could not be linted as scope 'error'."""
        common, _ = self.parts
        rows = [{"scope": "error", "target": t, "targets": 1, "message": e} for t, e in self.errors.items()]
        rows += [{"scope": "common", "target": None, "targets": n, **_finding_row(f)} for f, n, _ in common]
        rows += [{"scope": "target", "target": t, "targets": 1, **_finding_row(f)}
                 for t, f in self.per_target()]
        return _frame(rows, FANOUT_LINT_COLUMNS).astype({"rows": "Int64", "targets": "Int64"})


def _keyed(findings: list[LintFinding]) -> list[tuple[tuple[Any, ...], LintFinding]]:
    """Each finding with a key that matches the same finding on another target (the n-th of a kind)."""
    counts: dict[tuple[Any, ...], int] = {}
    keyed = []
    for finding in findings:
        kind = (finding.revision, finding.op, finding.table, finding.rule)
        counts[kind] = counts.get(kind, 0) + 1
        keyed.append(((*kind, counts[kind]), finding))
    return keyed


def _finding_row(finding: LintFinding) -> dict[str, Any]:
    return {f.name: getattr(finding, f.name) for f in fields(finding)}


@dataclass(frozen=True)
class CellRevision:
    """What a %%revision cell may do with the revision it wrote before (the manager decides)."""

    earlier: str | None = None
    replaceable: str | None = None  # an unapplied head: written again under the same id
    applied: bool = False  # applied to the database: the new revision goes on top

    def note_for(self, written: str, note: str | None = None) -> str | None:
        """The note on the new revision: what became of this cell's earlier one."""
        said = [note] if note else []
        if self.replaceable and not any("replaced" in part for part in said):
            said.append(f"replaced the earlier {self.replaceable}")
        elif self.applied and self.earlier and self.earlier != written:
            said.append(f"this cell's earlier revision {self.earlier} is applied; "
                        f"this wrote {written} on top")
        return "; ".join(said) or None

    def nothing_written(self) -> str:
        """The summary when autogenerate found no change."""
        text = "No changes detected: no revision was written."
        if self.replaceable:
            return f"{text} The earlier revision {self.replaceable} of this cell was removed."
        if self.applied and self.earlier:
            return f"{text} This cell's earlier revision {self.earlier} is applied."
        return text


def no_changes(earlier: CellRevision | None = None) -> Outcome:
    """The result of a revision for which autogenerate found no change (its one wording)."""
    return Outcome("revision", (earlier or CellRevision()).nothing_written())
