"""``create_web_graph``: the LLM web as a LangGraph graph, checked against records in Qdrant."""

from __future__ import annotations

import math
from itertools import cycle
from typing import Any, ClassVar

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import StateGraph

import llmweb_langgraph
import llmweb_plugin as lw
from llmweb_langgraph import create_web_graph
from llmweb_plugin.testing import brute_force_collapse_norm
from llmweb_plugin.web import PAPER_QUERY, AgentError, EchoAgent, WebHook, run_web

SEEDS = [f"Seed post {i}: Bitcoin, markets and the future, take {i}." for i in range(10)]


def echo_agents(n: int = 3, seed: int = 0) -> dict[str, EchoAgent]:
    return {f"a{i}": EchoAgent(f"a{i}", seed=seed) for i in range(n)}


def run(graph: StateGraph, thread: str = "t", **cfg: Any) -> dict[str, Any]:
    compiled = graph.compile(checkpointer=InMemorySaver())
    return compiled.invoke({}, {"configurable": {"thread_id": thread}, **cfg})


def test_public_api() -> None:
    assert llmweb_langgraph.__all__ == ["AgentTask", "WebGraph", "WebState", "create_web_graph"]


def test_counts_metrics_and_state(store: lw.WebStore) -> None:
    n, L, T = 3, 3, 4
    steps: list[int] = []
    g = create_web_graph(echo_agents(n), store=store, seeds=SEEDS, beta=0.5,
                         responses_per_step=L, n_steps=T, rng=0, run_id="r1",
                         on_step=lambda m: steps.append(m.step))
    assert isinstance(g, StateGraph)  # uncompiled; the user compiles it
    compiled = g.compile(checkpointer=InMemorySaver())
    assert compiled.name == "llmweb_web"
    out = compiled.invoke({}, {"configurable": {"thread_id": "t"}})
    assert (out["run_id"], out["seed"], out["step"]) == ("r1", 0, T) and steps == [1, 2, 3, 4]
    assert store.count("r1", kind="seed") == 10
    assert store.count("r1", kind="post") == n * T
    assert store.count("r1", kind="response") == n * L * T
    assert store.count("r1") == 10 + n * T + n * L * T
    posts = store.records("r1", kind="post")
    assert sorted((p["step"], p["agent"], p["text"]) for p in out["posts"]) == \
        sorted((p.step, p.agent, p.text) for p in posts)
    resp = store.records("r1", kind="response", with_vectors=True)
    assert sorted(r.index for r in resp if r.agent == "a0" and r.step == 1) == [0, 1, 2]
    for p in posts:  # only the first answer is posted; k_t = floor(beta |A_t|)
        first = [r.text for r in resp if (r.agent, r.step, r.index) == (p.agent, p.step, 0)]
        assert first == [p.text]
        assert p.metadata["web_size"] == 10 + n * (p.step - 1)
        assert p.metadata["context_size"] == math.floor(0.5 * (10 + n * (p.step - 1)))
        assert len(set(p.metadata["context_ids"])) == p.metadata["context_size"]
    for r in resp:
        assert r.metadata["context_size"] == math.floor(0.5 * (10 + n * (r.step - 1)))
    assert [h["step"] for h in out["history"]] == [1, 2, 3, 4]
    for h in out["history"]:
        at = [r for r in resp if r.step == h["step"]]
        means = np.stack([np.mean([r.vector for r in at if r.agent == a], axis=0)
                          for a in ("a0", "a1", "a2")])
        assert h["norm"] == pytest.approx(brute_force_collapse_norm(means), rel=1e-4)
        assert h["normalized_norm"] == pytest.approx(h["norm"] / math.sqrt(6), rel=1e-9)
        assert h["per_agent_counts"] == {"a0": L, "a1": L, "a2": L}
        assert h["extras"]["web_size"] == 10 + n * h["step"]
        assert h["extras"]["context_size"] == {a: math.floor(0.5 * (10 + n * (h["step"] - 1)))
                                               for a in ("a0", "a1", "a2")}


def test_graph_equals_the_plain_loop_and_is_reproducible(embedder) -> None:
    def texts(st: lw.WebStore, rid: str) -> list[tuple]:
        return [(r.point_id, r.text, r.metadata.get("context_ids"))
                for r in st.records(rid, kind=["post", "response"])]

    with lw.WebStore(":memory:", embedder=embedder) as s1, \
            lw.WebStore(":memory:", embedder=embedder) as s2, \
            lw.WebStore(":memory:", embedder=embedder) as s3:
        out = run(create_web_graph(echo_agents(), store=s1, seeds=SEEDS, responses_per_step=2,
                                   n_steps=3, rng=7, run_id="r"))
        ref = run_web(echo_agents(), store=s2, seeds=SEEDS, responses_per_step=2, n_steps=3,
                      rng=7, run_id="r")
        other = run(create_web_graph(echo_agents(), store=s3, seeds=SEEDS, responses_per_step=2,
                                     n_steps=3, rng=8, run_id="r"))
        assert texts(s1, "r") == texts(s2, "r")
        assert [h["norm"] for h in out["history"]] == \
            pytest.approx([h.norm for h in ref.history], rel=1e-6)
        a = [p.metadata["context_ids"] for p in s1.records("r", kind="post")]
        b = [p.metadata["context_ids"] for p in s3.records("r", kind="post")]
        assert a != b and other["seed"] == 8


def test_generator_rng_and_fresh_runs_per_invocation(store) -> None:
    g = create_web_graph(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1,
                         n_steps=1, rng=np.random.default_rng(3)).compile(
                             checkpointer=InMemorySaver())
    o1 = g.invoke({}, {"configurable": {"thread_id": "1"}})
    o2 = g.invoke({}, {"configurable": {"thread_id": "2"}})
    assert o1["run_id"] != o2["run_id"] and o1["seed"] != o2["seed"]
    assert store.count(o1["run_id"], kind="post") == store.count(o2["run_id"], kind="post") == 2
    with pytest.raises(ValueError, match="already holds run"):
        g.invoke({}, {"configurable": {"thread_id": "1"}})


def test_ring_topology_in_the_graph(store) -> None:
    agents = echo_agents(5)
    out = run(create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=1,
                               n_steps=4, topology="ring", beta=1.0, rng=0, run_id="ring"))
    nb = out["neighbours"]
    assert nb == {"a0": ["a1", "a4"], "a1": ["a0", "a2"], "a2": ["a1", "a3"],
                  "a3": ["a2", "a4"], "a4": ["a0", "a3"]}
    by_id = {r.point_id: r for r in store.records("ring")}
    for p in store.records("ring", kind="post"):
        ctx = [by_id[c] for c in p.metadata["context_ids"]]
        assert {c.agent for c in ctx if c.kind == "post"} <= set(nb[p.agent]) | {p.agent}
        assert len(ctx) == 10 + 3 * (p.step - 1)  # beta = 1: seeds + 3 posters' posts


def test_user_adjacency_and_small_world(store) -> None:
    # a reads b, b reads nobody, c reads a and b (directed)
    out = run(create_web_graph(echo_agents(3), store=store, seeds=SEEDS, responses_per_step=1,
                               n_steps=3, beta=1.0, rng=0, run_id="adj",
                               topology={"a0": ["a1"], "a2": ["a0", "a1"]}))
    assert out["neighbours"] == {"a0": ["a1"], "a1": [], "a2": ["a0", "a1"]}
    by_id = {r.point_id: r for r in store.records("adj")}
    sizes = {(p.agent, p.step): len(p.metadata["context_ids"])
             for p in store.records("adj", kind="post")}
    assert sizes[("a1", 3)] == 10 + 2 and sizes[("a0", 3)] == 10 + 4 and \
        sizes[("a2", 3)] == 10 + 6
    for p in store.records("adj", kind="post"):
        assert {by_id[c].agent for c in p.metadata["context_ids"]} <= \
            {"seed", p.agent, *out["neighbours"][p.agent]}
    sw = run(create_web_graph(echo_agents(6), store=store, seeds=SEEDS, responses_per_step=1,
                              n_steps=1, topology="small_world", rng=4, run_id="sw"))
    assert all(len(v) >= 1 for v in sw["neighbours"].values())
    assert sum(len(v) for v in sw["neighbours"].values()) == 12  # k = 2: 6 undirected edges


def test_similarity_retrieval_in_the_graph(store, embedder) -> None:
    out = run(create_web_graph(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1,
                               n_steps=2, retrieval="similarity", rng=0, run_id="sim"))
    assert len(out["posts"]) == 4
    q = embedder.embed([PAPER_QUERY])[0]
    recs = store.records("sim", with_vectors=True)
    for p in store.records("sim", kind="post"):
        pool = [r for r in recs if r.kind in ("seed", "post") and r.step < p.step]
        score = {r.point_id: float(r.vector @ q) for r in pool}
        best = sorted(score, key=lambda i: -score[i])[: len(pool) // 2]
        assert sorted(p.metadata["context_ids"]) == sorted(best)


class NChat(BaseChatModel):
    """Deterministic chat model sampling n answers in one call."""

    supports_n: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "n-chat"

    def _generate(self, messages, stop=None, run_manager=None, n: int = 1, **kw) -> ChatResult:
        text = str(messages[-1].content)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            content=f"chat sees {text.count('- ')} posts, answer {j}.")) for j in range(n)])


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.meta: list[dict] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None,
                            tags=None, metadata=None, **kwargs):
        self.meta.append(dict(metadata or {}))


def test_every_agent_kind_in_one_web(store) -> None:
    from langchain.agents import create_agent

    graph_agent = create_agent(GenericFakeChatModel(
        messages=cycle([AIMessage(content="The agent graph expects Bitcoin to stay volatile.")])),
        name="graph")
    agents = {
        "chat": NChat(),
        "lcel": RunnableLambda(lambda p: f"LCEL read {p.count('- ')} posts."),
        "graph": graph_agent,
        "call": lambda p: f"A callable read {len(p)} characters.",
        "echo": EchoAgent("echo"),
    }
    rec = Recorder()
    out = run(create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=2,
                               n_steps=2, rng=0, run_id="kinds"), callbacks=[rec])
    assert store.count("kinds", kind="post") == 10
    assert store.count("kinds", kind="response") == 20
    post1 = {p.agent: p.text for p in store.records("kinds", kind="post", step=1)}
    assert post1["chat"] == "chat sees 5 posts, answer 0."
    assert post1["lcel"] == "LCEL read 5 posts."
    assert post1["graph"] == "The agent graph expects Bitcoin to stay volatile."
    assert post1["call"].startswith("A callable read ")
    assert len(out["history"]) == 2 and out["history"][0]["n_agents"] == 5
    # the user's callback handler saw the chat model calls, with the web's metadata
    web_calls = [m for m in rec.meta if m.get("llmweb_agent") in ("chat", "graph")]
    assert {(m["llmweb_agent"], m["llmweb_step"]) for m in web_calls} == \
        {("chat", 1), ("chat", 2), ("graph", 1), ("graph", 2)}
    assert all(m["llmweb_run_id"] == "kinds" for m in web_calls)


def test_llamaindex_adapter_if_present(store) -> None:
    li = pytest.importorskip("llmweb_llamaindex")
    if not hasattr(li, "LlamaIndexAgent"):
        pytest.skip("llmweb_llamaindex.LlamaIndexAgent is not there yet")
    from llama_index.core.llms import MockLLM

    agents = {"li": li.LlamaIndexAgent(MockLLM(max_tokens=8)), "echo": EchoAgent("echo")}
    out = run(create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=2,
                               n_steps=2, rng=0, run_id="li"))
    assert store.count("li", kind="post") == 4 and len(out["history"]) == 2
    assert store.count("li", kind="response") == 8


def test_parallel_agent_tasks_share_one_read_of_the_web(store, monkeypatch) -> None:
    calls: list[int | None] = []
    real_web = store.web

    def counting_web(run_id, **kw):
        calls.append(kw.get("before_step"))
        return real_web(run_id, **kw)

    monkeypatch.setattr(store, "web", counting_web)
    run(create_web_graph(echo_agents(4), store=store, seeds=SEEDS, responses_per_step=2,
                         n_steps=3, rng=0, topology="ring"))
    assert calls == [2, 3, 4]  # one scroll per step, not one per agent task


@pytest.mark.parametrize("kw,err,match", [
    ({"beta": 0.0}, ValueError, "beta"),
    ({"beta": 1.01}, ValueError, "beta"),
    ({"n_steps": 0}, ValueError, "n_steps"),
    ({"topology": "mesh"}, ValueError, "unknown topology"),
    ({"retrieval": "bm25"}, ValueError, "unknown retrieval"),
    ({"seeds": []}, ValueError, "seeds is empty"),
    ({"seeds": ["only one"]}, ValueError, "k_0"),
    ({"topology": {"a0": ["ghost"]}}, ValueError, "unknown agents"),
    ({"rng": "seed"}, TypeError, "rng"),
    ({"rng": -3}, ValueError, "non-negative"),
])
def test_bad_parameters(store, kw: dict, err: type, match: str) -> None:
    args = {"seeds": SEEDS, **kw}
    with pytest.raises(err, match=match):
        create_web_graph(echo_agents(2), store=store, **args)


def test_bad_agents_monitor_and_store(store, embedder) -> None:
    with pytest.raises(ValueError, match="agents is empty"):
        create_web_graph({}, store=store, seeds=SEEDS)
    with pytest.raises(TypeError, match="mapping"):
        create_web_graph([EchoAgent()], store=store, seeds=SEEDS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="agent 'x' is a int"):
        create_web_graph({"x": 1}, store=store, seeds=SEEDS)
    mon = lw.CollapseMonitor(store, run_id="m")
    with pytest.raises(ValueError, match="disagrees"):
        create_web_graph(echo_agents(), store=store, seeds=SEEDS, monitor=mon, run_id="other")
    with lw.WebStore(":memory:", embedder=embedder) as other:
        with pytest.raises(ValueError, match="another store"):
            create_web_graph(echo_agents(), store=other, seeds=SEEDS, monitor=mon)


def test_given_monitor_records_the_run(store) -> None:
    mon = lw.CollapseMonitor(store, run_id="given")
    out = run(create_web_graph(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=2,
                               n_steps=2, monitor=mon, rng=0))
    assert out["run_id"] == "given"
    hist = mon.history()  # the monitor's in-memory series agrees with the store-read one
    assert [h.norm for h in hist] == pytest.approx([h["norm"] for h in out["history"]],
                                                   rel=1e-5)
    assert mon.stats.stored == 10 + 4 + 8


class Flaky:
    """A deterministic agent that raises once, at one step, the first time."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.failed = False
        self.inner = EchoAgent("flaky")

    def generate_n(self, prompt: str, n: int) -> list[str]:
        step = prompt.count("- ")
        if step >= self.fail_at and not self.failed:
            self.failed = True
            raise TimeoutError("the model timed out")
        return self.inner.generate_n(prompt, n)


def test_agent_failure_fails_the_step_and_the_checkpoint_resumes(store) -> None:
    agents = {**echo_agents(2), "flaky": Flaky(fail_at=6)}  # k >= 6 from step 2 on
    g = create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=2, n_steps=4,
                         rng=0, run_id="fl").compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "fl"}}
    with pytest.raises(AgentError, match=r"agent 'flaky' failed at step 2 .*timed out"):
        g.invoke({}, cfg)
    assert g.get_state(cfg).values["step"] == 2
    out = g.invoke(None, cfg)
    assert out["step"] == 4 and len(out["history"]) == 4
    assert store.count("fl", kind="post") == 3 * 4
    assert store.count("fl", kind="response") == 3 * 2 * 4
    assert len({p["id"] for p in out["posts"]}) == 12


class Injector(WebHook):
    name = "injector"

    def before_step(self, *, step, monitor, rng):
        monitor.record(f"Breaking: fact number {int(rng.integers(100))} for step {step}.",
                       agent="news", step=step, kind="external", index=0)


def test_mitigation_hooks_run_in_the_graph(store) -> None:
    out = run(create_web_graph(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1,
                               n_steps=3, beta=1.0, mitigations=[Injector()], rng=0,
                               run_id="hk"))
    assert store.count("hk", kind="external") == 3
    for p in store.records("hk", kind="post"):
        assert p.metadata["web_size"] == 10 + p.step + 2 * (p.step - 1)
    assert [h["extras"]["n_external"] for h in out["history"]] == [1, 1, 1]


def test_resuming_with_other_agents_is_refused(store) -> None:
    saver = InMemorySaver()
    cfg = {"configurable": {"thread_id": "x"}}
    g = create_web_graph({**echo_agents(2), "bad": lambda p: 1}, store=store, seeds=SEEDS,
                         responses_per_step=1, n_steps=2, rng=0, run_id="ag")
    with pytest.raises(AgentError):
        g.compile(checkpointer=saver).invoke({}, cfg)
    g2 = create_web_graph(echo_agents(3), store=store, seeds=SEEDS, responses_per_step=1,
                          n_steps=2, rng=0, run_id="ag").compile(checkpointer=saver)
    with pytest.raises(ValueError, match="same agents in the same order"):
        g2.invoke(None, cfg)


# ---------------------------------------------------------------------- bad inputs (added)
def test_monitor_and_store_of_the_wrong_type_are_refused(store) -> None:
    with pytest.raises(TypeError, match="monitor must be a CollapseMonitor; got dict"):
        create_web_graph(echo_agents(2), store=store, seeds=SEEDS, monitor={"run_id": "m"})
    with pytest.raises(TypeError, match="store must be an llmweb_plugin.WebStore; got str"):
        create_web_graph(echo_agents(2), store=":memory:", seeds=SEEDS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store must be an llmweb_plugin.WebStore; got "
                                        "QdrantClient"):
        create_web_graph(echo_agents(2), store=store.client, seeds=SEEDS)  # type: ignore[arg-type]
    assert store.count("m") == 0  # nothing was written


def test_monitor_on_another_store_or_run_id_is_refused_before_writing(store, embedder) -> None:
    mon = lw.CollapseMonitor(store, run_id="mine")
    with lw.WebStore(":memory:", embedder=embedder) as other:
        with pytest.raises(ValueError, match="the monitor writes to another store than store="):
            create_web_graph(echo_agents(2), store=other, seeds=SEEDS, monitor=mon)
        assert other.count("mine") == 0
    with pytest.raises(ValueError, match=r"run_id='yours' disagrees with the monitor's run_id "
                                         r"'mine'; pass one of them"):
        create_web_graph(echo_agents(2), store=store, seeds=SEEDS, monitor=mon, run_id="yours")
    assert store.count("mine") == 0 and store.count("yours") == 0


def test_resuming_a_checkpoint_with_a_monitor_of_another_run_is_refused(store) -> None:
    saver = InMemorySaver()
    cfg = {"configurable": {"thread_id": "cm"}}
    g = create_web_graph({"a0": EchoAgent("a0"), "bad": lambda p: 1}, store=store, seeds=SEEDS,
                         responses_per_step=1, n_steps=2, rng=0, run_id="cm")
    with pytest.raises(AgentError):
        g.compile(checkpointer=saver).invoke({}, cfg)
    n_before = store.count("cm")
    mon = lw.CollapseMonitor(store, run_id="other")
    g2 = create_web_graph({"a0": EchoAgent("a0"), "bad": EchoAgent("bad")}, store=store,
                          seeds=SEEDS, responses_per_step=1, n_steps=2, rng=0,
                          monitor=mon).compile(checkpointer=saver)
    with pytest.raises(ValueError, match="this checkpoint belongs to run 'cm' but the monitor "
                                         "records run 'other'"):
        g2.invoke(None, cfg)
    assert store.count("cm") == n_before and store.count("other") == 0
