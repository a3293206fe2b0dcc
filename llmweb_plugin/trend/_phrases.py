"""How verdicts are put in words: metric labels, percentages and "fell 38% (97.5% CI ...)" phrases."""

from __future__ import annotations

import math

_LABELS = {
    "norm": "||D||", "normalized_norm": "normalised ||D||", "between_spread": "between spread",
    "vendi_score": "Vendi", "vendi": "Vendi", "mean_cosine_distance": "mean cosine distance",
    "distinct_n": "distinct-n", "distinct_1": "distinct-1", "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
}


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _pct(x: float, signed: bool = True) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.0f}%" if signed else f"{100 * abs(x):.0f}%"


def _change_phrase(label: str, rc: float, ci: tuple[float, float], level: float) -> str:
    """``"||D|| fell 38% (97.5% CI 21% to 52%)"`` or a signed form when the interval crosses 0.

    ``level`` is the interval's coverage (the level its verdict's test decides at), so the
    printed interval excludes 0 exactly when that test finds a change.
    """
    lvl = f"{100 * level:g}% CI"
    lo, hi = ci
    if not math.isfinite(rc):
        return f"{label} changed by an undefined amount (early mean 0)"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        word = "fell" if rc < 0 else "rose" if rc > 0 else "changed"
        return f"{label} {word} {_pct(rc, signed=False)}"
    if rc < 0 and hi < 0:
        return f"{label} fell {_pct(rc, False)} ({lvl} {_pct(hi, False)} to {_pct(lo, False)})"
    if rc > 0 and lo > 0:
        return f"{label} rose {_pct(rc, False)} ({lvl} {_pct(lo, False)} to {_pct(hi, False)})"
    return f"{label} changed {_pct(rc)} ({lvl} {_pct(lo)} to {_pct(hi)})"
