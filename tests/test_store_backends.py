"""The two folder backends held to the same answers (issue 13, item 2), and copies between stores.

``WebStore(folder, backend="local")`` (qdrant-client's local mode) and ``backend="edge"`` (Qdrant's
engine in-process, qdrant-edge-py) must give the same records, filters, counts, retrieval,
vectors (1e-6) and monitor history (1e-9), in the process that wrote and after reopening.
``copy_to`` / ``llmweb store copy`` move a run between them keeping ids, vectors and payloads.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.report import DiversityReport
from llmweb_plugin.store import Record, point_id
from llmweb_plugin.testing import SeededEmbedder

pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (extra [edge])")

BACKENDS = ["local", "edge"]
FIELDS = ("norm", "normalized_norm", "total_spread", "within_spread", "between_spread",
          "mean_cosine_distance")


class ScaledEmbedder:
    """Deterministic vectors that are NOT unit length (norms 1..50), 24-d."""

    name = "scaled-24"
    dim = 24

    def embed(self, texts):
        inner = SeededEmbedder(self.dim).embed(texts)
        scale = np.array([1 + sum(map(ord, t)) % 50 for t in texts], dtype=np.float32)
        return inner * scale[:, None]


def _fill(store: lw.WebStore) -> None:
    store.add_seeds([f"seed number {i}" for i in range(6)], run_id="r")
    for step in (1, 2):
        for agent in ("a", "b", "c"):
            store.add_texts([f"{agent} post {step}"], run_id="r", agent=agent, step=step,
                            kind="post", metadata={"topic": f"t{step}", "score": 0.5 * step})
            store.add_texts([f"{agent} says {j} at {step}" for j in range(3)], run_id="r",
                            agent=agent, step=step, kind="response")
    store.add_texts(["other run post"], run_id="r2", agent="a", step=1, kind="post")


def _view(store: lw.WebStore) -> dict:
    """Everything the web reads from a store, as plain values."""
    def rows(recs):
        return [(r.id, r.text, r.agent, r.step, r.kind, r.index, dict(r.metadata)) for r in recs]

    q = store.embedder.embed(["a post 1"])[0] if store.embedder else np.ones(store.dim)
    return {
        "all": rows(store.records("r")),
        "by_agent": rows(store.records("r", agent="b")),
        "by_agents": rows(store.records("r", agent=["a", "c"], kind="post")),
        "by_step": rows(store.records("r", step=2)),
        "by_kind": rows(store.records("r", kind="response")),
        "before": rows(store.records("r", before_step=2)),
        "web": rows(store.web("r")),
        "web_b": rows(store.web("r", post_agents=["b"], before_step=2)),
        "sample": [r.id for r in store.sample(5, run_id="r", rng=7)],
        "search": [(h.id, round(h.score, 5)) for h in store.search(q, 4, run_id="r")],
        "search_b": [h.id for h in store.search(q, 10, run_id="r", kind="post",
                                                post_agents=["b"])],
        "count": (store.count(), store.count("r"), store.count("r", kind="post"),
                  store.count("r", kind=["seed", "post"]), store.count("nope")),
        "runs": store.runs(),
    }


@pytest.fixture()
def embedder24():
    return SeededEmbedder(24)


def test_both_backends_give_the_same_answers_in_process_and_after_reopening(tmp_path, embedder24):
    views, vectors = {}, {}
    for be in BACKENDS:
        folder = tmp_path / be
        with lw.WebStore(folder, embedder=embedder24, backend=be) as s:
            assert s.backend == be
            _fill(s)
            # read before searching: qdrant-client's local mode changes the last bit of some
            # vectors it holds in memory when it searches (not on disk)
            vectors[be] = {r.id: r.vector for r in s.records(with_vectors=True)}
            views[be] = _view(s)
        with lw.WebStore(folder, embedder=embedder24) as s:  # reopened: backend detected
            assert s.backend == be
            again = {r.id: r.vector for r in s.records(with_vectors=True)}
            assert _view(s) == views[be]
            assert all(np.array_equal(again[k], v) for k, v in vectors[be].items())
    assert views["local"] == views["edge"]
    v = views["edge"]
    assert len(v["all"]) == 6 + 2 * 3 * 4 and v["count"] == (31, 30, 6, 12, 0)
    assert [x[2] for x in v["by_agent"]] == ["b"] * 8
    assert {x[3] for x in v["by_step"]} == {2} and len(v["before"]) == 6 + 3 * 4
    assert len(v["web_b"]) == 6 + 1 and v["runs"] == ["r", "r2"]
    assert v["search"][0][1] == pytest.approx(1.0, abs=1e-5)  # the text itself, cosine 1
    assert v["search_b"] == [point_id("r", "b", s, "post", 0) for s in (1, 2)] or \
        sorted(v["search_b"]) == sorted(point_id("r", "b", s, "post", 0) for s in (1, 2))
    assert vectors["local"].keys() == vectors["edge"].keys()
    for k, vec in vectors["local"].items():
        np.testing.assert_allclose(vectors["edge"][k], vec, atol=1e-6)
    for be in BACKENDS:  # deleting a run, on both
        with lw.WebStore(tmp_path / be, embedder=embedder24) as s:
            s.delete_run("r2")
            assert s.runs() == ["r"] and s.count() == 30


def test_payload_layout_and_ids_are_the_same_bytes_on_both(tmp_path, embedder24):
    raw = {}
    for be in BACKENDS:
        with lw.WebStore(tmp_path / be, embedder=embedder24, backend=be) as s:
            s.upsert([Record(text="x", run_id="r", agent="a", step=3, kind="post", index=2,
                             metadata={"k": [1, 2]}, created_at="2026-01-01T00:00:00+00:00",
                             vector=np.arange(24, dtype=np.float32) - 3.0)])
            pid = point_id("r", "a", 3, "post", 2)
            pts, _ = s.client.scroll(s.collection, limit=100, with_payload=True,
                                     with_vectors=True)
            raw[be] = [(str(p.id), p.payload, list(p.vector)) for p in pts if str(p.id) == pid]
    assert raw["local"] == raw["edge"] and len(raw["edge"]) == 1


def test_monitor_history_and_report_agree_across_backends_to_1e9(tmp_path):
    emb = ScaledEmbedder()
    hist = {}
    for be in BACKENDS:
        store = lw.WebStore(tmp_path / be, embedder=emb, backend=be)
        with lw.CollapseMonitor(store, run_id="m", alarm_fraction=None, batch_size=7) as mon:
            for step in range(1, 6):
                for agent in ("x", "y", "z"):
                    for j in range(4):
                        mon.record(f"{agent} {j} {'w ' * (step * j % 5)}", agent=agent, step=step)
            hist[be] = [{"step": m.step, "n": m.n_records, **{f: getattr(m, f) for f in FIELDS}}
                        for m in mon.history()]
            assert mon.stats.stored == 60 and mon.stats.failed == 0
        store.close()
        with lw.WebStore(tmp_path / be, embedder=None) as again:  # reopened, backend detected
            rep = DiversityReport.from_store(again, run_id="m").run("m").per_step
            hist[be + "-report"] = [{"step": r["step"], "n": r["n_records"],
                                     **{f: r[f] for f in FIELDS}} for r in rep]
    base = hist["local"]
    assert len(base) == 5 and all(h["n"] == 12 for h in base)
    for other in ("edge", "local-report", "edge-report"):
        assert [h["step"] for h in hist[other]] == [h["step"] for h in base]
        for a, b in zip(base, hist[other]):
            for f in FIELDS:
                if isinstance(a[f], float) and math.isnan(a[f]):
                    assert b[f] is None or math.isnan(b[f])
                else:
                    assert b[f] == pytest.approx(a[f], rel=1e-9, abs=1e-12), (other, a, f)


# ---------------------------------------------------------------- choosing and refusing
def test_a_folder_opened_with_the_other_backend_is_refused_naming_the_remedy(tmp_path):
    lw.WebStore(tmp_path / "e", embedder=None, dim=4, backend="edge").close()
    lw.WebStore(tmp_path / "l", embedder=None, dim=4, backend="local").close()
    with pytest.raises(ValueError, match=r"holds a 'edge' store.*backend='edge'.*llmweb store copy"):
        lw.WebStore(tmp_path / "e", embedder=None, backend="local")
    with pytest.raises(ValueError, match=r"holds a 'local' store.*backend='local'"):
        lw.WebStore(tmp_path / "l", embedder=None, dim=4, backend="edge")
    with pytest.raises(ValueError, match="backend must be one of"):
        lw.WebStore(tmp_path / "x", embedder=None, dim=4, backend="rust")
    with pytest.raises(ValueError, match="keeps its data in a folder"):
        lw.WebStore(":memory:", embedder=None, dim=4, backend="edge")
    with pytest.raises(ValueError, match="keeps its data in a folder"):
        lw.WebStore(url="http://127.0.0.1:9", embedder=None, dim=4, backend="edge")
    assert not (tmp_path / "x").exists()  # refused before anything was created
    (tmp_path / "e" / "meta.json").write_text('{"collections": {}}')
    with pytest.raises(ValueError, match="holds both an edge store"):
        lw.WebStore(tmp_path / "e", embedder=None)


def test_an_open_edge_folder_is_locked_and_the_lock_is_released_on_close(tmp_path):
    s = lw.WebStore(tmp_path / "e", embedder=None, dim=4, backend="edge")
    with pytest.raises(lw.StoreLockedError, match="already open"):
        lw.WebStore(tmp_path / "e", embedder=None)
    s.close()
    with lw.WebStore(tmp_path / "e", embedder=None) as again:
        assert again.backend == "edge" and again.dim == 4


def test_existing_edge_collection_with_other_size_is_refused(tmp_path):
    lw.WebStore(tmp_path / "e", embedder=None, dim=8, collection="c", backend="edge").close()
    with pytest.raises(ValueError, match=r"holds 8-d vectors with Cosine.*16-d"):
        lw.WebStore(tmp_path / "e", embedder=None, dim=16, collection="c")
    with pytest.raises(ValueError, match="cannot name an edge shard"):
        lw.WebStore(tmp_path / "e", embedder=None, dim=8, collection="../up")


def test_a_filter_the_edge_backend_cannot_translate_raises_instead_of_matching_all(tmp_path):
    from qdrant_client import models

    with lw.WebStore(tmp_path / "e", embedder=None, dim=4, backend="edge") as s:
        s.upsert([Record(text="t", run_id="r", agent="a", step=1, vector=np.ones(4))])
        geo = models.Filter(must=[models.FieldCondition(
            key="metadata.where", geo_radius=models.GeoRadius(
                center=models.GeoPoint(lon=0, lat=0), radius=1.0))])
        with pytest.raises(TypeError, match="does not translate"):
            s.client.count(s.collection, count_filter=geo)
        assert s.count() == 1


# ---------------------------------------------------------------- copying
def test_copy_an_edge_run_to_a_local_folder_and_read_it_with_langchain_qdrant(tmp_path, embedder24):
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    class LCEmbeddings(Embeddings):
        def embed_documents(self, texts):
            return embedder24.embed(texts).tolist()

        def embed_query(self, text):
            return embedder24.embed([text])[0].tolist()

    with lw.WebStore(tmp_path / "edge", embedder=embedder24, backend="edge") as edge:
        _fill(edge)
        want = {r.id: r for r in edge.records("r", with_vectors=True)}
        seen: list[int] = []
        with lw.WebStore(tmp_path / "local", embedder=embedder24) as local:
            res = edge.copy_to(local, run_id="r", batch=7, progress=seen.append)
            assert (res.copied, res.target_count, res.run_id) == (30, 30, "r")
            assert seen == [7, 14, 21, 28, 30]
            again = edge.copy_to(local, run_id="r")  # idempotent: same ids, no duplicates
            assert again.copied == 30 and local.count() == 30 and local.runs() == ["r"]
            got = {r.id: r for r in local.records("r", with_vectors=True)}
    assert got.keys() == want.keys()
    for k, r in want.items():
        assert (got[k].text, got[k].metadata, got[k].created_at) == (r.text, r.metadata,
                                                                      r.created_at)
        assert np.array_equal(got[k].vector, r.vector)
    client = QdrantClient(path=str(tmp_path / "local"))
    try:
        vs = QdrantVectorStore(client=client, collection_name="llmweb__fake-seeded-32",
                               embedding=LCEmbeddings())
        docs = vs.similarity_search("b post 2", k=2)
        assert docs[0].page_content == "b post 2"
        assert docs[0].metadata["agent"] == "b" and docs[0].metadata["step"] == 2
        assert docs[0].metadata["topic"] == "t2" and docs[0].metadata["run_id"] == "r"
    finally:
        client.close()


def test_copy_a_whole_local_collection_into_a_new_edge_folder(tmp_path, embedder24):
    with lw.WebStore(tmp_path / "local", embedder=embedder24) as local:
        _fill(local)
        with lw.WebStore(tmp_path / "edge", embedder=embedder24, backend="edge") as edge:
            assert local.copy_to(edge).copied == 31
            assert _view(edge) == _view(local)


def test_copy_refuses_bad_targets_and_runs_before_writing(tmp_path, embedder24):
    with lw.WebStore(tmp_path / "a", embedder=embedder24, backend="edge") as a:
        _fill(a)
        with lw.WebStore(tmp_path / "b", embedder=None, dim=8) as b:
            with pytest.raises(ValueError, match=r"24-d.*8-d.*dim=24"):
                a.copy_to(b)
            assert b.count() == 0
        with lw.WebStore(tmp_path / "c", embedder=embedder24) as c:
            with pytest.raises(ValueError, match=r"run 'nope' is not in.*'r', 'r2'"):
                a.copy_to(c, run_id="nope")
            with pytest.raises(ValueError, match="batch must be a positive"):
                a.copy_to(c, batch=0)
            with pytest.raises(TypeError, match="needs a WebStore"):
                a.copy_to(object())  # type: ignore[arg-type]
            assert c.count() == 0
        with pytest.raises(ValueError, match="the target is the source"):
            a.copy_to(a)


def test_cli_store_copy_moves_a_run_and_refuses_bad_arguments_first(tmp_path, embedder24, capsys):
    from llmweb_plugin.cli import main

    with lw.WebStore(tmp_path / "src", embedder=embedder24, backend="edge") as s:
        _fill(s)
    dst = tmp_path / "dst"
    assert main(["store", "copy", str(tmp_path / "src"), str(dst), "--batch", "0"]) == 2
    assert "--batch must be >= 1" in capsys.readouterr().err and not dst.exists()
    assert main(["store", "copy", str(tmp_path / "nowhere"), str(dst)]) == 2
    assert "is not a store" in capsys.readouterr().err and not dst.exists()
    assert main(["store", "copy", str(tmp_path / "src"), str(dst), "--run", "zz"]) == 2
    assert "--run 'zz' is not in" in capsys.readouterr().err and not dst.exists()
    assert main(["store", "copy", str(tmp_path / "src"), str(tmp_path / "src")]) == 2
    assert "same folder" in capsys.readouterr().err
    assert main(["store", "copy", str(tmp_path / "src"), str(dst), "--run", "r"]) == 0
    assert "copied 30 points (run r)" in capsys.readouterr().out
    assert json.loads((dst / "meta.json").read_text())["collections"]  # a local folder
    assert main(["store", "copy", str(tmp_path / "src"), str(dst), "--to-backend", "edge"]) == 2
    assert "--to-backend edge" in capsys.readouterr().err
    assert main(["store", "copy", str(tmp_path / "src"), str(dst)]) == 0  # the rest, idempotent
    with lw.WebStore(dst, embedder=None) as d:
        assert d.backend == "local" and d.count() == 31 and d.runs() == ["r", "r2"]
    assert main(["store", "copy", str(dst), str(tmp_path / "e2"), "--to-backend", "edge",
                 "--run", "r2"]) == 0
    with lw.WebStore(tmp_path / "e2", embedder=None) as e2:
        assert e2.backend == "edge" and e2.count() == 1


def test_llmweb_float_lists_are_packed_in_the_engine_and_read_back_exactly(tmp_path):
    """The edge engine converts payload numbers one by one (summaries' vector sums cost ms):
    long float lists under metadata.llmweb_* are stored packed and read back bit for bit; user
    metadata is stored as given (so filters reach it)."""
    sums = (np.random.default_rng(0).normal(size=100) * 1e3).tolist()
    meta = {"llmweb_stats": {"sum": sums, "n": 3, "short": [0.5, 1.5]}, "user": sums}
    got = {}
    for be in BACKENDS:
        with lw.WebStore(tmp_path / be, embedder=None, dim=4, backend=be) as s:
            s.upsert([Record(text="x", run_id="r", agent="a", step=1, metadata=meta,
                             vector=np.ones(4))])
            got[be] = s.records("r")[0].metadata
            if be == "edge":
                raw = s.client._shards[s.collection].retrieve(
                    [point_id("r", "a", 1, "response", 0)], True, False)
                stored = raw[0].payload["metadata"]
                assert stored["llmweb_stats"]["sum"].startswith("llmweb-f64:")
                assert stored["llmweb_stats"]["short"] == [0.5, 1.5]
                # the engine's own float parsing may move a payload float by one ulp
                np.testing.assert_allclose(stored["user"], sums, rtol=1e-15)
    assert got["local"] == meta
    assert got["edge"]["llmweb_stats"] == meta["llmweb_stats"]  # packed: bit for bit
    np.testing.assert_allclose(got["edge"]["user"], sums, rtol=1e-15)


def test_llmweb_runs_and_report_read_an_edge_folder(tmp_path, capsys):
    from llmweb_plugin.cli import main

    emb = ScaledEmbedder()
    with lw.WebStore(tmp_path / "e", embedder=emb, backend="edge") as s:
        with lw.CollapseMonitor(s, run_id="cli-run", alarm_fraction=None) as mon:
            for step in (1, 2, 3):
                for agent in ("x", "y"):
                    mon.record(f"{agent} at {step}", agent=agent, step=step)
    assert main(["runs", "--path", str(tmp_path / "e")]) == 0
    assert "cli-run" in capsys.readouterr().out
    out = tmp_path / "rep.json"
    assert main(["report", "--path", str(tmp_path / "e"), "--run", "cli-run", "--format", "json",
                 "--out", str(out)]) == 0
    assert out.is_file() and "cli-run" in out.read_text()
