"""Crash safety with a real process kill: SIGKILL mid-step, resume in a new process.

A subprocess runs a web (3 deterministic agents, SQLite checkpointer, Qdrant folder). At step 3
agent ``a0`` answers at once while ``a1`` and ``a2`` are slow; once ``a0`` has answered (a marker
file says so) and had time to store its records, the test kills the process with SIGKILL. A new
process resumes the same thread with ``graph.invoke(None, config)``. The store must then hold
exactly what an uninterrupted run holds: ``|A(0)| + n T`` posts, ``n L T`` responses, no
duplicates, the same texts and the same ``||D(t)||_F`` series.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import llmweb_plugin as lw
from llmweb_plugin.agents import EchoAgent
from llmweb_plugin.dynamics import run_web

SEEDS = [f"Seed post {i}: Bitcoin, markets and the future, take {i}." for i in range(10)]
N, L, T = 3, 3, 5

SCRIPT = textwrap.dedent('''
    import json, os, sqlite3, sys, time
    from langgraph.checkpoint.sqlite import SqliteSaver
    import llmweb_plugin as lw
    from llmweb_langgraph import create_web_graph
    from llmweb_plugin.agents import EchoAgent

    store_dir, ckpt, marks, mode = sys.argv[1:5]
    SEEDS = json.loads(sys.argv[5])
    L, T = int(sys.argv[6]), int(sys.argv[7])
    slow = mode == "start"

    class Agent:
        """Deterministic (EchoAgent); at step 3 of the first process a1 and a2 take long."""
        def __init__(self, name):
            self.name, self.echo = name, EchoAgent(name)
        def respond(self, request, n, *, config=None):
            if slow and request.step == 3 and self.name != "a0":
                time.sleep(60)
            out = self.echo.generate_n(request.render(), n)
            with open(os.path.join(marks, f"{self.name}-{request.step}-{mode}"), "w") as fh:
                fh.write("answered")
            return out

    store = lw.WebStore(store_dir)
    conn = sqlite3.connect(ckpt, check_same_thread=False)
    graph = create_web_graph({f"a{i}": Agent(f"a{i}") for i in range(3)}, store=store,
                             seeds=SEEDS, responses_per_step=L, n_steps=T, rng=0,
                             run_id="crash").compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "crash"}}
    out = graph.invoke({} if mode == "start" else None, cfg)
    print(json.dumps({"step": out["step"], "history": out["history"], "posts": out["posts"]}))
    store.close()
''')


def _run(tmp: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(tmp / "web.py"), str(tmp / "store"), str(tmp / "ckpt.sqlite"),
         str(tmp / "marks"), mode, json.dumps(SEEDS), str(L), str(T)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the web process ended early:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path.name}")
        time.sleep(0.05)


def test_sigkill_mid_step_then_resume_in_a_new_process(tmp_path: Path, embedder) -> None:
    (tmp_path / "web.py").write_text(SCRIPT)
    (tmp_path / "marks").mkdir()
    proc = _run(tmp_path, "start")
    _wait_for(tmp_path / "marks" / "a0-3-start", proc, timeout=600)
    time.sleep(3.0)  # a0 stores its step-3 records; a1 and a2 are still "generating"
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    marks = {p.name for p in (tmp_path / "marks").iterdir()}
    assert "a1-3-start" not in marks and "a2-3-start" not in marks  # killed mid-step

    # what the killed process left: steps 1-2 whole, and a0's part of step 3
    with lw.WebStore(tmp_path / "store", embedder=embedder) as st:
        assert st.count("crash", kind="post") == 2 * N + 1
        assert st.count("crash", kind="response") == (2 * N + 1) * L

    proc = _run(tmp_path, "resume")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    final = json.loads(out.strip().splitlines()[-1])
    marks = {p.name for p in (tmp_path / "marks").iterdir()}
    # the resumed process re-ran only the unfinished tasks: a0's step 3 was checkpointed
    assert "a0-3-resume" not in marks and {"a1-3-resume", "a2-3-resume"} <= marks
    assert not any(m.endswith("-resume") and m[3] in "12" for m in marks)
    assert final["step"] == T and [h["step"] for h in final["history"]] == list(range(1, T + 1))

    with lw.WebStore(tmp_path / "store", embedder=embedder) as st, \
            lw.WebStore(":memory:", embedder=embedder) as ref_store:
        assert st.count("crash", kind="seed") == len(SEEDS)
        assert st.count("crash", kind="post") == N * T
        assert st.count("crash", kind="response") == N * L * T
        assert st.count("crash", kind=["seed", "post"]) == len(SEEDS) + N * T
        recs = st.records("crash")
        assert len({r.point_id for r in recs}) == len(recs)
        keys = [(r.agent, r.step, r.kind, r.index) for r in recs]
        assert len(set(keys)) == len(keys)
        posts = st.records("crash", kind="post")
        assert len({p.text for p in posts}) == len(posts)
        # identical to an uninterrupted run of the same agents and seed
        ref = run_web({f"a{i}": EchoAgent(f"a{i}") for i in range(N)}, store=ref_store,
                      seeds=SEEDS, responses_per_step=L, n_steps=T, rng=0, run_id="crash")
        assert [(r.point_id, r.text) for r in recs] == \
            [(r.point_id, r.text) for r in ref_store.records("crash")]
        assert [h["norm"] for h in final["history"]] == \
            pytest.approx([h.norm for h in ref.history], rel=1e-5)
        assert len(final["posts"]) == N * T
        assert sorted(p["id"] for p in final["posts"]) == sorted(p.point_id for p in posts)
