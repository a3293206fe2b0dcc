"""Interacting Gaussian-mixture proxy of the LLM web (paper Algorithms 2-3): the simulator.

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

:class:`InteractingGMMWeb` stores its parameters as given; :meth:`InteractingGMMWeb.run` validates
them and hands them to one of two engines that run the same model:

* ``engine="numpy"`` (:mod:`llmweb_plugin.proxies._numpy_engine`): vectorised numpy, with a
  documented random-draw protocol that the paper's plain loop
  (:mod:`llmweb_plugin.proxies._reference`) reproduces to rounding;
* ``engine="numba"`` (:mod:`llmweb_plugin.proxies._numba_engine`, extra ``[fast]``): a compiled
  kernel, parallel over agents (about 8x the update rate on 2 cores), with its own random draws;
* ``engine="auto"`` (the default): numba only for large runs, so small runs keep the numpy
  engine's numbers.

Both engines take what they share from :mod:`llmweb_plugin.proxies._shared` and neither imports
the other; numba is imported only when a run asks for it.

Example:
    >>> sim = InteractingGMMWeb(n_agents=3, means=[[-5.0], [5.0]], cov=[[1.0]], n_steps=20)
    >>> res = sim.run(rng=0)
    >>> res.norms.shape, res.weights.shape, int(res.a_sizes[-1])
    ((21, 1), (21, 1, 3, 2), 189)
    >>> bool(res.norms[-1, 0] < res.norms[0, 0])
    True
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._numpy_engine import _simulate
from ._shared import _bookkeeping, _floor_k, _Prepared, _whiten
from .gmm_result import GMMWebResult

__all__ = ["GMMInjection", "InteractingGMMWeb"]

logger = logging.getLogger(__name__)

#: ``engine="auto"`` picks numba above this many agent-point updates (``R n sum_t k_t``).
_AUTO_NUMBA_UPDATES = 10_000_000


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
            engine: ``"numpy"`` (vectorised numpy, the draw protocol of
                :mod:`llmweb_plugin.proxies._numpy_engine`), ``"numba"`` (compiled parallel
                kernel, :mod:`llmweb_plugin.proxies._numba_engine`: same model, its own random
                draws, needs ``pip install 'llmweb-plugin[fast]'``), or
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
                from ._numba_engine import simulate_numba
            except ImportError as exc:
                if auto:
                    logger.debug("numba unavailable (%s): numpy engine", exc)
                    return _simulate(prep, gen)
                raise ImportError(
                    "engine='numba' needs numba: pip install 'llmweb-plugin[fast]'"
                ) from exc
            return simulate_numba(prep, gen)
        return _simulate(prep, gen)


def _n_updates(prep: _Prepared) -> int:
    """Agent-point updates of a run: ``R n sum_t floor(beta |A(t)|)``."""
    m0 = prep.initial_points.shape[1] if prep.initial_points is not None else prep.n * prep.L
    return int(_bookkeeping(prep, m0)["k"].sum()) * prep.n * prep.R
