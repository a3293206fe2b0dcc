"""Replicates of the LLM web for the reproduce targets, run with what ``llmweb run`` uses.

Agents come from the same places (:func:`llmweb_plugin.web.models.local_agents`, ``--agents``
spec strings through :func:`llmweb_plugin.cli.run.load_agent`, or the instant
:class:`llmweb_plugin.web.EchoAgent`); each replicate is one :func:`llmweb_plugin.web.run_web`
run into one in-memory Qdrant store; the per-step rows and the pooled verdict come from
:class:`llmweb_plugin.report.DiversityReport` (the report ``llmweb run`` writes), so a target's
numbers are the numbers a user of ``llmweb run`` and ``llmweb report`` would see.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WebRuns", "agent_factory", "bootstrap_ratio", "run_replicates", "window_mean"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WebRuns:
    """Replicates of one web set-up.

    Attributes:
        steps: the steps ``1..T``.
        series: metric -> array ``(R, T)`` (``norm``, ``normalized_norm``, ``vendi_score``, ...).
        verdict: the pooled verdict (``DiversityReport.verdict()``: over all replicates when
            ``R > 1``, else the run's).
        near_duplicates: per replicate ``(first step share, last step share)`` of posts that
            nearly repeat another agent's (``None`` where not computed).
        seconds: wall time of the runs.
        agents: the agents' names.
    """

    steps: tuple[int, ...]
    series: Mapping[str, np.ndarray]
    verdict: Mapping[str, Any]
    near_duplicates: tuple[tuple[float | None, float | None], ...]
    seconds: float
    agents: tuple[str, ...]


def agent_factory(kind: str, *, n_agents: int = 3, specs: Sequence[str] | None = None,
                  max_new_tokens: int = 40) -> Callable[[int], dict[str, Any]]:
    """``factory(seed) -> {name: agent}`` for ``kind`` ``"local"``, ``"fake"`` or ``"specs"``.

    Raises:
        ValueError: an unknown kind, fewer than two agents, or a malformed spec (named).
    """
    if kind == "specs":
        items = [s.strip() for item in (specs or ()) for s in item.split(",") if s.strip()]
        if len(items) < 2:
            raise ValueError(f"agents= needs at least two 'NAME=MODULE:ATTR' specs (the "
                             f"collapse metric compares agents); got {len(items)}")

        def build_specs(seed: int) -> dict[str, Any]:
            from ..cli.run import load_agent  # the same loader as `llmweb run --agents`

            built = dict(load_agent(s) for s in items)
            if len(built) != len(items):
                raise ValueError("agents= names must be unique")
            return built

        return build_specs
    if isinstance(n_agents, bool) or not isinstance(n_agents, int) or n_agents < 2:
        raise ValueError(f"n_agents must be an integer >= 2; got {n_agents!r}")
    if kind == "fake":
        def build_fake(seed: int) -> dict[str, Any]:
            from ..web import EchoAgent

            return {f"echo-{i + 1}": EchoAgent(f"echo-{i + 1}", seed=seed)
                    for i in range(n_agents)}

        return build_fake
    if kind == "local":
        def build_local(seed: int) -> dict[str, Any]:
            from ..web.models import local_agents

            return dict(local_agents(n_agents, seed=seed, max_new_tokens=max_new_tokens))

        return build_local
    raise ValueError(f"unknown agent kind {kind!r}; use 'local', 'fake' or 'specs'")


def run_replicates(factory: Callable[[int], dict[str, Any]], *, seeds: Sequence[int],
                   n_steps: int, responses: int, beta: float = 0.5,
                   topology: Any = "full", embedder: Any = "default",
                   query: str | None = None) -> WebRuns:
    """One :func:`~llmweb_plugin.web.run_web` run per seed (the crypto seed posts, the paper's
    query unless given), all in one in-memory store, read back through the report."""
    from ..report import DiversityReport
    from ..store import WebStore
    from ..web import PAPER_QUERY, run_web

    start = time.perf_counter()
    ids: list[str] = []
    names: tuple[str, ...] = ()
    with WebStore(":memory:", embedder=embedder) as store:
        for seed in seeds:
            agents = factory(int(seed))
            names = tuple(agents)
            rid = f"rep-{int(seed)}"
            run_web(agents, store=store, query=query or PAPER_QUERY, beta=beta,
                    responses_per_step=responses, n_steps=n_steps, topology=topology,
                    run_id=rid, rng=int(seed))
            ids.append(rid)
            logger.info("replicate %s done (%.1f s so far)", rid, time.perf_counter() - start)
        rep = DiversityReport.from_store(store, run_ids=ids, max_mds_points=200)
        verdict = dict(rep.verdict())
    steps = tuple(range(1, n_steps + 1))
    series: dict[str, np.ndarray] = {}
    for name in ("norm", "normalized_norm", "between_spread", "vendi_score",
                 "mean_cosine_distance", "distinct_1", "distinct_2"):
        M = np.full((len(ids), n_steps), np.nan)
        for i, run in enumerate(rep.runs):
            for s, v in zip(run.steps, run.series(name)):
                if 1 <= s <= n_steps:
                    M[i, s - 1] = v
        series[name] = M
    near = []
    for run in rep.runs:
        ev = run.evidence or {}
        near.append(tuple(_share(ev.get(w)) for w in ("first", "last")))
    return WebRuns(steps=steps, series=series, verdict=verdict, near_duplicates=tuple(near),
                   seconds=time.perf_counter() - start, agents=names)


def _share(ev: Any) -> float | None:
    if not isinstance(ev, Mapping):
        return None
    v = (ev.get("near_duplicates") or {}).get("share")
    return None if v is None else float(v)


def window_mean(M: np.ndarray, steps: Sequence[int], lo: int, hi: int) -> np.ndarray:
    """Per-replicate mean of ``M`` (``(R, T)``) over the steps ``lo..hi`` present (NaN if none)."""
    s = np.asarray(steps)
    keep = (s >= lo) & (s <= hi)
    if not keep.any():
        return np.full(M.shape[0], np.nan)
    with np.errstate(all="ignore"):
        return np.nanmean(M[:, keep], axis=1)


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, rng: np.random.Generator, *,
                    n_boot: int = 2000, level: float = 0.90) -> tuple[float, tuple[float, float]]:
    """Ratio of means over replicates and its percentile bootstrap interval (replicates
    resampled in pairs). With one replicate the interval is ``(ratio, ratio)``."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    ok = np.isfinite(num) & np.isfinite(den)
    num, den = num[ok], den[ok]
    if num.size == 0 or den.mean() == 0:
        return math.nan, (math.nan, math.nan)
    ratio = float(num.mean() / den.mean())
    if num.size == 1:
        return ratio, (ratio, ratio)
    pick = rng.integers(0, num.size, size=(n_boot, num.size))
    with np.errstate(all="ignore"):
        boot = num[pick].mean(axis=1) / den[pick].mean(axis=1)
    boot = boot[np.isfinite(boot)]
    a = (1.0 - level) / 2
    return ratio, (float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a)))
