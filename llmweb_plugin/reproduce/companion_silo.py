"""Target ``companion-silo``: silos against neighbours ``k`` and mirroring ``p`` (companion paper).

The companion model (E. L. Wang et al., arXiv:2506.00077; :class:`~llmweb_plugin.proxies.SiloGMM`,
preset ``companion-silo``): n = 30 agents, K = 30 components at 0..29, sigma = 0.2, private RAG
sets of r = 5 points, each agent starting one-hot on its own component. Two sweeps, each over
many replicates:

- ``p = 0``, ``k`` in 1, 2, 5, 10, 20, 29: the silo count at ``T``;
- ``k = 29`` (everyone a neighbour), ``p`` in 0, 0.2, 0.4, 0.6, 0.8: ``t*``, the last step with
  more than one silo (``T`` when several silos remain: censored, so it understates a delay).

``lwd-paper.md`` restates the model and its typical settings but no numbers, so each claim is a
direction, marked as our reading. How each is decided (from this call's numbers, with 95%
percentile-bootstrap intervals of the mean over replicates):

- ``fewer_silos_with_more_neighbours``: the interval of the mean silo count at ``T`` for the
  smallest ``k`` lies wholly above the one for the largest ``k``, and from one ``k`` to the next
  the count never rises beyond the intervals (the next interval's low end never exceeds the
  previous one's high end);
- ``consensus_with_all_neighbours``: at least 90% of replicates end with one silo at ``k = 29``,
  ``p = 0``;
- ``mirroring_delays_consensus``: the interval of the mean ``t*`` at the largest ``p`` lies wholly
  above the one at ``p = 0``, and from one ``p`` to the next ``t*`` never falls beyond the
  intervals.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import numpy as np

from llmweb_plugin.proxies import SiloGMM, SiloResult, gmm_preset

from ._core import Claim, Outcome, load_published
from ._plot import new_figure
from ._stats import bootstrap_mean_ci, percentile_band

__all__ = ["DESCRIPTION", "K_GRID", "P_GRID", "run"]

TARGET = "companion-silo"
DESCRIPTION = ("companion paper (arXiv:2506.00077): silo count vs nearest neighbours k (p = 0) "
               "and time to one silo vs mirroring p (k = 29), n = K = 30, over replicates")
K_GRID = (1, 2, 5, 10, 20, 29)
P_GRID = (0.0, 0.2, 0.4, 0.6, 0.8)
K_ALL = 29
CONSENSUS_SHARE = 0.9
#: (replicates, steps) at full scale and with ``quick``
FULL = (50, 200)
QUICK = (10, 100)


def run(*, replicates: int | None, quick: bool, rng: np.random.Generator) -> Outcome:
    """Run both sweeps and decide the claims.

    Args:
        replicates: replicates per setting (default 50; 10 with ``quick``).
        quick: 10 replicates and T = 100 steps instead of 50 and 200.
        rng: the generator of this reproduction.

    Returns:
        The :class:`~llmweb_plugin.reproduce.Outcome`.
    """
    R0, T = QUICK if quick else FULL
    R = replicates or R0
    base = dataclasses.replace(cast(SiloGMM, gmm_preset(TARGET)), n_replicates=R, n_steps=T)
    by_k: dict[int, SiloResult] = {}
    for k in K_GRID:
        by_k[k] = dataclasses.replace(base, n_neighbors=k, mirror_prob=0.0).run(rng=rng)
    by_p: dict[float, SiloResult] = {0.0: by_k[K_ALL]}
    for p in P_GRID[1:]:
        by_p[p] = dataclasses.replace(base, n_neighbors=K_ALL, mirror_prob=p).run(rng=rng)

    k_rows = [_row(by_k[k].final_silos, rng) for k in K_GRID]
    p_rows = [_row(by_p[p].t_star, rng) for p in P_GRID]
    published = {c.id: c for c in load_published(TARGET)}
    claims = (
        _k_claim(published["fewer_silos_with_more_neighbours"], k_rows, R),
        _consensus_claim(published["consensus_with_all_neighbours"], by_k[K_ALL], R),
        _p_claim(published["mirroring_delays_consensus"], p_rows, by_p, R, T),
    )
    settings = {
        "replicates": R, "quick": quick, "n_steps": T, "n_agents": base.n_agents,
        "n_components": base.n_components, "sigma": base.sigma, "rag_size": base.rag_size,
        "means": "0..K-1 (d = 1)", "initial_weights": "agent i one-hot on component i",
        "k_grid": list(K_GRID), "p_for_k_sweep": 0.0, "p_grid": list(P_GRID),
        "k_for_p_sweep": K_ALL, "interval": "95% percentile bootstrap of the mean (2000)",
    }
    series = {
        "t": list(range(T + 1)),
        "k": list(K_GRID),
        "silos_at_T": {"mean": [r["mean"] for r in k_rows], "ci": [r["ci"] for r in k_rows],
                       "p05": [r["p05"] for r in k_rows], "p95": [r["p95"] for r in k_rows]},
        "silos_over_time_by_k": {str(k): percentile_band(by_k[k].n_silos.T) for k in K_GRID},
        "p": list(P_GRID),
        "t_star": {"mean": [r["mean"] for r in p_rows], "ci": [r["ci"] for r in p_rows],
                   "p05": [r["p05"] for r in p_rows], "p95": [r["p95"] for r in p_rows]},
        "converged_share_by_p": [float(by_p[p].converged.mean()) for p in P_GRID],
        "silos_over_time_by_p": {str(p): percentile_band(by_p[p].n_silos.T) for p in P_GRID},
    }
    notes = (
        ("lwd-paper.md restates the companion model and its typical settings but no numbers; "
         "every claim here is a direction and our reading of what the model is used to show."),
        "Partner ties are broken uniformly at random (our reading), as in SiloGMM.",
        f"t* is censored at T = {T} when several silos remain, which understates a delay.",
        "The k = 29, p = 0 runs are shared by both sweeps.",
    )

    def draw(path: str) -> None:
        _draw(path, series, R)

    return Outcome(target=TARGET, claims=claims, settings=settings, series=series, draw=draw,
                   notes=notes)


def _row(values: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_mean_ci(x, rng=rng)
    return {"mean": float(x.mean()), "ci": [lo, hi], "p05": float(np.quantile(x, 0.05)),
            "p95": float(np.quantile(x, 0.95))}


def _mci(row: dict[str, Any], digits: int = 1) -> str:
    """``"9.2 (8.5-9.9)"``: a mean with its interval."""
    lo, hi = row["ci"]
    return f"{row['mean']:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def _k_claim(pub: Any, rows: list[dict[str, Any]], R: int) -> Claim:
    first, last = rows[0], rows[-1]
    separated = first["ci"][0] > last["ci"][1]
    rises = [f"k={K_GRID[i]}->{K_GRID[i + 1]}" for i in range(len(rows) - 1)
             if rows[i + 1]["ci"][0] > rows[i]["ci"][1]]
    agrees = separated and not rises
    means = ", ".join(f"k={k}: {_mci(r)}" for k, r in zip(K_GRID, rows, strict=True))
    return Claim(
        published=pub, ours=f"mean silos at T (95% interval, {R} replicates each): {means}",
        agrees=agrees, interval_kind="95% percentile bootstrap of the mean, per k",
        detail=(f"agrees when the interval at k = {K_GRID[0]} {first['ci']} lies wholly above "
                f"the one at k = {K_GRID[-1]} {last['ci']} ({'yes' if separated else 'no'}) and "
                "the count never rises beyond the intervals from one k to the next "
                f"({'rises at ' + ', '.join(rises) if rises else 'it never does'})."),
        measured={"k": list(K_GRID), "mean": [r["mean"] for r in rows],
                  "ci": [r["ci"] for r in rows],
                  "rule": "ci[0][0] > ci[-1][1] and no ci[i+1][0] > ci[i][1]"})


def _consensus_claim(pub: Any, res: SiloResult, R: int) -> Claim:
    share = float(res.converged.mean())
    t_star = res.t_star.astype(np.float64)
    return Claim(
        published=pub, ours=f"{100 * share:.0f}% of replicates end with one silo (mean t* "
        f"{t_star.mean():.1f})", agrees=share >= CONSENSUS_SHARE,
        interval=(float(np.quantile(t_star, 0.05)), float(np.quantile(t_star, 0.95))),
        interval_kind=f"5-95% range of t* over {R} replicates",
        detail=(f"agrees when at least {100 * CONSENSUS_SHARE:.0f}% of replicates end with one "
                f"silo at k = {K_ALL}, p = 0 ({100 * share:.0f}% do)."),
        measured={"converged_share": share, "min_share": CONSENSUS_SHARE,
                  "final_silos_mean": float(res.final_silos.mean()),
                  "t_star_mean": float(t_star.mean()), "rule": "converged_share >= min_share"})


def _p_claim(pub: Any, rows: list[dict[str, Any]], by_p: dict[float, SiloResult], R: int,
             T: int) -> Claim:
    first, last = rows[0], rows[-1]
    separated = last["ci"][0] > first["ci"][1]
    falls = [f"p={P_GRID[i]:g}->{P_GRID[i + 1]:g}" for i in range(len(rows) - 1)
             if rows[i + 1]["ci"][1] < rows[i]["ci"][0]]
    agrees = separated and not falls
    means = ", ".join(f"p={p:g}: {_mci(r, 0)}" for p, r in zip(P_GRID, rows, strict=True))
    conv = [float(by_p[p].converged.mean()) for p in P_GRID]
    return Claim(
        published=pub, ours=f"mean t* of T = {T} (95% interval, {R} replicates each): {means}",
        agrees=agrees, interval_kind="95% percentile bootstrap of the mean, per p",
        detail=(f"agrees when the interval of mean t* at p = {P_GRID[-1]:g} {last['ci']} lies "
                f"wholly above the one at p = 0 {first['ci']} ({'yes' if separated else 'no'}) "
                "and t* never falls beyond the intervals from one p to the next "
                f"({'falls at ' + ', '.join(falls) if falls else 'it never does'}). Share "
                "ending with one silo by p: "
                + ", ".join(f"{p:g}: {100 * c:.0f}%" for p, c in zip(P_GRID, conv, strict=True))
                + "."),
        measured={"p": list(P_GRID), "mean": [r["mean"] for r in rows],
                  "ci": [r["ci"] for r in rows], "converged_share": conv, "n_steps": T,
                  "rule": "ci[-1][0] > ci[0][1] and no ci[i+1][1] < ci[i][0]"})


def _draw(path: str, series: dict[str, Any], R: int) -> None:
    fig = new_figure(figsize=(13, 4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    t = np.asarray(series["t"])
    for k, band in series["silos_over_time_by_k"].items():
        line = ax1.plot(t, band["median"], lw=1.5, label=f"k = {k}")[0]
        ax1.fill_between(t, band["p05"], band["p95"], color=line.get_color(), alpha=0.15)
    ax1.set_yscale("log")
    ax1.set_xlabel("step t")
    ax1.set_ylabel("silos (median, 5-95% band)")
    ax1.set_title("p = 0: silos over time by k")
    ax1.legend(fontsize=7)
    k = np.asarray(series["k"])
    s = series["silos_at_T"]
    ax2.fill_between(k, s["p05"], s["p95"], color="tab:blue", alpha=0.2, label="5-95% band")
    ci = np.asarray(s["ci"])
    mean = np.asarray(s["mean"])
    ax2.errorbar(k, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], marker="o", capsize=3,
                 label="mean, 95% interval")
    ax2.set_xscale("log")
    ax2.set_xlabel("nearest neighbours k")
    ax2.set_ylabel("silos at T")
    ax2.set_title(f"p = 0, {R} replicates per k")
    ax2.legend(fontsize=7)
    p = np.asarray(series["p"])
    ts = series["t_star"]
    ci = np.asarray(ts["ci"])
    mean = np.asarray(ts["mean"])
    ax3.fill_between(p, ts["p05"], ts["p95"], color="tab:orange", alpha=0.2, label="5-95% band")
    ax3.errorbar(p, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], marker="o", capsize=3,
                 color="tab:orange", label="mean, 95% interval")
    ax3.axhline(t[-1], color="grey", lw=0.8, ls="--", label="T (censored)")
    ax3.set_xlabel("mirroring probability p")
    ax3.set_ylabel("t* (last step with > 1 silo)")
    ax3.set_title(f"k = {K_ALL}, {R} replicates per p")
    ax3.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
