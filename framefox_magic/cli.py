"""`framefox-migrate`: the %migrate sub-commands from a shell."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import commands, settings
from .errors import MigrationError

if TYPE_CHECKING:  # imported when a command needs the manager: `status` often does not
    from .fanout import TargetCallback
    from .manager import AlembicManager, StepCallback

PROG = "framefox-migrate"


class _Terminal:
    """What sub-commands ask of a front end, answered for a terminal."""

    def progress(self, verb: str) -> StepCallback:
        """One line on stderr per revision."""
        return commands.text_progress(verb, sys.stderr)

    def target_progress(self, verb: str) -> TargetCallback:
        """One line on stderr, rewritten in place as targets finish."""
        return commands.text_target_progress(verb, sys.stderr)

    def panel(self, manager: AlembicManager) -> Any:
        raise MigrationError("The panel needs a notebook: run `%migrate panel` in Jupyter.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; print its result as text; exit 1 with a short message on failure."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the final flush at exit does not fail again
        return 1


def _run(words: list[str]) -> int:
    import shlex

    try:
        args = commands.parse(shlex.join(words), prog=PROG)
        result = _quick(args) or _execute(args)
    except commands.HelpShown as shown:
        print(shown.text)
        return 0
    except MigrationError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    if result is not None:
        print(repr(result))
    return 1 if _failed_targets(result) else 0


def _failed_targets(result: Any) -> bool:
    """A run over many targets where one failed, or a target that could not be linted (exit 1);
    lint findings, as for one database, are no failure. results is imported only if it was."""
    results = sys.modules.get("framefox_magic.results")
    if results is None:
        return False
    if isinstance(result, results.FanoutResult | results.FanoutRehearsal):
        return not result.ok
    return isinstance(result, results.FanoutLint) and bool(result.errors)


def _quick(args: Any) -> Any:
    """`status` or `history` of a SQLite project at head, read with the standard library (no alembic
    import)."""
    if args.command not in ("status", "history") or vars(args).get("targets") or vars(args).get("rev_range"):
        return None  # over targets, or part of the history
    from . import quickread

    read = quickread.quick_status if args.command == "status" else quickread.quick_history
    return read(args.url, args.migrations_dir)


def _execute(args: Any) -> Any:
    from .manager import AlembicManager

    confirm_dangers = settings.tool_defaults().get("confirm_dangerous_upgrade", True)
    return commands.execute(AlembicManager(), args, _Terminal(), confirm_dangers=bool(confirm_dangers))


if __name__ == "__main__":
    sys.exit(main())
