"""`framefox-migrate`: the %migrate sub-commands from a shell."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from . import commands, settings
from .errors import MigrationError
from .fanout import TargetCallback
from .manager import AlembicManager, StepCallback
from .results import FanoutLint, FanoutRehearsal, FanoutResult

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
    import shlex

    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = commands.parse(shlex.join(words), prog=PROG)
        confirm_dangers = settings.tool_defaults().get("confirm_dangerous_upgrade", True)
        result = commands.execute(AlembicManager(), args, _Terminal(), confirm_dangers=bool(confirm_dangers))
    except commands.HelpShown as shown:
        print(shown.text)
        return 0
    except MigrationError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    if result is not None:
        print(repr(result))
    if isinstance(result, (FanoutResult, FanoutRehearsal)) and not result.ok:
        return 1
    if isinstance(result, FanoutLint) and result.errors:  # as lint of one database: findings are no failure
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
