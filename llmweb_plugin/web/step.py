"""The LLM-web step (paper Algorithm 1), framework-free: config, topology, retrieval, one step.

The pieces here are what ``llmweb_langgraph.create_web_graph`` runs as graph nodes, and what
:func:`run_web` runs as a plain sequential loop (no LangGraph needed):

- :func:`start_run`: write the seed documents ``A(0)`` (kind ``seed``, step 0, indexes 0..).
- :func:`begin_step`: the mitigation hooks' ``before_step`` (e.g. inject external documents).
- :func:`run_agent`: one agent at step ``t``: draw its context from the web, build and vary the
  request, get ``L`` answers, record all of them (kind ``response``, index 0..L-1) and post the
  first non-empty one (kind ``post``, index 0).
- :func:`end_step`: the step's :class:`~llmweb_plugin.metrics.StepMetrics`, read back from the
  store (so it is right after a crash and a resume in a new process), then ``after_step`` hooks.

What an agent sees at step ``t`` (:func:`visible_web`): every web record (seed, external, human,
post) of a step before ``t``, plus the non-post web records of step ``t`` itself (documents a
``before_step`` hook injected for this step); never a post of step ``t``, so what one agent reads
never depends on whether another agent of the same step has already posted. With a non-full
topology an agent sees only its own posts and those of the agents it is connected to (seeds and
injected documents always). ``k_t = floor(beta * |A_t|)`` items are drawn uniformly without
replacement (the paper), or the ``k_t`` most similar to the query (``retrieval="similarity"``).

Randomness: one integer ``seed`` per run; every draw uses its own generator
``np.random.default_rng([seed, stream, step, ...])`` (:func:`derive_rng`), so a run is
reproducible whatever the thread scheduling, and a step re-run after a crash draws the same
contexts. Every write has a deterministic point id, so a re-run step overwrites, never duplicates.

Example:
    >>> from llmweb_plugin.web import k_for, neighbours
    >>> k_for(21, 0.5), k_for(100, 0.29)
    (10, 29)
    >>> {a: sorted(n) for a, n in neighbours(["a", "b", "c", "d"], "ring").items()}
    {'a': ['b', 'd'], 'b': ['a', 'c'], 'c': ['b', 'd'], 'd': ['a', 'c']}
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import StepMetrics, step_metrics
from ..store import KINDS, WEB_KINDS, Record, WebStore
from .agents import AgentError, Responder, as_responder, normalise_answer
from .hooks import AgentRequest, WebHook

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import CollapseMonitor

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "PAPER_QUERY",
    "RETRIEVAL_MODES",
    "TOPOLOGIES",
    "ContextDraw",
    "WebCache",
    "WebConfig",
    "WebResult",
    "begin_step",
    "derive_rng",
    "draw_context",
    "end_step",
    "k_for",
    "make_config",
    "metrics_from_store",
    "neighbours",
    "notify_step",
    "query_vector_for",
    "resolve_seed",
    "ring",
    "run_agent",
    "run_web",
    "small_world",
    "start_run",
    "visible_web",
]

logger = logging.getLogger(__name__)

PAPER_QUERY = "Please provide EXACTLY one concise sentence about the future prospects of Bitcoin."
DEFAULT_PROMPT_TEMPLATE = "Here are some posts from the web:\n{context}\n\n{query}"
RETRIEVAL_MODES: tuple[str, ...] = ("uniform", "similarity")
TOPOLOGIES: tuple[str, ...] = ("full", "ring", "small_world")

# Independent random streams of one run (the second entry of every derived seed).
STREAM_CONTEXT = 0
STREAM_VARY = 1
STREAM_BEFORE = 2
STREAM_AFTER = 3
STREAM_TOPOLOGY = 4
STREAM_MODEL = 5


# ---------------------------------------------------------------------- numbers and randomness
def k_for(web_size: int, beta: float) -> int:
    """``floor(beta * web_size)``, robust to float rounding (``k_for(100, 0.29) == 29``)."""
    if web_size < 0:
        raise ValueError(f"web_size must be >= 0; got {web_size}")
    return int(math.floor(float(beta) * int(web_size) + 1e-9))


def resolve_seed(rng: np.random.Generator | int | None) -> int:
    """The run's integer seed: ``rng`` itself if an int, else one drawn from ``rng``/entropy."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative int, a Generator or None; got {rng}")
        return int(rng)
    if rng is None or isinstance(rng, np.random.Generator):
        return int(np.random.default_rng(rng).integers(0, 2**63 - 1))
    raise TypeError(f"rng must be a numpy Generator, an int or None; got {type(rng).__name__}")


def derive_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of one random stream of a run, e.g. ``(seed, STREAM_CONTEXT, step, agent)``."""
    return np.random.default_rng([int(seed), int(stream), *(int(k) for k in keys)])


# ---------------------------------------------------------------------- topology
Neighbours = dict[str, frozenset[str]]


def _check_agents(agents: Sequence[str]) -> list[str]:
    names = list(agents)
    if not names:
        raise ValueError("agents is empty; an LLM web needs at least one agent")
    for a in names:
        if not isinstance(a, str) or not a:
            raise ValueError(f"agent names must be non-empty strings; got {a!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"agent names must be unique; got {names}")
    return names


def ring(agents: Sequence[str]) -> Neighbours:
    """Each agent connected to the one before and after it (in the given order, wrapping)."""
    names = _check_agents(agents)
    n = len(names)
    return {a: frozenset({names[(i - 1) % n], names[(i + 1) % n]} - {a})
            for i, a in enumerate(names)}


def small_world(agents: Sequence[str], *, k: int = 2, p: float = 0.25,
                rng: np.random.Generator | int | None = None) -> Neighbours:
    """A Watts-Strogatz small-world graph (undirected).

    Start from a ring lattice where each agent is connected to its ``k`` nearest agents
    (``k / 2`` on each side), then rewire each lattice edge's far end with probability ``p`` to an
    agent chosen uniformly among those it is not yet connected to.

    Args:
        agents: the agent names, in ring order.
        k: even number of lattice neighbours, ``2 <= k < len(agents)``.
        p: rewiring probability in ``[0, 1]``.
        rng: seed or generator.
    """
    names = _check_agents(agents)
    n = len(names)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2 or k % 2:
        raise ValueError(f"small_world k must be an even integer >= 2; got {k!r}")
    if k >= n:
        raise ValueError(f"small_world needs k < number of agents; got k={k} with {n} agents "
                         "(use topology='full' for a complete graph)")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"small_world p must be in [0, 1]; got {p}")
    gen = np.random.default_rng(rng)
    adj: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for j in range(1, k // 2 + 1):
            adj[i].add((i + j) % n)
            adj[(i + j) % n].add(i)
    for j in range(1, k // 2 + 1):
        for i in range(n):
            u, v = i, (i + j) % n
            if v not in adj[u] or gen.random() >= p:
                continue
            choices = [w for w in range(n) if w != u and w not in adj[u]]
            if not choices:
                continue
            w = choices[int(gen.integers(len(choices)))]
            adj[u].discard(v)
            adj[v].discard(u)
            adj[u].add(w)
            adj[w].add(u)
    return {names[i]: frozenset(names[j] for j in adj[i]) for i in range(n)}


def neighbours(agents: Sequence[str], topology: Any = "full", *,
               rng: np.random.Generator | int | None = None) -> Neighbours:
    """Whose posts each agent reads, besides its own: ``{agent: frozenset(other agents)}``.

    Args:
        agents: the agent names.
        topology: ``"full"`` (everyone reads everyone, the paper), ``"ring"``,
            ``"small_world"`` (Watts-Strogatz, ``k=2, p=0.25``; call :func:`small_world` for
            other parameters and pass its result), a mapping ``{agent: agents it reads}``
            (directed; agents left out read no other agent), or an ``(n, n)`` 0/1 matrix in the
            order of ``agents`` where entry ``[i, j]`` says agent i reads agent j.
        rng: seed or generator for ``small_world``.

    Raises:
        ValueError: an unknown topology name, unknown agent names, or a matrix of the wrong shape.
    """
    names = _check_agents(agents)
    if isinstance(topology, str):
        if topology == "full":
            return {a: frozenset(names) - {a} for a in names}
        if topology == "ring":
            return ring(names)
        if topology == "small_world":
            return small_world(names, rng=rng)
        raise ValueError(f"unknown topology {topology!r}; use one of {TOPOLOGIES}, a mapping "
                         "{agent: [agents it reads]}, or an (n, n) adjacency matrix")
    if isinstance(topology, Mapping):
        known = set(names)
        unknown = {str(a) for a in topology} - known
        out: Neighbours = {a: frozenset() for a in names}
        for a, reads in topology.items():
            if isinstance(reads, str):
                reads = [reads]
            reads = set(reads)
            unknown |= {str(b) for b in reads} - known
            if a in known:
                out[a] = frozenset(reads & known) - {a}
        if unknown:
            raise ValueError(f"topology names unknown agents {sorted(unknown)}; the agents are "
                             f"{names}")
        return out
    try:
        M = np.asarray(topology, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"topology must be a name, a mapping or an adjacency matrix; got "
                         f"{type(topology).__name__}") from None
    n = len(names)
    if M.shape != (n, n):
        raise ValueError(f"adjacency matrix has shape {M.shape}; expected ({n}, {n}) for the "
                         f"agents {names}")
    if not np.all(np.isfinite(M)):
        raise ValueError("adjacency matrix has non-finite entries")
    return {a: frozenset(names[j] for j in range(n) if j != i and M[i, j] != 0)
            for i, a in enumerate(names)}


# ---------------------------------------------------------------------- configuration
def _seed_items(seeds: Iterable[Any]) -> tuple[tuple[str, ...], tuple[Mapping[str, Any], ...]]:
    texts, metas = [], []
    for s in seeds:
        if isinstance(s, str):
            text, meta = s, {}
        elif isinstance(getattr(s, "text", None), str):
            text = s.text
            label = getattr(s, "label", None)
            meta = {"label": label} if label is not None else {}
        else:
            raise TypeError(f"seeds must be strings (or objects with a .text); got "
                            f"{type(s).__name__}")
        if not text.strip():
            raise ValueError("seeds contain an empty text; remove it")
        texts.append(text)
        metas.append(meta)
    return tuple(texts), tuple(metas)


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """Everything that defines an LLM-web experiment except the agents' models and the store.

    Attributes:
        agents: agent names, in order (the order fixes each agent's random stream).
        seeds: the seed texts ``A(0)``.
        seed_metadata: metadata stored with each seed (e.g. its label).
        query: the question every agent answers at every step.
        beta: retrieval fraction, ``k_t = floor(beta * |A_t|)``, in ``(0, 1]``.
        responses_per_step: ``L``, answers per agent per step (the first is posted).
        n_steps: ``T``, the number of steps.
        retrieval: ``"uniform"`` (the paper) or ``"similarity"`` (top-k by the query).
        topology: see :func:`neighbours`.
        prompt_template: ``str.format`` template with ``{context}`` and ``{query}``.
        system_prompts: per-agent system prompt (agents not listed use their own).
        temperatures: per-agent sampling temperature (agents not listed use their own).
    """

    agents: tuple[str, ...]
    seeds: tuple[str, ...]
    seed_metadata: tuple[Mapping[str, Any], ...] = ()
    query: str = PAPER_QUERY
    beta: float = 0.5
    responses_per_step: int = 40
    n_steps: int = 60
    retrieval: str = "uniform"
    topology: Any = "full"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompts: Mapping[str, str | None] = field(default_factory=dict)
    temperatures: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = _check_agents(self.agents)
        if "seed" in names:
            raise ValueError("'seed' is reserved for the seed documents; rename that agent")
        for nm, v in (("responses_per_step", self.responses_per_step),
                      ("n_steps", self.n_steps)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{nm} must be an integer >= 1; got {v!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, numbers.Real) \
                or not 0.0 < float(self.beta) <= 1.0:
            raise ValueError(f"beta must be in (0, 1]; got {self.beta!r}")
        if self.retrieval not in RETRIEVAL_MODES:
            raise ValueError(f"unknown retrieval {self.retrieval!r}; use one of "
                             f"{RETRIEVAL_MODES}")
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError("query must be a non-empty string")
        try:
            self.prompt_template.format(context="- x", query="q")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"prompt_template must be a str.format template using only "
                             f"{{context}} and {{query}}; formatting failed: {exc!r}") from None
        if "{context}" not in self.prompt_template or "{query}" not in self.prompt_template:
            raise ValueError("prompt_template must contain both {context} and {query}")
        if not self.seeds:
            raise ValueError("seeds is empty; the web needs seed documents A(0) to read from")
        if self.seed_metadata and len(self.seed_metadata) != len(self.seeds):
            raise ValueError("seed_metadata must have one entry per seed")
        if k_for(len(self.seeds), self.beta) < 1:
            raise ValueError(
                f"k_0 = floor(beta * |A(0)|) = floor({self.beta} * {len(self.seeds)}) = 0: the "
                "agents would read nothing at the first step. Give more seeds or a larger beta."
            )
        for nm, per in (("system_prompts", self.system_prompts),
                        ("temperatures", self.temperatures)):
            unknown = set(per) - set(names)
            if unknown:
                raise ValueError(f"{nm} names unknown agents {sorted(unknown)}; the agents are "
                                 f"{names}")
        for a, t in self.temperatures.items():
            if t is not None and (not isinstance(t, numbers.Real) or not t >= 0):
                raise ValueError(f"temperature of {a!r} must be >= 0 or None; got {t!r}")
        neighbours(names, self.topology, rng=0)  # validate the topology now

    def resolve_topology(self, seed: int) -> Neighbours:
        """The topology of a run with this seed (``small_world`` draws from it)."""
        return neighbours(self.agents, self.topology, rng=derive_rng(seed, STREAM_TOPOLOGY))

    def post_agents(self, nbrs: Mapping[str, Iterable[str]], agent: str) -> list[str] | None:
        """Whose posts ``agent`` reads (itself and its neighbours); ``None`` for everyone."""
        reads = set(nbrs.get(agent, ())) | {agent}
        if reads >= set(self.agents):
            return None
        return sorted(reads)


def make_config(agents: Sequence[str], *, seeds: Sequence[Any] | None = None,
                query: str = PAPER_QUERY, beta: float = 0.5, responses_per_step: int = 40,
                n_steps: int = 60, retrieval: str = "uniform", topology: Any = "full",
                prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
                system_prompts: Mapping[str, str | None] | None = None,
                temperatures: Mapping[str, float | None] | None = None) -> WebConfig:
    """A validated :class:`WebConfig`; ``seeds=None`` uses the shipped 20 crypto posts."""
    if seeds is None:
        from .seeds import CRYPTO_SEEDS

        seeds = CRYPTO_SEEDS
    if isinstance(seeds, str):
        raise TypeError("seeds must be a sequence of texts, not one string")
    texts, metas = _seed_items(seeds)
    return WebConfig(
        agents=tuple(agents), seeds=texts, seed_metadata=metas, query=query, beta=beta,
        responses_per_step=responses_per_step, n_steps=n_steps, retrieval=retrieval,
        topology=topology, prompt_template=prompt_template,
        system_prompts=dict(system_prompts or {}), temperatures=dict(temperatures or {}),
    )


def check_hooks(hooks: Sequence[Any]) -> tuple[WebHook, ...]:
    """Check that each mitigation has the :class:`~llmweb_plugin.web.WebHook` methods."""
    if isinstance(hooks, WebHook):
        hooks = [hooks]
    out = []
    for h in hooks:
        missing = [m for m in ("before_step", "vary", "after_step")
                   if not callable(getattr(h, m, None))]
        if missing:
            raise TypeError(f"mitigation {h!r} lacks {missing}; subclass "
                            "llmweb_plugin.web.WebHook")
        out.append(h)
    return tuple(out)


def _hook_name(h: Any) -> str:
    name = getattr(h, "name", None)
    return type(h).__name__ if not name or name == WebHook.name else str(name)


# ---------------------------------------------------------------------- one step
@dataclass(frozen=True, kw_only=True)
class ContextDraw:
    """What one agent retrieved at one step.

    Attributes:
        records: the retrieved records, in prompt order.
        web_size: ``|A_t|`` as this agent sees it.
        k: the number retrieved, ``floor(beta * web_size)``.
    """

    records: tuple[Record, ...]
    web_size: int
    k: int


def visible_web(store: WebStore, run_id: str, step: int,
                post_agents: Iterable[str] | None = None) -> list[Record]:
    """The web an agent sees at ``step``, in the store's stable order (see the module docstring)."""
    recs = store.web(run_id, before_step=step + 1)
    return _visible(recs, step, post_agents)


def _visible(recs: Sequence[Record], step: int,
             post_agents: Iterable[str] | None = None) -> list[Record]:
    allowed = None if post_agents is None else set(post_agents)
    return [r for r in recs
            if not (r.kind == "post" and (r.step >= step or
                                          (allowed is not None and r.agent not in allowed)))]


class WebCache:
    """The web of the current step, read from the store once and shared by a step's agents.

    Reading the web is a scroll over the collection (in qdrant-client's local mode a Python loop
    over every point), so the agents of one step share one read. The cache holds one step of one
    run; a miss (a new step, a new process after a crash) reads the store again, so it never
    changes what an agent sees. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, str, int] | None = None
        self._recs: list[Record] = []

    def web(self, store: WebStore, run_id: str, step: int) -> list[Record]:
        """Every web record of ``run_id`` with ``step' <= step`` except posts of ``step``."""
        key = (id(store), run_id, int(step))
        with self._lock:
            if self._key != key:
                self._recs = _visible(store.web(run_id, before_step=step + 1), step)
                self._key = key
            return self._recs


def draw_context(store: WebStore, config: WebConfig, *, run_id: str, step: int,
                 rng: np.random.Generator, post_agents: Iterable[str] | None = None,
                 query_vector: np.ndarray | None = None,
                 cache: WebCache | None = None) -> ContextDraw:
    """Retrieve ``k_t`` items of the visible web for one agent (uniformly, or by similarity)."""
    reads = None if post_agents is None else list(post_agents)
    if cache is not None:
        pool = _visible(cache.web(store, run_id, step), step, reads)
    else:
        pool = visible_web(store, run_id, step, reads)
    k = k_for(len(pool), config.beta)
    if config.retrieval == "uniform":
        idx = rng.choice(len(pool), size=k, replace=False) if k else np.zeros(0, dtype=int)
        return ContextDraw(records=tuple(pool[i] for i in idx), web_size=len(pool), k=k)
    # similarity: top-k by the query among the visible web. Posts of this step are not visible,
    # so ask for enough extra hits to drop them (at most one per agent).
    query: Any = config.query if query_vector is None else query_vector
    extra = len(config.agents)
    hits = store.search(query, k + extra, run_id=run_id, kind=list(WEB_KINDS),
                        post_agents=reads, before_step=step + 1) if k else []
    hits = [r for r in hits if not (r.kind == "post" and r.step >= step)][:k]
    return ContextDraw(records=tuple(hits), web_size=len(pool), k=k)


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
            raise RuntimeError(f"mitigation {_hook_name(h)!r} failed in vary() for agent "
                               f"{request.agent!r} at step {step}: {exc}") from exc
        if not isinstance(new, AgentRequest):
            raise TypeError(f"mitigation {_hook_name(h)!r}.vary() returned "
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
            raise RuntimeError(f"mitigation {_hook_name(h)!r} failed in before_step() at step "
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
                raise RuntimeError(f"mitigation {_hook_name(h)!r} failed in after_step() at "
                                   f"step {step}: {exc}") from exc
        monitor.flush(strict=True)
    m = metrics_from_store(store, monitor.run_id, step, cache)
    return replace(m, extras={**monitor.step_extras(step), **m.extras})


# ---------------------------------------------------------------------- the plain loop
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
    from ..monitor import CollapseMonitor

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


def query_vector_for(store: WebStore, config: WebConfig) -> np.ndarray | None:
    """The query's embedding for ``retrieval="similarity"`` (``None`` for uniform retrieval)."""
    if config.retrieval != "similarity":
        return None
    if store.embedder is None:
        raise ValueError("retrieval='similarity' needs a store with an embedder")
    return np.asarray(store.embedder.embed([config.query])[0], dtype=np.float32)


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
