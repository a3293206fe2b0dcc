"""LangChain callback handlers that send every model output to a :class:`CollapseMonitor`.

Add one handler to any chain, agent or graph run and every chat-model or LLM output (streaming
included: ``on_llm_end`` carries the aggregated message) is stored in the shared Qdrant web with
who said it and when:

.. code-block:: python

    chain.invoke(x, config={"callbacks": [CollapseCallbackHandler(mon)],
                            "metadata": {"llmweb_agent": "legal", "llmweb_step": 3}})

Attribution and steps follow :mod:`llmweb_langchain.attribution` (first match wins):

* agent: run metadata ``llmweb_agent``; ``lc_agent_name`` (``create_agent(..., name=...)``); in
  LangGraph the node that called the model, or, when that node is a prebuilt agent's inner node
  (``agent``, ``model``, ``tools``), the agent graph around it (``create_react_agent(...,
  name="alpha")`` added as a subgraph node gives ``"alpha"``); the run's first own tag (LangChain's
  internal tags such as ``seq:step:2`` are ignored; ``agent_tags=`` narrows the candidates);
  ``default_agent``.
* step: run metadata ``llmweb_step``; else ``step_by``: ``"invocation"`` (default: each top-level
  run is the next step, per agent, from 0), ``"langgraph_step"`` or ``"time:<seconds>"``.

Each stored record carries, in its metadata: ``lc_run_id`` (the LangChain run id), ``model`` when
known, the run's own ``tags``, ``attributed_by`` (which rule named the agent), ``usage`` (the
message's ``usage_metadata``) and ``retrieved``: what retrievers returned earlier in the same
top-level run for the same agent (id and a snippet of each document, bounded). Token usage is also
added up per agent with :meth:`CollapseMonitor.record_usage`.

The handlers translate events and nothing more: the caller's thread only enqueues (the monitor's
worker embeds and stores). Every ``on_*`` method swallows its own failures and counts them with
:meth:`CollapseMonitor.count_handler_error`; failures of the embedder or the store are counted by
the monitor and reported by :meth:`CollapseMonitor.flush`. Nothing raises into the host chain.
An answer (or agent name) holding a lone surrogate, which UTF-8 cannot encode, is kept with U+FFFD
in its place and counted in ``monitor.stats.repaired`` (:meth:`CollapseMonitor.repair_text`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.outputs import LLMResult

from llmweb_plugin.monitor import CollapseMonitor
from llmweb_plugin.store import RESERVED_METADATA

from .attribution import (
    AGENT_KEY,
    GENERIC_WARNING,
    INNER_NODES,
    STEP_KEY,
    Attribution,
    ChainRun,
    StepResolver,
    attribute,
    enclosing_graph_name,
    str_keys,
    user_tags,
)
from .outputs import USAGE_MAP as _USAGE_MAP
from .outputs import generation_text as _generation_text
from .outputs import int_tokens as _int_tokens
from .tracing import annotate_current_span

__all__ = ["AGENT_KEY", "STEP_KEY", "AsyncCollapseCallbackHandler", "CollapseCallbackHandler"]

logger = logging.getLogger(__name__)

@dataclass(slots=True)
class _LLMRun:
    agent: str
    step: int | None
    attributed_by: str
    model: str | None
    tags: list[str]
    root: UUID
    extra: dict[str, Any]


@dataclass(slots=True)
class _Retrieval:
    agent: str
    root: UUID


class _Translator:
    """The state shared by the sync and async handlers: run bookkeeping behind one lock."""

    def __init__(
        self,
        monitor: CollapseMonitor,
        *,
        default_agent: str,
        agent_tags: Collection[str] | None,
        metadata_keys: Sequence[str],
        track_retrieval: bool,
        max_retrieved: int,
        snippet_chars: int,
        max_tracked_runs: int,
        step_by: str = "invocation",
        agent_keys: Sequence[str] = (),
        inner_nodes: Collection[str] = INNER_NODES,
    ) -> None:
        if not isinstance(monitor, CollapseMonitor):
            raise TypeError(
                f"monitor must be a llmweb_plugin.CollapseMonitor; got {type(monitor).__name__}"
            )
        if not isinstance(default_agent, str) or not default_agent:
            raise ValueError(f"default_agent must be a non-empty str; got {default_agent!r}")
        if max_retrieved < 0 or snippet_chars < 0:
            raise ValueError("max_retrieved and snippet_chars must be >= 0")
        bad = RESERVED_METADATA.intersection(metadata_keys)
        if bad:
            raise ValueError(f"metadata_keys {sorted(bad)} are reserved by llmweb; leave them out")
        if max_tracked_runs < 1:
            raise ValueError(f"max_tracked_runs must be >= 1; got {max_tracked_runs}")
        self._steps = StepResolver(monitor, step_by, max_tracked_runs=max_tracked_runs)
        self.step_by = step_by
        self.agent_keys = str_keys(agent_keys, "agent_keys")
        self.inner_nodes = frozenset(str_keys(inner_nodes, "inner_nodes"))
        self.monitor = monitor
        self.default_agent = default_agent
        self.agent_tags = None if agent_tags is None else frozenset(agent_tags)
        self.metadata_keys = tuple(metadata_keys)
        self.track_retrieval = bool(track_retrieval)
        # invocation steps need the top-level run of every model call: follow the chains
        self.track_chains = self.track_retrieval or self._steps.rule.mode == "invocation"
        self.max_retrieved = int(max_retrieved)
        self.snippet_chars = int(snippet_chars)
        self.max_tracked_runs = int(max_tracked_runs)
        self._lock = threading.Lock()
        self._llm_runs: OrderedDict[UUID, _LLMRun] = OrderedDict()
        self._chains: OrderedDict[UUID, ChainRun] = OrderedDict()  # chain run -> its place
        self._retrievers: OrderedDict[UUID, _Retrieval] = OrderedDict()
        # top-level run -> agent -> retrieved documents (bounded)
        self._retrieved: OrderedDict[UUID, dict[str, list[dict[str, Any]]]] = OrderedDict()
        self._generic_warned: set[str] = set()
        self.generic_attributions = 0
        self._evicted = 0

    @property
    def evicted(self) -> int:
        return self._evicted + self._steps.evicted

    # ---------------------------------------------------------------- attribution
    def attribute(
        self, metadata: Mapping[str, Any] | None, tags: Sequence[str] | None,
        parent_run_id: UUID | None = None,
    ) -> Attribution:
        md = metadata or {}
        found = attribute(
            md, tags, default_agent=self.default_agent, agent_keys=self.agent_keys,
            agent_tags=self.agent_tags, inner_nodes=self.inner_nodes,
            graph_name=lambda: self._graph_name(parent_run_id, md.get("langgraph_checkpoint_ns")),
        )
        if found.generic:
            with self._lock:
                self.generic_attributions += 1
                first = found.agent not in self._generic_warned
                self._generic_warned.add(found.agent)
            if first:
                logger.warning(GENERIC_WARNING, found.agent, self.monitor.run_id)
        return found

    def _graph_name(self, parent_run_id: UUID | None, ns: Any) -> str | None:
        with self._lock:
            return enclosing_graph_name(self._chains, parent_run_id, ns)

    def _root_of(self, parent_run_id: UUID | None, run_id: UUID) -> UUID:
        if parent_run_id is None:
            return run_id
        parent = self._chains.get(parent_run_id)
        return parent_run_id if parent is None else parent.root

    def _bound(self, table: OrderedDict[Any, Any]) -> None:
        while len(table) > self.max_tracked_runs:
            table.popitem(last=False)
            self._evicted += 1

    # ---------------------------------------------------------------- chains
    def chain_start(
        self, run_id: UUID, parent_run_id: UUID | None, name: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        ns = (metadata or {}).get("langgraph_checkpoint_ns")
        with self._lock:
            self._chains[run_id] = ChainRun(
                root=self._root_of(parent_run_id, run_id), parent=parent_run_id,
                name=name if isinstance(name, str) else None,
                ns=ns if isinstance(ns, str) else None,
            )
            self._bound(self._chains)

    def chain_end(self, run_id: UUID) -> None:
        with self._lock:
            chain = self._chains.pop(run_id, None)
            if chain is None or chain.root == run_id:
                self._retrieved.pop(run_id, None)
        self._steps.end(run_id)

    # ---------------------------------------------------------------- retrievers
    def retriever_start(
        self, run_id: UUID, parent_run_id: UUID | None, tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        agent = self.attribute(metadata, tags, parent_run_id).agent
        with self._lock:
            self._retrievers[run_id] = _Retrieval(agent, self._root_of(parent_run_id, run_id))
            self._bound(self._retrievers)

    def retriever_end(self, run_id: UUID, documents: Sequence[Any]) -> None:
        with self._lock:
            info = self._retrievers.pop(run_id, None)
            # Only keep what a tracked top-level run will clean up at its end (a retriever
            # invoked on its own has no model call to attach its documents to).
            if info is None or self.max_retrieved == 0 or info.root not in self._chains:
                return
            per_root = self._retrieved.get(info.root)
            if per_root is None:
                per_root = self._retrieved[info.root] = {}
                self._bound(self._retrieved)
            docs = per_root.setdefault(info.agent, [])
            for doc in documents:
                if len(docs) >= self.max_retrieved:
                    break
                docs.append(self._doc_summary(doc))

    def retriever_error(self, run_id: UUID) -> None:
        with self._lock:
            self._retrievers.pop(run_id, None)

    def _doc_summary(self, doc: Any) -> dict[str, Any]:
        text = getattr(doc, "page_content", "")
        meta = getattr(doc, "metadata", None) or {}
        out: dict[str, Any] = {
            "id": getattr(doc, "id", None) or meta.get("id") or meta.get("_id"),
            "snippet": (text if isinstance(text, str) else str(text))[: self.snippet_chars],
        }
        # Documents read back from an llmweb collection say who wrote them.
        for key in ("agent", "step", "kind", "run_id"):
            if key in meta:
                out[f"source_{key}"] = meta[key]
        return out

    # ---------------------------------------------------------------- models
    def llm_start(
        self,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        found = self.attribute(metadata, tags, parent_run_id)
        agent, by = found.agent, found.by
        with self._lock:
            root = self._root_of(parent_run_id, run_id)
        step = self._steps.resolve(metadata, root, agent)
        md = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = (md.get("ls_model_name") or params.get("model") or params.get("model_name")
                 or (serialized or {}).get("name") or kwargs.get("name"))
        extra = {k: md[k] for k in self.metadata_keys if k in md}
        with self._lock:
            self._llm_runs[run_id] = _LLMRun(
                agent=agent, step=step, attributed_by=by,
                model=None if model is None else str(model), tags=user_tags(tags),
                root=root, extra=extra,
            )
            self._bound(self._llm_runs)

    def llm_error(self, run_id: UUID) -> None:
        with self._lock:
            self._llm_runs.pop(run_id, None)
        self._steps.end(run_id)  # a model invoked on its own is its own invocation

    def llm_end(
        self, response: LLMResult, run_id: UUID, parent_run_id: UUID | None,
        tags: Sequence[str] | None,
    ) -> None:
        with self._lock:
            run = self._llm_runs.pop(run_id, None)
        self._steps.end(run_id)  # a model invoked on its own is its own invocation
        if run is None:  # no start seen (handler attached mid-run): attribute from tags
            found = self.attribute(None, tags)
            with self._lock:
                root = self._root_of(parent_run_id, run_id)
            run = _LLMRun(agent=found.agent, step=None, attributed_by=found.by, model=None,
                          tags=user_tags(tags), root=root, extra={})
        with self._lock:
            retrieved = list(self._retrieved.get(run.root, {}).get(run.agent, ()))
        gens = [g for row in (response.generations or []) for g in row]
        texts = [_generation_text(g) for g in gens]
        # An agent's tool-call turn has no text to judge: count it as its own skip reason
        # (visible in stats.skip_reasons) instead of an "empty text" warning per call.
        tool_only = [not t.strip() and bool(getattr(getattr(g, "message", None), "tool_calls",
                                                      None)) for g, t in zip(gens, texts)]
        if any(tool_only):
            for skip in tool_only:
                if skip:
                    self.monitor.count_skip("tool_call_only", agent=run.agent)
            gens = [g for g, skip in zip(gens, tool_only) if not skip]
            texts = [t for t, skip in zip(texts, tool_only) if not skip]
        usage: dict[str, int] = {}
        model = run.model
        for g in gens:
            msg = getattr(g, "message", None)
            for k, v in _int_tokens(getattr(msg, "usage_metadata", None)).items():
                usage[k] = usage.get(k, 0) + v
            rmeta = getattr(msg, "response_metadata", None) or {}
            if isinstance(rmeta, Mapping):
                model = rmeta.get("model_name") or rmeta.get("model") or model
        if not usage and isinstance(response.llm_output, Mapping):  # legacy LLMs
            legacy = _int_tokens(response.llm_output.get("token_usage"))
            usage = {_USAGE_MAP[k]: v for k, v in legacy.items() if k in _USAGE_MAP}
        meta: dict[str, Any] = {**run.extra, "lc_run_id": str(run_id),
                                "attributed_by": run.attributed_by}
        if model:
            meta["model"] = str(model)
        if run.tags:
            meta["tags"] = run.tags
        if usage:
            meta["usage"] = usage
        if retrieved:
            meta["retrieved"] = retrieved
        if usage:
            self.monitor.record_usage(run.agent, **usage)
        if not texts:
            return
        # an answer with a lone surrogate is kept (U+FFFD) and counted, not refused and lost
        run.agent = self.monitor.repair_text(run.agent, field="agent")
        texts = [self.monitor.repair_text(t, agent=run.agent) for t in texts]
        if len(texts) == 1:
            ids = [self.monitor.record(texts[0], agent=run.agent, step=run.step, metadata=meta)]
        elif run.step is None:  # one step for all generations of this call
            ids = self.monitor.record_many(texts, agent=run.agent, step=None, metadata=meta)
        else:
            ids = [self.monitor.record(text, agent=run.agent, step=run.step,
                                       metadata={**meta, "generation": i})
                   for i, text in enumerate(texts)]
        # the app's current OTel span (if one records) links to the stored record
        annotate_current_span(self.monitor.run_id, run.agent, run.step, ids)

    @property
    def tracked_runs(self) -> int:
        with self._lock:
            return (len(self._llm_runs) + len(self._chains) + len(self._retrievers)
                    + len(self._retrieved) + len(self._steps))


def _guard(tr: _Translator, where: str, fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - never raise into the host chain
        tr.monitor.count_handler_error(where, exc)


_DOC_ARGS = """
    Args:
        monitor: the :class:`~llmweb_plugin.CollapseMonitor` that receives the outputs.
        default_agent: agent name when no metadata or tag names one.
        agent_tags: if given, only these tags count as agent names (others are ignored for
            attribution); by default the run's first tag that is not LangChain bookkeeping.
        metadata_keys: run-metadata keys copied into each record's metadata (e.g.
            ``("session_id",)``); the reserved llmweb keys cannot be used.
        track_retrieval: follow retriever runs to attach what each agent retrieved. ``False``
            with ``step_by="langgraph_step"`` or ``"time:..."`` skips chain events entirely
            (lowest overhead, but a ``create_react_agent(..., name=...)`` invoked on its own is
            then named after its inner node).
        max_retrieved: most retrieved documents kept per agent and top-level run.
        snippet_chars: characters of each retrieved document kept.
        max_tracked_runs: bound on every bookkeeping table (runs that never end, e.g. an
            abandoned stream, cannot grow memory without limit; evictions are counted in
            ``evicted``).
        step_by: the step when run metadata has no ``llmweb_step``: ``"invocation"`` (each
            top-level run is the next step of every agent that speaks in it, counted per agent
            and per monitor from 0), ``"langgraph_step"`` (LangGraph's superstep, else one step
            per model call) or ``"time:<seconds>"`` (``int(elapsed // seconds)`` since the first
            handler of the monitor was made).
        agent_keys: further run-metadata keys that name the agent, checked right after
            ``llmweb_agent`` (e.g. ``["persona"]`` for a node that passes
            ``config={"metadata": {"persona": ...}}`` to its model).
        inner_nodes: node names of prebuilt agent graphs; a model called from one is
            attributed to the agent graph around it (default ``agent``, ``model``, ``tools``).

    Raises:
        ValueError: a bad ``step_by``, ``default_agent`` or bound.
        TypeError: ``monitor`` is not a ``CollapseMonitor``; ``agent_keys`` or ``inner_nodes``
            is not a list of non-empty strings.
"""


class _HandlerMixin:
    """What the sync and async handlers share: construction and the read-only views."""

    _tr: _Translator
    raise_error = False
    run_inline = True

    def __init__(
        self,
        monitor: CollapseMonitor,
        *,
        default_agent: str = "assistant",
        agent_tags: Collection[str] | None = None,
        metadata_keys: Sequence[str] = (),
        track_retrieval: bool = True,
        max_retrieved: int = 8,
        snippet_chars: int = 200,
        max_tracked_runs: int = 10_000,
        step_by: str = "invocation",
        agent_keys: Sequence[str] = (),
        inner_nodes: Collection[str] = INNER_NODES,
    ) -> None:
        super().__init__()
        self._tr = _Translator(
            monitor, default_agent=default_agent, agent_tags=agent_tags,
            metadata_keys=metadata_keys, track_retrieval=track_retrieval,
            max_retrieved=max_retrieved, snippet_chars=snippet_chars,
            max_tracked_runs=max_tracked_runs, step_by=step_by, agent_keys=agent_keys,
            inner_nodes=inner_nodes,
        )

    @property
    def monitor(self) -> CollapseMonitor:
        """The monitor records go to."""
        return self._tr.monitor

    @property
    def default_agent(self) -> str:
        """The agent name used when nothing else names one."""
        return self._tr.default_agent

    @property
    def tracked_runs(self) -> int:
        """Runs currently held in the bookkeeping tables (0 once every run has ended)."""
        return self._tr.tracked_runs

    @property
    def evicted(self) -> int:
        """Table entries dropped because ``max_tracked_runs`` was reached."""
        return self._tr.evicted

    @property
    def step_by(self) -> str:
        """The step rule for runs without ``llmweb_step``."""
        return self._tr.step_by

    @property
    def generic_attributions(self) -> int:
        """Outputs attributed to a prebuilt agent's inner node name (e.g. ``"agent"``)."""
        return self._tr.generic_attributions

    @property
    def ignore_chain(self) -> bool:
        return not self._tr.track_chains

    @property
    def ignore_retriever(self) -> bool:
        return not self._tr.track_retrieval

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(run_id={self._tr.monitor.run_id!r}, "
                f"default_agent={self._tr.default_agent!r}, step_by={self._tr.step_by!r})")


class CollapseCallbackHandler(_HandlerMixin, BaseCallbackHandler):
    __doc__ = (
        """Sends every chat-model and LLM output of a LangChain run to a ``CollapseMonitor``.

    Thread-safe; runs inline under async invocation too (the work is an enqueue); never raises
    into the chain (``raise_error = False``; its own failures are counted with
    ``monitor.count_handler_error``).

    Example:
        >>> import llmweb_plugin as lw
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> from llmweb_langchain import CollapseCallbackHandler
        >>> store = lw.WebStore(":memory:")
        >>> mon = lw.CollapseMonitor(store, run_id="doc")
        >>> model = GenericFakeChatModel(messages=iter(["Contracts need signatures."]))
        >>> _ = model.invoke("hi", config={"callbacks": [CollapseCallbackHandler(mon)],
        ...                               "metadata": {"llmweb_agent": "legal", "llmweb_step": 3}})
        >>> [(r.agent, r.step, r.text) for r in mon.records()]
        [('legal', 3, 'Contracts need signatures.')]
        >>> _ = mon.close()
    """
        + _DOC_ARGS
    )

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_chat_model_start", self._tr.llm_start, serialized, run_id,
               parent_run_id, tags, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_llm_start", self._tr.llm_start, serialized, run_id, parent_run_id,
               tags, metadata, kwargs)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_llm_end", self._tr.llm_end, response, run_id, parent_run_id, tags)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_llm_error", self._tr.llm_error, run_id)

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_chain_start", self._tr.chain_start, run_id, parent_run_id,
               kwargs.get("name") or (serialized or {}).get("name"), kwargs.get("metadata"))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_chain_end", self._tr.chain_end, run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_chain_error", self._tr.chain_end, run_id)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_retriever_start", self._tr.retriever_start, run_id, parent_run_id,
               tags, metadata)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_retriever_end", self._tr.retriever_end, run_id, documents)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_retriever_error", self._tr.retriever_error, run_id)


class AsyncCollapseCallbackHandler(_HandlerMixin, AsyncCallbackHandler):
    __doc__ = (
        """The ``AsyncCallbackHandler`` twin of :class:`CollapseCallbackHandler`.

    Same attribution, metadata and guarantees; its methods are coroutines that do not block
    (the monitor's worker embeds and stores). Under sync invocation LangChain runs them too.
    """
        + _DOC_ARGS
    )

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_chat_model_start", self._tr.llm_start, serialized, run_id,
               parent_run_id, tags, metadata, kwargs)

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_llm_start", self._tr.llm_start, serialized, run_id, parent_run_id,
               tags, metadata, kwargs)

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_llm_end", self._tr.llm_end, response, run_id, parent_run_id, tags)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_llm_error", self._tr.llm_error, run_id)

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_chain_start", self._tr.chain_start, run_id, parent_run_id,
               kwargs.get("name") or (serialized or {}).get("name"), kwargs.get("metadata"))

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_chain_end", self._tr.chain_end, run_id)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _guard(self._tr, "on_chain_error", self._tr.chain_end, run_id)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _guard(self._tr, "on_retriever_start", self._tr.retriever_start, run_id, parent_run_id,
               tags, metadata)

    async def on_retriever_end(
        self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any
    ) -> None:
        _guard(self._tr, "on_retriever_end", self._tr.retriever_end, run_id, documents)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        _guard(self._tr, "on_retriever_error", self._tr.retriever_error, run_id)
