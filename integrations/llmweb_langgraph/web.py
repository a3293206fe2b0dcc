"""``create_web_graph``: the paper's LLM web as an uncompiled LangGraph ``StateGraph``.

One LWD iteration is one ``dispatch -> agent x n -> metrics`` round: ``dispatch`` runs the
mitigations' ``before_step`` and fans out one ``Send("agent", ...)`` per agent; the ``agent`` tasks
run in one superstep, in parallel (``max_concurrency`` in the run config caps them); ``metrics``
reads the step's responses back from Qdrant, computes ``||D(t)||_F`` and the other step metrics,
runs ``after_step`` hooks and loops or ends. The logic is :mod:`llmweb_plugin.web`'s; this
module only wires it into a graph.

Crash safety: every record has a deterministic point id and every random draw its own
generator derived from ``(seed, step, agent)``; the run's id, seed, agents and topology are in the
graph state. A run killed mid-step and resumed from its checkpoint in a new process
(``graph.invoke(None, config)`` with the same ``thread_id``) re-runs the unfinished agent tasks,
which overwrite what they had written: the store ends with exactly ``|A(0)| + n T`` posts and
``n L T`` responses, and the metrics, read from the store, are those of the full step.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypedDict

import numpy as np

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "llmweb_langgraph needs LangGraph: pip install 'llmweb-plugin[langgraph]'"
    ) from exc

from llmweb_langgraph._monitors import RunMonitors
from llmweb_plugin.metrics import StepMetrics
from llmweb_plugin.monitor import CollapseMonitor, new_run_id
from llmweb_plugin.store import WebStore
from llmweb_plugin.web import (
    DEFAULT_PROMPT_TEMPLATE,
    PAPER_QUERY,
    WebCache,
    WebConfig,
    WebHook,
    as_responder,
    begin_step,
    check_hooks,
    end_step,
    make_config,
    notify_step,
    query_vector_for,
    resolve_seed,
    run_agent,
    start_run,
)

__all__ = ["AgentTask", "WebGraph", "WebState", "create_web_graph"]

GRAPH_NAME = "llmweb_web"


class WebState(TypedDict, total=False):
    """The state of a web graph.

    Attributes:
        run_id: the run id (the records' ``run_id``).
        seed: the run's integer seed.
        agents: agent names, in order.
        neighbours: whose posts each agent reads besides its own.
        step: the current (last started) step; 0 after setup.
        posts: every post ``{step, agent, text, id}`` so far.
        history: one ``StepMetrics.as_dict()`` per finished step.
    """

    run_id: str
    seed: int
    agents: list[str]
    neighbours: dict[str, list[str]]
    step: int
    posts: Annotated[list[dict[str, Any]], operator.add]
    history: Annotated[list[dict[str, Any]], operator.add]


class AgentTask(TypedDict):
    """What ``dispatch`` sends to one ``agent`` task."""

    run_id: str
    seed: int
    step: int
    agent: str
    post_agents: list[str] | None


class WebGraph(StateGraph):  # type: ignore[type-arg]
    """The uncompiled web graph; ``compile()`` names it ``"llmweb_web"`` unless told otherwise.

    Attributes:
        web_config: the validated :class:`~llmweb_plugin.web.WebConfig`.
        run_id: the fixed run id, or ``None`` when each invocation starts a fresh run.
        monitors: the runs' monitors; the ones the graph made are closed after their run's last
            step or a failed node (``monitors.open_runs()`` lists those still open, e.g. of a
            run paused by an interrupt; ``monitors.close()`` closes them).
    """

    web_config: WebConfig
    run_id: str | None
    monitors: RunMonitors

    def compile(self, checkpointer: Any = None, **kwargs: Any) -> Any:  # noqa: D102
        if kwargs.get("name") is None:
            kwargs["name"] = GRAPH_NAME
        return super().compile(checkpointer, **kwargs)


def create_web_graph(
    agents: Mapping[str, Any],
    *,
    store: WebStore,
    query: str = PAPER_QUERY,
    seeds: Sequence[Any] | None = None,
    beta: float = 0.5,
    responses_per_step: int = 40,
    n_steps: int = 60,
    retrieval: str = "uniform",
    topology: Any = "full",
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    system_prompts: Mapping[str, str | None] | None = None,
    temperatures: Mapping[str, float | None] | None = None,
    mitigations: Sequence[WebHook] = (),
    monitor: CollapseMonitor | None = None,
    run_id: str | None = None,
    rng: np.random.Generator | int | None = None,
    on_step: Callable[[StepMetrics], Any] | None = None,
) -> WebGraph:
    """Build the LLM web of the paper (Algorithm 1) as an uncompiled ``StateGraph``.

    Args:
        agents: ``{name: agent}``; an agent is a LangChain chat model, an LCEL runnable, a
            compiled LangGraph graph (e.g. ``create_agent``), a callable ``str -> str`` or a
            :class:`~llmweb_plugin.web.Responder` (see :mod:`llmweb_plugin.web.agents`).
        store: the shared :class:`~llmweb_plugin.store.WebStore`.
        query: the question asked at every step (default: the paper's).
        seeds: the seed documents ``A(0)`` (strings, or objects with ``.text`` and ``.label``);
            default the 20 shipped crypto posts (:data:`llmweb_plugin.web.CRYPTO_SEEDS`).
        beta: retrieval fraction in ``(0, 1]``: ``k_t = floor(beta |A_t|)``.
        responses_per_step: ``L``, answers per agent per step; the first non-empty one is posted.
        n_steps: ``T``, the number of steps.
        retrieval: ``"uniform"`` (the paper) or ``"similarity"`` (top-k by the query).
        topology: ``"full"`` (the paper), ``"ring"``, ``"small_world"``, a mapping
            ``{agent: agents it reads}`` or an ``(n, n)`` adjacency matrix.
        prompt_template: ``str.format`` template with ``{context}`` and ``{query}``.
        system_prompts: optional per-agent system prompts.
        temperatures: optional per-agent temperatures (applied to chat models that have one).
        mitigations: :class:`~llmweb_plugin.web.WebHook` objects, called in order.
        monitor: the :class:`~llmweb_plugin.monitor.CollapseMonitor` to record through; by
            default one is made per run on ``store``, flushed and closed after the run's last
            step or when a node fails (a resume makes a new one). A monitor passed here is
            yours: the graph never closes it.
        run_id: the run id; default the monitor's, else a fresh one per invocation.
        rng: an int seed (reproducible), a ``numpy`` Generator or ``None`` (fresh).
        on_step: called with each step's :class:`~llmweb_plugin.metrics.StepMetrics` (e.g. a
            progress bar); its exceptions are counted by the monitor, not raised.

    Returns:
        An uncompiled :class:`WebGraph`; compile it with your checkpointer. Invoke it with
        ``{}``; the final state holds ``run_id``, ``seed``, ``posts`` and ``history``. The run
        takes ``3 T + 2`` supersteps: raise ``recursion_limit`` in the run config beyond
        ``T`` of about 3000.

    Raises:
        ValueError: bad parameters (beta outside ``(0, 1]``, ``n_steps < 1``, an unknown
            topology or retrieval, no agents, no seeds or ``floor(beta |A(0)|) = 0``, a monitor
            on another store or with another run id).
        TypeError: an agent of no supported kind, or an ``rng`` of the wrong type.

    Example:
        >>> import llmweb_plugin as lw
        >>> from langgraph.checkpoint.memory import InMemorySaver
        >>> from llmweb_plugin.web import EchoAgent
        >>> store = lw.WebStore(":memory:")
        >>> graph = create_web_graph({"a": EchoAgent("a"), "b": EchoAgent("b")}, store=store,
        ...                          responses_per_step=2, n_steps=2, rng=0).compile(
        ...                          checkpointer=InMemorySaver())
        >>> out = graph.invoke({}, {"configurable": {"thread_id": "demo"}})
        >>> len(out["posts"]), len(out["history"]), store.count(out["run_id"], kind="seed")
        (4, 2, 20)
    """
    if not isinstance(agents, Mapping):
        raise TypeError("agents must be a mapping {name: model, runnable, graph or callable}")
    if not isinstance(store, WebStore):
        raise TypeError(f"store must be an llmweb_plugin.WebStore; got {type(store).__name__}")
    web = make_config(list(agents), seeds=seeds, query=query, beta=beta,
                      responses_per_step=responses_per_step, n_steps=n_steps,
                      retrieval=retrieval, topology=topology, prompt_template=prompt_template,
                      system_prompts=system_prompts, temperatures=temperatures)
    hooks = check_hooks(mitigations)
    responders = {a: as_responder(obj, name=a) for a, obj in agents.items()}
    if rng is not None and not isinstance(rng, np.random.Generator):
        resolve_seed(rng)  # validates an int seed now (a Generator is drawn from at setup)
    if monitor is not None:
        if not isinstance(monitor, CollapseMonitor):
            raise TypeError(f"monitor must be a CollapseMonitor; got {type(monitor).__name__}")
        if monitor.store is not store:
            raise ValueError("the monitor writes to another store than store=")
        if run_id is not None and run_id != monitor.run_id:
            raise ValueError(f"run_id={run_id!r} disagrees with the monitor's run_id "
                             f"{monitor.run_id!r}; pass one of them")
        run_id = monitor.run_id
    qvec = query_vector_for(store, web)
    monitors = RunMonitors(store, monitor)  # own ones closed after each run (_monitors.py)
    cache = WebCache()  # the step's web, read once and shared by the step's agent tasks

    def check_state(state: Mapping[str, Any]) -> None:
        if list(state.get("agents") or []) != list(web.agents):
            raise ValueError(f"this checkpoint's run has agents {state.get('agents')}; the graph "
                             f"was built with {list(web.agents)}. Resume with the same agents "
                             "in the same order.")

    def setup(state: WebState) -> dict[str, Any]:
        if state.get("run_id"):
            raise ValueError(
                f"this thread already holds run {state['run_id']!r} (step {state.get('step')} "
                f"of {web.n_steps}); start a new run with a new thread_id, or resume an "
                "interrupted one with graph.invoke(None, config)"
            )
        rid = run_id or new_run_id("web")
        seed = resolve_seed(rng)
        with monitors.use(rid) as mon:
            start_run(web, mon)
        nbrs = web.resolve_topology(seed)
        return {"run_id": rid, "seed": seed, "agents": list(web.agents),
                "neighbours": {a: sorted(n) for a, n in nbrs.items()}, "step": 0}

    def dispatch(state: WebState) -> dict[str, Any]:
        with monitors.use(state["run_id"]) as mon:
            check_state(state)
            t = int(state.get("step", 0)) + 1
            begin_step(hooks, mon, seed=state["seed"], step=t)
        return {"step": t}

    def fan_out(state: WebState) -> list[Send]:
        nbrs = state.get("neighbours") or {}
        return [
            Send("agent", AgentTask(run_id=state["run_id"], seed=state["seed"],
                                    step=state["step"], agent=a,
                                    post_agents=web.post_agents(nbrs, a)))
            for a in web.agents
        ]

    def agent(task: AgentTask, config: RunnableConfig) -> dict[str, Any]:
        with monitors.use(task["run_id"]) as mon:
            if task["agent"] not in responders:
                raise ValueError(f"this checkpoint's run has an agent {task['agent']!r}; the "
                                 f"graph was built with {list(web.agents)}. Resume with the same "
                                 "agents in the same order.")
            post = run_agent(web, responders[task["agent"]], mon, hooks, seed=task["seed"],
                             step=task["step"], agent=task["agent"],
                             post_agents=task["post_agents"], parent_config=config,
                             query_vector=qvec, cache=cache)
        return {"posts": [post] if post is not None else []}

    def metrics(state: WebState) -> dict[str, Any]:
        with monitors.use(state["run_id"]) as mon:
            m = end_step(store, mon, hooks, seed=state["seed"], step=state["step"], cache=cache)
            notify_step(on_step, m, mon)
            if int(state["step"]) >= web.n_steps:  # the run's last step: close its own monitor
                monitors.finish(state["run_id"])
        return {"history": [m.as_dict()]}

    def next_step(state: WebState) -> str:
        return "dispatch" if int(state["step"]) < web.n_steps else END

    graph = WebGraph(WebState)
    graph.add_node("setup", setup)
    graph.add_node("dispatch", dispatch)
    graph.add_node("agent", agent, input_schema=AgentTask)
    graph.add_node("metrics", metrics)
    graph.add_edge(START, "setup")
    graph.add_edge("setup", "dispatch")
    graph.add_conditional_edges("dispatch", fan_out, ["agent"])
    graph.add_edge("agent", "metrics")
    graph.add_conditional_edges("metrics", next_step, ["dispatch", END])
    graph.web_config = web
    graph.run_id = run_id
    graph.monitors = monitors
    return graph
