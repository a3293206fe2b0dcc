"""The paper's proof sketch, checked on a run: how fast do pairwise weight differences decay?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gmm_result import GMMWebResult

__all__ = ["WeightDecayCheck", "weight_decay_check"]


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
        >>> from llmweb_plugin.proxies import InteractingGMMWeb
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
