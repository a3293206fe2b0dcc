"""The framework-free LLM-web step: config, topology, retrieval, the plain loop ``run_web``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.testing import brute_force_collapse_norm
from llmweb_plugin.web import (
    CRYPTO_SEEDS,
    PAPER_QUERY,
    AgentError,
    AgentRequest,
    EchoAgent,
    WebConfig,
    WebHook,
    derive_rng,
    k_for,
    make_config,
    neighbours,
    query_vector_for,
    resolve_seed,
    run_web,
    seed_texts,
    small_world,
    visible_web,
)

SEEDS = [f"Seed post number {i} about Bitcoin and markets." for i in range(10)]


def echo_agents(n: int = 3, seed: int = 0) -> dict[str, EchoAgent]:
    return {f"a{i}": EchoAgent(f"a{i}", seed=seed) for i in range(n)}


# ---------------------------------------------------------------------- small pieces
def test_paper_query_and_seeds() -> None:
    assert PAPER_QUERY == ("Please provide EXACTLY one concise sentence about the future "
                           "prospects of Bitcoin.")
    labels = [s.label for s in CRYPTO_SEEDS]
    assert (labels.count("positive"), labels.count("neutral"), labels.count("negative")) == \
        (7, 7, 6)
    assert len(set(seed_texts())) == 20


@pytest.mark.parametrize("size,beta,k", [(20, 0.5, 10), (21, 0.5, 10), (23, 0.5, 11),
                                         (100, 0.29, 29), (10, 0.3, 3), (7, 1.0, 7),
                                         (0, 0.5, 0), (1, 0.5, 0)])
def test_k_for(size: int, beta: float, k: int) -> None:
    assert k_for(size, beta) == k


def test_k_for_negative() -> None:
    with pytest.raises(ValueError, match="web_size"):
        k_for(-1, 0.5)


def test_resolve_seed() -> None:
    assert resolve_seed(7) == 7
    assert resolve_seed(np.int64(3)) == 3
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    assert resolve_seed(g1) == resolve_seed(g2)
    assert isinstance(resolve_seed(None), int)
    with pytest.raises(ValueError, match="non-negative"):
        resolve_seed(-1)
    with pytest.raises(TypeError, match="Generator"):
        resolve_seed("0")  # type: ignore[arg-type]


def test_derive_rng_streams_are_reproducible_and_distinct() -> None:
    a = derive_rng(5, 0, 3, 1).random(4)
    assert np.array_equal(a, derive_rng(5, 0, 3, 1).random(4))
    for other in (derive_rng(5, 0, 3, 2), derive_rng(5, 0, 4, 1), derive_rng(6, 0, 3, 1),
                  derive_rng(5, 1, 3, 1)):
        assert not np.array_equal(a, other.random(4))


# ---------------------------------------------------------------------- topology
def test_full_and_ring() -> None:
    names = ["a", "b", "c", "d", "e"]
    full = neighbours(names, "full")
    assert full["a"] == {"b", "c", "d", "e"}
    r = neighbours(names, "ring")
    assert r == {"a": {"e", "b"}, "b": {"a", "c"}, "c": {"b", "d"}, "d": {"c", "e"},
                 "e": {"d", "a"}}
    assert neighbours(["a", "b"], "ring") == {"a": {"b"}, "b": {"a"}}
    assert neighbours(["a"], "ring") == {"a": frozenset()}


def test_small_world_is_seeded_symmetric_and_keeps_edges() -> None:
    names = [f"n{i}" for i in range(12)]
    g1 = small_world(names, k=4, p=0.3, rng=3)
    assert g1 == small_world(names, k=4, p=0.3, rng=3)
    assert g1 != small_world(names, k=4, p=0.3, rng=4)
    for a, nb in g1.items():
        assert a not in nb
        for b in nb:
            assert a in g1[b]  # undirected
    assert sum(len(nb) for nb in g1.values()) == 12 * 4  # rewiring keeps the edge count
    lattice = small_world(names, k=4, p=0.0, rng=0)
    assert lattice["n0"] == {"n1", "n2", "n10", "n11"}
    assert neighbours(names[:4], "small_world", rng=0) == small_world(names[:4], rng=0)


@pytest.mark.parametrize("kw,match", [({"k": 3}, "even"), ({"k": 0}, "even"),
                                      ({"k": 6}, "k < number"), ({"p": 1.5}, "p must")])
def test_small_world_bad_parameters(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small_world(["a", "b", "c", "d", "e", "f"], **kw)


def test_user_adjacency_mapping_and_matrix() -> None:
    names = ["a", "b", "c"]
    m = neighbours(names, {"a": ["b"], "b": "c"})
    assert m == {"a": {"b"}, "b": {"c"}, "c": frozenset()}  # directed; c reads nobody
    mat = neighbours(names, np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0]]))
    assert mat == {"a": {"b"}, "b": frozenset(), "c": {"a", "b"}}  # self-loops dropped
    assert neighbours(names, [[0, 1, 1], [1, 0, 1], [1, 1, 0]]) == neighbours(names, "full")
    with pytest.raises(ValueError, match=r"unknown agents \['z'\]"):
        neighbours(names, {"a": ["z"]})
    with pytest.raises(ValueError, match=r"unknown agents \['q'\]"):
        neighbours(names, {"q": ["a"]})
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        neighbours(names, np.eye(2))
    with pytest.raises(ValueError, match="unknown topology 'star'"):
        neighbours(names, "star")


# ---------------------------------------------------------------------- config validation
@pytest.mark.parametrize("kw,match", [
    ({"beta": 0.0}, r"beta must be in \(0, 1\]"),
    ({"beta": 1.5}, r"beta must be in \(0, 1\]"),
    ({"beta": True}, "beta"),
    ({"n_steps": 0}, "n_steps must be an integer >= 1"),
    ({"n_steps": 2.5}, "n_steps"),
    ({"responses_per_step": 0}, "responses_per_step"),
    ({"retrieval": "mmr"}, "unknown retrieval 'mmr'"),
    ({"topology": "star"}, "unknown topology"),
    ({"seeds": []}, "seeds is empty"),
    ({"seeds": ["one"], "beta": 0.5}, "k_0 = floor"),
    ({"seeds": ["ok", "  "]}, "empty text"),
    ({"query": " "}, "query must be"),
    ({"prompt_template": "{context}"}, r"\{query\}"),
    ({"prompt_template": "{context} {query} {other}"}, "prompt_template"),
    ({"system_prompts": {"zz": "x"}}, "unknown agents"),
    ({"temperatures": {"a0": -1.0}}, "temperature"),
])
def test_config_rejects_bad_parameters(kw: dict, match: str) -> None:
    args = {"seeds": SEEDS, **kw}
    with pytest.raises(ValueError, match=match):
        make_config(["a0", "a1"], **args)


def test_config_rejects_bad_agents() -> None:
    with pytest.raises(ValueError, match="agents is empty"):
        make_config([], seeds=SEEDS)
    with pytest.raises(ValueError, match="reserved"):
        make_config(["seed", "b"], seeds=SEEDS)
    with pytest.raises(ValueError, match="unique"):
        make_config(["a", "a"], seeds=SEEDS)
    with pytest.raises(TypeError, match="not one string"):
        make_config(["a"], seeds="just one string")


def test_config_defaults_and_seed_labels() -> None:
    cfg = make_config(["a", "b"])
    assert isinstance(cfg, WebConfig)
    assert cfg.seeds == tuple(seed_texts()) and cfg.seed_metadata[0] == {"label": "positive"}
    assert (cfg.beta, cfg.responses_per_step, cfg.n_steps, cfg.retrieval, cfg.query) == \
        (0.5, 40, 60, "uniform", PAPER_QUERY)
    with pytest.raises(Exception):  # frozen
        cfg.beta = 0.3  # type: ignore[misc]


# ---------------------------------------------------------------------- the plain loop
def _check_run(store: lw.WebStore, res, *, n: int, L: int, T: int, n_seeds: int,
               beta: float) -> None:
    rid = res.run_id
    assert store.count(rid, kind="seed") == n_seeds
    assert store.count(rid, kind="post") == n * T
    assert store.count(rid, kind="response") == n * L * T
    posts = store.records(rid, kind="post")
    resp = store.records(rid, kind="response", with_vectors=True)
    assert len({p.point_id for p in posts}) == n * T
    for p in posts:
        first = [r for r in resp if r.agent == p.agent and r.step == p.step and r.index == 0]
        assert [r.text for r in first] == [p.text]  # only the first answer is posted
        web_size = n_seeds + n * (p.step - 1)
        assert p.metadata["web_size"] == web_size
        assert p.metadata["context_size"] == math.floor(beta * web_size)
        assert len(p.metadata["context_ids"]) == p.metadata["context_size"]
    assert [h.step for h in res.history] == list(range(1, T + 1))
    for h in res.history:
        at = [r for r in resp if r.step == h.step]
        agents = sorted({r.agent for r in at})
        means = np.stack([np.mean([r.vector for r in at if r.agent == a], axis=0)
                          for a in agents])
        assert h.norm == pytest.approx(brute_force_collapse_norm(means), rel=1e-4, abs=1e-7)
        assert h.n_records == n * L
        assert h.extras["web_size"] == n_seeds + n * h.step
        assert h.extras["n_post"] == n and h.extras["n_response"] == n * L


def test_run_web_counts_contexts_and_metrics(store: lw.WebStore) -> None:
    seen: list[int] = []
    res = run_web(echo_agents(3), store=store, seeds=SEEDS, responses_per_step=3, n_steps=4,
                  rng=11, on_step=lambda m: seen.append(m.step))
    _check_run(store, res, n=3, L=3, T=4, n_seeds=10, beta=0.5)
    assert seen == [1, 2, 3, 4] and res.seed == 11
    assert len(res.posts) == 12
    # every context id was in the web the agent could see at that step (no post of step t)
    by_id = {r.point_id: r for r in store.records(res.run_id)}
    for p in store.records(res.run_id, kind="post"):
        for cid in p.metadata["context_ids"]:
            assert by_id[cid].step < p.step and by_id[cid].kind in ("seed", "post")


def test_run_web_reads_the_web_once_per_step(store: lw.WebStore, monkeypatch) -> None:
    # the step's agents and its metrics share one read of the web (WebCache), not one per agent
    calls: list[int | None] = []
    real_web = store.web

    def counting_web(run_id, **kw):
        calls.append(kw.get("before_step"))
        return real_web(run_id, **kw)

    monkeypatch.setattr(store, "web", counting_web)
    run_web(echo_agents(4), store=store, seeds=SEEDS, responses_per_step=2, n_steps=3, rng=0,
            topology="ring")
    assert calls == [2, 3, 4]


def test_bad_topology_matrix_and_similarity_without_embedder() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        neighbours(["a", "b"], [[0, np.nan], [1, 0]])
    cfg = make_config(["a"], seeds=SEEDS, retrieval="similarity")
    with lw.WebStore(":memory:", dim=4) as st, \
            pytest.raises(ValueError, match="needs a store with an embedder"):
        query_vector_for(st, cfg)


def test_run_web_uniform_draw_matches_the_documented_rng(store: lw.WebStore) -> None:
    res = run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1, n_steps=2,
                  rng=5)
    for p in store.records(res.run_id, kind="post"):
        pool = visible_web(store, res.run_id, p.step)
        i = ["a0", "a1"].index(p.agent)
        idx = derive_rng(5, 0, p.step, i).choice(len(pool), size=len(pool) // 2, replace=False)
        assert p.metadata["context_ids"] == [pool[j].point_id for j in idx]


def test_run_web_is_reproducible(embedder) -> None:
    outs = []
    for seed in (3, 3, 4):
        with lw.WebStore(":memory:", embedder=embedder) as st:
            res = run_web(echo_agents(3), store=st, seeds=SEEDS, responses_per_step=2,
                          n_steps=3, rng=seed, run_id="r")
            outs.append(([(p.agent, p.step, p.text) for p in st.records("r", kind="response")],
                         [p.metadata["context_ids"] for p in st.records("r", kind="post")],
                         [h.norm for h in res.history]))
    assert outs[0] == outs[1]
    assert outs[0][1] != outs[2][1]  # another seed draws other contexts


def test_similarity_retrieval_takes_top_k_by_the_query(store: lw.WebStore, embedder) -> None:
    res = run_web(echo_agents(2), store=store, seeds=SEEDS + ["Bitcoin will go up forever.",
                                                              "Cats are nice animals."],
                  responses_per_step=1, n_steps=3, retrieval="similarity", rng=0)
    q = embedder.embed([PAPER_QUERY])[0]
    for p in store.records(res.run_id, kind="post"):
        pool = [r for r in store.records(res.run_id, with_vectors=True)
                if r.kind in ("seed", "post") and r.step < p.step]
        scores = {r.point_id: float(r.vector @ q / np.linalg.norm(r.vector) / np.linalg.norm(q))
                  for r in pool}
        k = len(pool) // 2
        best = sorted(scores, key=lambda i: -scores[i])[:k]
        assert sorted(p.metadata["context_ids"]) == sorted(best)
        assert p.metadata["retrieval"] == "similarity"


def test_ring_topology_limits_what_agents_read(store: lw.WebStore) -> None:
    res = run_web(echo_agents(5), store=store, seeds=SEEDS, responses_per_step=1, n_steps=4,
                  topology="ring", beta=1.0, rng=0)
    by_id = {r.point_id: r for r in store.records(res.run_id)}
    for p in store.records(res.run_id, kind="post"):
        allowed = set(res.neighbours[p.agent]) | {p.agent, "seed"}
        ctx = [by_id[c] for c in p.metadata["context_ids"]]
        assert {c.agent for c in ctx} <= allowed
        # beta = 1: it reads everything it may: seeds + posts of itself and its 2 neighbours
        assert len(ctx) == 10 + 3 * (p.step - 1)


class _Scripted:
    """A callable agent answering from a script (may include empty answers)."""

    def __init__(self, answers):
        self.answers = list(answers)

    def generate_n(self, prompt: str, n: int) -> list[str]:
        return self.answers[:n]


def test_empty_answers_are_skipped_and_the_first_non_empty_is_posted(store) -> None:
    mon = lw.CollapseMonitor(store, run_id="e")
    res = run_web({"a": _Scripted(["", "  ", "third", "fourth"]),
                   "b": _Scripted(["", "", "", ""])}, store=store, seeds=SEEDS,
                  responses_per_step=4, n_steps=1, monitor=mon, rng=0)
    posts = store.records("e", kind="post")
    assert [(p.agent, p.text, p.metadata["response_index"]) for p in posts] == [("a", "third", 2)]
    assert [(r.agent, r.index) for r in store.records("e", kind="response")] == \
        [("a", 2), ("a", 3)]
    assert mon.stats.skip_reasons == {"empty_text": 6}
    assert [e for e in mon.events if e["kind"] == "no_post"] == \
        [{"kind": "no_post", "run_id": "e", "agent": "b", "step": 1}]
    assert res.history[0].n_agents == 1 and math.isnan(res.history[0].norm)


def test_a_failing_agent_fails_the_step_naming_it(store) -> None:
    def broken(prompt: str) -> str:
        raise ConnectionError("model server down")

    with pytest.raises(AgentError, match=r"agent 'bad' failed at step 1 .*model server down"):
        run_web({"ok": EchoAgent("ok"), "bad": broken}, store=store, seeds=SEEDS,
                responses_per_step=2, n_steps=2, rng=0)


def test_wrong_answers_are_agent_errors(store) -> None:
    with pytest.raises(AgentError, match=r"generate_n\(prompt, 2\) returned 1 answers \(step 1 of run"):
        run_web({"a": _Scripted(["x"])}, store=store, seeds=SEEDS, responses_per_step=2,
                n_steps=1, rng=0)
    with pytest.raises(AgentError, match="must return str"):
        run_web({"a": lambda p: 42}, store=store, seeds=SEEDS, responses_per_step=1,
                n_steps=1, rng=0, run_id="x2")


def test_reusing_a_run_id_with_posts_is_refused(store) -> None:
    run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1, n_steps=1,
            rng=0, run_id="same")
    with pytest.raises(ValueError, match="already has 4 posts/responses"):
        run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1, n_steps=1,
                rng=0, run_id="same")


class _Injector(WebHook):
    """before_step: one external document per step; vary: a system prompt; after_step: log."""

    name = "injector"

    def __init__(self) -> None:
        self.after: list[tuple[int, int]] = []

    def before_step(self, *, step, monitor, rng) -> None:
        monitor.record(f"External fact {step}: {int(rng.integers(1000))}", agent="news",
                       step=step, kind="external", index=0)

    def vary(self, request: AgentRequest, *, rng) -> AgentRequest:
        from dataclasses import replace

        return replace(request, system_prompt="Be original.",
                       metadata={**request.metadata, "mitigation": "injector"})

    def after_step(self, *, step, posts, monitor, rng) -> None:
        self.after.append((step, len(posts)))
        monitor.annotate(step, injected=1)


def test_hooks_inject_vary_and_see_posts(store) -> None:
    hook = _Injector()
    res = run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=2, n_steps=3,
                  beta=1.0, mitigations=[hook], rng=0)
    assert hook.after == [(1, 2), (2, 2), (3, 2)]
    by_id = {r.point_id: r for r in store.records(res.run_id)}
    for p in store.records(res.run_id, kind="post"):
        # the document injected before step t is visible at step t (beta = 1: all of it)
        assert p.metadata["web_size"] == 10 + p.step + 2 * (p.step - 1)
        assert any(by_id[c].kind == "external" and by_id[c].step == p.step
                   for c in p.metadata["context_ids"])
        assert p.metadata["mitigation"] == "injector"
    assert [h.extras["injected"] for h in res.history] == [1, 1, 1]
    assert [h.extras["n_external"] for h in res.history] == [1, 1, 1]
    # a re-run with the same seed injects the same documents (hooks get derived generators)
    with lw.WebStore(":memory:", embedder=store.embedder) as st2:
        run_web(echo_agents(2), store=st2, seeds=SEEDS, responses_per_step=2, n_steps=3,
                beta=1.0, mitigations=[_Injector()], rng=0, run_id=res.run_id)
        assert [r.text for r in st2.records(res.run_id, kind="external")] == \
            [r.text for r in store.records(res.run_id, kind="external")]


def test_failing_or_bad_hooks_are_reported(store) -> None:
    class Bad(WebHook):
        name = "bad-hook"

        def vary(self, request, *, rng):
            return "not a request"

    with pytest.raises(TypeError, match="'bad-hook'.vary\\(\\) returned str"):
        run_web(echo_agents(1), store=store, seeds=SEEDS, responses_per_step=1, n_steps=1,
                mitigations=[Bad()], rng=0)

    class Boom(WebHook):
        def before_step(self, *, step, monitor, rng):
            raise KeyError("nope")

    with pytest.raises(RuntimeError, match="'Boom' failed in before_step"):
        run_web(echo_agents(1), store=store, seeds=SEEDS, responses_per_step=1, n_steps=1,
                mitigations=[Boom()], rng=0, run_id="boom")
    with pytest.raises(TypeError, match="lacks"):
        run_web(echo_agents(1), store=store, seeds=SEEDS, mitigations=[object()], rng=0)


def test_on_step_errors_are_counted_not_raised(store) -> None:
    mon = lw.CollapseMonitor(store, run_id="cb")

    def bad(m):
        raise RuntimeError("progress bar broke")

    res = run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=1, n_steps=2,
                  monitor=mon, on_step=bad, rng=0)
    assert len(res.history) == 2 and mon.stats.handler_errors == 2


def test_alarms_judge_whole_steps_only(store) -> None:
    # agents flush their own part of a step; the alarm must not judge a partial step
    mon = lw.CollapseMonitor(store, run_id="al", alarm_fraction=0.99, baseline_steps=1)
    res = run_web(echo_agents(3), store=store, seeds=SEEDS, responses_per_step=2, n_steps=6,
                  monitor=mon, rng=0)
    norms = {h.step: h.norm for h in res.history}
    baseline = norms[1]
    expected = [s for s in range(2, 7) if norms[s] < 0.99 * baseline]
    assert [a.step for a in mon.alarms] == expected
    for a in mon.alarms:
        assert a.norm == pytest.approx(norms[a.step], rel=1e-5)


class _Counting:
    """Answers with token usage, like a chat model reporting ``usage_metadata``."""

    def respond(self, request, n, *, config=None):
        from llmweb_plugin.web import AgentAnswer

        return AgentAnswer(texts=("",) + tuple(f"answer {i}" for i in range(1, n)),
                           usage={"input_tokens": 10, "output_tokens": 4 * n})


def test_token_usage_is_stored_once_per_call_and_reaches_a_later_report(store) -> None:
    mon = lw.CollapseMonitor(store, run_id="u")
    run_web({"a": _Counting(), "b": _Counting()}, store=store, seeds=SEEDS,
            responses_per_step=3, n_steps=2, monitor=mon, rng=0)
    want = {"input_tokens": 20, "output_tokens": 24}
    assert mon.usage == {"a": want, "b": want}
    tagged = [(r.agent, r.step, r.index) for r in store.records("u", kind="response")
              if "usage_input_tokens" in r.metadata]
    assert sorted(tagged) == [("a", 1, 1), ("a", 2, 1), ("b", 1, 1), ("b", 2, 1)]
    assert lw.DiversityReport.from_store(store, run_id="u").to_json()["runs"][0]["usage"] == \
        {"a": want, "b": want}


# ---------------------------------------------------------------------- bad inputs (added)
def test_seed_metadata_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="seed_metadata must have one entry per seed"):
        WebConfig(agents=("a", "b"), seeds=tuple(SEEDS), seed_metadata=({"label": "x"},))
    with pytest.raises(ValueError, match="seed_metadata must have one entry per seed"):
        WebConfig(agents=("a",), seeds=tuple(SEEDS[:2]),
                  seed_metadata=({}, {}, {"label": "extra"}))
    # make_config builds one metadata entry per seed itself, so it always agrees
    assert len(make_config(["a"], seeds=SEEDS).seed_metadata) == len(SEEDS)


def test_a_hook_raising_in_vary_names_the_hook_agent_and_step(store) -> None:
    class VaryBoom(WebHook):
        name = "vary-boom"

        def vary(self, request, *, rng):
            raise ValueError("persona list exhausted")

    with pytest.raises(RuntimeError, match=r"mitigation 'vary-boom' failed in vary\(\) for agent "
                                           r"'a0' at step 1: persona list exhausted"):
        run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=2, n_steps=2,
                mitigations=[VaryBoom()], rng=0, run_id="vb")
    # the seeds were written; no agent answered, so nothing of step 1 is in the store
    assert store.count("vb", kind="seed") == len(SEEDS)
    assert store.count("vb", kind=["post", "response"]) == 0
    assert store.count("vb") == len(SEEDS)


def test_a_hook_raising_in_after_step_names_the_hook_and_step(store) -> None:
    class AfterBoom(WebHook):
        name = "after-boom"

        def after_step(self, *, step, posts, monitor, rng):
            if step == 2:
                raise LookupError("review queue unreachable")

    with pytest.raises(RuntimeError, match=r"mitigation 'after-boom' failed in after_step\(\) at "
                                           r"step 2: review queue unreachable"):
        run_web(echo_agents(2), store=store, seeds=SEEDS, responses_per_step=2, n_steps=4,
                mitigations=[AfterBoom()], rng=0, run_id="ab")
    # steps 1 and 2 are fully stored (the hook runs after the agents); step 3 never started
    assert store.count("ab", kind="post") == 2 * 2
    assert store.count("ab", kind="response") == 2 * 2 * 2
    assert store.records("ab", step=3) == []
