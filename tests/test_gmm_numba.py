"""Tests for the compiled engine of InteractingGMMWeb (llmweb_plugin.proxies._numba_engine)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from llmweb_plugin.proxies import GMMInjection, InteractingGMMWeb, gmm_preset
from llmweb_plugin.proxies import _numba_engine as nb

W2 = [[0.02, 0.98], [0.5, 0.5], [0.05, 0.95], [0.9, 0.1], [0.01, 0.99], [0.3, 0.7]]
W3 = [[0.02, 0.02, 0.96], [0.3, 0.3, 0.4], [0.01, 0.5, 0.49], [0.6, 0.2, 0.2],
      [0.05, 0.01, 0.94], [0.2, 0.7, 0.1]]
B3 = {"means": [[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]], "cov": [1.0, 1.0]}


def _run(sim: InteractingGMMWeb, seed: int, **kw):
    return nb.simulate_numba(sim._validate(), np.random.default_rng(seed), **kw)


# ---------------------------------------------------------------- reproducibility, invariants
def test_same_seed_same_arrays_and_engine_field():
    sim = InteractingGMMWeb(n_agents=21, n_steps=15, n_replicates=2)
    a, b, c = (sim.run(rng=s, engine="numba") for s in (5, 5, 6))
    assert a.engine == "numba" and sim.run(rng=5, engine="numpy").engine == "numpy"
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.norms, b.norms)
    assert not np.array_equal(a.weights, c.weights)


@pytest.mark.parametrize("extra", [{}, B3, {"injection": GMMInjection(weights=[0.3, 0.7],
                                                                       n_points=4)}])
def test_invariants(extra):
    sim = InteractingGMMWeb(n_agents=19, n_steps=12, n_replicates=3, **extra)
    res = sim.run(rng=1, engine="numba")
    W = res.weights
    assert np.all(W > 0) and np.all(W < 1)
    np.testing.assert_allclose(W.sum(-1), 1.0, atol=1e-12)
    n_ext = sim.injection.n_points if sim.injection else 0
    assert np.all(np.diff(res.a_sizes) == 19 * 3 + n_ext)
    # same initial state as the numpy engine
    ref = sim.run(rng=1, engine="numpy")
    np.testing.assert_array_equal(W[0], ref.weights[0])
    np.testing.assert_array_equal(res.norms[0], ref.norms[0])
    np.testing.assert_array_equal(res.a_sizes, ref.a_sizes)


@pytest.mark.parametrize("extra", [{}, B3])
def test_thread_count_does_not_change_numbers(extra):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread")
    sim = InteractingGMMWeb(n_agents=38, n_steps=10, n_replicates=2, **extra)  # partial groups
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sim.run(rng=3, engine="numba")
        numba.set_num_threads(2)
        two = sim.run(rng=3, engine="numba")
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(one.weights, two.weights)


def test_engine_argument():
    sim = InteractingGMMWeb(n_steps=3)
    assert sim.run(rng=0).engine == "numpy"  # auto: small runs stay on numpy
    np.testing.assert_array_equal(sim.run(rng=0).weights,
                                  sim.run(rng=0, engine="numpy").weights)
    with pytest.raises(ValueError, match="engine"):
        sim.run(rng=0, engine="cuda")


def test_missing_numba_raises_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llmweb_plugin.proxies._numba_engine", None)
    with pytest.raises(ImportError, match=r"llmweb-plugin\[fast\]"):
        InteractingGMMWeb(n_steps=2).run(rng=0, engine="numba")
    big = gmm_preset("lwd-fig4-n1000", n_steps=5, record_weights=False)
    assert big.run(rng=0).engine == "numpy"  # auto falls back to numpy


# ---------------------------------------------------------------- the sampler
def test_sampler_is_uniform_over_ordered_samples():
    size, k, m = 5, 2, 40_000
    seeds = np.random.default_rng(0).integers(0, 2**63, size=(m, 2)).astype(np.uint64)
    orders = nb.debug_draw_orders(seeds, size, k)  # one slot, never reset, as in the kernel
    assert np.all(orders[:, 0] != orders[:, 1])
    counts = np.bincount(orders[:, 0] * size + orders[:, 1], minlength=size * size)
    cells = counts[[a * size + b for a in range(size) for b in range(size) if a != b]]
    expected = m / cells.size
    chi2 = float(((cells - expected) ** 2 / expected).sum())
    assert chi2 < 45.3, chi2  # 19 degrees of freedom, p = 0.001


# ---------------------------------------------------------------- brute force replay
def _paper_update(pi, points, means, cov_inv, k, eps):
    """The paper's online update, point by point, log-sum-exp ownership (as _reference_run)."""
    B = len(pi)
    alpha, c = 1.0 / k, 1.0 / (k * B * B)
    clipped = 0
    for u in points:
        logf = np.array([-0.5 * float((u - mu) @ cov_inv @ (u - mu)) for mu in means])
        lw = np.log(pi) + logf
        own = np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum()
        pi = (1.0 - alpha) * pi + alpha * (own - c) / (1.0 - B * c)
        neg = pi <= 0.0
        if neg.any():
            clipped += 1
            pi = np.where(neg, eps, pi * (1.0 - neg.sum() * eps) / pi[~neg].sum())
    return pi, clipped


@pytest.mark.parametrize("extra", [
    {"injection": GMMInjection(weights=[0.5, 0.5], n_points=2)},
    B3,
    # far-apart components, few points, all from one component: weights hit 0, clipped to eps
    {"means": [[-9.0], [9.0]], "samples_per_step": 1, "beta": 0.9,
     "initial_points": [[9.0]] * 6, "initial_weights": W2},
    {"means": [[-9.0], [0.0], [9.0]], "samples_per_step": 1, "beta": 0.9,
     "initial_points": [[9.0]] * 6, "initial_weights": W3},
])
def test_brute_force_replay_of_recorded_draws(extra):
    sim = InteractingGMMWeb(n_agents=6, n_steps=5, n_replicates=2, **extra)
    prep = sim._validate()
    trace: dict = {}
    res = _run(sim, 7, trace=trace)
    fast = _run(sim, 7)  # unrolled B = 2 kernel, no recording: the same numbers
    np.testing.assert_array_equal(res.weights, fast.weights)
    cov_inv = np.linalg.inv(prep.chol @ prep.chol.T)
    n = sim.n_agents
    clipped = 0
    for t, order in enumerate(trace["orders"]):
        after = trace["weights"][t + 1] if t + 1 < len(trace["weights"]) else \
            res.final_weights.reshape(-1, prep.B)
        if t == 0:  # the first agent of each slot starts from the identity permutation
            first = nb.debug_draw_orders(trace["seeds"][0][:1], int(res.a_sizes[0]),
                                         int(res.k[0]))
            np.testing.assert_array_equal(order[:1], first)
        for a in range(order.shape[0]):
            pts = trace["points"][a // n][order[a]]
            assert len(set(order[a].tolist())) == res.k[t] and order[a].max() < res.a_sizes[t]
            ref, c = _paper_update(trace["weights"][t][a], pts, prep.means, cov_inv,
                                   int(res.k[t]), prep.eps)
            clipped += c
            np.testing.assert_allclose(after[a], ref, rtol=0, atol=1e-12)
    if extra.get("samples_per_step") == 1:
        assert clipped > 0
        assert np.any(np.isclose(res.weights, prep.eps, rtol=0, atol=1e-15))


# ---------------------------------------------------------------- statistics vs numpy
def _stats(res):
    """Per-replicate mean ||D||_F over t = 20..30 and over t > 50."""
    return res.norms[20:31].mean(axis=0), res.norms[51:].mean(axis=0)


def _z(x, y):
    return abs(x.mean() - y.mean()) / math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)


def test_fig4_statistics_agree_with_numpy_engine():
    R = 40
    sim = gmm_preset("lwd-fig4", n_replicates=R)
    ref = _stats(sim.run(rng=1, engine="numpy"))
    got = _stats(sim.run(rng=2, engine="numba"))
    zs = [_z(a, b) for a, b in zip(ref, got)]
    assert max(zs) < 4.0, zs
    # the same check would catch a wrong step size (alpha doubled or halved)
    for scale in (2.0, 0.5):
        bad = _stats(_run(sim, 2, alpha_scale=scale))
        zs_bad = [_z(a, b) for a, b in zip(ref, bad)]
        assert max(zs_bad) > 4.0, (scale, zs_bad)


def test_auto_picks_numba_for_large_runs():
    sim = gmm_preset("lwd-fig4-n1000", n_steps=3)
    from llmweb_plugin.proxies.gmm import _AUTO_NUMBA_UPDATES, _n_updates

    small = dataclasses.replace(sim, n_agents=3)
    assert _n_updates(small._validate()) < _AUTO_NUMBA_UPDATES
    big = dataclasses.replace(sim, n_steps=5, record_weights=False)
    assert _n_updates(big._validate()) > _AUTO_NUMBA_UPDATES
    res = big.run(rng=0)
    assert res.engine == "numba" and res.weights is None
