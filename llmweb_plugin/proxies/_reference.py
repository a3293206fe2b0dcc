"""The paper's pseudo-code as written: a per-agent, per-point loop with nothing cached.

A baseline for tests (the numpy engine must match it to rounding) and for
``benchmarks/bench_gmm.py`` (the speed-up is measured against it). Not used by any run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._shared import _bookkeeping, _draw_gmm_points, _finish, _floor_k, _initial_state
from .gmm_result import GMMWebResult

if TYPE_CHECKING:  # pragma: no cover
    from .gmm import InteractingGMMWeb


def _reference_run(sim: InteractingGMMWeb, rng: np.random.Generator | int | None = None) -> GMMWebResult:
    """Straightforward per-agent, per-point loop (the paper's pseudo-code, nothing cached).

    Same random-draw protocol as :meth:`InteractingGMMWeb.run`, so the same seed gives the same
    numbers to rounding. Ownerships use log-sum-exp of ``log pi_b + log N(u; mu_b, Sigma)``,
    recomputed from the stored points at every use. Slow: for tests and benchmarks only.
    """
    prep = sim._validate()
    gen = np.random.default_rng(rng)
    n, R, T, L, B = prep.n, prep.R, prep.T, prep.L, prep.B
    w0, a0 = _initial_state(prep, gen)
    m0 = a0[0].shape[0]
    book = _bookkeeping(prep, m0)
    A = [list(a0[r]) for r in range(R)]
    P = np.array(w0, dtype=np.float64)  # (R, n, B)
    cov_inv = np.linalg.inv(prep.chol @ prep.chol.T)
    norms = np.empty((T + 1, R))
    W = np.empty((T + 1, R, n, B))
    for t in range(T + 1):
        W[t] = P
        for r in range(R):
            norms[t, r] = math.sqrt(sum(
                float(np.sum((P[r, i] - P[r, j]) ** 2)) for i in range(n) for j in range(n)
            ))
        if t == T:
            break
        size = len(A[0])
        k = _floor_k(prep.beta, size)
        alpha = 1.0 / k
        c = 1.0 / (k * B * B)
        posts = []
        for r in range(R):
            for i in range(n):
                pi = P[r, i].copy()
                posts.append(_draw_gmm_points(gen, pi, L, prep))  # S_i before the update
                U = gen.choice(size, size=k, replace=False)
                for p in U if B > 1 else ():
                    u = A[r][p]
                    logf = np.array([
                        -0.5 * float((u - prep.means[b]) @ cov_inv @ (u - prep.means[b]))
                        for b in range(B)
                    ])
                    lw = np.log(pi) + logf
                    mx = lw.max()
                    own = np.exp(lw - mx) / np.exp(lw - mx).sum()
                    pi = (1.0 - alpha) * pi + alpha * (own - c) / (1.0 - B * c)
                    neg = pi <= 0.0
                    if neg.any():
                        others = pi[~neg].sum()
                        pi = np.where(neg, prep.eps, pi * (1.0 - neg.sum() * prep.eps) / others)
                P[r, i] = pi
        for r in range(R):
            for i in range(n):
                A[r].extend(posts[r * n + i])
        if prep.n_ext > 0:
            assert prep.ext_weights is not None
            for r in range(R):
                A[r].extend(_draw_gmm_points(gen, prep.ext_weights, prep.n_ext, prep))
    final = np.array(P)
    return _finish(prep, W if prep.record_weights else None, final, norms, book, m0)
