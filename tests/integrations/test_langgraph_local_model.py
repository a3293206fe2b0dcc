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
