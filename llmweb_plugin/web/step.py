"""One step of the LLM web (paper Algorithm 1), framework-free.

The pieces here are what ``llmweb_langgraph.create_web_graph`` runs as graph nodes, and what
:func:`~llmweb_plugin.web.run_web` runs as a plain sequential loop (no LangGraph needed):

- :func:`start_run`: write the seed documents ``A(0)`` (kind ``seed``, step 0, indexes 0..).
- :func:`begin_step`: the mitigation hooks' ``before_step`` (e.g. inject external documents).
- :func:`run_agent`: one agent at step ``t``: draw its context from the web
  (:mod:`~llmweb_plugin.web.retrieval`), build and vary the request, get ``L`` answers, record all
  of them (kind ``response``, index 0..L-1) and post the first non-empty one (kind ``post``,
  index 0).
- :func:`end_step`: the step's :class:`~llmweb_plugin.metrics.StepMetrics`, read back from the
  store (so it is right after a crash and a resume in a new process), then ``after_step`` hooks.

Every draw has its own generator (:mod:`~llmweb_plugin.web.rng`) and every write a deterministic
point id, so a step re-run after a crash draws the same contexts and overwrites, never duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import StepMetrics, step_metrics
from ..store import KINDS, WEB_KINDS, Record, WebStore
from .agents import AgentError, Responder, normalise_answer
from .config import WebConfig
from .hooks import AgentRequest, WebHook, hook_name
from .retrieval import WebCache, draw_context, visible_web
from .rng import STREAM_AFTER, STREAM_BEFORE, STREAM_CONTEXT, STREAM_MODEL, STREAM_VARY, derive_rng

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import CollapseMonitor

__all__ = [
    "begin_step",
    "build_request",
    "end_step",
    "metrics_from_store",
    "notify_step",
    "run_agent",
    "start_run",
    "vary_request",
]

logger = logging.getLogger(__name__)


def build_request(config: WebConfig, *, agent: str, step: int,
                  context: Sequence[Record]) -> AgentRequest:
    """The agent's request before hooks: the context texts, the query, its prompt settings."""
    return AgentRequest(
        agent=agent, step=step, query=config.query, context=tuple(r.text for r in context),
        prompt_template=config.prompt_template,
        system_prompt=config.system_prompts.get(agent),
        temperature=config.temperatures.get(agent),
    )


def vary_request(hooks: Sequence[WebHook], request: AgentRequest, *, seed: int, step: int,
                 agent_index: int) -> AgentRequest:
    """Apply every hook's ``vary`` in order (hook ``j`` draws from its own stream)."""
    for j, h in enumerate(hooks):
        try:
            new = h.vary(request, rng=derive_rng(seed, STREAM_VARY, step, agent_index, j))
        except Exception as exc:
            raise RuntimeError(f"mitigation {hook_name(h)!r} failed in vary() for agent "
                               f"{request.agent!r} at step {step}: {exc}") from exc
        if not isinstance(new, AgentRequest):
            raise TypeError(f"mitigation {hook_name(h)!r}.vary() returned "
                            f"{type(new).__name__}; it must return an AgentRequest")
        request = new
    return request


def start_run(config: WebConfig, monitor: CollapseMonitor) -> None:
    """Write the seeds ``A(0)`` (idempotent) after checking the run holds no agent output yet.

    Raises:
        ValueError: the store already holds posts or responses of this run id.
    """
    store, run_id = monitor.store, monitor.run_id
    n_old = store.count(run_id, kind=["post", "response"])
    if n_old:
        raise ValueError(f"run {run_id!r} already has {n_old} posts/responses in the store; "
                         "resume it from its checkpoint, pick a new run_id, or "
                         "store.delete_run(run_id)")
    for i, text in enumerate(config.seeds):
        meta = config.seed_metadata[i] if config.seed_metadata else {}
        monitor.record(text, agent="seed", step=0, kind="seed", index=i, metadata=meta)
    monitor.flush(strict=True)


def begin_step(hooks: Sequence[WebHook], monitor: CollapseMonitor, *, seed: int,
               step: int) -> None:
    """Run the hooks' ``before_step`` for ``step`` and wait until what they wrote is stored."""
    for j, h in enumerate(hooks):
        try:
            h.before_step(step=step, monitor=monitor, rng=derive_rng(seed, STREAM_BEFORE, step, j))
        except Exception as exc:
            raise RuntimeError(f"mitigation {hook_name(h)!r} failed in before_step() at step "
                               f"{step}: {exc}") from exc
    if hooks:
        monitor.flush(strict=True)


def run_agent(config: WebConfig, responder: Responder, monitor: CollapseMonitor,
              hooks: Sequence[WebHook] = (), *, seed: int, step: int, agent: str,
              post_agents: Iterable[str] | None = None,
              parent_config: Mapping[str, Any] | None = None,
              query_vector: np.ndarray | None = None,
              cache: WebCache | None = None) -> dict[str, Any] | None:
    """One agent's part of one step; returns its post ``{step, agent, text, id}`` or ``None``.

    Records all ``L`` answers as kind ``response`` (index = generation index; empty answers are
    counted skips of the monitor) and the first non-empty answer as kind ``post`` (index 0). The
    post's metadata holds the retrieved ``context_ids``; every record holds ``context_size``,
    ``web_size``, ``retrieval`` and whatever the hooks put in the request's metadata. If all
    ``L`` answers are empty the agent posts nothing this step (logged, and a ``no_post`` event).

    The agent is called with a LangChain run config carrying ``parent_config``'s callbacks and
    tags and the metadata ``llmweb_run_id``, ``llmweb_agent``, ``llmweb_step`` and
    ``llmweb_seed`` (a seed for this agent and step, which seeded chat models use).

    Raises:
        AgentError: the agent raised or answered something other than ``L`` strings.
    """
    agent_index = config.agents.index(agent)
    draw = draw_context(monitor.store, config, run_id=monitor.run_id, step=step,
                        rng=derive_rng(seed, STREAM_CONTEXT, step, agent_index),
                        post_agents=post_agents, query_vector=query_vector, cache=cache)
    request = build_request(config, agent=agent, step=step, context=draw.records)
    request = vary_request(hooks, request, seed=seed, step=step, agent_index=agent_index)
    L = config.responses_per_step
    run_config = _run_config(monitor.run_id, agent, step, parent_config)
    run_config["metadata"]["llmweb_seed"] = int(
        derive_rng(seed, STREAM_MODEL, step, agent_index).integers(0, 2**62))
    try:
        raw = responder.respond(request, L, config=run_config)
    except AgentError as exc:
        raise AgentError(f"{exc} (step {step} of run {monitor.run_id})") from exc
    except Exception as exc:
        raise AgentError(f"agent {agent!r} failed at step {step} of run {monitor.run_id}: "
                         f"{type(exc).__name__}: {exc}") from exc
    answer = normalise_answer(raw, L, agent)
    meta: dict[str, Any] = {**dict(request.metadata), **dict(answer.metadata),
                            "context_size": draw.k, "web_size": draw.web_size,
                            "retrieval": config.retrieval}
    # The call's token usage goes on its first stored response only (flat keys, counted once
    # per call), so a report made later from the store shows per-agent usage.
    usage_meta = {f"usage_{k}": int(v) for k, v in dict(answer.usage or {}).items()
                  if k in ("input_tokens", "output_tokens") and isinstance(v, int)}
    first = next((j for j, t in enumerate(answer.texts) if t.strip()), None)
    for j, text in enumerate(answer.texts):
        monitor.record(text, agent=agent, step=step, kind="response", index=j,
                       metadata={**meta, **usage_meta} if j == first else meta)
    if answer.usage:
        monitor.record_usage(agent, **dict(answer.usage))
    post: dict[str, Any] | None = None
    if first is None:
        logger.warning("llmweb: agent %r gave %d empty answers at step %d of run %s; it posts "
                       "nothing this step", agent, L, step, monitor.run_id)
        monitor.log_event("no_post", agent=agent, step=step)
    else:
        text = answer.texts[first]
        pid = monitor.record(text, agent=agent, step=step, kind="post", index=0,
                             metadata={**meta, "response_index": first,
                                       "context_ids": [r.point_id for r in draw.records]})
        post = {"step": step, "agent": agent, "text": text, "id": pid}
    monitor.flush(strict=True, step_complete=False)  # the other agents of the step still write
    return post


def metrics_from_store(store: WebStore, run_id: str, step: int,
                       cache: WebCache | None = None) -> StepMetrics:
    """A step's :class:`StepMetrics` from the records stored in Qdrant.

    ``extras``: ``web_size`` (the web after the step), ``synthetic_fraction`` (posts over the
    web), ``n_<kind>`` (records of each kind written at this step) and ``context_size`` (per agent,
    from its post's metadata).
    """
    at = store.records(run_id, step=step, with_vectors=True)  # everything written at this step
    resp = [r for r in at if r.kind == "response"]
    if resp:
        V = np.stack([np.asarray(r.vector, dtype=np.float64) for r in resp])
        m = step_metrics(step, V, [r.agent for r in resp])
    else:
        m = step_metrics(step, np.zeros((0, store.dim)), [])
    before = [r for r in (cache.web(store, run_id, step) if cache is not None
                          else visible_web(store, run_id, step)) if r.step < step]
    now = [r for r in at if r.kind in WEB_KINDS]
    web = len(before) + len(now)
    n_posts = sum(r.kind == "post" for r in before) + sum(r.kind == "post" for r in now)
    counts = {f"n_{k}": sum(r.kind == k for r in at) for k in KINDS}
    ctx = {r.agent: r.metadata.get("context_size") for r in now if r.kind == "post"}
    extras = {"web_size": web, "synthetic_fraction": n_posts / web if web else None,
              **counts, "context_size": ctx}
    return replace(m, extras=extras)


def end_step(store: WebStore, monitor: CollapseMonitor, hooks: Sequence[WebHook] = (), *,
             seed: int, step: int, cache: WebCache | None = None) -> StepMetrics:
    """Finish ``step``: run ``after_step`` hooks, return its metrics read back from the store.

    Annotations the monitor holds for the step (``monitor.annotate``) are merged into
    ``extras``; the store's accounting wins over the monitor's in-memory one.
    """
    monitor.flush(strict=True)
    if hooks:
        posts = store.records(monitor.run_id, step=step, kind="post")
        for j, h in enumerate(hooks):
            try:
                h.after_step(step=step, posts=posts, monitor=monitor,
                             rng=derive_rng(seed, STREAM_AFTER, step, j))
            except Exception as exc:
                raise RuntimeError(f"mitigation {hook_name(h)!r} failed in after_step() at "
                                   f"step {step}: {exc}") from exc
        monitor.flush(strict=True)
    m = metrics_from_store(store, monitor.run_id, step, cache)
    return replace(m, extras={**monitor.step_extras(step), **m.extras})


def _run_config(run_id: str, agent: str, step: int,
                parent: Mapping[str, Any] | None) -> dict[str, Any]:
    """The LangChain run config for an agent's model calls: the parent's callbacks and tags,
    plus metadata naming the run, agent and step."""
    cfg: dict[str, Any] = {}
    if parent:
        for k in ("callbacks", "tags", "max_concurrency"):
            if parent.get(k) is not None:
                cfg[k] = parent[k]
    meta = {"llmweb_run_id": run_id, "llmweb_agent": agent, "llmweb_step": step}
    cfg["metadata"] = {**dict((parent or {}).get("metadata") or {}), **meta}
    cfg["run_name"] = f"llmweb:{agent}"
    return cfg


def notify_step(on_step: Callable[[StepMetrics], Any] | None, m: StepMetrics,
                monitor: CollapseMonitor) -> None:
    """Call ``on_step(m)``; its exceptions are counted by the monitor, never raised."""
    if on_step is None:
        return
    try:
        on_step(m)
    except Exception as exc:
        monitor.count_handler_error("on_step callback", exc)
