"""The public step pieces of the GMM web (llmweb_plugin.proxies.steps) reproduce its run exactly.

``simulate_gmm_arm`` builds its loop from these pieces instead of the engines' private helpers
(issue 11); a plain loop over them must give the simulator's numbers bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llmweb_plugin.metrics import collapse_norm
from llmweb_plugin.proxies import InteractingGMMWeb, steps
from llmweb_plugin.proxies.presets import FIG6_MEANS


def _loop(web: InteractingGMMWeb, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One replicate of the simulator written with the public pieces: (weights, norms)."""
    prep = steps.prepare(web, n_replicates=1)
    rng = np.random.default_rng(seed)
    w0, a0 = steps.initial_state(prep, rng)
    n, T, L, B, d = prep.n, prep.T, prep.L, prep.B, prep.d
    cap = n * L * (T + 1)
    Q = np.empty((B, cap))
    Q[:, : len(a0[0])] = steps.point_densities(a0[0], prep)
    size = len(a0[0])
    pi = np.ascontiguousarray(w0[0].T)  # (B, n)
    W, norms = np.empty((T + 1, n, B)), np.empty(T + 1)
    for t in range(T + 1):
        W[t] = pi.T
        norms[t] = collapse_norm(pi.T[None])[0]
        if t == T:
            break
        k = steps.read_count(prep.beta, size)
        new = np.empty((n, L, d))
        idx = np.empty((n, k), dtype=np.int32)
        for i in range(n):
            new[i] = steps.draw_points(rng, pi[:, i], L, prep)
            idx[i] = rng.choice(size, size=k, replace=False)
        steps.update_agents(pi, Q, idx, None, k, prep.eps)
        pts = new.reshape(n * L, d)
        Q[:, size: size + len(pts)] = steps.point_densities(pts, prep)
        size += len(pts)
    return W, norms


@pytest.mark.parametrize("means", [((-5.0,), (5.0,)), FIG6_MEANS], ids=["B2", "B11"])
@pytest.mark.parametrize("seed", [0, 7])
def test_a_loop_of_the_public_pieces_is_the_simulator_bit_for_bit(means, seed):
    web = InteractingGMMWeb(n_agents=3, means=means, n_steps=30, n_replicates=1)
    W, norms = _loop(web, seed)
    ref = web.run(rng=seed, engine="numpy")
    np.testing.assert_array_equal(W, ref.weights[:, 0])
    np.testing.assert_array_equal(norms, ref.norms[:, 0])
    assert norms[-1] < norms[0]  # the run collapsed, so the comparison is not trivial


def test_prepare_refuses_what_run_refuses_and_sets_the_replicates():
    with pytest.raises(ValueError, match="n_agents"):
        steps.prepare(InteractingGMMWeb(n_agents=0))
    prep = steps.prepare(dataclasses.replace(InteractingGMMWeb(), n_replicates=5),
                         n_replicates=1)
    assert (prep.R, prep.n, prep.B, prep.L) == (1, 3, 2, 3)
    assert steps.read_count(0.29, 100) == 29  # floor(0.29 * 100) in binary is 28.999...
