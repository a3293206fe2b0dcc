"""Summaries beside the records (issue 13, item 1): exact statistics from O(steps x agents)
points, idempotent under re-writes, invisible to every reader of records, checked against the
records before they are trusted."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin import _summaries as S
from llmweb_plugin.testing import FlakyEmbedder, SeededEmbedder


def _brute(store, run_id, kinds=("response",)):
    """Per-step metrics over every stored record, the old way (no summaries)."""
    return S.history_from_records(store, run_id, kinds)


def _same(a, b, tol=1e-9):
    assert [h.step for h in a] == [h.step for h in b]
    for x, y in zip(a, b):
        assert (x.n_records, x.n_agents, x.per_agent_counts, x.n_zero_vectors) == (
            y.n_records, y.n_agents, y.per_agent_counts, y.n_zero_vectors)
        for f in ("norm", "normalized_norm", "within_spread", "between_spread", "total_spread",
                  "mean_cosine_distance"):
            u, v = getattr(x, f), getattr(y, f)
            assert (np.isnan(u) and np.isnan(v)) or abs(u - v) <= tol, (x.step, f, u, v)


def _fill(mon, steps=(1, 2, 3), agents="abc", n=6, shift=0):
    for s in steps:
        for a in agents:
            for i in range(n):
                mon.record(f"{a} at {s} says {(i + shift) % 4}", agent=a, step=s, index=i)


@pytest.fixture
def store():
    s = lw.WebStore(":memory:", embedder=SeededEmbedder(16))
    yield s
    s.close()


def test_summary_metrics_equal_brute_force_over_stored_vectors(store):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon)
        live = mon.history()
    got = S.stored_history(store, "r", ["response"])
    assert got is not None and len(got) == 3
    _same(got, _brute(store, "r"))
    _same(got, live)
    brute = lw.step_metrics(2, np.stack([r.vector for r in store.records(
        "r", step=2, with_vectors=True)]), [r.agent for r in store.records("r", step=2)])
    assert abs(got[1].norm - brute.norm) <= 1e-9


def test_euclid_raw_vectors_far_from_origin_stay_exact(tmp_path):
    class Far(SeededEmbedder):
        def embed(self, texts):
            return super().embed(texts) * 50.0 + 1000.0

    with lw.WebStore(tmp_path / "s", embedder=Far(8), distance="euclid") as st:
        with lw.CollapseMonitor(st, run_id="r", alarm_fraction=None) as mon:
            _fill(mon, n=5)
            mon.record("post by a", agent="a", step=1, kind="post")
        kinds = ["response", "post"]
        _same(S.stored_history(st, "r", kinds), _brute(st, "r", kinds), tol=1e-9)


def test_rewrites_resume_and_retry_failed_never_double_count(store, tmp_path):
    folder = tmp_path / "s"
    with lw.WebStore(folder, embedder=SeededEmbedder(16)) as st:
        with lw.CollapseMonitor(st, run_id="r", alarm_fraction=None) as mon:
            _fill(mon)
            _fill(mon, shift=1)  # the same ids again, other texts: replaced, not added
        # qdrant-client's local mode re-normalises a re-written cosine vector in memory (last
        # float32 bit, see store.py); the folder keeps what was written, the summaries' input
        _same(S.stored_history(st, "r", ["response"]), _brute(st, "r"), tol=1e-6)
    with lw.WebStore(folder, embedder=SeededEmbedder(16)) as st:
        with lw.CollapseMonitor(st, run_id="r", alarm_fraction=None) as mon:  # a resume
            _fill(mon, steps=(3, 4), shift=2)
    with lw.WebStore(folder, embedder=SeededEmbedder(16)) as st:
        got = S.stored_history(st, "r", ["response"])
        assert [h.n_records for h in got] == [18, 18, 18, 18]
        assert st.count("r") == 72
        _same(got, _brute(st, "r"))
    # retry_failed: the failed record is in no summary until it is stored
    flaky = FlakyEmbedder(SeededEmbedder(16))
    with lw.CollapseMonitor(store, run_id="f", embedder=flaky, alarm_fraction=None) as mon:
        _fill(mon, steps=(1,), n=3)
        mon.record("FAIL here", agent="a", step=1, index=3)
        mon.flush()
        assert mon.stats.failed == 1
        got = S.stored_history(store, "f", ["response"])
        assert got[0].n_records == 9 and got[0].per_agent_counts["a"] == 3
        _same(got, _brute(store, "f"))
        flaky.fail_when = lambda texts: False
        assert mon.retry_failed() == 1
        mon.flush()
    got = S.stored_history(store, "f", ["response"])
    assert got[0].per_agent_counts["a"] == 4
    _same(got, _brute(store, "f"))


def test_store_writes_outside_the_monitor_and_delete_run_keep_summaries_true(store):
    store.add_seeds(["seed one", "seed two"], run_id="r")
    store.add_texts(["x", "y", "z"], run_id="r", agent="a", step=1, kind="response")
    store.add_texts(["u", "v"], run_id="r", agent="b", step=1, kind="response")
    store.add_texts(["q"], run_id="other", agent="b", step=1, kind="response")
    _same(S.stored_history(store, "r", ["response"]), _brute(store, "r"))
    store.delete_run("r")
    assert S.load_run(store, "r")[0] is None
    cat = S.catalog(store)
    assert cat["complete"] and cat["runs"] == {"other": 1}
    store.add_texts(["x2"], run_id="r", agent="a", step=1, kind="response")
    summ, why = S.load_run(store, "r")
    assert why == "" and summ.n_records == 1


def test_summaries_are_invisible_to_every_reader_of_records(store):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon, n=2)
        mon.record("a post", agent="a", step=1, kind="post")
    total = store.client.count(store.collection, exact=True).count
    assert total > store.count()  # the summary points are there ...
    kinds = {r.kind for r in store.records()} | {r.kind for r in store.records("r", step=1)}
    assert "summary" not in kinds and len(store.records("r")) == 19 == store.count("r")
    hits = store.search("a at 1 says 0", k=100) + store.search(
        np.zeros(16) + 1.0, k=100, post_agents=["a"])
    assert hits and all(h.kind != "summary" and h.text for h in hits)
    assert store.runs() == ["r"]
    assert [r.kind for r in store.web("r")] == ["post"]


def test_no_summaries_collection_falls_back_to_the_same_numbers(store, caplog):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon)
        live = mon.history()
    from qdrant_client import models
    store.client.delete(store.collection, points_selector=models.FilterSelector(
        filter=models.Filter(must=[models.FieldCondition(
            key="metadata.kind", match=models.MatchValue(value="summary"))])))
    assert S.stored_history(store, "r", ["response"]) is None
    with lw.CollapseMonitor(store, run_id="probe", alarm_fraction=None) as probe:
        with caplog.at_level(logging.INFO, logger="llmweb_plugin._summaries"):
            tr = probe.trend("norm", run_id="r")
    assert "reads every record" in caplog.text
    assert tr.n_steps == 3
    _same(S.run_history(store, "r", ["response"]), live)


def test_summaries_that_disagree_with_the_records_are_not_trusted(store, caplog):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon)
    # a record written behind the summaries' back (a crash between points, another writer)
    rec = store.records("r", step=1, with_vectors=True)[0]
    from qdrant_client import models
    store.client.upsert(store.collection, points=[models.PointStruct(
        id="00000000-0000-0000-0000-000000000001", vector=rec.vector.tolist(),
        payload={"page_content": "x", "metadata": {**rec.payload()["metadata"], "index": 99}})])
    summ, why = S.load_run(store, "r")
    assert summ is None and "count 54 records but the store holds 55" in why
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summaries"):
        hist = S.run_history(store, "r", ["response"])
    assert "reads every record" in caplog.text and hist[0].n_records == 19
    _same(hist, _brute(store, "r"))


def test_foreign_points_make_the_catalog_incomplete_but_runs_still_check(store):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon, n=2)
    from qdrant_client import models
    store.client.upsert(store.collection, points=[models.PointStruct(
        id="00000000-0000-0000-0000-000000000002", vector=[1.0] + [0.0] * 15,
        payload={"page_content": "langchain doc", "metadata": {"source": "x"}})])
    assert not S.catalog(store)["complete"]
    summ, why = S.load_run(store, "r")
    assert why == "" and summ.n_records == 18


def _report_pair(store, run_id):
    from llmweb_plugin.report import DiversityReport
    from llmweb_plugin.report.build import build_run

    new = DiversityReport.from_store(store, run_id=run_id).runs[0]
    old = build_run(store, run_id, metric_kinds=("response",), given_settings={}, n_examples=2,
                    mitigation_keys=("mitigation",), max_mds_points=2000)
    return new, old


_EXACT = ("n_agents", "n_records", "norm", "normalized_norm", "total_spread", "within_spread",
          "between_spread", "mean_cosine_distance", "web_size", "synthetic_fraction",
          "records_by_kind", "context_size", "mitigation")


def test_report_from_summaries_is_exact_where_sums_allow_and_labels_the_sample(store):
    store.add_seeds(["seed one", "seed two"], run_id="r")
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        for s in range(1, 4):
            for a in "abc":
                for i in range(30):
                    mon.record(f"{a} {s} {i % 7} word", agent=a, step=s,
                               metadata={"context_size": 3 + s,
                                         "mitigation": "dedup" if i % 5 == 0 else ""})
                mon.record(f"post {a} {s}", agent=a, step=s, kind="post")
    new, old = _report_pair(store, "r")
    assert new.settings["inferred"]["read_from"].startswith("summaries")
    for a, b in zip(new.per_step, old.per_step, strict=True):
        for k in _EXACT:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], abs=1e-9), k
            else:
                assert a[k] == b[k], k
        for ag, row in a["per_agent"].items():  # 30 per agent: the agent sample is everything
            for k, v in row.items():
                assert v == pytest.approx(b["per_agent"][ag][k], abs=1e-9), (ag, k)
        assert a["sampled"] == "64 of 90" and "sampled" not in b
    assert (new.counts, new.examples, new.usage, new.mitigations) == (
        old.counts, old.examples, old.usage, old.mitigations)
    assert any(w.startswith("sampled:") and "64 of 90" in w for w in new.warnings)
    assert new.mds["sampled"] == {"1": "64 of 90", "3": "64 of 90"}


def test_small_report_from_summaries_equals_the_full_read(store):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon, n=4)
    new, old = _report_pair(store, "r")
    for a, b in zip(new.per_step, old.per_step, strict=True):
        for k in (*_EXACT, "vendi_score", "distinct_1", "distinct_2"):
            assert a[k] == (pytest.approx(b[k], abs=1e-9) if isinstance(b[k], float) else b[k])
        assert "sampled" not in a
    assert not any("sampled" in w for w in new.warnings)
    assert new.verdict == old.verdict


def test_llmweb_runs_from_summaries_equals_the_full_read(store):
    from llmweb_plugin.cli import report as cli_report

    store.add_seeds(["seed"], run_id="s")
    for rid in ("r1", "r2"):
        with lw.CollapseMonitor(store, run_id=rid, alarm_fraction=None) as mon:
            _fill(mon, n=3)
    fast = cli_report._runs_from_summaries(store)
    assert fast is not None and [r["run_id"] for r in fast] == ["r1", "r2", "s"]
    from qdrant_client import models
    store.client.upsert(store.collection, points=[models.PointStruct(  # a foreign point
        id="00000000-0000-0000-0000-000000000003", vector=[1.0] + [0.0] * 15,
        payload={"page_content": "x", "metadata": {"run_id": "ext", "kind": "external",
                                                   "agent": "x", "step": 0}})])
    assert cli_report._runs_from_summaries(store) is None
    slow = cli_report.list_runs(store)  # the full read, as before summaries
    assert [r for r in slow if r["run_id"] != "ext"] == [
        {**r, "first_norm": pytest.approx(r["first_norm"], abs=1e-12),
         "last_norm": pytest.approx(r["last_norm"], abs=1e-12)} if r["first_norm"] else r
        for r in fast]
