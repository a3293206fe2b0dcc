"""Collapse verdicts with their uncertainty: is a per-step metric falling, holding or rising?

A per-step series such as ``||D(t)||_F`` zig-zags and its steps are autocorrelated, so neither
"last over first" nor a plain OLS t-test answers the question. This package gives

- :func:`collapse_trend`: one series -> :class:`CollapseTrend` (slope with an interval that holds
  its error rate on autocorrelated noise, the late-over-early change with its interval,
  and a verdict in ``{"collapsing", "stable", "diverging", "inconclusive"}``);
- :func:`collapse_trends`: the same for many series at once (vectorised);
- :func:`pooled_trend`: several replicates (seeds, runs) -> :class:`PooledTrend` with a band;
- :func:`collapse_verdict`: several metrics (between-agent convergence and within-web diversity)
  -> :class:`CollapseVerdict` with a headline that says which fell.

**The window rule** (used everywhere, see :func:`window_means`): after dropping non-finite values,
with ``n`` values left, ``w = max(2, n // 4)``; the *early* window is the first ``w`` values, the
*late* window the last ``w``; ``relative_change = (late_mean - early_mean) / |early_mean|``,
which is ``late_mean / early_mean - 1`` for the (positive) collapse metrics and keeps the sign of
the change otherwise.

**Two tests, Bonferroni.** A collapse can be a steady decline or an abrupt fall (in 1-5 steps)
followed by a flat floor; one straight-line test sees the first but not the second (the fall
inflates its residual variance). So the verdict combines two tests, each at level ``alpha / 2``
(Bonferroni), and calls a change when either rejects:

1. *Slope test.* The OLS slope of the values on their steps, with the Newey-West (1987)
   Bartlett-kernel HAC standard error at a large bandwidth ``M = max(2, n // 2)`` (lags
   ``0..M-1`` weighted ``1 - j/M``), the t-ratio referred to its *fixed-b* null distribution
   (Kiefer & Vogelsang 2005, "A new asymptotic theory for heteroskedasticity-autocorrelation
   robust tests", Econometric Theory 21), simulated from 10,000 iid Gaussian series with a fixed
   internal seed: exact for iid Gaussian noise, robust to autocorrelation because the large
   bandwidth keeps the dependence in the variance estimate. (A plain Newey-West test with a
   t(n-2) reference falsely reports a decline in ~11% of AR(1) series with ``phi = 0.5`` at 30
   steps.) ``p_value`` and ``ci`` (the ``1 - alpha / 2`` interval) are this test's.
2. *Window test.* The late-window mean minus the early-window mean (the window rule above),
   divided by ``sigma * sqrt(2 / w)``, where ``sigma^2`` is the Bartlett long-run variance of the
   *late half* of the series after removing its own OLS line (bandwidth half the half). The
   noise scale comes from where a collapsed series sits on its floor, so a fall inside the early
   window does not hide itself (the fix for the non-monotonic power of HAC tests under level
   shifts, Vogelsang 1999, "Sources of nonmonotonic power when testing for a shift in mean of a
   dynamic time series", J. Econometrics 88, is to estimate the variance away from the shift).
   Its null is simulated like the slope test's (fixed-b: it depends on the fractions, not on
   ``n``). ``window_p_value`` and ``relative_change_ci`` (``1 - alpha / 2``) are this test's.

Both intervals are printed at ``1 - alpha / 2`` (97.5% by default), the level their test
decides at, so a sentence never shows an interval that excludes 0 beside a verdict that found
no change (``CollapseTrend.ci_level``).

Nulls are simulated once per series length (and, for the slope, per spacing of the steps) and
cached; beyond 64 values a geometric grid of lengths (ratio ~1.08, capped at 256) is used, so a
verdict after every step of a long run costs ~85 simulations in all (~5 s for 200 steps).
Single-series results are deterministic; only :func:`pooled_trend` resamples (with ``rng``).

**Verdict** (``alpha`` = 0.05, ``margin`` = 0.10 by default):

- ``"inconclusive"`` when fewer than :data:`MIN_STEPS` (6) finite values remain; when one test
  finds a fall and the other a rise (no monotone change); or when neither test rejects but the
  intervals allow a change beyond ``+-margin``;
- ``"collapsing"`` when ``p_value < alpha / 2`` with a negative slope or
  ``window_p_value < alpha / 2`` with a lower late window (for ``higher_is_diverse=True``), and
  neither test finds a rise; the reason says which test(s);
- ``"diverging"`` symmetrically;
- ``"stable"`` when neither test rejects and both the slope interval's implied change (the
  interval times the distance between the windows' mean steps, over ``|early_mean|``) and
  ``relative_change_ci`` lie inside ``(-margin, +margin)`` (an equivalence test), and always for
  a constant series.

**Measured** (``benchmarks/bench_trend_calibration.py``, 2,000 series per setting, 30 steps):
AR(1) noise with ``phi = 0.5``: "collapsing" in 5.8% (target <= 10%; the slope test alone at
``alpha`` 4.2%, plain Newey-West 10.6%); ``phi = 0.3``: 3.7%; ``phi = 0.7``: 9.0%; iid: 2.2%; a
linear decline 1.0 -> 0.5 plus iid noise sd 0.1: 100% (target >= 90%); plus AR(1) noise
(``phi = 0.5``) sd 0.1: 99.3%, sd 0.2: 70%; 1.0 for 3 steps then 0.3 plus AR(1) noise sd 0.1:
83% (slope test alone 1%); single replicates of the GMM Fig. 4 preset (a fall from ~1.5 to
~0.1 in 1-5 steps, then a noisy floor): 100% at 31 and at 201 steps (slope test alone 4% and
0%). Coverage of ``relative_change_ci`` (nominal 97.5%): 98% on iid noise, 99% around
declines with iid noise, 95% around declines with AR(1) ``phi = 0.5``, 92% on AR(1)
``phi = 0.5`` noise, 85% with ``phi = 0.7``.

Limitations: the window test assumes the noise is as large early as late; a series whose mean
holds while its noise shrinks tenfold is called "collapsing" (or "diverging") in ~9% each
(the slope test alone: 2%). At 201 steps, a fall that lasts 3 steps out of 201 (1.0 -> 0.3)
moves the 50-value early window by only 12% and is found in 13%; the Fig. 4 collapse, which
falls to a tenth, stays found (its ``relative_change`` of ~-77% understates the fall from the
first step, ~-98%, because the early window averages the first 50 steps).

**Where the parts live** (private modules; import from here): ``_single`` (one series:
:class:`CollapseTrend`), ``_pooled`` (replicates), ``_verdict`` (several metrics),
``_window_rule``, ``_hac`` (OLS with Bartlett-HAC errors, Student's t), ``_null`` (the simulated
fixed-b nulls and their cache), ``_phrases`` (sentences), ``_checks`` (argument checks).

Example:
    >>> import numpy as np
    >>> y = np.linspace(1.0, 0.5, 30) + np.random.default_rng(0).normal(0, 0.1, 30)
    >>> tr = collapse_trend(y, rng=0)
    >>> tr.verdict, tr.n_steps
    ('collapsing', 30)
    >>> collapse_trend([1.0] * 10).verdict
    'stable'
"""

from __future__ import annotations

import logging

from ._pooled import PooledTrend, pooled_trend
from ._single import MIN_STEPS, VERDICTS, CollapseTrend, collapse_trend, collapse_trends
from ._verdict import (
    CONVERGENCE_METRICS,
    DIVERSITY_METRICS,
    HEADLINE_VERDICTS,
    CollapseVerdict,
    collapse_verdict,
)
from ._window_rule import window_means

__all__ = [
    "CONVERGENCE_METRICS",
    "DIVERSITY_METRICS",
    "HEADLINE_VERDICTS",
    "MIN_STEPS",
    "VERDICTS",
    "CollapseTrend",
    "CollapseVerdict",
    "PooledTrend",
    "collapse_trend",
    "collapse_trends",
    "collapse_verdict",
    "pooled_trend",
    "window_means",
]

logger = logging.getLogger(__name__)
