"""Who said it and when: the attribution and step rules of the LangChain handlers.

Agent (first match wins):

1. run metadata ``llmweb_agent`` (then any ``agent_keys=`` the handler was given), then
   ``lc_agent_name`` (``langchain.agents.create_agent(..., name=...)``);
2. inside LangGraph, the node that called the model, read from ``langgraph_checkpoint_ns``
   (``"research:<id>|alpha:<id>|agent:<id>"``: outer graph node, subgraph node, inner node).
   When that node is a prebuilt agent's inner node (``agent``, ``model``, ``tools``: see
   ``INNER_NODES``), the agent is the agent graph around it: its ``name=`` (the compiled graph's
   name, e.g. ``create_react_agent(..., name="alpha")``), else its node name in the parent graph,
   else the next named node outwards. So a team of teams gives the individual agent (``alpha``),
   never the team (``research``), and a plain node that calls a model is the agent itself;
3. the run's first own tag (``agent_tags=`` narrows the candidates); ``default_agent``.

Step (``step_by=`` on the handler; run metadata ``llmweb_step`` always wins):

* ``"invocation"`` (default): every top-level run the handler sees (one ``app.invoke``, one
  ``chain.invoke``, one ``model.invoke`` on its own) is the next step of each agent that calls a
  model in it, counted per agent and per monitor from 0 (like the monitor's own counter). All
  calls of one agent in one invocation share the step.
* ``"langgraph_step"``: LangGraph's superstep number of the node (inside a subgraph: the
  subgraph's own counter), else the monitor's per-agent counter (one step per model call).
* ``"time:<seconds>"``: wall-clock buckets, ``int(elapsed // seconds)``, counted from the first
  handler created for the monitor (for long-running services).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from llmweb_plugin.monitor import CollapseMonitor

__all__ = [
    "AGENT_KEY",
    "DEFAULT_GRAPH_NAME",
    "GENERIC_WARNING",
    "INNER_NODES",
    "STEP_KEY",
    "Attribution",
    "ChainRun",
    "StepResolver",
    "StepRule",
    "attribute",
    "enclosing_graph_name",
    "namespace_nodes",
    "parse_step_by",
    "shared_steps",
]

AGENT_KEY = "llmweb_agent"
STEP_KEY = "llmweb_step"
#: Inner node names of prebuilt agent graphs: ``create_react_agent`` (``agent``, ``tools``, also
#: the supervisor of ``langgraph-supervisor`` and the agents of ``langgraph-swarm``) and
#: ``create_agent`` (``model``, ``tools``). A model called from such a node belongs to the graph
#: around it.
INNER_NODES = frozenset({"agent", "model", "tools"})
GENERIC_WARNING = (
    "llmweb: model output attributed to %r, the inner node name of a prebuilt agent graph "
    "(run %s): every such agent is recorded as the same agent and the collapse norm is "
    "undefined. Give the agent a name (create_agent(..., name=...) or create_react_agent(..., "
    "name=...)), add it to your graph as a named subgraph node, or pass "
    "config={'metadata': {'llmweb_agent': ...}}"
)
#: The name LangGraph gives a compiled graph that was not given one.
DEFAULT_GRAPH_NAME = "LangGraph"
_INTERNAL_TAGS = frozenset({"nostream"})


def is_internal_tag(tag: str) -> bool:
    """LangChain/LangGraph/LangSmith bookkeeping tags (``seq:step:N``, ``nostream``, ...)."""
    return ":" in tag or tag in _INTERNAL_TAGS


def user_tags(tags: Sequence[str] | None) -> list[str]:
    """The run's own tags, bookkeeping left out."""
    return [t for t in (tags or ()) if isinstance(t, str) and not is_internal_tag(t)]


def as_step(value: Any) -> int | None:
    """``value`` as a step (a non-negative int, or its decimal string), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def namespace_nodes(ns: Any) -> list[str]:
    """Node names of a LangGraph checkpoint namespace, outermost first.

    Example:
        >>> namespace_nodes("research:1f2e|alpha:9ab0|agent:77c1")
        ['research', 'alpha', 'agent']
    """
    if not isinstance(ns, str) or not ns:
        return []
    return [seg.split(":", 1)[0] for seg in ns.split("|") if seg.split(":", 1)[0]]


def str_keys(value: Any, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of non-empty strings, else a ``TypeError`` naming ``what``."""
    if isinstance(value, str) or not isinstance(value, Collection) or not all(
            isinstance(k, str) and k for k in value):
        raise TypeError(f"{what} must be a list of non-empty str (e.g. [{value!r}] for one); "
                        f"got {value!r}")
    return tuple(value)


@dataclass(slots=True)
class ChainRun:
    """Where a chain run sits: its top-level run, parent, name and LangGraph namespace."""

    root: UUID
    parent: UUID | None
    name: str | None
    ns: str | None


def enclosing_graph_name(
    chains: Mapping[UUID, ChainRun], parent_run_id: UUID | None, ns: Any
) -> str | None:
    """The name of the compiled graph whose node (namespace ``ns``) called the model.

    The runs inside a LangGraph node share its namespace; the first ancestor with another one
    (or none) is the graph run itself, named after the compiled graph. ``None`` when the chain
    runs were not followed.
    """
    chain = chains.get(parent_run_id) if parent_run_id is not None else None
    for _ in range(1000):  # a bound, in case of a cycle
        if chain is None or chain.ns != ns:
            break
        chain = chains.get(chain.parent) if chain.parent is not None else None
    return None if chain is None else chain.name


@dataclass(frozen=True, kw_only=True, slots=True)
class Attribution:
    """The agent a model call is attributed to.

    Attributes:
        agent: the agent name.
        by: the rule that named it (``llmweb_agent``, an ``agent_keys`` key, ``lc_agent_name``,
            ``langgraph_node``, ``graph_name``, ``langgraph_checkpoint_ns``, ``tag``, ``default``).
        generic: the name is a prebuilt agent's inner node name (e.g. ``"agent"``) because
            nothing better was known: every such agent looks like one.
    """

    agent: str
    by: str
    generic: bool = False


def attribute(
    metadata: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    *,
    default_agent: str,
    agent_keys: Sequence[str] = (),
    agent_tags: Collection[str] | None = None,
    inner_nodes: Collection[str] = INNER_NODES,
    graph_name: Callable[[], str | None] | None = None,
) -> Attribution:
    """Name the agent of one run from its metadata and tags (see the module docstring).

    Args:
        metadata: the run's metadata (LangChain passes the inherited metadata of the run).
        tags: the run's tags.
        default_agent: the name when nothing else names one.
        agent_keys: further metadata keys that name the agent, checked after ``llmweb_agent``.
        agent_tags: if given, only these tags name agents.
        inner_nodes: node names that belong to the agent graph around them.
        graph_name: returns the name of the compiled graph whose node called the model, when
            known (it needs the chain events), else ``None``; called only when needed.

    Example:
        >>> attribute({"langgraph_checkpoint_ns": "research:1|alpha:2|agent:3"}, None,
        ...           default_agent="assistant")
        Attribution(agent='alpha', by='langgraph_checkpoint_ns', generic=False)
    """
    md = metadata or {}
    for key in (AGENT_KEY, *agent_keys, "lc_agent_name"):
        value = md.get(key)
        if value is not None and value != "":
            return Attribution(agent=str(value), by=key)
    nodes = namespace_nodes(md.get("langgraph_checkpoint_ns"))
    node = md.get("langgraph_node")
    if not nodes and isinstance(node, str) and node:
        nodes = [node]
    if nodes:
        inner = nodes[-1]
        if inner not in inner_nodes:
            return Attribution(agent=inner, by="langgraph_node")
        name = graph_name() if graph_name is not None else None
        if name and name != DEFAULT_GRAPH_NAME and name not in inner_nodes:
            return Attribution(agent=name, by="graph_name")
        for outer in reversed(nodes[:-1]):
            if outer not in inner_nodes:
                return Attribution(agent=outer, by="langgraph_checkpoint_ns")
        return Attribution(agent=inner, by="langgraph_node", generic=True)
    for tag in tags or ():
        if not isinstance(tag, str):
            continue
        if agent_tags is not None:
            if tag in agent_tags:
                return Attribution(agent=tag, by="tag")
        elif not is_internal_tag(tag):
            return Attribution(agent=tag, by="tag")
    return Attribution(agent=default_agent, by="default")


# ---------------------------------------------------------------------- steps
STEP_BY_HELP = ('step_by must be "invocation" (one step per top-level run, the default), '
                '"langgraph_step" or "time:<seconds>" with seconds > 0, e.g. "time:60"')


@dataclass(frozen=True, kw_only=True, slots=True)
class StepRule:
    """A parsed ``step_by``: ``mode`` is ``invocation``, ``langgraph_step`` or ``time``."""

    mode: str
    seconds: float | None = None


def parse_step_by(value: Any) -> StepRule:
    """Check and parse a handler's ``step_by``.

    Raises:
        TypeError: ``value`` is not a ``str``.
        ValueError: any other value than the three forms.

    Example:
        >>> parse_step_by("time:30")
        StepRule(mode='time', seconds=30.0)
    """
    if not isinstance(value, str):
        raise TypeError(f"{STEP_BY_HELP}; got {type(value).__name__} {value!r}")
    if value in ("invocation", "langgraph_step"):
        return StepRule(mode=value)
    if value.startswith("time:"):
        try:
            seconds = float(value[5:])
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            return StepRule(mode="time", seconds=seconds)
    raise ValueError(f"{STEP_BY_HELP}; got {value!r}")


_clock = time.monotonic  # the wall clock of step_by="time:..." (tests replace it)


@dataclass(slots=True)
class _MonitorSteps:
    """Step state shared by every handler of one monitor (handlers are often made per call)."""

    started: float = field(default_factory=lambda: _clock())
    next_step: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, agent: str) -> int:
        """The next invocation step of ``agent`` (0, 1, 2, ...)."""
        with self.lock:
            step = self.next_step[agent]
            self.next_step[agent] = step + 1
            return step

    def bucket(self, seconds: float) -> int:
        """The wall-clock bucket of now."""
        return int((_clock() - self.started) // seconds)


_shared: weakref.WeakKeyDictionary[CollapseMonitor, _MonitorSteps] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def shared_steps(monitor: CollapseMonitor) -> _MonitorSteps:
    """The step state of ``monitor`` (created with the first handler; freed with the monitor)."""
    with _shared_lock:
        state = _shared.get(monitor)
        if state is None:
            state = _shared[monitor] = _MonitorSteps()
        return state


class StepResolver:
    """The step of a model call: ``llmweb_step``, else the handler's ``step_by`` rule.

    Thread-safe. Remembers, per top-level run still going, the step each agent got in it
    (bounded by ``max_tracked_runs``; evictions are counted in ``evicted``).
    """

    def __init__(self, monitor: CollapseMonitor, step_by: Any, *, max_tracked_runs: int) -> None:
        self.rule = parse_step_by(step_by)
        self.step_by = step_by
        self.monitor = monitor
        self.max_tracked_runs = int(max_tracked_runs)
        self.evicted = 0
        self._shared = shared_steps(monitor)
        self._lock = threading.Lock()
        # top-level run -> agent -> its step in that invocation
        self._invocations: OrderedDict[UUID, dict[str, int]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._invocations)

    def resolve(self, metadata: Mapping[str, Any] | None, root: UUID, agent: str) -> int | None:
        """The step of ``agent``'s model call in top-level run ``root`` (``None``: the monitor's
        per-agent counter). A bad ``llmweb_step`` is counted with
        ``monitor.count_handler_error`` and the rule used instead."""
        md = metadata or {}
        rule = self.rule
        keys = (STEP_KEY, "langgraph_step") if rule.mode == "langgraph_step" else (STEP_KEY,)
        for key in keys:
            value = md.get(key)
            if value is None:
                continue
            step = as_step(value)
            if step is not None:
                return step
            self.monitor.count_handler_error(
                f"metadata {key!r}",
                ValueError(f"{key}={value!r} is not a non-negative integer; "
                           f"step_by={self.step_by!r} was used instead"),
            )
            if rule.mode == "langgraph_step":
                return None
            break
        if rule.mode == "time":
            assert rule.seconds is not None
            return self._shared.bucket(rule.seconds)
        if rule.mode == "langgraph_step":
            return None
        with self._lock:
            per_root = self._invocations.get(root)
            if per_root is None:
                per_root = self._invocations[root] = {}
                while len(self._invocations) > self.max_tracked_runs:
                    self._invocations.popitem(last=False)
                    self.evicted += 1
            step = per_root.get(agent)
            if step is None:
                step = per_root[agent] = self._shared.take(agent)
            return step

    def end(self, run_id: UUID) -> None:
        """Forget top-level run ``run_id`` (no-op for any other run)."""
        with self._lock:
            self._invocations.pop(run_id, None)
