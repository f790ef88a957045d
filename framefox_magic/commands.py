"""The %migrate grammar: one table of sub-commands, from which the parser, help, completion and
the `framefox-migrate` command line are all derived.

Loading this module imports no room: a sub-command's help is its manager method's docstring, read
when help is shown (the manager imports every room; `%load_ext` stays as light as the shell)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfirmationRequired, MigrationError, did_you_mean
from .settings import SecretUrl

if TYPE_CHECKING:
    from .fanout import TargetCallback
    from .manager import AlembicManager, StepCallback
    from .results import RevisionInfo

REVISION = "revision"  # a positional or option that takes a revision id: completed from the history
SYMBOLS = ("head", "heads", "base")


class CommandLineError(MigrationError):
    """The %migrate line could not be parsed."""


class HelpShown(Exception):
    """--help was asked for; the text has been produced."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Frontend(Protocol):
    """What a sub-command may ask of the front end that runs it."""

    def progress(self, verb: str) -> StepCallback | None: ...

    def panel(self, manager: AlembicManager) -> Any: ...

    def target_progress(self, verb: str) -> TargetCallback | None: ...


@dataclass(frozen=True)
class Arg:
    """One positional argument or option, in argparse's own terms."""

    flags: tuple[str, ...]
    help: str
    kind: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def positional(self) -> bool:
        """Whether this is a positional argument."""
        return not self.flags[0].startswith("-")


@dataclass(frozen=True)
class Command:
    """One sub-command: its name, arguments, what it runs, and whether it destroys anything."""

    name: str
    run: Callable[[AlembicManager, argparse.Namespace, Frontend], Any]
    args: tuple[Arg, ...] = ()
    text: str = ""  # the help, for a command that is no manager method
    method: str = ""  # the manager method, when it is not named as the command
    destructive: Callable[[argparse.Namespace], bool] = lambda args: False
    dangers: Callable[[AlembicManager, argparse.Namespace], str | None] = lambda manager, args: None
    refuse: Callable[[AlembicManager, argparse.Namespace], None] = lambda manager, args: None

    @property
    def help(self) -> str:
        """The help: the first line of the manager method's docstring (the one source of it)."""
        return self.text or _doc(self.method or self.name.replace("-", "_"))

    @property
    def summary(self) -> str:
        """The first line of the help."""
        return self.help.splitlines()[0] if self.help else ""


def _doc(method: str) -> str:
    from .manager import AlembicManager

    return (getattr(AlembicManager, method).__doc__ or "").strip().splitlines()[0]


def _arg(*flags: str, help: str, kind: str | None = None, **options: Any) -> Arg:
    return Arg(tuple(flags), help, kind, options)


YES = _arg("--yes", "-y", help="confirm a command that changes or removes data", action="store_true")
SQL = _arg("--sql", help="print the SQL instead of running it", action="store_true")
PLAN = _arg("--plan", help="list the revisions that would run, and change nothing", action="store_true")
MESSAGE = _arg("-m", "--message", help="the revision's message", required=True)
REVISION_OPTIONS = (
    _arg("--autogenerate", help="compare the models with the database and write the difference",
         action="store_true"),
    _arg("--head", help="the revision to build on (default: head)", kind=REVISION, default="head"),
    _arg("--splice", help="allow --head to be a revision that is not a head", action="store_true"),
    _arg("--branch-label", help="a label for a new branch", dest="branch_label"),
    _arg("--depends-on", help="revisions this one depends on", kind=REVISION, dest="depends_on",
         action="append"),
    _arg("--rev-id", help="the id to give the revision instead of a generated one", dest="rev_id"),
    _arg("--apply", help="upgrade to the new revision right after writing it", action="store_true"),
    _arg("--rename", help="[SCHEMA.]TABLE.COLUMN:NEW or [SCHEMA.]TABLE:NEW: write this drop + add as a "
         "rename (data kept)",
         dest="renames", action="append", default=[]),
    _arg("--no-rename", help="write drops + adds as they are, even where one could be a rename",
         dest="no_rename", action="store_true"),
)
TARGETS = _arg("--targets", help="run on many targets: schemas:PATTERN, file:PATH or sqlite:GLOB")
def _at_least_one(value: str) -> int:
    """A count of jobs: a whole number of at least 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1, not '{value}'")
    return int(value)


JOBS = _arg("--jobs", "-j", help="targets run at the same time (with --targets; default 4)",
            type=_at_least_one)
MANY_TARGETS = (
    TARGETS, JOBS,
    _arg("--keep-going", help="with --targets: go on with the other targets after a failure",
         action="store_true", dest="keep_going"),
)
TARGET_OPTIONS = (
    _arg("--url", help="database URL (kept for this session; never written to disk)", type=SecretUrl),
    _arg("--dir", help="migrations folder", dest="migrations_dir"),
    _arg("--metadata", help="module:attribute of the MetaData (default: SQLModel.metadata)"),
)


def _migrate(direction: str) -> Callable[[AlembicManager, argparse.Namespace, Frontend], Any]:
    def run(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
        downgrade = direction == "downgrade"
        if args.targets and (args.plan or args.sql):
            raise CommandLineError("--targets runs the migrations; --plan and --sql are for one database.")
        if args.targets:
            fanout = manager.for_targets(args.targets, jobs=args.jobs, keep_going=args.keep_going)
            method = fanout.downgrade if downgrade else fanout.upgrade
            return method(args.target, on_target=ui.target_progress(direction))
        if args.plan:
            return manager.plan(args.target, downgrade=downgrade)
        if args.sql:  # a preview starts where the database is, unless a range says otherwise
            return manager.sql(args.target, downgrade=downgrade, from_database=":" not in args.target)
        method = manager.downgrade if downgrade else manager.upgrade
        return method(args.target, on_step=ui.progress(direction))

    return run


def _status(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
    if args.targets:
        fanout = manager.for_targets(args.targets, jobs=args.jobs)
        return fanout.status(on_target=ui.target_progress("status"))
    return manager.status()


def _rehearse(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
    if args.targets:
        fanout = manager.for_targets(args.targets, jobs=args.jobs)
        return fanout.rehearse(args.target, on_target=ui.target_progress("rehearse"))
    return manager.rehearse(args.target)


def _lint(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
    if args.targets:
        fanout = manager.for_targets(args.targets, jobs=args.jobs)
        return fanout.lint(args.rev_range, on_target=ui.target_progress("lint"))
    return manager.lint(args.rev_range)


def _revision(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
    written = manager.revision(
        args.message, autogenerate=args.autogenerate, head=args.head, splice=args.splice,
        branch_label=args.branch_label, depends_on=args.depends_on, rev_id=args.rev_id,
        renames=args.renames, no_rename=args.no_rename,
        allow_drop_all=args.yes,
    )
    if written is None:
        from .results import no_changes

        return no_changes()
    return apply_revision(manager, written, ui) if args.apply else written


def apply_revision(manager: AlembicManager, written: RevisionInfo, ui: Frontend) -> RevisionInfo:
    """--apply: upgrade to the revision just written, then show it (now marked applied)."""
    manager.upgrade(written.revision, on_step=ui.progress("upgrade"))
    return manager.show(written.revision)


def upgrade_dangers(manager: AlembicManager, target: str) -> str | None:
    """Why an upgrade to TARGET needs confirming: the danger-level lint findings it would run; or None."""
    from .render import counted

    if ":" in target:
        return None  # a range is refused by upgrade itself
    dangers = manager.lint(target).dangers
    if not dangers:
        return None
    listed = "; ".join(f"{d.revision} {d.rule} on {d.table} ({counted(d.rows or 0, 'row')})"
                       for d in dangers[:3])
    more = f" and {len(dangers) - 3} more" if len(dangers) > 3 else ""
    return f"This upgrade would lose data or fail on the rows present: {listed}{more}. See `lint {target}`."


def _diff(manager: AlembicManager, args: argparse.Namespace, ui: Frontend) -> Any:
    return manager.diff(args.rev, args.to)


COMMANDS: tuple[Command, ...] = (
    Command("status", _status, args=(TARGETS, JOBS)),
    Command("init", lambda m, a, ui: m.init(create_database=a.create_database),
            args=(_arg("--create-database", action="store_true", dest="create_database",
                       help="create the PostgreSQL or MySQL/MariaDB database first if it is missing"),)),
    Command("config", lambda m, a, ui: m.config()),
    Command(
        "history", lambda m, a, ui: m.history(a.rev_range),
        args=(_arg("-r", "--rev-range", help="only the range A:B", dest="rev_range"),),
    ),
    Command("current", lambda m, a, ui: m.current()),
    Command("heads", lambda m, a, ui: m.heads()),
    Command("branches", lambda m, a, ui: m.branches()),
    Command(
        "show", lambda m, a, ui: m.show(a.rev),
        args=(_arg("rev", help="the revision (id, unique prefix, head, branch@head)", kind=REVISION),),
    ),
    Command(
        "diff", _diff,
        args=(
            _arg("rev", help="a revision, or the start of a path", kind=REVISION, nargs="?"),
            _arg("to", help="the end of the path", kind=REVISION, nargs="?"),
        ),
    ),
    Command("check", lambda m, a, ui: m.check()),
    Command(
        "sql", lambda m, a, ui: m.sql(a.rev_range),
        args=(_arg("rev_range", help="A:B (default base:heads)", kind=REVISION, nargs="?"),),
    ),
    Command(
        "upgrade", _migrate("upgrade"),
        args=(_arg("target", help="head (default), a revision, +N", kind=REVISION, nargs="?",
                   default="head"), SQL, PLAN, YES, *MANY_TARGETS),
        dangers=lambda m, a: None if (a.sql or a.plan or a.targets) else upgrade_dangers(m, a.target),
    ),
    Command(
        "downgrade", _migrate("downgrade"),
        args=(_arg("target", help="-N, a revision, or base", kind=REVISION), SQL, PLAN, YES, *MANY_TARGETS),
        destructive=lambda a: not (a.sql or a.plan),
    ),
    Command(
        "revision", _revision,
        args=(MESSAGE, *REVISION_OPTIONS, _arg("--yes", "-y", action="store_true",
              help="write it even when it would drop every table of the database")),
    ),
    Command(
        "stamp", lambda m, a, ui: m.stamp(a.rev, purge=a.purge),
        args=(_arg("rev", help="the revision to record", kind=REVISION),
              _arg("--purge", help="empty the version table first", action="store_true"), YES),
        destructive=lambda a: a.purge,
    ),
    Command(
        "merge", lambda m, a, ui: m.merge(a.revisions, a.message, a.branch_label, a.rev_id),
        args=(_arg("revisions", help="the heads to join (or 'heads')", kind=REVISION, nargs="+"),
              MESSAGE, _arg("--branch-label", help="a label for the merged branch", dest="branch_label"),
              _arg("--rev-id", help="the id to give the merge revision", dest="rev_id")),
    ),
    Command(
        "delete", lambda m, a, ui: m.delete(a.rev, force=a.force),
        args=(_arg("rev", help="the revision whose file to remove", kind=REVISION),
              _arg("--force", help="even if it is applied or others build on it", action="store_true"),
              YES),
        destructive=lambda a: True,
        refuse=lambda m, a: None if a.force else m.check_deletable(a.rev),
    ),
    Command(
        "squash", lambda m, a, ui: m.squash(a.rev_range, a.message, a.rev_id, keep_data=a.keep_data),
        args=(_arg("rev_range", help="the run to replace, A:B (first and last revision)", kind=REVISION),
              MESSAGE, _arg("--rev-id", help="the id to give the new revision", dest="rev_id"),
              _arg("--keep-data", help="carry the run's data migrations over in order", dest="keep_data",
                   action="store_true"), YES),
        destructive=lambda a: True,
    ),
    Command("init-version-table", lambda m, a, ui: m.create_version_table(), method="create_version_table"),
    Command("clear-history", lambda m, a, ui: m.clear_history(),
            args=(YES,), destructive=lambda a: True),
    Command("clean", lambda m, a, ui: m.clean(),
            args=(YES,), destructive=lambda a: True),
    Command("reset", lambda m, a, ui: m.reset(),
            args=(YES,), destructive=lambda a: True),
    Command("graph", lambda m, a, ui: m.graph()),
    Command(
        "rehearse", _rehearse,
        args=(_arg("target", help="head (default) or a revision", kind=REVISION, nargs="?",
                   default="head"), TARGETS, JOBS),
    ),
    Command(
        "lint", _lint,
        args=(_arg("rev_range", help="A:B, or a target (default: every pending revision)", kind=REVISION,
                   nargs="?"), TARGETS, JOBS),
    ),
    Command(
        "erd", lambda m, a, ui: m.erd(a.rev),
        args=(_arg("rev", help="draw the schema at this revision (default: the database's)",
                   kind=REVISION, nargs="?"),),
    ),
    Command(
        "drop-database", lambda m, a, ui: m.drop_database(a.name),
        args=(_arg("name", nargs="?", help="the database's name (required for the one the settings name)"),
              YES),
        destructive=lambda a: True,
    ),
    Command("panel", lambda m, a, ui: ui.panel(m), text="Show the point-and-click panel."),
)
BY_NAME = {command.name: command for command in COMMANDS}


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting: errors raise, --help returns its text; a
    sub-command's description (its help) is read only when help is shown."""

    def __init__(self, *args: Any, command: Command | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command

    def format_help(self) -> str:
        if self.command is not None and self.description is None:
            self.description = self.command.help
        return super().format_help()

    def error(self, message: str) -> Any:
        raise CommandLineError(f"{message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if status:
            raise CommandLineError((message or "").strip())
        raise HelpShown(self.format_help())

    def print_help(self, file: Any = None) -> None:
        raise HelpShown(self.format_help())


def build_parser(prog: str = "%migrate", extra: Iterable[Arg] = ()) -> argparse.ArgumentParser:
    """The parser for every sub-command, each with the shared target options and `extra`."""
    extra = tuple(extra)
    return _cached(("*", prog, repr(extra)), lambda: _full_parser(prog, extra))


def sub_parser(name: str, prog: str = "%migrate", extra: Iterable[Arg] = ()) -> argparse.ArgumentParser:
    """The parser of one sub-command, as build_parser would make it, built once and reused."""
    extra = tuple(extra)
    return _cached((name, prog, repr(extra)), lambda: _command_parser(BY_NAME[name], prog, extra))


# Parsers are reused between lines (each parse makes its own Namespace); building one per line was
# most of a warm %migrate's time.
_PARSERS: dict[tuple[str, str, str], argparse.ArgumentParser] = {}


def _cached(key: tuple[str, str, str],
            build: Callable[[], argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = _PARSERS.get(key)
    if parser is None:
        parser = _PARSERS[key] = build()
    return parser


def _full_parser(prog: str, extra: tuple[Arg, ...]) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=overview(prog), usage="%(prog)s SUB-COMMAND [options]",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="SUB-COMMAND", parser_class=_Parser,
                                       help=argparse.SUPPRESS)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, command=command, prog=f"{prog} {command.name}")
        _add_arguments(sub, command, extra)
    return parser


def _command_parser(command: Command, prog: str, extra: tuple[Arg, ...]) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{prog} {command.name}", command=command)
    _add_arguments(parser, command, extra)
    return parser


def _add_arguments(parser: argparse.ArgumentParser, command: Command, extra: tuple[Arg, ...]) -> None:
    for arg in (*command.args, *TARGET_OPTIONS, *extra):
        parser.add_argument(*arg.flags, help=arg.help, **arg.options)


def overview(prog: str = "%migrate") -> str:
    """The list of sub-commands, one line each."""
    width = max(len(c.name) for c in COMMANDS)
    lines = [f"  {c.name.ljust(width)}  {c.summary}" for c in COMMANDS]
    return (
        f"Alembic migrations: {prog} SUB-COMMAND [options]; {prog} SUB-COMMAND --help for details.\n\n"
        + "\n".join(lines)
    )


def parse(line: str, prog: str = "%migrate", extra: Iterable[Arg] = ()) -> argparse.Namespace:
    """Split a line like a shell would and parse it; no sub-command means `status`."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise CommandLineError(f"Cannot split the line: {error}.") from None
    if words[:1] == ["help"]:
        words = [*words[1:2], "--help"]
    if not words or (words[0].startswith("-") and words[0] not in ("-h", "--help")):
        words = ["status", *words]
    if words[0] not in BY_NAME and words[0] not in ("-h", "--help"):
        raise CommandLineError(f"Unknown sub-command '{words[0]}'. {_suggest(words[0])}")
    if words[0] in ("-h", "--help"):
        return build_parser(prog, extra).parse_args(words)
    return _parse_command(words, prog, extra)


def _parse_command(words: list[str], prog: str, extra: Iterable[Arg]) -> argparse.Namespace:
    """Parse with the sub-command's own parser only: what the full parser would give, sooner."""
    args, unknown = sub_parser(words[0], prog, extra).parse_known_args(words[1:])
    if unknown:  # the full parser reports these itself, under its own name
        raise CommandLineError(_unknown_options(prog, words[0], unknown, extra))
    args.command = words[0]
    return args


def _suggest(word: str) -> str:
    close = did_you_mean(word, BY_NAME)
    return close or f"Try one of: {', '.join(BY_NAME)}."


def _unknown_options(prog: str, name: str, unknown: list[str], extra: Iterable[Arg]) -> str:
    """The message for words the sub-command does not take, with the option it probably meant."""
    command = BY_NAME[name]
    flags = [flag for arg in (*command.args, *TARGET_OPTIONS, *extra) for flag in arg.flags
             if flag.startswith("--")]
    first = unknown[0].split("=", 1)[0]
    hint = did_you_mean(first, flags) if first.startswith("-") else ""
    words = " ".join(unknown)
    if len(words) > 120:  # every stray word would be repeated
        words = f"{words[:100]}... ({len(unknown)} words)"
    return f"unrecognized arguments: {words} (see `{prog} {name} --help`)" + (f". {hint}" if hint else "")


def apply_target(manager: AlembicManager, args: argparse.Namespace) -> None:
    """Make --url / --dir / --metadata the active target from now on."""
    manager.set_target(args.url, args.migrations_dir, args.metadata)


@contextmanager
def target_from(manager: AlembicManager, args: argparse.Namespace) -> Iterator[None]:
    """--url / --dir / --metadata for this command; kept from now on only if the command succeeds."""
    before = (manager.url, manager.migrations_dir, manager.metadata)
    apply_target(manager, args)
    try:
        yield
    except BaseException:
        manager.url, manager.migrations_dir, manager.metadata = before
        raise


def execute(manager: AlembicManager, args: argparse.Namespace, ui: Frontend, confirm: bool = True,
            confirm_dangers: bool = True) -> Any:
    """Run a parsed sub-command against the manager."""
    command = BY_NAME[args.command]
    with target_from(manager, args):
        command.refuse(manager, args)  # what would be refused anyway is not asked about
        sure = getattr(args, "yes", False)
        if confirm and command.destructive(args) and not sure:
            raise ConfirmationRequired(_confirmation(manager, command, args))
        if confirm and confirm_dangers and not sure and (reason := command.dangers(manager, args)):
            raise ConfirmationRequired(f"{reason} Add --yes to go ahead. Nothing was changed.")
        return command.run(manager, args, ui)


_IPYTHON_OWN = re.compile(r"^(_+|_i+|_i?\d+|_[oid]h|__\w*__)$")


def check_output_name(name: str, reserved: Iterable[str] = ()) -> None:
    """Refuse an -o name that is not an identifier or would hide a builtin or IPython's own name."""
    import builtins
    import keyword

    if not name.isidentifier() or keyword.iskeyword(name):
        raise CommandLineError(f"-o {name}: not a Python variable name.")
    if name in dir(builtins) or name in set(reserved) or _IPYTHON_OWN.match(name):
        raise CommandLineError(
            f"-o {name} would hide Python's or IPython's own `{name}`; pick another name. "
            "Nothing was run."
        )


BACKED_UP = frozenset({"downgrade", "stamp", "clear-history", "reset"})


def _backup_note(manager: AlembicManager, command: Command) -> str:
    """For a command that backs up a SQLite file first: where no backup can be made, say so."""
    note = manager.backup_note() if command.name in BACKED_UP else None
    return f" Note: {note}." if note else ""


def text_progress(verb: str, stream: Any) -> StepCallback:
    """Progress per revision as lines of text (terminals)."""

    def step(done: int, total: int, info: Any) -> None:
        print(f"  {verb} {done}/{total}: {info.revision} {info.message}", file=stream, flush=True)

    return step


def text_target_progress(verb: str, stream: Any) -> TargetCallback:
    """Progress over many targets as one line of text, rewritten in place (terminals)."""
    from .render import fanout_progress_text

    counts: dict[str, int] = {}

    def step(done: int, total: int, row: Any) -> None:
        counts[row.state] = counts.get(row.state, 0) + 1
        end = "\n" if done == total else ""
        print(fanout_progress_text(verb, done, total, counts), end=end, file=stream, flush=True)

    return step


def _confirmation(manager: AlembicManager, command: Command, args: argparse.Namespace) -> str:
    """What a destructive command without --yes says; over many targets, how many it would touch."""
    from .render import counted

    if getattr(args, "targets", None):
        count = len(manager.for_targets(args.targets))
        return (f"`{command.name} --targets` would change {counted(count, 'target')}: add --yes to go ahead. "
                "Nothing was changed.")
    note = _backup_note(manager, command)
    return f"`{command.name}` changes or removes data: add --yes to go ahead.{note} Nothing was changed."


# ---------------------------------------------------------------- completion


def completions(line: str, revisions: Callable[[], Iterable[str]], extra: Iterable[Arg] = ()) -> list[str]:
    """What may come next on a %migrate line (sub-commands, options, revision ids)."""
    words = line.split()
    if line.endswith(" ") or not words:
        words.append("")
    if words and words[0].startswith("%"):
        words = words[1:] or [""]
    current = words[-1]
    if len(words) == 1:
        return [name for name in BY_NAME if name.startswith(current)]
    command = BY_NAME.get(words[0])
    if command is None:
        return []
    args = (*command.args, *TARGET_OPTIONS, *extra)
    if current.startswith("-"):
        flags = [flag for arg in args for flag in arg.flags if flag.startswith("--")]
        return [flag for flag in flags if flag.startswith(current)]
    previous = words[-2]
    option = next((a for a in args if previous in a.flags), None)
    expects_revision = (
        option.kind == REVISION if option is not None and option.options.get("action") is None
        else any(a.positional and a.kind == REVISION for a in command.args)
    )
    if not expects_revision:
        return []
    candidates = [*SYMBOLS, *revisions()]
    return [c for c in candidates if c.startswith(current)]
