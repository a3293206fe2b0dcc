"""What the stored vectors are (issue 10, trust the signal): one number for every read-out.

With a cosine collection Qdrant keeps unit vectors, so the store writes unit vectors (a zero vector
stays zero) and the monitor measures those same vectors. For an embedder that does not normalise
(norms 1..100 here), the live monitor's history, metrics rebuilt from the store in the same process
(report, ``trend(run_id=...)``, the agent web's ``metrics_from_store``) and metrics rebuilt after
reopening the folder in a new process must be the same numbers. Before, the monitor measured the
raw vectors, qdrant-client's local mode normalised them in memory and saved them raw: three
answers for one run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.report import DiversityReport
from llmweb_plugin.store import Record
from llmweb_plugin.web import EchoAgent, run_web
from llmweb_plugin.web.step import metrics_from_store

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIELDS = ("norm", "normalized_norm", "total_spread", "within_spread", "between_spread",
          "mean_cosine_distance")


class ScaledHashEmbedder:
    """A deterministic embedder that does NOT normalise: norms 1..100 (0 for texts with ZERO).

    The direction depends on the text's hash plus a per-agent offset (the agent's name is the
    text's first word), so agents differ and the collapse norm is finite and non-trivial.
    """

    name = "scaled-hash-16"
    dim = 16

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            if "ZERO" in t:
                continue
            h = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            a = int.from_bytes(hashlib.sha256(t.split()[0].encode()).digest()[:8], "little")
            v = np.random.default_rng(h).normal(size=self.dim)
            v += 2.0 * np.random.default_rng(a).normal(size=self.dim)
            out[i] = v / np.linalg.norm(v) * (1 + h % 100)
        return out


def _numbers(ms) -> list[dict[str, float]]:
    return [{"step": m.step, **{f: getattr(m, f) for f in FIELDS},
             "n_records": m.n_records, "n_zero_vectors": m.n_zero_vectors} for m in ms]


def _report_numbers(rep: DiversityReport, run_id: str) -> list[dict[str, float]]:
    return [{"step": r["step"], **{f: r[f] for f in FIELDS}, "n_records": r["n_records"]}
            for r in rep.run(run_id).per_step]


def _same(a: list[dict], b: list[dict], what: str) -> None:
    assert [x["step"] for x in a] == [x["step"] for x in b], what
    for x, y in zip(a, b):
        for k in x.keys() & y.keys():
            u, v = x[k], y[k]
            if isinstance(u, float) and math.isnan(u):
                assert v is None or math.isnan(v), (what, x["step"], k, u, v)
                continue
            assert v == pytest.approx(u, rel=1e-9, abs=1e-12), (what, x["step"], k, u, v)


def _in_new_process(script: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=False,
                         capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _record_run(mon: lw.CollapseMonitor, n_steps: int = 7) -> None:
    for step in range(1, n_steps + 1):
        for agent in ("alpha", "beta", "gamma"):
            for j in range(3):
                mon.record(f"{agent} answer {j} at step {step} with {'x ' * (step * j % 5)}",
                           agent=agent, step=step)
    mon.record("gamma says ZERO", agent="gamma", step=2)  # a zero vector: kept, counted


# ---------------------------------------------------------------- the store
@pytest.mark.parametrize("distance", ["cosine", "euclid", "dot"])
def test_stored_vectors_are_the_same_in_memory_and_after_reopening(tmp_path, distance):
    """Cosine: unit vectors (zero stays zero) in memory and on disk; euclid/dot: raw vectors."""
    folder = tmp_path / "store"
    raw = ScaledHashEmbedder().embed([f"t{i} text" for i in range(40)] + ["ZERO"])
    recs = [Record(text=f"t{i}", run_id="r", agent="a", step=1, index=i, vector=v)
            for i, v in enumerate(raw)]
    with lw.WebStore(folder, embedder=None, dim=16, distance=distance) as s:
        s.upsert(recs)
        live = np.stack([r.vector for r in s.records("r", with_vectors=True)])
    with lw.WebStore(folder, embedder=None) as s:
        reopened = np.stack([r.vector for r in s.records("r", with_vectors=True)])
    want = raw.astype(np.float64)  # records come back in index order
    norms = np.linalg.norm(want, axis=1)
    if distance == "cosine":
        want = np.where(norms[:, None] > 0, want / np.where(norms > 0, norms, 1)[:, None], 0.0)
        assert np.linalg.norm(live.astype(np.float64), axis=1) == pytest.approx(
            [1.0] * 40 + [0.0], abs=1e-6)
    np.testing.assert_allclose(live, want, rtol=1e-6, atol=1e-7)
    assert np.array_equal(live, reopened)  # bit for bit


def test_store_as_stored_is_what_add_texts_returns_and_idempotent(tmp_path):
    emb = ScaledHashEmbedder()
    with lw.WebStore(tmp_path / "s", embedder=emb) as s:
        recs = s.add_texts(["one thing", "another thing", "ZERO"], run_id="r", agent="a",
                           step=1, kind="response")
        back = {r.index: r.vector for r in s.records("r", with_vectors=True)}
        for r in recs:
            assert np.array_equal(r.vector, back[r.index])
        V = np.stack([r.vector for r in recs])
        assert np.array_equal(s.as_stored(V), V)  # writing them again changes nothing
        assert np.linalg.norm(V.astype(np.float64), axis=1) == pytest.approx([1, 1, 0], abs=1e-6)


def test_normalised_embedder_vectors_are_bit_identical_in_memory_and_on_disk(tmp_path, embedder):
    """MiniLM's unit vectors too: Qdrant used to renormalise about 1 in 6 of them in memory
    (last-bit changes) while saving them as given."""
    texts = [f"sentence number {i} about interest rates and {i % 7} things" for i in range(60)]
    with lw.WebStore(tmp_path / "s", embedder=embedder) as s:
        s.add_texts(texts, run_id="r", agent="a", step=1, kind="response")
        live = np.stack([r.vector for r in s.records("r", with_vectors=True)])
    with lw.WebStore(tmp_path / "s", embedder=embedder) as s:
        reopened = np.stack([r.vector for r in s.records("r", with_vectors=True)])
    assert np.array_equal(live, reopened)
    np.testing.assert_allclose(live, embedder.embed(texts), atol=1e-6)  # the same directions


# ---------------------------------------------------------------- monitor, report, trend
def test_monitor_report_and_trend_agree_in_process_and_after_reopening(tmp_path):
    """The norms of mon.history() are the norms every rebuild from the store gives."""
    folder = tmp_path / "store"
    emb = ScaledHashEmbedder()
    store = lw.WebStore(folder, embedder=emb)
    with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
        _record_run(mon)
        live = _numbers(mon.history())
        live_slope = mon.trend("norm").slope
        assert mon.stats.stored == 7 * 9 + 1 and mon.stats.failed == 0
    assert live[1]["n_zero_vectors"] == 1 and live[1]["n_records"] == 10
    # in the same process: the report, another monitor's trend(run_id=...), metrics_from_store
    _same(live, _report_numbers(DiversityReport.from_store(store, run_id="r"), "r"), "report")
    _same(live, _numbers([metrics_from_store(store, "r", s) for s in range(1, 8)]),
          "metrics_from_store")
    with lw.CollapseMonitor(store, run_id="probe", embedder=emb) as probe:
        assert probe.trend("norm", run_id="r").slope == pytest.approx(live_slope, rel=1e-9)
    store.close()
    # after reopening the folder in a new process
    got = _in_new_process(f"""
        import json, math
        import llmweb_plugin as lw
        from llmweb_plugin.report import DiversityReport
        from llmweb_plugin.web.step import metrics_from_store
        from test_store_vectors import ScaledHashEmbedder, _numbers, _report_numbers
        with lw.WebStore({os.fspath(folder)!r}, embedder=None) as s:
            rep = _report_numbers(DiversityReport.from_store(s, run_id="r"), "r")
            fs = _numbers([metrics_from_store(s, "r", t) for t in range(1, 8)])
            with lw.CollapseMonitor(s, run_id="probe", embedder=ScaledHashEmbedder()) as p:
                slope = p.trend("norm", run_id="r").slope
        nan = lambda v: None if isinstance(v, float) and math.isnan(v) else v
        clean = lambda rows: [{{k: nan(v) for k, v in r.items()}} for r in rows]
        print(json.dumps({{"report": clean(rep), "from_store": clean(fs), "slope": slope}}))
    """)
    _same(live, got["report"], "report after reopening")
    _same(live, got["from_store"], "metrics_from_store after reopening")
    assert got["slope"] == pytest.approx(live_slope, rel=1e-9)


def test_euclid_collection_keeps_raw_vectors_for_the_monitor_too(tmp_path):
    """Nothing is normalised for a euclid collection: the monitor measures the raw vectors."""
    emb = ScaledHashEmbedder()
    with lw.WebStore(tmp_path / "s", embedder=emb, distance="euclid") as store:
        with lw.CollapseMonitor(store, run_id="r", alarm_fraction=None) as mon:
            _record_run(mon, n_steps=2)
            live = _numbers(mon.history())
        recs = store.records("r", with_vectors=True)
        texts = [r.text for r in recs]
        raw = emb.embed(texts)
        for r, v in zip(recs, raw):
            assert np.array_equal(r.vector, v)
        brute = [lw.step_metrics(s, np.stack([v for r, v in zip(recs, raw) if r.step == s]),
                                 [r.agent for r in recs if r.step == s]) for s in (1, 2)]
        _same(live, _numbers(brute), "raw vectors")
        assert live[0]["norm"] > 10  # raw norms 1..100, not unit vectors


# ---------------------------------------------------------------- the agent web
def test_agent_web_history_equals_the_monitor_and_a_new_process(tmp_path):
    folder = tmp_path / "store"
    emb = ScaledHashEmbedder()
    agents = {f"echo-{i}": EchoAgent(f"echo-{i}", seed=i) for i in range(3)}
    store = lw.WebStore(folder, embedder=emb)
    mon = lw.CollapseMonitor(store, run_id="web", alarm_fraction=None)
    res = run_web(agents, store=store, monitor=mon, n_steps=4, responses_per_step=3, rng=1,
                  seeds=[f"seed text number {i}" for i in range(6)])
    web = _numbers(res.history)
    _same(_numbers(mon.history()), web, "web history vs monitor history")
    mon.close()
    store.close()
    got = _in_new_process(f"""
        import json
        import llmweb_plugin as lw
        from llmweb_plugin.web.step import metrics_from_store
        from test_store_vectors import _numbers
        with lw.WebStore({os.fspath(folder)!r}, embedder=None) as s:
            print(json.dumps(_numbers([metrics_from_store(s, "web", t) for t in range(1, 5)])))
    """)
    _same(web, got, "web history after reopening")
