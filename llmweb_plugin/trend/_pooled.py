"""Several replicates of one metric: :class:`PooledTrend` and :func:`pooled_trend`.

The pooled slope is the mean of the per-replicate slopes with a Student-t interval across
replicates; the relative change's interval resamples replicates (the only place ``rng`` is used).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import _as_float_array, _check_alpha, _check_margin, _check_n_boot, _steps_array
from ._hac import _t_abs_cdf, _t_quantile
from ._phrases import _change_phrase, _f, _label
from ._single import MIN_STEPS, VERDICTS, CollapseTrend, _trends
from ._window_rule import _relative, _windows


@dataclass(frozen=True, kw_only=True)
class PooledTrend:
    """Several replicates of one metric: per-replicate trends, a pooled verdict and a band.

    The pooled slope is the mean of the per-replicate OLS slopes with a Student-t interval on
    ``R - 1`` degrees of freedom across replicates (the two-stage "summary statistics"
    random-effects approach: replicate-to-replicate variation and each slope's own noise both sit
    in the spread of the slopes). With one usable replicate the pooled numbers are that
    replicate's. ``relative_change`` applies the window rule to the per-step mean across
    replicates; its interval resamples replicates. The pooled verdict applies the slope rule of a
    single series (at ``alpha``) to the pooled slope interval; the per-replicate verdicts in
    ``counts`` use both tests (the docstring of :mod:`llmweb_plugin.trend`).

    Attributes:
        verdict: as for :class:`CollapseTrend`.
        slope: mean per-replicate slope.
        ci: ``1 - alpha`` interval of the pooled slope.
        p_value: two-sided p-value of "mean slope = 0".
        relative_change: of the per-step mean series, by the window rule.
        relative_change_ci: bootstrap over replicates (NaN with one replicate: see its own).
        n_replicates: replicates with a usable slope (>= ``MIN_STEPS`` finite values).
        counts: verdict -> number of replicates with that verdict (all four keys).
        trends: the per-replicate :class:`CollapseTrend`, in input order.
        steps: the band's steps, shape ``(n_steps,)``.
        band_median: per-step median across replicates.
        band_low: per-step 5% quantile.
        band_high: per-step 95% quantile.
        band_mean: per-step mean.
        n_padded: values appended as NaN to replicates shorter than the longest.
        metric, higher_is_diverse, alpha, margin, method, reason: as for :class:`CollapseTrend`.
        ci_level: coverage of ``ci`` and ``relative_change_ci``: ``1 - alpha`` for several
            replicates (the pooled verdict is one test at ``alpha``); with one usable replicate,
            that replicate's ``1 - alpha / 2``.
    """

    verdict: str
    slope: float
    ci: tuple[float, float]
    p_value: float
    relative_change: float
    relative_change_ci: tuple[float, float]
    n_replicates: int
    counts: dict[str, int]
    trends: tuple[CollapseTrend, ...]
    steps: np.ndarray
    band_median: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    band_mean: np.ndarray
    n_padded: int = 0
    metric: str = "norm"
    higher_is_diverse: bool = True
    alpha: float = 0.05
    margin: float = 0.10
    method: str = ""
    reason: str = ""
    ci_level: float = 0.95

    @property
    def summary(self) -> str:
        """Same as :meth:`sentence`."""
        return self.sentence()

    def sentence(self) -> str:
        """E.g. ``"||D|| fell 60% (95% CI 52% to 70%) over 31 steps in 5 replicates
        (5 collapsing): collapsing"``."""
        label = _label(self.metric)
        per = ", ".join(f"{c} {v}" for v, c in self.counts.items() if c)
        if self.n_replicates == 0:
            return f"{label}: inconclusive ({self.reason})"
        core = _change_phrase(label, self.relative_change, self.relative_change_ci,
                              self.ci_level)
        return (f"{core} over {len(self.steps)} steps in {self.n_replicates} replicate"
                f"{'s' if self.n_replicates != 1 else ''} ({per}): {self.verdict}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        lst = lambda a: [_f(float(x)) for x in a]
        return {
            "metric": self.metric, "verdict": self.verdict, "sentence": self.sentence(),
            "slope": _f(self.slope), "ci": [_f(self.ci[0]), _f(self.ci[1])],
            "p_value": _f(self.p_value), "relative_change": _f(self.relative_change),
            "relative_change_ci": [_f(self.relative_change_ci[0]), _f(self.relative_change_ci[1])],
            "n_replicates": self.n_replicates, "counts": dict(self.counts),
            "trends": [t.to_dict() for t in self.trends],
            "band": {"steps": lst(self.steps), "median": lst(self.band_median),
                     "low": lst(self.band_low), "high": lst(self.band_high),
                     "mean": lst(self.band_mean)},
            "n_padded": self.n_padded, "higher_is_diverse": self.higher_is_diverse,
            "alpha": self.alpha, "ci_level": self.ci_level, "margin": self.margin,
            "method": self.method,
            "reason": self.reason,
        }


def pooled_trend(series_list: Sequence[Sequence[float]] | np.ndarray, *,
                 steps: Sequence[float] | np.ndarray | None = None, alpha: float = 0.05,
                 rng: np.random.Generator | int | None = None, metric: str = "norm",
                 higher_is_diverse: bool = True, margin: float = 0.10,
                 n_boot: int = 999) -> PooledTrend:
    """Pooled verdict over replicates (seeds or runs) of one metric, with a per-step band.

    Args:
        series_list: one series per replicate (a list of sequences or an array of shape
            ``(n_replicates, n_steps)``); shorter replicates are padded with NaN at the end
            (counted in ``n_padded``), i.e. every replicate is assumed to start at the first step.
        steps: steps shared by the replicates (length of the longest), or ``None``.
        alpha, metric, higher_is_diverse, margin: as in :func:`collapse_trend`.
        rng: generator or seed for the bootstrap over replicates of ``relative_change_ci``.
        n_boot: bootstrap resamples of the replicates.

    Returns:
        A frozen :class:`PooledTrend`.

    Raises:
        TypeError / ValueError: on malformed input (not on short or NaN data).

    Example:
        >>> import numpy as np
        >>> g = np.random.default_rng(0)
        >>> reps = [np.linspace(1, 0.5, 20) + g.normal(0, 0.05, 20) for _ in range(4)]
        >>> p = pooled_trend(reps, rng=0)
        >>> p.verdict, p.counts["collapsing"], p.band_median.shape
        ('collapsing', 4, (20,))
    """
    alpha, margin, n_boot = _check_alpha(alpha), _check_margin(margin), _check_n_boot(n_boot)
    if isinstance(series_list, (str, bytes, Mapping)):
        raise TypeError("series_list must be a sequence of per-replicate series")
    rows = [_as_float_array(s, f"series_list[{i}]", 1) for i, s in enumerate(series_list)]
    if not rows:
        raise ValueError("series_list is empty; pass at least one replicate's series")
    n = max(r.shape[0] for r in rows)
    Y = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        Y[i, : r.shape[0]] = r
    n_padded = int(sum(n - r.shape[0] for r in rows))
    t = _steps_array(steps, n)
    gen = np.random.default_rng(rng)
    trends = tuple(_trends(Y, t, alpha=alpha, rng=gen, metric=metric,
                           higher_is_diverse=higher_is_diverse, margin=margin))
    counts = {v: sum(tr.verdict == v for tr in trends) for v in VERDICTS}
    with np.errstate(all="ignore"), _quiet():
        band_mean = np.nanmean(Y, axis=0)
        band_median = np.nanmedian(Y, axis=0)
        band_low = np.nanquantile(Y, 0.05, axis=0)
        band_high = np.nanquantile(Y, 0.95, axis=0)
    band_t = t.copy()
    usable = [i for i, tr in enumerate(trends) if math.isfinite(tr.slope)]
    R = len(usable)
    common = {"n_replicates": R, "counts": counts, "trends": trends, "steps": band_t,
                  "band_median": band_median, "band_low": band_low, "band_high": band_high,
                  "band_mean": band_mean, "n_padded": n_padded, "metric": metric,
                  "higher_is_diverse": higher_is_diverse, "alpha": alpha, "margin": margin}
    nan = math.nan
    if R == 0:
        return PooledTrend(verdict="inconclusive", slope=nan, ci=(nan, nan), p_value=nan,
                           relative_change=nan, relative_change_ci=(nan, nan),
                           method="no usable replicate",
                           reason=f"no replicate has {MIN_STEPS} finite values", **common)
    if R == 1:
        tr = trends[usable[0]]
        return PooledTrend(verdict=tr.verdict, slope=tr.slope, ci=tr.ci, p_value=tr.p_value,
                           relative_change=tr.relative_change,
                           relative_change_ci=tr.relative_change_ci, ci_level=tr.ci_level,
                           method="one usable replicate: " + tr.method,
                           reason="one usable replicate: " + tr.reason, **common)
    slopes = np.array([trends[i].slope for i in usable])
    mean, sd = float(slopes.mean()), float(slopes.std(ddof=1))
    se = sd / math.sqrt(R)
    crit = _t_quantile(1.0 - alpha, R - 1)
    lo, hi = mean - crit * se, mean + crit * se
    if se > 0:
        p = 1.0 - float(_t_abs_cdf(np.array(abs(mean) / se), R - 1))
    else:
        p = 1.0 if mean == 0 else 0.0
    # relative change of the per-step mean series, on the steps finite in it
    Yu = Y[usable]
    with np.errstate(all="ignore"), _quiet():
        ms = np.nanmean(Yu, axis=0)
    ok = np.isfinite(ms) & np.isfinite(t)
    early, late, _w, dstep = _windows(ms[ok][None, :], t[ok])
    rc = float(_relative(early[0], late[0]))
    picks = gen.integers(0, R, size=(n_boot, R))
    with np.errstate(all="ignore"), _quiet():
        bm = np.nanmean(Yu[picks][:, :, ok], axis=1)  # (B, n_ok)
        be, bl, _, _ = _windows(bm, t[ok])
        boot = _relative(be, bl)
        boot = boot[np.isfinite(boot)]
    rci = ((float(np.quantile(boot, alpha / 2)), float(np.quantile(boot, 1 - alpha / 2)))
           if boot.size else (nan, nan))
    constant = all(trends[i].reason == "constant series" for i in usable) and sd == 0
    verdict, reason = _classify(lo, hi, float(early[0]), dstep, constant, higher_is_diverse,
                                margin)
    return PooledTrend(verdict=verdict, slope=mean, ci=(lo, hi), p_value=p, relative_change=rc,
                       relative_change_ci=rci, ci_level=1.0 - alpha,
                       method=(f"mean of {R} per-replicate OLS slopes, Student-t({R - 1}) "
                               "interval; bootstrap over replicates for the relative change"),
                       reason=reason, **common)


def _classify(lo: float, hi: float, early: float, dstep: float, constant: bool,
              higher_is_diverse: bool, margin: float) -> tuple[str, str]:
    if constant:
        return "stable", "constant series"
    if lo > 0 or hi < 0:
        falls = hi < 0
        verdict = "collapsing" if falls == higher_is_diverse else "diverging"
        return verdict, ("slope interval wholly below 0" if falls
                         else "slope interval wholly above 0")
    if early != 0 and math.isfinite(early):
        span = max(abs(lo), abs(hi)) * dstep / abs(early)
        if span < margin:
            return "stable", (f"no significant slope, and the implied change stays within "
                              f"+-{100 * margin:g}% (at most {100 * span:.1f}%)")
        return "inconclusive", (f"no steady trend: the slope interval allows changes up to "
                                f"{100 * span:.0f}%, beyond the +-{100 * margin:g}% margin")
    return "inconclusive", "no significant slope and the early mean is 0 (no scale for stable)"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'Mean of empty slice' / 'All-NaN slice' warnings for all-NaN columns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
