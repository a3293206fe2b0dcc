"""Small interval helpers the reproduction targets share (numpy only).

Example:
    >>> import numpy as np
    >>> lo, hi = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], rng=0)
    >>> bool(lo < 2.5 < hi)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_floats", "bootstrap_mean_ci", "percentile_band"]


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, *,
                      rng: np.random.Generator | int | None = None, level: float = 0.95,
                      n_boot: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values).

    Args:
        values: one number per replicate, shape ``(n,)``; non-finite values are dropped.
        rng: generator or seed of the resampling.
        level: coverage of the interval, in ``(0, 1)``.
        n_boot: bootstrap resamples.

    Returns:
        ``(low, high)``; ``(nan, nan)`` without finite values; ``(x, x)`` for one value.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    gen = np.random.default_rng(rng)
    means = x[gen.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return (float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a)))


def percentile_band(rows: np.ndarray, low: float = 0.05,
                    high: float = 0.95) -> dict[str, list[float]]:
    """Per-step median and percentile band of ``rows``, shape ``(n_replicates, n_steps)``.

    Returns:
        ``{"median": [...], "p05": [...], "p95": [...]}`` (keys named after ``low``/``high``),
        JSON-ready lists of ``n_steps`` floats.
    """
    arr = np.asarray(rows, dtype=np.float64)
    return {
        "median": np.median(arr, axis=0).tolist(),
        f"p{round(100 * low):02d}": np.quantile(arr, low, axis=0).tolist(),
        f"p{round(100 * high):02d}": np.quantile(arr, high, axis=0).tolist(),
    }


def as_floats(values: Any) -> list[float]:
    """A JSON-ready list of floats (``None`` for non-finite values)."""
    return [float(v) if math.isfinite(float(v)) else None  # type: ignore[misc]
            for v in np.asarray(values, dtype=np.float64).ravel()]
