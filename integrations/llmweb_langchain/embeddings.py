"""Any LangChain ``Embeddings`` as an llmweb :class:`~llmweb_plugin.Embedder`.

Example:
    >>> import llmweb_plugin as lw
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> emb = LangChainEmbedder(DeterministicFakeEmbedding(size=8), name="fake-8")
    >>> emb.embed(["a", "b"]).shape
    (2, 8)
    >>> store = lw.WebStore(":memory:", embedder=emb)
    >>> store.collection
    'llmweb__fake-8'
"""

from __future__ import annotations

from typing import Any

from llmweb_plugin.embeddings import BatchEmbedder

__all__ = ["LangChainEmbedder"]


def _model_name(embeddings: Any) -> str | None:
    for attr in ("model", "model_name", "model_id", "deployment"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class LangChainEmbedder(BatchEmbedder):
    """Wraps a LangChain ``Embeddings`` (``embed_documents``) as an llmweb ``Embedder``.

    Args:
        embeddings: any ``langchain_core.embeddings.Embeddings``.
        name: the stable name that picks the collection (``llmweb__<name>``); defaults to the
            object's ``model``/``model_name`` attribute. One collection per embedding model: give
            different models different names.
        dim: the vector size if known; otherwise found by embedding one probe text on first use.

    Raises:
        TypeError: ``embeddings`` has no ``embed_documents``.
        ValueError: no ``name`` given and none can be read from ``embeddings``.
    """

    def __init__(self, embeddings: Any, *, name: str | None = None, dim: int | None = None) -> None:
        if not callable(getattr(embeddings, "embed_documents", None)):
            raise TypeError(
                f"{type(embeddings).__name__} is not a LangChain Embeddings (no embed_documents)"
            )
        name = name or _model_name(embeddings)
        if not name:
            raise ValueError(
                f"cannot tell which model {type(embeddings).__name__} is: pass "
                "LangChainEmbedder(embeddings, name='<model name>') (the name picks the Qdrant "
                "collection, one per embedding model)"
            )
        super().__init__(name=name, dim=dim)
        self.embeddings = embeddings

    def _embed_batch(self, texts: list[str]) -> Any:
        return self.embeddings.embed_documents(texts)

    def _call_name(self) -> str:
        return f"{type(self.embeddings).__name__}.embed_documents"
