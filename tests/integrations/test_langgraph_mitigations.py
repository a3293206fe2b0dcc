"""Mitigations inside ``create_web_graph``: exact accounting in Qdrant, and crash-free resume.

Agents are deterministic (``EchoAgent``, wrapped to record the prompts they receive); the graph,
the SQLite checkpointer, the monitor, the embedder and Qdrant are real.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langgraph.checkpoint.sqlite")

from langgraph.checkpoint.sqlite import SqliteSaver
from llmweb_langgraph import create_web_graph

from llmweb_plugin.web import EchoAgent, WebHook
from llmweb_plugin.web.mitigations import (
    ExternalInjection,
    HumanSampling,
    JsonlSink,
    PromptVariation,
)

SEEDS = [f"Seed post {i}: Bitcoin, markets and the future, take {i}." for i in range(8)]
EXTERNAL = [f"Fresh human post {i}: my neighbour paid for bread with coins number {i}."
            for i in range(40)]
PERSONAS = ["You are a historian.", "You are an engineer.", "You are a farmer."]
AGENTS = ("a0", "a1", "a2")
N, L, T = 3, 2, 4


class Agent:
    """EchoAgent that keeps its prompts and can fail once at a chosen step."""

    def __init__(self, name: str, prompts: list[tuple[int, str, str]] | None = None,
                 fail_at: int | None = None) -> None:
        self.name, self.echo, self.fail_at = name, EchoAgent(name), fail_at
        self.prompts = prompts if prompts is not None else []

    def respond(self, request: Any, n: int, *, config: Any = None) -> list[str]:
        if request.step == self.fail_at:
            raise RuntimeError(f"{self.name} crashed at step {request.step}")
        prompt = request.render()
        self.prompts.append((request.step, request.system_prompt or "", prompt))
        return self.echo.generate_n(prompt, n)


class CrashOnce(WebHook):
    """Fails the metrics node once, after the hooks before it have run (a mid-hook crash)."""

    name = "crash_once"

    def __init__(self, step: int) -> None:
        self.step, self.fired = step, False

    def after_step(self, *, step, posts, monitor, rng):
        if step == self.step and not self.fired:
            self.fired = True
            raise RuntimeError("crash inside after_step")


def hooks(review: Path, extra: list[WebHook] = ()) -> list[WebHook]:
    return [
        PromptVariation(personas=PERSONAS, temperature_schedule=[0.3, 0.9]),
        ExternalInjection(EXTERNAL, per_step=2),
        HumanSampling(0.5, sink=JsonlSink(review),
                      reviewer=lambda item: f"Human rewrite number {item.seq} of a post."),
        *extra,
    ]


def run_graph(store, *, run_id, review, checkpointer=None, thread="t", agents=None,
              extra=(), resume=False):
    agents = agents or {a: Agent(a) for a in AGENTS}
    graph = create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=L,
                             n_steps=T, rng=7, run_id=run_id, mitigations=hooks(review, extra))
    app = graph.compile(checkpointer=checkpointer)
    cfg = {"configurable": {"thread_id": thread}}
    return app.invoke(None if resume else {}, cfg), agents


def snapshot(store, run_id):
    return sorted((r.kind, r.agent, r.step, r.index, r.text) for r in store.records(run_id))


def test_mitigations_in_the_graph_are_counted_exactly(store, tmp_path):
    prompts: list[tuple[int, str, str]] = []
    agents = {a: Agent(a, prompts) for a in AGENTS}
    out, _ = run_graph(store, run_id="g", review=tmp_path / "q.jsonl", agents=agents)
    recs = store.records("g")
    by = Counter((r.kind, r.step) for r in recs)
    for t in range(1, T + 1):
        assert by[("external", t)] == 2  # exactly per_step, every step
        assert by[("post", t)] == N and by[("response", t)] == N * L
    ext = [r.text for r in store.records("g", kind="external")]
    assert ext == EXTERNAL[: 2 * T]
    # human sampling: cumulative quota floor(0.5 * posts); replacements are kind human
    human = store.records("g", kind="human")
    assert len(human) == sum(np.diff([0] + [int(0.5 * N * t) for t in range(1, T + 1)]))
    post_ids = {r.point_id: r for r in store.records("g", kind="post")}
    for h in human:
        assert h.text.startswith("Human rewrite number") and h.agent == "human"
        assert h.metadata["review_of"] in post_ids and h.metadata["review"] == "replaced"
    # the synthetic fraction each step reports is posts / web, recomputed from Qdrant
    for h in out["history"]:
        t = h["step"]
        web = store.web("g", before_step=t + 1)
        assert h["extras"]["synthetic_fraction"] == sum(r.kind == "post" for r in web) / len(web)
        # the injection hook runs before human sampling adds the step's human documents
        before_review = [r for r in web if not (r.kind == "human" and r.step == t)]
        assert h["extras"]["synthetic_fraction_after_injection"] == sum(
            r.kind == "post" for r in before_review) / len(before_review)
        assert h["extras"]["injected"] == 2
        assert h["extras"]["sampled"] == h["extras"]["reviewed_applied"]
    # prompt variation: visible in what the agents received and in the stored metadata
    for step, system, _ in prompts:
        assert system in PERSONAS
    for r in store.records("g", kind="response"):
        assert r.metadata["persona"] in PERSONAS and r.metadata["temperature"] in (0.3, 0.9)
        assert r.metadata["mitigation"] == "prompt_variation"
    seen = {(step, system) for step, system, _ in prompts}
    assert len({s for _, s in seen}) > 1  # personas rotate across steps and agents


def test_human_sampling_in_the_graph_is_reproducible_for_a_seed(store, tmp_path):
    run_graph(store, run_id="g1", review=tmp_path / "q1.jsonl", thread="t1")
    run_graph(store, run_id="g2", review=tmp_path / "q2.jsonl", thread="t2")
    s1 = [(it.agent, it.step, it.seq) for it in JsonlSink(tmp_path / "q1.jsonl").items()]
    s2 = [(it.agent, it.step, it.seq) for it in JsonlSink(tmp_path / "q2.jsonl").items()]
    assert s1 == s2 and s1
    strip = lambda snap: [x for x in snap]
    assert strip(snapshot(store, "g1")) == strip(snapshot(store, "g2"))


def test_resume_after_crashes_counts_nothing_twice(store, tmp_path):
    # reference: one uninterrupted run
    run_graph(store, run_id="ref", review=tmp_path / "ref.jsonl", thread="ref")
    ref = snapshot(store, "ref")

    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    saver = SqliteSaver(conn)
    review = tmp_path / "crash.jsonl"
    # 1) agent a1 raises at step 2 (after step 1's injection and sampling were written)
    crashing = {a: Agent(a, fail_at=2 if a == "a1" else None) for a in AGENTS}
    with pytest.raises(Exception, match="a1 crashed at step 2"):
        run_graph(store, run_id="crash", review=review, checkpointer=saver, thread="c",
                  agents=crashing)
    assert store.count("crash", kind="external") == 2
    # 2) resume with fixed agents and fresh hooks (as a new process would); this time a hook
    #    fails the metrics node of step 3 after injection and sampling already ran
    with pytest.raises(Exception, match="crash inside after_step"):
        run_graph(store, run_id="crash", review=review, checkpointer=saver, thread="c",
                  extra=[CrashOnce(3)], resume=True)
    assert store.count("crash", kind="external") == 6  # step 3's documents are in
    # 3) resume again: step 3's after_step hooks run a second time
    out, _ = run_graph(store, run_id="crash", review=review, checkpointer=saver, thread="c",
                       resume=True)
    assert out["step"] == T
    got = snapshot(store, "crash")
    assert got == ref  # same records, same texts, nothing twice
    assert Counter(k for k, *_ in got) == Counter(k for k, *_ in ref)
    assert len(JsonlSink(review).items()) == len(JsonlSink(tmp_path / "ref.jsonl").items())
    assert [h["step"] for h in out["history"]] == list(range(1, T + 1))
    conn.close()
