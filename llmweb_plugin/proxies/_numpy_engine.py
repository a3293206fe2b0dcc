"""The numpy engine of :class:`~llmweb_plugin.proxies.InteractingGMMWeb` (``engine="numpy"``).

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
  The compiled engine (:mod:`llmweb_plugin.proxies._numba_engine`) runs the same model faster.
* Random draws follow one documented protocol so that a plain per-agent, per-point loop
  (:func:`llmweb_plugin.proxies._reference._reference_run`) reproduces the result to rounding:
  initial weights ``rng.dirichlet(a * 1_B, size=(R, n))``; then for A(0) (unless given) and at
  every step, for each replicate ``r`` and agent ``i`` in order: ``rng.random(L)`` (component, by
  inverse CDF), ``rng.standard_normal((L, d))`` (noise), and at steps
  ``rng.choice(|A|, k_t, replace=False)``; then, only when injecting, for each replicate
  ``rng.random(m)`` and ``rng.standard_normal((m, d))``.
"""

from __future__ import annotations

import logging

import numpy as np

from llmweb_plugin.metrics import collapse_norm

from ._shared import (
    _append_new_points,
    _bookkeeping,
    _draw_gmm_points,
    _finish,
    _initial_state,
    _normalised_densities,
    _Prepared,
    _update_coefficients,
)
from .gmm_result import GMMWebResult

logger = logging.getLogger(__name__)

# At most this many int32 point indices are held at once (agents are processed in blocks beyond).
_INDEX_BUDGET = 1 << 27
# At most this many floats in one gathered chunk of densities.
_GATHER_BUDGET = 1 << 17


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
    a1, a2, a3 = _update_coefficients(k, B)
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
