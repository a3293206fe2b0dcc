"""The simulated fixed-b reference distributions of both tests, and their cache.

Each null is 10,000 t-ratios of iid Gaussian series drawn with a fixed internal seed (never the
caller's ``rng``), simulated once per series length (and, for the slope test, per spacing of the
steps) and kept in an ``lru_cache``. Beyond 64 values a geometric grid of lengths capped at 256
bounds the one-time cost (see :func:`_null_len`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._hac import _bandwidth, _ols_hac, _window_diff

_NULL_REPS = 10_000  # simulated null t-ratios per design
_NULL_SEED = 20_050_101  # fixed: the reference distribution never depends on the caller's rng
_NULL_CHUNK = 2_500
_NULL_EXACT_N = 64  # nulls simulated at the series' own length up to here
_NULL_MAX_N = 256  # longer designs use their shape interpolated at 256 positions
_NULL_GRID = np.unique(np.minimum(
    np.round(_NULL_EXACT_N * 1.08 ** np.arange(40)).astype(int), _NULL_MAX_N))


def _null_len(n: int) -> int:
    """Length at which the null of an ``n``-value series is simulated.

    ``n`` itself up to :data:`_NULL_EXACT_N`; beyond, the largest length ``<= n`` of a geometric
    grid (ratio about 1.08) capped at :data:`_NULL_MAX_N`. Under fixed-b asymptotics the null
    depends on the regressor's shape and the fractions ``b = M / n`` and ``w / n``, not on ``n``,
    so a neighbouring length serves; the grid bounds the one-time cost of a monitor that asks for
    a verdict after every step (at most ~85 distinct nulls per kind, whatever the run's length).
    """
    if n <= _NULL_EXACT_N:
        return n
    return int(_NULL_GRID[np.searchsorted(_NULL_GRID, n, side="right") - 1])


@functools.lru_cache(maxsize=256)
def _null_abs_t(design: tuple[float, ...]) -> np.ndarray:
    """Sorted ``|t|`` of the HAC t-ratio under iid Gaussian noise for the regressor ``design``."""
    t = np.asarray(design, dtype=np.float64)
    n = t.shape[0]
    M = _bandwidth(n)
    gen = np.random.default_rng(_NULL_SEED)
    out = np.empty(_NULL_REPS)
    chunk = max(16, min(_NULL_CHUNK, (1 << 22) // (1 << math.ceil(math.log2(2 * n)))))
    for lo in range(0, _NULL_REPS, chunk):  # bounded memory for long series
        hi = min(_NULL_REPS, lo + chunk)
        b, se, _ = _ols_hac(gen.standard_normal((hi - lo, n)), t, M)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[lo:hi] = np.abs(b / se)
    out[~np.isfinite(out)] = np.inf
    out.sort()
    out.setflags(write=False)
    return out


def _design_key(x: np.ndarray) -> tuple[float, ...]:
    """Cache key of a regressor ``x`` (values by position).

    The t-ratio is invariant to shifting and scaling ``x``, so it is mapped to ``[0, 1]``. Beyond
    :data:`_NULL_EXACT_N` positions the null is simulated for ``x`` interpolated at
    :func:`_null_len` evenly spaced positions (see there).
    """
    u = (x - x.min()) / (x.max() - x.min())
    g = _null_len(u.shape[0])
    if g != u.shape[0]:
        pos = np.linspace(0.0, 1.0, u.shape[0])
        u = np.interp(np.linspace(0.0, 1.0, g), pos, u)
    return tuple(np.round(u, 9).tolist())


@functools.lru_cache(maxsize=256)
def _null_window_abs_t(n: int) -> np.ndarray:
    """Sorted ``|d / se|`` of :func:`_window_diff` under iid Gaussian noise of length ``n``."""
    gen = np.random.default_rng(_NULL_SEED + 1)
    out = np.empty(_NULL_REPS)
    chunk = max(16, min(_NULL_CHUNK, (1 << 22) // max(n, 1)))
    for lo in range(0, _NULL_REPS, chunk):
        hi = min(_NULL_REPS, lo + chunk)
        d, se = _window_diff(gen.standard_normal((hi - lo, n)))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[lo:hi] = np.abs(d / se)
    out[~np.isfinite(out)] = np.inf
    out.sort()
    out.setflags(write=False)
    return out


def _p_from(null: np.ndarray, tstat: np.ndarray) -> np.ndarray:
    """Two-sided p-value ``(k + 1) / (R + 1)`` of ``|t|`` against a sorted null of size R."""
    k = _NULL_REPS - np.searchsorted(null, tstat, side="left")
    return (k + 1.0) / (_NULL_REPS + 1.0)
