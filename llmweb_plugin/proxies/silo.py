"""The companion paper's interacting GMMs: RAG sets, partner choice, silos (pure numpy).

After E. L. Wang et al., "Gaussian mixture models as a proxy for interacting language models"
(arXiv:2506.00077), as restated in ``lwd-paper.md`` section 4. ``n`` agents share ``K``
components (means ``mu_b``, isotropic standard deviation ``sigma``); agent ``i`` has weights
``w_i`` and a private RAG set of ``r`` points. Every step, synchronously (all agents read the state
of step ``t - 1``), each agent ``i``:

1. picks a partner ``j``: itself with probability ``p`` ("mirroring"), otherwise uniformly among its
   ``k`` nearest neighbours by Euclidean distance between weight vectors (``i`` excluded; ties
   broken uniformly at random **[our reading]**);
2. draws a query ``x ~ GMM_i``;
3. ``j`` answers: a copy of ``j``'s RAG set with its point farthest from ``x`` replaced by ``x``, one
   EM weight step from ``w_j`` (responsibilities averaged over the ``r`` points, clipped to
   ``[1e-12, 1 - 1e-12]``, renormalised), then ``y`` drawn from that temporary GMM;
4. ``i`` replaces the point of its own RAG set farthest from ``y`` with ``y`` and takes one EM step.

Read-outs: an agent's silo is ``argmax_b w_ib``; the number of distinct silos per step; ``t*`` the
last step with more than one silo. Replicates are vectorised together with the agents.

Random-draw protocol per step (whole ``(R, n)`` arrays at once): ``rng.random((R, n, n))`` tie-break
keys, ``rng.integers(0, k, (R, n))`` neighbour pick, ``rng.random((R, n))`` mirroring, then the query
(``rng.random``, ``rng.standard_normal``), then the answer (same two).

Example:
    >>> res = SiloGMM(n_agents=6, n_components=6, n_neighbors=2, rag_size=3, n_steps=5,
    ...               n_replicates=2).run(rng=0)
    >>> res.n_silos.shape, res.n_silos[0].tolist()
    ((6, 2), [6, 6])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SiloGMM", "SiloResult"]

_CLIP = 1e-12


@dataclass(frozen=True, kw_only=True)
class SiloResult:
    """Frozen output of :meth:`SiloGMM.run`; arrays are read-only and time first.

    Attributes:
        n_silos: distinct silos (``argmax`` components) per step, shape
            ``(n_steps + 1, n_replicates)``; row 0 is the initial state.
        silos: each agent's silo per step, shape ``(n_steps + 1, n_replicates, n_agents)``.
        final_weights: shape ``(n_replicates, n_agents, K)``.
        t_star: last step with more than one silo, shape ``(n_replicates,)``; equals ``n_steps``
            when the run ended with several silos (censored), ``-1`` if it started with one.
        converged: whether a single silo remained at ``n_steps``, shape ``(n_replicates,)``.
    """

    n_silos: np.ndarray
    silos: np.ndarray
    final_weights: np.ndarray
    t_star: np.ndarray
    converged: np.ndarray

    @property
    def n_steps(self) -> int:
        """Number of steps run."""
        return int(self.n_silos.shape[0] - 1)

    @property
    def final_silos(self) -> np.ndarray:
        """Silo count at the last step, shape ``(n_replicates,)``."""
        return np.asarray(self.n_silos[-1])

    def summary(self) -> dict[str, float]:
        """Mean and standard error (over replicates) of the final silo count, and mean ``t*``."""
        f = self.final_silos.astype(np.float64)
        R = f.shape[0]
        se = float(f.std(ddof=1) / math.sqrt(R)) if R > 1 else float("nan")
        return {
            "silos_mean": float(f.mean()),
            "silos_se": se,
            "t_star_mean": float(self.t_star.mean()),
            "converged_fraction": float(self.converged.mean()),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists)."""
        return {
            "n_steps": self.n_steps,
            "n_silos": self.n_silos.T.tolist(),
            "t_star": self.t_star.tolist(),
            "converged": self.converged.tolist(),
            **self.summary(),
        }


@dataclass(frozen=True, kw_only=True)
class SiloGMM:
    """Interacting GMMs with private RAG sets and nearest-neighbour partners (companion model).

    Parameters are stored as given and validated by :meth:`run`.

    Attributes:
        n_agents: ``n`` (>= 2).
        n_components: ``K``.
        mirror_prob: ``p`` in ``[0, 1]``, probability of answering oneself.
        n_neighbors: ``k`` in ``[1, n - 1]``.
        rag_size: ``r`` (>= 1), points per private RAG set.
        n_steps: ``T``.
        sigma: component standard deviation (> 0).
        means: component means, shape ``(K, d)`` (1-D means ``d = 1``); ``None`` means
            ``0, 1, ..., K - 1`` in ``d = 1``.
        initial_weights: ``(n, K)`` rows on the simplex, or ``None``: agent ``i`` one-hot on
            component ``i mod K``.
        n_replicates: independent replicates run together.

    Example:
        >>> SiloGMM(n_agents=4, n_components=4, n_neighbors=1, n_steps=3).run(rng=1).n_steps
        3
    """

    n_agents: int = 30
    n_components: int = 30
    mirror_prob: float = 0.0
    n_neighbors: int = 5
    rag_size: int = 5
    n_steps: int = 100
    sigma: float = 0.2
    means: ArrayLike | None = None
    initial_weights: ArrayLike | None = None
    n_replicates: int = 1

    def _validate(self) -> dict[str, Any]:
        def as_int(v: object, name: str, lo: int, hi: int | None = None) -> int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer; got {v!r}")  # noqa: TRY004
            if v < lo or (hi is not None and v > hi):
                rng_txt = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{name} must be {rng_txt}; got {v}")
            return int(v)

        n = as_int(self.n_agents, "n_agents", 2)
        K = as_int(self.n_components, "n_components", 1)
        k = as_int(self.n_neighbors, "n_neighbors", 1, n - 1)
        r = as_int(self.rag_size, "rag_size", 1)
        T = as_int(self.n_steps, "n_steps", 0)
        R = as_int(self.n_replicates, "n_replicates", 1)
        p = float(self.mirror_prob)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mirror_prob must lie in [0, 1]; got {self.mirror_prob}")
        sigma = float(self.sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive standard deviation; got {self.sigma}")
        if self.means is None:
            means = np.arange(K, dtype=np.float64)[:, None]
        else:
            means = np.asarray(self.means, dtype=np.float64)
            if means.ndim == 1:
                means = means[:, None]
            if means.ndim != 2 or means.shape[0] != K or not np.all(np.isfinite(means)):
                raise ValueError(
                    f"means must be finite with shape (n_components={K}, d); got "
                    f"{np.shape(self.means)}"
                )
        if self.initial_weights is None:
            w0 = np.zeros((n, K))
            w0[np.arange(n), np.arange(n) % K] = 1.0
        else:
            w0 = np.asarray(self.initial_weights, dtype=np.float64)
            if w0.shape != (n, K):
                raise ValueError(f"initial_weights must have shape ({n}, {K}); got {w0.shape}")
            if np.any(w0 < 0) or not np.allclose(w0.sum(1), 1.0):
                raise ValueError("initial_weights rows must be non-negative and sum to 1")
        return {"n": n, "K": K, "k": k, "r": r, "T": T, "R": R, "p": p, "sigma": sigma,
                "means": means, "w0": w0}

    def run(self, rng: np.random.Generator | int | None = None) -> SiloResult:
        """Simulate all replicates for ``n_steps`` synchronous steps.

        Args:
            rng: a ``numpy.random.Generator``, a seed, or ``None``.

        Returns:
            A frozen :class:`SiloResult`.

        Raises:
            ValueError: if a parameter is invalid.
        """
        prm = self._validate()
        gen = np.random.default_rng(rng)
        return _simulate(prm, gen)


def _sample(rng: np.random.Generator, W: np.ndarray, means: np.ndarray, sigma: float) -> np.ndarray:
    """One draw from each GMM with weights ``W`` (shape ``(..., K)``): shape ``(..., d)``."""
    u = rng.random(W.shape[:-1])
    cum = np.cumsum(W, axis=-1)
    comp = (cum < (u * cum[..., -1])[..., None]).sum(-1)
    comp = np.minimum(comp, W.shape[-1] - 1)
    z = rng.standard_normal(W.shape[:-1] + (means.shape[1],))
    return means[comp] + sigma * z


def _em_step(W: np.ndarray, rag: np.ndarray, means: np.ndarray, sigma: float) -> np.ndarray:
    """One EM weight step with prior ``W`` ``(..., K)`` on RAG sets ``rag`` ``(..., r, d)``."""
    # ||x - mu_b||^2 = ||x||^2 - 2 x.mu_b + ||mu_b||^2; the ||x||^2 term cancels in the softmax.
    d = means.shape[1]
    logp = (rag.reshape(-1, d) @ (means.T / sigma**2)).reshape(rag.shape[:-1] + (-1,))  # (..., r, K)
    logp -= (0.5 / sigma**2) * (means**2).sum(-1)
    with np.errstate(divide="ignore"):
        logp += np.log(W)[..., None, :]  # -inf where a weight is exactly 0
    logp -= logp.max(axis=-1, keepdims=True)  # log-sum-exp shift
    resp = np.exp(logp, out=logp)
    resp /= resp.sum(axis=-1, keepdims=True)
    w = np.clip(resp.mean(axis=-2), _CLIP, 1.0 - _CLIP)
    return w / w.sum(axis=-1, keepdims=True)


def _replace_farthest(rag: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Copy of ``rag`` ``(..., r, d)`` with the point farthest from ``x`` ``(..., d)`` set to ``x``."""
    d2 = ((rag - x[..., None, :]) ** 2).sum(-1)  # (..., r)
    far = d2.argmax(-1)
    out = rag.copy()
    np.put_along_axis(out, far[..., None, None], x[..., None, :], axis=-2)
    return out


def _count_distinct(labels: np.ndarray) -> np.ndarray:
    """Number of distinct values along the last axis."""
    s = np.sort(labels, axis=-1)
    return 1 + (np.diff(s, axis=-1) != 0).sum(-1)


def _simulate(prm: dict[str, Any], rng: np.random.Generator) -> SiloResult:
    n, K, k, r, T, R = prm["n"], prm["K"], prm["k"], prm["r"], prm["T"], prm["R"]
    p, sigma, means = prm["p"], prm["sigma"], prm["means"]
    d = means.shape[1]
    W = np.broadcast_to(prm["w0"], (R, n, K)).copy()
    # Initial RAG sets: r draws from each agent's own initial GMM.
    rag = _sample(rng, np.broadcast_to(W[:, :, None, :], (R, n, r, K)), means, sigma)
    assert rag.shape == (R, n, r, d)
    silos = np.empty((T + 1, R, n), dtype=np.int64)
    silos[0] = W.argmax(-1)
    rr = np.arange(R)[:, None]
    ii = np.broadcast_to(np.arange(n), (R, n))
    eye = np.eye(n, dtype=bool)
    for t in range(1, T + 1):
        # 1. partner choice (reads state t - 1)
        sq = (W * W).sum(-1)
        d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * (W @ W.transpose(0, 2, 1))  # (R, n, n)
        d2[:, eye] = np.inf
        keys = rng.random((R, n, n))
        order = np.lexsort((keys, d2), axis=-1)[..., :k]  # k nearest, ties at random
        pick = rng.integers(0, k, size=(R, n))
        j = np.take_along_axis(order, pick[..., None], axis=-1)[..., 0]
        mirror = rng.random((R, n)) < p
        j = np.where(mirror, ii, j)
        # 2. query from GMM_i
        x = _sample(rng, W, means, sigma)  # (R, n, d)
        # 3. j answers from a temporary copy of its RAG set and weights
        rag_j = _replace_farthest(rag[rr, j], x)
        w_tmp = _em_step(W[rr, j], rag_j, means, sigma)
        y = _sample(rng, w_tmp, means, sigma)
        # 4. i updates its own RAG set and weights (synchronous: new arrays)
        rag = _replace_farthest(rag, y)
        W = _em_step(W, rag, means, sigma)
        silos[t] = W.argmax(-1)
    n_silos = _count_distinct(silos)  # (T + 1, R)
    multi = n_silos > 1
    has = multi.any(axis=0)
    last = T - np.argmax(multi[::-1], axis=0)
    t_star = np.where(has, last, -1)
    converged = n_silos[-1] == 1
    for arr in (n_silos, silos, W, t_star, converged):
        arr.setflags(write=False)
    return SiloResult(n_silos=n_silos, silos=silos, final_weights=W, t_star=t_star,
                      converged=converged)
