"""CollapseMonitor under faults: one bad record fails only itself, bad arguments are refused
before they are counted, an embedder's BaseException cannot hang flush/close, and a step with
one agent only is warned about once per run.

The fault tests use a small deterministic embedder (vectors from SHA-256 of the text) that fails
on marker words; the stores are real embedded Qdrant.
"""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np
import pytest

import llmweb_plugin as lw

GOOD = [f"good text number {i} about rates" for i in range(5)]


class HashEmbedder:
    """8-d vectors from SHA-256 of the text. A text holding ``raise_marker`` (``"RAISE"``)
    makes the call raise ``exc``; ``NANROW`` / ``INFROW`` give that row a NaN / inf;
    ``down=True`` fails every call."""

    name = "fake-sha256-8"
    dim = 8

    def __init__(self, exc: type[BaseException] = RuntimeError) -> None:
        self.exc = exc
        self.down = False
        self.raise_marker: str | None = "RAISE"
        self.sizes: list[int] = []

    def embed(self, texts):
        texts = list(texts)
        self.sizes.append(len(texts))
        if self.down:
            raise self.exc("embedding service down")
        for t in texts:
            if self.raise_marker is not None and self.raise_marker in t:
                raise self.exc(f"cannot embed {t!r}")
        rows = []
        for t in texts:
            h = hashlib.sha256(t.encode("utf-8")).digest()
            v = np.frombuffer(h[:8], dtype=np.uint8).astype(np.float32) - 127.5
            if "NANROW" in t:
                v[3] = np.nan
            if "INFROW" in t:
                v[5] = np.inf
            rows.append(v)
        return np.stack(rows)


class FlakyStore(lw.WebStore):
    """A real in-memory WebStore whose upsert fails when a batch holds a text with ``BADSTORE``."""

    broken = True

    def upsert(self, records, vectors=None):
        records = list(records)
        if self.broken and any("BADSTORE" in r.text for r in records):
            raise ConnectionError("server rejected the payload")
        return super().upsert(records, vectors)


@pytest.fixture()
def fake():
    emb = HashEmbedder()
    store = lw.WebStore(":memory:", embedder=emb)
    yield emb, store
    store.close()


def _one_batch_monitor(store, run_id, n, **kw):
    """A monitor whose worker gathers the first ``n`` records into one batch (see ``_settle``)."""
    return lw.CollapseMonitor(store, run_id=run_id, batch_size=n, linger=10.0, **kw)


def _settle(mon):
    """After the first batch: stop waiting to fill batches (a retry of one record is quick)."""
    mon.linger = 0.002


# ---------------------------------------------------------------------- (a) lone surrogates
def test_lone_surrogate_is_refused_at_record_and_the_good_texts_are_stored(store):
    """The issue's case with the real MiniLM embedder: 5 good texts and one "\\ud800"."""
    mon = lw.CollapseMonitor(store, run_id="sur")
    for t in GOOD[:3]:
        mon.record(t, agent="a", step=1)
    with pytest.raises(ValueError, match=r"text holds a lone surrogate '\\ud800' at position 4"):
        mon.record("bad \ud800 text", agent="a", step=1)
    for t in GOOD[3:]:
        mon.record(t, agent="a", step=1)
    with pytest.raises(ValueError, match="agent holds a lone surrogate"):
        mon.record("fine text", agent="b\udc00", step=1)
    stats = mon.flush(strict=True)
    assert (stats.received, stats.stored, stats.failed, stats.pending) == (5, 5, 0, 0)
    assert [r.text for r in store.records("sur")] == GOOD
    mon.close()
    with pytest.raises(ValueError, match="run_id holds a lone surrogate"):
        lw.CollapseMonitor(store, run_id="run-\ud800")
    with pytest.raises(ValueError, match="agent holds a lone surrogate"):
        lw.CollapseMonitor(store, run_id="many").record_many(["x"], agent="\ud800")


# ---------------------------------------------------------------------- (c) embed failure
def test_embedder_failing_on_one_text_fails_only_that_record(fake):
    emb, store = fake
    mon = _one_batch_monitor(store, "emb1", 6)
    for t in GOOD[:2] + ["please RAISE here"] + GOOD[2:]:
        mon.record(t, agent="a", step=1)
    stats = mon.flush()
    _settle(mon)
    assert emb.sizes[0] == 6  # the six records really were one batch
    assert (stats.stored, stats.failed, stats.embedded, stats.pending) == (5, 1, 5, 0)
    assert store.count("emb1") == 5
    assert [it.text for it in mon.failed_items] == ["please RAISE here"]
    assert "cannot embed 'please RAISE here'" in mon.failed_items[0].error
    (h,) = mon.history()
    assert h.n_records == 5
    # retry_failed() retries only the bad record; it fails alone again, then succeeds
    assert mon.retry_failed() == 1
    stats = mon.flush()
    assert (stats.stored, stats.failed) == (5, 1) and emb.sizes[-1] == 1
    emb.raise_marker = None  # the embedder is fixed
    assert mon.retry_failed() == 1
    stats = mon.flush(strict=True)
    assert (stats.stored, stats.failed, stats.pending) == (6, 0, 0) and store.count("emb1") == 6
    mon.close()


def test_two_bad_records_in_a_large_batch_are_isolated_by_bisection(fake):
    emb, store = fake
    n = 64
    mon = _one_batch_monitor(store, "emb2", n)
    texts = [f"text {i}" + (" RAISE" if i in (7, 40) else "") for i in range(n)]
    for i, t in enumerate(texts):
        mon.record(t, agent=f"agent{i % 4}", step=1)
    stats = mon.flush()
    assert (stats.stored, stats.failed) == (62, 2) and store.count("emb2") == 62
    assert sorted(it.index for it in mon.failed_items) == [1, 10]  # texts 7 and 40, agents 3, 0
    assert len(emb.sizes) <= 2 * 2 * int(math.log2(n)) + 1  # bisection, not one call per record
    mon.close()


def test_a_down_embedder_fails_the_batch_after_a_bounded_number_of_calls(fake):
    emb, store = fake
    emb.down = True
    mon = _one_batch_monitor(store, "down", 256)
    for i in range(256):
        mon.record(f"text {i}", agent="a", step=1)
    with pytest.raises(lw.MonitorError, match="256 record.*embedding service down.*and 251 more"):
        mon.flush(strict=True)
    _settle(mon)
    assert mon.stats.failed == 256 and len(emb.sizes) <= 20  # not 511 calls
    emb.down = False
    assert mon.retry_failed() == 256
    stats = mon.flush(strict=True)
    assert (stats.stored, stats.failed) == (256, 0) and store.count("down") == 256
    mon.close()


# ---------------------------------------------------------------------- (b) non-finite rows
def test_nan_and_inf_rows_fail_alone_without_extra_embedder_calls(fake):
    emb, store = fake
    mon = _one_batch_monitor(store, "nan", 6)
    texts = [GOOD[0], "a NANROW answer", GOOD[1], GOOD[2], "an INFROW answer", GOOD[3]]
    for t in texts:
        mon.record(t, agent="a", step=1)
    with pytest.raises(lw.MonitorError, match=r"2 record\(s\).*non-finite"):
        mon.flush(strict=True)
    stats = mon.stats
    assert emb.sizes == [6]
    assert (stats.stored, stats.failed, stats.embedded) == (4, 2, 4)
    assert sorted(r.text for r in store.records("nan")) == sorted(GOOD[:4])
    assert [it.index for it in mon.failed_items] == [1, 4]
    mon.close()


# ---------------------------------------------------------------------- (c) store failure
def test_store_failing_on_one_record_fails_only_that_record():
    emb = HashEmbedder()
    store = FlakyStore(":memory:", embedder=emb)
    mon = _one_batch_monitor(store, "st", 6)
    for t in GOOD[:4] + ["BADSTORE payload"] + GOOD[4:]:
        mon.record(t, agent="a", step=1)
    stats = mon.flush()
    _settle(mon)
    assert (stats.stored, stats.failed) == (5, 1) and store.count("st") == 5
    assert [it.text for it in mon.failed_items] == ["BADSTORE payload"]
    assert "store: ConnectionError: server rejected the payload" in mon.failed_items[0].error
    store.broken = False
    assert mon.retry_failed() == 1
    stats = mon.flush(strict=True)
    assert (stats.stored, stats.failed) == (6, 0) and store.count("st") == 6
    mon.close()
    store.close()


# ---------------------------------------------------------------------- (d) index and step
@pytest.mark.parametrize("bad", [1.5, "x", -1, True, 2.0, np.float64(1.0)])
def test_bad_index_is_refused_before_it_is_counted(fake, bad):
    _, store = fake
    mon = lw.CollapseMonitor(store, run_id="idx")
    mon.record("record one", agent="a", step=1, index=1)
    with pytest.raises(ValueError, match="index must be a non-negative int"):
        mon.record("would overwrite record one", agent="a", step=1, index=bad)
    mon.record("numpy index", agent="a", step=1, index=np.int64(2))
    stats = mon.flush()
    assert (stats.received, stats.stored, stats.pending) == (2, 2, 0)
    assert [(r.index, r.text) for r in store.records("idx")] == [(1, "record one"),
                                                                  (2, "numpy index")]
    mon.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"), "x", 1.5])
def test_non_finite_or_non_integer_step_is_refused_naming_step(fake, bad):
    _, store = fake
    mon = lw.CollapseMonitor(store, run_id="stp")
    with pytest.raises(ValueError, match=r"step must be a non-negative integer or None; got"):
        mon.record("text", agent="a", step=bad)
    with pytest.raises(ValueError, match=r"step must be a non-negative integer"):
        mon.record_many(["text"], agent="a", step=bad)
    mon.record("kept", agent="a", step=2.0)  # an integral float stays accepted
    stats = mon.flush()
    assert (stats.received, stats.stored, stats.pending) == (1, 1, 0)
    assert [(r.step, r.text) for r in store.records("stp")] == [(2, "kept")]
    mon.close()


# ---------------------------------------------------------------------- (e) BaseException
@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_base_exception_from_the_embedder_fails_records_and_never_hangs(exc):
    emb = HashEmbedder(exc=exc)
    store = lw.WebStore(":memory:", embedder=emb)
    mon = _one_batch_monitor(store, "base", 6)
    for t in GOOD[:3] + ["RAISE a SystemExit"] + GOOD[3:]:
        mon.record(t, agent="a", step=1)
    stats = mon.flush()  # hung forever before: the worker thread had died
    _settle(mon)
    assert (stats.stored, stats.failed, stats.pending) == (5, 1, 0)
    assert exc.__name__ in mon.failed_items[0].error
    emb.down = True  # every call raises the BaseException now
    mon.record("while down", agent="a", step=2)
    stats = mon.flush()
    assert (stats.stored, stats.failed, stats.pending) == (5, 2, 0)
    emb.down = False
    mon.record("after", agent="a", step=2)  # the worker is still alive
    stats = mon.close()
    assert (stats.stored, stats.failed, stats.pending) == (6, 2, 0) and store.count("base") == 6
    store.close()


@pytest.mark.timeout(30)
def test_system_exit_from_on_alarm_in_the_worker_does_not_hang_flush(fake):
    _, store = fake

    def on_alarm(ev):
        raise SystemExit("user callback exits")

    mon = lw.CollapseMonitor(store, run_id="alarm", baseline_steps=1, on_alarm=on_alarm,
                             batch_size=1)
    mon.record("apples are red", agent="a", step=1)
    mon.record("the sea is deep and cold", agent="b", step=1)
    for s in (2, 3):
        for a in "ab":
            mon.record("same sentence", agent=a, step=s)
    stats = mon.flush(step_complete=False)  # step 2 is judged in the worker when step 3 arrives
    assert stats.stored == 6 and store.count("alarm") == 6 and stats.handler_errors == 1
    assert "SystemExit: user callback exits" in stats.errors[-1]
    assert [e.step for e in mon.alarms] == [2]
    mon.on_alarm = None  # the final check runs in this thread, where a SystemExit propagates
    mon.close()


# ---------------------------------------------------------------------- (f) an agent web's step
def test_one_bad_record_in_an_agent_web_step_fails_only_itself(fake):
    """As ``dynamics.run_agent`` does: each agent records L responses and a post, then
    ``flush(strict=True, step_complete=False)``. Agent b's second answer embeds to NaN."""
    _, store = fake
    mon = lw.CollapseMonitor(store, run_id="web", batch_size=64)
    answers = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1 NANROW", "b2"], "c": ["c0", "c1", "c2"]}
    raised = []
    for agent, texts in answers.items():
        for j, t in enumerate(texts):
            mon.record(t, agent=agent, step=1, kind="response", index=j)
        mon.record(texts[0], agent=agent, step=1, kind="post", index=0)
        try:
            mon.flush(strict=True, step_complete=False)
        except lw.MonitorError as exc:
            raised.append((agent, str(exc)))
    assert len(raised) == 1 and raised[0][0] == "b"
    assert "1 record(s)" in raised[0][1] and "agent 'b', step 1, response #1" in raised[0][1]
    assert store.count("web") == 11  # every good record of the step, b's post included
    assert store.count("web", kind="post") == 3
    (h,) = mon.history()
    assert (h.n_records, h.n_agents) == (8, 3) and math.isfinite(h.norm)


# ---------------------------------------------------------------------- (g) attribution warning
def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "one agent only" in r.getMessage()]


def test_a_step_with_one_agent_is_warned_once_per_run(fake, caplog):
    _, store = fake
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        mon = lw.CollapseMonitor(store, run_id="x", alarm_fraction=None)
        for s in (1, 2, 3, 4):
            for j in range(3):
                mon.record(f"answer {j} at {s}", agent="agent", step=s)
            mon.flush()
        hist = mon.history()
        mon.close()
    assert all(math.isnan(h.norm) for h in hist)
    msgs = _warnings(caplog)
    assert len(msgs) == 1
    assert msgs[0].startswith("llmweb: step 1 of run 'x' has records from one agent only "
                              "('agent'), so ||D|| is undefined (NaN)")
    assert "llmweb_agent=" in msgs[0] and "README: Attribution" in msgs[0]
    assert [e for e in mon.events if e["kind"] == "single_agent_step"] == [
        {"kind": "single_agent_step", "run_id": "x", "step": 1, "agent": "agent"}]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        other = lw.CollapseMonitor(store, run_id="y", alarm_fraction=None)  # a new run warns again
        other.record("alone", agent="agent", step=1)
        other.close()
    assert len(_warnings(caplog)) == 1


def test_a_run_with_several_agents_per_step_is_not_warned(fake, caplog):
    _, store = fake
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        mon = lw.CollapseMonitor(store, run_id="many", alarm_fraction=None)
        for s in (1, 2, 3):
            for agent in ("alpha", "beta", "gamma"):
                mon.record(f"{agent} says {s}", agent=agent, step=s)
                mon.flush(step_complete=False)  # a web flushes each agent's part of a step
            mon.flush()
        hist = mon.history()
        mon.close()
    assert [h.n_agents for h in hist] == [3, 3, 3] and all(math.isfinite(h.norm) for h in hist)
    assert _warnings(caplog) == [] and not any(e["kind"] == "single_agent_step"
                                               for e in mon.events)


def test_agents_landing_in_different_steps_are_told_to_share_a_step(fake, caplog):
    """The issue's 1/3/5 drift: two agents, but never in the same step."""
    _, store = fake
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        mon = lw.CollapseMonitor(store, run_id="drift", alarm_fraction=None, batch_size=1)
        for s, agent in [(1, "alpha"), (2, "beta"), (3, "alpha"), (4, "beta")]:
            mon.record(f"{agent} at {s}", agent=agent, step=s)
        mon.close()
    (msg,) = _warnings(caplog)
    assert "step 1 of run 'drift'" in msg and "('alpha')" in msg
    assert "other agents ('beta')" in msg and "llmweb_step=" in msg
