"""The fast write path (issue 13 item 2: edge ingest >= 10x the local folder) stores exactly what
the row-by-row path stored: point ids, payloads, vectors, summaries, and the same errors."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pytest
from qdrant_client import models

import llmweb_plugin as lw
from llmweb_plugin import _summaries as S
from llmweb_plugin._record import _NAMESPACE, point_id
from llmweb_plugin.store import _FIXED_POINT_ROUNDS, _unit_rows


def test_point_id_is_the_uuid5_string_of_the_provenance():
    rng = random.Random(3)
    for _ in range(3000):
        args = (rng.choice(["r", "run é✓", "x|y", ""]) + str(rng.random()),
                rng.choice(["a", "agent-ü", ""]) * rng.randint(0, 3), rng.randint(0, 10**7),
                rng.choice(lw.store.KINDS), rng.randint(0, 2**63))
        name = f"{args[0]}|{args[1]}|{args[2]}|{args[3]}|{args[4]}"
        assert point_id(*args) == str(uuid.uuid5(_NAMESPACE, name))


def _unit_rows_reference(vectors):
    """The row-by-row normalisation as it was written first (np.linalg.norm per row)."""
    V = np.array(vectors, dtype=np.float32, copy=True).reshape(len(vectors), -1)
    for i in range(V.shape[0]):
        row = V[i]
        if np.linalg.norm(row) == 1.0 or not np.any(row):
            continue
        w = row.astype(np.float64)
        w /= np.max(np.abs(w))
        u = (w / np.linalg.norm(w)).astype(np.float32)
        for _ in range(_FIXED_POINT_ROUNDS):
            n = np.linalg.norm(u)
            if n == 1.0:
                break
            u = u / n
        V[i] = u
    return V


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_unit_rows_are_bit_identical_to_the_row_by_row_reference():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 48)).astype(np.float32)
    X *= (10.0 ** rng.uniform(-30, 30, (3000, 1))).astype(np.float32)
    X[::97] = 0
    X[5, 3], X[6, :], X[7], X[8], X[9] = np.inf, np.nan, 1e-45, 3e38, 0
    X[9, 0] = 1.0
    X[10:40] = _unit_rows_reference(X[10:40])  # already stored
    for A in (X, _unit_rows_reference(X), X[:1], X[10:40]):
        got, want = _unit_rows(A), _unit_rows_reference(A)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_bad_batch_names_its_first_bad_record_in_order_and_writes_nothing():
    store = lw.WebStore(":memory:", embedder=None, dim=4, collection="c")
    ok = np.ones(4, np.float32)

    def rec(i, kind="post", vec=ok):
        return lw.Record(text=f"t{i}", run_id="r", agent="a", step=1, kind=kind, index=i,
                         vector=vec)

    nan = np.array([1, np.nan, 0, 0], np.float32)
    with pytest.raises(ValueError, match=f"record {point_id('r', 'a', 1, 'post', 1)} has a "
                       "non-finite vector"):
        store.upsert([rec(0), rec(1, vec=nan), rec(2, kind="bogus")])
    with pytest.raises(ValueError, match="kind must be one of .* got 'bogus'"):
        store.upsert([rec(0), rec(1, kind="bogus"), rec(2, vec=nan)])
    with pytest.raises(ValueError, match="has no vector; embed it first"):
        store.upsert([rec(0), rec(1, vec=None)])
    with pytest.raises(ValueError, match="vector of size 3; this store holds 4-d"):
        store.upsert([rec(0), rec(1, vec=np.ones(3))])
    with pytest.raises(ValueError, match=r"vectors has shape \(2, 3\); expected \(2, 4\)"):
        store.upsert([rec(0), rec(1)], np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):  # given as an array: the same check
        store.upsert([rec(0), rec(1)], np.stack([ok, nan]))
    assert store.count() == 0 and S.load_run(store, "r")[0] is None
    assert store.upsert([rec(0), rec(1)], np.stack([ok, 2 * ok])) == 2
    assert store.count("r") == 2
    store.close()


def _edge_raw(store, ids):
    """The points as the engine holds them (before this client unpacks anything)."""
    pts = store.client._shard(store.collection).retrieve(list(ids), True, True)
    return {str(p.id): (p.payload, np.asarray(p.vector, np.float32)) for p in pts}


def test_edge_batches_store_what_point_by_point_writes_store(tmp_path):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (extra [edge])")
    rng = np.random.default_rng(0)
    recs = [lw.Record(text=f"text {i}", run_id="r", agent=f"a{i % 3}", step=1 + i // 7,
                      kind="response", index=i, created_at="2026-01-01T00:00:00+00:00",
                      metadata={"mitigation": "x"} if i % 2 else {})
            for i in range(40)]
    recs.append(lw.Record(text="own", run_id="r", agent="a0", step=9, index=0,
                          created_at="2026-01-01T00:00:00+00:00",
                          metadata={"llmweb_extra": [0.5] * 70, "n": 3}))  # packed: plain=False
    V = rng.standard_normal((len(recs), 8)).astype(np.float32)
    fast = lw.WebStore(tmp_path / "fast", embedder=None, dim=8, collection="c", backend="edge")
    slow = lw.WebStore(tmp_path / "slow", embedder=None, dim=8, collection="c", backend="edge")
    try:
        fast.upsert(recs, V)
        stored = fast.as_stored(V)
        slow.client.upsert("c", points=[  # what the store wrote before batches went as columns
            models.PointStruct(id=r.point_id, vector=v.tolist(), payload=r.payload())
            for r, v in zip(recs, stored)])
        ids = [r.point_id for r in recs]
        got, want = _edge_raw(fast, ids), _edge_raw(slow, ids)
        assert len(got) == len(recs) and got.keys() == want.keys()
        for pid in ids:
            assert got[pid][0] == want[pid][0]
            assert np.array_equal(got[pid][1].view(np.uint32), want[pid][1].view(np.uint32))
        assert got[recs[-1].point_id][0]["metadata"]["llmweb_extra"].startswith("llmweb-f64:")
        back = {r.id: r for r in fast.records("r", with_vectors=True)}
        assert back[recs[-1].point_id].metadata["llmweb_extra"] == [0.5] * 70
    finally:
        fast.close()
        slow.close()


def test_edge_packs_long_lists_of_lists_in_its_own_keys_and_reads_them_back(tmp_path):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (extra [edge])")
    store = lw.WebStore(tmp_path / "e", embedder=None, dim=4, collection="c", backend="edge")
    pairs = [[2**60 - 1 - i, i] for i in range(70)]
    man = [[i, "agent é", "response"] for i in range(64)]
    meta = {"llmweb_s": {"sample": pairs, "short": pairs[:63]}, "llmweb_m": man,
            "user_pairs": pairs}
    try:
        store.client.upsert("c", points=[models.PointStruct(
            id=S.CATALOG_ID, vector=[0.0] * 4, payload={"page_content": "", "metadata": meta})])
        raw = _edge_raw(store, [S.CATALOG_ID])[S.CATALOG_ID][0]["metadata"]
        assert raw["llmweb_s"]["sample"].startswith("llmweb-json:")
        assert raw["llmweb_m"].startswith("llmweb-json:")
        assert raw["llmweb_s"]["short"] == pairs[:63] and raw["user_pairs"] == pairs  # as given
        got = store.client.retrieve("c", [S.CATALOG_ID], with_payload=True)[0].payload
        assert got["metadata"] == meta
    finally:
        store.close()


def _add_index_reference(ranges, index):
    r = ranges
    for i, (a, b) in enumerate(r):
        if index == b:
            r[i][1] = b + 1
            if i + 1 < len(r) and r[i + 1][0] == b + 1:
                r[i][1] = r[i + 1][1]
                del r[i + 1]
            return
        if index == a - 1:
            r[i][0] = index
            return
        if index < a:
            r.insert(i, [index, index + 1])
            return
    r.append([index, index + 1])


def _sample_add_reference(s, h, index):
    if (len(s) < S.SAMPLE_K or h < s[-1][0]) and not any(e[0] == h for e in s):
        s.append([h, index])
        s.sort()
        del s[S.SAMPLE_K:]


def test_key_stats_fast_paths_match_the_general_bookkeeping():
    rng = random.Random(5)
    for trial in range(200):
        st, ranges, sample = S.KeyStats(), [], []
        n = rng.randint(1, 300)
        order = list(range(n)) if trial % 2 else rng.sample(range(2 * n), n)
        for index in order:
            assert st.has(index) == any(a <= index < b for a, b in ranges)
            if not st.has(index):
                st._add_index(index)
                _add_index_reference(ranges, index)
            h = rng.randint(0, 2**60) if rng.random() < 0.9 else (sample[0][0] if sample else 1)
            st.sample_add(h, index)
            _sample_add_reference(sample, h, index)
            assert st.ranges == ranges and st.sample == sample
        st.add_rows(np.ones((2, 3)), np.ones(2))
        st.apply_meta({"created_at": "t", "context_size": 3, "usage": {"x": 2},
                       "lc_run_id": "c1", "mitigation": "m"}, 1)
        copy, before = st.copy(), st.to_payload()
        assert copy.to_payload() == S.KeyStats.from_payload(before).to_payload() == before
        copy.ranges.append([10**6, 10**6 + 1])
        copy.sum[0] += 1
        copy.sample.clear()
        assert st.to_payload() == before  # a deep copy
