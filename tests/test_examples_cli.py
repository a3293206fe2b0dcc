"""The ``llmweb`` commands the examples tell users to type use today's options (issue 10).

The CLI speaks one vocabulary (``--replicates``, ``--steps``, ...); old spellings still parse but
print a deprecation note. A command quoted in an example's docstring must parse without one.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llmweb_plugin.cli import build_parser

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("[0-9][0-9]_*.py"))
_COMMAND = re.compile(r"``(llmweb [^`]+)``")


def _commands() -> list[tuple[str, str]]:
    out = []
    for path in EXAMPLES:
        for cmd in _COMMAND.findall(path.read_text(encoding="utf-8")):
            out.append((path.name, cmd))
    return out


def test_examples_quote_llmweb_commands() -> None:
    assert any("experiment" in c for _, c in _commands())


@pytest.mark.parametrize("example,command", _commands())
def test_quoted_command_parses_without_a_deprecation_note(example, command, capsys) -> None:
    build_parser().parse_args(shlex.split(command)[1:])
    err = capsys.readouterr().err
    assert "deprecated" not in err, f"{example}: {command!r}: {err.strip()}"
