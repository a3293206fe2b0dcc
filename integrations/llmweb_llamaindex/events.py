"""LlamaIndex instrumentation: every LLM chat/completion output into a ``CollapseMonitor``.

.. code-block:: python

    from llama_index.core.instrumentation.dispatcher import instrument_tags
    from llmweb_llamaindex import instrument

    handle = instrument(mon)                    # attach to the root dispatcher (idempotent)
    with instrument_tags({"llmweb_agent": "legal", "llmweb_step": 3}):
        query_engine.query("...")
    handle.detach()

Handled events: ``LLMChatEndEvent`` and ``LLMCompletionEndEvent`` (streaming included: they fire
when a stream is exhausted, with the last, complete response). Attribution comes from the
instrument tags active when the call starts or ends (``llmweb_agent``, ``llmweb_step``), else
``default_agent`` and the monitor's per-agent step counter. An answer (or agent name) holding a
lone surrogate, which UTF-8 cannot encode, is kept with U+FFFD in its place and counted in
``monitor.stats.repaired``.

One output, one record: LlamaIndex LLMs often implement one entry point with another
(``CustomLLM.chat`` calls ``complete``, ``achat`` calls ``chat``, ``astream_chat`` iterates
``stream_chat``), and each of them fires its own end event. The handler's span handler follows the
span tree so that only the outermost call of a nest is recorded. That needs the span handler
attached too, which :func:`instrument` does; if you attach a :class:`CollapseEventHandler` by hand,
also attach ``handler.span_handler`` to the same dispatcher.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation import Dispatcher, get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.events.span import SpanDropEvent
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import ConfigDict, PrivateAttr

from llmweb_plugin.monitor import CollapseMonitor

__all__ = ["CollapseEventHandler", "InstrumentHandle", "instrument"]

logger = logging.getLogger(__name__)

AGENT_KEY = "llmweb_agent"
STEP_KEY = "llmweb_step"
_USAGE_MAP = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens",
              "total_tokens": "total_tokens", "input_tokens": "input_tokens",
              "output_tokens": "output_tokens"}
_MAX_HOPS = 256


def _owner() -> tuple[int, int | None]:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return threading.get_ident(), None if task is None else id(task)


def parse_step(value: Any) -> int:
    """A step from tags/metadata: a non-negative int (or its decimal string).

    Raises:
        ValueError: anything else.
    """
    step: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        step = value
    elif isinstance(value, float) and value.is_integer():
        step = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        step = int(value.strip())
    if step is None or step < 0:
        raise ValueError(f"llmweb_step={value!r} is not a non-negative integer")
    return step


def response_text(response: Any) -> str | None:
    """The text of a LlamaIndex ``ChatResponse`` / ``CompletionResponse`` (``None`` if none)."""
    if response is None:
        return None
    message = getattr(response, "message", None)
    if message is not None:
        content = getattr(message, "content", None)
        return content if isinstance(content, str) else ("" if content is None else str(content))
    text = getattr(response, "text", None)
    return text if isinstance(text, str) else None


def response_usage(response: Any) -> dict[str, int]:
    """Token counts a LlamaIndex response reports in ``additional_kwargs`` (OpenAI-style)."""
    extra = getattr(response, "additional_kwargs", None)
    if not isinstance(extra, Mapping):
        return {}
    out: dict[str, int] = {}
    for k, v in extra.items():
        if k in _USAGE_MAP and isinstance(v, int) and not isinstance(v, bool):
            out[_USAGE_MAP[k]] = int(v)
    return out


def _check_handler_args(monitor: Any, default_agent: Any, max_tracked: Any) -> None:
    """The argument checks every llmweb LlamaIndex handler makes."""
    if not isinstance(monitor, CollapseMonitor):
        raise TypeError(
            f"monitor must be a llmweb_plugin.CollapseMonitor; got {type(monitor).__name__}"
        )
    if not isinstance(default_agent, str) or not default_agent:
        raise ValueError(f"default_agent must be a non-empty str; got {default_agent!r}")
    if isinstance(max_tracked, bool) or not isinstance(max_tracked, int) or max_tracked < 1:
        raise ValueError(f"max_tracked must be >= 1; got {max_tracked!r}")


def _record_output(monitor: CollapseMonitor, default_agent: str, text: str,
                   tags: dict[str, Any], meta: dict[str, Any], response: Any) -> None:
    """Record one LLM output: agent and step from ``tags`` (the rest go into ``meta``), usage.

    ``meta`` holds what the caller knows of the call (event kind, its id, the model).
    """
    agent = tags.pop(AGENT_KEY, None)
    agent = default_agent if agent in (None, "") else str(agent)
    # an answer with a lone surrogate is kept (U+FFFD) and counted, not refused and lost
    agent = monitor.repair_text(agent, field="agent")
    text = monitor.repair_text(text, agent=agent)
    step = None
    if STEP_KEY in tags:
        raw = tags.pop(STEP_KEY)
        try:
            step = parse_step(raw)
        except ValueError as exc:
            monitor.count_handler_error(
                "instrument tag 'llmweb_step'",
                ValueError(f"{exc}; the per-agent step counter was used instead"),
            )
    if tags:
        meta["tags"] = tags
    usage = response_usage(response)
    if usage:
        meta["usage"] = usage
        monitor.record_usage(agent, **usage)
    monitor.record(text, agent=agent, step=step, metadata=meta)


@dataclass(slots=True)
class _Open:
    tags: dict[str, Any]
    model: str | None
    kind: str
    instance: int | None
    owner: tuple[int, int | None]
    depth: int = 0
    async_stream: bool = False


class _State:
    """Span parents and open LLM calls, shared by the event handler and its span handler."""

    def __init__(self, max_tracked: int) -> None:
        self.lock = threading.Lock()
        self.max_tracked = max_tracked
        self.parents: OrderedDict[str, tuple[str | None, int | None]] = OrderedDict()
        self.open: OrderedDict[str, _Open] = OrderedDict()
        self.inner: OrderedDict[str, None] = OrderedDict()
        self.evicted = 0

    def bound(self, table: OrderedDict[Any, Any]) -> None:
        while len(table) > self.max_tracked:
            table.popitem(last=False)
            self.evicted += 1


class _SpanTracker(BaseSpanHandler[BaseSpan]):
    """Keeps each open span's parent and instance; creates no spans of its own."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _state: _State = PrivateAttr()

    def __init__(self, state: _State) -> None:
        super().__init__(open_spans={}, completed_spans=[], dropped_spans=[],
                         current_span_ids={})
        self._state = state

    @classmethod
    def class_name(cls) -> str:
        return "LlmwebSpanTracker"

    def span_enter(self, id_: str, bound_args: inspect.BoundArguments,
                   instance: Any | None = None, parent_id: str | None = None,
                   tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        st = self._state
        with st.lock:
            st.parents[id_] = (parent_id, None if instance is None else id(instance))
            st.bound(st.parents)

    def span_exit(self, id_: str, bound_args: inspect.BoundArguments,
                  instance: Any | None = None, result: Any | None = None,
                  **kwargs: Any) -> None:
        st = self._state
        with st.lock:
            st.parents.pop(id_, None)
            if inspect.isasyncgen(result):
                op = st.open.get(id_)
                if op is not None:  # an async stream, consumed later, outside this span
                    op.async_stream = True

    def span_drop(self, id_: str, bound_args: inspect.BoundArguments,
                  instance: Any | None = None, err: BaseException | None = None,
                  **kwargs: Any) -> None:
        st = self._state
        with st.lock:
            st.parents.pop(id_, None)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class CollapseEventHandler(BaseEventHandler):
    """A LlamaIndex instrumentation ``BaseEventHandler`` that records LLM outputs.

    Args:
        monitor: the :class:`~llmweb_plugin.CollapseMonitor` that receives the outputs.
        default_agent: agent name when no ``llmweb_agent`` instrument tag is active.
        max_tracked: bound on its bookkeeping tables (spans, open calls).

    Each record's metadata: ``li_span_id`` (the LLM call's span), ``event`` (``"chat"`` or
    ``"completion"``), ``model`` when known, ``tags`` (the other instrument tags) and ``usage``
    (token counts the response reports; also added to ``monitor.usage``). Its own failures are
    counted with ``monitor.count_handler_error``, never raised.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    monitor: Any
    default_agent: str = "assistant"
    _state: _State = PrivateAttr()
    _spans: _SpanTracker = PrivateAttr()

    def __init__(self, monitor: CollapseMonitor, *, default_agent: str = "assistant",
                 max_tracked: int = 10_000) -> None:
        _check_handler_args(monitor, default_agent, max_tracked)
        super().__init__(monitor=monitor, default_agent=default_agent)
        self._state = _State(int(max_tracked))
        self._spans = _SpanTracker(self._state)

    @classmethod
    def class_name(cls) -> str:
        return "CollapseEventHandler"

    @property
    def span_handler(self) -> BaseSpanHandler[BaseSpan]:
        """The span handler to attach next to this handler (``instrument`` does it)."""
        return self._spans

    @property
    def tracked(self) -> int:
        """Entries in the bookkeeping tables (0 when no call or span is open)."""
        st = self._state
        with st.lock:
            return len(st.parents) + len(st.open) + len(st.inner)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        try:
            if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
                self._start(event)
            elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
                self._end(event)
            elif isinstance(event, (ExceptionEvent, SpanDropEvent)):
                self._forget(event.span_id)
        except Exception as exc:  # noqa: BLE001 - never raise into the host app
            self.monitor.count_handler_error(f"CollapseEventHandler({type(event).__name__})", exc)

    # ---------------------------------------------------------------- internals
    def _start(self, event: Any) -> None:
        span = event.span_id
        if span is None:
            return
        md = getattr(event, "model_dict", None) or {}
        model = md.get("model") or md.get("model_name")
        if not model or model == "unknown":
            model = md.get("class_name")
        kind = "chat" if isinstance(event, LLMChatStartEvent) else "completion"
        st = self._state
        owner = _owner()
        with st.lock:
            op = st.open.get(span)
            if op is not None:  # nested call inside the same span
                op.depth += 1
                return
            parent, instance = st.parents.get(span, (None, None))
            hops = 0
            while parent is not None and hops < _MAX_HOPS:
                if parent in st.open:
                    st.inner[span] = None
                    st.bound(st.inner)
                    return
                parent = st.parents.get(parent, (None, None))[0]
                hops += 1
            if instance is not None and any(
                o.async_stream and o.instance == instance and o.owner == owner
                for o in st.open.values()
            ):  # e.g. CustomLLM.astream_chat iterating stream_chat lazily
                st.inner[span] = None
                st.bound(st.inner)
                return
            st.open[span] = _Open(tags=dict(event.tags or {}),
                                  model=None if model is None else str(model), kind=kind,
                                  instance=instance, owner=owner)
            st.bound(st.open)

    def _forget(self, span: str | None) -> None:
        if span is None:
            return
        st = self._state
        with st.lock:
            st.inner.pop(span, None)
            st.open.pop(span, None)

    def _end(self, event: Any) -> None:
        span = event.span_id
        st = self._state
        with st.lock:
            if span is not None and span in st.inner:
                del st.inner[span]
                return
            op = st.open.get(span) if span is not None else None
            if op is not None and op.depth:
                op.depth -= 1
                return
            if op is not None:
                del st.open[span]
        tags = {**(op.tags if op else {}), **(event.tags or {})}
        kind = op.kind if op else ("chat" if isinstance(event, LLMChatEndEvent) else "completion")
        text = response_text(event.response)
        if text is None:  # an empty stream: no response at all
            return
        meta: dict[str, Any] = {"event": kind}
        if span is not None:
            meta["li_span_id"] = span
        if op is not None and op.model:
            meta["model"] = op.model
        _record_output(self.monitor, self.default_agent, text, tags, meta, event.response)


class InstrumentHandle:
    """What :func:`instrument` returns: detaches the handler (also as a context manager)."""

    def __init__(self, handler: CollapseEventHandler, dispatcher: Dispatcher) -> None:
        self.handler = handler
        self.dispatcher = dispatcher
        self._lock = threading.Lock()
        self._active = True

    @property
    def active(self) -> bool:
        """Whether the handler is still attached."""
        return self._active

    def detach(self) -> None:
        """Remove the handler and its span handler from the dispatcher (idempotent)."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            d = self.dispatcher
            # rebind rather than mutate: a dispatch running in another thread keeps its list
            d.event_handlers = [h for h in d.event_handlers if h is not self.handler]
            d.span_handlers = [h for h in d.span_handlers if h is not self.handler.span_handler]
        with _registry_lock:
            key = (id(self.dispatcher), id(self.handler.monitor))
            if _registry.get(key) is self:
                del _registry[key]

    def __enter__(self) -> InstrumentHandle:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return (f"InstrumentHandle(run_id={self.handler.monitor.run_id!r}, "
                f"dispatcher={self.dispatcher.name!r}, active={self._active})")


_registry: dict[tuple[int, int], InstrumentHandle] = {}
_registry_lock = threading.Lock()


def instrument(
    monitor: CollapseMonitor,
    *,
    default_agent: str = "assistant",
    dispatcher: Dispatcher | None = None,
) -> InstrumentHandle:
    """Attach a :class:`CollapseEventHandler` (and its span handler) to a dispatcher.

    Idempotent per monitor: instrumenting the same monitor again returns the same handle, so
    nothing is counted twice.

    Args:
        monitor: the monitor to record into.
        default_agent: agent name when no ``llmweb_agent`` instrument tag is active.
        dispatcher: default the root dispatcher (every LlamaIndex module propagates to it).

    Returns:
        An :class:`InstrumentHandle`; ``handle.detach()`` (or leaving ``with``) removes it.

    Raises:
        ValueError: the monitor is already instrumented with another ``default_agent``.

    Example:
        >>> import llmweb_plugin as lw
        >>> from llama_index.core.llms import MockLLM
        >>> from llama_index.core.instrumentation.dispatcher import instrument_tags
        >>> mon = lw.CollapseMonitor(lw.WebStore(":memory:"), run_id="li")
        >>> with instrument(mon):
        ...     with instrument_tags({"llmweb_agent": "mock"}):
        ...         _ = MockLLM(max_tokens=3).complete("hello")
        >>> [(r.agent, r.step, r.text) for r in mon.records()]
        [('mock', 0, 'text text text')]
        >>> _ = mon.close()
    """
    d = dispatcher if dispatcher is not None else get_dispatcher()  # "root" by default
    key = (id(d), id(monitor))
    with _registry_lock:
        existing = _registry.get(key)
        if existing is not None and existing.active:
            if existing.handler.default_agent != default_agent:
                raise ValueError(
                    f"monitor {monitor.run_id!r} is already instrumented with "
                    f"default_agent={existing.handler.default_agent!r}; detach that handle first"
                )
            return existing
        handler = CollapseEventHandler(monitor, default_agent=default_agent)
        d.add_span_handler(handler.span_handler)
        d.add_event_handler(handler)
        handle = _registry[key] = InstrumentHandle(handler, d)
    logger.debug("llmweb: instrumented dispatcher %r for run %s", d.name, monitor.run_id)
    return handle
