"""Metric edges (issue 10, item 4): non-finite input, extreme magnitudes, far-from-origin
precision, zero vectors and label identity, each against a brute-force float64 computation."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import llmweb_plugin as lw
from llmweb_plugin.metrics import StepAccumulator


def _brute_norm(X) -> float:
    """||D||_F by explicit loops over ordered pairs, in float64 (no identity used)."""
    X = np.asarray(X, dtype=np.float64)
    return math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in itertools.permutations(X, 2)))


def _brute_step(E, agents):
    """(total, within, between, norm, mean cosine distance) by explicit loops in float64."""
    E = np.asarray(E, dtype=np.float64)
    n = len(E)
    grand = E.mean(axis=0)
    total = sum(float(np.sum((e - grand) ** 2)) for e in E) / n
    means, within, between = [], 0.0, 0.0
    for a in sorted(set(agents)):
        rows = E[[i for i, x in enumerate(agents) if x == a]]
        mu = rows.mean(axis=0)
        means.append(mu)
        within += sum(float(np.sum((r - mu) ** 2)) for r in rows)
        between += len(rows) * float(np.sum((mu - grand) ** 2))
    nz = [e for e in E if np.any(e != 0)]
    mcd = float(np.mean(pdist(np.array(nz), "cosine"))) if len(nz) >= 2 else math.nan
    return total, within / n, between / n, _brute_norm(np.array(means)), mcd


# ---------------------------------------------------------------- non-finite input
def _direct_calls():
    """(name of the input in the message, call) for every public metric taking vectors."""
    return [
        ("X", lw.collapse_norm),
        ("X", lw.normalized_collapse_norm),
        ("X", lambda X: lw.collapse_norm(np.stack([X, X]))),  # batched
        ("X", lw.distance_matrix),
        ("embeddings", lambda X: lw.spread(X, ["a", "b", "a", "b"])),
        ("embeddings", lw.mean_cosine_distance),
        ("embeddings", lw.vendi_score),
        ("vectors", lambda X: lw.step_metrics(1, X, ["a", "b", "a", "b"])),
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("which", range(8))
def test_non_finite_input_is_a_value_error_naming_the_input(which, dtype, bad):
    name, call = _direct_calls()[which]
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(dtype)
    X[2, 1] = bad
    where = r"\((0, )?2, 1\)"  # (0, 2, 1) for the batched call
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or inf \(first at index {where}\)"):
        call(X)


def test_rejected_add_leaves_the_accumulator_unchanged():
    E = np.random.default_rng(1).normal(size=(6, 3))
    acc = StepAccumulator(step=2)
    acc.add(E[:4], ["a", "b", "a", "b"])
    bad = E[4:].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="vectors contains NaN or inf"):
        acc.add(bad, ["a", "c"])
    with pytest.raises(ValueError, match="one agent per row"):
        acc.add(E[4:], ["a"])
    m = acc.metrics()
    t, w, b, norm, mcd = _brute_step(E[:4], ["a", "b", "a", "b"])
    assert m.n_records == 4 and m.per_agent_counts == {"a": 2, "b": 2}
    assert (m.total_spread, m.within_spread, m.between_spread) == pytest.approx((t, w, b), rel=1e-12)
    assert m.norm == pytest.approx(norm, rel=1e-12)
    assert m.mean_cosine_distance == pytest.approx(mcd, rel=1e-12)


def test_step_metrics_refuses_a_label_count_that_does_not_match():
    # it used to zip the two and drop the extra rows without a word
    with pytest.raises(ValueError, match="agents has 2 entries but vectors has 3 rows"):
        lw.step_metrics(1, np.ones((3, 2)), ["a", "b"])


# ---------------------------------------------------------------- extreme magnitudes
@pytest.mark.parametrize("factor", [1e150, 1e300, 1e-200, 1e-300])
def test_collapse_norm_of_huge_and_tiny_values(factor):
    X = np.random.default_rng(2).normal(size=(5, 3))
    expected = factor * _brute_norm(X)  # ||D|| is homogeneous of degree 1
    assert math.isfinite(expected) and expected > 0
    assert lw.collapse_norm(X * factor) == pytest.approx(expected, rel=1e-12)
    assert lw.normalized_collapse_norm(X * factor) == pytest.approx(
        expected / math.sqrt(20), rel=1e-12)
    batched = lw.collapse_norm(np.stack([X * factor, X]))
    np.testing.assert_allclose(batched, [expected, _brute_norm(X)], rtol=1e-12)


def test_collapse_norm_issue_example_does_not_overflow():
    # 500 x 384: ||D||_F = 1.4e154, but 2 m sum ||x - x_bar||^2 = 1.9e308 is past float64
    X = np.random.default_rng(3).normal(size=(500, 384))
    expected = 1e150 * float(np.linalg.norm(squareform(pdist(X))))
    assert 1.3e154 < expected < 1.5e154
    got = lw.collapse_norm(X * 1e150)
    assert got == pytest.approx(expected, rel=1e-12)
    assert lw.normalized_collapse_norm(X * 1e150) == pytest.approx(
        expected / math.sqrt(500 * 499), rel=1e-12)


def test_collapse_norm_float32_beyond_its_square_range():
    # float32 squares overflow above ~1.8e19 and underflow below ~1e-19
    X = np.random.default_rng(4).normal(size=(40, 16)).astype(np.float32)
    for factor in (np.float32(1e30), np.float32(1e-30)):
        Y = X * factor
        assert lw.collapse_norm(Y) == pytest.approx(_brute_norm(Y.astype(np.float64)), rel=1e-6)


def test_identical_rows_of_any_size_give_zero():
    row = np.random.default_rng(5).normal(size=(1, 7))
    for factor in (1.0, 1e200, 1e-200):
        assert lw.collapse_norm(np.repeat(row * factor, 9, axis=0)) == 0.0
    assert lw.collapse_norm(np.zeros((4, 3))) == 0.0
    assert lw.collapse_norm(np.zeros((4, 3), dtype=np.float32)) == 0.0


@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_distance_and_cosine_metrics_of_huge_and_tiny_values(factor):
    X = np.random.default_rng(6).normal(size=(6, 4))
    np.testing.assert_allclose(lw.distance_matrix(X * factor), factor * squareform(pdist(X)),
                               rtol=1e-10, atol=0)
    # cosine is scale-invariant: the same answer as for X itself
    assert lw.mean_cosine_distance(X * factor) == pytest.approx(np.mean(pdist(X, "cosine")),
                                                                rel=1e-12)
    assert lw.vendi_score(X * factor) == pytest.approx(lw.vendi_score(X), rel=1e-10)


# ---------------------------------------------------------------- far from the origin
def _exact_step(E, agents):
    """(total, within, between, norm) of the float64 values in E, in exact rational arithmetic."""
    rows = [[Fraction(float(v)) for v in e] for e in np.asarray(E, dtype=np.float64)]
    n, d = len(rows), len(rows[0])

    def mean(rs):
        return [sum(r[j] for r in rs) / len(rs) for j in range(d)]

    def sq(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b))

    grand = mean(rows)
    total = sum(sq(r, grand) for r in rows) / n
    within = between = Fraction(0)
    means = []
    for a in sorted(set(agents)):
        rs = [r for r, x in zip(rows, agents) if x == a]
        mu = mean(rs)
        means.append(mu)
        within += sum(sq(r, mu) for r in rs)
        between += len(rs) * sq(mu, grand)
    norm2 = sum(sq(p, q) for p, q in itertools.permutations(means, 2))
    return float(total), float(within / n), float(between / n), math.sqrt(norm2)


@pytest.mark.parametrize("offset", [1e4, 1e6, 1e8])
def test_step_metrics_far_from_the_origin_match_brute_force(offset):
    rng = np.random.default_rng(7)
    agents = [f"a{i % 3}" for i in range(30)]
    E = offset + rng.normal(size=(30, 5)) + np.array([[i % 3, 0, 0, 0, 0] for i in range(30)])
    t, w, b, norm = _exact_step(E, agents)
    m = lw.step_metrics(1, E, agents)
    assert (m.total_spread, m.within_spread, m.between_spread) == pytest.approx((t, w, b), rel=1e-9)
    assert m.norm == pytest.approx(norm, rel=1e-9)
    s = lw.spread(E, agents)
    assert (s.total, s.within, s.between) == pytest.approx((t, w, b), rel=1e-9)
    # the same answers when the records arrive one at a time (the monitor's way)
    acc = StepAccumulator(step=1)
    for row, a in zip(E, agents):
        acc.add(row[None, :], [a])
    one = acc.metrics()
    assert (one.total_spread, one.within_spread, one.between_spread) == pytest.approx(
        (t, w, b), rel=1e-9)
    assert one.norm == pytest.approx(norm, rel=1e-9)


def test_distance_matrix_far_from_the_origin():
    X = 1e8 + np.random.default_rng(8).normal(size=(7, 3))
    np.testing.assert_allclose(lw.distance_matrix(X), squareform(pdist(X)), rtol=1e-7, atol=0)


# ---------------------------------------------------------------- zero vectors
def test_zero_vectors_are_counted_and_left_out_of_the_cosine_figure_only():
    rng = np.random.default_rng(9)
    E = rng.normal(size=(7, 4))
    E[[2, 5]] = 0.0
    agents = ["a", "b", "a", "b", "a", "b", "a"]
    m = lw.step_metrics(3, E, agents)
    t, w, b, norm, mcd = _brute_step(E, agents)
    assert m.n_records == 7 and m.n_zero_vectors == 2
    assert m.per_agent_counts == {"a": 4, "b": 3}
    assert (m.total_spread, m.within_spread, m.between_spread) == pytest.approx((t, w, b), rel=1e-12)
    assert m.norm == pytest.approx(norm, rel=1e-12)
    assert m.mean_cosine_distance == pytest.approx(mcd, rel=1e-12)
    assert m.mean_cosine_distance == pytest.approx(
        lw.mean_cosine_distance(np.delete(E, [2, 5], axis=0)), rel=1e-12)
    assert m.as_dict()["n_zero_vectors"] == 2
    # one nonzero vector left: no pair, so no cosine figure, and still every record counted
    lone = lw.step_metrics(1, np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]), ["a", "b", "a"])
    assert lone.n_records == 3 and lone.n_zero_vectors == 2
    assert math.isnan(lone.mean_cosine_distance)


def test_direct_cosine_metrics_name_the_zero_row():
    E = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"zero vector \(row 2\)"):
        lw.mean_cosine_distance(E)
    with pytest.raises(ValueError, match=r"zero vector \(row 2\)"):
        lw.vendi_score(E)


# ---------------------------------------------------------------- label identity
def test_labels_with_the_same_text_and_different_types_are_refused():
    E = np.array([[0.0], [10.0]])
    with pytest.raises(ValueError, match=r"labels holds two different labels written '1'.*int.*str"):
        lw.spread(E, [1, "1"])
    with pytest.raises(ValueError, match=r"agents holds two different labels written '1'"):
        lw.step_metrics(1, E, [1, "1"])
    acc = StepAccumulator(step=1)
    acc.add(E[:1], ["1"])
    with pytest.raises(ValueError, match="two different labels written '1'"):
        acc.add(E[1:], [1])          # across calls too
    assert acc.metrics().n_records == 1


def test_labels_of_one_type_and_numpy_scalars_group_as_expected():
    E = np.array([[0.0], [2.0], [10.0], [12.0]])
    s = lw.spread(E, [1, np.int64(1), 2, 2])                 # numpy scalar == its value
    assert s.counts == {"1": 2, "2": 2} and (s.within, s.between) == (1.0, 25.0)
    s = lw.spread(E, ["a", np.str_("a"), "b", "b"])
    assert s.counts == {"a": 2, "b": 2}
    s = lw.spread(E, [None, "a", 1.5, 1])                      # mixed types, distinct texts
    assert s.counts == {"None": 1, "a": 1, "1.5": 1, "1": 1} and s.within == 0.0
    m = lw.step_metrics(1, E, [1, 1, 2, 2])
    assert m.per_agent_counts == {"1": 2, "2": 2}
    assert m.norm == pytest.approx(_brute_norm([[1.0], [11.0]]), rel=1e-12)
