"""llmweb for LangChain: drop-in monitoring of every model output in a shared Qdrant web.

One line in an existing app::

    from llmweb_langchain import CollapseCallbackHandler
    chain.invoke(x, config={"callbacks": [CollapseCallbackHandler(mon)],
                            "metadata": {"llmweb_agent": "legal", "llmweb_step": 3}})

or, for every run inside a block, ``with collapse_monitor(store=store) as mon: ...``.
``LangChainEmbedder`` makes any LangChain ``Embeddings`` an llmweb embedder;
``PromptVariationMiddleware`` brings the prompt-variation mitigation to ``create_agent`` agents
(loaded on first use, so importing this package does not import ``langchain``).
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "llmweb_langchain needs langchain-core. Run: pip install 'llmweb-plugin[langchain]'"
    ) from exc

from .callbacks import AsyncCollapseCallbackHandler, CollapseCallbackHandler
from .context import collapse_monitor
from .embeddings import LangChainEmbedder

__all__ = [
    "AsyncCollapseCallbackHandler",
    "CollapseCallbackHandler",
    "LangChainEmbedder",
    "PromptVariationMiddleware",
    "collapse_monitor",
]


def __getattr__(name: str) -> object:
    if name == "PromptVariationMiddleware":
        from .middleware import PromptVariationMiddleware

        return PromptVariationMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
