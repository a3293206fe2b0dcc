"""The pieces of one step of :class:`~llmweb_plugin.proxies.InteractingGMMWeb`, for own loops.

Code that runs the simulator's steps with something of its own in between (the mitigation
analogues of :func:`llmweb_plugin.experiments.simulate_gmm_arm`) composes these functions. They
are the numpy engine's own pieces, not copies: the same draws from the generator in the same
order and the same arithmetic, so a loop that adds nothing reproduces ``InteractingGMMWeb.run``
bit for bit. Not exported from :mod:`llmweb_plugin.proxies` (building blocks, not an entry point).

One step, for a block of agents whose weights are the columns of ``pi`` (shape ``(B, N)``)::

    k = read_count(prep.beta, size)                   # k_t = floor(beta |A|)
    for each agent (column) in order:
        points = draw_points(rng, pi[:, col], prep.L, prep)
        idx[col] = rng.choice(size, size=k, replace=False)
    update_agents(pi, Q, idx, offsets, k, prep.eps)   # Q[:, j]: point_densities of point j
    A += the agents' points                           # Q gets their point_densities

Example:
    >>> import numpy as np
    >>> web = InteractingGMMWeb(n_agents=2, n_steps=1, samples_per_step=2)
    >>> prep = prepare(web, n_replicates=1)
    >>> rng = np.random.default_rng(0)
    >>> w0, a0 = initial_state(prep, rng)
    >>> w0.shape, a0[0].shape, point_densities(a0[0], prep).shape, read_count(0.5, 5)
    ((1, 2, 2), (4, 1), (2, 4), 2)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._numpy_engine import _update_agents
from ._shared import (
    _draw_gmm_points,
    _floor_k,
    _initial_state,
    _normalised_densities,
    _Prepared,
)
from .gmm import InteractingGMMWeb

__all__ = ["Prepared", "draw_points", "initial_state", "point_densities", "prepare",
           "read_count", "update_agents"]

#: The simulator's validated parameters: ``n`` agents, ``R`` replicates, ``T`` steps, ``L``
#: samples per step, ``B`` components in ``d`` dimensions, ``beta``, ``eps``, ``alpha0`` (the
#: Dirichlet parameter), ``means`` ``(B, d)``, ``chol`` (Cholesky factor of the covariance), ...
Prepared = _Prepared


def prepare(web: InteractingGMMWeb, *, n_replicates: int | None = None) -> Prepared:
    """``web``'s parameters checked and converted, as its ``run`` does (same errors).

    Args:
        web: the simulator's settings.
        n_replicates: replace ``web.n_replicates`` (e.g. ``1`` for a loop that runs one
            replicate per generator).

    Raises:
        ValueError: a bad setting of ``web`` (the message names it).
    """
    prep = web._validate()
    return prep if n_replicates is None else dataclasses.replace(prep, R=int(n_replicates))


def initial_state(prep: Prepared, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Initial weights, shape ``(R, n, B)``, and ``A(0)`` per replicate (``(n L, d)`` each),
    drawn from ``rng`` as the simulator draws them (weights first, then each agent's points)."""
    return _initial_state(prep, rng)


def draw_points(rng: np.random.Generator, weights: np.ndarray, count: int,
                prep: Prepared) -> np.ndarray:
    """``count`` samples of the mixture with ``weights`` (shape ``(B,)``): shape ``(count, d)``.

    Consumes ``rng.random(count)`` then ``rng.standard_normal((count, d))``.
    """
    return _draw_gmm_points(rng, weights, count, prep)


def point_densities(points: np.ndarray, prep: Prepared) -> np.ndarray:
    """The normalised component densities of ``points`` (shape ``(m, d)``): shape ``(B, m)``,
    ``exp(log N_b(x) - max_l log N_l(x))`` per point (what :func:`update_agents` reads)."""
    return _normalised_densities(points, prep)


def read_count(beta: float, size: int) -> int:
    """``k_t = floor(beta * |A|)``, robust to binary rounding (``0.29 * 100`` gives 29)."""
    return _floor_k(beta, size)


def update_agents(pi: np.ndarray, Q: np.ndarray, idx: np.ndarray, off: np.ndarray | None,
                  k: int, eps: float) -> None:
    """One step's online update of agents over their ``k`` drawn points, in order, in place.

    Args:
        pi: weights, shape ``(B, N)``, a column per agent (updated in place).
        Q: :func:`point_densities` of the points of ``A``, shape ``(B, total)``.
        idx: each agent's drawn point indexes, in order, shape ``(N, k)``.
        off: offset into ``Q`` of each agent's own ``A``, shape ``(N,)``, or ``None`` (all 0).
        k: points per agent (``k_t``).
        eps: floor for weights that reach ``<= 0`` (``prep.eps``).
    """
    _update_agents(pi, Q, idx, off, k, eps)
