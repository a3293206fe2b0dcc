"""Any LlamaIndex ``BaseEmbedding`` as an llmweb :class:`~llmweb_plugin.Embedder`.

Example:
    >>> import llmweb_plugin as lw
    >>> from llama_index.core.embeddings import MockEmbedding
    >>> emb = LlamaIndexEmbedder(MockEmbedding(embed_dim=8), name="mock-8")
    >>> emb.embed(["a", "b"]).shape
    (2, 8)
    >>> lw.WebStore(":memory:", embedder=emb).collection
    'llmweb__mock-8'
"""

from __future__ import annotations

from typing import Any

from llmweb_plugin.embeddings import BatchEmbedder

__all__ = ["LlamaIndexEmbedder"]


class LlamaIndexEmbedder(BatchEmbedder):
    """A LlamaIndex ``BaseEmbedding`` (``get_text_embedding_batch``) as an llmweb ``Embedder``.

    Args:
        embedding: any ``llama_index.core.base.embeddings.base.BaseEmbedding``.
        name: the stable name that picks the collection (``llmweb__<name>``); defaults to the
            embedding's ``model_name`` (LlamaIndex's default ``"unknown"`` is refused).
        dim: the vector size if known; otherwise found by embedding one probe text on first use.

    Raises:
        TypeError: ``embedding`` has no ``get_text_embedding_batch``.
        ValueError: no usable ``name``.
    """

    def __init__(self, embedding: Any, *, name: str | None = None, dim: int | None = None) -> None:
        if not callable(getattr(embedding, "get_text_embedding_batch", None)):
            raise TypeError(
                f"{type(embedding).__name__} is not a LlamaIndex BaseEmbedding "
                "(no get_text_embedding_batch)"
            )
        if name is None:
            model = getattr(embedding, "model_name", None)
            name = model if isinstance(model, str) and model and model != "unknown" else None
        if not name:
            raise ValueError(
                f"cannot tell which model {type(embedding).__name__} is: pass "
                "LlamaIndexEmbedder(embedding, name='<model name>') (the name picks the Qdrant "
                "collection, one per embedding model)"
            )
        super().__init__(name=name, dim=dim)
        self.embedding = embedding

    def _embed_batch(self, texts: list[str]) -> Any:
        return self.embedding.get_text_embedding_batch(texts)

    def _call_name(self) -> str:
        return f"{type(self.embedding).__name__}.get_text_embedding_batch"
