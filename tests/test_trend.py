"""Collapse verdicts (issue 12): calibrated on simulated series, checked against brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.metrics import StepMetrics
from llmweb_plugin.trend import (
    MIN_STEPS,
    collapse_trend,
    collapse_trends,
    collapse_verdict,
    pooled_trend,
    window_means,
)
from llmweb_plugin.trend._hac import _bandwidth, _late_lrv, _ols_hac, _t_abs_cdf, _t_quantile
from llmweb_plugin.trend._null import _null_len

N = 30


def _ar1(gen: np.random.Generator, m: int, n: int, phi: float, sd: float) -> np.ndarray:
    x = np.empty((m, n))
    x[:, 0] = gen.normal(0.0, sd, m)
    for j in range(1, n):
        x[:, j] = phi * x[:, j - 1] + gen.normal(0.0, sd * math.sqrt(1 - phi * phi), m)
    return x


def _share(trends: list, verdict: str) -> float:
    return float(np.mean([t.verdict == verdict for t in trends]))


# ---------------------------------------------------------------------- calibration
def test_false_alarm_on_ar1_noise_at_most_10_percent():
    """AR(1) phi = 0.5, 30 steps: "collapsing" in <= 10% (measured 4-6%); plain NW gives ~11%."""
    Y = 1.0 + _ar1(np.random.default_rng(2024), 1000, N, 0.5, 0.1)
    res = collapse_trends(Y)
    assert _share(res, "collapsing") <= 0.10
    assert _share(res, "diverging") <= 0.10
    assert sum(r.n_steps == N for r in res) == 1000


def test_linear_decline_with_iid_noise_detected_in_at_least_90_percent():
    gen = np.random.default_rng(7)
    Y = np.linspace(1.0, 0.5, N) + gen.normal(0.0, 0.1, (500, N))
    res = collapse_trends(Y)
    assert _share(res, "collapsing") >= 0.90
    assert _share(res, "diverging") == 0.0
    # the late/early change and its interval: true value 0.5625/0.9397 - 1 = -0.4014
    e, late, _ = window_means(np.linspace(1.0, 0.5, N))
    true_rc = late / e - 1
    cover = np.mean([r.relative_change_ci[0] <= true_rc <= r.relative_change_ci[1] for r in res])
    assert cover >= 0.90


def test_decline_with_ar1_noise_detected():
    gen = np.random.default_rng(8)
    Y = np.linspace(1.0, 0.5, N) + _ar1(gen, 500, N, 0.5, 0.1)
    assert _share(collapse_trends(Y), "collapsing") >= 0.90  # measured ~0.98


def test_small_noise_around_a_level_is_stable():
    Y = 1.0 + _ar1(np.random.default_rng(9), 300, N, 0.5, 0.02)
    res = collapse_trends(Y)
    assert _share(res, "stable") >= 0.80
    assert _share(res, "collapsing") <= 0.10


# ---------------------------------------------------------------------- known answers
def test_monotone_increase_is_diverging_and_direction_can_be_flipped():
    y = np.linspace(0.2, 1.0, 12) + 0.01 * np.sin(np.arange(12))
    tr = collapse_trend(y)
    assert tr.verdict == "diverging" and tr.slope > 0 and tr.ci[0] > 0
    flipped = collapse_trend(y, higher_is_diverse=False, metric="near_duplicate_share")
    assert flipped.verdict == "collapsing"
    assert flipped.slope == tr.slope and flipped.ci == tr.ci


def test_short_series_are_inconclusive_with_the_reason():
    for vals in ([], [1.0], [3.0, 2.0, 1.0, 0.5, 0.2]):
        tr = collapse_trend(vals)
        assert tr.verdict == "inconclusive" and tr.n_steps == len(vals)
        assert math.isnan(tr.slope) and math.isnan(tr.p_value)
        assert f"need at least {MIN_STEPS}" in tr.reason or tr.reason == "no finite values"
    # 5 values still give the window numbers (w = 2)
    tr = collapse_trend([3.0, 2.0, 1.0, 0.5, 0.2])
    assert tr.window == 2 and tr.early_mean == 2.5 and tr.late_mean == pytest.approx(0.35)


def test_constant_series_are_stable_without_division_by_zero():
    for c in (0.0, 1.0, -2.5, 1e-9):
        tr = collapse_trend([c] * 10)
        assert tr.verdict == "stable" and tr.reason == "constant series"
        assert tr.slope == 0.0 and tr.ci == (0.0, 0.0) and tr.p_value == 1.0
        assert tr.relative_change == 0.0 and tr.relative_change_ci == (0.0, 0.0)
        assert "constant over 10 steps: stable" in tr.sentence()
    # rounding noise on a constant is still constant
    tr = collapse_trend(0.7 + np.arange(10) * 1e-17)
    assert tr.verdict == "stable"


def test_nan_values_are_dropped_with_their_steps_and_counted():
    y = np.linspace(1.0, 0.4, 14) + 0.01 * np.cos(np.arange(14))
    t = np.arange(14) * 2.0
    y_nan = y.copy()
    y_nan[[3, 8]] = np.nan
    vals = list(y_nan)
    vals[10] = None  # JSON null
    tr = collapse_trend(vals, steps=t)
    keep = np.ones(14, bool)
    keep[[3, 8, 10]] = False
    ref = collapse_trend(y[keep], steps=t[keep])
    assert tr.n_dropped == 3 and tr.n_steps == 11
    assert (tr.slope, tr.ci, tr.p_value, tr.verdict) == (ref.slope, ref.ci, ref.p_value,
                                                         ref.verdict)
    assert tr.relative_change == ref.relative_change
    assert "3 non-finite values dropped" in tr.sentence()
    # an infinite value and a non-finite step are dropped too
    y2, t2 = y.copy(), t.copy()
    y2[0], t2[5] = np.inf, np.nan
    assert collapse_trend(y2, steps=t2).n_dropped == 2


def test_all_nan_series_is_inconclusive_never_an_exception():
    tr = collapse_trend([np.nan] * 12)
    assert tr.verdict == "inconclusive" and tr.n_dropped == 12 and tr.n_steps == 0
    assert tr.reason == "no finite values"
    assert json.loads(json.dumps(tr.to_dict(), allow_nan=False))["slope"] is None
    few = collapse_trend([1.0, np.nan, 0.5, np.nan, 0.2, np.nan, 0.1, np.nan])
    assert few.verdict == "inconclusive" and few.n_steps == 4 and few.n_dropped == 4


def test_irregular_steps_give_the_slope_per_step_unit():
    steps = np.array([0, 1, 3, 7, 8, 12, 20, 21], float)
    y = 2.0 - 0.05 * steps + np.array([0.01, -0.01, 0.02, 0, -0.02, 0.01, 0, -0.01])
    tr = collapse_trend(y, steps=steps)
    tc = steps - steps.mean()
    assert tr.slope == pytest.approx(float(tc @ y / (tc @ tc)), rel=1e-12)
    assert tr.verdict == "collapsing"
    assert (tr.first_step, tr.last_step) == (0.0, 21.0)


def test_sentence_reads_like_the_issue():
    y = np.linspace(1.0, 0.55, N) + np.random.default_rng(0).normal(0, 0.05, N)
    tr = collapse_trend(y)
    s = tr.sentence()
    pct = round(-100 * tr.relative_change)
    lo, hi = round(-100 * tr.relative_change_ci[1]), round(-100 * tr.relative_change_ci[0])
    assert s == f"||D|| fell {pct}% (97.5% CI {lo}% to {hi}%) over 30 steps: collapsing"
    assert tr.summary == s
    noisy = collapse_trend(1.0 + np.random.default_rng(1).normal(0, 0.3, N))
    assert noisy.verdict == "inconclusive" and "no steady trend" in noisy.sentence()


def test_to_dict_is_json_ready():
    d = collapse_trend(np.linspace(1, 0.5, 10)).to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["verdict"] == "collapsing" and back["n_steps"] == 10 and back["window"] == 2
    assert back["sentence"].startswith("||D|| fell 46%")  # (0.528 / 0.972 - 1)


# ---------------------------------------------------------------------- brute force
def test_window_rule_against_brute_force():
    gen = np.random.default_rng(3)
    for n in range(4, 40):
        y = gen.normal(size=n)
        w = max(2, n // 4)
        assert window_means(y) == (pytest.approx(y[:w].mean()), pytest.approx(y[-w:].mean()), w)
    e, late, w = window_means([1.0, 2.0, 3.0])
    assert w == 0 and math.isnan(e) and math.isnan(late)
    assert window_means([np.nan, 4, 4, 3, 3, 2, 2, 1, 1, None]) == (4.0, 1.0, 2)


def test_hac_standard_error_against_the_double_sum():
    gen = np.random.default_rng(4)
    n = 17
    t = np.sort(gen.uniform(0, 30, n))
    Y = gen.normal(size=(3, n))
    M = _bandwidth(n)
    b, se, e = _ols_hac(Y, t, M)
    tc = t - t.mean()
    for r in range(3):
        X = np.column_stack([np.ones(n), t])
        coef = np.linalg.lstsq(X, Y[r], rcond=None)[0]
        res = Y[r] - X @ coef
        v = res * tc
        S = sum((1 - abs(i - j) / M) * v[i] * v[j]
                for i in range(n) for j in range(n) if abs(i - j) < M)
        assert b[r] == pytest.approx(coef[1], rel=1e-10)
        assert np.allclose(e[r], res, atol=1e-12)
        assert se[r] == pytest.approx(math.sqrt(S) / (tc @ tc), rel=1e-9)


def test_student_t_helpers_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = np.array([0.0, 0.3, 1.0, 2.2, 5.0, 40.0])
    for df in (1, 2, 3, 4, 5, 8, 13, 30):
        assert np.allclose(_t_abs_cdf(x, df), 2 * stats.t.cdf(x, df) - 1, atol=1e-12)
        for q in (0.9, 0.95, 0.99):
            assert _t_quantile(q, df) == pytest.approx(stats.t.ppf((1 + q) / 2, df), rel=1e-9)


def test_batch_equals_one_by_one_including_nan_patterns():
    gen = np.random.default_rng(5)
    Y = np.linspace(1, 0.7, 20) + gen.normal(0, 0.1, (6, 20))
    Y[1, 4] = np.nan
    Y[2, :16] = np.nan  # too short
    Y[3] = 0.5  # constant
    batch = collapse_trends(Y)
    for row, tr in zip(Y, batch):
        one = collapse_trend(row)
        a, b = tr.to_dict(), one.to_dict()
        assert a.keys() == b.keys()
        for k in a:  # batched matrix products may differ in the last bit
            if isinstance(a[k], list):
                assert a[k] == pytest.approx(b[k], rel=1e-12, nan_ok=True), k
            elif isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-12), k
            else:
                assert a[k] == b[k], k
    assert [t.verdict for t in batch][2:4] == ["inconclusive", "stable"]


# ---------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="steps must have one entry per value"):
        collapse_trend([1, 2, 3, 4, 5, 6], steps=[0, 1, 2])
    with pytest.raises(ValueError, match="strictly increasing"):
        collapse_trend([1, 2, 3, 4, 5, 6], steps=[0, 1, 1, 2, 3, 4])
    with pytest.raises(TypeError, match="not a string"):
        collapse_trend("123456")
    with pytest.raises(TypeError, match="values must contain numbers"):
        collapse_trend([1, "x", 3])
    with pytest.raises(ValueError, match=r"values must have shape \(n_steps,\)"):
        collapse_trend([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="alpha must be"):
        collapse_trend([1, 2, 3, 4, 5, 6], alpha=0.7)
    with pytest.raises(ValueError, match="margin must be"):
        collapse_trend([1, 2, 3, 4, 5, 6], margin=0)
    with pytest.raises(TypeError, match="not a mapping"):
        collapse_trend({"norm": [1, 2]})


# ---------------------------------------------------------------------- replicates
def test_gmm_fig4_proxy_is_collapsing_when_replicates_are_pooled():
    """Fig. 4 preset, 5 replicates: pooled "collapsing" (each replicate alone too: see below)."""
    for seed in (0, 1, 2):
        res = lw.gmm_preset("lwd-fig4", n_steps=30).run(rng=seed)
        p = pooled_trend(res.norms.T, rng=seed)
        assert p.verdict == "collapsing", p.sentence()
        assert p.n_replicates == 5 and sum(p.counts.values()) == 5
        assert p.counts["diverging"] == 0 and p.counts["stable"] == 0
        assert p.relative_change < -0.5 and p.relative_change_ci[1] < 0
    full = lw.gmm_preset("lwd-fig4").run(rng=0)  # T = 200
    assert pooled_trend(full.norms.T, rng=0).verdict == "collapsing"


def test_pooled_numbers_against_brute_force():
    gen = np.random.default_rng(6)
    Y = np.linspace(1.0, 0.6, 15) + gen.normal(0, 0.05, (4, 15))
    p = pooled_trend(Y, rng=0)
    slopes = np.array([collapse_trend(y).slope for y in Y])
    se = slopes.std(ddof=1) / 2.0
    crit = _t_quantile(0.95, 3)
    assert p.slope == pytest.approx(slopes.mean())
    assert p.ci == (pytest.approx(slopes.mean() - crit * se), pytest.approx(slopes.mean() + crit * se))
    assert np.allclose(p.band_median, np.median(Y, axis=0))
    assert np.allclose(p.band_low, np.quantile(Y, 0.05, axis=0))
    assert np.allclose(p.band_high, np.quantile(Y, 0.95, axis=0))
    assert np.allclose(p.band_mean, Y.mean(axis=0))
    e, late, _ = window_means(Y.mean(axis=0))
    assert p.relative_change == pytest.approx(late / e - 1)
    assert p.verdict == "collapsing" and p.counts == {"collapsing": 4, "stable": 0,
                                                      "diverging": 0, "inconclusive": 0}
    assert p.sentence().endswith("over 15 steps in 4 replicates (4 collapsing): collapsing")
    json.dumps(p.to_dict(), allow_nan=False)


def test_pooled_edge_cases():
    # one usable replicate: its own verdict; the short one is counted as inconclusive
    good = np.linspace(1.0, 0.5, 12)
    p = pooled_trend([good, [1.0, 0.9]])
    assert p.n_replicates == 1 and p.verdict == "collapsing" and p.n_padded == 10
    assert p.counts["inconclusive"] == 1 and p.counts["collapsing"] == 1
    assert p.band_median.shape == (12,) and p.band_median[5] == good[5]
    # nothing usable: inconclusive, never an exception
    q = pooled_trend([[np.nan] * 8, [1.0, 2.0]])
    assert q.verdict == "inconclusive" and q.n_replicates == 0
    assert math.isnan(q.band_median[-1])
    json.dumps(q.to_dict(), allow_nan=False)
    # identical constant replicates: stable
    assert pooled_trend([[2.0] * 8] * 3).verdict == "stable"
    with pytest.raises(ValueError, match="series_list is empty"):
        pooled_trend([])
    with pytest.raises(ValueError, match="steps must have one entry per value"):
        pooled_trend([good, good], steps=range(5))


# ---------------------------------------------------------------------- several metrics
def _fall(gen: np.random.Generator, a: float = 1.0, b: float = 0.6) -> np.ndarray:
    return np.linspace(a, b, N) + gen.normal(0, 0.01 * a, N)


def _flat(gen: np.random.Generator, level: float = 5.0) -> np.ndarray:
    return level + gen.normal(0, 0.01 * level, N)


def test_headline_collapsing_when_convergence_and_diversity_fell():
    g = np.random.default_rng(10)
    v = collapse_verdict({"norm": _fall(g), "between_spread": _fall(g, 0.5, 0.2),
                          "vendi_score": _fall(g, 3.0, 2.0), "distinct_2": _flat(g, 0.8)})
    assert (v.verdict, v.convergence, v.diversity) == ("collapsing", "fell", "fell")
    assert v.sentence.startswith("collapsing: agents agree more (||D|| -")
    assert "the web's diversity fell (Vendi -" in v.sentence
    assert v.trends["distinct_2"].verdict == "stable"
    assert v.roles == {"norm": "convergence", "between_spread": "convergence",
                       "vendi_score": "diversity", "distinct_2": "diversity"}


def test_headline_converging_says_why_it_is_not_collapse():
    g = np.random.default_rng(11)
    v = collapse_verdict({"norm": _fall(g), "vendi_score": _flat(g)})
    assert (v.verdict, v.convergence, v.diversity) == ("converging", "fell", "held")
    rc = round(100 * v.trends["norm"].relative_change)
    assert f"agents agree more (||D|| {rc:+d}%) but the web's diversity held (Vendi" in v.sentence
    assert "convergence without diversity loss (e.g. a shared injected source)" in v.sentence
    assert "collapsing" not in v.sentence
    only_norm = collapse_verdict({"norm": _fall(g)})
    assert only_norm.verdict == "converging" and only_norm.diversity == "absent"
    assert "no diversity metric was given" in only_norm.sentence


def test_headline_other_verdicts():
    g = np.random.default_rng(12)
    held = collapse_verdict({"norm": _flat(g, 1.0), "vendi_score": _fall(g, 3, 2)})
    assert held.verdict == "narrowing" and "not towards each other" in held.sentence
    # a noisy ||D|| shows no convergence either way: the headline must not claim its absence
    unclear = collapse_verdict({"norm": 1 + g.normal(0, 0.3, N), "vendi_score": _fall(g, 3, 2)})
    assert unclear.verdict == "narrowing" and unclear.convergence == "unclear"
    assert "not towards each other" not in unclear.sentence
    assert "whether the agents converge is not shown" in unclear.sentence
    assert collapse_verdict({"norm": _fall(g, 0.5, 1.0), "vendi_score": _flat(g)}).verdict \
        == "diverging"
    st = collapse_verdict({"norm": _flat(g, 1.0), "mean_cosine_distance": _flat(g, 0.4)})
    assert st.verdict == "stable" and st.sentence.startswith("stable: no metric changed by more")
    noisy = {"norm": 1 + g.normal(0, 0.3, N), "vendi_score": 3 + g.normal(0, 0.9, N)}
    assert collapse_verdict(noisy).verdict == "inconclusive"
    none = collapse_verdict({"tokens": _fall(g)})
    assert none.verdict == "inconclusive" and none.roles == {"tokens": "other"}
    assert none.trends["tokens"].verdict == "collapsing"
    # roles can promote a metric into the headline
    assert collapse_verdict({"tokens": _fall(g), "vendi": _fall(g, 3, 2)},
                            roles={"tokens": "convergence"}).verdict == "collapsing"
    with pytest.raises(ValueError, match="roles"):
        collapse_verdict({"norm": _fall(g)}, roles={"norm": "size"})


def test_verdict_from_step_records_and_rows():
    g = np.random.default_rng(13)
    norm, mcd = _fall(g), _flat(g, 0.5)
    hist = [StepMetrics(step=2 * i, n_agents=3, n_records=9, norm=float(norm[i]),
                        normalized_norm=float(norm[i]) / math.sqrt(6), total_spread=1.0,
                        within_spread=0.5, between_spread=float(norm[i]) / 4,
                        mean_cosine_distance=float(mcd[i]),
                        extras={"vendi_score": float(5 + 0.01 * i)})
            for i in range(N)]
    v = collapse_verdict(hist)
    assert list(v.trends) == ["norm", "between_spread", "vendi_score", "mean_cosine_distance"]
    assert v.trends["norm"].last_step == 2.0 * (N - 1)
    assert v.verdict == "converging"
    rows = [h.as_dict() for h in hist]
    rows[4]["norm"] = None
    w = collapse_verdict(rows)
    assert w.trends["norm"].n_dropped == 1 and w.verdict == "converging"
    mapped = collapse_verdict({"step": [2 * i for i in range(N)], "norm": norm})
    assert mapped.trends["norm"].slope == v.trends["norm"].slope
    json.loads(json.dumps(v.to_dict(), allow_nan=False))
    with pytest.raises(TypeError, match="history must be a mapping"):
        collapse_verdict(5)
    with pytest.raises(TypeError, match=r"history\[0\] must be a StepMetrics"):
        collapse_verdict([1.0, 2.0])


def test_public_names_resolve_from_the_package():
    for name in ("collapse_trend", "collapse_trends", "pooled_trend", "collapse_verdict",
                 "window_means", "CollapseTrend", "PooledTrend", "CollapseVerdict"):
        assert name in lw.__all__ and getattr(lw, name) is getattr(lw.trend, name), name
    assert lw.collapse_trend(np.linspace(1.0, 0.5, 8)).verdict == "collapsing"


def test_relative_change_keeps_the_sign_of_the_change_for_negative_levels():
    """late/early - 1 would say "rose" for a falling series below 0; the verdict says collapsing."""
    y = -1.0 - np.linspace(0.0, 1.0, 20)
    tr = collapse_trend(y)
    e, late, _ = window_means(y)
    assert tr.relative_change == pytest.approx((late - e) / abs(e)) and tr.relative_change < 0
    assert tr.relative_change_ci[1] < 0
    assert tr.sentence().startswith("||D|| fell ") and tr.verdict == "collapsing"


def test_long_series_use_a_bounded_null_and_stay_calibrated():
    gen = np.random.default_rng(14)
    Y = 1.0 + _ar1(gen, 200, 600, 0.5, 0.1)
    res = collapse_trends(Y)
    assert _share(res, "collapsing") <= 0.10
    assert collapse_trend(np.linspace(1, 0.8, 600) + gen.normal(0, 0.05, 600)).verdict \
        == "collapsing"


# ---------------------------------------------------------------------- abrupt collapse
def test_gmm_fig4_single_replicates_are_collapsing():
    """A fall in 1-5 steps then a flat floor is collapse: the slope test alone missed it (the drop
    inflates its residual variance; it called 2 of 50 replicates collapsing), the window test,
    whose noise scale comes from the late half, sees it."""
    hits = []
    for seed in range(10):
        y = lw.gmm_preset("lwd-fig4", n_steps=30, n_replicates=1).run(rng=seed).norms[:, 0]
        tr = collapse_trend(y)
        hits.append(tr.verdict == "collapsing")
        if tr.verdict == "collapsing":
            assert tr.window_p_value < 0.025 and tr.relative_change_ci[1] < 0, tr.sentence()
            assert tr.sentence().startswith("||D|| fell ")
    assert sum(hits) >= 9, hits  # measured: 10 of 10 (1,000 of 1,000 replicates in the benchmark)
    long = lw.gmm_preset("lwd-fig4", n_replicates=1).run(rng=0).norms[:, 0]  # T = 200
    tr = collapse_trend(long)
    assert tr.verdict == "collapsing" and tr.n_steps == 201
    assert "the last 50 values' mean lies below the first 50 values' mean" in tr.reason


def test_step_drop_then_flat_noisy_floor_is_collapsing():
    """1.0 for 3 steps, then 0.3 plus AR(1) noise: collapsing (the slope test alone: ~1%)."""
    gen = np.random.default_rng(15)
    Y = np.r_[np.ones(3), np.full(N - 3, 0.3)] + _ar1(gen, 400, N, 0.5, 0.1)
    res = collapse_trends(Y)
    assert _share(res, "collapsing") >= 0.75  # measured 0.83 (benchmark, 2,000 series)
    assert _share(res, "diverging") == 0.0
    # one noise-free-looking case reads as a fall with an interval below 0
    y = np.r_[np.ones(3), np.full(N - 3, 0.3)] + 0.02 * np.sin(np.arange(N))
    tr = collapse_trend(y)
    assert tr.verdict == "collapsing" and tr.relative_change_ci[1] < 0
    assert tr.p_value > 0.025  # the slope test alone would not have called it


def test_window_test_against_brute_force():
    """d = late - early window mean; se^2 = 2/w * Bartlett LRV of the detrended late half."""
    gen = np.random.default_rng(16)
    for n in (6, 7, 13, 30):
        y = gen.normal(size=n)
        w, h = max(2, n // 4), n // 2
        late = y[n - h:]
        s = np.arange(h, dtype=float)
        coef = np.polyfit(s, late, 1)
        e = late - np.polyval(coef, s)
        M = max(2, h // 2)
        lrv = sum((1 - abs(i - j) / M) * e[i] * e[j]
                  for i in range(h) for j in range(h) if abs(i - j) < M) / h
        assert _late_lrv(y[None, :])[0] == pytest.approx(lrv, rel=1e-9, abs=1e-15)
        tr = collapse_trend(y)
        d = y[n - w:].mean() - y[:w].mean()
        assert tr.late_mean - tr.early_mean == pytest.approx(d)
        # the interval is d +- c * se, divided by |early|: its centre is the relative change
        mid = 0.5 * (tr.relative_change_ci[0] + tr.relative_change_ci[1])
        assert mid == pytest.approx(d / abs(y[:w].mean()), rel=1e-9)
        half = 0.5 * (tr.relative_change_ci[1] - tr.relative_change_ci[0]) * abs(y[:w].mean())
        assert half / math.sqrt(lrv * 2 / w) > 1.96  # a fixed-b critical value, wider than z


def test_verdict_needs_either_test_at_half_alpha():
    """Bonferroni: collapsing iff min(p_value, window_p_value) < alpha / 2 (with a fall)."""
    gen = np.random.default_rng(17)
    Y = np.linspace(1.0, 0.85, N) + _ar1(gen, 300, N, 0.5, 0.1)
    for tr in collapse_trends(Y):
        down = (tr.p_value < 0.025 and tr.slope < 0) or (
            tr.window_p_value < 0.025 and tr.late_mean < tr.early_mean)
        up = (tr.p_value < 0.025 and tr.slope > 0) or (
            tr.window_p_value < 0.025 and tr.late_mean > tr.early_mean)
        assert (tr.verdict == "collapsing") == (down and not up)
        assert (tr.verdict == "diverging") == (up and not down)


def test_null_lengths_beyond_64_use_a_bounded_grid():
    assert [_null_len(n) for n in (6, 64)] == [6, 64]
    lens = {_null_len(n) for n in range(65, 5000)}
    assert len(lens) <= 25 and max(lens) == 256
    assert all(_null_len(n) <= n for n in range(65, 400))


def test_never_negative_series_cannot_fall_more_than_100_percent():
    """GMM Fig. 4, seed 0, 31 steps: the window interval reached -101%; cut at -100%."""
    y = lw.gmm_preset("lwd-fig4", n_steps=30, n_replicates=1).run(rng=0).norms[:, 0]
    tr = collapse_trend(y)
    assert tr.verdict == "collapsing" and tr.relative_change_ci[0] == -1.0
    assert tr.sentence().endswith("to 100%) over 31 steps: collapsing")
    neg = collapse_trend(-1.0 - np.linspace(0.0, 3.0, 20) + 0.5 * np.sin(np.arange(20)))
    assert neg.relative_change_ci[0] < -1.0  # values below 0: no such bound


def test_printed_intervals_exclude_zero_exactly_when_their_test_decides():
    """The intervals are at the level each test decides at (alpha / 2): a sentence never shows
    an interval that excludes 0 beside a verdict that found no change (seen on a real run:
    "fell 40% (95% CI 2% to 79%) ... inconclusive" when the CI was printed at 1 - alpha)."""
    rng = np.random.default_rng(7)
    checked = {"slope": 0, "window": 0}
    for i in range(400):
        n = int(rng.integers(6, 40))
        y = 1.0 + rng.normal(0, 0.2, n) - rng.uniform(0, 0.04) * np.arange(n)
        tr = collapse_trend(y)
        assert tr.ci_level == 0.975 and tr.to_dict()["ci_level"] == 0.975
        p_says, ci_says = tr.p_value < 0.025, not (tr.ci[0] <= 0 <= tr.ci[1])
        if abs(tr.p_value - 0.025) > 2e-3:  # the simulated null's p is discrete near the edge
            assert p_says == ci_says, (i, tr.p_value, tr.ci)
            checked["slope"] += p_says
        lo, hi = tr.relative_change_ci
        w_says = not (lo <= 0 <= hi)
        if abs(tr.window_p_value - 0.025) > 2e-3:
            assert (tr.window_p_value < 0.025) == w_says, (i, tr.window_p_value, (lo, hi))
            checked["window"] += w_says
        if tr.verdict in ("stable", "inconclusive") and "disagree" not in tr.reason:
            assert not (p_says and ci_says) and not (tr.window_p_value < 0.025 and w_says)
        assert f"{100 * tr.ci_level:g}% CI" in tr.sentence() or tr.n_steps < 6 \
            or "constant" in tr.reason
    assert checked["slope"] > 50 and checked["window"] > 50  # both sides were exercised
