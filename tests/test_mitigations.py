"""Mitigation hooks driven step by step against a real Qdrant store and the real embedder."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.web import AgentRequest
from llmweb_plugin.web.mitigations import (
    ExternalInjection,
    HumanSampling,
    JsonlSink,
    PromptVariation,
    QdrantReviewSink,
    QdrantSource,
    ReviewQueue,
    Variation,
    inject_on_alarm,
)
from llmweb_plugin.store import point_id

DOCS = [f"external document number {i} about the weather in town {i}" for i in range(40)]


def rng(step: int, j: int = 0) -> np.random.Generator:
    return np.random.default_rng([123, step, j])


def post_step(mon: lw.CollapseMonitor, step: int, agents=("a", "b", "c"), per_agent: int = 1):
    """Record one step's posts the way the web does and return them as stored."""
    for a in agents:
        for i in range(per_agent):
            mon.record(f"post by {a} at step {step}, number {i}", agent=a, step=step,
                       kind="post", index=i)
    mon.flush()
    return mon.store.records(mon.run_id, kind="post", step=step)


def seeds(mon: lw.CollapseMonitor, n: int = 2) -> None:
    for i in range(n):
        mon.record(f"seed document {i}", agent="seed", step=0, kind="seed", index=i)
    mon.flush()


def web_counts(store: lw.WebStore, run_id: str, upto: int) -> tuple[int, int]:
    web = store.web(run_id, before_step=upto + 1)
    return sum(r.kind == "post" for r in web), len(web)


@pytest.fixture()
def mon(store):
    m = lw.CollapseMonitor(store, run_id="r", alarm_fraction=None)
    yield m
    m.close()


# ---------------------------------------------------------------------------- sources
def test_injection_reads_list_file_generator_and_qdrant_sources_in_order(store, tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("first line\n\n   \nsecond line\r\nthird line\n", encoding="utf-8")
    other = lw.WebStore(client=store.client, collection="elsewhere", embedder=store.embedder)
    other.add_texts(["q0 text", "q1 text", "q2 text"], run_id="src", agent="x", step=0,
                    kind="seed")
    other.add_texts(["not this run"], run_id="other", agent="x", step=0, kind="seed")
    cases = {
        "list": (["l0", "l1", "l2"], ["l0", "l1", "l2"]),
        "file": (str(path), ["first line", "second line", "third line"]),
        "gen": ((f"g{i}" for i in range(3)), ["g0", "g1", "g2"]),
        "qdrant-store": (QdrantSource(other, run_id="src"), ["q0 text", "q1 text", "q2 text"]),
        # a raw client collection is read in point-id order (Qdrant's scroll order)
        "qdrant-client": (QdrantSource(store.client, "elsewhere", run_id="src"),
                          [r.text for r in sorted(other.records("src"),
                                                  key=lambda r: r.point_id)]),
    }
    for name, (source, expected) in cases.items():
        m = lw.CollapseMonitor(store, run_id=f"run-{name}", alarm_fraction=None)
        inj = ExternalInjection(source, per_step=2)
        for t in (1, 2):
            post_step(m, t)
            inj.after_step(step=t, posts=[], monitor=m, rng=rng(t))
        m.flush()
        ext = store.records(f"run-{name}", kind="external")
        assert [r.text for r in ext] == expected, name
        assert [r.step for r in ext] == [1, 1, 2], name
        assert [r.metadata["source_index"] for r in ext] == [0, 1, 2], name
        assert inj.stats.shortfall == 1, name  # 4 asked, 3 available
        m.close()


def test_bad_sources_and_rates_raise_clear_errors(tmp_path, store):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ExternalInjection(str(tmp_path / "missing.txt"), per_step=1)
    with pytest.raises(TypeError, match="iterable of str"):
        ExternalInjection(42, per_step=1)
    with pytest.raises(TypeError, match="iterable of str"):
        ExternalInjection({"a": 1}, per_step=1)
    with pytest.raises(ValueError, match="needs a rate"):
        ExternalInjection(DOCS)
    with pytest.raises(ValueError, match="per_step"):
        ExternalInjection(DOCS, per_step=-1)
    with pytest.raises(ValueError, match="fraction_of_posts"):
        ExternalInjection(DOCS, fraction_of_posts=-0.5)
    with pytest.raises(ValueError, match="max_synthetic_fraction"):
        ExternalInjection(DOCS, max_synthetic_fraction=0.0)
    with pytest.raises(ValueError, match="order"):
        ExternalInjection(DOCS, per_step=1, order="shuffled")
    with pytest.raises(ValueError, match="name the collection"):
        QdrantSource(store.client)
    with pytest.raises(TypeError, match="WebStore or a qdrant_client"):
        QdrantSource(object())


def test_non_string_and_empty_items_are_counted_skips(mon):
    seeds(mon)
    inj = ExternalInjection(["ok one", 3, "", None, "ok two"], per_step=5)
    post_step(mon, 1)
    inj.after_step(step=1, posts=[], monitor=mon, rng=rng(1))
    mon.flush()
    assert [r.text for r in mon.store.records("r", kind="external")] == ["ok one", "ok two"]
    assert dict(inj.source.skipped) == {"not_a_string": 2, "empty_text": 1}
    assert inj.stats.injected == 2 and inj.stats.shortfall == 3


# ---------------------------------------------------------------------------- injection rates
def test_per_step_injection_is_exact_and_annotated(mon, store):
    seeds(mon)
    inj = ExternalInjection(DOCS, per_step=2)
    for t in (1, 2, 3):
        posts = post_step(mon, t)
        inj.after_step(step=t, posts=posts, monitor=mon, rng=rng(t))
    hist = {h.step: h.extras for h in mon.history()}
    for t in (1, 2, 3):
        ext = store.records("r", kind="external", step=t)
        assert [r.text for r in ext] == DOCS[2 * (t - 1): 2 * t]
        assert {r.agent for r in ext} == {"external"}
        assert [r.index for r in ext] == [2 * (t - 1), 2 * t - 1]
        p, w = web_counts(store, "r", t)
        assert hist[t]["injected"] == 2
        assert hist[t]["synthetic_fraction_after_injection"] == p / w
        assert (p, w) == (3 * t, 2 + 3 * t + 2 * t)
    assert sum(e["kind"] == "injection" for e in mon.events) == 3


def test_fraction_of_posts_is_cumulatively_exact(mon, store):
    seeds(mon)
    inj = ExternalInjection(DOCS, fraction_of_posts=0.5)
    got = []
    for t in range(1, 5):
        post_step(mon, t)  # 3 posts per step
        inj.after_step(step=t, posts=[], monitor=mon, rng=rng(t))
        mon.flush()
        got.append(store.count("r", kind="external"))
        assert got[-1] == math.floor(0.5 * 3 * t)
    assert got == [1, 3, 4, 6]


def test_planned_counts_use_exact_fractions():
    assert ExternalInjection(DOCS, fraction_of_posts=1 / 3).planned(
        posts_total=3, posts_step=3, web_total=0) == 1  # a third of 3 is 1, not 0.99999
    inj = ExternalInjection(DOCS, max_synthetic_fraction=0.3)
    # 3 posts need a web of exactly 10 documents for 3/10 = 0.3 (not 11 from float rounding)
    assert inj.planned(posts_total=3, posts_step=3, web_total=7) == 3
    assert inj.planned(posts_total=3, posts_step=3, web_total=12) == 0
    assert inj.planned(posts_total=0, posts_step=0, web_total=5) == 0
    both = ExternalInjection(DOCS, per_step=1, fraction_of_posts=0.7)
    assert both.planned(posts_total=10, posts_step=10, web_total=20) == 7
    assert both.planned(posts_total=1, posts_step=1, web_total=3) == 1  # per_step wins


def test_max_synthetic_fraction_holds_the_bound_with_the_fewest_documents(mon, store):
    seeds(mon, 2)
    bound = 0.3
    inj = ExternalInjection(DOCS, max_synthetic_fraction=bound)
    for t in range(1, 5):
        post_step(mon, t)
        inj.after_step(step=t, posts=[], monitor=mon, rng=rng(t))
        mon.flush()
        p, w = web_counts(store, "r", t)
        k = store.count("r", kind="external") - sum(
            r.step < t for r in store.records("r", kind="external"))
        assert p / w <= bound + 1e-12
        if k > 0:  # one document fewer would break the bound: the count is minimal
            assert p / (w - 1) > bound
    hist = {h.step: h.extras for h in mon.history()}
    assert hist[4]["synthetic_fraction_after_injection"] == pytest.approx(0.3)


def test_exhausted_source_is_logged_and_counted_not_raised(mon, store, caplog):
    seeds(mon)
    inj = ExternalInjection(DOCS[:3], per_step=2)
    for t in (1, 2, 3):
        post_step(mon, t)
        inj.after_step(step=t, posts=[], monitor=mon, rng=rng(t))
    mon.flush()
    assert [store.count("r", kind="external")] == [3]
    assert inj.stats.injected == 3 and inj.stats.shortfall == 3
    ev = [e for e in mon.events if e["kind"] == "injection_exhausted"]
    assert [(e["step"], e["injected"]) for e in ev] == [(2, 1), (3, 0)]
    assert "exhausted" in caplog.text


def test_rerunning_a_step_with_a_fresh_hook_never_double_counts(mon, store):
    seeds(mon)
    for order in ("sequential", "random"):
        run = f"resume-{order}"
        m = lw.CollapseMonitor(store, run_id=run, alarm_fraction=None)
        first = ExternalInjection(DOCS, per_step=3, order=order)
        for t in (1, 2):
            post_step(m, t)
            first.after_step(step=t, posts=[], monitor=m, rng=rng(t))
        m.flush()
        before = sorted(r.point_id for r in store.records(run, kind="external"))
        again = ExternalInjection(DOCS, per_step=3, order=order)  # a new process
        again.after_step(step=2, posts=[], monitor=m, rng=rng(2))  # step 2 re-run
        m.flush()
        assert sorted(r.point_id for r in store.records(run, kind="external")) == before
        post_step(m, 3)
        again.after_step(step=3, posts=[], monitor=m, rng=rng(3))
        m.flush()
        texts = [r.text for r in store.records(run, kind="external")]
        assert len(texts) == 9 and len(set(texts)) == 9, order
        if order == "sequential":
            assert texts == DOCS[:9]
        m.close()


def test_random_order_is_reproducible_for_a_seed(store):
    picks = []
    for run in ("x1", "x2"):
        m = lw.CollapseMonitor(store, run_id=run, alarm_fraction=None)
        inj = ExternalInjection(DOCS, per_step=4, order="random")
        for t in (1, 2, 3):
            post_step(m, t)
            inj.after_step(step=t, posts=[], monitor=m, rng=rng(t))
        m.flush()
        picks.append([r.text for r in store.records(run, kind="external")])
        m.close()
    assert picks[0] == picks[1]
    assert picks[0] != DOCS[:12] and len(set(picks[0])) == 12


# ---------------------------------------------------------------------------- alarms
DIVERSE = {
    "a": ["Cats sleep most of the afternoon on warm windowsills.",
          "The violin concerto premiered in Vienna in 1806.",
          "Sourdough bread needs a long cold fermentation."],
    "b": ["Quantum computers use qubits that can be entangled.",
          "Volcanic eruptions can cool the global climate for years.",
          "The offside rule in football confuses many new fans."],
}
SAME = "Bitcoin will probably keep going up in the long term."


def alarm_run(m: lw.CollapseMonitor) -> None:
    """Three diverse steps (the baseline), then two steps where both agents say the same."""
    for t in (1, 2, 3):
        for a in ("a", "b"):
            m.record(DIVERSE[a][t - 1], agent=a, step=t)
    for t in (4, 5):
        for a in ("a", "b"):
            m.record(SAME, agent=a, step=t)
    m.flush()


def test_on_alarm_only_waits_for_an_alarm(store):
    m = lw.CollapseMonitor(store, run_id="alarm-only", baseline_steps=3)
    seeds(m)
    inj = ExternalInjection(DOCS, per_step=2, on_alarm_only=True)
    post_step(m, 1)
    inj.after_step(step=1, posts=[], monitor=m, rng=rng(1))
    m.flush()
    assert store.count("alarm-only", kind="external") == 0
    alarm_run(m)
    assert [a.step for a in m.alarms] == [4, 5]
    post_step(m, 5)
    inj.after_step(step=5, posts=[], monitor=m, rng=rng(5))
    post_step(m, 6)
    # a new process without the alarm in memory keeps injecting: the store says it started
    fresh = lw.CollapseMonitor(store, run_id="alarm-only", alarm_fraction=None)
    ExternalInjection(DOCS, per_step=2, on_alarm_only=True).after_step(
        step=6, posts=[], monitor=fresh, rng=rng(6))
    fresh.flush()
    ext = store.records("alarm-only", kind="external")
    assert [(r.step, r.text) for r in ext] == [(5, DOCS[0]), (5, DOCS[1]), (6, DOCS[2]),
                                               (6, DOCS[3])]
    fresh.close()
    m.close()


def test_inject_on_alarm_wires_a_monitor_outside_the_graph(store):
    seen = []
    m = lw.CollapseMonitor(store, run_id="app", baseline_steps=3, on_alarm=seen.append)
    inj = ExternalInjection(DOCS, per_step=2)
    cb = inject_on_alarm(m, inj)
    assert m.on_alarm is cb
    alarm_run(m)
    m.flush()
    ext = store.records("app", kind="external")
    assert [(r.step, r.text) for r in ext] == [(4, DOCS[0]), (4, DOCS[1]), (5, DOCS[2]),
                                               (5, DOCS[3])]
    assert [e.step for e in seen] == [4, 5]  # the previous callback still runs
    assert [e["injected"] for e in m.events if e["kind"] == "alarm_injection"] == [2, 2]
    assert m.stats.handler_errors == 0
    hist = {h.step: h.extras for h in m.history()}
    assert hist[4]["injected"] == 2 and hist[4]["n_external"] == 2
    m.close()


# ---------------------------------------------------------------------------- prompt variation
def test_rotation_is_deterministic_and_offset_per_agent():
    personas = ["P0", "P1", "P2", "P3"]
    pv = PromptVariation(personas=personas, temperature_schedule=[0.1, 0.5, 0.9])
    for agent in ("alice", "bob"):
        off4, off3 = zlib.crc32(agent.encode()) % 4, zlib.crc32(agent.encode()) % 3
        for step in range(1, 7):
            v = pv.choose(agent, step, rng=None)
            assert v.persona == personas[(step - 1 + off4) % 4]
            assert v.temperature == [0.1, 0.5, 0.9][(step - 1 + off3) % 3]
    assert pv.choose("alice", 1) != pv.choose("bob", 1)


def test_random_mode_is_reproducible_for_a_seed():
    pv = PromptVariation(personas=["P0", "P1", "P2"], query_templates=["A {query}", "B {query}"],
                         mode="random")
    a = [pv.choose("x", s, np.random.default_rng([7, s])) for s in range(1, 30)]
    b = [pv.choose("x", s, np.random.default_rng([7, s])) for s in range(1, 30)]
    assert a == b
    assert {v.persona for v in a} == {"P0", "P1", "P2"}
    assert {v.template_index for v in a} == {0, 1}


def test_vary_changes_the_request_and_records_it_in_metadata():
    pv = PromptVariation(personas=["Be a historian."], query_templates=["Briefly: {query}"],
                         temperature_schedule=lambda step: 0.2 * step)
    req = AgentRequest(agent="a", step=3, query="Why?", context=("c1",),
                       system_prompt="Base.", metadata={"keep": 1})
    out = pv.vary(req, rng=np.random.default_rng(0))
    assert out.system_prompt == "Be a historian.\n\nBase."
    assert out.query == "Briefly: Why?"
    assert out.temperature == pytest.approx(0.6)
    assert out.render().endswith("Briefly: Why?")
    assert out.metadata == {"keep": 1, "persona": "Be a historian.", "persona_index": 0,
                            "query_template": "Briefly: {query}", "template_index": 0,
                            "temperature": pytest.approx(0.6), "mitigation": "prompt_variation"}
    assert Variation().as_metadata() == {}


def test_prompt_variation_rejects_bad_settings():
    with pytest.raises(ValueError, match="needs personas"):
        PromptVariation()
    with pytest.raises(ValueError, match="no \\{query\\} field"):
        PromptVariation(query_templates=["no field"])
    with pytest.raises(ValueError, match="only use the \\{query\\} field"):
        PromptVariation(query_templates=["{query} and {other}"])
    with pytest.raises(ValueError, match="empty"):
        PromptVariation(personas=[])
    with pytest.raises(ValueError, match=">= 0"):
        PromptVariation(temperature_schedule=[0.5, -1.0])
    with pytest.raises(ValueError, match="mode"):
        PromptVariation(personas=["p"], mode="shuffle")
    pv = PromptVariation(temperature_schedule=lambda s: -1.0)
    with pytest.raises(ValueError, match="returned -1.0"):
        pv.choose("a", 1)


# ---------------------------------------------------------------------------- human sampling
def test_uniform_sampling_quota_is_cumulatively_exact(mon, store, tmp_path):
    seeds(mon)
    hs = HumanSampling(0.25, sink=JsonlSink(tmp_path / "q.jsonl"))
    for t in range(1, 6):
        posts = post_step(mon, t)  # 3 posts per step
        hs.after_step(step=t, posts=posts, monitor=mon, rng=rng(t))
    per_step = [sum(it.sampled_step == t for it in hs.queue.items()) for t in range(1, 6)]
    assert per_step == [math.floor(0.25 * 3 * t) - math.floor(0.25 * 3 * (t - 1))
                        for t in range(1, 6)]
    hist = {h.step: h.extras for h in mon.history()}
    assert [hist[t]["sampled"] for t in range(1, 6)] == per_step
    assert store.count("r", kind="human") == 0  # nobody reviewed yet
    assert len(hs.queue.pending("r")) == sum(per_step)


def test_stratified_sampling_gives_each_agent_its_quota(mon, tmp_path):
    hs = HumanSampling(0.5, stratify="agent", sink=JsonlSink(tmp_path / "q.jsonl"))
    for t in range(1, 5):
        posts = post_step(mon, t, agents=("a", "b", "c"), per_agent=1)
        hs.after_step(step=t, posts=posts, monitor=mon, rng=rng(t))
    by_agent = {a: sum(it.agent == a for it in hs.queue.items()) for a in "abc"}
    assert by_agent == {"a": 2, "b": 2, "c": 2}  # floor(0.5 * 4) each


def test_agent_step_strata_use_randomised_rounding(mon, tmp_path):
    hs = HumanSampling(0.5, stratify="agent_step", sink=JsonlSink(tmp_path / "q.jsonl"))
    posts = post_step(mon, 1, agents=("a", "b"), per_agent=3)  # 1.5 per stratum
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    counts = [sum(it.agent == a for it in hs.queue.items()) for a in "ab"]
    assert all(c in (1, 2) for c in counts)


def test_sampled_posts_are_reproducible_for_a_seed(store, tmp_path):
    def sampled(run: str, seed: int) -> list[tuple[str, int]]:
        m = lw.CollapseMonitor(store, run_id=run, alarm_fraction=None)
        hs = HumanSampling(0.4, sink=JsonlSink(tmp_path / f"{run}.jsonl"))
        for t in range(1, 5):
            posts = post_step(m, t, agents=("a", "b", "c", "d", "e"))
            hs.after_step(step=t, posts=posts, monitor=m, rng=np.random.default_rng([seed, t]))
        m.close()
        return [(it.agent, it.step) for it in hs.queue.items()]

    first, second, other = sampled("s1", 5), sampled("s2", 5), sampled("s3", 6)
    assert first == second
    assert len(first) == 8  # floor(0.4 * 20)
    assert first != other


def test_reviewer_replacements_land_in_the_web_as_human_records(mon, store, tmp_path):
    seeds(mon)
    hs = HumanSampling(1 / 3, sink=JsonlSink(tmp_path / "q.jsonl"),
                       reviewer=lambda item: f"human rewrite {item.seq}")
    for t in (1, 2, 3):
        posts = post_step(mon, t)
        hs.after_step(step=t, posts=posts, monitor=mon, rng=rng(t))
    mon.flush()
    human = store.records("r", kind="human")
    items = hs.queue.items("r")
    assert len(human) == len(items) == 3
    posts_by_id = {p.point_id: p for p in store.records("r", kind="post")}
    for rec, item in zip(human, items):
        assert rec.text == f"human rewrite {item.seq}"
        assert rec.agent == "human" and rec.step == item.sampled_step and rec.index == item.seq
        assert rec.metadata["review_of"] == item.id and rec.metadata["review"] == "replaced"
        post = posts_by_id[item.id]
        assert (rec.metadata["reviewed_agent"], rec.metadata["reviewed_step"]) == (post.agent,
                                                                                   post.step)
    p, w = web_counts(store, "r", 3)
    hist = {h.step: h.extras for h in mon.history()}
    assert hist[3]["synthetic_fraction"] == p / w == 9 / (2 + 9 + 3)
    assert [hist[t]["reviewed_applied"] for t in (1, 2, 3)] == [1, 1, 1]


def test_review_queue_approve_replace_and_idempotent_apply(mon, store, tmp_path):
    hs = HumanSampling(1.0, sink=JsonlSink(tmp_path / "q.jsonl"))
    posts = post_step(mon, 1, agents=("a", "b", "c"))
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    q = hs.queue
    ids = [it.id for it in q.pending("r")]
    assert len(ids) == 3
    q.approve(ids[0])
    q.replace(ids[1], "a careful human answer")
    assert [it.id for it in q.pending()] == [ids[2]]
    assert q.apply(mon, step=2) == 2
    assert q.apply(mon, step=2) == 2  # re-run of the same step: same records, nothing new
    assert q.apply(mon, step=3) == 0
    mon.flush()
    human = store.records("r", kind="human")
    assert [(r.step, r.text, r.metadata["review"], r.metadata["review_of"]) for r in human] == [
        (2, posts[0].text, "approved", ids[0]),
        (2, "a careful human answer", "replaced", ids[1]),
    ]
    with pytest.raises(ValueError, match="already applied"):
        q.approve(ids[0])
    with pytest.raises(KeyError, match="no review item"):
        q.approve("nope")
    with pytest.raises(ValueError, match="non-empty"):
        q.replace(ids[2], "  ")
    # a human record lost from the store (e.g. a crash before the worker wrote it) is re-written
    store.client.delete(store.collection, points_selector=[human[0].point_id], wait=True)
    assert q.apply(mon, step=2) == 2
    mon.flush()
    assert store.count("r", kind="human") == 2


def test_jsonl_sink_is_append_only_json_and_replays(mon, tmp_path):
    path = tmp_path / "sub" / "q.jsonl"
    hs = HumanSampling(1.0, sink=JsonlSink(path))
    posts = post_step(mon, 1, agents=("a", "b"))
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    hs.queue.replace(posts[0].point_id, "rewritten")
    lines = path.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["sampled", "sampled", "update"]
    # a resumed run samples the same posts again: nothing new is sampled; the decision taken
    # in between is applied (one "update" line recording the step it was applied at)
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in events] == ["sampled", "sampled", "update", "update"]
    assert events[-1] == {"event": "update", "id": posts[0].point_id, "applied_step": 1}
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"event": "sampled", "id": \n')  # a torn write
    again = JsonlSink(path)
    assert again.bad_lines == 1
    items = again.items()
    assert [(it.status, it.replacement, it.applied_step) for it in items] == [
        ("replaced", "rewritten", 1), ("pending", None, None)]
    assert items == hs.sink.items()


def test_qdrant_review_sink_keeps_the_queue_in_its_own_collection(mon, store):
    sink = QdrantReviewSink(store, collection="review_q")
    hs = HumanSampling(1.0, sink=sink, reviewer=lambda it: True if it.agent == "a" else None)
    posts = post_step(mon, 1, agents=("a", "b"))
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    mon.flush()
    review = sink.review_store.records(with_vectors=True)
    assert sorted(r.point_id for r in review) == sorted(p.point_id for p in posts)
    web_vecs = {r.point_id: r.vector for r in store.records("r", kind="post", with_vectors=True)}
    for r in review:
        np.testing.assert_allclose(r.vector, web_vecs[r.point_id], rtol=1e-6)
    reopened = ReviewQueue(QdrantReviewSink(store, collection="review_q"))
    assert [(it.agent, it.status, it.applied_step) for it in reopened.items()] == [
        ("a", "approved", 1), ("b", "pending", None)]
    human = store.records("r", kind="human")
    assert [(r.text, r.metadata["review"]) for r in human] == [(posts[0].text, "approved")]
    assert store.count(kind="post") == 2  # the review copies are not in the web's collection
    with pytest.raises(ValueError, match="must differ"):
        QdrantReviewSink(store, collection=store.collection)


def test_human_sampling_rerun_of_a_step_never_double_counts(mon, store, tmp_path):
    path = tmp_path / "q.jsonl"
    reviewer = lambda item: f"rewrite {item.seq}"
    hs = HumanSampling(0.5, sink=JsonlSink(path), reviewer=reviewer)
    for t in (1, 2):
        posts = post_step(mon, t, agents=("a", "b", "c", "d"))
        hs.after_step(step=t, posts=posts, monitor=mon, rng=rng(t))
    mon.flush()
    before = (store.count("r", kind="human"), len(hs.queue.items()))
    resumed = HumanSampling(0.5, sink=JsonlSink(path), reviewer=reviewer)  # a new process
    resumed.after_step(step=2, posts=store.records("r", kind="post", step=2), monitor=mon,
                       rng=rng(2))
    mon.flush()
    assert (store.count("r", kind="human"), len(resumed.queue.items())) == before == (4, 4)
    hist = {h.step: h.extras for h in mon.history()}
    assert hist[2]["sampled"] == 2 and hist[2]["reviewed_applied"] == 2


def test_human_sampling_rejects_bad_settings(tmp_path):
    sink = JsonlSink(tmp_path / "q.jsonl")
    with pytest.raises(ValueError, match="rate"):
        HumanSampling(1.5, sink=sink)
    with pytest.raises(ValueError, match="stratify"):
        HumanSampling(0.5, sink=sink, stratify="step")
    with pytest.raises(TypeError, match="reviewer"):
        HumanSampling(0.5, sink=sink, reviewer="yes")
    with pytest.raises(TypeError, match="add/items/update"):
        ReviewQueue(object())


def test_reviewer_returning_a_bad_type_fails_the_step(mon, tmp_path):
    hs = HumanSampling(1.0, sink=JsonlSink(tmp_path / "q.jsonl"), reviewer=lambda it: 42)
    posts = post_step(mon, 1, agents=("a",))
    with pytest.raises(TypeError, match="reviewer returned int"):
        hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))


def test_review_point_ids_follow_the_store_layout(mon, tmp_path):
    hs = HumanSampling(1.0, sink=JsonlSink(tmp_path / "q.jsonl"), reviewer=lambda it: True)
    posts = post_step(mon, 1, agents=("a",))
    hs.after_step(step=1, posts=posts, monitor=mon, rng=rng(1))
    mon.flush()
    (rec,) = mon.store.records("r", kind="human")
    assert rec.point_id == point_id("r", "human", 1, "human", 0)


# ---------------------------------------------------------------------------- bad inputs (added)
def test_external_injection_rejects_an_empty_agent_name():
    with pytest.raises(ValueError, match="agent must be a non-empty string"):
        ExternalInjection(DOCS, per_step=1, agent="")
    with pytest.raises(ValueError, match="agent must be a non-empty string"):
        ExternalInjection(DOCS, per_step=1, agent=None)  # type: ignore[arg-type]


def test_inject_with_a_negative_count_writes_nothing(mon, store):
    seeds(mon)
    post_step(mon, 1)
    inj = ExternalInjection(DOCS, per_step=1)
    n_before = store.count("r")
    with pytest.raises(ValueError, match="n must be >= 0; got -1"):
        inj.inject(mon, step=1, n=-1)
    mon.flush()
    assert store.count("r") == n_before and store.count("r", kind="external") == 0
    assert inj.stats.injected == 0
    assert not [e for e in mon.events if e["kind"] == "injection"]
    # the hook still works afterwards: nothing was reserved by the failed call
    assert inj.inject(mon, step=1, n=2) == 2
    mon.flush()
    assert [r.text for r in store.records("r", kind="external")] == DOCS[:2]


def test_prompt_variation_rejects_an_empty_temperature_schedule():
    with pytest.raises(ValueError, match="temperature_schedule is empty; pass at least one"):
        PromptVariation(temperature_schedule=[])
    with pytest.raises(ValueError, match="temperature_schedule is empty"):
        PromptVariation(personas=["p"], temperature_schedule=())


def test_qdrant_review_sink_needs_a_web_store(store):
    with pytest.raises(TypeError, match="store must be a WebStore; got QdrantClient"):
        QdrantReviewSink(store.client)
    with pytest.raises(TypeError, match="store must be a WebStore; got str"):
        QdrantReviewSink(":memory:")  # type: ignore[arg-type]
