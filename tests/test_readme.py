"""The README's two commands are what CI runs and what a new user types."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_example_runs(index, tmp_path):
    """Every ```python block of the README runs as written, offline, in a fresh interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", _python_blocks()[index]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
