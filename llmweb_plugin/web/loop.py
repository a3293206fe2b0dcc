"""The LLM web as a plain sequential loop: :func:`run_web` and its :class:`WebResult`.

The same steps as ``llmweb_langgraph.create_web_graph`` (:mod:`~llmweb_plugin.web.step`), one
agent after another, without LangGraph and without checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import StepMetrics
from ..monitor import CollapseMonitor
from ..store import WebStore
from .agents import as_responder
from .config import DEFAULT_PROMPT_TEMPLATE, PAPER_QUERY, make_config
from .hooks import WebHook, check_hooks
from .retrieval import WebCache, query_vector_for
from .rng import resolve_seed
from .step import begin_step, end_step, notify_step, run_agent, start_run

__all__ = ["WebResult", "run_web"]


@dataclass(frozen=True, kw_only=True)
class WebResult:
    """What :func:`run_web` returns.

    Attributes:
        run_id: the run id (records in the store carry it).
        seed: the run's integer seed.
        neighbours: the resolved topology.
        history: one :class:`StepMetrics` per step.
        posts: every post, ``{step, agent, text, id}``, in step and agent order.
    """

    run_id: str
    seed: int
    neighbours: Mapping[str, tuple[str, ...]]
    history: tuple[StepMetrics, ...]
    posts: tuple[Mapping[str, Any], ...]


def run_web(agents: Mapping[str, Any], *, store: WebStore, query: str = PAPER_QUERY,
            seeds: Sequence[Any] | None = None, beta: float = 0.5,
            responses_per_step: int = 40, n_steps: int = 60, retrieval: str = "uniform",
            topology: Any = "full", prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
            system_prompts: Mapping[str, str | None] | None = None,
            temperatures: Mapping[str, float | None] | None = None,
            mitigations: Sequence[WebHook] = (), monitor: CollapseMonitor | None = None,
            run_id: str | None = None, rng: np.random.Generator | int | None = None,
            on_step: Callable[[StepMetrics], Any] | None = None) -> WebResult:
    """Run an LLM web as a plain sequential loop, without LangGraph (no checkpointing).

    Same parameters and the same stored records as ``llmweb_langgraph.create_web_graph`` (for
    deterministic agents the two give identical runs); use the graph for parallel agents and
    crash-safe resumption.
    """
    if not isinstance(agents, Mapping):
        raise TypeError("agents must be a mapping {name: model or callable}")
    config = make_config(list(agents), seeds=seeds, query=query, beta=beta,
                         responses_per_step=responses_per_step, n_steps=n_steps,
                         retrieval=retrieval, topology=topology,
                         prompt_template=prompt_template, system_prompts=system_prompts,
                         temperatures=temperatures)
    hooks = check_hooks(mitigations)
    responders = {a: as_responder(obj, name=a) for a, obj in agents.items()}
    if monitor is None:
        monitor = CollapseMonitor(store, run_id=run_id)
    elif run_id is not None and run_id != monitor.run_id:
        raise ValueError(f"run_id={run_id!r} disagrees with the monitor's {monitor.run_id!r}")
    if monitor.store is not store:
        raise ValueError("the monitor writes to another store than store=")
    seed = resolve_seed(rng)
    nbrs = config.resolve_topology(seed)
    qvec = query_vector_for(store, config)
    start_run(config, monitor)
    cache = WebCache()
    history: list[StepMetrics] = []
    posts: list[Mapping[str, Any]] = []
    for t in range(1, config.n_steps + 1):
        begin_step(hooks, monitor, seed=seed, step=t)
        for a in config.agents:
            post = run_agent(config, responders[a], monitor, hooks, seed=seed, step=t, agent=a,
                             post_agents=config.post_agents(nbrs, a), query_vector=qvec,
                             cache=cache)
            if post is not None:
                posts.append(post)
        m = end_step(store, monitor, hooks, seed=seed, step=t, cache=cache)
        history.append(m)
        notify_step(on_step, m, monitor)
    return WebResult(run_id=monitor.run_id, seed=seed,
                     neighbours={a: tuple(sorted(n)) for a, n in nbrs.items()},
                     history=tuple(history), posts=tuple(posts))
