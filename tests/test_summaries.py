"""Summaries beside the records (issue 13, item 1): exact statistics from O(steps x agents)
points, idempotent under re-writes, invisible to every reader of records, checked against the
records before they are trusted."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin import _summaries as S
from llmweb_plugin._summary_book import book
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
    assert total == store.count() == 19  # the summary points are beside, not in, the records
    # 9 (step, agent) response keys and a post key, the manifest, the catalog
    assert store.client.count(S.side_name(store.collection), exact=True).count == 10 + 1 + 1
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
    store.client.delete(S.side_name(store.collection), points_selector=models.FilterSelector(
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


# ------------------------------------------------------------------ the side collection
def test_langchain_qdrant_sees_only_the_records_of_a_monitored_folder(tmp_path):
    """The user-facing bug: summary points came back as empty documents at score 0.0."""
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import models

    from llmweb_plugin.embeddings import default_embedder

    emb = default_embedder()

    class LC(Embeddings):
        def embed_documents(self, texts):
            return emb.embed(texts).tolist()

        def embed_query(self, text):
            return emb.embed([text])[0].tolist()

    texts = ["Bitcoin fell 5% overnight", "The ECB held rates", "Tomatoes need sun",
             "Crypto markets are volatile", "Rain is expected tomorrow", "Chess openings matter"]
    with lw.WebStore(tmp_path / "s", embedder=emb) as store:
        with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
            for i, t in enumerate(texts):
                mon.record(t, agent="ab"[i % 2], step=1 + i // 4, index=i)
        assert store.client.count(store.collection, exact=True).count == 6 == store.count()
        vs = QdrantVectorStore(client=store.client, collection_name=store.collection,
                               embedding=LC())
        hits = vs.similarity_search_with_score("bitcoin", k=20)
        assert sorted(d.page_content for d, _ in hits) == sorted(texts)
        assert {d.page_content for d, _ in hits[:2]} == {"Bitcoin fell 5% overnight",
                                                         "Crypto markets are volatile"}
        assert all(d.metadata["kind"] == "response" and s > 0.0 for d, s in hits)
        flt = models.Filter(must=[models.FieldCondition(key="metadata.run_id",
                                                        match=models.MatchValue(value="r"))])
        hits = vs.similarity_search_with_score("bitcoin", k=20, filter=flt)
        assert sorted(d.page_content for d, _ in hits) == sorted(texts)
        summ, why = S.load_run(store, "r")  # the summaries are beside, and still read
        assert why == "" and summ.n_records == 6


@pytest.mark.parametrize("where", [":memory:", "folder", "edge"])
def test_the_side_collection_is_made_beside_the_main_one_on_every_backend(where, tmp_path):
    if where == "edge":
        pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (extra [edge])")
    loc = ":memory:" if where == ":memory:" else tmp_path / "s"
    kw = {"backend": "edge"} if where == "edge" else {}
    store = lw.WebStore(loc, embedder=SeededEmbedder(16), distance="euclid", **kw)
    side = S.side_name(store.collection)
    try:
        info = store.client.get_collection(side).config.params.vectors  # made at creation
        assert (info.size, info.distance) == (16, store.distance)
        with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
            _fill(mon, n=2)
        store.add_texts(["q"], run_id="other", agent="b", step=1, kind="response")
        assert store.client.count(store.collection, exact=True).count == 19 == store.count()
        assert store.client.count(side, exact=True).count == 9 + 1 + 1 + 1 + 1  # keys, mans, cat
        _same(S.stored_history(store, "r", ["response"]), _brute(store, "r"))
        store.delete_run("r")
        assert store.client.count(side, exact=True).count == 1 + 1 + 1
        assert S.catalog(store) == {"runs": {"other": 1}, "complete": True}
        if where != ":memory:":  # reopened for reading: the side is not taken for records
            store.close()
            store = lw.WebStore(loc, embedder=None, **kw)
            assert store.collection == "llmweb__fake-seeded-32"
            assert S.load_run(store, "other")[0].n_records == 1
    finally:
        store.close()


class _FailingSide:
    """Makes the next ``n`` summary writes into the side collection raise (a server gone after
    the records landed); the *unsure* marks written before the records still land."""

    def __init__(self, store, monkeypatch, n=1):
        self.n, self.side, real = n, S.side_name(store.collection), store.client.upsert

        def upsert(collection_name, points, **kw):
            summary_write = any(str(p.id) == S.CATALOG_ID for p in points)
            if collection_name == self.side and summary_write and self.n > 0:
                self.n -= 1
                raise ConnectionError("side write refused (test)")
            return real(collection_name, points=points, **kw)

        monkeypatch.setattr(store.client, "upsert", upsert)


def test_a_failed_summary_write_after_the_records_falls_back_then_heals(store, monkeypatch,
                                                                         caplog):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon, steps=(1,))
        mon.flush()
        _FailingSide(store, monkeypatch)
        with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summaries"):
            _fill(mon, steps=(2,))
            mon.flush()
        assert "are written with the next batch" in caplog.text
        assert mon.stats.failed == 0 and store.count("r") == 36  # the records are stored
        assert book(store).failed_writes == 1
        summ, why = S.load_run(store, "r")
        assert summ is None and "count 18 records but the store holds 36" in why
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summaries"):
            hist = S.run_history(store, "r", ["response"])
        assert "reads every record" in caplog.text
        assert [h.n_records for h in hist] == [18, 18]
        _same(hist, _brute(store, "r"))
        _fill(mon, steps=(3,))  # the next batch writes the late summaries too
    summ, why = S.load_run(store, "r")
    assert why == "" and summ.n_records == 54
    _same(S.stored_history(store, "r", ["response"]), _brute(store, "r"))


def test_a_rewrite_whose_summaries_never_landed_leaves_the_run_untrusted(tmp_path, monkeypatch,
                                                                          caplog):
    """A count cannot see a stale re-written record: the manifest is marked first."""
    folder = tmp_path / "s"
    with (lw.WebStore(folder, embedder=SeededEmbedder(16)) as st,
          lw.CollapseMonitor(st, run_id="r", alarm_fraction=None) as mon):
        _fill(mon)
        mon.flush()
        _FailingSide(st, monkeypatch)
        _fill(mon, shift=1)  # the same ids, other texts: counts unchanged
        mon.flush()
        summ, why = S.load_run(st, "r")
        assert summ is None and "may miss a re-write" in why
        _same(S.run_history(st, "r", ["response"]), _brute(st, "r"), tol=1e-6)
        _fill(mon, shift=2)  # in the same process the next write clears it
        mon.flush()
        assert S.load_run(st, "r")[1] == ""
        _same(S.stored_history(st, "r", ["response"]), _brute(st, "r"), tol=1e-6)
        _FailingSide(st, monkeypatch)
        _fill(mon, shift=3)
    # closed before the late summaries were written: as if the process had stopped
    with lw.WebStore(folder, embedder=SeededEmbedder(16)) as st:
        with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summaries"):
            hist = S.run_history(st, "r", ["response"])
        assert "may miss a re-write" in caplog.text
        _same(hist, _brute(st, "r"))
        with lw.CollapseMonitor(st, run_id="r", alarm_fraction=None) as mon:
            _fill(mon, steps=(4,))  # a later writer cannot vouch for it either
        summ, why = S.load_run(st, "r")
        assert summ is None and "may miss a re-write" in why
        assert [h.n_records for h in S.run_history(st, "r", ["response"])] == [18] * 4
        target = lw.WebStore(":memory:", embedder=SeededEmbedder(16))
        st.copy_to(target)  # the remedy the message names: summaries rebuilt from the records
        assert S.load_run(target, "r")[1] == "" and target.count() == 72
        _same(S.stored_history(target, "r", ["response"]), _brute(st, "r"))
        target.close()


def test_a_record_write_failing_during_a_rewrite_leaves_the_run_untrusted(store, monkeypatch):
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon, steps=(1,))
    real = store.client.upsert

    def upsert(collection_name, points, **kw):  # the second half of the records never lands
        if collection_name == store.collection:
            real(collection_name, points=points[: len(points) // 2], **kw)
            raise ConnectionError("records cut short (test)")
        return real(collection_name, points=points, **kw)

    monkeypatch.setattr(store.client, "upsert", upsert)
    recs = store.records("r", with_vectors=True)
    with pytest.raises(ConnectionError):
        store.upsert([lw.Record(text=r.text + "!", run_id="r", agent=r.agent, step=r.step,
                                index=r.index, vector=-r.vector) for r in recs])
    monkeypatch.undo()
    store.add_texts(["more"], run_id="r", agent="a", step=2, kind="response")
    summ, why = S.load_run(store, "r")
    assert summ is None and "may miss a re-write" in why
    _same(S.run_history(store, "r", ["response"]), _brute(store, "r"))


def test_a_collection_with_summaries_inside_it_is_read_by_its_records(store, caplog):
    """What an older llmweb wrote: the summary points in the main collection, no side."""
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _fill(mon)
        live = mon.history()
    side = S.side_name(store.collection)
    pts, _ = store.client.scroll(side, limit=1000, with_payload=True, with_vectors=True)
    from qdrant_client import models
    store.client.upsert(store.collection, points=[models.PointStruct(
        id=p.id, vector=p.vector, payload=p.payload) for p in pts])
    store.client.delete_collection(side)
    store.__dict__.pop("_summary_book")
    store.__dict__.pop("_side_ok")
    assert store.count() == 54 and len(store.records()) == 54  # never a summary point
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summaries"):
        assert S.load_run(store, "r")[0] is None
        _same(S.run_history(store, "r", ["response"]), live)
        from llmweb_plugin.cli import report as cli_report
        assert cli_report._runs_from_summaries(store) is None
    assert caplog.text.count("`llmweb store copy`") == 1  # one warning, naming the remedy
    assert [r["records"] for r in cli_report.list_runs(store)] == [54]
    target = lw.WebStore(":memory:", embedder=SeededEmbedder(16))
    assert store.copy_to(target).copied == 54  # records only, summaries rebuilt there
    assert target.client.count(target.collection, exact=True).count == 54
    assert S.load_run(target, "r")[1] == ""
    _same(S.stored_history(target, "r", ["response"]), live)
    target.close()


def test_closing_with_unwritten_summaries_warns_with_their_count(monkeypatch, caplog):
    """Side points a failed summary write left are lost at close: said loudly, with the count."""
    clean = lw.WebStore(":memory:", embedder=SeededEmbedder(16))
    clean.add_texts(["a", "b"], run_id="r", agent="a", step=1, kind="response")
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summary_book"):
        clean.close()
    assert "closing the store" not in caplog.text  # nothing left: nothing said
    st = lw.WebStore(":memory:", embedder=SeededEmbedder(16))
    st.add_texts(["a", "b"], run_id="r", agent="a", step=1, kind="response")
    _FailingSide(st, monkeypatch)
    st.add_texts(["c", "d", "e"], run_id="r", agent="a", step=2, kind="response")
    assert st.count("r") == 5 and len(book(st)._pending) == 3  # summary, manifest, catalog
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin._summary_book"):
        st.close()
        st.close()  # a second close says nothing more
    assert caplog.text.count("closing the store with 3 summary point(s) of run(s) 'r'") == 1
    assert "`llmweb store copy`" in caplog.text


def test_write_stats_count_the_failed_summary_writes(store, monkeypatch):
    store.add_texts(["a"], run_id="r", agent="a", step=1, kind="response")
    assert store.write_stats.summary_failures == 0
    _FailingSide(store, monkeypatch, n=2)
    store.add_texts(["b"], run_id="r", agent="a", step=2, kind="response")
    store.add_texts(["c"], run_id="r", agent="a", step=3, kind="response")
    assert store.count("r") == 3 and store.write_stats.summary_failures == 2
    assert store.write_stats.failed == 0  # local mode: the writer itself counts nothing
    store.add_texts(["d"], run_id="r", agent="a", step=4, kind="response")  # heals
    assert store.write_stats.summary_failures == 2 and S.load_run(store, "r")[1] == ""


def test_a_manifest_is_written_only_when_it_changes_or_a_mark_must_clear(store, monkeypatch):
    """Records added under known keys leave the run's manifest as it is on the side."""
    side, real, written = S.side_name(store.collection), store.client.upsert, []

    def upsert(collection_name, points, **kw):
        if collection_name == side:
            written.append(sorted(str(p.id) for p in points
                                  if str(p.id) == S.manifest_id("r")))
        return real(collection_name, points=points, **kw)

    monkeypatch.setattr(store.client, "upsert", upsert)
    store.add_texts(["a", "b"], run_id="r", agent="a", step=1, kind="response")
    store.add_texts(["c", "d"], run_id="r", agent="a", step=1, kind="response", start_index=2)
    store.add_texts(["e"], run_id="r", agent="b", step=1, kind="response")
    assert [len(w) for w in written] == [1, 0, 1]  # a new key grows it; known keys do not
    written.clear()
    store.add_texts(["A", "B"], run_id="r", agent="a", step=1, kind="response")  # a re-write
    assert [len(w) for w in written] == [1, 1]  # the mark, then the manifest that clears it
    summ, why = S.load_run(store, "r")
    assert why == "" and summ.n_records == 5
    assert sorted(summ.keys) == [(1, "a", "response"), (1, "b", "response")]
    _same(S.stored_history(store, "r", ["response"]), _brute(store, "r"))


def test_a_pending_manifest_never_clears_the_mark_of_a_failed_rewrite(store, monkeypatch):
    store.add_texts(["a", "b"], run_id="r", agent="a", step=1, kind="response")
    _FailingSide(store, monkeypatch)
    store.add_texts(["c"], run_id="r", agent="b", step=1, kind="response")  # manifest pending
    monkeypatch.undo()
    real = store.client.upsert

    def upsert(collection_name, points, **kw):
        if collection_name == store.collection:
            raise ConnectionError("records refused (test)")
        return real(collection_name, points=points, **kw)

    monkeypatch.setattr(store.client, "upsert", upsert)
    with pytest.raises(ConnectionError):  # a re-write of r's records that may have half landed
        store.add_texts(["A", "B"], run_id="r", agent="a", step=1, kind="response")
    monkeypatch.undo()
    store.add_texts(["d"], run_id="r", agent="a", step=1, kind="response", start_index=2)
    summ, why = S.load_run(store, "r")
    assert summ is None and "may miss a re-write" in why
    assert [h.n_records for h in S.run_history(store, "r", ["response"])] == [4]
