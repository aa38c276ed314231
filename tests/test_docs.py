"""Every `speechmask ...` command shown in the README and docs/ parses with today's CLI, and every
subcommand's --help works: a renamed flag cannot leave a stale example behind."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from speechmask.cli import build_parser

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Where a shell line stops being speechmask's arguments.
_SHELL_END = re.compile(r"\s(?:\||>|<|&&|;|2>)\s?")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S)


def doc_commands() -> list[tuple[str, str]]:
    """``(where, command line)`` for every speechmask invocation in a bash block."""
    found = []
    for path in DOCS:
        for block in _bash_blocks(path.read_text()):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.split(" #")[0].strip()
                for match in re.finditer(r"(?:^|[\s/])speechmask\s+([a-z].*)", line):
                    args = _SHELL_END.split(" " + match.group(1))[0].strip()
                    found.append((f"{path.name}: {line[:60]}", args))
    return found


COMMANDS = doc_commands()


def test_docs_show_commands():
    assert len(COMMANDS) >= 20
    assert any(args.startswith("train --recipe") for _, args in COMMANDS)


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses(where, args):
    argv = [a for a in shlex.split(args) if a != "..."]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{where}: `speechmask {args}` does not parse (exit {exc.code})")


def _subcommands() -> list[list[str]]:
    parser = build_parser()
    names = []
    for action in parser._subparsers._group_actions:  # the one sub-parsers action
        for name, sub in action.choices.items():
            names.append([name])
            for inner in getattr(sub, "_subparsers", None) and sub._subparsers._group_actions \
                    or []:
                names += [[name, n] for n in inner.choices]
    return names


@pytest.mark.parametrize("words", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*words, "--help"])
    assert exc.value.code == 0
    assert "usage: speechmask" in capsys.readouterr().out
