"""Argument checks shared by every verdict: error rates, margins, arrays of values and steps.

Each check returns the value in the form the numerics use or raises a ``TypeError`` /
``ValueError`` that names the argument and what to pass; short, NaN or constant data are not
errors (the verdicts say "inconclusive" or "stable" instead).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be a number in (0, 0.5), e.g. 0.05; got {alpha!r}")
    return float(alpha)


def _check_margin(margin: float) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise ValueError(f"margin must be a positive fraction, e.g. 0.10; got {margin!r}")
    return float(margin)


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10, e.g. 999; got {n_boot!r}")
    return int(n_boot)


def _as_float_array(x: object, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be numbers, not a string")
    if isinstance(x, Mapping):
        raise TypeError(f"{name} must be a sequence of numbers, not a mapping; "
                        "pass the values (and steps=...) instead")
    try:
        a = np.array(x, dtype=np.float64)  # None becomes NaN: counted as a dropped value
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must contain numbers (None/NaN are dropped and counted); "
                        f"could not convert: {exc}") from None
    if a.ndim != ndim:
        shape = "(n_steps,)" if ndim == 1 else "(n_series, n_steps)"
        raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}")
    return a


def _steps_array(steps: object, n: int) -> np.ndarray:
    if steps is None:
        return np.arange(n, dtype=np.float64)
    s = _as_float_array(steps, "steps", 1)
    if s.shape[0] != n:
        raise ValueError(f"steps must have one entry per value: got {s.shape[0]} steps for "
                         f"{n} values")
    fin = s[np.isfinite(s)]
    if fin.size > 1 and np.any(np.diff(fin) <= 0):
        raise ValueError("steps must be strictly increasing; sort the values by step and "
                         "merge repeated steps first")
    return s
