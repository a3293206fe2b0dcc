"""Effect sizes of an experiment: each arm against the baseline over the last steps.

Per seed, the mean of a metric over the last ``window`` steps; then the paired difference of
means across seeds with a percentile bootstrap 95% CI (seeds resampled, a fixed generator, so
reports are reproducible) and Cohen's ``d`` (difference over the pooled standard deviation
across seeds).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Effect", "effect_size", "effects_vs_baseline", "last_window_means", "quiet_nanmean"]


@dataclass(frozen=True, kw_only=True)
class Effect:
    """An arm against the baseline over the last ``window`` steps (paired by seed).

    Attributes:
        metric: what was compared (``norm``, ``entropy``, ``mean_cosine_distance``).
        arm: the arm.
        baseline: the baseline arm.
        window: the steps averaged, e.g. ``(191, 200)``.
        n_seeds: seeds in both arms with a defined value.
        mean_arm: mean over seeds of the arm's window means.
        mean_baseline: the same for the baseline.
        diff: ``mean_arm - mean_baseline``.
        ci_low: lower end of the 95% bootstrap CI of ``diff``.
        ci_high: upper end.
        cohens_d: ``diff`` over the pooled s.d. across seeds (``None`` if undefined).
        relative: ``diff / mean_baseline`` (``None`` if the baseline is 0).
    """

    metric: str
    arm: str
    baseline: str
    window: tuple[int, int]
    n_seeds: int
    mean_arm: float
    mean_baseline: float
    diff: float
    ci_low: float
    ci_high: float
    cohens_d: float | None
    relative: float | None

    @property
    def verdict(self) -> str:
        """``higher``/``lower`` when the CI excludes 0, else ``no clear effect``."""
        if self.ci_low > 0:
            return "higher"
        if self.ci_high < 0:
            return "lower"
        return "no clear effect"


def effect_size(arm_values: ArrayLike, baseline_values: ArrayLike, *, metric: str = "norm",
                arm: str = "arm", baseline: str = "baseline", window: tuple[int, int] = (0, 0),
                n_boot: int = 2000, rng: np.random.Generator | int | None = 0) -> Effect:
    """Paired effect of one arm vs the baseline from per-seed window means.

    Args:
        arm_values: per-seed values of the arm, shape ``(n_seeds,)`` (NaN = undefined).
        baseline_values: the baseline's, same seeds in the same order.
        metric, arm, baseline, window: labels.
        n_boot: bootstrap resamples of the seeds.
        rng: generator of the bootstrap (fixed by default: reproducible reports).

    Example:
        >>> e = effect_size([2.0, 2.2, 2.1], [1.0, 1.1, 0.9])
        >>> round(e.diff, 3), e.ci_low > 0
        (1.1, True)
    """
    x = np.asarray(arm_values, dtype=np.float64)
    y = np.asarray(baseline_values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"arm and baseline values must be 1-D of one length; got {x.shape} "
                         f"and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n == 0:
        nan = float("nan")
        return Effect(metric=metric, arm=arm, baseline=baseline, window=window, n_seeds=0,
                      mean_arm=nan, mean_baseline=nan, diff=nan, ci_low=nan, ci_high=nan,
                      cohens_d=None, relative=None)
    diffs = x - y
    diff = float(diffs.mean())
    gen = np.random.default_rng(rng)
    boot = diffs[gen.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    if n > 1:
        pooled = math.sqrt((float(x.var(ddof=1)) + float(y.var(ddof=1))) / 2.0)
    else:
        pooled = 0.0
    if pooled > 0:
        d: float | None = diff / pooled
    else:
        d = 0.0 if diff == 0 else None
    mb = float(y.mean())
    return Effect(metric=metric, arm=arm, baseline=baseline, window=window, n_seeds=n,
                  mean_arm=float(x.mean()), mean_baseline=mb, diff=diff, ci_low=lo, ci_high=hi,
                  cohens_d=d, relative=(diff / mb) if mb != 0 else None)


def last_window_means(values: np.ndarray, steps: np.ndarray, window: int) -> tuple[np.ndarray,
                                                                                tuple[int, int]]:
    """Per-seed mean over the last ``window`` columns; NaNs ignored (all-NaN -> NaN)."""
    w = max(1, min(int(window), values.shape[1]))
    block = values[:, -w:]
    with np.errstate(invalid="ignore"), quiet_nanmean():
        means = np.nanmean(block, axis=1) if block.size else np.full(values.shape[0], np.nan)
    return means, (int(steps[-w]), int(steps[-1]))


@contextlib.contextmanager
def quiet_nanmean() -> Iterator[None]:
    """Silence numpy's "mean of empty slice" warnings (all-NaN columns are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def effects_vs_baseline(values: Mapping[str, np.ndarray], steps: np.ndarray, baseline: str, window: int,
             metric: str, n_boot: int) -> dict[str, Effect]:
    base, win = last_window_means(values[baseline], steps, window)
    out = {}
    for arm, v in values.items():
        if arm == baseline:
            continue
        m, _ = last_window_means(v, steps, window)
        out[arm] = effect_size(m, base, metric=metric, arm=arm, baseline=baseline, window=win,
                               n_boot=n_boot)
    return out

