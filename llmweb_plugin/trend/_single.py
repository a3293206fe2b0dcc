"""One metric's verdict: :class:`CollapseTrend`, :func:`collapse_trend` and :func:`collapse_trends`.

The slope test and the window test (the package docstring states the rules), each at
``alpha / 2``, applied to every series; series with the same pattern of non-finite values are
evaluated together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import _as_float_array, _check_alpha, _check_margin, _steps_array
from ._hac import _bandwidth, _ols_hac, _window_diff
from ._null import _design_key, _null_abs_t, _null_len, _null_window_abs_t, _p_from
from ._phrases import _change_phrase, _f, _label
from ._window_rule import _relative, _windows

#: Fewest finite values a verdict other than "inconclusive" needs.
MIN_STEPS = 6
#: Verdicts of one metric.
VERDICTS = ("collapsing", "stable", "diverging", "inconclusive")


@dataclass(frozen=True, kw_only=True)
class CollapseTrend:
    """The trend of one per-step metric and its verdict (rules: :mod:`llmweb_plugin.trend`).

    Attributes:
        verdict: ``"collapsing"``, ``"stable"``, ``"diverging"`` or ``"inconclusive"``.
        slope: OLS slope per step unit (NaN when too few values).
        ci: two-sided ``1 - alpha / 2`` interval of the slope (fixed-b HAC): the level the
            slope test decides at (Bonferroni), so it excludes 0 exactly when that test finds a
            trend.
        p_value: two-sided p-value of "slope = 0" from the simulated null (>= 1/10001).
        relative_change: ``(late_mean - early_mean) / |early_mean|`` by the window rule
            (:func:`window_means`); ``late_mean / early_mean - 1`` for positive metrics.
        relative_change_ci: ``1 - alpha / 2`` interval of ``relative_change`` (the level the
            window test decides at, so it excludes 0 exactly when that test finds a change):
            the window test's interval of ``late_mean - early_mean`` (noise scale from the
            late half) divided by
            ``|early_mean|`` (NaN when it is 0); for a never-negative series it is cut at -1
            (a fall cannot exceed 100%).
        early_mean: mean of the early window.
        late_mean: mean of the late window.
        window: the window size ``w`` (0 with fewer than 4 finite values).
        n_steps: finite values used.
        window_p_value: two-sided p-value of the window test ("late window mean = early
            window mean"); the verdict calls a change when it or ``p_value`` is below
            ``alpha / 2`` (NaN when too few values).
        n_dropped: non-finite values (or values at non-finite steps) dropped.
        first_step: first step used (NaN when none).
        last_step: last step used.
        metric: the metric's name, e.g. ``"norm"``.
        higher_is_diverse: whether a rise means more diversity (so a fall means collapse).
        alpha: the error rate of the intervals.
        margin: the equivalence margin for "stable" (a fraction of the early mean).
        method: a short name of the method.
        reason: why the verdict is what it is, in words.
    """

    verdict: str
    slope: float
    ci: tuple[float, float]
    p_value: float
    relative_change: float
    relative_change_ci: tuple[float, float]
    early_mean: float
    late_mean: float
    window: int
    n_steps: int
    window_p_value: float = math.nan
    n_dropped: int
    first_step: float
    last_step: float
    metric: str = "norm"
    higher_is_diverse: bool = True
    alpha: float = 0.05
    margin: float = 0.10
    method: str = ""
    reason: str = ""

    @property
    def ci_level(self) -> float:
        """Coverage of ``ci`` and ``relative_change_ci``: ``1 - alpha / 2``, the level each of
        the two tests decides at (their Bonferroni union has error rate ``alpha``)."""
        return 1.0 - self.alpha / 2

    @property
    def summary(self) -> str:
        """Same as :meth:`sentence`."""
        return self.sentence()

    def sentence(self) -> str:
        """One human sentence, e.g. ``"||D|| fell 38% (97.5% CI 21% to 52%) over 30 steps:
        collapsing"``."""
        label = _label(self.metric)
        dropped = f" ({self.n_dropped} non-finite values dropped)" if self.n_dropped else ""
        if self.n_steps < MIN_STEPS:
            return f"{label}: inconclusive ({self.reason}){dropped}"
        if self.reason == "constant series":
            return f"{label} constant over {self.n_steps} steps: {self.verdict}{dropped}"
        core = _change_phrase(label, self.relative_change, self.relative_change_ci,
                              self.ci_level)
        why = f" ({self.reason})" if self.verdict == "inconclusive" else ""
        return f"{core} over {self.n_steps} steps: {self.verdict}{why}{dropped}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``), with the sentence."""
        return {
            "metric": self.metric, "verdict": self.verdict, "sentence": self.sentence(),
            "slope": _f(self.slope), "ci": [_f(self.ci[0]), _f(self.ci[1])],
            "p_value": _f(self.p_value), "window_p_value": _f(self.window_p_value),
            "relative_change": _f(self.relative_change),
            "relative_change_ci": [_f(self.relative_change_ci[0]), _f(self.relative_change_ci[1])],
            "early_mean": _f(self.early_mean), "late_mean": _f(self.late_mean),
            "window": self.window, "n_steps": self.n_steps, "n_dropped": self.n_dropped,
            "first_step": _f(self.first_step), "last_step": _f(self.last_step),
            "higher_is_diverse": self.higher_is_diverse, "alpha": self.alpha,
            "ci_level": self.ci_level,
            "margin": self.margin, "method": self.method, "reason": self.reason,
        }


_METHOD = ("OLS slope, Bartlett HAC (Newey-West) with M = n/2 against its simulated fixed-b null, "
           "and late-minus-early window means against the late half's Bartlett long-run "
           "variance (simulated fixed-b null); each at alpha/2 (Bonferroni)")


def _short_trend(n: int, n_dropped: int, t: np.ndarray, y: np.ndarray, metric: str,
                 higher_is_diverse: bool, alpha: float, margin: float) -> CollapseTrend:
    early, late, w, _ = _windows(y[None, :], t)
    rc = float(_relative(early[0], late[0])) if w else math.nan
    reason = (f"only {n} finite value{'s' if n != 1 else ''}; need at least {MIN_STEPS}"
              if n else "no finite values")
    nan = math.nan
    return CollapseTrend(
        verdict="inconclusive", slope=nan, ci=(nan, nan), p_value=nan, relative_change=rc,
        relative_change_ci=(nan, nan), early_mean=float(early[0]), late_mean=float(late[0]),
        window=w, n_steps=n, n_dropped=n_dropped,
        first_step=float(t[0]) if n else nan, last_step=float(t[-1]) if n else nan,
        metric=metric, higher_is_diverse=higher_is_diverse, alpha=alpha, margin=margin,
        method=_METHOD, reason=reason)


def _fit_group(Y: np.ndarray, t: np.ndarray, *, alpha: float) -> dict[str, np.ndarray]:
    """All numbers for rows of finite ``Y`` (m, n >= MIN_STEPS) sharing the steps ``t``."""
    m, n = Y.shape
    b, se, _e = _ols_hac(Y, t, _bandwidth(n))
    null = _null_abs_t(_design_key(t))
    # intervals at the level each test decides at (alpha / 2, Bonferroni): an interval that
    # excludes 0 and a verdict that finds no change must never be printed side by side
    crit = float(np.quantile(null, 1.0 - alpha / 2))
    scale = np.maximum(np.abs(Y).max(axis=1), np.finfo(np.float64).tiny)
    constant = np.ptp(Y, axis=1) <= 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se > 0, np.abs(b) / se, np.where(b != 0, np.inf, 0.0))
    p = _p_from(null, tstat)
    lo, hi = b - crit * se, b + crit * se
    early, late, w, dstep = _windows(Y, t)
    rc = _relative(early, late)
    # window test: late - early window mean against the late half's noise (fixed-b null by n)
    d, sed = _window_diff(Y)
    wnull = _null_window_abs_t(_null_len(n))
    cd = float(np.quantile(wnull, 1.0 - alpha / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        wt = np.where(sed > 0, np.abs(d) / sed, np.where(d != 0, np.inf, 0.0))
        r1 = (d - cd * sed) / np.abs(early)
        r2 = (d + cd * sed) / np.abs(early)
    wp = _p_from(wnull, wt)
    bad = early == 0.0
    rlo = np.where(bad, np.nan, np.minimum(r1, r2))
    rhi = np.where(bad, np.nan, np.maximum(r1, r2))
    # a series that is never negative cannot fall by more than 100%: intersect with [-1, inf)
    nonneg = (Y.min(axis=1) >= 0.0) & (early > 0.0)
    rlo = np.where(nonneg, np.maximum(rlo, -1.0), rlo)
    rhi = np.where(nonneg, np.maximum(rhi, -1.0), rhi)
    b = np.where(constant, 0.0, b)
    lo, hi = np.where(constant, 0.0, lo), np.where(constant, 0.0, hi)
    p, wp = np.where(constant, 1.0, p), np.where(constant, 1.0, wp)
    d = np.where(constant, 0.0, d)
    rc = np.where(constant, 0.0, rc)
    rlo, rhi = np.where(constant, 0.0, rlo), np.where(constant, 0.0, rhi)
    return {"b": b, "lo": lo, "hi": hi, "p": p, "rc": rc, "rlo": rlo, "rhi": rhi,
            "early": early, "late": late, "w": np.full(m, w), "dstep": np.full(m, dstep),
            "constant": constant, "d": d, "wp": wp}


def _classify_single(*, b: float, p: float, d: float, wp: float, lo: float, hi: float,
                     rlo: float, rhi: float, early: float, dstep: float, constant: bool,
                     higher_is_diverse: bool, alpha: float, margin: float,
                     w: int, n: int) -> tuple[str, str]:
    """Verdict of one series: the slope test and the window test, each at level ``alpha / 2``."""
    if constant:
        return "stable", "constant series"
    half = f"{100 * (1 - alpha / 2):g}%"
    down: list[str] = []
    up: list[str] = []
    if p < alpha / 2:
        (down if b < 0 else up).append(
            f"the {half} slope interval lies wholly {'below' if b < 0 else 'above'} 0")
    if wp < alpha / 2:
        (down if d < 0 else up).append(
            f"the last {w} values' mean lies {'below' if d < 0 else 'above'} the first {w} "
            f"values' mean (window test p = {wp:.2g})")
    if down and up:
        return "inconclusive", ("the slope and the window comparison disagree (" +
                                "; ".join(down + up) + "): no monotone change")
    if down or up:
        falls = bool(down)
        verdict = "collapsing" if falls == higher_is_diverse else "diverging"
        return verdict, " and ".join(down or up)
    if early != 0 and math.isfinite(early):
        span = max(abs(lo), abs(hi)) * dstep / abs(early)
        wspan = max(abs(rlo), abs(rhi))
        if span < margin and wspan < margin:
            return "stable", (f"no significant slope or window change, and the implied change "
                              f"stays within +-{100 * margin:g}% (at most "
                              f"{100 * max(span, wspan):.1f}%)")
        return "inconclusive", (f"no steady trend: the intervals allow changes up to "
                                f"{100 * max(span, wspan):.0f}%, beyond the +-{100 * margin:g}% "
                                "margin")
    return "inconclusive", "no significant change and the early mean is 0 (no scale for stable)"


def collapse_trends(series: Sequence[Sequence[float]] | np.ndarray, *,
                    steps: Sequence[float] | np.ndarray | None = None, alpha: float = 0.05,
                    rng: np.random.Generator | int | None = None, metric: str = "norm",
                    higher_is_diverse: bool = True,
                    margin: float = 0.10) -> list[CollapseTrend]:
    """:func:`collapse_trend` for each row of ``series``, vectorised (1,000 x 30 in ~0.1 s).

    Rows with the same pattern of non-finite values are evaluated together. Verdicts, slopes and
    p-values equal those of :func:`collapse_trend` row by row; bootstrap intervals use the
    generator in a different order, so they agree only in distribution.

    Args:
        series: shape ``(n_series, n_steps)``.
        steps: shared steps, shape ``(n_steps,)``, or ``None`` for ``0, 1, ...``.
        alpha, rng, metric, higher_is_diverse, margin: as in :func:`collapse_trend`.

    Returns:
        One :class:`CollapseTrend` per row.
    """
    Y = _as_float_array(series, "series", 2)
    return _trends(Y, steps, alpha=alpha, rng=rng, metric=metric,
                   higher_is_diverse=higher_is_diverse, margin=margin)


def _trends(Y: np.ndarray, steps: object, *, alpha: float, rng: Any, metric: str,
            higher_is_diverse: bool, margin: float) -> list[CollapseTrend]:
    alpha, margin = _check_alpha(alpha), _check_margin(margin)
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a str naming the metric; got {type(metric).__name__}")
    m, n = Y.shape
    t_all = _steps_array(steps, n)
    np.random.default_rng(rng)  # validates rng; single-series results do not depend on it
    keep = np.isfinite(Y) & np.isfinite(t_all)[None, :]
    out: list[CollapseTrend | None] = [None] * m
    patterns, inverse = np.unique(keep, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    for g, pat in enumerate(patterns):
        rows = np.flatnonzero(inverse == g)
        t = t_all[pat]
        n_ok, n_drop = int(pat.sum()), int(n - pat.sum())
        if n_ok < MIN_STEPS:
            for r in rows:
                out[r] = _short_trend(n_ok, n_drop, t, Y[r, pat], metric, higher_is_diverse,
                                      alpha, margin)
            continue
        res = _fit_group(Y[np.ix_(rows, np.flatnonzero(pat))], t, alpha=alpha)
        for j, r in enumerate(rows):
            verdict, reason = _classify_single(
                b=float(res["b"][j]), p=float(res["p"][j]), d=float(res["d"][j]),
                wp=float(res["wp"][j]), lo=float(res["lo"][j]), hi=float(res["hi"][j]),
                rlo=float(res["rlo"][j]), rhi=float(res["rhi"][j]),
                early=float(res["early"][j]), dstep=float(res["dstep"][j]),
                constant=bool(res["constant"][j]), higher_is_diverse=higher_is_diverse,
                alpha=alpha, margin=margin, w=int(res["w"][j]), n=n_ok)
            out[r] = CollapseTrend(
                verdict=verdict, slope=float(res["b"][j]),
                ci=(float(res["lo"][j]), float(res["hi"][j])), p_value=float(res["p"][j]),
                relative_change=float(res["rc"][j]),
                relative_change_ci=(float(res["rlo"][j]), float(res["rhi"][j])),
                window_p_value=float(res["wp"][j]), early_mean=float(res["early"][j]),
                late_mean=float(res["late"][j]),
                window=int(res["w"][j]), n_steps=n_ok, n_dropped=n_drop,
                first_step=float(t[0]), last_step=float(t[-1]), metric=metric,
                higher_is_diverse=higher_is_diverse, alpha=alpha, margin=margin,
                method=_METHOD, reason=reason)
    return [o for o in out if o is not None]


def collapse_trend(values: Sequence[float] | np.ndarray, *,
                   steps: Sequence[float] | np.ndarray | None = None, alpha: float = 0.05,
                   rng: np.random.Generator | int | None = None, metric: str = "norm",
                   higher_is_diverse: bool = True, margin: float = 0.10) -> CollapseTrend:
    """Is one per-step metric collapsing? A verdict with its uncertainty.

    See :mod:`llmweb_plugin.trend` for the method (OLS slope, Newey-West HAC with a fixed-b
    reference) and the precise verdict rules. Never raises on data: too few, all-NaN or constant
    series give "inconclusive" or "stable" with the reason; non-finite values are dropped with
    their steps and counted in ``n_dropped``.

    Args:
        values: the metric per step, shape ``(n_steps,)``; ``None``/NaN/inf are dropped.
        steps: the steps (strictly increasing), or ``None`` for ``0, 1, ...``; the slope is per
            step unit.
        alpha: family-wise error rate of the verdict; each of its two tests decides at
            ``alpha / 2`` and the intervals are two-sided ``1 - alpha / 2`` to match.
        rng: a generator or seed, accepted for a signature uniform with :func:`pooled_trend`;
            single-series results are deterministic and do not depend on it.
        metric: the metric's name (used in the sentence, e.g. ``"norm"`` -> ``||D||``).
        higher_is_diverse: ``True`` when a fall means collapse (``||D||``, Vendi); ``False``
            for metrics that rise under collapse (e.g. a near-duplicate share).
        margin: equivalence margin for "stable", as a fraction of the early mean.

    Returns:
        A frozen :class:`CollapseTrend`.

    Raises:
        TypeError: if ``values`` are not numbers.
        ValueError: if ``steps`` has another length or is not increasing, or a parameter is out
            of range (the message says what to pass).

    Example:
        >>> collapse_trend([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4], rng=0).verdict
        'collapsing'
    """
    y = _as_float_array(values, "values", 1)
    return _trends(y[None, :], steps, alpha=alpha, rng=rng, metric=metric,
                   higher_is_diverse=higher_is_diverse, margin=margin)[0]
