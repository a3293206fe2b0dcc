"""Trace annotation: link the span of a model call to the record it was stored as.

When the app runs under OpenTelemetry tracing (an instrumentor such as openinference's
LangChain instrumentor, or spans the app opens itself) and a span is recording in the thread
that delivers ``on_llm_end``, the handler adds to it:

- ``llmweb.run_id``, ``llmweb.agent``, ``llmweb.step`` (when the handler chose the step; a
  step left to the monitor's per-agent counter is not known here and is left out);
- ``llmweb.point_id``: the stored record's point id (:attr:`llmweb_plugin.Record.point_id`),
  and ``llmweb.point_ids`` with every id when a call returned several generations.

So a trace in Phoenix, Langfuse or any OTel backend leads to the record in the Qdrant web
(``store.records(...)`` / a point lookup by id), and back. OpenTelemetry is never imported
here: without an app that already imported it there is no span to annotate, and the check
costs one dictionary lookup.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["annotate_current_span"]


def annotate_current_span(run_id: str, agent: str, step: int | None,
                          point_ids: Sequence[str | None]) -> bool:
    """Add the llmweb attributes to the current recording span; ``True`` if there was one.

    Skipped records (``None`` ids: empty answers) are left out of the ids.
    """
    trace: Any = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    span = trace.get_current_span()
    if not span.is_recording():
        return False
    ids = [p for p in point_ids if p is not None]
    attrs: dict[str, Any] = {"llmweb.run_id": run_id, "llmweb.agent": agent}
    if step is not None:
        attrs["llmweb.step"] = int(step)
    if ids:
        attrs["llmweb.point_id"] = ids[0]
    if len(ids) > 1:
        attrs["llmweb.point_ids"] = ids
    span.set_attributes(attrs)
    return True
