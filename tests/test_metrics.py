"""Every metric against a brute-force computation, including edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import llmweb_plugin as lw
from llmweb_plugin.metrics import StepAccumulator
from llmweb_plugin.testing import brute_force_collapse_norm


@pytest.mark.parametrize("m,d", [(2, 3), (3, 384), (17, 5), (50, 1)])
def test_collapse_norm_matches_brute_force(m, d):
    X = np.random.default_rng(m * 100 + d).normal(size=(m, d))
    expected = brute_force_collapse_norm(X)
    assert lw.collapse_norm(X) == pytest.approx(expected, rel=1e-12)
    assert lw.collapse_norm(X) == pytest.approx(np.linalg.norm(squareform(pdist(X))), rel=1e-12)


def test_collapse_norm_m2_is_sqrt2_times_distance():
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert lw.collapse_norm(X) == pytest.approx(math.sqrt(2) * 5.0)


def test_collapse_norm_edge_cases():
    assert lw.collapse_norm(np.ones((1, 4))) == 0.0          # one agent
    assert lw.collapse_norm(np.ones((6, 4)) * 3.3) == pytest.approx(0.0, abs=1e-12)  # identical
    assert lw.collapse_norm(np.zeros((0, 4))) == 0.0
    with pytest.raises(ValueError, match="shape"):
        lw.collapse_norm(np.ones(4))


def test_collapse_norm_chunked_path_and_float32():
    X = np.random.default_rng(1).normal(size=(20_000, 8)).astype(np.float32)
    ref = math.sqrt(2 * X.shape[0] * float(((X.astype(np.float64) - X.mean(0, dtype=np.float64)) ** 2).sum()))
    # float32 input: per-row float32 sums, accumulated in float64
    assert lw.collapse_norm(X) == pytest.approx(ref, rel=1e-7)
    X64 = X.astype(np.float64)
    assert lw.collapse_norm(X64) == pytest.approx(ref, rel=1e-12)


def _rowwise_brute_force(A: np.ndarray) -> float:
    """``brute_force_collapse_norm`` with its inner loop as one array operation per row: the
    same explicit differences in float64, for matrices where 600 000 Python steps take 15 s."""
    return float(np.sqrt(sum(float(np.sum((A[i] - A) ** 2)) for i in range(A.shape[0]))))


def test_rowwise_brute_force_is_the_brute_force():
    X = np.random.default_rng(9).normal(size=(40, 7)) + 3.0
    assert _rowwise_brute_force(X) == pytest.approx(brute_force_collapse_norm(X), rel=1e-13)


def test_collapse_norm_float32_near_collapse_and_offsets():
    rng = np.random.default_rng(5)
    for offset, noise in ((0.0, 1.0), (50.0, 1e-3), (1.0, 1e-6)):
        X = (offset + noise * rng.normal(size=(777, 384))).astype(np.float32)
        ref = _rowwise_brute_force(X.astype(np.float64))
        assert lw.collapse_norm(X) == pytest.approx(ref, rel=1e-7), (offset, noise)
    same = np.repeat(rng.normal(size=(1, 384)).astype(np.float32), 100, axis=0)
    assert lw.collapse_norm(same) == 0.0


def test_collapse_norm_near_collapse_keeps_precision():
    # all points equal to a large offset plus tiny noise: a naive sum-of-squares form cancels
    rng = np.random.default_rng(2)
    X = 1000.0 + 1e-6 * rng.normal(size=(30, 4))
    assert lw.collapse_norm(X) == pytest.approx(brute_force_collapse_norm(X), rel=1e-6)


def test_collapse_norm_batched():
    X = np.random.default_rng(3).normal(size=(4, 5, 3, 2))
    out = lw.collapse_norm(X)
    assert out.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            assert out[i, j] == pytest.approx(brute_force_collapse_norm(X[i, j]), rel=1e-12)


def test_normalized_norm_is_rms_pairwise_distance():
    X = np.random.default_rng(4).normal(size=(7, 3))
    D = squareform(pdist(X))
    off = D[~np.eye(7, dtype=bool)]
    assert lw.normalized_collapse_norm(X) == pytest.approx(math.sqrt(np.mean(off**2)), rel=1e-12)
    assert math.isnan(lw.normalized_collapse_norm(np.ones((1, 3))))
    # comparable across n: the same cloud sampled with more agents gives a similar value
    cloud = np.random.default_rng(5).normal(size=(2000, 3))
    a, b = lw.normalized_collapse_norm(cloud[:10]), lw.normalized_collapse_norm(cloud[:1000])
    assert 0.6 < a / b < 1.6
    assert lw.collapse_norm(cloud[:1000]) / lw.collapse_norm(cloud[:10]) > 50


def test_distance_matrix():
    X = np.random.default_rng(6).normal(size=(9, 4))
    np.testing.assert_allclose(lw.distance_matrix(X), squareform(pdist(X)), atol=1e-12)
    D = lw.distance_matrix(np.ones((3, 2)))
    assert np.all(D == 0)


def _brute_spread(E, labels):
    E = np.asarray(E, float)
    grand = E.mean(0)
    total = np.mean([np.sum((e - grand) ** 2) for e in E])
    within = 0.0
    between = 0.0
    for lab in set(labels):
        rows = E[[i for i, x in enumerate(labels) if x == lab]]
        mu = rows.mean(0)
        within += sum(np.sum((r - mu) ** 2) for r in rows)
        between += len(rows) * np.sum((mu - grand) ** 2)
    return total, within / len(E), between / len(E)


def test_spread_decomposition_matches_brute_force():
    rng = np.random.default_rng(7)
    E = rng.normal(size=(30, 6))
    labels = list(rng.choice(["a", "b", "c"], size=30))
    s = lw.spread(E, labels)
    t, w, b = _brute_spread(E, labels)
    assert (s.total, s.within, s.between) == pytest.approx((t, w, b), rel=1e-12)
    assert s.total == pytest.approx(s.within + s.between, rel=1e-12)
    assert sum(s.counts.values()) == 30


def test_spread_edge_cases():
    s = lw.spread(np.ones((4, 3)), ["a", "a", "b", "b"])
    assert (s.total, s.within, s.between) == (0.0, 0.0, 0.0)
    one = lw.spread(np.random.default_rng(0).normal(size=(5, 2)), ["x"] * 5)
    assert one.between == pytest.approx(0.0, abs=1e-12) and one.within == pytest.approx(one.total)
    with pytest.raises(ValueError, match="one label per row"):
        lw.spread(np.ones((3, 2)), ["a"])
    with pytest.raises(ValueError, match="at least one"):
        lw.spread(np.zeros((0, 2)), [])


def test_mean_cosine_distance_matches_brute_force():
    E = np.random.default_rng(8).normal(size=(25, 10))
    assert lw.mean_cosine_distance(E) == pytest.approx(np.mean(pdist(E, "cosine")), rel=1e-10)
    assert lw.mean_cosine_distance([[1.0, 0.0], [2.0, 0.0]]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        lw.mean_cosine_distance([[1.0, 0.0]])
    with pytest.raises(ValueError, match="zero vector"):
        lw.mean_cosine_distance([[1.0, 0.0], [0.0, 0.0]])


def _brute_vendi(E):
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    K = U @ U.T
    lam = np.linalg.eigvalsh(K / len(E))
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


@pytest.mark.parametrize("n,d", [(5, 20), (40, 6), (2, 2)])
def test_vendi_matches_primal_form(n, d):
    E = np.random.default_rng(n + d).normal(size=(n, d))
    assert lw.vendi_score(E) == pytest.approx(_brute_vendi(E), rel=1e-8)


def test_vendi_edge_cases():
    assert lw.vendi_score(np.ones((10, 3))) == pytest.approx(1.0)
    assert lw.vendi_score(np.eye(4)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="zero vector"):
        lw.vendi_score(np.zeros((2, 3)))


def test_distinct_n():
    texts = ["Bitcoin will rise.", "Bitcoin will fall.", "bitcoin WILL rise."]
    toks = [["bitcoin", "will", "rise", "."], ["bitcoin", "will", "fall", "."],
            ["bitcoin", "will", "rise", "."]]
    for n in (1, 2, 3):
        grams = [tuple(t[i:i + n]) for t in toks for i in range(len(t) - n + 1)]
        assert lw.distinct_n(texts, n=n) == pytest.approx(len(set(grams)) / len(grams))
    assert lw.distinct_n([], n=2) == 0.0
    assert lw.distinct_n(["one"], n=2) == 0.0
    with pytest.raises(ValueError, match="positive integer"):
        lw.distinct_n(texts, n=0)
    with pytest.raises(TypeError, match="single string"):
        lw.distinct_n("abc")
    with pytest.raises(TypeError, match="contain str"):
        lw.distinct_n(["a", 3])


def test_step_accumulator_equals_direct_metrics():
    rng = np.random.default_rng(9)
    E = rng.normal(size=(24, 5))
    agents = [f"a{i % 3}" for i in range(24)]
    acc = StepAccumulator(step=4)
    for lo in range(0, 24, 5):  # added in uneven batches
        acc.add(E[lo:lo + 5], agents[lo:lo + 5])
    m = acc.metrics()
    means = np.stack([E[[i for i in range(24) if agents[i] == a]].mean(0) for a in ("a0", "a1", "a2")])
    sp = lw.spread(E, agents)
    assert m.step == 4 and m.n_agents == 3 and m.n_records == 24
    assert m.norm == pytest.approx(brute_force_collapse_norm(means), rel=1e-10)
    assert m.normalized_norm == pytest.approx(m.norm / math.sqrt(6))
    assert (m.total_spread, m.within_spread, m.between_spread) == pytest.approx(
        (sp.total, sp.within, sp.between), rel=1e-9)
    assert m.mean_cosine_distance == pytest.approx(lw.mean_cosine_distance(E), rel=1e-10)
    assert m.per_agent_counts == {"a0": 8, "a1": 8, "a2": 8}


def test_step_metrics_one_agent_is_nan_norm():
    m = lw.step_metrics(1, np.random.default_rng(0).normal(size=(3, 4)), ["solo"] * 3)
    assert math.isnan(m.norm) and math.isnan(m.normalized_norm)
    assert m.as_dict()["norm"] is None
    assert m.n_agents == 1 and m.n_records == 3
    empty = lw.step_metrics(2, np.zeros((0, 4)), [])
    assert empty.n_records == 0 and math.isnan(empty.total_spread)
