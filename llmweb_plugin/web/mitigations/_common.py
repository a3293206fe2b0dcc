"""What the mitigations share: exact rates and the ``rng`` argument."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

RngLike = np.random.Generator | int | None


def exact_fraction(x: float, name: str) -> Fraction:
    """A rate as the simplest fraction within float precision (0.3 -> 3/10, 1/3 -> 1/3)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating, Fraction)):
        raise TypeError(f"{name} must be a number; got {type(x).__name__}")
    if isinstance(x, Fraction):
        return x
    if not math.isfinite(float(x)):
        raise ValueError(f"{name} must be finite; got {x!r}")
    return Fraction(float(x)).limit_denominator(10**9)


def as_generator(rng: RngLike) -> np.random.Generator:
    """``np.random.default_rng(rng)``: a seed, a generator or ``None``."""
    return np.random.default_rng(rng)
