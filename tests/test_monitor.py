"""CollapseMonitor: records reach Qdrant, the per-step series equals a recomputation from the
stored vectors, and every failure path is counted and surfaced, never lost."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.testing import FlakyEmbedder, brute_force_collapse_norm

TEXTS = {
    "bull": ["Bitcoin will reach new highs as adoption grows.",
             "Institutional demand keeps pushing bitcoin up.",
             "Halving cycles point to a strong rally."],
    "bear": ["Bitcoin faces regulatory pressure and may fall.",
             "Energy costs could drag bitcoin prices down.",
             "A speculative bubble in crypto may burst soon."],
    "neutral": ["Bitcoin's future depends on regulation and adoption.",
                "Prices will likely stay volatile for a while.",
                "Analysts disagree about bitcoin's long-term value."],
}


def _fill(mon, steps=(1, 2, 3)):
    for s in steps:
        for agent, texts in TEXTS.items():
            for t in texts:
                mon.record(f"{t} (step {s})", agent=agent, step=s)


def test_records_land_in_qdrant_with_provenance(store):
    mon = lw.CollapseMonitor(store, run_id="m1")
    _fill(mon)
    stats = mon.flush()
    assert (stats.received, stats.stored, stats.embedded, stats.failed, stats.pending) == (27, 27, 27, 0, 0)
    recs = store.records("m1", step=2, agent="bear")
    assert [r.text for r in recs] == [f"{t} (step 2)" for t in TEXTS["bear"]]
    assert [r.index for r in recs] == [0, 1, 2] and {r.kind for r in recs} == {"response"}
    mon.close()


def test_history_equals_recomputation_from_stored_vectors(store):
    mon = lw.CollapseMonitor(store, run_id="m2")
    _fill(mon)
    hist = mon.history()
    assert [h.step for h in hist] == [1, 2, 3]
    for h in hist:
        recs = store.records("m2", step=h.step, kind="response", with_vectors=True)
        E = np.stack([r.vector for r in recs]).astype(np.float64)
        labels = [r.agent for r in recs]
        means = np.stack([E[[i for i, a in enumerate(labels) if a == ag]].mean(0)
                          for ag in sorted(set(labels))])
        assert h.norm == pytest.approx(brute_force_collapse_norm(means), rel=1e-5)
        sp = lw.spread(E, labels)
        assert h.within_spread == pytest.approx(sp.within, rel=1e-5)
        assert h.between_spread == pytest.approx(sp.between, rel=1e-5)
        assert h.mean_cosine_distance == pytest.approx(lw.mean_cosine_distance(E), rel=1e-5)
        assert h.n_agents == 3 and h.n_records == 9
    mon.close()


def test_step_none_uses_per_agent_counter_and_index_counter(store):
    mon = lw.CollapseMonitor(store, run_id="m3")
    for _ in range(3):
        mon.record("hello from a", agent="a")
    mon.record("hello from b", agent="b")
    mon.record("two at once", agent="c", step=5)
    mon.record("two at once again", agent="c", step=5)
    mon.flush()
    assert [(r.agent, r.step, r.index) for r in store.records("m3")] == [
        ("a", 0, 0), ("b", 0, 0), ("a", 1, 0), ("a", 2, 0), ("c", 5, 0), ("c", 5, 1)]
    mon.close()


def test_same_record_twice_is_idempotent(store):
    mon = lw.CollapseMonitor(store, run_id="m4")
    pid1 = mon.record("same", agent="a", step=1, index=0)
    pid2 = mon.record("same", agent="a", step=1, index=0)
    mon.flush()
    assert pid1 == pid2 and store.count("m4") == 1
    mon.close()


def test_bad_inputs_raise_or_are_counted(store, caplog):
    mon = lw.CollapseMonitor(store, run_id="m5")
    with pytest.raises(TypeError, match="text must be str; got int"):
        mon.record(42, agent="a")
    with pytest.raises(TypeError, match="agent must be str"):
        mon.record("x", agent=None)
    with pytest.raises(ValueError, match="kind must be one of"):
        mon.record("x", agent="a", kind="tweet")
    with pytest.raises(ValueError, match="step must be"):
        mon.record("x", agent="a", step=-1)
    with pytest.raises(ValueError, match="reserved"):
        mon.record("x", agent="a", metadata={"run_id": "other"})
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        assert mon.record("   \n", agent="a") is None
        assert mon.record("", agent="b") is None
        assert mon.record("", agent="b") is None  # counted, but logged at debug level only
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("skipped a record (empty_text)" in r.getMessage()
                                      for r in warnings)
    mon.record("real text", agent="a")
    stats = mon.flush()
    assert stats.received == 4 and stats.skipped == 3 and stats.stored == 1
    assert stats.skip_reasons == {"empty_text": 3}
    assert store.count("m5") == 1
    mon.close()
    with pytest.raises(RuntimeError, match="closed"):
        mon.record("late", agent="a")


def test_embedder_failure_is_counted_logged_kept_and_retried(store, embedder, caplog):
    flaky = FlakyEmbedder(embedder)
    mon = lw.CollapseMonitor(store, run_id="m6", embedder=flaky, batch_size=1)
    mon.record("fine one", agent="a", step=1)
    mon.record("this will FAIL", agent="a", step=1)
    mon.record("fine two", agent="b", step=1)
    with caplog.at_level(logging.ERROR, logger="llmweb_plugin.monitor"):
        stats = mon.flush()
    assert (stats.stored, stats.failed, stats.received) == (2, 1, 3)
    assert "failed to embed or store" in caplog.text and "simulated" in stats.errors[-1]
    assert [it.text for it in mon.failed_items] == ["this will FAIL"]
    mon.record("after failure", agent="b", step=2)
    with pytest.raises(lw.MonitorError, match="1 record"):
        mon.record("FAIL again", agent="a", step=2)
        mon.flush(strict=True)
    flaky.fail_when = lambda texts: False
    assert mon.retry_failed() == 2
    stats = mon.flush(strict=True)
    assert (stats.stored, stats.failed, stats.pending) == (5, 0, 0)
    assert store.count("m6") == 5
    mon.close()


def test_store_failure_is_counted(embedder):
    store = lw.WebStore(":memory:", embedder=embedder)
    mon = lw.CollapseMonitor(store, run_id="m7")
    mon.record("stored", agent="a", step=1)
    mon.flush()
    store.close()  # the store goes away under the monitor
    mon.record("lost store", agent="a", step=1)
    stats = mon.flush()
    assert stats.stored == 1 and stats.failed == 1 and "closed" in stats.errors[-1]
    mon.close()


def test_embedder_mismatch_is_refused(store):
    class Other:
        name = "other-model"
        dim = 384

        def embed(self, texts):
            return np.ones((len(texts), 384), np.float32)

    with pytest.raises(ValueError, match="one collection per embedding model"):
        lw.CollapseMonitor(store, embedder=Other())
    Other.dim = 8
    with pytest.raises(ValueError, match="8-d vectors"):
        lw.CollapseMonitor(store, embedder=Other())
    with pytest.raises(TypeError, match="not an Embedder"):
        lw.CollapseMonitor(store, embedder=object())
    with pytest.raises(ValueError, match="metric_kinds"):
        lw.CollapseMonitor(store, metric_kinds=("nope",))


def test_alarm_fires_when_norm_falls_below_baseline(store):
    events = []
    mon = lw.CollapseMonitor(store, run_id="m8", alarm_fraction=0.5, baseline_steps=2,
                             on_alarm=events.append)
    diverse = {"bull": "Bitcoin will soar to the moon.", "bear": "Crypto is a scam that will crash.",
               "neutral": "The weather in Paris is mild today."}
    for s in (1, 2):
        for a, t in diverse.items():
            mon.record(t, agent=a, step=s)
    for s in (3, 4):
        for a in diverse:
            mon.record("Bitcoin's future is uncertain.", agent=a, step=s)
    mon.flush()
    assert [e.step for e in events] == [3, 4]
    assert events[0].norm < 0.5 * events[0].baseline
    assert [e["kind"] for e in mon.events] == ["alarm", "alarm"]
    mon.close()


def test_alarm_callback_errors_are_counted_not_raised(store):
    def boom(ev):
        raise RuntimeError("user callback broke")

    mon = lw.CollapseMonitor(store, run_id="m9", baseline_steps=1, on_alarm=boom)
    mon.record("Bitcoin will soar.", agent="a", step=1)
    mon.record("Gold is better.", agent="b", step=1)
    for a in "ab":
        mon.record("Same sentence.", agent=a, step=2)
    stats = mon.flush()
    assert stats.handler_errors == 1 and "user callback broke" in stats.errors[-1]
    mon.close()


def test_concurrent_record_from_threads(store):
    mon = lw.CollapseMonitor(store, run_id="m10")

    def work(t):
        for i in range(25):
            mon.record(f"thread {t} message {i}", agent=f"agent{t}", step=i % 5)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = mon.flush()
    assert stats.stored == 200 and store.count("m10") == 200
    hist = mon.history()
    assert [h.n_records for h in hist] == [40] * 5 and all(h.n_agents == 8 for h in hist)
    mon.close()


def test_web_accounting_and_annotations_in_history(store):
    mon = lw.CollapseMonitor(store, run_id="m11")
    for i in range(4):
        mon.record(f"seed {i}", agent="seed", step=0, kind="seed")
    mon.record("post a", agent="a", step=1, kind="post")
    mon.record("post b", agent="b", step=1, kind="post")
    mon.record("fresh news", agent="ext", step=1, kind="external")
    for a in "ab":
        mon.record(f"answer {a}", agent=a, step=1)
    mon.annotate(1, injected=1)
    (h,) = mon.history()
    assert h.extras["web_size"] == 7 and h.extras["synthetic_fraction"] == pytest.approx(2 / 7)
    assert h.extras["injected"] == 1 and h.extras["n_response"] == 2
    mon.close()


def test_usage_is_accumulated(store):
    mon = lw.CollapseMonitor(store, run_id="m12")
    mon.record_usage("a", input_tokens=10, output_tokens=5)
    mon.record_usage("a", input_tokens=2, output_tokens=1, total_tokens=True)  # bool ignored
    assert mon.usage == {"a": {"input_tokens": 12, "output_tokens": 6}}
    mon.close()


def test_count_skip_is_accounted_and_rejects_a_bad_reason(store):
    mon = lw.CollapseMonitor(store, run_id="skips")
    mon.count_skip("tool_call_only", agent="a")
    mon.record("kept", agent="a")
    with pytest.raises(ValueError, match="reason must be a non-empty str"):
        mon.count_skip("", agent="a")
    with pytest.raises(ValueError, match="reason must be a non-empty str"):
        mon.count_skip(None, agent="a")  # type: ignore[arg-type]
    stats = mon.flush()
    # the rejected calls count nothing; the skip and the record are both accounted for
    assert (stats.received, stats.skipped, stats.stored) == (2, 1, 1)
    assert stats.skip_reasons == {"tool_call_only": 1}
    mon.close()


def test_step_extras_equal_the_history_extras(store):
    mon = lw.CollapseMonitor(store, run_id="extras")
    for step in (1, 2, 3):
        mon.record(f"post {step}", agent="a", step=step, kind="post")
        for agent in ("a", "b"):
            mon.record(f"{agent} answer {step}", agent=agent, step=step)
    mon.annotate(2, injected=3)
    mon.annotate(5, note="only an annotation")
    hist = mon.history()
    assert [h.step for h in hist] == [1, 2, 3, 5]
    for h in hist:
        assert mon.step_extras(h.step) == dict(h.extras)
    assert mon.step_extras(4) == {}
    mon.close()
