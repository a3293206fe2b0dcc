"""Arguments both experiment runners take (arms, seeds) checked, and settings made JSON-ready."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["check_arms", "check_seeds", "plain"]


def check_arms(arms: Mapping[str, Any], baseline: str | None) -> tuple[list[str], str]:
    if not isinstance(arms, Mapping) or not arms:
        raise ValueError("arms must be a non-empty mapping {name: arm}")
    names = list(arms)
    for a in names:
        if not isinstance(a, str) or not a:
            raise ValueError(f"arm names must be non-empty strings; got {a!r}")
    base = names[0] if baseline is None else baseline
    if base not in arms:
        raise ValueError(f"baseline {base!r} is not an arm; arms: {names}")
    return [base] + [a for a in names if a != base], base


def check_seeds(seeds: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in seeds)
    if not out:
        raise ValueError("seeds is empty; pass e.g. range(20)")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct; got {out}")
    if any(s < 0 for s in out):
        raise ValueError("seeds must be non-negative integers")
    return out


def plain(v: Any) -> Any:
    """``v`` as JSON-ready Python (arrays as lists, numpy scalars as Python, others as repr)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)

