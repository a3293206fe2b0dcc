"""The README's two commands are what CI runs and what a new user types."""

from __future__ import annotations

import json
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
def test_readme_python_example_runs(index, tmp_path, monkeypatch, capsys, embedder):
    """Every ```python block of the README runs as written, offline, as ``__main__`` in a fresh
    namespace and an empty folder, in this interpreter: ``lw.default_embedder()`` is then the
    session's warm MiniLM (a new interpreter per block cost 25-38 s each, mostly loading torch).
    The fresh interpreter is kept once, for all blocks, in the test below."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    block = _python_blocks()[index]
    exec(compile(block, f"README.md python block {index}", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert capsys.readouterr().out.strip(), "the block printed nothing"


#: runs every README block (JSON list on stdin), each as ``__main__`` in its own namespace
_RUN_BLOCKS = """
import json, sys
for i, block in enumerate(json.loads(sys.stdin.read())):
    exec(compile(block, f"README.md python block {i}", "exec"), {"__name__": "__main__"})
    print(f"block {i} ran", flush=True)
"""


def test_readme_python_examples_run_in_a_fresh_interpreter(tmp_path):
    """The blocks as a new user runs them: a new interpreter with nothing imported beforehand."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    blocks = _python_blocks()
    proc = subprocess.run([sys.executable, "-c", _RUN_BLOCKS], input=json.dumps(blocks),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = [line for line in proc.stdout.splitlines() if line.startswith("block ")]
    assert ran == [f"block {i} ran" for i in range(len(blocks))]
