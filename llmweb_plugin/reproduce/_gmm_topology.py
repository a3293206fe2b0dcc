"""The LWD GMM proxy with a communication topology, for the ``mas-topology`` target.

:class:`~llmweb_plugin.proxies.InteractingGMMWeb` has one fully shared point set ``A``: every
agent reads everything. Here each agent reads, as in the LLM web with a topology
(:mod:`llmweb_plugin.web.topology`), the seed points ``A(0)`` plus the points posted by itself and
by the agents it is connected to; it draws ``k = floor(beta |visible|)`` of them uniformly
without replacement and updates its weights with the proxy's own online update
(:func:`llmweb_plugin.proxies.steps.update_agents`). Nothing of the proxy is copied or changed:
the draws, the densities and the update are the functions of :mod:`llmweb_plugin.proxies.steps`,
called in the numpy engine's draw order, so with the full topology this loop reproduces
``InteractingGMMWeb.run`` bit for bit (a test holds it to that).

Read-outs per step: ``||D(t)||_F`` of the weight rows and the pooled mixture's diversity, the
Vendi score of the web's output distribution with the identity kernel over components, which is
``exp(H(mean_i Pi_i))`` (the effective number of components the agents together produce: ``B``
for a uniform mixture, 1 when every agent produces one component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import collapse_norm
from ..proxies import InteractingGMMWeb
from ..proxies.steps import (
    draw_points,
    initial_state,
    point_densities,
    prepare,
    read_count,
    update_agents,
)
from ..web.topology import neighbours, small_world

__all__ = ["TopologyRun", "adjacency", "pooled_vendi", "simulate_topology"]


@dataclass(frozen=True, kw_only=True)
class TopologyRun:
    """What :func:`simulate_topology` returns (time first, row ``t`` = after ``t`` steps).

    Attributes:
        norms: ``||D(t)||_F``, shape ``(T + 1, R)``.
        vendi: pooled-mixture Vendi score ``exp(H(mean_i Pi_i))``, shape ``(T + 1, R)``.
        weights: shape ``(T + 1, R, n, B)``.
        degree: mean number of agents each agent reads (besides itself), per replicate ``(R,)``.
    """

    norms: np.ndarray
    vendi: np.ndarray
    weights: np.ndarray
    degree: np.ndarray


def pooled_vendi(weights: np.ndarray) -> np.ndarray:
    """``exp(H(mean_i Pi_i))`` over the agent axis (second to last) of ``weights`` (..., n, B)."""
    p = np.asarray(weights, dtype=np.float64).mean(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    return np.exp(h)


def adjacency(n: int, topology: str, *, rng: np.random.Generator | int | None = None,
              k: int = 2, p: float = 0.25) -> np.ndarray:
    """``(n, n)`` boolean matrix, ``[i, j]`` = agent i reads agent j (zero diagonal).

    ``topology`` is ``"full"``, ``"ring"`` or ``"small_world"`` (Watts-Strogatz with ``k``
    lattice neighbours and rewiring probability ``p``, :func:`llmweb_plugin.web.small_world`;
    ``k = 2`` is llmweb's named ``small_world``). Built by :mod:`llmweb_plugin.web.topology`, so
    the agent web and the proxy share one definition.
    """
    names = [f"a{i}" for i in range(n)]
    if topology == "small_world":
        if k >= n:  # the lattice alone is complete: small-world is full
            nb = neighbours(names, "full")
        else:
            nb = small_world(names, k=k, p=p, rng=rng)
    else:
        nb = neighbours(names, topology, rng=rng)
    pos = {a: i for i, a in enumerate(names)}
    M = np.zeros((n, n), dtype=bool)
    for a, reads in nb.items():
        for b in reads:
            M[pos[a], pos[b]] = True
    return M


def simulate_topology(web: InteractingGMMWeb, adj: np.ndarray | Sequence[np.ndarray],
                      rng: np.random.Generator | int | None = None) -> TopologyRun:
    """Run ``web`` (its ``n_replicates`` replicates) with agents reading only their neighbours.

    Args:
        web: the proxy's settings (no injection, no ``initial_points``: ``A(0)`` is ``L`` samples
            of each initial GMM and counts as seed data every agent reads).
        adj: one ``(n, n)`` boolean read matrix for all replicates, or one per replicate
            (shape ``(R, n, n)``), e.g. from :func:`adjacency`.
        rng: seed or generator.

    Raises:
        ValueError: a bad setting of ``web`` (from the proxy's own checks), an injection, or
            ``adj`` of the wrong shape.
    """
    prep = prepare(web)
    if web.injection is not None or web.initial_points is not None:
        raise ValueError("simulate_topology supports neither injection nor initial_points; "
                         "leave them None")
    n, R, T, L, B = prep.n, prep.R, prep.T, prep.L, prep.B
    A = np.asarray(adj, dtype=bool)
    if A.shape == (n, n):
        A = np.broadcast_to(A, (R, n, n))
    if A.shape != (R, n, n):
        raise ValueError(f"adj must have shape (n, n) = ({n}, {n}) or (R, n, n) = ({R}, {n}, "
                         f"{n}); got {np.shape(adj)}")
    gen = np.random.default_rng(rng)
    w0, a0 = initial_state(prep, gen)
    m0 = a0[0].shape[0]
    cap = m0 + T * n * L
    Q = np.empty((B, R * cap))
    author = np.full((R, cap), -2, dtype=np.int64)  # -1 seed, i agent, -2 empty
    for r in range(R):
        Q[:, r * cap: r * cap + m0] = point_densities(a0[r], prep)
        author[r, :m0] = -1
    reads = [[np.flatnonzero(A[r, i] | (np.arange(n) == i)) for i in range(n)]
             for r in range(R)]
    pi = np.ascontiguousarray(w0.reshape(R * n, B).T)  # (B, R n), replicate-major columns
    W = np.empty((T + 1, R, n, B))
    norms = np.empty((T + 1, R))
    size = m0
    for t in range(T + 1):
        cur = pi.T.reshape(R, n, B)
        W[t] = cur
        norms[t] = collapse_norm(cur) if n > 1 else 0.0  # as the numpy engine computes it
        if t == T:
            break
        new_pts = np.empty((R * n, L, prep.d))
        groups: dict[int, tuple[list[int], list[np.ndarray]]] = {}
        for r in range(R):
            auth = author[r, :size]
            for i in range(n):
                col = r * n + i
                new_pts[col] = draw_points(gen, pi[:, col], L, prep)
                vis = np.flatnonzero((auth == -1) | np.isin(auth, reads[r][i]))
                k = read_count(prep.beta, vis.size)
                pick = gen.choice(vis.size, size=k, replace=False)
                cols, idx = groups.setdefault(k, ([], []))
                cols.append(col)
                idx.append(r * cap + vis[pick])
        for k, (cols, idx) in groups.items():
            if k < 1:
                continue
            sub = np.ascontiguousarray(pi[:, cols])
            update_agents(sub, Q, np.stack(idx), None, k, prep.eps)
            pi[:, cols] = sub
        for r in range(R):
            pts = new_pts[r * n: (r + 1) * n].reshape(n * L, prep.d)
            Q[:, r * cap + size: r * cap + size + n * L] = point_densities(pts, prep)
            author[r, size: size + n * L] = np.repeat(np.arange(n), L)
        size += n * L
    return TopologyRun(norms=norms, vendi=pooled_vendi(W), weights=W,
                       degree=A.sum(axis=2).mean(axis=1).astype(float))


def topology_stack(n: int, topology: str, R: int, rng: np.random.Generator,
                   **kw: float) -> np.ndarray:
    """``(R, n, n)`` read matrices, one drawn per replicate (differs only for small-world)."""
    return np.stack([adjacency(n, topology, rng=rng, **kw) for _ in range(R)])


def describe(adj_by_name: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean degree of each named stack of read matrices."""
    return {k: float(np.asarray(v).sum(axis=-1).mean()) for k, v in adj_by_name.items()}
