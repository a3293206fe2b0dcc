"""The README's two commands are what CI runs and what a new user types."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    return re.findall(r"^    \$ (.+)$", (ROOT / "README.md").read_text(), flags=re.M)


def test_readme_has_exactly_two_commands_installing_cpu_torch_first():
    cmds = _commands()
    assert len(cmds) == 2
    for c in cmds:
        assert c.startswith("pip install torch==2.13.0 && ")
        assert "--index-url" not in c and "http" not in c
    assert cmds[0].endswith("llmweb run")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    out = subprocess.run(
        ["bash", "-c", "sed -n 's/^    \\$ //p' README.md | sed -n '2p'"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out == _commands()[1]
    assert "sed -n 's/^    \\$ //p' README.md | sed -n '2p'" in (ROOT / ".ci" / "run").read_text()
