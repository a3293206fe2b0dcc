"""A tiny web on the real local SmolLM2 model (slow: loads the model)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

import llmweb_plugin as lw
from llmweb_langgraph import create_web_graph

pytestmark = pytest.mark.slow


def test_tiny_web_on_the_local_model_is_real_and_reproducible(embedder) -> None:
    models = pytest.importorskip("llmweb_plugin.web.models")
    runs = []
    for _ in range(2):
        agents = models.local_agents(2, seed=0, max_new_tokens=16)
        with lw.WebStore(":memory:", embedder=embedder) as store:
            g = create_web_graph(agents, store=store, responses_per_step=2, n_steps=2, rng=0,
                                 run_id="local").compile(checkpointer=InMemorySaver())
            out = g.invoke({}, {"configurable": {"thread_id": "local"}})
            assert store.count("local", kind="seed") == 20
            assert store.count("local", kind="post") == 2 * 2
            assert store.count("local", kind="response") == 2 * 2 * 2
            resp = store.records("local", kind="response")
            assert all(r.text.strip() for r in resp)
            assert all(r.metadata["n_batched"] is True and "model_seed" in r.metadata
                       for r in resp)
            assert len(out["history"]) == 2 and out["history"][0]["n_agents"] == 2
            assert out["history"][0]["norm"] > 0
            runs.append(([(r.agent, r.step, r.index, r.text) for r in resp],
                         [h["norm"] for h in out["history"]]))
    # seeded local models in a seeded web: the same texts and norms again
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-5)


def test_llmweb_run_on_the_local_model_ends_with_a_verdict(tmp_path, capsys) -> None:
    """The main job end to end on the real SmolLM2 agents (issue 12): a ``verdict:`` line in the
    terminal, the same verdict in results.json and report.json, and text evidence."""
    import json

    pytest.importorskip("llmweb_plugin.web.models")
    from llmweb_plugin.cli import main

    rc = main(["run", "--n-agents", "2", "--steps", "6", "--responses", "1",
               "--max-new-tokens", "12", "--out", str(tmp_path), "--run-id", "real",
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "run real: 12 posts, 6 steps" in out   # 2 agents x 6 steps
    res = json.loads((tmp_path / "real" / "results.json").read_text())
    rep = json.loads((tmp_path / "real" / "report.json").read_text())
    assert len(res["history"]) == 6
    assert res["verdict"]["verdict"] in {"collapsing", "converging", "narrowing", "stable",
                                         "diverging", "inconclusive"}
    assert res["verdict"]["sentence"] == rep["verdict"]["sentence"]
    assert f"verdict: {res['verdict']['sentence']}" in out
    ev = rep["verdict"]["evidence"]["real"]
    assert ev["first"]["step"] == 1 and ev["last"]["step"] == 6
    assert 0.0 <= ev["last"]["near_duplicates"]["share"] <= 1.0
