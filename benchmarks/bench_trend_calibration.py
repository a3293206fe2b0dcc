"""Measure the collapse verdict's false-alarm and detection rates on simulated series.

Run by hand (not collected by pytest)::

    python benchmarks/bench_trend_calibration.py            # 2,000 series per setting
    python benchmarks/bench_trend_calibration.py --n 500    # quicker

Prints, per setting, the share of series called "collapsing", "diverging", "stable" and
"inconclusive" by :func:`llmweb_plugin.trend.collapse_trends` (alpha = 0.05, 30 steps unless the
setting says otherwise), the coverage of ``relative_change_ci`` where the true change is known,
and two baselines: ``slope``, the share the slope test alone calls a decline at level alpha (the
verdict's rule before the window test was added), and ``plainNW``, a plain Newey-West t-test
(bandwidth ``floor(4 (n/100)^(2/9))``, t(n-2) reference), which the fixed-b reference replaces.
Targets (issue 12): AR(1) noise with phi = 0.5 -> "collapsing" in at most 10%; a linear decline
1.0 -> 0.5 plus iid noise sd 0.1 -> "collapsing" in at least 90%; single replicates of the GMM
Fig. 4 preset (an abrupt collapse: a fall in 1-5 steps, then a flat noisy floor) ->
"collapsing" in at least 90%. Also times 1,000 series of 30 steps, and a monitor-like sequence
of verdicts after every step of a 200-step series. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from llmweb_plugin.trend import collapse_trend, collapse_trends, window_means
from llmweb_plugin.trend._hac import _ols_hac, _t_quantile

N_STEPS = 30


def ar1(gen: np.random.Generator, m: int, n: int, phi: float, sd: float) -> np.ndarray:
    """AR(1) noise with marginal sd ``sd``, started in its stationary law, shape ``(m, n)``."""
    x = np.empty((m, n))
    x[:, 0] = gen.normal(0.0, sd, m)
    innov = sd * math.sqrt(1.0 - phi * phi)
    for j in range(1, n):
        x[:, j] = phi * x[:, j - 1] + gen.normal(0.0, innov, m)
    return x


def plain_nw_collapse_rate(Y: np.ndarray) -> float:
    """Baseline: Newey-West with the usual small bandwidth and a t(n-2) reference."""
    n = Y.shape[1]
    L = math.floor(4 * (n / 100) ** (2 / 9))
    b, se, _ = _ols_hac(Y, np.arange(n, dtype=float), L + 1)  # lags 0..L, weights 1 - j/(L+1)
    se = se * math.sqrt(n / (n - 2))
    crit = _t_quantile(0.95, n - 2)
    return float(np.mean(b / se < -crit))


def gmm_fig4_singles(n_steps: int, seeds: int) -> np.ndarray:
    """Per-replicate ``||D||`` series of the Fig. 4 preset, shape ``(5 * seeds, n_steps + 1)``."""
    import llmweb_plugin as lw

    return np.concatenate([lw.gmm_preset("lwd-fig4", n_steps=n_steps).run(rng=s).norms.T
                           for s in range(seeds)])


def step_drop(gen: np.random.Generator, m: int, n: int, k: int = 3) -> np.ndarray:
    """1.0 for ``k`` steps then 0.3, plus AR(1) noise (phi 0.5, sd 0.1)."""
    base = np.r_[np.ones(k), np.full(n - k, 0.3)]
    return base + ar1(gen, m, n, 0.5, 0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="series per setting (default 2000)")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    gen = np.random.default_rng(args.seed)
    m, n = args.n, N_STEPS
    decline = np.linspace(1.0, 0.5, n)
    true_e, true_l, _ = window_means(decline)
    true_rc = true_l / true_e - 1.0
    settings = [
        ("AR(1) phi=0.5 noise around 1.0, sd 0.1", 1.0 + ar1(gen, m, n, 0.5, 0.1), 0.0, "fa"),
        ("iid noise around 1.0, sd 0.1", 1.0 + gen.normal(0, 0.1, (m, n)), 0.0, "info"),
        ("AR(1) phi=0.3 noise, sd 0.1", 1.0 + ar1(gen, m, n, 0.3, 0.1), 0.0, "info"),
        ("AR(1) phi=0.7 noise, sd 0.1", 1.0 + ar1(gen, m, n, 0.7, 0.1), 0.0, "info"),
        ("AR(1) phi=0.5 noise, sd 0.02", 1.0 + ar1(gen, m, n, 0.5, 0.02), 0.0, "info"),
        ("decline 1.0->0.5 + iid sd 0.1", decline + gen.normal(0, 0.1, (m, n)), true_rc, "det"),
        ("decline 1.0->0.5 + AR(1) phi=0.5 sd 0.1", decline + ar1(gen, m, n, 0.5, 0.1), true_rc,
         "info"),
        ("decline 1.0->0.5 + AR(1) phi=0.5 sd 0.2", decline + ar1(gen, m, n, 0.5, 0.2), true_rc,
         "info"),
        ("decline 1.0->0.9 + iid sd 0.1", np.linspace(1.0, 0.9, n) + gen.normal(0, 0.1, (m, n)),
         None, "info"),
        ("step 1.0 (3 steps) -> 0.3 + AR(1) .5 sd .1", step_drop(gen, m, n), None, "info"),
        ("same, 201 steps", step_drop(gen, m // 4, 201), None, "info"),
        ("level 1, noise sd 0.2 -> 0.02 (shrinking)",
         1.0 + gen.normal(0, 1, (m, n)) * np.linspace(0.2, 0.02, n), 0.0, "info"),
        ("AR(1) phi=0.5 noise, 201 steps", 1.0 + ar1(gen, m // 4, 201, 0.5, 0.1), 0.0, "info"),
        ("GMM lwd-fig4 single replicates, 31 steps", gmm_fig4_singles(30, 20), None, "gmm"),
        ("GMM lwd-fig4 single replicates, 201 steps", gmm_fig4_singles(200, 20), None, "gmm"),
    ]
    ok = True
    print(f"{m} series x {n} steps per setting, alpha 0.05 (two-sided interval; "
          "collapsing = whole slope interval below 0)\n")
    print(f"{'setting':44s} {'collapse':>8s} {'diverge':>8s} {'stable':>7s} {'inconcl':>8s} "
          f"{'slope':>6s} {'plainNW':>8s} {'rc-cover':>8s}")
    for name, Y, rc_true, kind in settings:
        res = collapse_trends(Y, rng=args.seed)
        share = {v: float(np.mean([r.verdict == v for r in res]))
                 for v in ("collapsing", "diverging", "stable", "inconclusive")}
        cover = ""
        if rc_true is not None:
            cov = np.mean([r.relative_change_ci[0] <= rc_true <= r.relative_change_ci[1]
                           for r in res])
            cover = f"{cov:8.3f}"
        slope_only = float(np.mean([r.p_value < 0.05 and r.slope < 0 for r in res]))
        print(f"{name:44s} {share['collapsing']:8.3f} {share['diverging']:8.3f} "
              f"{share['stable']:7.3f} {share['inconclusive']:8.3f} {slope_only:6.3f} "
              f"{plain_nw_collapse_rate(Y):8.3f} {cover:>8s}")
        if kind == "fa" and share["collapsing"] > 0.10:
            print("  MISSED: false-alarm target <= 0.10")
            ok = False
        if kind in ("det", "gmm") and share["collapsing"] < 0.90:
            print("  MISSED: detection target >= 0.90")
            ok = False
    Y = 1.0 + ar1(gen, 1000, n, 0.5, 0.1)
    collapse_trends(Y[:2], rng=0)  # warm the null-distribution cache for this design
    t0 = time.perf_counter()
    collapse_trends(Y, rng=0)
    print(f"\n1000 series x {n} steps: {time.perf_counter() - t0:.2f} s "
          "(the null distribution is simulated once per design and cached)")
    y = 1.0 + ar1(gen, 1, 200, 0.5, 0.1)[0]
    t0 = time.perf_counter()
    for k in range(6, 201):  # what CollapseMonitor.trend() after every step costs
        collapse_trend(y[:k])
    print(f"verdicts after each of 195 steps of one 200-step series: "
          f"{time.perf_counter() - t0:.2f} s in all (nulls cached per length; beyond 64 steps "
          "one per grid length)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
