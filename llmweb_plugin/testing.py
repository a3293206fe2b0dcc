"""Test helpers, shipped as public API so users can test their own llmweb set-ups.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(5, 3))
    >>> bool(np.isclose(brute_force_collapse_norm(X), __import__("llmweb_plugin").collapse_norm(X)))
    True
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np

from .embeddings import Embedder

__all__ = ["FlakyEmbedder", "SeededEmbedder", "brute_force_collapse_norm"]


def brute_force_collapse_norm(X: object) -> float:
    """``||D||_F`` by building the full distance matrix with explicit loops (for checks only)."""
    A = np.asarray(X, dtype=np.float64)
    m = A.shape[0]
    total = 0.0
    for i in range(m):
        for j in range(m):
            total += float(np.sum((A[i] - A[j]) ** 2))
    return float(np.sqrt(total))


class FlakyEmbedder:
    """Wraps a real :class:`~llmweb_plugin.embeddings.Embedder` and fails on chosen calls.

    Use it to check that monitoring counts and surfaces failures instead of losing records.

    Args:
        inner: the real embedder.
        fail_when: called with the batch of texts; the embed call raises ``RuntimeError`` when it
            returns True. Default: fail when any text contains ``"FAIL"``.
    """

    def __init__(self, inner: Embedder,
                 fail_when: Callable[[Sequence[str]], bool] | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.fail_when = fail_when or (lambda texts: any("FAIL" in t for t in texts))
        self.calls = 0
        self.failures = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            self.calls += 1
            fail = bool(self.fail_when(texts))
            if fail:
                self.failures += 1
        if fail:
            raise RuntimeError("FlakyEmbedder: simulated embedding failure")
        return self.inner.embed(texts)


class SeededEmbedder:
    """Deterministic unit vectors with no model to load: a standard normal draw seeded by the
    SHA-256 of each text, normalised (``dim`` 32 by default). Equal texts give equal vectors and
    different texts nearly orthogonal ones, so a test can build runs that converge (agents
    writing the same sentence) or stay apart, and check the metrics and verdicts on them.
    """

    name = "fake-seeded-32"

    def __init__(self, dim: int = 32) -> None:
        self.dim = int(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)
