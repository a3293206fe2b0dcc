"""LangChain callback handlers that send every model output to a :class:`CollapseMonitor`.

Add one handler to any chain, agent or graph run and every chat-model or LLM output (streaming
included: ``on_llm_end`` carries the aggregated message) is stored in the shared Qdrant web with
who said it and when:

.. code-block:: python

    chain.invoke(x, config={"callbacks": [CollapseCallbackHandler(mon)],
                            "metadata": {"llmweb_agent": "legal", "llmweb_step": 3}})

Attribution (first match wins):

* agent: run metadata ``llmweb_agent``; ``lc_agent_name`` (``create_agent(..., name=...)``);
  ``langgraph_node``; the run's first own tag (LangChain's internal tags such as ``seq:step:2``
  or ``graph:step:1`` are ignored; ``agent_tags=`` narrows the candidates); ``default_agent``.
* step: run metadata ``llmweb_step``; ``langgraph_step``; else the monitor's per-agent counter
  (``0, 1, 2, ...``; all generations of one call share the step).

Each stored record carries, in its metadata: ``lc_run_id`` (the LangChain run id), ``model`` when
known, the run's own ``tags``, ``attributed_by`` (which rule named the agent), ``usage`` (the
message's ``usage_metadata``) and ``retrieved``: what retrievers returned earlier in the same
top-level run for the same agent (id and a snippet of each document, bounded). Token usage is also
added up per agent with :meth:`CollapseMonitor.record_usage`.

The handlers translate events and nothing more: the caller's thread only enqueues (the monitor's
worker embeds and stores). Every ``on_*`` method swallows its own failures and counts them with
:meth:`CollapseMonitor.count_handler_error`; failures of the embedder or the store are counted by
the monitor and reported by :meth:`CollapseMonitor.flush`. Nothing raises into the host chain.
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

from llmweb_plugin.agents import message_text
from llmweb_plugin.monitor import CollapseMonitor
from llmweb_plugin.store import RESERVED_METADATA

__all__ = ["AsyncCollapseCallbackHandler", "CollapseCallbackHandler"]

logger = logging.getLogger(__name__)

AGENT_KEY = "llmweb_agent"
STEP_KEY = "llmweb_step"
_INTERNAL_TAGS = frozenset({"nostream"})
_USAGE_MAP = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens",
              "total_tokens": "total_tokens"}


def _is_internal_tag(tag: str) -> bool:
    # LangChain/LangGraph/LangSmith bookkeeping: seq:step:N, graph:step:N, map:key:x,
    # langsmith:hidden, langsmith:nostream, nostream.
    return ":" in tag or tag in _INTERNAL_TAGS


def _user_tags(tags: Sequence[str] | None) -> list[str]:
    return [t for t in (tags or ()) if isinstance(t, str) and not _is_internal_tag(t)]


def _as_step(value: Any) -> int | None:
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


def _generation_text(gen: Any) -> str:
    msg = getattr(gen, "message", None)
    if msg is not None:
        try:
            return message_text(msg)
        except TypeError:  # content that is neither a string nor a list of blocks
            return ""
    text = getattr(gen, "text", "")
    return text if isinstance(text, str) else str(text)


def _int_tokens(usage: Any) -> dict[str, int]:
    if not isinstance(usage, Mapping):
        return {}
    return {str(k): int(v) for k, v in usage.items()
            if isinstance(v, int) and not isinstance(v, bool)}


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
        self.monitor = monitor
        self.default_agent = default_agent
        self.agent_tags = None if agent_tags is None else frozenset(agent_tags)
        self.metadata_keys = tuple(metadata_keys)
        self.track_retrieval = bool(track_retrieval)
        self.max_retrieved = int(max_retrieved)
        self.snippet_chars = int(snippet_chars)
        self.max_tracked_runs = int(max_tracked_runs)
        self._lock = threading.Lock()
        self._llm_runs: OrderedDict[UUID, _LLMRun] = OrderedDict()
        self._roots: OrderedDict[UUID, UUID] = OrderedDict()  # chain run -> top-level run
        self._retrievers: OrderedDict[UUID, _Retrieval] = OrderedDict()
        # top-level run -> agent -> retrieved documents (bounded)
        self._retrieved: OrderedDict[UUID, dict[str, list[dict[str, Any]]]] = OrderedDict()
        self.evicted = 0

    # ---------------------------------------------------------------- attribution
    def attribute(
        self, metadata: Mapping[str, Any] | None, tags: Sequence[str] | None
    ) -> tuple[str, str]:
        md = metadata or {}
        for key in (AGENT_KEY, "lc_agent_name", "langgraph_node"):
            value = md.get(key)
            if value is not None and value != "":
                return str(value), key
        for tag in tags or ():
            if not isinstance(tag, str):
                continue
            if self.agent_tags is not None:
                if tag in self.agent_tags:
                    return tag, "tag"
            elif not _is_internal_tag(tag):
                return tag, "tag"
        return self.default_agent, "default"

    def resolve_step(self, metadata: Mapping[str, Any] | None) -> int | None:
        md = metadata or {}
        for key in (STEP_KEY, "langgraph_step"):
            value = md.get(key)
            if value is None:
                continue
            step = _as_step(value)
            if step is None:
                self.monitor.count_handler_error(
                    f"metadata {key!r}",
                    ValueError(f"{key}={value!r} is not a non-negative integer; "
                               "the per-agent step counter was used instead"),
                )
            return step
        return None

    def _root_of(self, parent_run_id: UUID | None, run_id: UUID) -> UUID:
        if parent_run_id is None:
            return run_id
        return self._roots.get(parent_run_id, parent_run_id)

    def _bound(self, table: OrderedDict[Any, Any]) -> None:
        while len(table) > self.max_tracked_runs:
            table.popitem(last=False)
            self.evicted += 1

    # ---------------------------------------------------------------- chains
    def chain_start(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        with self._lock:
            self._roots[run_id] = self._root_of(parent_run_id, run_id)
            self._bound(self._roots)

    def chain_end(self, run_id: UUID) -> None:
        with self._lock:
            root = self._roots.pop(run_id, None)
            if root == run_id or root is None:
                self._retrieved.pop(run_id, None)

    # ---------------------------------------------------------------- retrievers
    def retriever_start(
        self, run_id: UUID, parent_run_id: UUID | None, tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        agent, _ = self.attribute(metadata, tags)
        with self._lock:
            self._retrievers[run_id] = _Retrieval(agent, self._root_of(parent_run_id, run_id))
            self._bound(self._retrievers)

    def retriever_end(self, run_id: UUID, documents: Sequence[Any]) -> None:
        with self._lock:
            info = self._retrievers.pop(run_id, None)
            # Only keep what a tracked top-level run will clean up at its end (a retriever
            # invoked on its own has no model call to attach its documents to).
            if info is None or self.max_retrieved == 0 or info.root not in self._roots:
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
        agent, by = self.attribute(metadata, tags)
        step = self.resolve_step(metadata)
        md = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = (md.get("ls_model_name") or params.get("model") or params.get("model_name")
                 or (serialized or {}).get("name") or kwargs.get("name"))
        extra = {k: md[k] for k in self.metadata_keys if k in md}
        with self._lock:
            self._llm_runs[run_id] = _LLMRun(
                agent=agent, step=step, attributed_by=by,
                model=None if model is None else str(model), tags=_user_tags(tags),
                root=self._root_of(parent_run_id, run_id), extra=extra,
            )
            self._bound(self._llm_runs)

    def llm_error(self, run_id: UUID) -> None:
        with self._lock:
            self._llm_runs.pop(run_id, None)

    def llm_end(
        self, response: LLMResult, run_id: UUID, parent_run_id: UUID | None,
        tags: Sequence[str] | None,
    ) -> None:
        with self._lock:
            run = self._llm_runs.pop(run_id, None)
            if run is None:  # no start seen (handler attached mid-run): attribute from tags
                agent, by = self.attribute(None, tags)
                run = _LLMRun(agent=agent, step=None, attributed_by=by, model=None,
                              tags=_user_tags(tags), root=self._root_of(parent_run_id, run_id),
                              extra={})
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
        if len(texts) == 1:
            self.monitor.record(texts[0], agent=run.agent, step=run.step, metadata=meta)
        elif run.step is None:  # one step for all generations of this call
            self.monitor.record_many(texts, agent=run.agent, step=None, metadata=meta)
        else:
            for i, text in enumerate(texts):
                self.monitor.record(text, agent=run.agent, step=run.step,
                                    metadata={**meta, "generation": i})

    @property
    def tracked_runs(self) -> int:
        with self._lock:
            return (len(self._llm_runs) + len(self._roots) + len(self._retrievers)
                    + len(self._retrieved))


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
        track_retrieval: follow chain and retriever runs to attach what each agent retrieved.
            ``False`` skips chain events entirely (lowest overhead).
        max_retrieved: most retrieved documents kept per agent and top-level run.
        snippet_chars: characters of each retrieved document kept.
        max_tracked_runs: bound on every bookkeeping table (runs that never end, e.g. an
            abandoned stream, cannot grow memory without limit; evictions are counted in
            ``evicted``).
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
    ) -> None:
        super().__init__()
        self._tr = _Translator(
            monitor, default_agent=default_agent, agent_tags=agent_tags,
            metadata_keys=metadata_keys, track_retrieval=track_retrieval,
            max_retrieved=max_retrieved, snippet_chars=snippet_chars,
            max_tracked_runs=max_tracked_runs,
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
    def ignore_chain(self) -> bool:
        return not self._tr.track_retrieval

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
                f"default_agent={self._tr.default_agent!r})")


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
        _guard(self._tr, "on_chain_start", self._tr.chain_start, run_id, parent_run_id)

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
        _guard(self._tr, "on_chain_start", self._tr.chain_start, run_id, parent_run_id)

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
