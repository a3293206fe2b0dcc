"""Every numbered example runs offline to completion (CI runs them through this test)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("[0-9][0-9]_*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4, [p.name for p in EXAMPLES]


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path, monkeypatch, capsys, embedder):
    """Each example as ``__main__`` with no arguments, in this interpreter: the session's warm
    MiniLM, and local models loaded once per process (a new interpreter per example cost 20-28 s,
    mostly loading torch and the models). One example also runs as a script below."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("LLMWEB_EXAMPLE_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:  # sys.exit(main()): only a zero exit passes
        assert exit_.code in (None, 0), f"{script.name} exited with {exit_.code}"
    assert capsys.readouterr().out.strip(), f"{script.name} printed nothing"


@pytest.mark.slow
def test_an_example_runs_as_a_script_in_a_new_process(tmp_path):
    """``python examples/01_agent_web.py`` as a user types it, in a fresh interpreter."""
    script = EXAMPLES[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
           "LLMWEB_EXAMPLE_OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, \
        f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
