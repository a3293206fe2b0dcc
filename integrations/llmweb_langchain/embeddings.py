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

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LangChainEmbedder"]


def _model_name(embeddings: Any) -> str | None:
    for attr in ("model", "model_name", "model_id", "deployment"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class LangChainEmbedder:
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
        if dim is not None and (isinstance(dim, bool) or int(dim) < 1):
            raise ValueError(f"dim must be a positive int or None; got {dim!r}")
        self.embeddings = embeddings
        self.name = str(name)
        self._dim = None if dim is None else int(dim)
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """The vector size (embeds one probe text the first time if not declared)."""
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    probe = self.embeddings.embed_documents(["dimension probe"])
                    self._dim = int(np.asarray(probe, dtype=np.float32).shape[-1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; float32 of shape ``(len(texts), dim)``.

        Raises:
            ValueError: the embeddings returned the wrong number of vectors or another size.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts) or out.shape[1] != self.dim:
            raise ValueError(
                f"{type(self.embeddings).__name__}.embed_documents returned shape {out.shape}; "
                f"expected ({len(texts)}, {self.dim})"
            )
        return out

    def __repr__(self) -> str:
        return f"LangChainEmbedder(name={self.name!r}, dim={self._dim})"
