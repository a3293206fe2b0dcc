"""Target ``lwd-fig4``: LWD Fig. 4, the interacting GMM web (B = 2) over many replicates.

The paper shows five single runs of ``||D(t)||_F`` (n = 3, d = 1, means -5 and +5, unit variance,
Dirichlet(1) initial weights, beta = 0.5, L = 3, T = 200). We run the same model (preset
``lwd-fig4`` of :mod:`llmweb_plugin.proxies`) over many replicates and compare the median and the
5-95% band with what the five curves show.

Steps: the paper records ``||D||_F`` at the start of its step ``t = 1..T``; our simulator's row
``t - 1`` is that state, so the series here runs over the paper's ``t = 1..T``.

How each claim is decided (from this call's numbers):

- ``start_1.1_to_2.3``: our median at ``t = 1`` lies inside ``[1.1, 2.3]``. The five published
  starts are five draws from the start distribution; we also report the share of our replicates
  that start inside the range and the chance that five would all do so.
- ``below_0.3_by_t25``: the median at ``t = 25`` is below 0.3 *and* at least 90% of replicates
  are below 0.3 at ``t = 25``. "All 5 replicates" maps to that share ``f``: five replicates are all
  below with chance ``f^5`` (>= 0.59 when ``f >= 0.9``), reported beside it.
- ``floor_0.02_to_0.15_after_t50``: the median curve stays inside ``[0.02, 0.15]`` at every
  ``t > 50``; the band's extremes over those steps are reported.
- ``collapse_verdict``: :func:`llmweb_plugin.trend.pooled_trend` over the replicates says
  ``"collapsing"`` (per-replicate verdicts are reported in ``measured``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import numpy as np

from llmweb_plugin.proxies import InteractingGMMWeb, gmm_preset
from llmweb_plugin.trend import pooled_trend

from ._core import Claim, Outcome, load_published
from ._plot import new_figure
from ._stats import percentile_band

__all__ = ["DEFAULT_REPLICATES", "DESCRIPTION", "QUICK_REPLICATES", "run"]

TARGET = "lwd-fig4"
DESCRIPTION = ("LWD Fig. 4: GMM web, B = 2, n = 3, means +-5, L = 3, T = 200; median and 5-95% "
               "band of ||D||_F over replicates vs the paper's five curves")
DEFAULT_REPLICATES = 200
QUICK_REPLICATES = 30

START_RANGE = (1.1, 2.3)
BELOW = 0.3
BELOW_AT = 25
BELOW_SHARE = 0.9
FLOOR_RANGE = (0.02, 0.15)
FLOOR_AFTER = 50


def run(*, replicates: int | None, quick: bool, rng: np.random.Generator,
        engine: str = "numpy") -> Outcome:
    """Run the Fig. 4 web over replicates and decide the published claims.

    Args:
        replicates: replicates (default 200; 30 with ``quick``).
        quick: fewer replicates (the 200 steps stay: they are what the claims are about).
        rng: the generator of this reproduction.
        engine: the GMM engine, ``"numpy"`` by default so a seed gives the same numbers on
            every install; ``"numba"``/``"auto"`` draw differently (same model).

    Returns:
        The :class:`~llmweb_plugin.reproduce.Outcome`.
    """
    R = replicates or (QUICK_REPLICATES if quick else DEFAULT_REPLICATES)
    base = cast(InteractingGMMWeb, gmm_preset(TARGET))
    sim = dataclasses.replace(base, n_replicates=R, record_weights=False)
    res = sim.run(rng=rng, engine=engine)
    T = res.n_steps
    norms = np.asarray(res.norms[:T].T)  # (R, T): paper's t = 1..T
    t = np.arange(1, T + 1)
    band = percentile_band(norms)
    trend = pooled_trend(norms, steps=t, rng=rng)
    published = {p.id: p for p in load_published(TARGET)}
    claims = (
        _start_claim(published["start_1.1_to_2.3"], norms, R),
        _below_claim(published["below_0.3_by_t25"], norms, R),
        _floor_claim(published["floor_0.02_to_0.15_after_t50"], norms, t, band, R),
        _verdict_claim(published["collapse_verdict"], trend),
    )
    settings = {
        "replicates": R, "quick": quick, "engine": res.engine, "n_agents": sim.n_agents,
        "means": [[-5.0], [5.0]], "cov": [[1.0]], "dirichlet_alpha": sim.dirichlet_alpha,
        "beta": sim.beta, "samples_per_step": sim.samples_per_step, "n_steps": T,
        "eps": sim.eps, "initial_points": "L samples from each initial GMM (our reading)",
    }
    series = {"t": t.tolist(), **band, "mean": norms.mean(axis=0).tolist(),
              "examples": norms[:5].tolist()}
    notes = (
        (f"The paper shows five single runs; ours are median and 5-95% band over {R} "
         "replicates (the thin lines in the figure are our first five replicates)."),
        ("eps = 1e-3 and A(0) = L samples from each initial GMM are our reading "
         "(the paper does not report them)."),
        "The published values are read off the paper's plot (about +-0.05 at this scale).",
        (f"Steps follow the paper: t = 1 is the state before the first update "
         f"(our simulator's row t - 1); engine {res.engine}."),
    )

    def draw(path: str) -> None:
        _draw(path, series, R)

    return Outcome(target=TARGET, claims=claims, settings=settings, series=series, draw=draw,
                   notes=notes)


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask))


def _start_claim(pub: Any, norms: np.ndarray, R: int) -> Claim:
    x = norms[:, 0]
    med, lo, hi = float(np.median(x)), float(np.quantile(x, 0.05)), float(np.quantile(x, 0.95))
    share = _share((x >= START_RANGE[0]) & (x <= START_RANGE[1]))
    agrees = START_RANGE[0] <= med <= START_RANGE[1]
    return Claim(
        published=pub, ours=f"median {med:.2f} at t = 1; {100 * share:.0f}% of replicates in "
        "1.1-2.3", agrees=agrees, interval=(lo, hi),
        interval_kind=f"5-95% band over {R} replicates",
        detail=(f"agrees when our median at t = 1 ({med:.3f}) lies in [1.1, 2.3]. "
                f"{100 * share:.0f}% of our replicates start in that range, so five "
                f"replicates would all start there with chance {share ** 5:.2f}; the start "
                "distribution is set by the Dirichlet(1) initial weights alone."),
        measured={"median_t1": med, "p05_t1": lo, "p95_t1": hi, "share_in_range": share,
                  "chance_all_5_in_range": share ** 5, "range": list(START_RANGE),
                  "rule": "range[0] <= median_t1 <= range[1]"})


def _below_claim(pub: Any, norms: np.ndarray, R: int) -> Claim:
    x = norms[:, BELOW_AT - 1]
    med, lo, hi = float(np.median(x)), float(np.quantile(x, 0.05)), float(np.quantile(x, 0.95))
    share = _share(x < BELOW)
    share_by = _share(norms[:, :BELOW_AT].min(axis=1) < BELOW)
    agrees = med < BELOW and share >= BELOW_SHARE
    return Claim(
        published=pub, ours=f"median {med:.3f} at t = 25; {100 * share:.1f}% of replicates "
        "below 0.3", agrees=agrees, interval=(lo, hi),
        interval_kind=f"5-95% band over {R} replicates at t = 25",
        detail=(f"agrees when the median at t = 25 ({med:.3f}) is below 0.3 and at least "
                f"{100 * BELOW_SHARE:.0f}% of replicates are below 0.3 at t = 25 "
                f"({100 * share:.1f}%). 'All 5 replicates' maps to that share f: five "
                f"replicates all below has chance f^5 = {share ** 5:.2f}. "
                f"{100 * share_by:.1f}% went below 0.3 at some t <= 25."),
        measured={"median_t25": med, "p05_t25": lo, "p95_t25": hi, "share_below": share,
                  "share_below_at_some_t_le_25": share_by, "chance_all_5_below": share ** 5,
                  "threshold": BELOW, "t": BELOW_AT, "min_share": BELOW_SHARE,
                  "rule": "median_t25 < threshold and share_below >= min_share"})


def _floor_claim(pub: Any, norms: np.ndarray, t: np.ndarray, band: dict[str, list[float]],
                 R: int) -> Claim:
    late = t > FLOOR_AFTER
    med = np.asarray(band["median"])[late]
    p05 = np.asarray(band["p05"])[late]
    p95 = np.asarray(band["p95"])[late]
    lo_r, hi_r = FLOOR_RANGE
    inside = (med >= lo_r) & (med <= hi_r)
    per_rep = norms[:, late].mean(axis=1)
    share_rep = _share((per_rep >= lo_r) & (per_rep <= hi_r))
    agrees = bool(inside.all())
    return Claim(
        published=pub, ours=f"median curve {med.min():.3f}-{med.max():.3f} for t > 50",
        agrees=agrees, interval=(float(p05.min()), float(p95.max())),
        interval_kind=f"lowest 5% and highest 95% point of the band over t > 50, {R} replicates",
        detail=(f"agrees when the median curve stays in [0.02, 0.15] at every t > 50 (it is "
                f"inside at {int(inside.sum())} of {inside.size} steps). "
                f"{100 * share_rep:.0f}% of replicates have their mean over t > 50 in the range; "
                "replicates whose web settled on one component (all weights near 0 and 1) "
                "sit below 0.02."),
        measured={"median_min": float(med.min()), "median_max": float(med.max()),
                  "steps_inside": int(inside.sum()), "steps": int(inside.size),
                  "band_p05_min": float(p05.min()), "band_p95_max": float(p95.max()),
                  "share_replicates_mean_in_range": share_rep, "range": list(FLOOR_RANGE),
                  "after_t": FLOOR_AFTER,
                  "rule": "range[0] <= median(t) <= range[1] for every t > after_t"})


def _verdict_claim(pub: Any, trend: Any) -> Claim:
    rc, (rlo, rhi) = trend.relative_change, trend.relative_change_ci
    counts = dict(trend.counts)
    agrees = trend.verdict == "collapsing"
    return Claim(
        published=pub, ours=f"{trend.verdict}: ||D|| {100 * rc:+.0f}% late vs early window "
        f"({counts['collapsing']} of {trend.n_replicates} replicates collapsing)",
        agrees=agrees, interval=(float(rlo), float(rhi)),
        interval_kind="95% bootstrap interval of the relative change, over replicates",
        detail=("agrees when the pooled verdict of llmweb_plugin.trend.pooled_trend over the "
                f"replicates is 'collapsing' (it is {trend.verdict!r}: {trend.reason}); "
                "per-replicate verdicts use the slope and window tests."),
        measured={"verdict": trend.verdict, "counts": counts, "relative_change": rc,
                  "relative_change_ci": [rlo, rhi], "slope": trend.slope,
                  "slope_ci": list(trend.ci), "n_replicates": trend.n_replicates,
                  "rule": "verdict == 'collapsing'"})


def _draw(path: str, series: dict[str, Any], R: int) -> None:
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    t = np.asarray(series["t"])
    for i, ex in enumerate(series["examples"]):
        ax.plot(t, ex, lw=0.7, alpha=0.6, color="grey",
                label="single replicates (ours)" if i == 0 else None)
    ax.fill_between(t, series["p05"], series["p95"], color="tab:blue", alpha=0.25,
                    label=f"5-95% band, {R} replicates")
    ax.plot(t, series["median"], color="tab:blue", lw=2, label="median")
    ax.vlines(1, *START_RANGE, color="tab:red", lw=3, label="published start, 1.1-2.3")
    ax.plot([BELOW_AT], [BELOW], marker="v", color="tab:red", ms=9, ls="none",
            label="published: below 0.3 by t = 25")
    ax.fill_between([FLOOR_AFTER, t[-1]], *FLOOR_RANGE, color="tab:red", alpha=0.12,
                    label="published: 0.02-0.15 after t = 50")
    ax.set_yscale("log")
    ax.set_xlabel("step t (paper's indexing)")
    ax.set_ylabel(r"$\|D(t)\|_F$")
    ax.set_title("LWD Fig. 4 reproduced: GMM web, B = 2")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
