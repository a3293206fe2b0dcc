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

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LlamaIndexEmbedder"]


class LlamaIndexEmbedder:
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
        if dim is not None and (isinstance(dim, bool) or int(dim) < 1):
            raise ValueError(f"dim must be a positive int or None; got {dim!r}")
        self.embedding = embedding
        self.name = str(name)
        self._dim = None if dim is None else int(dim)
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """The vector size (embeds one probe text the first time if not declared)."""
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    probe = self.embedding.get_text_embedding_batch(["dimension probe"])
                    self._dim = int(np.asarray(probe, dtype=np.float32).shape[-1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; float32 of shape ``(len(texts), dim)``.

        Raises:
            ValueError: the embedding returned the wrong number of vectors or another size.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self.embedding.get_text_embedding_batch(texts), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts) or out.shape[1] != self.dim:
            raise ValueError(
                f"{type(self.embedding).__name__}.get_text_embedding_batch returned shape "
                f"{out.shape}; expected ({len(texts)}, {self.dim})"
            )
        return out

    def __repr__(self) -> str:
        return f"LlamaIndexEmbedder(name={self.name!r}, dim={self._dim})"
