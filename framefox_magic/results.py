"""Result objects: plain data with `to_frame()`, a readable `__repr__` and `_repr_html_`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import render

if TYPE_CHECKING:
    import pandas as pd

HISTORY_COLUMNS = (
    "revision", "parents", "message", "created", "applied", "current", "head", "branch_labels", "path"
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


@dataclass(repr=False)
class Status(_Result):
    """Where the database stands against the migration scripts."""

    current: tuple[str, ...] = ()
    heads: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    up_to_date: bool = False
    url: str = ""
    pending_revisions: list[RevisionInfo] = field(default_factory=list)

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
        """One row per step: revision, message, destructive."""
        rows = [
            {
                "revision": step.revision,
                "message": step.message,
                "destructive": self.diffs[step.revision].destructive
                if step.revision in self.diffs else False,
            }
            for step in self.steps
        ]
        return _frame(rows, ("revision", "message", "destructive"))


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

