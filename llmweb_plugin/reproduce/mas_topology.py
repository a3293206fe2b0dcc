"""Target ``mas-topology``: "Diversity Collapse in Multi-Agent LLM Systems" (arXiv 2604.18005).

Its finding, as summarised in llmweb issue 15: (a) denser communication topologies accelerate
convergence, (b) group size has diminishing returns, (c) thinning the topology changes the rate
more than the destination. Tested on

* the LWD GMM proxy with a topology (:mod:`._gmm_topology`: each agent reads the seed points and
  the posts of itself and its neighbours; the proxy's own update), many replicates: ``n = 7``
  agents on ``full``, ``small_world`` (Watts-Strogatz ``k = 4``, ``p = 0.25``), llmweb's named
  ``small_world`` (``k = 2``: a rewired ring, as many edges as the ring) and ``ring``; group sizes
  3..7 on ``full``. B = 11 components (the ``lwd-fig6`` preset), so the web's diversity has room
  to fall (with B = 2 the pooled mixture stays near 2 effective components in every topology);
* the agent web with local models (``n = 4``: the smallest size where a ring is not full),
  ``full`` against ``ring``, few replicates; skipped with ``quick``.

The numbers (each claim's ``measured`` holds them):

* *rate*: steps until the RMS pairwise distance of the agents' weights,
  ``||D|| / sqrt(n (n - 1))``, first falls to ``theta`` = 0.75 x the median initial value (per
  replicate; ``T + 1`` when never, i.e. censored, so a ratio is then a lower bound); median over
  replicates;
* *destination*: the late-window mean (the verdict's window rule, last ``max(2, m // 4)`` of the
  ``m = T + 1`` values) of the same distance, and of the pooled Vendi score
  ``exp(H(mean_i Pi_i))``; median over replicates;
* intervals: 90% percentile bootstrap over replicates (each condition resampled on its own).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..proxies import gmm_preset
from ..trend import window_means
from ._core import Claim, Outcome, load_published
from ._gmm_topology import TopologyRun, simulate_topology, topology_stack

__all__ = ["DESCRIPTION", "bootstrap", "decide_denser_faster", "decide_diminishing",
           "decide_rate_vs_destination", "hitting_times", "late_levels", "run"]

logger = logging.getLogger(__name__)

TARGET = "mas-topology"
DESCRIPTION = ("Diversity Collapse in Multi-Agent LLM Systems (arXiv 2604.18005): denser "
               "topologies converge faster, group size has diminishing returns, thinning "
               "changes the rate more than the destination (GMM proxy + local agent web)")
#: topology name -> (llmweb topology, small-world lattice k)
TOPOLOGIES: dict[str, tuple[str, int]] = {
    "full": ("full", 0), "small_world_k4": ("small_world", 4),
    "small_world_k2": ("small_world", 2), "ring": ("ring", 0)}
THETA_FRACTION = 0.75
LEVEL = 0.90


# ------------------------------------------------------------------ estimators
def hitting_times(curves: np.ndarray, theta: float) -> np.ndarray:
    """First row index ``t`` with ``curves[t, r] <= theta`` per column ``r`` (``(T + 1, R)``);
    ``T + 1`` where never reached (censored)."""
    C = np.asarray(curves, dtype=float)
    hit = C <= theta
    first = np.argmax(hit, axis=0)
    return np.where(hit.any(axis=0), first, C.shape[0]).astype(float)


def late_levels(curves: np.ndarray) -> np.ndarray:
    """Late-window mean per column of ``curves`` (``(m, R)``), by :func:`~llmweb_plugin.trend.
    window_means` (the last ``max(2, m // 4)`` values)."""
    C = np.asarray(curves, dtype=float)
    return np.array([window_means(C[:, r])[1] for r in range(C.shape[1])])


def bootstrap(stat: Callable[..., float], samples: tuple[np.ndarray, ...],
              rng: np.random.Generator, *, n_boot: int = 1000,
              level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """``stat(*samples)`` and its percentile interval, each sample resampled on its own."""
    est = float(stat(*samples))
    boots = np.empty(n_boot)
    for b in range(n_boot):
        boots[b] = stat(*(s[rng.integers(0, len(s), len(s))] for s in samples))
    boots = boots[np.isfinite(boots)]
    a = (1 - level) / 2
    if boots.size == 0:
        return est, (math.nan, math.nan)
    return est, (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


def _sign(interval: tuple[float, float]) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it straddles 0 (or is NaN)."""
    lo, hi = interval
    return 1 if lo > 0 else -1 if hi < 0 else 0


def decide_denser_faster(median_t: Mapping[str, float],
                         log_ratio_ci: tuple[float, float]) -> tuple[bool | None, str]:
    """(a): True when the median hitting times are ordered full <= small-world (k=4) <= ring
    and the interval of ``log(t_ring / t_full)`` lies above 0; False when it lies below 0 or the
    order is broken with a significant ring-vs-full gap; None when not resolved."""
    s = _sign(log_ratio_ci)
    ordered = median_t["full"] <= median_t["small_world_k4"] <= median_t["ring"]
    if s > 0 and ordered:
        return True, "full <= small-world <= ring in median steps, ring slower than full (interval > 0)"
    if s < 0:
        return False, "the ring converges faster than the full topology (interval < 0)"
    if s > 0:
        return False, "ring slower than full, but small-world (k=4) is out of order"
    return None, "ring vs full not resolved (interval of the log ratio contains 0)"


def decide_diminishing(gain1_ci: tuple[float, float],
                       drop_ci: tuple[float, float]) -> tuple[bool | None, str]:
    """(b): ``gain1 = f(5) - f(3)``, ``drop = gain1 - (f(7) - f(5))``. True when both intervals
    lie above 0; False when either lies below 0 (no return, or growing returns); else None."""
    g, d = _sign(gain1_ci), _sign(drop_ci)
    if g > 0 and d > 0:
        return True, "3 -> 5 agents gains, and more than 5 -> 7 (both intervals > 0)"
    if g < 0:
        return False, "more agents keep less diversity (3 -> 5 gain interval < 0)"
    if d < 0:
        return False, "the gain grows with group size (5 -> 7 gains more than 3 -> 5)"
    return None, "not resolved at this many replicates (an interval contains 0)"


def decide_rate_vs_destination(diff_ci: tuple[float, float]) -> tuple[bool | None, str]:
    """(c): ``diff = |log(t_ring / t_full)| - |log(level_ring / level_full)|``. True when its
    interval lies above 0, False below 0, None when it contains 0."""
    s = _sign(diff_ci)
    if s > 0:
        return True, "thinning full -> ring changes the steps to theta more than the late level"
    if s < 0:
        return False, "thinning changes the late level more than the steps to theta"
    return None, "not resolved (the interval of the difference contains 0)"


# ------------------------------------------------------------------ the run
def _gmm_runs(st: Mapping[str, Any], gen: np.random.Generator) -> dict[str, TopologyRun]:
    base = gmm_preset("lwd-fig6", n_steps=st["n_steps"], n_replicates=st["replicates"],
                      record_weights=True)
    out: dict[str, TopologyRun] = {}
    n = st["n_agents"]
    for name, (topo, k) in TOPOLOGIES.items():
        adj = topology_stack(n, topo, st["replicates"], gen, **({"k": k} if k else {}))
        out[name] = simulate_topology(dataclasses.replace(base, n_agents=n), adj, rng=gen)
    for size in st["group_sizes"]:
        if size == n and "full" in out:
            out[f"n{size}"] = out["full"]
            continue
        web = dataclasses.replace(base, n_agents=size)
        out[f"n{size}"] = simulate_topology(web, topology_stack(size, "full", st["replicates"],
                                                                gen), rng=gen)
    return out


def _rms(run: TopologyRun) -> np.ndarray:
    n = run.weights.shape[2]
    return run.norms / math.sqrt(n * (n - 1))


def _settings(replicates: int | None, quick: bool, rng: np.random.Generator,
              options: Mapping[str, Any]) -> dict[str, Any]:
    known = {"steps", "n_agents", "group_sizes", "web", "web_agents", "web_replicates",
             "web_steps", "web_responses", "web_n_agents", "embedder", "seed", "threads"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"mas-topology: unknown options {unknown}; known: {sorted(known)}")
    R = int(replicates) if replicates is not None else (20 if quick else 100)
    T = int(options.get("steps", 25 if quick else 80))
    sizes = tuple(int(s) for s in options.get("group_sizes", (3, 4, 5, 6, 7)))
    if R < 2 or T < 4:
        raise ValueError(f"mas-topology needs replicates >= 2 and steps >= 4; got {R}, {T}")
    if not {3, 5, 7} <= set(sizes):
        raise ValueError("group_sizes must include 3, 5 and 7 (claim (b) compares them)")
    web = options.get("web", not quick)
    return {"proxy": "lwd-fig6 preset (B = 11, means -5..5, unit variance, a = 1, beta = 0.5, "
                     "L = 3) with a topology", "replicates": R, "n_steps": T,
            "n_agents": int(options.get("n_agents", 7)), "group_sizes": list(sizes),
            "topologies": {k: {"topology": v[0], "k": v[1] or None} for k, v in
                           TOPOLOGIES.items()},
            "theta_fraction": THETA_FRACTION, "interval_level": LEVEL, "quick": bool(quick),
            "seed": int(options.get("seed", int(rng.integers(0, 2**31 - 1)))),
            "web": bool(web), "web_agents": options.get("web_agents", "local"),
            "web_replicates": int(options.get("web_replicates", 1)),
            "web_steps": int(options.get("web_steps", 6)),
            "web_responses": int(options.get("web_responses", 2)),
            "web_n_agents": int(options.get("web_n_agents", 4)),
            "threads": int(options.get("threads", 1))}


def run(*, replicates: int | None, quick: bool, rng: np.random.Generator,
        **options: Any) -> Outcome:
    """Measure the three findings on the GMM proxy (and the agent web unless ``quick``).

    Options: ``steps``, ``n_agents`` (topology comparison, default 7), ``group_sizes``,
    ``web`` (run the agent web; default ``not quick``), ``web_agents`` (``"local"`` or
    ``"fake"``), ``web_replicates``, ``web_steps``, ``web_responses``, ``web_n_agents``,
    ``embedder``, ``seed``, ``threads``.
    """
    st = _settings(replicates, quick, rng, options)
    gen = np.random.default_rng(st["seed"])
    t0 = time.perf_counter()
    runs = _gmm_runs(st, gen)
    st["gmm_seconds"] = round(time.perf_counter() - t0, 1)
    web = _agent_web(st, options) if st["web"] else None
    return _outcome(runs, web, st, np.random.default_rng(st["seed"] + 1))


def _agent_web(st: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    from ._web_runs import agent_factory, run_replicates

    if st["web_agents"] != "fake":
        import torch

        torch.set_num_threads(st["threads"])
    factory = agent_factory(st["web_agents"], n_agents=st["web_n_agents"], max_new_tokens=32)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for topo in ("full", "ring"):
        seeds = [st["seed"] + i for i in range(st["web_replicates"])]
        r = run_replicates(factory, seeds=seeds, n_steps=st["web_steps"],
                           responses=st["web_responses"], topology=topo,
                           embedder=options.get("embedder", "default"))
        nt = dict((r.verdict.get("trends") or {}).get("norm") or {})
        out[topo] = {"normalized_norm": r.series["normalized_norm"].tolist(),
                     "vendi_score": r.series["vendi_score"].tolist(),
                     "verdict": r.verdict.get("verdict"),
                     "relative_change": nt.get("relative_change"),
                     "relative_change_ci": nt.get("relative_change_ci")}
    st["web_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _outcome(runs: Mapping[str, TopologyRun], web: Mapping[str, Any] | None,
             st: Mapping[str, Any], gen: np.random.Generator) -> Outcome:
    rms = {k: _rms(v) for k, v in runs.items()}
    theta = THETA_FRACTION * float(np.median(np.concatenate(
        [rms[k][0] for k in TOPOLOGIES])))
    hits = {k: hitting_times(rms[k], theta) for k in rms}
    levels = {k: late_levels(rms[k]) for k in rms}
    vendi = {k: late_levels(runs[k].vendi) for k in runs}
    med = lambda x: float(np.median(x))  # noqa: E731
    T = st["n_steps"]
    label = " (quick scale)" if st["quick"] else ""
    claims: list[Claim] = []
    for pid, pub in {p.id: p for p in load_published(TARGET)}.items():
        if pid == "denser_faster":
            lr, ci = bootstrap(lambda a, b: math.log(med(a) / med(b)),
                               (hits["ring"], hits["full"]), gen)
            mt = {k: med(hits[k]) for k in TOPOLOGIES}
            agrees, why = decide_denser_faster(mt, ci)
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=("median steps to theta: " + ", ".join(f"{k} {v:g}" for k, v in mt.items())
                      + f" (ring/full x{math.exp(lr):.2f})"),
                interval=(math.exp(ci[0]), math.exp(ci[1])),
                interval_kind=f"{100 * LEVEL:.0f}% bootstrap of t_ring / t_full over "
                              f"{st['replicates']} replicates",
                measured={"theta": theta, "median_steps": mt, "log_ratio": lr,
                          "log_ratio_ci": list(ci), "censored_at": T + 1,
                          "censored_share": {k: float(np.mean(hits[k] > T)) for k in mt}}))
        elif pid == "group_size_diminishing":
            f = {s: vendi[f"n{s}"] for s in st["group_sizes"]}
            g1, g1ci = bootstrap(lambda a, b: med(a) - med(b), (f[5], f[3]), gen)
            dr, drci = bootstrap(lambda a, b, c: (med(b) - med(a)) - (med(c) - med(b)),
                                 (f[3], f[5], f[7]), gen)
            agrees, why = decide_diminishing(g1ci, drci)
            fm = {s: med(v) for s, v in f.items()}
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=("late pooled Vendi by group size: " + ", ".join(
                    f"n={s} {v:.2f}" for s, v in fm.items())
                      + f"; gain 3->5 {g1:+.2f}, 5->7 {g1 - dr:+.2f}"),
                interval=drci, interval_kind=f"{100 * LEVEL:.0f}% bootstrap of (gain 3->5) - "
                                             "(gain 5->7)",
                measured={"late_vendi_median": {str(s): v for s, v in fm.items()},
                          "gain_3_5": g1, "gain_3_5_ci": list(g1ci), "drop": dr,
                          "drop_ci": list(drci),
                          "median_steps_by_size": {str(s): med(hits[f"n{s}"])
                                                   for s in st["group_sizes"]}}))
        elif pid == "rate_not_destination":
            def diff(tr: np.ndarray, tf: np.ndarray, lr_: np.ndarray, lf: np.ndarray) -> float:
                return abs(math.log(med(tr) / med(tf))) - abs(math.log(med(lr_) / med(lf)))

            d, dci = bootstrap(diff, (hits["ring"], hits["full"], levels["ring"],
                                      levels["full"]), gen)
            agrees, why = decide_rate_vs_destination(dci)
            rate = med(hits["ring"]) / med(hits["full"])
            dest = med(levels["ring"]) / med(levels["full"])
            vd = med(vendi["ring"]) / med(vendi["full"])
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=(f"ring vs full: steps to theta x{rate:.2f}, late ||D|| level x{dest:.2f}, "
                      f"late pooled Vendi x{vd:.3f}"),
                interval=dci, interval_kind=f"{100 * LEVEL:.0f}% bootstrap of |log rate ratio|"
                                            " - |log level ratio|",
                measured={"diff": d, "diff_ci": list(dci), "rate_ratio": rate,
                          "level_ratio": dest, "vendi_ratio": vd,
                          "late_level_median": {k: med(levels[k]) for k in TOPOLOGIES},
                          "late_vendi_median": {k: med(vendi[k]) for k in TOPOLOGIES}}))
        elif pid == "denser_faster_agent_web":
            claims.append(_web_claim(pub, web, st))
        else:
            claims.append(Claim(published=pub, ours="not measured", agrees=None,
                                detail=f"mas-topology has no measurement for claim {pid!r}"))
    series = _series(runs, rms, web, theta)
    settings = dict(st)

    def draw(path: str) -> None:
        from ._mas_plot import draw_mas

        draw_mas(path, series, settings)

    return Outcome(target=TARGET, claims=tuple(claims), settings=settings, series=series,
                   draw=draw, notes=_notes(st))


def decide_web(full_ci: tuple[float, float] | None,
               ring_ci: tuple[float, float] | None) -> tuple[bool | None, str]:
    """(a) on the agent web: True when full's relative change of ``||D||`` lies wholly below
    ring's (disjoint intervals), False when wholly above, else None."""
    if not full_ci or not ring_ci or any(v is None for v in (*full_ci, *ring_ci)):
        return None, "no interval for one of the topologies"
    if full_ci[1] < ring_ci[0]:
        return True, "full's ||D|| falls more than ring's (disjoint intervals)"
    if full_ci[0] > ring_ci[1]:
        return False, "ring's ||D|| falls more than full's (disjoint intervals)"
    return None, "not resolved: the intervals of full and ring overlap at this scale"


def _web_claim(pub: Any, web: Mapping[str, Any] | None, st: Mapping[str, Any]) -> Claim:
    if web is None:
        return Claim(published=pub, ours="not run", agrees=None,
                     detail="the agent web is skipped in quick mode (or web=False)")
    f, r = web["full"], web["ring"]
    agrees, why = decide_web(f["relative_change_ci"], r["relative_change_ci"])
    pct = lambda v: "n/a" if v is None else f"{100 * v:+.0f}%"  # noqa: E731
    return Claim(
        published=pub, agrees=agrees, detail=why,
        ours=(f"||D|| late vs early: full {pct(f['relative_change'])} ({f['verdict']}), ring "
              f"{pct(r['relative_change'])} ({r['verdict']})"),
        interval=tuple(f["relative_change_ci"]) if f["relative_change_ci"] else None,
        interval_kind=(f"full's relative-change interval ({st['web_replicates']} replicate(s) "
                       f"of {st['web_n_agents']} {st['web_agents']} agents, T = "
                       f"{st['web_steps']}); ring's is in measured"),
        measured={"full": {k: f[k] for k in ("relative_change", "relative_change_ci",
                                             "verdict")},
                  "ring": {k: r[k] for k in ("relative_change", "relative_change_ci",
                                             "verdict")}})


def _band(M: np.ndarray) -> dict[str, list[float]]:
    return {"median": np.median(M, axis=1).tolist(), "p05": np.quantile(M, 0.05, axis=1).tolist(),
            "p95": np.quantile(M, 0.95, axis=1).tolist()}


def _series(runs: Mapping[str, TopologyRun], rms: Mapping[str, np.ndarray],
            web: Mapping[str, Any] | None, theta: float) -> dict[str, Any]:
    out: dict[str, Any] = {"t": list(range(next(iter(rms.values())).shape[0])), "theta": theta,
                           "rms_distance": {k: _band(v) for k, v in rms.items()},
                           "pooled_vendi": {k: _band(runs[k].vendi) for k in runs}}
    if web is not None:
        out["agent_web"] = {k: {"normalized_norm": v["normalized_norm"],
                                "vendi_score": v["vendi_score"]} for k, v in web.items()}
    return out


def _notes(st: Mapping[str, Any]) -> tuple[str, ...]:
    notes = [
        "The paper's own set-up (LLM agents, its topologies and metrics) is not available "
        "here; the claims are as summarised in llmweb issue 15 and tested on our proxy and "
        "our agent web, with the rate and destination defined in the claims' details.",
        "Rate = steps until the agents' RMS pairwise weight distance first reaches theta "
        f"(= {THETA_FRACTION} x the median initial value); a replicate that never reaches it "
        f"counts as T + 1 = {st['n_steps'] + 1} (censored), so a ratio involving it is a lower "
        "bound. Destination = late-window level at T, not the limit: every connected "
        "topology's ||D|| keeps falling towards 0 (the LWD proof sketch), so a thinner "
        "topology's late level partly reflects its slower rate.",
        "small_world_k2 is llmweb's named 'small_world' (a ring with rewired edges, as many "
        "edges as the ring); small_world_k4 (k = 4, p = 0.25) is the denser one used in the "
        "ordering of claim (a). With n = 3 every topology is full, so the comparison uses "
        f"n = {st['n_agents']}.",
        "Group size (b) is read on diversity: the late-window pooled Vendi score on the full "
        "topology (the initial pooled Vendi also grows with n, since a mean of more Dirichlet "
        "draws is more even).",
    ]
    if st["quick"]:
        notes.insert(0, "QUICK: fewer replicates and steps, and no agent web; the numbers "
                     "check the plumbing and are not the target's full-scale result.")
    return tuple(notes)
