"""What both engines of :class:`~llmweb_plugin.proxies.InteractingGMMWeb` share.

The validated parameters (:class:`_Prepared`), the initial state, the GMM point draws, the
normalised densities stored for every point of ``A``, the appending of ``A`` (agents' points, then
the external ones), the per-step bookkeeping (``|A(t)|``, ``k_t``), the coefficients of the online
update, and the assembly of the result. Both engines import this module; it imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .gmm_result import GMMWebResult


def _floor_k(beta: float, size: int) -> int:
    """``floor(beta * |A|)``, robust to binary rounding (``0.29 * 100`` gives 29, not 28)."""
    return math.floor(beta * size + 1e-9)



@dataclass(frozen=True)
class _Prepared:
    """Validated, array-converted parameters of an :class:`InteractingGMMWeb`."""

    n: int
    R: int
    T: int
    L: int
    B: int
    d: int
    beta: float
    eps: float
    alpha0: float
    means: np.ndarray  # (B, d)
    chol: np.ndarray  # (d, d) lower Cholesky factor of cov
    white_means: np.ndarray  # (B, d): chol^{-1} mu_b
    initial_points: np.ndarray | None  # (R, m, d)
    initial_weights: np.ndarray | None  # (R, n, B)
    ext_weights: np.ndarray | None  # (B,)
    n_ext: int
    record_weights: bool


def _whiten(points: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """``chol^{-1} x`` for every row ``x`` of ``points`` (shape ``(m, d)``)."""
    if chol.shape == (1, 1):
        return points / chol[0, 0]
    return np.linalg.solve(chol, points.T).T


def _normalised_densities(points: np.ndarray, prep: _Prepared) -> np.ndarray:
    """``exp(log N_b(x) - max_l log N_l(x))`` for each row x, shape ``(B, m)`` (log-sum-exp shift)."""
    xw = _whiten(points, prep.chol)  # (m, d)
    diff = xw[None, :, :] - prep.white_means[:, None, :]  # (B, m, d)
    logf = -0.5 * np.einsum("bmd,bmd->bm", diff, diff)
    logf -= logf.max(axis=0, keepdims=True)
    return np.exp(logf)


def _draw_gmm_points(
    rng: np.random.Generator, weights: np.ndarray, count: int, prep: _Prepared
) -> np.ndarray:
    """``count`` samples of the GMM with ``weights`` (shape ``(B,)``): shape ``(count, d)``.

    Consumes ``rng.random(count)`` then ``rng.standard_normal((count, d))``.
    """
    u = rng.random(count)
    z = rng.standard_normal((count, prep.d))
    cum = np.cumsum(weights)
    comp = np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), prep.B - 1)
    return prep.means[comp] + z @ prep.chol.T


def _initial_state(prep: _Prepared, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Initial weights ``(R, n, B)`` and ``A(0)`` per replicate (list of ``(m, d)``)."""
    n, R, B, L = prep.n, prep.R, prep.B, prep.L
    if prep.initial_weights is None:
        w0 = rng.dirichlet(np.full(B, prep.alpha0), size=(R, n))
    else:
        w0 = np.array(prep.initial_weights, dtype=np.float64)
    if prep.initial_points is None:
        a0 = []
        for r in range(R):
            a0.append(
                np.concatenate([_draw_gmm_points(rng, w0[r, i], L, prep) for i in range(n)], axis=0)
            )
    else:
        a0 = [np.asarray(prep.initial_points[r]) for r in range(R)]
    return w0, a0


def _bookkeeping(prep: _Prepared, m0: int) -> dict[str, np.ndarray]:
    T = prep.T
    steps = np.arange(T + 1)
    n_syn = steps * prep.n * prep.L
    n_ext = steps * prep.n_ext
    sizes = m0 + n_syn + n_ext
    k = np.array([_floor_k(prep.beta, int(s)) for s in sizes[:T]], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(sizes > 0, n_syn / np.maximum(sizes, 1), 0.0)
    return {"sizes": sizes, "k": k, "n_syn": n_syn, "n_ext": n_ext, "frac": frac}


def _finish(prep: _Prepared, W: np.ndarray | None, final: np.ndarray, norms: np.ndarray,
            book: dict[str, np.ndarray], m0: int, engine: str = "numpy") -> GMMWebResult:
    arrays = [W, final, norms] + list(book.values())
    for arr in arrays:
        if arr is not None:
            arr.setflags(write=False)
    return GMMWebResult(
        norms=norms, weights=W, final_weights=final, a_sizes=book["sizes"], k=book["k"],
        n_seed=m0, n_synthetic=book["n_syn"], n_external=book["n_ext"],
        synthetic_fraction=book["frac"], engine=engine,
    )


def _update_coefficients(k: int, B: int, alpha_scale: float = 1.0) -> tuple[float, float, float]:
    """``(a1, a2, a3)`` of the online update of one agent at one point, for ``k`` points per agent.

    With ``alpha = alpha_scale / k`` and ``c = 1 / (k B^2)``, the paper's update
    ``pi_b' = (1 - alpha) pi_b + alpha (o_b - c) / (1 - B c)`` with ownership
    ``o_b = pi_b q_b / sum_l pi_l q_l`` is ``pi_b' = pi_b (a1 + a2 q_b / sum_l pi_l q_l) - a3``
    where ``a1 = 1 - alpha``, ``a2 = alpha / (1 - B c)``, ``a3 = a2 c``. Both engines use these
    numbers, so they run the same arithmetic.

    Args:
        k: points each agent reads this step (``k_t >= 1``).
        B: number of components, ``>= 2`` (for ``B = 1`` the update is the identity and
            ``1 - B c`` is 0 at ``k = 1``: callers skip it).
        alpha_scale: multiplies ``alpha`` (tests only: shows that a wrong update is detected).
    """
    alpha = alpha_scale / k
    c = 1.0 / (k * B * B)
    a2 = alpha / (1.0 - B * c)
    return 1.0 - alpha, a2, a2 * c


def _append_new_points(rng: np.random.Generator, prep: _Prepared, new_pts: np.ndarray, size: int,
                       store: Callable[[int, int, np.ndarray], None]) -> int:
    """``A += S_1 + ... + S_n``, then (when injecting) the external points, drawn here.

    ``new_pts`` holds every agent's samples, shape ``(R n, L, d)`` (replicate-major);
    ``store(r, start, pts)`` records replicate ``r``'s points ``pts`` at positions ``start...``.
    Draws, per replicate, the external points (the documented protocol's last draws of a step).
    Returns the new ``|A|``.
    """
    n, L, d = prep.n, prep.L, prep.d
    for r in range(prep.R):
        store(r, size, new_pts[r * n: (r + 1) * n].reshape(n * L, d))
    size += n * L
    if prep.n_ext > 0:
        assert prep.ext_weights is not None
        for r in range(prep.R):
            store(r, size, _draw_gmm_points(rng, prep.ext_weights, prep.n_ext, prep))
        size += prep.n_ext
    return size
