"""Tests for the GMM web (llmweb_plugin.proxies): paper shapes, invariants, reference loop,
validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from llmweb_plugin.proxies import (
    GMM_PRESETS,
    GMMInjection,
    InteractingGMMWeb,
    SiloGMM,
    gmm_preset,
    weight_decay_check,
)
from llmweb_plugin.proxies._reference import _reference_run

FIG4 = {"n_agents": 3, "means": [[-5.0], [5.0]], "cov": [[1.0]], "dirichlet_alpha": 1.0, "beta": 0.5,
            "samples_per_step": 3}


@pytest.fixture(scope="module")
def fig4():
    return gmm_preset("lwd-fig4").run(rng=0)


# ---------------------------------------------------------------- paper shapes (Fig. 4)
def test_fig4_preset_matches_paper_shape(fig4):
    assert fig4.norms.shape == (201, 5)
    start = fig4.norms[0]
    assert np.all((start > 0.5) & (start < 2.5)), start
    assert np.all(fig4.norms[25] < 0.3), fig4.norms[25]
    assert np.all(fig4.norms[:26].min(axis=0) < 0.3)
    late = fig4.norms[51:]
    assert late.mean() < 0.15
    assert np.all(late.mean(axis=0) < 0.15) and np.all(late.mean(axis=0) > 0.005)
    assert late.max() < 0.35


def test_fig4_pinned_numbers(fig4):
    # Pin a few values so a change to the draw protocol or the update is noticed.
    np.testing.assert_allclose(fig4.norms[0], [1.654921552, 1.752852792, 1.078758321,
                                               1.074927448, 1.784085755], rtol=1e-8)
    assert fig4.norms[200].max() < 0.1


def test_fig6_preset_decays_slowly():
    res = gmm_preset("lwd-fig6", n_steps=60, n_replicates=3).run(rng=0)
    assert res.weights.shape == (61, 3, 3, 11)
    assert np.all(res.norms[60] < res.norms[0])
    # strongly overlapping components: slower than Fig. 4 (still about 0.3 after 60 steps)
    assert res.norms[40:].mean() > 0.15


def test_norms_are_frobenius_of_pairwise_distance_matrix(fig4):
    for t in (0, 3, 100, 200):
        for r in range(5):
            brute = np.sqrt(2 * np.sum(pdist(fig4.weights[t, r]) ** 2))  # full symmetric matrix
            assert fig4.norms[t, r] == pytest.approx(brute, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- invariants
@pytest.mark.parametrize("means", [[[-5.0], [5.0]], [[-5.0], [0.0], [60.0]],
                                   [[float(x)] for x in range(-5, 6)]])
def test_weights_stay_on_simplex(means):
    res = InteractingGMMWeb(n_agents=4, means=means, n_steps=40, n_replicates=3).run(rng=2)
    W = res.weights
    assert np.all(W > 0)
    np.testing.assert_allclose(W.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(res.final_weights, W[-1])


def test_floor_is_applied_for_a_component_nobody_samples():
    # A is fixed (L = 0) and has no point near 60, so component 3 owns nothing: the update
    # pushes its weight below 0 and the floor puts it back at eps, again and again.
    pts = np.concatenate([np.linspace(-7, -3, 20), np.linspace(3, 7, 20)])[:, None]
    sim = InteractingGMMWeb(n_agents=3, means=[[-5.0], [5.0], [60.0]], n_steps=10,
                            samples_per_step=0, initial_points=pts,
                            initial_weights=[[0.49, 0.5, 0.01]] * 3, eps=1e-3, n_replicates=2)
    res = sim.run(rng=0)
    W = res.weights
    assert res.k.tolist() == [20] * 10
    assert W[:, :, :, 2].min() > 0
    assert W[2:, :, :, 2].max() <= 1e-3  # at or just below the floor after each clip
    np.testing.assert_allclose(W.sum(-1), 1.0, atol=1e-12)
    ref = _reference_run(sim, rng=0)
    np.testing.assert_allclose(W, ref.weights, rtol=0, atol=1e-12)


def test_a_grows_by_n_times_l_and_k_is_floor_beta_a():
    sim = InteractingGMMWeb(n_agents=4, n_steps=12, samples_per_step=2, beta=0.3)
    res = sim.run(rng=0)
    np.testing.assert_array_equal(np.diff(res.a_sizes), 8)
    assert res.a_sizes[0] == 8 and res.n_seed == 8
    np.testing.assert_array_equal(res.k, np.floor(0.3 * res.a_sizes[:-1] + 1e-9).astype(int))
    np.testing.assert_array_equal(res.n_synthetic, 8 * np.arange(13))
    np.testing.assert_allclose(res.synthetic_fraction, res.n_synthetic / res.a_sizes)


def test_k_floor_is_robust_to_rounding():
    sim = InteractingGMMWeb(n_agents=1, samples_per_step=0, beta=0.29, n_steps=1,
                            initial_points=np.linspace(-1, 1, 100)[:, None])
    assert sim.run(rng=0).k.tolist() == [29]


def test_same_seed_identical_and_different_seed_differs():
    sim = InteractingGMMWeb(n_steps=30, n_replicates=2)
    a, b, c = sim.run(rng=5), sim.run(rng=5), sim.run(rng=6)
    for field in ("norms", "weights", "a_sizes", "k", "synthetic_fraction"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.norms, c.norms)
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(sim.run(rng=g1).weights, sim.run(rng=g2).weights)


def test_result_is_frozen_and_read_only(fig4):
    with pytest.raises(dataclasses.FrozenInstanceError):
        fig4.norms = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        fig4.norms[0, 0] = 1.0


def test_parameters_stored_unmodified():
    means = [[-5.0], [5.0]]
    sim = InteractingGMMWeb(means=means, cov=2.0, beta=7.0)  # invalid beta: raised in run()
    assert sim.means is means and sim.cov == 2.0 and sim.beta == 7.0
    with pytest.raises(ValueError, match="beta"):
        sim.run(rng=0)


def test_numerically_stable_for_far_apart_components():
    # Densities N(u; +-50, 1) underflow to 0 in float64 without the log-sum-exp shift.
    sim = InteractingGMMWeb(means=[[-50.0], [50.0]], n_steps=20, n_replicates=2)
    res = sim.run(rng=0)
    assert np.all(np.isfinite(res.weights)) and np.all(res.weights > 0)
    ref = _reference_run(dataclasses.replace(sim, n_steps=6), rng=0)
    np.testing.assert_allclose(res.weights[:7], ref.weights, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- reference loop
@pytest.mark.parametrize(
    "params",
    [
        dict(FIG4, n_steps=12, n_replicates=2),
        {"n_agents": 3, "means": [[-5.0], [5.0], [60.0]], "n_steps": 10, "n_replicates": 2,
             "initial_weights": [[0.45, 0.45, 0.1]] * 3},  # exercises the eps floor
        {"n_agents": 2, "means": [[0.0, 0.0], [2.0, 1.0], [-1.0, 3.0]],
             "cov": [[1.0, 0.3], [0.3, 0.5]], "beta": 0.7, "samples_per_step": 2, "n_steps": 8},
        dict(FIG4, n_steps=8, injection=GMMInjection(weights=[0.2, 0.8], n_points=4)),
    ],
)
def test_vectorised_matches_naive_per_agent_per_point_loop(params):
    sim = InteractingGMMWeb(**params)
    fast, slow = sim.run(rng=11), _reference_run(sim, rng=11)
    np.testing.assert_allclose(fast.weights, slow.weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.norms, slow.norms, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fast.a_sizes, slow.a_sizes)


def test_agent_blocking_does_not_change_numbers(monkeypatch):
    from llmweb_plugin.proxies import _numpy_engine

    sim = InteractingGMMWeb(n_agents=5, n_steps=10, n_replicates=2)
    whole = sim.run(rng=3)
    monkeypatch.setattr(_numpy_engine, "_INDEX_BUDGET", 7)  # one agent per block
    monkeypatch.setattr(_numpy_engine, "_GATHER_BUDGET", 8)  # tiny chunks of points
    blocked = sim.run(rng=3)
    np.testing.assert_array_equal(whole.weights, blocked.weights)


# ---------------------------------------------------------------- injection
def test_zero_injection_reproduces_plain_run_exactly():
    plain = InteractingGMMWeb(n_steps=25, n_replicates=2).run(rng=4)
    zero = InteractingGMMWeb(n_steps=25, n_replicates=2,
                             injection=GMMInjection(weights=[0.5, 0.5], n_points=0)).run(rng=4)
    np.testing.assert_array_equal(plain.weights, zero.weights)
    np.testing.assert_array_equal(plain.norms, zero.norms)
    np.testing.assert_array_equal(zero.n_external, 0)


def test_injection_bookkeeping_is_exact():
    res = InteractingGMMWeb(n_steps=10, injection=GMMInjection(weights=[0.5, 0.5], n_points=3)
                            ).run(rng=0)
    np.testing.assert_array_equal(res.a_sizes, 9 + 12 * np.arange(11))
    np.testing.assert_array_equal(res.n_external, 3 * np.arange(11))
    np.testing.assert_array_equal(res.n_synthetic, 9 * np.arange(11))
    np.testing.assert_allclose(res.synthetic_fraction[1:], 9 * np.arange(1, 11) / res.a_sizes[1:])
    assert res.synthetic_fraction[0] == 0.0


def test_heavy_injection_pulls_weights_to_external_mixture():
    inj = GMMInjection(weights=[0.9, 0.1], n_points=100)
    res = InteractingGMMWeb(n_steps=15, n_replicates=2, injection=inj).run(rng=1)
    assert res.synthetic_fraction[-1] < 0.1
    assert abs(res.final_weights[..., 0].mean() - 0.9) < 0.05


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"beta": 0.0}, r"beta must lie in \(0, 1\]"),
        ({"beta": 1.5}, r"beta must lie in \(0, 1\]"),
        ({"means": np.empty((0, 1))}, r"B >= 1"),
        ({"cov": [[-1.0]]}, r"variance"),
        ({"cov": -2.0}, r"variance"),
        ({"cov": [[1.0, 2.0], [2.0, 1.0]], "means": [[0.0, 0.0], [1.0, 1.0]]}, "positive definite"),
        ({"cov": [[1.0, 0.5], [0.0, 1.0]], "means": [[0.0, 0.0], [1.0, 1.0]]}, "symmetric"),
        ({"initial_points": np.empty((0, 1))}, r"k_0 = floor"),
        ({"n_agents": 1, "samples_per_step": 1}, r"k_0 = floor"),
        ({"n_agents": 0}, "n_agents"),
        ({"n_steps": -1}, "n_steps"),
        ({"n_replicates": 0}, "n_replicates"),
        ({"samples_per_step": 2.5}, "samples_per_step"),
        ({"dirichlet_alpha": 0.0}, "dirichlet_alpha"),
        ({"eps": 0.6}, "eps"),
        ({"initial_weights": [[0.5, 0.6]] * 3}, "initial_weights"),
        ({"initial_weights": [[0.5, 0.5]]}, "initial_weights"),
        ({"initial_points": [[0.0, 1.0]]}, "initial_points"),
        ({"injection": GMMInjection(weights=[1.0], n_points=1)}, "injection.weights"),
        ({"injection": GMMInjection(weights=[0.5, 0.5], n_points=-1)}, "injection.n_points"),
    ],
)
def test_bad_parameters_raise_value_error(params, match):
    with pytest.raises(ValueError, match=match):
        InteractingGMMWeb(**{"n_steps": 2, **params}).run(rng=0)


# ---------------------------------------------------------------- presets, theory
def test_presets_by_name():
    assert {"lwd-fig4", "lwd-fig6", "lwd-fig4-n1000", "lwd-fig4-inject", "companion-silo",
            "companion-mirror"} <= set(GMM_PRESETS)
    fig4 = gmm_preset("lwd-fig4")
    assert isinstance(fig4, InteractingGMMWeb)
    assert (fig4.n_agents, fig4.n_replicates, fig4.n_steps, fig4.samples_per_step) == (3, 5, 200, 3)
    assert gmm_preset("lwd-fig6").means == tuple((float(x),) for x in range(-5, 6))
    assert isinstance(gmm_preset("companion-silo"), SiloGMM)
    assert gmm_preset("lwd-fig4", n_steps=7).n_steps == 7
    with pytest.raises(ValueError, match="unknown preset"):
        gmm_preset("nope")


def test_decay_factor_matches_sketch_in_expectation_but_not_in_magnitude(fig4):
    chk = weight_decay_check(fig4)
    np.testing.assert_allclose(chk.predicted, (1 - 1 / fig4.k) ** fig4.k)
    assert np.all((chk.predicted > 0.31) & (chk.predicted < 1 / np.e))
    # E[d(t+1) | d(t)] ~ (1 - 1/k)^k d(t): the regression slope agrees with the prediction...
    assert abs(np.mean(chk.slope[10:]) - np.mean(chk.predicted[10:])) < 0.06
    # ...but |d| itself stops shrinking geometrically: a sampling floor of order k_t^{-1/2}.
    assert np.mean(chk.abs_ratio[25:]) > 0.9
    scaled = chk.mean_abs_diff[50:-1] * np.sqrt(fig4.k[50:])
    assert 0.1 < scaled.mean() < 1.0


def test_decay_check_needs_weights():
    res = InteractingGMMWeb(n_steps=3, record_weights=False).run(rng=0)
    assert res.weights is None and res.final_weights.shape == (1, 3, 2)
    with pytest.raises(ValueError, match="record_weights"):
        weight_decay_check(res)


@pytest.mark.parametrize("far_first", [True, False])
def test_two_component_floor_matches_reference(far_first):
    # B = 2 runs a specialised kernel on pi_1 alone; both clip directions against the loop.
    means = [[60.0], [-5.0]] if far_first else [[-5.0], [60.0]]
    w = [[0.01, 0.99]] if far_first else [[0.99, 0.01]]
    sim = InteractingGMMWeb(n_agents=3, means=means, n_steps=8, samples_per_step=0,
                            initial_points=np.linspace(-7, -3, 30)[:, None],
                            initial_weights=w * 3, n_replicates=2)
    res, ref = sim.run(rng=1), _reference_run(sim, rng=1)
    far = 0 if far_first else 1
    assert res.weights[2:, ..., far].max() <= 1e-3 + 1e-15 and res.weights.min() > 0
    np.testing.assert_allclose(res.weights, ref.weights, rtol=0, atol=1e-12)


def test_single_component_and_single_agent_edge_cases():
    one = InteractingGMMWeb(n_agents=2, means=[[0.0]], samples_per_step=1, n_steps=4).run(rng=0)
    np.testing.assert_array_equal(one.weights, 1.0)
    np.testing.assert_array_equal(one.norms, 0.0)
    solo = InteractingGMMWeb(n_agents=1, samples_per_step=4, n_steps=4).run(rng=0)
    np.testing.assert_array_equal(solo.norms, 0.0)
    assert solo.a_sizes.tolist() == [4, 8, 12, 16, 20]


def test_as_dict_names_the_engine_that_ran():
    import json

    import llmweb_plugin as lw

    d = lw.gmm_preset("lwd-fig4", n_steps=5, n_replicates=2).run(rng=0).as_dict()
    assert d["engine"] == "numpy" and len(d["norms"]) == 2 and len(d["t"]) == 6
    json.dumps(d)
