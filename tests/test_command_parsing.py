"""A %migrate line means the same on every call: parsers are reused, results, errors and help stay."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from framefox_magic import commands
from framefox_magic.magics import MANUAL, OUTPUT

LINES = [
    "status",
    "status -o s",
    "history -r base:head --url sqlite:///x.db",
    "upgrade",
    "upgrade +2 --sql",
    "downgrade -1 --yes",
    "downgrade base --plan",
    "revision -m 'add hero' --autogenerate --depends-on a1 --depends-on b2 --rev-id r1",
    "revision -m x --branch-label feature --head base --splice --apply",
    "merge heads -m join --branch-label both",
    "stamp abc --purge -y",
    "diff a1 b2",
    "delete abc --force --yes --dir other/migrations --metadata app:metadata",
    "sql base:head",
    "show head -o found",
]
MISTAKES = [
    "upgrade --bogus",
    "history --frobnicate 3",
    "history extra words",
    "revision",
    "revision -m",
    "show",
    "downgrade",
    "merge -m x",
    "stamp a b",
    "status --url",
]
HELP = ["status --help", "upgrade -h", "revision --help", "merge --help", "--help"]
FRONTS = [("%migrate", (OUTPUT,)), ("%%revision", (OUTPUT, MANUAL)), ("framefox-migrate", ())]


def reference(line: str, prog: str, extra: tuple) -> Any:
    """What the full parser (every sub-command in one) makes of the line; words it does not know are
    reported the way %migrate reports them (with the option probably meant)."""

    def parse() -> Any:
        args, unknown = commands.build_parser(prog, extra).parse_known_args(shlex.split(line))
        if unknown:
            raise commands.CommandLineError(commands._unknown_options(prog, args.command, unknown, extra))
        return args

    return _outcome(parse)


def _outcome(parse: Any) -> Any:
    try:
        return ("parsed", vars(parse()))
    except commands.HelpShown as shown:
        return ("help", shown.text)
    except commands.CommandLineError as error:
        return ("error", str(error))


@pytest.mark.parametrize(("prog", "extra"), FRONTS)
def test_every_line_parses_as_the_full_parser_does(prog: str, extra: tuple) -> None:
    for line in LINES + MISTAKES + HELP:
        if "-o " in line and not extra:
            continue
        expected = reference(line, prog, extra)
        for _ in range(3):  # the reused parser answers the same every time
            assert _outcome(lambda line=line: commands.parse(line, prog, extra)) == expected, line


def test_errors_and_help_read_as_before() -> None:
    assert _outcome(lambda: commands.parse("upgrade --bogus")) == (
        "error", "unrecognized arguments: --bogus (see `%migrate upgrade --help`)")
    kind, text = _outcome(lambda: commands.parse("revision"))
    assert kind == "error" and "-m/--message" in text and "%migrate revision --help" in text
    kind, text = _outcome(lambda: commands.parse("upgrade --help"))
    assert kind == "help" and text.startswith("usage: %migrate upgrade")


def test_repeated_lines_share_no_values() -> None:
    line = "revision -m x --depends-on a1"
    first = commands.parse(line)
    first.depends_on.append("changed by the caller")
    assert commands.parse(line).depends_on == ["a1"]
    assert commands.parse("revision -m y").depends_on is None


def _magic_outcome(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], line: str) -> Any:
    capsys.readouterr()
    result = shell.run_cell(line)
    return result.success, str(result.error_in_exec or ""), capsys.readouterr().out


def test_the_magic_answers_alike_after_unload_and_load(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["%migrate upgrade --help", "%migrate help", "%migrate upgrade --bogus",
             "%migrate revision", "%%revision --help\nx = 1"]
    before = [_magic_outcome(shell, capsys, line) for line in lines]
    assert before[0][2].startswith("usage: %migrate upgrade")
    assert "unrecognized arguments: --bogus" in before[2][1]
    shell.run_line_magic("unload_ext", "framefox_magic")
    shell.run_line_magic("load_ext", "framefox_magic")
    assert [_magic_outcome(shell, capsys, line) for line in lines] == before
    assert [_magic_outcome(shell, capsys, line) for line in lines] == before
    assert not (project / "migrations").exists()
