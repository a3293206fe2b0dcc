"""Target ``lwd-fig2``: the LLM web of LWD (arXiv 2506.15690, Fig. 2), by shape.

The paper's set-up (n = 3 models, the 20 crypto seed posts, its query, beta = 0.5, L = 40, T = 60,
one run) on the models at hand: by default three local SmolLM2-135M agents at a scale that
finishes in minutes (``L = 4``, ``T = 12``, 2 replicates); ``agents=[...]`` takes the spec strings
of ``llmweb run --agents`` (``"name=module:attr"``), ``paper=True`` the paper's ``L = 40, T = 60``.
Our embedder (all-MiniLM-L6-v2, unit vectors) differs from the paper's (nomic-embed, values near
20), so the comparison is of shape: whether ``||D||`` falls (the verdict of ``llmweb run`` with its
interval, pooled over replicates), and the ratios of the paper's window means (13.3 / 8.9 / 8.4
for steps 1-10 / 11-30 / 31-60) against ours with a bootstrap interval over replicates.

``quick=True`` runs instant deterministic fake agents (:class:`llmweb_plugin.web.EchoAgent`) with
a hash embedder (:class:`llmweb_plugin.testing.SeededEmbedder`): it checks the plumbing, not the
paper, and its claims say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ._core import Claim, Outcome, load_published
from ._web_runs import WebRuns, agent_factory, bootstrap_ratio, run_replicates, window_mean

__all__ = ["DESCRIPTION", "PUBLISHED_WINDOWS", "decide_ratio", "decide_trend", "decide_verdict",
           "run"]

logger = logging.getLogger(__name__)

TARGET = "lwd-fig2"
DESCRIPTION = ("LWD Fig. 2: ||D||_F of the 3-agent LLM web falls (from over 20 to around 5); "
               "window means 13.3 / 8.9 / 8.4, compared by shape on local models")
#: the paper's window means of ||D||_F (read off Fig. 2): (first step, last step, mean)
PUBLISHED_WINDOWS = ((1, 10, 13.3), (11, 30, 8.9), (31, 60, 8.4))
_LEVEL = 0.90  # bootstrap interval of the ratios


def decide_trend(norm_trend: Mapping[str, Any]) -> tuple[bool | None, str]:
    """``agrees`` for "the norm falls", from the pooled ``||D||`` trend (``PooledTrend`` dict):
    True when "collapsing", False when "stable" or "diverging", None when "inconclusive"."""
    v = norm_trend.get("verdict")
    if v == "collapsing":
        return True, "||D|| trend 'collapsing' (its interval lies below 0): it falls, as published"
    if v in ("stable", "diverging"):
        return False, f"||D|| trend {v!r}: shown not to fall, unlike the paper"
    return None, f"||D|| trend {v!r}: this scale cannot tell whether it falls"


def decide_ratio(published: float, interval: tuple[float, float], complete: bool,
                 ) -> tuple[bool | None, str]:
    """``agrees`` for a window-mean ratio: the published ratio inside our interval; None when
    our run does not cover the window."""
    if not complete:
        return None, "the run does not cover the whole window, so the ratio cannot be compared"
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None, "no interval (no finite window means)"
    inside = lo <= published <= hi
    return inside, (f"published ratio {published:.3f} {'inside' if inside else 'outside'} our "
                    f"interval [{lo:.3f}, {hi:.3f}]")


def decide_verdict(verdict: str) -> tuple[bool | None, str]:
    """``agrees`` for "the web collapses": True for 'collapsing'/'converging' (the agents agree
    more), False for 'stable'/'diverging', None for 'inconclusive'/'narrowing' (convergence not
    shown)."""
    if verdict in ("collapsing", "converging"):
        return True, f"pooled verdict {verdict!r}: the agents converge, as published"
    if verdict in ("stable", "diverging"):
        return False, f"pooled verdict {verdict!r}: no convergence, unlike the paper"
    return None, f"pooled verdict {verdict!r}: convergence is not shown at this scale"


def _settings(replicates: int | None, quick: bool, rng: np.random.Generator,
              options: Mapping[str, Any]) -> dict[str, Any]:
    known = {"agents", "paper", "steps", "responses", "n_agents", "max_new_tokens", "embedder",
             "threads", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"lwd-fig2: unknown options {unknown}; known: {sorted(known)}")
    agents = options.get("agents")
    if isinstance(agents, str):
        agents = [agents]
    paper = bool(options.get("paper", False))
    if quick:
        kind, T, L, R = "fake", 12, 3, 2
    elif paper:
        kind, T, L, R = ("specs" if agents else "local"), 60, 40, 1
    else:
        kind, T, L, R = ("specs" if agents else "local"), 12, 4, 2
    if agents and quick:
        raise ValueError("lwd-fig2: agents= runs real models; leave quick out")
    T = int(options.get("steps", T))
    L = int(options.get("responses", L))
    R = int(replicates) if replicates is not None else R
    if R < 1 or T < 1 or L < 1:
        raise ValueError(f"lwd-fig2: replicates, steps and responses must be >= 1; got "
                         f"{R}, {T}, {L}")
    seed = int(options.get("seed", int(rng.integers(0, 2**31 - 1))))
    return {"agents": kind, "agent_specs": list(agents) if agents else None,
            "n_agents": int(options.get("n_agents", 3)), "responses_per_step": L,
            "n_steps": T, "replicates": R, "beta": 0.5, "seeds": "CRYPTO_SEEDS (20)",
            "query": "the paper's (PAPER_QUERY)", "topology": "full", "retrieval": "uniform",
            "max_new_tokens": int(options.get("max_new_tokens", 40)), "quick": bool(quick),
            "paper_scale": paper, "seed": seed,
            "embedder": ("SeededEmbedder (hash, no meaning)" if quick
                         else "all-MiniLM-L6-v2 (default)"),
            "threads": int(options.get("threads", 1))}


def run(*, replicates: int | None, quick: bool, rng: np.random.Generator,
        **options: Any) -> Outcome:
    """Run the LLM web and compare it with Fig. 2 (see the module docstring).

    Options: ``agents`` (list of ``"name=module:attr"``), ``paper`` (L = 40, T = 60), ``steps``,
    ``responses``, ``n_agents``, ``max_new_tokens``, ``seed``, ``threads`` (torch CPU threads,
    default 1 as ``llmweb run``), ``embedder`` (an Embedder object, e.g. for tests).
    """
    st = _settings(replicates, quick, rng, options)
    embedder: Any = options.get("embedder", "default")
    if quick and "embedder" not in options:
        from ..testing import SeededEmbedder

        embedder = SeededEmbedder()
    factory = agent_factory(st["agents"], n_agents=st["n_agents"], specs=st["agent_specs"],
                            max_new_tokens=st["max_new_tokens"])  # refuses bad specs first
    if st["agents"] != "fake":
        import torch

        torch.set_num_threads(st["threads"])
    seeds = [st["seed"] + i for i in range(st["replicates"])]
    runs = run_replicates(factory, seeds=seeds, n_steps=st["n_steps"],
                          responses=st["responses_per_step"], beta=st["beta"],
                          embedder=embedder)
    st["seconds"] = round(runs.seconds, 1)
    st["agent_names"] = list(runs.agents)
    return _outcome(runs, st, np.random.default_rng(st["seed"]))


def _outcome(runs: WebRuns, st: Mapping[str, Any], gen: np.random.Generator) -> Outcome:
    published = {p.id: p for p in load_published(TARGET)}
    norm = runs.series["norm"]
    steps = runs.steps
    T, R = len(steps), norm.shape[0]
    label = " (quick: fake agents and a hash embedder: plumbing, not the paper)" if st[
        "quick"] else ""
    trends = runs.verdict.get("trends") or {}
    nt = dict(trends.get("norm") or {})
    claims: list[Claim] = []
    for pid, pub in published.items():
        if pid == "norm_falls":
            agrees, why = decide_trend(nt)
            rc = nt.get("relative_change")
            ci = nt.get("relative_change_ci") or [None, None]
            ok = rc is not None and None not in ci
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=(f"{nt.get('verdict')}, {100 * rc:+.0f}% late vs early window"
                      if rc is not None else f"{nt.get('verdict')}"),
                interval=(float(ci[0]), float(ci[1])) if ok else None,
                interval_kind=(f"{100 * float(nt.get('ci_level', 0.95)):.1f}% interval of the "
                               f"relative change ({_over(R)})"),
                measured={"verdict": nt.get("verdict"), "relative_change": rc,
                          "relative_change_ci": list(ci), "published_relative": 5 / 20 - 1}))
        elif pid.startswith("window_ratio_"):
            (lo0, hi0, m0) = PUBLISHED_WINDOWS[0]
            lo1, hi1, m1 = next(w for w in PUBLISHED_WINDOWS if f"{w[0]}_{w[1]}" in pid)
            early = window_mean(norm, steps, lo0, hi0)
            late = window_mean(norm, steps, lo1, hi1)
            complete = T >= hi1
            ratio, ci = bootstrap_ratio(late, early, gen, level=_LEVEL)
            pub_ratio = m1 / m0
            agrees, why = decide_ratio(pub_ratio, ci, complete)
            covered = f"steps {lo1}-{min(hi1, T)}" if T >= lo1 else "no steps"
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=(f"{ratio:.3f}" + ("" if complete else f" (partial: {covered} of "
                                        f"{lo1}-{hi1}, T = {T})")) if math.isfinite(ratio)
                else f"not measured (T = {T} < {lo1})",
                interval=ci if math.isfinite(ratio) else None,
                interval_kind=f"{100 * _LEVEL:.0f}% {_over(R)}",
                measured={"ratio": ratio, "interval": list(ci), "published_ratio": pub_ratio,
                          "complete": complete, "window": [lo1, hi1], "n_steps": T,
                          "early_means": early.tolist(), "late_means": late.tolist()}))
        elif pid == "verdict":
            v = str(runs.verdict.get("verdict"))
            agrees, why = decide_verdict(v)
            near = [list(x) for x in runs.near_duplicates]
            claims.append(Claim(
                published=pub, agrees=agrees, detail=why + label,
                ours=str(runs.verdict.get("sentence") or v),
                interval_kind=f"pooled over {R} replicates" if R > 1 else "one run",
                measured={"verdict": v, "near_duplicate_share_first_last": near}))
        else:  # a published row this module does not know: say so, never drop it
            claims.append(Claim(published=pub, ours="not measured", agrees=None,
                                detail=f"lwd-fig2 has no measurement for claim {pid!r}"))
    if st["quick"]:
        # fake agents and a hash embedder say nothing about the paper: the rule's answer is kept
        # (so the plumbing is checked) but never shown as agreement or disagreement
        claims = [replace(c, agrees=None, measured={**c.measured, "rule_says": c.agrees})
                  for c in claims]
    series = _series(runs)
    notes = _notes(st)
    settings = dict(st)

    def draw(path: str) -> None:
        _draw(path, series, settings)

    return Outcome(target=TARGET, claims=tuple(claims), settings=settings, series=series,
                   draw=draw, notes=notes)


def _over(R: int) -> str:
    """How an interval over ``R`` replicates was made, with a warning when ``R`` is small."""
    if R == 1:
        return "one run"
    crude = " (crude: so few replicates give few distinct resamples)" if R < 5 else ""
    return f"bootstrap over {R} replicates{crude}"


def _series(runs: WebRuns) -> dict[str, Any]:
    out: dict[str, Any] = {"t": list(runs.steps)}
    for name in ("norm", "vendi_score"):
        M = runs.series[name]
        with np.errstate(all="ignore"):
            out[name] = {"median": np.nanmedian(M, axis=0).tolist(),
                         "p05": np.nanquantile(M, 0.05, axis=0).tolist(),
                         "p95": np.nanquantile(M, 0.95, axis=0).tolist(),
                         "replicates": M.tolist()}
    out["published_windows"] = [list(w) for w in PUBLISHED_WINDOWS]
    return out


def _notes(st: Mapping[str, Any]) -> tuple[str, ...]:
    notes = ["Our embedder (all-MiniLM-L6-v2, unit vectors) is not the paper's (nomic-embed, "
             "||D|| near 20), so raw values differ; the claims compare shape: the verdict, the "
             "relative change and the ratios of window means.",
             "The paper ran L = 40, T = 60 once on Llama-3.1-8B, deepseek-7b and Mistral-7B; "
             f"this run: {st['agents']} agents, L = {st['responses_per_step']}, "
             f"T = {st['n_steps']}, {st['replicates']} replicate(s)."]
    if st["quick"]:
        notes.insert(0, "QUICK: fake EchoAgent agents and a hash embedder (SeededEmbedder). "
                     "This checks the plumbing, not the paper: its claims say nothing about "
                     "LLMs.")
    if st["n_steps"] < 60:
        notes.append(f"At T = {st['n_steps']} a window the run does not cover gets agrees = "
                     "None; use paper=True (or steps=60) to test the 11-30 and 31-60 windows.")
    return tuple(notes)


def _draw(path: str, series: Mapping[str, Any], st: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = series["t"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, name, label in zip(axes, ("norm", "vendi_score"), ("||D(t)||_F", "Vendi score")):
        s = series[name]
        for row in s["replicates"]:
            ax.plot(t, row, color="0.75", lw=0.8)
        ax.fill_between(t, s["p05"], s["p95"], alpha=0.25, label="5-95% band")
        ax.plot(t, s["median"], lw=2, label="median")
        ax.set_xlabel("step t")
        ax.set_ylabel(label)
    axes[0].set_title(f"lwd-fig2: {st['agents']} agents, L={st['responses_per_step']}, "
                      f"{st['replicates']} replicate(s)", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
