"""The LLM web with and without each mitigation, over seeds, into one store.

:func:`run_web_experiment` runs the LLM web itself (:func:`llmweb_plugin.web.run_web`, the same
steps and records as ``llmweb_langgraph.create_web_graph``) per arm and seed into one store, with
run ids ``exp-<arm>-s<seed>``, and reads the monitor's per-step history. The secondary diversity
measure is the mean cosine distance of the step's responses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .checks import check_arms, check_seeds, plain
from .effects import effects_vs_baseline
from .result import ExperimentResult

if TYPE_CHECKING:  # pragma: no cover
    from ..store import WebStore
    from ..web import WebHook

__all__ = ["HooksFactory", "run_web_experiment"]

logger = logging.getLogger(__name__)

#: A function ``seed -> hooks`` (fresh, possibly stateful hooks for each run).
HooksFactory = Callable[[int], Sequence["WebHook"]]


def run_web_experiment(
    agents_factory: Callable[[int], Mapping[str, Any]],
    arms: Mapping[str, Sequence[WebHook] | HooksFactory],
    *,
    store: WebStore,
    seeds: Iterable[int] = range(3),
    n_steps: int = 5,
    responses_per_step: int = 4,
    baseline: str | None = None,
    window: int | None = None,
    overwrite: bool = False,
    n_boot: int = 2000,
    arm_notes: Mapping[str, str] | None = None,
    on_run: Callable[[str, int, Any], Any] | None = None,
    **web_kwargs: Any,
) -> ExperimentResult:
    """The LLM web with and without each mitigation, over seeds, into one store.

    Each (arm, seed) runs :func:`llmweb_plugin.web.run_web` (the steps and records of
    ``llmweb_langgraph.create_web_graph``, without checkpointing) with ``rng=seed``, run id
    ``exp-<arm>-s<seed>``, a fresh monitor, and the arm's hooks as ``mitigations``.

    Args:
        agents_factory: ``seed -> {name: agent}`` (fresh agents per run, e.g. seeded models).
        arms: ``{name: hooks}``, hooks being a sequence of
            :class:`~llmweb_plugin.web.WebHook` or a factory ``seed -> hooks`` (use a factory
            for stateful hooks such as a review queue per run). The first arm is the baseline
            unless ``baseline`` says otherwise.
        store: the shared :class:`~llmweb_plugin.store.WebStore` (all runs go there).
        seeds: the seeds.
        n_steps: ``T``.
        responses_per_step: ``L``.
        baseline: the arm the others are compared with.
        window: the last steps averaged for the effects (default ``max(1, T // 3)``).
        overwrite: delete an existing run with the same id first (else a ``ValueError``).
        n_boot: bootstrap resamples.
        arm_notes: descriptions of the arms for the report.
        on_run: called with ``(arm, seed, WebResult)`` after each run.
        **web_kwargs: passed to ``run_web`` (``query``, ``seeds`` as ``web_seeds``, ``beta``,
            ``retrieval``, ``topology``, ``prompt_template``, ``system_prompts``,
            ``temperatures``).

    Returns:
        An :class:`ExperimentResult` (``steps = 1..T``, secondary ``mean_cosine_distance``,
        series ``synthetic_fraction``, ``injected``, ``sampled``) with ``run_ids``.
    """
    from ..monitor import CollapseMonitor
    from ..web import run_web

    order, base = check_arms(arms, baseline)
    seed_t = check_seeds(seeds)
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    if "web_seeds" in web_kwargs:
        web_kwargs["seeds"] = web_kwargs.pop("web_seeds")
    bad = {"mitigations", "monitor", "run_id", "rng", "store", "agents"} & set(web_kwargs)
    if bad:
        raise ValueError(f"run_web_experiment sets {sorted(bad)} itself")
    T = int(n_steps)
    w = max(1, T // 3) if window is None else int(window)
    if w < 1:  # before the runs, so a bad window writes nothing to the store
        raise ValueError(f"window must be >= 1; got {window}")
    steps = np.arange(1, T + 1)
    S = len(seed_t)
    metric_names = ("mean_cosine_distance", "synthetic_fraction", "injected", "sampled",
                    "web_size")
    norms = {a: np.full((S, T), np.nan) for a in order}
    series = {m: {a: np.full((S, T), np.nan) for a in order} for m in metric_names}
    run_ids: dict[str, list[str]] = {a: [] for a in order}
    for a in order:
        for si, seed in enumerate(seed_t):
            hooks_spec = arms[a]
            hooks = list(hooks_spec(seed) if callable(hooks_spec) else hooks_spec)
            rid = f"exp-{a}-s{seed}"
            if store.count(rid):
                if not overwrite:
                    raise ValueError(f"the store already holds run {rid!r}; pass overwrite=True "
                                     "or use another store")
                store.delete_run(rid)
            mon = CollapseMonitor(store, run_id=rid)
            try:
                res = run_web(agents_factory(seed), store=store, mitigations=hooks, monitor=mon,
                              n_steps=T, responses_per_step=responses_per_step, rng=seed,
                              **web_kwargs)
            finally:
                mon.close()
            run_ids[a].append(rid)
            for m in res.history:
                j = int(m.step) - 1
                if not 0 <= j < T:
                    continue
                norms[a][si, j] = m.norm
                series["mean_cosine_distance"][a][si, j] = m.mean_cosine_distance
                ex = m.extras or {}
                for key in ("synthetic_fraction", "web_size"):
                    v = ex.get(key)
                    series[key][a][si, j] = np.nan if v is None else float(v)
                series["injected"][a][si, j] = float(ex.get("injected", 0) or 0)
                series["sampled"][a][si, j] = float(ex.get("sampled", 0) or 0)
            if on_run is not None:
                on_run(a, seed, res)
            logger.info("llmweb experiment: arm %s seed %d done (final norm %.4g)", a, seed,
                        norms[a][si, -1])
    settings = {
        "n_steps": T, "responses_per_step": int(responses_per_step),
        "web": {k: plain(v) for k, v in web_kwargs.items()},
        "arm_notes": {a: (arm_notes or {}).get(a, _describe_hooks(arms[a], seed_t[0]))
                      for a in order},
        "n_boot": n_boot,
    }
    return ExperimentResult(
        proxy="web", arms=tuple(order), baseline=base, seeds=seed_t, steps=steps, norms=norms,
        series=series, secondary="mean_cosine_distance", window=w,
        effects=effects_vs_baseline(norms, steps, base, w, "norm", n_boot),
        secondary_effects=effects_vs_baseline(series["mean_cosine_distance"], steps, base, w,
                                   "mean_cosine_distance", n_boot),
        settings=settings, run_ids={a: tuple(v) for a, v in run_ids.items()},
    )


def _describe_hooks(spec: Any, seed: int) -> str:
    if callable(spec) and not isinstance(spec, Sequence):
        return "hooks from a factory"
    hooks = list(spec)
    return ", ".join(repr(h) for h in hooks) if hooks else "no mitigation"

