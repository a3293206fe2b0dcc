"""Compiled (numba) engine for :class:`~llmweb_plugin.proxies.InteractingGMMWeb`.

Same model as the numpy engine (paper Algorithms 2-3), different random numbers: the point draws
run inside a parallel numba kernel with their own counter-based generator, so a seed gives the
same result on any number of threads, but not the numpy engine's numbers (only the same
distribution). Install with ``pip install 'llmweb-plugin[fast]'``.

Draw protocol (for a ``numpy.random.Generator`` ``rng``; ``N = R n`` replicate-major agents):

* initial weights and ``A(0)`` exactly as the numpy engine (so row ``t = 0`` is identical);
* at every step: ``seeds = rng.integers(0, 2**64, size=(N, 2), dtype=uint64)``, then the agents'
  new points, all at once: ``rng.random((N, L))`` (component, by inverse CDF) and
  ``rng.standard_normal((N, L, d))``; then, only when injecting, per replicate ``rng.random(m)``
  and ``rng.standard_normal((m, d))`` as the numpy engine.
* In the kernel agent ``a`` reads the Weyl/SplitMix64 stream ``x_j = mix64(s + (j + 1) g)``
  (``s, g = seeds[a]``, ``g`` made odd) and draws its ``k_t`` points by a partial Fisher-Yates
  shuffle: ``r = j + floor(x_j (|A| - j) / 2^64)``, point ``perm[r]``, then swap ``perm[j]`` and
  ``perm[r]``. ``perm`` is a permutation of replicate ``rep``'s points owned by a *slot*: agent
  ``i`` of replicate ``rep`` uses slot ``(rep, i mod SLOTS)``, and slots are never reset (a
  partial Fisher-Yates shuffle draws a uniform ordered sample from any starting permutation,
  whatever earlier agents left there). Slot ``s`` belongs to task ``s // LANES``; a task runs its
  agents in increasing order, ``LANES`` agents interleaved point by point (independent dependency
  chains keep the core busy). ``TASKS`` and ``LANES`` are constants, so the numbers do not depend
  on the thread count or the scheduling.

Speed: a slot stores the points' normalised densities themselves in permuted order (not
indices), so a draw costs one random memory access, prefetched ``_AHEAD`` points in advance.
Memory: ``R * min(n, SLOTS) * |A(T)| * B`` floats (``B = 2``: one float per point, see
``_encode_b2``).

The update is the numpy engine's arithmetic, with the coefficients both engines take from
:func:`~llmweb_plugin.proxies._shared._update_coefficients`: for ``B = 2`` on ``pi_1`` alone
(``p' = p (a1 + a2 q_1 / (q_2 + p (q_1 - q_2))) - a3``, clip ``p <= 0 -> eps``,
``p >= 1 -> 1 - eps``), otherwise on all ``B`` weights with the clip of the numpy engine's
``_clip_columns``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from llmweb_plugin.metrics import collapse_norm

from ._shared import (
    _append_new_points,
    _bookkeeping,
    _finish,
    _initial_state,
    _normalised_densities,
    _Prepared,
    _update_coefficients,
)
from .gmm_result import GMMWebResult

__all__ = ["LANES", "SLOTS", "TASKS", "debug_draw_orders", "simulate_numba"]

#: Fixed number of parallel tasks (part of the draw protocol: not tied to the thread count).
TASKS = 4
#: Agents interleaved within a task.
LANES = 4
#: Permutation slots per replicate.
SLOTS = TASKS * LANES
# Points of look-ahead for the prefetch (a power of two <= _RING).
_AHEAD = 16
_RING = 32

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)


@intrinsic
def _prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
    """``llvm.prefetch`` (read, high locality) of ``arr[idx]`` for a 1-D array; a no-op hint."""
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _mix64(z: Any) -> Any:
    """SplitMix64 finaliser (Steele, Lea and Flood 2014)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def _bounded(x: Any, m: Any) -> Any:
    """``floor(x * m / 2^64)`` for ``m < 2^32`` (uint64 arithmetic, no 128-bit product needed)."""
    hi = x >> _S32
    lo = x & _LO32
    return (hi * m + ((lo * m) >> _S32)) >> _S32


@njit(inline="always")
def _position(state: Any, j: int, size: int) -> Any:
    """Fisher-Yates target ``r`` in ``[j, size)`` for the stream value at ``state``."""
    return j + np.int64(_bounded(_mix64(state), np.uint64(size - j)))


def _encode_b2(q: np.ndarray) -> np.ndarray:
    """Pack ``B = 2`` normalised densities ``(2, m)`` (one of each pair is exactly 1.0) into one
    float per point: ``q_2`` when ``q_1 = 1``, else ``-q_1`` (the sign bit tells which; lossless).
    """
    return np.where(q[0] == 1.0, q[1], -q[0])


@njit(inline="always")
def _decode_b2(e: float) -> tuple:
    """Inverse of :func:`_encode_b2`: ``(q_1, q_2)``."""
    low = math.copysign(1.0, e) < 0.0
    q1 = -e if low else 1.0
    q2 = 1.0 if low else e
    return q1, q2


@njit(inline="always")
def _update_b2(e: float, v: float, a1: float, a2: float, a3: float, eps: float) -> float:
    """The numpy engine's ``_update_chunk_b2`` arithmetic for one point (encoded ``e``) on
    ``v = pi_1``, with its clip (``<= 0`` gives ``eps``, ``>= 1`` gives ``1 - eps``)."""
    q1, q2 = _decode_b2(e)
    den = (q1 - q2) * v + q2
    den = (q1 * a2) / den
    v = v * (den + a1) - a3
    if v <= 0.0:
        v = eps
    elif v >= 1.0:
        v = 1.0 - eps
    return v


@njit(cache=True, fastmath=False, boundscheck=False, nogil=True)
def _run_group(rep, i0, G, pi, n, data, ids, cap, size, k, a1, a2, a3, eps, seeds, order,
               record):
    """Agents ``i0 .. i0 + G - 1`` of replicate ``rep``, interleaved point by point.

    ``pi``: ``(N, B)`` weights (for ``B = 2`` only column 0 is read and written); ``data``:
    flat slot storage ``(R, S, cap, W)`` (``W = 1`` for ``B = 2``, else ``B``); ``ids``: the
    matching point indices (``record`` only).
    """
    B = pi.shape[1]
    W = 1 if B == 2 else B  # B = 2: one float per point (see _encode_b2)
    S = min(n, SLOTS)
    pst = np.empty(G, dtype=np.uint64)
    gm = np.empty(G, dtype=np.uint64)
    x = np.empty((G, B))
    sbase = np.empty(G, dtype=np.int64)
    ring = np.zeros((G, _RING), dtype=np.int64)
    neg = np.empty(B, dtype=np.bool_)
    ahead = min(_AHEAD, k)
    for g in range(G):
        i = i0 + g
        a = rep * n + i
        pst[g] = seeds[a, 0]
        gm[g] = seeds[a, 1] | np.uint64(1)
        for b in range(B):
            x[g, b] = pi[a, b]
        sbase[g] = (rep * S + i % SLOTS) * cap
        for j in range(ahead):  # prime the look-ahead
            pst[g] += gm[g]
            r = _position(pst[g], j, size)
            ring[g, j] = r
            _prefetch(data, (sbase[g] + r) * W)
    for j in range(k):
        jd = j + ahead
        for g in range(G):
            if jd < k:
                pst[g] += gm[g]
                rr = _position(pst[g], jd, size)
                ring[g, jd & (_RING - 1)] = rr
                _prefetch(data, (sbase[g] + rr) * W)
            r = ring[g, j & (_RING - 1)]
            pr = (sbase[g] + r) * W
            pj = (sbase[g] + j) * W
            for b in range(W):  # swap the point data at positions j and r (r >= j)
                tmp = data[pr + b]
                data[pr + b] = data[pj + b]
                data[pj + b] = tmp
            if record:
                tid = ids[sbase[g] + r]
                ids[sbase[g] + r] = ids[sbase[g] + j]
                ids[sbase[g] + j] = tid
                order[rep * n + i0 + g, j] = tid
            if B == 2:
                x[g, 0] = _update_b2(data[pj], x[g, 0], a1, a2, a3, eps)
            else:  # _update_chunk / _clip_columns arithmetic
                tot = 0.0
                for b in range(B):
                    tot += x[g, b] * data[pj + b]
                clip = False
                for b in range(B):
                    v = x[g, b] * ((data[pj + b] * a2) / tot + a1) - a3
                    x[g, b] = v
                    if v <= 0.0:
                        clip = True
                if clip:
                    nneg = 0
                    others = 0.0
                    for b in range(B):
                        neg[b] = x[g, b] <= 0.0
                        if neg[b]:
                            nneg += 1
                        else:
                            others += x[g, b]
                    scale = (1.0 - nneg * eps) / others
                    for b in range(B):
                        x[g, b] = eps if neg[b] else x[g, b] * scale
    for g in range(G):
        for b in range(B if B != 2 else 1):
            pi[rep * n + i0 + g, b] = x[g, b]


@njit(inline="always")
def _lane_b2(j, jd, pre, size, pst, gm, ring, g, sb, data, v, a1, a2, a3, eps):
    """One point of one lane of :func:`_group4_b2` (same arithmetic as :func:`_run_group`)."""
    if pre:
        pst += gm
        rr = _position(pst, jd, size)
        ring[g, jd & (_RING - 1)] = rr
        _prefetch(data, sb + rr)
    r = ring[g, j & (_RING - 1)]
    pr = sb + r
    pj = sb + j
    e = data[pr]
    data[pr] = data[pj]
    data[pj] = e
    return _update_b2(e, v, a1, a2, a3, eps), pst


@njit(cache=True, fastmath=False, boundscheck=False, nogil=True)
def _group4_b2(rep, i0, pi, n, data, cap, size, k, a1, a2, a3, eps, seeds):
    """:func:`_run_group` for ``B = 2``, ``G = LANES = 4``, no recording: lanes in registers."""
    S = min(n, SLOTS)
    ring = np.zeros((4, _RING), dtype=np.int64)
    ahead = min(_AHEAD, k)
    a = rep * n + i0
    sb0 = (rep * S + i0 % SLOTS) * cap
    sb1 = sb0 + cap
    sb2 = sb1 + cap
    sb3 = sb2 + cap
    g0 = seeds[a, 1] | np.uint64(1)
    g1 = seeds[a + 1, 1] | np.uint64(1)
    g2 = seeds[a + 2, 1] | np.uint64(1)
    g3 = seeds[a + 3, 1] | np.uint64(1)
    s0 = seeds[a, 0]
    s1 = seeds[a + 1, 0]
    s2 = seeds[a + 2, 0]
    s3 = seeds[a + 3, 0]
    v0 = pi[a, 0]
    v1 = pi[a + 1, 0]
    v2 = pi[a + 2, 0]
    v3 = pi[a + 3, 0]
    for j in range(ahead):
        s0 += g0
        r = _position(s0, j, size)
        ring[0, j] = r
        _prefetch(data, sb0 + r)
        s1 += g1
        r = _position(s1, j, size)
        ring[1, j] = r
        _prefetch(data, sb1 + r)
        s2 += g2
        r = _position(s2, j, size)
        ring[2, j] = r
        _prefetch(data, sb2 + r)
        s3 += g3
        r = _position(s3, j, size)
        ring[3, j] = r
        _prefetch(data, sb3 + r)
    for j in range(k - ahead):
        jd = j + ahead
        v0, s0 = _lane_b2(j, jd, True, size, s0, g0, ring, 0, sb0, data, v0, a1, a2, a3, eps)
        v1, s1 = _lane_b2(j, jd, True, size, s1, g1, ring, 1, sb1, data, v1, a1, a2, a3, eps)
        v2, s2 = _lane_b2(j, jd, True, size, s2, g2, ring, 2, sb2, data, v2, a1, a2, a3, eps)
        v3, s3 = _lane_b2(j, jd, True, size, s3, g3, ring, 3, sb3, data, v3, a1, a2, a3, eps)
    for j in range(k - ahead, k):
        v0, s0 = _lane_b2(j, j, False, size, s0, g0, ring, 0, sb0, data, v0, a1, a2, a3, eps)
        v1, s1 = _lane_b2(j, j, False, size, s1, g1, ring, 1, sb1, data, v1, a1, a2, a3, eps)
        v2, s2 = _lane_b2(j, j, False, size, s2, g2, ring, 2, sb2, data, v2, a1, a2, a3, eps)
        v3, s3 = _lane_b2(j, j, False, size, s3, g3, ring, 3, sb3, data, v3, a1, a2, a3, eps)
    pi[a, 0] = v0
    pi[a + 1, 0] = v1
    pi[a + 2, 0] = v2
    pi[a + 3, 0] = v3


@njit(cache=True, fastmath=False, boundscheck=False, nogil=True)
def _run_task(task, pi, n, data, ids, cap, size, k, a1, a2, a3, eps, seeds, order, record):
    """All agents of one task for one step (groups of ``LANES`` agents, in order)."""
    R = pi.shape[0] // n
    fast = pi.shape[1] == 2 and not record and LANES == 4
    for rep in range(R):
        for base in range(0, n, SLOTS):
            i0 = base + task * LANES
            G = min(LANES, n - i0)
            if G <= 0:
                continue
            if fast and G == 4:
                _group4_b2(rep, i0, pi, n, data, cap, size, k, a1, a2, a3, eps, seeds)
            else:
                _run_group(rep, i0, G, pi, n, data, ids, cap, size, k, a1, a2, a3, eps, seeds,
                           order, record)


@njit(parallel=True, cache=True, fastmath=False)
def _step(pi, n, data, ids, cap, size, k, a1, a2, a3, eps, seeds, order, record):
    for task in prange(TASKS):
        _run_task(task, pi, n, data, ids, cap, size, k, a1, a2, a3, eps, seeds, order, record)


@njit(cache=True)
def _orders_kernel(seeds, size, k, perm):
    """Orders drawn by consecutive agents sharing one slot (the kernel's draw code)."""
    out = np.empty((seeds.shape[0], k), dtype=np.int64)
    for a in range(seeds.shape[0]):
        st = seeds[a, 0]
        gm = seeds[a, 1] | np.uint64(1)
        for j in range(k):
            st += gm
            r = _position(st, j, size)
            idx = perm[r]
            perm[r] = perm[j]
            perm[j] = idx
            out[a, j] = idx
    return out


def debug_draw_orders(seeds: np.ndarray, size: int, k: int) -> np.ndarray:
    """The point orders the kernel's sampler draws for agents sharing one slot, in turn.

    Args:
        seeds: ``(m, 2)`` uint64 stream seeds, one row per agent.
        size: ``|A|``.
        k: points per agent.

    Returns:
        ``(m, k)`` int64 indices; row ``a`` is the ordered sample of agent ``a``, starting from
        the permutation the previous rows left (the identity for row 0).
    """
    perm = np.arange(size, dtype=np.int64)
    return np.asarray(_orders_kernel(np.ascontiguousarray(seeds, dtype=np.uint64), size, k, perm))


def _sample_points(rng: np.random.Generator, pi: np.ndarray, prep: _Prepared) -> np.ndarray:
    """``L`` samples of every agent's GMM (rows of ``pi``, shape ``(N, B)``): ``(N, L, d)``."""
    N, L, d = pi.shape[0], prep.L, prep.d
    u = rng.random((N, L))
    z = rng.standard_normal((N, L, d))
    cum = np.cumsum(pi, axis=1)
    x = u * cum[:, -1:]
    comp = np.minimum((cum[:, None, :] <= x[:, :, None]).sum(axis=-1), prep.B - 1)
    return np.asarray(prep.means[comp] + z @ prep.chol.T)


def simulate_numba(
    prep: _Prepared,
    rng: np.random.Generator,
    *,
    trace: dict[str, Any] | None = None,
    alpha_scale: float = 1.0,
) -> GMMWebResult:
    """Run the model with the compiled kernel (see the module docstring for the draw protocol).

    Args:
        prep: validated parameters.
        rng: the numpy generator (initial state, stream seeds, new points).
        trace: if a dict, filled with ``orders`` (per step, the ``(N, k_t)`` drawn point
            indices), ``points`` (per replicate, ``A(T)`` as ``(|A|, d)``) and ``weights`` (per
            step, the ``(N, B)`` weights before it): for tests.
        alpha_scale: multiplies ``alpha`` (tests only: shows that a wrong update is detected).
    """
    n, R, T, B = prep.n, prep.R, prep.T, prep.B
    N = n * R
    w0, a0 = _initial_state(prep, rng)
    m0 = a0[0].shape[0]
    book = _bookkeeping(prep, m0)
    cap = int(book["sizes"][-1])
    if cap >= 2**32 - 1:
        raise ValueError(f"|A(T)| = {cap} is too large for the numba engine (limit 2^32 - 2)")
    S = min(n, SLOTS)
    record = trace is not None

    # Slot (rep, s) holds the densities of replicate rep's points, in its own permuted order.
    data = np.empty((R, S, cap if B > 1 else 1, 1 if B == 2 else B))
    ids = np.empty((R, S, cap if record else 1), dtype=np.int64)
    pts_all: list[list[np.ndarray]] = [[] for _ in range(R)]  # record only: A per replicate

    def append(r: int, start: int, pts: np.ndarray) -> None:
        if B == 2:
            data[r, :, start: start + len(pts), 0] = _encode_b2(_normalised_densities(pts, prep))
        elif B > 1:
            data[r, :, start: start + len(pts)] = _normalised_densities(pts, prep).T
        if record:
            ids[r, :, start: start + len(pts)] = np.arange(start, start + len(pts))
            pts_all[r].append(pts)

    for r in range(R):
        append(r, 0, a0[r])
    flat = data.reshape(-1)
    flat_ids = ids.reshape(-1)
    pi = np.ascontiguousarray(w0.reshape(N, B))
    norms = np.empty((T + 1, R))
    W = np.empty((T + 1, R, n, B)) if prep.record_weights else None
    no_order = np.empty((1, 1), dtype=np.int64)
    if trace is not None:
        trace.update(orders=[], weights=[])
    size = m0

    for t in range(T + 1):
        if B == 2 and t > 0:  # the kernel updates pi_1 only (as the numpy engine)
            pi[:, 1] = 1.0 - pi[:, 0]
        cur = pi.reshape(R, n, B)
        if W is not None:
            W[t] = cur
        norms[t] = collapse_norm(cur) if n > 1 else 0.0
        if t == T:
            break
        k = int(book["k"][t])
        seeds = rng.integers(0, np.iinfo(np.uint64).max, size=(N, 2), dtype=np.uint64,
                             endpoint=True)
        new_pts = _sample_points(rng, pi, prep)
        if trace is not None:
            trace["weights"].append(pi.copy())
            trace.setdefault("seeds", []).append(seeds)
        if B > 1:
            a1, a2, a3 = _update_coefficients(k, B, alpha_scale)
            order = np.empty((N, k), dtype=np.int64) if trace is not None else no_order
            _step(pi, n, flat, flat_ids, cap, size, k, a1, a2, a3, prep.eps, seeds, order,
                  record)
            if trace is not None:
                trace["orders"].append(order)
        size = _append_new_points(rng, prep, new_pts, size, append)
    if trace is not None:
        trace["points"] = [np.concatenate(p, axis=0) for p in pts_all]
    final = np.array(pi.reshape(R, n, B))
    return _finish(prep, W, final, norms, book, m0, engine="numba")
