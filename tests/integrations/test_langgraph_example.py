"""``examples/01_agent_web.py`` runs offline (with its fake agents) and prints what it promises."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "01_agent_web.py"


def test_example_01_runs(monkeypatch, capsys, embedder) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--steps", "2", "--responses", "2"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "step  1  ||D||_F = " in out and "step  2  ||D||_F = " in out
    assert "20 seeds, 6 posts, 12 responses in Qdrant" in out
    assert "posts at step 1:" in out and "posts at step 2:" in out
