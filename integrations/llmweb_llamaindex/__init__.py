"""llmweb for LlamaIndex: every LLM output of an app in a shared Qdrant web.

``instrument(monitor)`` attaches a :class:`CollapseEventHandler` to the root instrumentation
dispatcher (agents named with ``instrument_tags({"llmweb_agent": ...})``);
``LegacyCollapseCallbackHandler`` serves apps on the legacy ``CallbackManager``;
``LlamaIndexEmbedder`` makes any ``BaseEmbedding`` an llmweb embedder; ``LlamaIndexAgent`` lets
a LlamaIndex LLM join an agent web.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "llmweb_llamaindex needs llama-index-core. Run: pip install 'llmweb-plugin[llamaindex]'"
    ) from exc

from .agent import LlamaIndexAgent
from .embeddings import LlamaIndexEmbedder
from .events import CollapseEventHandler, InstrumentHandle, instrument
from .legacy import LegacyCollapseCallbackHandler

__all__ = [
    "CollapseEventHandler",
    "InstrumentHandle",
    "LegacyCollapseCallbackHandler",
    "LlamaIndexAgent",
    "LlamaIndexEmbedder",
    "instrument",
]
