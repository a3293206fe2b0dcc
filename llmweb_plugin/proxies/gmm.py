"""Interacting Gaussian-mixture proxy of the LLM web (paper Algorithms 2-3), pure numpy.

``n`` GMMs in ``R^d`` share ``B`` fixed components (means ``mu_b``, one covariance ``Sigma``); only
their mixture weights ``Pi_i`` (rows on the simplex) move. They all read from and write to one
shared, growing point set ``A`` (the "Internet"). One step ``t`` of :class:`InteractingGMMWeb`::

    record ||D(t)||_F                  # D[i, j] = ||Pi_i(t) - Pi_j(t)||_2
    k_t = floor(beta * |A|)
    for every agent i (all agents and replicates at once):
        S_i = L samples from GMM_i(t)  # drawn before any update
        U_i = k_t points of A, uniform without replacement, in random order
        for u in U_i (sequentially), with alpha = 1 / k_t and c = 1 / (k_t B^2):
            o_b  = pi_b N(u; mu_b, Sigma) / sum_l pi_l N(u; mu_l, Sigma)
            pi_b = (1 - alpha) pi_b + alpha (o_b - c) / (1 - B c)
            if some pi_b <= 0: set those to eps, rescale the others so the row sums to 1
    A += S_1 + ... + S_n (+ external points when ``injection`` is set)

Implementation notes:

* The normalised component densities ``q_b(u) = exp(log N_b(u) - max_l log N_l(u))`` of every
  point are computed once, when it is appended to ``A`` (log-sum-exp shift, so nothing underflows
  for well-separated components), and stored as an array of shape ``(B, n_replicates * capacity)``.
  A step only gathers the rows its agents drew. The ownership is then ``pi q / sum(pi q)``.
* The update is sequential in the points, not in the agents: the loop over the ``k_t`` points runs
  in Python with every operation vectorised over all ``n_agents * n_replicates`` agents (six numpy
  calls per point; for ``B = 2`` on ``pi_1`` alone). The ``<= 0`` test is skipped for a chunk of
  points when a lower bound proves no weight can reach 0 in it; otherwise the running minimum is
  tracked and, if some weight reached ``<= 0``, the chunk is replayed point by point with the clip
  (same arithmetic, same numbers).
* Cost: ``n * sum_t k_t`` point updates and ``n * sum_t |A(t)|`` random draws, i.e. quadratic in
  ``T``. The paper's Fig. 4 (5 replicates) takes about half a second; ``n = 1000`` agents for
  ``T = 200`` steps (3e10 updates and draws) takes many minutes: see ``benchmarks/bench_gmm.py``.
  ``run(engine="numba")`` (extra ``[fast]``, :mod:`llmweb_plugin.proxies._numba_engine`) runs the
  same model in a compiled kernel, parallel over agents (about 8x the update rate on 2 cores), with its own
  random draws; ``engine="auto"`` (the default) uses it only for large runs, so small runs keep
  these numbers.
* Random draws follow one documented protocol so that a plain per-agent, per-point loop
  (:func:`_reference_run`) reproduces the result to rounding: initial weights
  ``rng.dirichlet(a * 1_B, size=(R, n))``; then for A(0) (unless given) and at every step, for each
  replicate ``r`` and agent ``i`` in order: ``rng.random(L)`` (component, by inverse CDF),
  ``rng.standard_normal((L, d))`` (noise), and at steps ``rng.choice(|A|, k_t, replace=False)``;
  then, only when injecting, for each replicate ``rng.random(m)`` and
  ``rng.standard_normal((m, d))``.

Example:
    >>> sim = InteractingGMMWeb(n_agents=3, means=[[-5.0], [5.0]], cov=[[1.0]], n_steps=20)
    >>> res = sim.run(rng=0)
    >>> res.norms.shape, res.weights.shape, int(res.a_sizes[-1])
    ((21, 1), (21, 1, 3, 2), 189)
    >>> bool(res.norms[-1, 0] < res.norms[0, 0])
    True
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from llmweb_plugin.metrics import collapse_norm

if TYPE_CHECKING:  # pragma: no cover
    from llmweb_plugin.proxies.silo import SiloGMM

__all__ = [
    "GMM_PRESETS",
    "GMMInjection",
    "GMMWebResult",
    "InteractingGMMWeb",
    "WeightDecayCheck",
    "gmm_preset",
    "weight_decay_check",
]

logger = logging.getLogger(__name__)

# At most this many int32 point indices are held at once (agents are processed in blocks beyond).
_INDEX_BUDGET = 1 << 27
# At most this many floats in one gathered chunk of densities.
_GATHER_BUDGET = 1 << 17


def _floor_k(beta: float, size: int) -> int:
    """``floor(beta * |A|)``, robust to binary rounding (``0.29 * 100`` gives 29, not 28)."""
    return math.floor(beta * size + 1e-9)


@dataclass(frozen=True, kw_only=True)
class GMMInjection:
    """External ("human") data added to ``A`` every step, from a fixed mixture.

    The external mixture uses the web's components (``means``, ``cov``) with its own fixed
    ``weights``. ``n_points`` points are appended after the agents' samples at every step, so the
    synthetic fraction of ``A`` is known exactly (see :attr:`GMMWebResult.synthetic_fraction`).
    ``n_points=0`` draws nothing and reproduces the plain run bit for bit.

    Attributes:
        weights: external mixture weights, shape ``(B,)``, non-negative, summing to 1.
        n_points: external points appended per step (per replicate), ``>= 0``.

    Example:
        >>> GMMInjection(weights=[0.5, 0.5], n_points=3).n_points
        3
    """

    weights: ArrayLike
    n_points: int = 0


@dataclass(frozen=True, kw_only=True)
class GMMWebResult:
    """Frozen output of :meth:`InteractingGMMWeb.run`. Arrays are read-only, time first.

    Row ``t`` holds the state after ``t`` steps: ``t = 0`` is the initial state, ``t = n_steps``
    the final one. The paper records ``||D||_F`` at the start of its step ``t = 1..T``, i.e. our
    rows ``0..T-1``.

    Attributes:
        norms: ``||D(t)||_F`` of the agents' weight vectors, shape ``(n_steps + 1, n_replicates)``.
        weights: mixture weights, shape ``(n_steps + 1, n_replicates, n_agents, B)``, or ``None``
            when ``record_weights=False`` (only the final weights are then kept in
            ``final_weights``).
        final_weights: shape ``(n_replicates, n_agents, B)``.
        a_sizes: ``|A(t)|``, shape ``(n_steps + 1,)`` (the same in every replicate).
        k: points drawn per agent at step ``t = 0..n_steps-1``, ``floor(beta |A(t)|)``,
            shape ``(n_steps,)``.
        n_seed: size of ``A(0)`` (seed data: neither synthetic nor external).
        n_synthetic: points of ``A(t)`` generated by the agents, shape ``(n_steps + 1,)``.
        n_external: points of ``A(t)`` from the injection, shape ``(n_steps + 1,)``.
        synthetic_fraction: ``n_synthetic / a_sizes``, shape ``(n_steps + 1,)``.
        engine: ``"numpy"`` or ``"numba"``: which engine ran (they draw different random
            numbers, so the same seed gives the same numbers only with the same engine).
    """

    norms: np.ndarray
    weights: np.ndarray | None
    final_weights: np.ndarray
    a_sizes: np.ndarray
    k: np.ndarray
    n_seed: int
    n_synthetic: np.ndarray
    n_external: np.ndarray
    synthetic_fraction: np.ndarray
    engine: str = "numpy"

    @property
    def n_steps(self) -> int:
        """Number of steps run."""
        return int(self.norms.shape[0] - 1)

    @property
    def n_replicates(self) -> int:
        """Number of independent replicates."""
        return int(self.norms.shape[1])

    @property
    def mean_norms(self) -> np.ndarray:
        """Mean of ``norms`` over replicates, shape ``(n_steps + 1,)``."""
        return np.asarray(self.norms.mean(axis=1))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the series (lists of floats/ints; weights omitted)."""
        return {
            "n_steps": self.n_steps,
            "n_replicates": self.n_replicates,
            "t": list(range(self.n_steps + 1)),
            "norms": self.norms.T.tolist(),
            "mean_norms": self.mean_norms.tolist(),
            "a_sizes": self.a_sizes.tolist(),
            "k": self.k.tolist(),
            "n_seed": self.n_seed,
            "n_synthetic": self.n_synthetic.tolist(),
            "n_external": self.n_external.tolist(),
            "synthetic_fraction": self.synthetic_fraction.tolist(),
            "engine": self.engine,
        }


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


def _as_int(value: object, name: str, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        # ValueError, not TypeError: every bad parameter raises ValueError (issue 3).
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}. {fix}")  # noqa: TRY004
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}. {fix}")
    return int(value)


def _as_float(value: object, name: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number; got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return out


def _check_simplex_rows(w: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.allclose(w.sum(-1), 1.0, atol=1e-8):
        raise ValueError(f"{name} must be non-negative with rows summing to 1 (points of the simplex)")


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


def _clip_columns(pi: np.ndarray, eps: float) -> None:
    """In place on ``pi`` of shape ``(B, N)``: entries ``<= 0`` become ``eps``, others rescaled."""
    neg = pi <= 0.0
    cols = np.flatnonzero(neg.any(axis=0))
    sub = pi[:, cols]
    negs = neg[:, cols]
    others = np.where(negs, 0.0, sub)
    scale = (1.0 - negs.sum(axis=0) * eps) / others.sum(axis=0)
    pi[:, cols] = np.where(negs, eps, sub * scale)


def _update_chunk(
    pi: np.ndarray, G: np.ndarray, a1: float, a2: float, a3: float, eps: float, bufs: dict
) -> None:
    """Apply the online update for the points of one chunk, in order, to all agents at once.

    Each point costs six numpy calls on ``(B, N)`` arrays (Python overhead dominates for small N).
    Clipping is skipped when provably unnecessary: while all weights are positive,
    ``pi_b' = pi_b (a1 + a2 q_b / s) - a3 >= a1 pi_b - a3``, so after ``c`` points every weight is
    at least ``a1^c min(pi) - c a3``; if that is positive no weight can reach 0 in the chunk.
    Otherwise the running minimum is tracked and, if some weight reached ``<= 0``, the chunk is
    replayed point by point with the clip (same arithmetic, so the same numbers).

    Args:
        pi: weights, shape ``(B, N)`` (updated in place).
        G: normalised densities of each agent's points, shape ``(c, B, N)``.
        a1, a2, a3: ``1 - alpha``, ``alpha / (1 - B c)``, ``alpha c / (1 - B c)``.
        eps: floor for weights that reach ``<= 0``.
        bufs: scratch arrays: ``t``, ``u`` and ``mn`` of shape ``(B, N)``, ``s`` of shape
            ``(N,)``.
    """
    Gs = G * a2
    t, s, u, mn = bufs["t"], bufs["s"], bufs["u"], bufs["mn"]
    mul, div, add, sub = np.multiply, np.divide, np.add, np.subtract
    n_pts = G.shape[0]
    # mode 0: no weight can reach 0 (plain loop); 1: track the running minimum; 2: clip.
    mode = 0 if float(pi.min()) * a1**n_pts * (1.0 - 1e-9) > n_pts * a3 else 1
    if mode:
        start = pi.copy()
        mn.fill(1.0)
    while True:
        for q, qs in zip(G, Gs):
            mul(pi, q, t)
            add.reduce(t, axis=0, out=s)  # s = sum_b pi_b q_b
            div(qs, s, u)  # alpha/(1 - Bc) * o_b / pi_b
            add(u, a1, u)
            mul(pi, u, pi)  # (1 - alpha) pi + alpha o / (1 - Bc)
            sub(pi, a3, pi)
            if mode == 1:
                np.minimum(mn, pi, out=mn)
            elif mode == 2 and pi.min() <= 0.0:
                _clip_columns(pi, eps)
        if mode != 1 or mn.min() > 0.0:
            return
        # Some weight reached <= 0 inside the chunk: replay it point by point with the clip.
        pi[...] = start
        mode = 2


def _update_chunk_b2(
    p: np.ndarray, G: np.ndarray, a1: float, a3: float, eps: float, bufs: dict
) -> None:
    """:func:`_update_chunk` for ``B = 2`` on ``p = pi_1`` alone (``pi_2 = 1 - p``).

    ``p' = p (a1 + a2 q_1 / (q_2 + p (q_1 - q_2))) - a3`` is the paper's update of ``pi_1``; the
    update of ``pi_2`` is ``1 - p'`` exactly in exact arithmetic (it preserves the sum). Half the
    work of the general kernel for many agents. Clip: ``p <= 0`` gives ``eps``, ``p >= 1``
    (``pi_2 <= 0``) gives ``1 - eps``.

    Args:
        p: ``pi_1`` of every agent, shape ``(N,)`` (updated in place).
        G: per point and agent ``(q_1 - q_2, q_2, a2 q_1)``, shape ``(c, 3, N)``.
        a1, a3: ``1 - alpha`` and ``alpha c / (1 - B c)``.
        eps: floor.
        bufs: scratch: ``den``, ``mn``, ``mx`` of shape ``(N,)``.
    """
    den, mn, mx = bufs["den"], bufs["mn"], bufs["mx"]
    mul, div, add, sub = np.multiply, np.divide, np.add, np.subtract
    n_pts = G.shape[0]
    lo = min(float(p.min()), 1.0 - float(p.max()))
    # mode 0: no weight can reach 0 or 1 (plain loop); 1: track min and max; 2: clip.
    mode = 0 if lo * a1**n_pts * (1.0 - 1e-9) > n_pts * a3 else 1
    if mode:
        start = p.copy()
        mn.fill(1.0)
        mx.fill(0.0)
    while True:
        for dl, q2, q1s in G:
            mul(dl, p, den)
            add(den, q2, den)  # sum_b pi_b q_b
            div(q1s, den, den)  # alpha/(1 - Bc) * o_1 / pi_1
            add(den, a1, den)
            mul(p, den, p)
            sub(p, a3, p)
            if mode == 1:
                np.minimum(mn, p, out=mn)
                np.maximum(mx, p, out=mx)
            elif mode == 2 and (p.min() <= 0.0 or p.max() >= 1.0):
                p[p <= 0.0] = eps
                p[p >= 1.0] = 1.0 - eps
        if mode != 1 or (mn.min() > 0.0 and mx.max() < 1.0):
            return
        p[...] = start
        mode = 2


@dataclass(frozen=True, kw_only=True)
class InteractingGMMWeb:
    """The LWD proxy: ``n`` GMMs with shared components whose weights learn from a shared web.

    Parameters are stored as given and validated by :meth:`run`. Defaults are the paper's Fig. 4
    setting with one replicate (use ``gmm_preset("lwd-fig4")`` for all five).

    Attributes:
        n_agents: number of GMMs ``n`` (>= 1).
        means: component means, shape ``(B, d)``; a 1-D sequence means ``d = 1``.
        cov: shared covariance: a ``(d, d)`` symmetric positive-definite matrix, a length-``d``
            diagonal of variances, or a scalar variance (times the identity).
        dirichlet_alpha: concentration ``a`` of the ``Dirichlet(a, ..., a)`` initial weights.
        beta: fraction of ``A`` each agent reads per step, in ``(0, 1]``.
        samples_per_step: ``L``, samples each GMM posts to ``A`` per step.
        n_steps: ``T``.
        n_replicates: independent replicates run together.
        eps: floor for weights that reach ``<= 0`` (paper: unreported; ours 1e-3), in
            ``(0, 1/B)``.
        initial_points: ``A(0)``, shape ``(m, d)`` (shared by the replicates) or
            ``(n_replicates, m, d)``; ``None`` means ``L`` samples from each initial GMM.
        initial_weights: optional fixed initial weights ``(n_agents, B)`` or
            ``(n_replicates, n_agents, B)`` replacing the Dirichlet draw.
        injection: optional :class:`GMMInjection` of external data (default: none).
        record_weights: keep the weights of every step (``(T + 1) R n B`` floats).

    Example:
        >>> sim = InteractingGMMWeb(n_agents=2, means=[0.0, 3.0], cov=1.0, n_steps=3,
        ...                         n_replicates=2)
        >>> res = sim.run(rng=1)
        >>> res.norms.shape, res.a_sizes.tolist(), res.k.tolist()
        ((4, 2), [6, 12, 18, 24], [3, 6, 9])
    """

    n_agents: int = 3
    means: ArrayLike = ((-5.0,), (5.0,))
    cov: ArrayLike = ((1.0,),)
    dirichlet_alpha: float = 1.0
    beta: float = 0.5
    samples_per_step: int = 3
    n_steps: int = 200
    n_replicates: int = 1
    eps: float = 1e-3
    initial_points: ArrayLike | None = None
    initial_weights: ArrayLike | None = None
    injection: GMMInjection | None = None
    record_weights: bool = True

    # ------------------------------------------------------------------ validation
    def _validate(self) -> _Prepared:
        n = _as_int(self.n_agents, "n_agents", 1, "Use at least one agent.")
        R = _as_int(self.n_replicates, "n_replicates", 1, "Use at least one replicate.")
        T = _as_int(self.n_steps, "n_steps", 0, "Use n_steps >= 0.")
        L = _as_int(self.samples_per_step, "samples_per_step", 0, "Use L >= 0.")

        means = np.asarray(self.means, dtype=np.float64)
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(
                f"means must have shape (B, d) with B >= 1 components; got shape "
                f"{np.shape(self.means)}. Pass e.g. means=[[-5.0], [5.0]]."
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means must be finite")
        B, d = means.shape

        cov = np.asarray(self.cov, dtype=np.float64)
        if cov.ndim == 0:
            cov = np.eye(d) * cov
        elif cov.ndim == 1:
            if cov.shape[0] != d:
                raise ValueError(f"cov as a diagonal must have length d={d}; got {cov.shape[0]}")
            cov = np.diag(cov)
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape (d, d) = ({d}, {d}); got {cov.shape}")
        if not np.all(np.isfinite(cov)):
            raise ValueError("cov must be finite")
        diag = np.diag(cov)
        if np.any(diag <= 0):
            raise ValueError(
                f"cov has non-positive variance(s) {diag[diag <= 0].tolist()} on its diagonal; "
                "variances must be > 0"
            )
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
            raise ValueError("cov must be symmetric")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError("cov must be positive definite (its Cholesky factorisation failed)") from None

        a = _as_float(self.dirichlet_alpha, "dirichlet_alpha")
        if a <= 0:
            raise ValueError(f"dirichlet_alpha must be > 0; got {a}")
        beta = _as_float(self.beta, "beta")
        if not 0.0 < beta <= 1.0:
            raise ValueError(
                f"beta must lie in (0, 1] (the fraction of A each agent reads per step); got {beta}"
            )
        eps = _as_float(self.eps, "eps")
        if not 0.0 < eps < 1.0 / B:
            raise ValueError(f"eps must lie in (0, 1/B) = (0, {1.0 / B:g}); got {eps}")

        init_pts = None
        if self.initial_points is not None:
            pts = np.asarray(self.initial_points, dtype=np.float64)
            if pts.ndim == 1 and d == 1:
                pts = pts[:, None]
            if pts.ndim == 2:
                pts = np.broadcast_to(pts, (R,) + pts.shape)
            if pts.ndim != 3 or pts.shape[0] != R or pts.shape[2] != d:
                raise ValueError(
                    f"initial_points must have shape (m, d={d}) or (n_replicates={R}, m, d); "
                    f"got {np.shape(self.initial_points)}"
                )
            if not np.all(np.isfinite(pts)):
                raise ValueError("initial_points must be finite")
            init_pts = pts
            m0 = pts.shape[1]
        else:
            m0 = n * L
        k0 = _floor_k(beta, m0)
        if k0 < 1:
            raise ValueError(
                f"k_0 = floor(beta * |A(0)|) = floor({beta} * {m0}) = 0: agents would read no "
                "points at the first step (alpha = 1/k_0 undefined). Supply non-empty "
                "initial_points, or raise beta, samples_per_step or n_agents."
            )

        init_w = None
        if self.initial_weights is not None:
            w = np.asarray(self.initial_weights, dtype=np.float64)
            if w.ndim == 2:
                w = np.broadcast_to(w, (R,) + w.shape)
            if w.shape != (R, n, B):
                raise ValueError(
                    f"initial_weights must have shape (n_agents, B) = ({n}, {B}) or "
                    f"(n_replicates, n_agents, B); got {np.shape(self.initial_weights)}"
                )
            _check_simplex_rows(w, "initial_weights")
            init_w = w

        ext_w = None
        n_ext = 0
        if self.injection is not None:
            inj = self.injection
            if not isinstance(inj, GMMInjection):
                raise ValueError("injection must be a GMMInjection(weights=..., n_points=...) or None")
            n_ext = _as_int(inj.n_points, "injection.n_points", 0, "Use 0 for no injection.")
            ext_w = np.asarray(inj.weights, dtype=np.float64)
            if ext_w.shape != (B,):
                raise ValueError(f"injection.weights must have shape (B,) = ({B},); got {ext_w.shape}")
            _check_simplex_rows(ext_w, "injection.weights")

        return _Prepared(
            n=n, R=R, T=T, L=L, B=B, d=d, beta=beta, eps=eps, alpha0=a, means=means, chol=chol,
            white_means=_whiten(means, chol), initial_points=init_pts, initial_weights=init_w,
            ext_weights=ext_w, n_ext=n_ext, record_weights=bool(self.record_weights),
        )

    # ------------------------------------------------------------------ simulation
    def run(self, rng: np.random.Generator | int | None = None, *,
            engine: str = "auto") -> GMMWebResult:
        """Simulate ``n_steps`` steps for all replicates.

        Args:
            rng: a ``numpy.random.Generator``, a seed, or ``None`` (fresh entropy).
            engine: ``"numpy"`` (vectorised numpy, the documented draw protocol above),
                ``"numba"`` (compiled parallel kernel,
                :mod:`llmweb_plugin.proxies._numba_engine`: same model, its own random draws, needs ``pip install 'llmweb-plugin[fast]'``), or
                ``"auto"``: numba when it is installed and the run is large (more than
                ``_AUTO_NUMBA_UPDATES`` agent-point updates), numpy otherwise (so small runs keep
                the numpy engine's numbers).

        Returns:
            A frozen :class:`GMMWebResult` (``engine`` says which engine ran).

        Raises:
            ValueError: if a parameter or ``engine`` is invalid (the message names the fix).
            ImportError: if ``engine="numba"`` and numba is not installed.
        """
        if engine not in ("auto", "numpy", "numba"):
            raise ValueError(f"engine must be 'auto', 'numpy' or 'numba'; got {engine!r}")
        prep = self._validate()
        gen = np.random.default_rng(rng)
        auto = engine == "auto"
        if auto:
            engine = "numba" if _n_updates(prep) > _AUTO_NUMBA_UPDATES else "numpy"
        if engine == "numba":
            try:
                from llmweb_plugin.proxies._numba_engine import simulate_numba
            except ImportError as exc:
                if auto:
                    logger.debug("numba unavailable (%s): numpy engine", exc)
                    return _simulate(prep, gen)
                raise ImportError(
                    "engine='numba' needs numba: pip install 'llmweb-plugin[fast]'"
                ) from exc
            return simulate_numba(prep, gen)
        return _simulate(prep, gen)


#: ``engine="auto"`` picks numba above this many agent-point updates (``R n sum_t k_t``).
_AUTO_NUMBA_UPDATES = 10_000_000


def _n_updates(prep: _Prepared) -> int:
    """Agent-point updates of a run: ``R n sum_t floor(beta |A(t)|)``."""
    m0 = prep.initial_points.shape[1] if prep.initial_points is not None else prep.n * prep.L
    return int(_bookkeeping(prep, m0)["k"].sum()) * prep.n * prep.R


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


def _update_agents(pi: np.ndarray, Q: np.ndarray, idx: np.ndarray, off: np.ndarray | None,
                   k: int, eps: float) -> None:
    """One step's online update of a block of agents over their ``k`` drawn points, in order.

    Args:
        pi: the block's weights, shape ``(B, nb)`` (a column per agent; updated in place, may
            be a view).
        Q: normalised densities of the points of ``A``, shape ``(B, total)``.
        idx: each agent's drawn point indices, in order, shape ``(nb, k)``.
        off: flat offset into ``Q`` of each agent's replicate, shape ``(nb,)``, or ``None``
            (all agents index ``Q`` from 0).
        k: points per agent (``k_t``).
        eps: floor for weights that reach ``<= 0``.
    """
    B, nb = pi.shape
    if B == 1:
        return  # the update is the identity on the 1-simplex (and 1 - Bc = 0 at k = 1)
    a1 = 1.0 - 1.0 / k
    c = 1.0 / (k * B * B)
    a2 = (1.0 / k) / (1.0 - B * c)
    a3 = a2 * c
    chunk = max(1, min(k, _GATHER_BUDGET // (B * nb)))
    if off is not None:
        off = off.astype(idx.dtype)
    if B == 2:
        p1 = pi[0].copy()
        bufs = {"den": np.empty(nb), "mn": np.empty(nb), "mx": np.empty(nb)}
    else:
        sub = np.ascontiguousarray(pi)
        bufs = {"t": np.empty((B, nb)), "s": np.empty(nb), "u": np.empty((B, nb)),
                "mn": np.empty((B, nb))}
    for j0 in range(0, k, chunk):
        flat = np.ascontiguousarray(idx[:, j0: j0 + chunk].T)  # (c, nb)
        if off is not None:
            flat += off
        G = np.empty((flat.shape[0], B if B != 2 else 3, nb))
        if B == 2:
            g1 = np.take(Q[0], flat)
            g2 = np.take(Q[1], flat)
            np.subtract(g1, g2, out=G[:, 0, :])
            G[:, 1, :] = g2
            np.multiply(g1, a2, out=G[:, 2, :])
            _update_chunk_b2(p1, G, a1, a3, eps, bufs)
        else:
            for b in range(B):  # one 1-D gather per component: cache friendly
                G[:, b, :] = np.take(Q[b], flat)
            _update_chunk(sub, G, a1, a2, a3, eps, bufs)
    if B == 2:
        pi[0] = p1
        pi[1] = 1.0 - p1
    else:
        pi[...] = sub


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


def _simulate(prep: _Prepared, rng: np.random.Generator) -> GMMWebResult:
    n, R, T, L, B, d = prep.n, prep.R, prep.T, prep.L, prep.B, prep.d
    N = n * R
    w0, a0 = _initial_state(prep, rng)
    m0 = a0[0].shape[0]
    book = _bookkeeping(prep, m0)
    cap = int(book["sizes"][-1])

    # Normalised densities of every point of A: (B, R * cap); replicate r occupies [r*cap, ...).
    Q = np.empty((B, R * cap))

    def store(r: int, start: int, pts: np.ndarray) -> None:
        Q[:, r * cap + start: r * cap + start + len(pts)] = _normalised_densities(pts, prep)

    for r in range(R):
        store(r, 0, a0[r])
    pi = np.ascontiguousarray(w0.reshape(N, B).T)  # (B, N), column = replicate-major agent
    norms = np.empty((T + 1, R))
    W = np.empty((T + 1, R, n, B)) if prep.record_weights else None
    offs = (np.arange(N) // n) * cap  # flat offset of each agent's replicate
    size = m0

    for t in range(T + 1):
        cur = pi.T.reshape(R, n, B)
        if W is not None:
            W[t] = cur
        norms[t] = collapse_norm(cur) if n > 1 else 0.0
        if t == T:
            break
        k = int(book["k"][t])
        logger.debug("step %d: |A| = %d, k_t = %d, %d agents", t, size, k, N)

        # Agents are processed in blocks so that at most _INDEX_BUDGET indices are held.
        block = max(1, min(N, _INDEX_BUDGET // max(k, 1)))
        new_pts = np.empty((N, L, d))
        for b0 in range(0, N, block):
            b1 = min(N, b0 + block)
            idx = np.empty((b1 - b0, k), dtype=np.int64 if R * cap >= 2**31 else np.int32)
            for row in range(b0, b1):  # draw protocol: (r, i) in order
                new_pts[row] = _draw_gmm_points(rng, pi[:, row], L, prep)
                idx[row - b0] = rng.choice(size, size=k, replace=False)
            _update_agents(pi[:, b0:b1], Q, idx, offs[b0:b1] if R > 1 else None, k, prep.eps)

        # A += S_1 + ... + S_n (then the external points), after all updates.
        size = _append_new_points(rng, prep, new_pts, size, store)
    final = np.array(pi.T.reshape(R, n, B))
    return _finish(prep, W, final, norms, book, m0)


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


# ---------------------------------------------------------------------- theory check
@dataclass(frozen=True, kw_only=True)
class WeightDecayCheck:
    """Measured per-step decay of pairwise weight differences vs the sketch's prediction.

    For every pair of agents ``i < j``, component ``b`` and replicate, ``d(t) = pi_ib(t) -
    pi_jb(t)``. The sketch predicts ``E[d(t+1) | d(t)] ~ (1 - 1/k_t)^{k_t} d(t)``.

    Attributes:
        t: steps ``0..T-1`` (transition ``t -> t+1``), shape ``(T,)``.
        k: ``k_t``, shape ``(T,)``.
        predicted: ``(1 - 1/k_t)^{k_t}``, shape ``(T,)``.
        slope: least-squares slope of ``d(t+1)`` on ``d(t)`` through 0 over all pairs,
            components and replicates, shape ``(T,)``.
        abs_ratio: ``mean |d(t+1)| / mean |d(t)|``, shape ``(T,)``.
        mean_abs_diff: ``mean |d(t)|``, shape ``(T + 1,)``.
    """

    t: np.ndarray
    k: np.ndarray
    predicted: np.ndarray
    slope: np.ndarray
    abs_ratio: np.ndarray
    mean_abs_diff: np.ndarray


def weight_decay_check(result: GMMWebResult) -> WeightDecayCheck:
    """Compare the measured decay of pairwise weight differences with ``(1 - 1/k_t)^{k_t}``.

    Args:
        result: a run with ``record_weights=True`` and at least two agents.

    Returns:
        A :class:`WeightDecayCheck`.

    Example:
        >>> res = InteractingGMMWeb(n_steps=5, n_replicates=4).run(rng=0)
        >>> chk = weight_decay_check(res)
        >>> chk.slope.shape, round(float(chk.predicted[0]), 3)
        ((5,), 0.316)
    """
    if result.weights is None:
        raise ValueError("weight_decay_check needs the weight history: run with record_weights=True")
    W = result.weights  # (T+1, R, n, B)
    n = W.shape[2]
    if n < 2:
        raise ValueError("weight_decay_check needs at least two agents")
    iu, ju = np.triu_indices(n, 1)
    D = (W[:, :, iu, :] - W[:, :, ju, :]).reshape(W.shape[0], -1)  # (T+1, pairs*R*B)
    prev, nxt = D[:-1], D[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (prev * nxt).sum(1) / (prev * prev).sum(1)
        mad = np.abs(D).mean(1)
        ratio = mad[1:] / mad[:-1]
    k = result.k.astype(np.float64)
    predicted = (1.0 - 1.0 / k) ** k
    return WeightDecayCheck(t=np.arange(len(k)), k=result.k.copy(), predicted=predicted,
                            slope=slope, abs_ratio=ratio, mean_abs_diff=mad)


# ---------------------------------------------------------------------- presets
#: Fig. 6 means (our choice; the paper does not report them): 11 unit-variance components in
#: d = 1 at -5, -4, ..., 5 (spacing one standard deviation, so neighbours overlap strongly).
_FIG6_MEANS = tuple((float(x),) for x in range(-5, 6))


def _build_presets() -> dict[str, Any]:
    from llmweb_plugin.proxies.silo import SiloGMM

    fig4 = InteractingGMMWeb(
        n_agents=3, means=((-5.0,), (5.0,)), cov=((1.0,),), dirichlet_alpha=1.0, beta=0.5,
        samples_per_step=3, n_steps=200, n_replicates=5,
    )
    return {
        # Paper Fig. 4: n=3, d=1, B=2, means +-5, unit variance, a=1, beta=0.5, L=3, T=200, 5 reps.
        "lwd-fig4": fig4,
        # Paper Fig. 6: B=11 (means our choice: -5..5, unit variance), other settings as Fig. 4.
        "lwd-fig6": dataclasses.replace(fig4, means=_FIG6_MEANS),
        # Performance target: Fig. 4 with n=1000 agents, one replicate.
        "lwd-fig4-n1000": dataclasses.replace(fig4, n_agents=1000, n_replicates=1),
        # Fig. 4 with 3 external points per step from a balanced mixture (mitigation demo).
        "lwd-fig4-inject": dataclasses.replace(
            fig4, injection=GMMInjection(weights=(0.5, 0.5), n_points=3)
        ),
        # Companion paper (silos): n=30, K=30 means 0..29, sigma 0.2, r=5, no mirroring.
        "companion-silo": SiloGMM(
            n_agents=30, n_components=30, mirror_prob=0.0, n_neighbors=5, rag_size=5,
            n_steps=200, n_replicates=10,
        ),
        # Companion paper: mirroring with probability p = 0.4 slows consensus.
        "companion-mirror": SiloGMM(
            n_agents=30, n_components=30, mirror_prob=0.4, n_neighbors=5, rag_size=5,
            n_steps=200, n_replicates=10,
        ),
    }


class _LazyPresets(Mapping[str, Any]):
    """Read-only name -> simulator mapping, built on first use (avoids an import cycle)."""

    _data: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        if self._data is None:
            type(self)._data = MappingProxyType(_build_presets())
        assert self._data is not None
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return f"GMM_PRESETS({sorted(self._get())})"


#: Named configurations: ``lwd-*`` are :class:`InteractingGMMWeb`, ``companion-*`` are
#: :class:`~llmweb_plugin.proxies.SiloGMM`.
GMM_PRESETS: Mapping[str, Any] = _LazyPresets()


def gmm_preset(name: str, **overrides: Any) -> InteractingGMMWeb | SiloGMM:
    """The simulator configured as preset ``name``, with optional field overrides.

    Args:
        name: a key of :data:`GMM_PRESETS` (``lwd-fig4``, ``lwd-fig6``, ``lwd-fig4-n1000``,
            ``lwd-fig4-inject``, ``companion-silo``, ``companion-mirror``).
        **overrides: fields to replace, e.g. ``n_replicates=2``.

    Example:
        >>> gmm_preset("lwd-fig4", n_steps=10).n_replicates
        5
    """
    try:
        base = GMM_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(GMM_PRESETS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base
