"""For apps still on LlamaIndex's legacy ``CallbackManager``.

.. code-block:: python

    from llama_index.core.callbacks import CallbackManager
    llm = SomeLLM(..., callback_manager=CallbackManager([LegacyCollapseCallbackHandler(mon)]))

Records the end of every ``CBEventType.LLM`` event (``EventPayload.RESPONSE`` for chat,
``EventPayload.COMPLETION`` for completion). The agent is the ``llmweb_agent`` instrument tag
active when the call starts (``llama_index.core.instrumentation.dispatcher.instrument_tags``),
else ``default_agent``; the step is the ``llmweb_step`` tag or the monitor's per-agent counter.
An answer holding a lone surrogate is kept with U+FFFD in its place and counted in
``monitor.stats.repaired``.

One output, one record: LLM events are leaf events in the legacy tree, so a call that LlamaIndex
implements with another call of the same model (``CustomLLM.chat`` -> ``complete``) reports two
sibling events. An LLM event that starts while another event of the same model is open in the
same thread (or asyncio task) is taken as part of it and not recorded. The one case this gets
wrong: two *streams* of one model opened in one thread before either is consumed (the second is
not recorded); use :func:`llmweb_llamaindex.instrument`, which follows spans, for that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation.dispatcher import active_instrument_tags

from llmweb_plugin.monitor import CollapseMonitor

from .events import _check_handler_args, _owner, _record_output, response_text

__all__ = ["LegacyCollapseCallbackHandler"]

_OTHER_EVENTS: list[CBEventType] = [t for t in CBEventType if t is not CBEventType.LLM]


@dataclass(slots=True)
class _Open:
    owner: tuple[int, int | None]
    model: str | None
    tags: dict[str, Any]
    inner: bool


class LegacyCollapseCallbackHandler(BaseCallbackHandler):
    """A legacy ``llama_index.core.callbacks`` handler that records LLM outputs.

    Args:
        monitor: the :class:`~llmweb_plugin.CollapseMonitor` that receives the outputs.
        default_agent: agent name when no ``llmweb_agent`` instrument tag is active.
        max_tracked: bound on open events kept (calls that never end cannot grow memory).
    """

    def __init__(self, monitor: CollapseMonitor, *, default_agent: str = "assistant",
                 max_tracked: int = 10_000) -> None:
        _check_handler_args(monitor, default_agent, max_tracked)
        super().__init__(event_starts_to_ignore=_OTHER_EVENTS, event_ends_to_ignore=_OTHER_EVENTS)
        self.monitor = monitor
        self.default_agent = default_agent
        self.max_tracked = int(max_tracked)
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()

    @property
    def tracked(self) -> int:
        """LLM events started and not yet ended."""
        with self._lock:
            return len(self._open)

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                       event_id: str = "", parent_id: str = "", **kwargs: Any) -> str:
        try:
            if event_type is CBEventType.LLM:
                self._start(payload or {}, event_id)
        except Exception as exc:  # noqa: BLE001 - never raise into the host app
            self.monitor.count_handler_error("LegacyCollapseCallbackHandler.on_event_start", exc)
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                     event_id: str = "", **kwargs: Any) -> None:
        try:
            if event_type is CBEventType.LLM:
                self._end(payload or {}, event_id)
        except Exception as exc:  # noqa: BLE001
            self.monitor.count_handler_error("LegacyCollapseCallbackHandler.on_event_end", exc)

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces carry nothing llmweb needs."""

    def end_trace(self, trace_id: str | None = None,
                  trace_map: dict[str, list[str]] | None = None) -> None:
        """Traces carry nothing llmweb needs."""

    # ---------------------------------------------------------------- internals
    def _start(self, payload: dict[str, Any], event_id: str) -> None:
        ser = payload.get(EventPayload.SERIALIZED) or {}
        model = ser.get("model") or ser.get("model_name")
        if not model or model == "unknown":
            model = ser.get("class_name")
        owner = _owner()
        with self._lock:
            inner = any(o.owner == owner and o.model == model and not o.inner
                        for o in self._open.values())
            self._open[event_id] = _Open(owner=owner, model=None if model is None else str(model),
                                         tags=dict(active_instrument_tags.get()), inner=inner)
            while len(self._open) > self.max_tracked:
                self._open.popitem(last=False)

    def _end(self, payload: dict[str, Any], event_id: str) -> None:
        with self._lock:
            op = self._open.pop(event_id, None)
        if op is not None and op.inner:
            return
        if EventPayload.EXCEPTION in payload:
            return
        response = payload.get(EventPayload.RESPONSE, payload.get(EventPayload.COMPLETION))
        text = response_text(response)
        if text is None:
            return
        tags = {**(op.tags if op else {}), **active_instrument_tags.get()}
        kind = "chat" if EventPayload.RESPONSE in payload else "completion"
        meta: dict[str, Any] = {"event": kind, "li_event_id": event_id}
        if op is not None and op.model:
            meta["model"] = op.model
        _record_output(self.monitor, self.default_agent, text, tags, meta, response)

    def __repr__(self) -> str:
        return (f"LegacyCollapseCallbackHandler(run_id={self.monitor.run_id!r}, "
                f"default_agent={self.default_agent!r})")
