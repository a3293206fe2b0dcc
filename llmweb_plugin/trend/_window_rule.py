"""The one window rule every verdict uses: early and late windows of ``w = max(2, n // 4)`` values.

``relative_change = (late_mean - early_mean) / |early_mean|`` (see the package docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._checks import _as_float_array, _steps_array


def _window_sizes(n: int) -> int:
    return max(2, n // 4)


def _relative(early: np.ndarray | float, late: np.ndarray | float) -> np.ndarray:
    """``(late - early) / |early|``; 0 where both are 0, NaN where only ``early`` is 0."""
    early = np.asarray(early, dtype=np.float64)
    late = np.asarray(late, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = (late - early) / np.abs(early)
    rc = np.where(early == 0.0, np.where(late == 0.0, 0.0, np.nan), rc)
    return rc


def _windows(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Window means of the rows of finite ``y`` (m, n) and the distance of the window centres."""
    n = y.shape[1]
    if n < 4:
        nan = np.full(y.shape[0], np.nan)
        return nan, nan, 0, math.nan
    w = _window_sizes(n)
    early = y[:, :w].mean(axis=1)
    late = y[:, n - w:].mean(axis=1)
    return early, late, w, float(t[n - w:].mean() - t[:w].mean())


def window_means(values: Sequence[float] | np.ndarray,
                 steps: Sequence[float] | np.ndarray | None = None) -> tuple[float, float, int]:
    """Early- and late-window means by the one window rule used by every verdict.

    Non-finite values (and values at non-finite steps) are dropped first; with ``n`` values
    left, ``w = max(2, n // 4)``, the early window is the first ``w`` values in step order and the
    late window the last ``w``. With fewer than 4 values both means are NaN and ``w = 0``.

    Args:
        values: the per-step values, shape ``(n_steps,)``; ``None``/NaN/inf are dropped.
        steps: their steps (strictly increasing), or ``None`` for ``0, 1, ...``.

    Returns:
        ``(early_mean, late_mean, w)``; ``relative_change = (late_mean - early_mean) /
        |early_mean|``.

    Raises:
        TypeError: if ``values`` are not numbers.
        ValueError: if the shapes differ or ``steps`` are not increasing.

    Example:
        >>> window_means([4, 4, 3, 3, 2, 2, 1, 1])
        (4.0, 1.0, 2)
    """
    y = _as_float_array(values, "values", 1)
    t = _steps_array(steps, y.shape[0])
    keep = np.isfinite(y) & np.isfinite(t)
    early, late, w, _ = _windows(y[keep][None, :], t[keep])
    return float(early[0]), float(late[0]), w
