"""Tests for llmweb_plugin.proxies.silo: the companion model's silos, read-outs and validation."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from llmweb_plugin.proxies.silo import SiloGMM, _count_distinct, _em_step, _replace_farthest


def test_silos_at_t_fall_as_k_grows_with_p0():
    means = {}
    for k in (1, 2, 5, 10, 29):
        res = SiloGMM(n_agents=30, n_components=30, mirror_prob=0.0, n_neighbors=k,
                      rag_size=5, n_steps=60, n_replicates=8).run(rng=0)
        assert res.n_silos[0].tolist() == [30] * 8  # one-hot on distinct components
        means[k] = res.final_silos.mean()
    vals = [means[k] for k in (1, 2, 5, 10, 29)]
    assert all(a > b for a, b in itertools.pairwise(vals)), means
    assert vals[-1] <= vals[-2]
    assert means[1] > 6 and means[29] < 1.5


def test_everyone_converges_with_all_neighbours():
    res = SiloGMM(n_agents=30, n_components=30, n_neighbors=29, n_steps=80,
                  n_replicates=4).run(rng=1)
    assert res.converged.all()
    assert np.all(res.t_star < 80) and np.all(res.t_star > 5)
    for r in range(4):  # t* is the last step with more than one silo
        ts = int(res.t_star[r])
        assert res.n_silos[ts, r] > 1 and np.all(res.n_silos[ts + 1:, r] == 1)


def test_full_mirroring_freezes_every_agent():
    res = SiloGMM(n_agents=10, n_components=10, mirror_prob=1.0, n_neighbors=3, n_steps=30,
                  n_replicates=2).run(rng=0)
    assert np.all(res.n_silos == 10) and not res.converged.any()
    assert np.all(res.t_star == 30)
    np.testing.assert_array_equal(res.silos[-1], np.broadcast_to(np.arange(10), (2, 10)))


def test_weights_stay_on_simplex_and_results_reproduce():
    sim = SiloGMM(n_agents=12, n_components=6, mirror_prob=0.3, n_neighbors=4, n_steps=25,
                  n_replicates=3)
    a, b = sim.run(rng=7), sim.run(rng=7)
    np.testing.assert_allclose(a.final_weights.sum(-1), 1.0, atol=1e-12)
    assert a.final_weights.min() >= 1e-12 * 0.99
    np.testing.assert_array_equal(a.silos, b.silos)
    np.testing.assert_array_equal(a.final_weights, b.final_weights)
    assert a.silos.shape == (26, 3, 12) and a.n_silos.shape == (26, 3)
    np.testing.assert_array_equal(a.silos[0, 0], np.arange(12) % 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.n_silos = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.n_silos[0, 0] = 3


def test_em_step_matches_brute_force():
    rng = np.random.default_rng(0)
    means = np.arange(4.0)[:, None]
    w = rng.dirichlet(np.ones(4))
    rag = rng.normal(1.5, 1.0, size=(5, 1))
    sigma = 0.7
    dens = np.exp(-((rag - means.T) ** 2) / (2 * sigma**2))  # (5, 4)
    post = w * dens / (w * dens).sum(1, keepdims=True)
    expect = post.mean(0)
    np.testing.assert_allclose(_em_step(w, rag, means, sigma), expect, rtol=1e-12)
    # one-hot prior with far points: log-sum-exp keeps it finite, clip keeps it positive
    onehot = np.eye(30)[0]
    far = np.full((5, 1), 29.0)
    out = _em_step(onehot, far, np.arange(30.0)[:, None], 0.2)
    assert np.all(np.isfinite(out)) and out.min() > 0 and out.sum() == pytest.approx(1.0)


def test_replace_farthest_and_count_distinct():
    rag = np.array([[[0.0], [5.0], [1.0]]])
    out = _replace_farthest(rag, np.array([[0.5]]))
    np.testing.assert_array_equal(out, [[[0.0], [0.5], [1.0]]])
    np.testing.assert_array_equal(rag, [[[0.0], [5.0], [1.0]]])  # input untouched
    assert _count_distinct(np.array([[3, 1, 3, 2], [0, 0, 0, 0]])).tolist() == [3, 1]


def test_summary_reports_mean_and_standard_error():
    res = SiloGMM(n_agents=8, n_components=8, n_neighbors=1, n_steps=10,
                  n_replicates=5).run(rng=3)
    s = res.summary()
    f = res.final_silos
    assert s["silos_mean"] == pytest.approx(f.mean())
    assert s["silos_se"] == pytest.approx(f.std(ddof=1) / np.sqrt(5))
    assert res.as_dict()["n_silos"][0] == res.n_silos[:, 0].tolist()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_agents": 1}, "n_agents"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 30}, "n_neighbors"),
        ({"mirror_prob": 1.5}, "mirror_prob"),
        ({"mirror_prob": -0.1}, "mirror_prob"),
        ({"rag_size": 0}, "rag_size"),
        ({"sigma": -0.2}, "sigma"),
        ({"sigma": 0.0}, "sigma"),
        ({"n_components": 0}, "n_components"),
        ({"means": [0.0, 1.0]}, "means"),
        ({"initial_weights": np.ones((30, 30))}, "initial_weights"),
        ({"n_steps": -1}, "n_steps"),
        ({"n_replicates": 0}, "n_replicates"),
    ],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        SiloGMM(**{"n_steps": 2, **params}).run(rng=0)


def test_parameters_stored_unmodified():
    sim = SiloGMM(mirror_prob=3.0)
    assert sim.mirror_prob == 3.0
