"""``collapse_monitor``: monitor every LangChain run inside a ``with`` block, no callbacks passed.

Follows langchain-core's ``get_usage_metadata_callback``: a ``ContextVar`` registered with
``langchain_core.tracers.context.register_configure_hook`` holds the handler, and LangChain adds
it to the callbacks of every run configured while the variable is set (in this thread or task,
and in the threads and tasks LangChain starts from it, which copy the context).

Nesting: each level of nesting has its own context variable (registered once per process, the
first time that depth is reached), so nested blocks with *different* monitors both receive every
output. Nesting the *same* monitor again is "inner wins": the inner block's handler (and its
options) replaces the outer one until the inner block ends, so nothing is recorded twice.
(Passing ``CollapseCallbackHandler(mon)`` explicitly to a run inside a block for the same ``mon``
does record twice: use one or the other.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from langchain_core.tracers.context import register_configure_hook

from llmweb_plugin.monitor import CollapseMonitor
from llmweb_plugin.store import WebStore

from .callbacks import CollapseCallbackHandler

__all__ = ["collapse_monitor"]

logger = logging.getLogger(__name__)

_depth: ContextVar[int] = ContextVar("llmweb_collapse_monitor_depth", default=0)
# (monitor, handler-variable) for every active block, outermost first
_active: ContextVar[tuple[tuple[CollapseMonitor, ContextVar[Any]], ...]] = ContextVar(
    "llmweb_collapse_monitor_active", default=()
)
_vars: list[ContextVar[CollapseCallbackHandler | None]] = []
_vars_lock = threading.Lock()


def _handler_var(depth: int) -> ContextVar[CollapseCallbackHandler | None]:
    with _vars_lock:
        while len(_vars) <= depth:
            var: ContextVar[CollapseCallbackHandler | None] = ContextVar(
                f"llmweb_collapse_handler_{len(_vars)}", default=None
            )
            register_configure_hook(var, True)
            _vars.append(var)
        return _vars[depth]


@contextmanager
def collapse_monitor(
    monitor: CollapseMonitor | None = None,
    *,
    store: WebStore | None = None,
    run_id: str | None = None,
    default_agent: str = "assistant",
    agent_tags: Collection[str] | None = None,
    metadata_keys: Sequence[str] = (),
    track_retrieval: bool = True,
    step_by: str = "invocation",
    agent_keys: Sequence[str] = (),
    **monitor_kwargs: Any,
) -> Iterator[CollapseMonitor]:
    """Monitor every LangChain run started inside the block; yields the monitor.

    Args:
        monitor: the monitor to record into. ``None`` creates one over ``store`` (with
            ``run_id`` and ``monitor_kwargs``), which is closed (flushed) when the block ends;
            a monitor you pass is only flushed.
        store: the :class:`~llmweb_plugin.WebStore` for a new monitor; ``None`` makes an
            in-memory one (it stays open after the block: read it via ``monitor.store``).
        run_id: the new monitor's run id.
        default_agent, agent_tags, metadata_keys, track_retrieval, step_by, agent_keys:
            options of the :class:`~llmweb_langchain.CollapseCallbackHandler` that is
            installed (``step_by="invocation"``: each top-level run is the next step).
        **monitor_kwargs: further :class:`~llmweb_plugin.CollapseMonitor` options for a new
            monitor.

    Raises:
        ValueError: ``monitor`` together with ``store``, ``run_id`` or monitor options; a bad
            ``step_by``.

    Example:
        >>> import llmweb_plugin as lw
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from llmweb_langchain import collapse_monitor
        >>> model = FakeListChatModel(responses=["Tax law changed in 2024."])
        >>> with collapse_monitor(store=lw.WebStore(":memory:"), run_id="ctx") as mon:
        ...     _ = model.invoke("hi", config={"metadata": {"llmweb_agent": "tax"}})
        >>> [(r.agent, r.step, r.text) for r in mon.store.records("ctx")]
        [('tax', 0, 'Tax law changed in 2024.')]
    """
    if monitor is not None and (store is not None or run_id is not None or monitor_kwargs):
        raise ValueError(
            "collapse_monitor(monitor, ...) uses the given monitor as is; pass store=, run_id= "
            "or monitor options only when collapse_monitor should create the monitor"
        )
    own = monitor is None
    if own:
        if store is None:
            store = WebStore(":memory:")
        monitor = CollapseMonitor(store, run_id, **monitor_kwargs)
    assert monitor is not None
    try:
        handler = CollapseCallbackHandler(
            monitor, default_agent=default_agent, agent_tags=agent_tags,
            metadata_keys=metadata_keys, track_retrieval=track_retrieval, step_by=step_by,
            agent_keys=agent_keys,
        )
    except BaseException:
        if own:  # a bad option must not leave the monitor we made running
            monitor.close()
        raise
    depth = _depth.get()
    var = _handler_var(depth)
    active = _active.get()
    suspended: list[tuple[ContextVar[Any], Token[Any]]] = [
        (v, v.set(None)) for m, v in active if m is monitor
    ]
    tok_var = var.set(handler)
    tok_depth = _depth.set(depth + 1)
    tok_active = _active.set((*active, (monitor, var)))
    try:
        yield monitor
    finally:
        _active.reset(tok_active)
        _depth.reset(tok_depth)
        var.reset(tok_var)
        for v, tok in reversed(suspended):
            v.reset(tok)
        try:
            if own:
                monitor.close()
            else:
                monitor.flush()
        except Exception as exc:  # noqa: BLE001 - must not mask the block's own exception
            logger.error("llmweb: closing the monitor of collapse_monitor failed: %r", exc)
