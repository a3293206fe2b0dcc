"""WebStore against real embedded Qdrant: ':memory:', a folder, and a server when one is given."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.store import point_id

LOCATIONS = [":memory:", "path"] + (["url"] if os.environ.get("LLMWEB_QDRANT_URL") else [])


@pytest.fixture(params=LOCATIONS)
def any_store(request, embedder, tmp_path):
    if request.param == ":memory:":
        s = lw.WebStore(":memory:", embedder=embedder)
    elif request.param == "path":
        s = lw.WebStore(tmp_path / "qdrant", embedder=embedder)
    else:
        s = lw.WebStore(url=os.environ["LLMWEB_QDRANT_URL"], embedder=embedder,
                        collection=f"llmweb_test_{os.getpid()}")
    yield s
    if request.param == "url":
        s.client.delete_collection(s.collection)
    s.close()


def _vec(i, dim=384):
    v = np.zeros(dim, dtype=np.float32)
    v[i % dim] = 1.0
    return v


def test_collection_named_after_embedder(any_store):
    assert any_store.collection == "llmweb__all-MiniLM-L6-v2"
    info = any_store.client.get_collection(any_store.collection)
    assert info.config.params.vectors.size == 384


def test_payload_layout_and_idempotent_ids(any_store):
    seeds = any_store.add_seeds(["alpha post", "beta post"], run_id="r1")
    assert [r.point_id for r in seeds] == [point_id("r1", "seed", 0, "seed", i) for i in (0, 1)]
    any_store.add_seeds(["alpha post", "beta post"], run_id="r1")  # same ids: overwrite
    assert any_store.count("r1") == 2
    pts, _ = any_store.client.scroll(any_store.collection, limit=10, with_payload=True)
    payload = pts[0].payload
    assert set(payload) == {"page_content", "metadata"}
    assert {"run_id", "agent", "step", "kind", "index", "created_at"} <= set(payload["metadata"])


def test_web_sample_search_and_records(any_store):
    any_store.add_seeds([f"seed {i}" for i in range(6)], run_id="r")
    any_store.add_texts(["a post at 1"], run_id="r", agent="a", step=1, kind="post")
    any_store.add_texts(["b post at 1"], run_id="r", agent="b", step=1, kind="post")
    any_store.add_texts(["a said x", "a said y"], run_id="r", agent="a", step=1, kind="response")
    any_store.add_texts(["other run"], run_id="r2", agent="a", step=1, kind="post")
    web = any_store.web("r")
    assert len(web) == 8 and {r.kind for r in web} == {"seed", "post"}
    assert [r.text for r in web][:6] == [f"seed {i}" for i in range(6)]  # stable order
    assert len(any_store.web("r", post_agents=["a"])) == 7
    assert len(any_store.web("r", before_step=1)) == 6
    s1 = any_store.sample(4, run_id="r", rng=123)
    s2 = any_store.sample(4, run_id="r", rng=123)
    assert [r.id for r in s1] == [r.id for r in s2] and len({r.id for r in s1}) == 4
    assert {r.id for r in any_store.sample(8, run_id="r", rng=0)} == {r.id for r in web}
    with pytest.raises(ValueError, match="cannot sample k=9"):
        any_store.sample(9, run_id="r", rng=0)
    hits = any_store.search("a post at 1", 2, run_id="r")
    assert hits[0].text == "a post at 1" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    only_b = any_store.search("a post at 1", 10, run_id="r", kind="post", post_agents=["b"])
    assert [h.text for h in only_b] == ["b post at 1"]
    resp = any_store.records("r", agent="a", step=1, kind="response", with_vectors=True)
    assert [r.text for r in resp] == ["a said x", "a said y"]
    assert resp[0].vector.shape == (384,)
    assert any_store.runs() == ["r", "r2"]
    any_store.delete_run("r2")
    assert any_store.runs() == ["r"]


def test_sample_uniformity(embedder):
    store = lw.WebStore(":memory:", embedder=None, dim=4, collection="u")
    store.upsert([lw.Record(text=f"t{i}", run_id="r", agent="seed", step=0, kind="seed", index=i,
                            vector=np.eye(4)[i % 4] + 0.1) for i in range(10)])
    rng = np.random.default_rng(0)
    counts = np.zeros(10)
    for _ in range(2000):
        for r in store.sample(3, run_id="r", rng=rng):
            counts[int(r.text[1:])] += 1
    # each item drawn with probability 3/10 per sample: 600 expected, sd ~ 20
    assert np.all(np.abs(counts - 600) < 100)


def test_bad_inputs(store):
    with pytest.raises(ValueError, match="kind must be one of"):
        store.add_texts(["x"], run_id="r", agent="a", step=1, kind="tweet")
    with pytest.raises(ValueError, match="reserved"):
        store.add_texts(["x"], run_id="r", agent="a", step=1, kind="post", metadata={"step": 3})
    with pytest.raises(ValueError, match="no vector"):
        store.upsert([lw.Record(text="x", run_id="r", agent="a", step=1)])
    with pytest.raises(ValueError, match="size 3"):
        store.upsert([lw.Record(text="x", run_id="r", agent="a", step=1, vector=np.ones(3))])
    with pytest.raises(ValueError, match="non-finite"):
        store.upsert([lw.Record(text="x", run_id="r", agent="a", step=1,
                                vector=np.full(384, np.nan))])
    assert store.count() == 0
    with pytest.raises(ValueError, match="only one of"):
        lw.WebStore(":memory:", url="http://localhost:6333")
    with pytest.raises(ValueError, match="dim="):
        lw.WebStore(":memory:", embedder=None)


def test_metadata_is_made_json_safe(store):
    store.add_texts(["x"], run_id="r", agent="a", step=1, kind="post",
                    metadata={"score": np.float32(0.5), "ids": (1, 2), "nan": float("nan"),
                              "obj": object.__new__(type("Custom", (), {}))})
    meta = store.records("r")[0].metadata
    assert meta["score"] == 0.5 and meta["ids"] == [1, 2] and meta["nan"] is None
    assert isinstance(meta["obj"], str)


def test_existing_collection_with_other_size_or_distance_fails_clearly(tmp_path, embedder):
    lw.WebStore(tmp_path, embedder=None, dim=8, collection="c").close()
    with pytest.raises(ValueError, match=r"holds 8-d vectors with Cosine.*384-d"):
        lw.WebStore(tmp_path, embedder=embedder, collection="c")
    with pytest.raises(ValueError, match="Dot"):
        lw.WebStore(tmp_path, embedder=None, dim=8, collection="c", distance="dot")
    with pytest.raises(ValueError, match="unknown distance"):
        lw.WebStore(tmp_path, embedder=None, dim=8, collection="d", distance="hamming")
    s = lw.WebStore(tmp_path, embedder=None, dim=8, collection="c")  # same config reattaches
    s.close()


def test_named_vector_collection_is_rejected(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection("li", vectors_config={
        "text-dense": models.VectorParams(size=4, distance=models.Distance.COSINE)})
    with pytest.raises(ValueError, match="named vectors"):
        lw.WebStore(client=client, embedder=None, dim=4, collection="li")


def test_second_process_on_same_path_gets_clear_error(tmp_path, embedder):
    store = lw.WebStore(tmp_path / "q", embedder=None, dim=4)
    code = textwrap.dedent(f"""
        import llmweb_plugin as lw
        try:
            lw.WebStore({str(tmp_path / 'q')!r}, embedder=None, dim=4)
        except lw.StoreLockedError as e:
            print("LOCKED:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOCKED:" in out.stdout and "Qdrant server" in out.stdout, out.stderr
    store.close()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOCKED" not in out.stdout and out.returncode == 0, out.stderr


def test_path_store_persists_across_reopen(tmp_path, embedder):
    with lw.WebStore(tmp_path, embedder=embedder) as s:
        s.add_seeds(["persisted seed"], run_id="p")
    with lw.WebStore(tmp_path, embedder=embedder) as s:
        assert [r.text for r in s.web("p")] == ["persisted seed"]


def test_closed_store_refuses_use(embedder):
    s = lw.WebStore(":memory:", embedder=embedder)
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.count()
    s.close()  # idempotent


def test_concurrent_upserts_from_threads_are_serialised(embedder):
    from concurrent.futures import ThreadPoolExecutor

    store = lw.WebStore(":memory:", embedder=None, dim=4, collection="t")

    def write(t):
        store.upsert([lw.Record(text=f"{t}-{i}", run_id="r", agent=f"a{t}", step=1, index=i,
                                vector=np.ones(4)) for i in range(50)])

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(write, range(8)))
    assert store.count("r") == 400


def test_reopening_without_the_embedder_warns_instead_of_silently_reading_nothing(
        tmp_path, embedder, caplog):
    import logging

    s = lw.WebStore(tmp_path, embedder=embedder)
    s.add_texts(["a post"], run_id="r", agent="a", step=1, kind="post")
    s.close()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.store"):
        raw = lw.WebStore(tmp_path, embedder=None, dim=384)
    assert raw.collection == "llmweb__vectors-384" and raw.count("r") == 0
    assert "llmweb__all-MiniLM-L6-v2" in caplog.text and "collection=" in caplog.text
    raw.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.store"):
        named = lw.WebStore(tmp_path, embedder=None, dim=384, collection="llmweb__all-MiniLM-L6-v2")
    assert named.count("r") == 1 and "creating a new" not in caplog.text
    named.close()
