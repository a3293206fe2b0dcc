"""Target ``lwd-fig6`` (issue 15): claims decided from the computed numbers, shape detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmweb_plugin.reproduce import lwd_fig6 as fig6
from llmweb_plugin.reproduce._core import load_published


@pytest.fixture(scope="module")
def outcome():
    return fig6.run(replicates=6, quick=True, rng=np.random.default_rng(3), engine="auto")


def _claims(outcome):
    return {c.published.id: c for c in outcome.claims}


# ---------------------------------------------------------------- claims vs their own numbers
def test_published_claims_carry_their_source_and_order():
    pubs = load_published("lwd-fig6")
    assert [p.id for p in pubs] == ["start_0.93_at_t1", "t10_0.36", "plateau_0.2_0.3_until_t155",
                                    "late_drop_near_t160", "end_0.06_0.08"]
    assert all("2506.15690" in p.source and "Fig. 6" in p.source for p in pubs)


def test_point_claims_agree_iff_published_value_in_the_band_of_the_series(outcome):
    norms = np.asarray(outcome.series["default_norms"])
    assert norms.shape == (6, fig6.N_STEPS)
    for cid, t, value in (("start_0.93_at_t1", 1, 0.93), ("t10_0.36", 10, 0.36)):
        c = _claims(outcome)[cid]
        x = norms[:, t - 1]
        lo, hi = np.quantile(x, 0.05), np.quantile(x, 0.95)
        assert c.measured["p05"] == pytest.approx(lo)
        assert c.measured["p95"] == pytest.approx(hi)
        assert c.measured["median"] == pytest.approx(np.median(x))
        assert c.measured["median"] == pytest.approx(outcome.series["median"][t - 1])
        assert c.interval == pytest.approx((lo, hi))
        assert c.agrees is bool(lo <= value <= hi)


def test_shape_claims_agree_iff_rate_reaches_the_minimum_recomputed_from_the_curves(outcome):
    norms = np.asarray(outcome.series["default_norms"])
    pl = plateau_brute(norms)
    dr = np.array([drop_brute(x) for x in norms])
    plateau = _claims(outcome)["plateau_0.2_0.3_until_t155"]
    drop = _claims(outcome)["late_drop_near_t160"]
    assert plateau.measured["flags"] == pl.tolist()
    assert plateau.measured["count"] == int(pl.sum())
    assert plateau.agrees is bool(pl.mean() >= plateau.measured["min_rate"])
    assert drop.measured["drop_flags"] == dr.tolist()
    assert drop.measured["flags"] == (pl & dr).tolist()
    assert drop.agrees is bool((pl & dr).mean() >= drop.measured["min_rate"])


def test_end_claim_agrees_iff_range_overlaps_band_of_the_last_ten_steps(outcome):
    norms = np.asarray(outcome.series["default_norms"])
    end = norms[:, -10:].mean(axis=1)
    c = _claims(outcome)["end_0.06_0.08"]
    lo, hi = np.quantile(end, 0.05), np.quantile(end, 0.95)
    assert c.measured["p05"] == pytest.approx(lo) and c.measured["p95"] == pytest.approx(hi)
    assert c.agrees is bool(lo <= 0.08 and 0.06 <= hi)


def test_sweep_table_counts_match_its_setting_rows(outcome):
    rows = outcome.series["sweep"]
    assert [r["label"] for r in rows] == [s.label for s in fig6.QUICK_SWEEP]
    default = rows[0]
    norms = np.asarray(outcome.series["default_norms"])
    assert default["plateau"] == int(plateau_brute(norms).sum())
    for r in rows:
        assert r["replicates"] == 6
        assert r["plateau_then_drop"] <= min(r["plateau"], r["late_drop"])
        assert r["late_drop_rate"] == pytest.approx(r["late_drop"] / 6)
    lo1, hi1 = np.quantile(norms[:, 0], [0.05, 0.95])
    lo10, hi10 = np.quantile(norms[:, 9], [0.05, 0.95])
    assert default["early_points_in_band"] is bool(lo1 <= 0.93 <= hi1 and lo10 <= 0.36 <= hi10)
    json.dumps(dict(outcome.series))  # JSON-ready
    json.dumps(dict(outcome.settings))


def test_figure_is_written(outcome, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "figure.png"
    outcome.draw(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- detectors on known curves
def plateau_brute(norms):
    out = []
    for x in np.atleast_2d(norms):
        inside = [0.15 <= x[t - 1] <= 0.35 for t in range(20, 151)]
        out.append(sum(inside) / len(inside) >= 0.75)
    return np.array(out)


def drop_brute(x):
    T = len(x)
    start = None
    for t0 in range(100, T + 1):
        if x[t0 - 1] >= 0.15 and any(x[t - 1] <= x[t0 - 1] / 2 for t in range(t0 + 1, min(T, t0 + 20) + 1)):
            start = t0
            break
    return start is not None and float(np.mean(x[-10:])) <= 0.1


def _paper_like(drop_at=158, plateau=0.25, end=0.07, T=200):
    t = np.arange(1, T + 1)
    early = 0.93 * np.exp(-(t - 1) / 4.0) + plateau
    return np.where(t < drop_at, early, end)


def test_detectors_find_plateau_and_drop_on_a_paper_like_curve():
    x = _paper_like()
    assert fig6.plateau_flags(x).tolist() == [True]
    flags, t0 = fig6.late_drop_flags(x)
    assert flags.tolist() == [True]
    assert t0.tolist() == [158]  # the first step of the fall to 0.07


def test_detectors_reject_a_smooth_decay_and_an_early_drop():
    t = np.arange(1, 201)
    smooth = 0.9 * np.exp(-t / 60.0)  # passes through the band, no plateau, no sudden drop
    early = _paper_like(drop_at=60)  # drop before t = 100
    high = np.full(200, 0.25)  # plateau, never drops
    assert fig6.plateau_flags(np.stack([smooth, early, high])).tolist() == [False, False, True]
    flags, t0 = fig6.late_drop_flags(np.stack([smooth, early, high]))
    assert flags.tolist() == [False, False, False] and t0.tolist() == [0, 0, 0]


def test_drop_must_settle_low_and_be_at_least_a_halving():
    bounce = _paper_like()
    bounce[-30:] = 0.25  # drops, then comes back up: the end is not <= 0.1
    shallow = np.where(np.arange(1, 201) < 158, 0.25, 0.15)  # a 40% fall, not a halving
    flags, _ = fig6.late_drop_flags(np.stack([bounce, shallow]))
    assert flags.tolist() == [False, False]


def test_detectors_agree_with_brute_force_on_random_curves():
    rng = np.random.default_rng(0)
    curves = np.abs(np.cumsum(rng.normal(0, 0.04, size=(40, 200)), axis=1) + 0.3)
    curves[::3, 150:] *= 0.2  # a third drop late
    assert fig6.plateau_flags(curves).tolist() == plateau_brute(curves).tolist()
    assert fig6.late_drop_flags(curves)[0].tolist() == [drop_brute(x) for x in curves]


def test_detectors_name_the_problem_on_short_curves():
    with pytest.raises(ValueError, match="plateau window needs t up to 150"):
        fig6.plateau_flags(np.zeros(100))
    with pytest.raises(ValueError, match="late-drop rule needs more than 100"):
        fig6.late_drop_flags(np.zeros(50))
    with pytest.raises(ValueError, match="shape"):
        fig6.plateau_flags(np.zeros((2, 2, 200)))


def test_wilson_interval_brackets_the_rate():
    lo, hi = fig6.wilson_interval(3, 60)
    assert lo < 3 / 60 < hi
    assert fig6.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert fig6.wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(ValueError, match="engine must be 'auto', 'numba' or 'numpy'"):
        fig6.run(replicates=2, quick=True, rng=np.random.default_rng(0), engine="gpu")
