"""What an agent reads at a step: the visible web and the ``k_t`` items drawn from it.

What an agent sees at step ``t`` (:func:`visible_web`): every web record (seed, external, human,
post) of a step before ``t``, plus the non-post web records of step ``t`` itself (documents a
``before_step`` hook injected for this step); never a post of step ``t``, so what one agent reads
never depends on whether another agent of the same step has already posted. With a non-full
topology an agent sees only its own posts and those of the agents it is connected to (seeds and
injected documents always). ``k_t = floor(beta * |A_t|)`` items are drawn uniformly without
replacement (the paper), or the ``k_t`` most similar to the query (``retrieval="similarity"``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..store import WEB_KINDS, Record, WebStore
from .config import WebConfig, k_for

__all__ = ["ContextDraw", "WebCache", "draw_context", "query_vector_for", "visible_web"]


@dataclass(frozen=True, kw_only=True)
class ContextDraw:
    """What one agent retrieved at one step.

    Attributes:
        records: the retrieved records, in prompt order.
        web_size: ``|A_t|`` as this agent sees it.
        k: the number retrieved, ``floor(beta * web_size)``.
    """

    records: tuple[Record, ...]
    web_size: int
    k: int


def visible_web(store: WebStore, run_id: str, step: int,
                post_agents: Iterable[str] | None = None) -> list[Record]:
    """The web an agent sees at ``step``, in the store's stable order (see the module docstring)."""
    recs = store.web(run_id, before_step=step + 1)
    return _visible(recs, step, post_agents)


def _visible(recs: Sequence[Record], step: int,
             post_agents: Iterable[str] | None = None) -> list[Record]:
    allowed = None if post_agents is None else set(post_agents)
    return [r for r in recs
            if not (r.kind == "post" and (r.step >= step or
                                          (allowed is not None and r.agent not in allowed)))]


class WebCache:
    """The web of the current step, read from the store once and shared by a step's agents.

    Reading the web is a scroll over the collection (in qdrant-client's local mode a Python loop
    over every point), so the agents of one step share one read. The cache holds one step of one
    run; a miss (a new step, a new process after a crash) reads the store again, so it never
    changes what an agent sees. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, str, int] | None = None
        self._recs: list[Record] = []

    def web(self, store: WebStore, run_id: str, step: int) -> list[Record]:
        """Every web record of ``run_id`` with ``step' <= step`` except posts of ``step``."""
        key = (id(store), run_id, int(step))
        with self._lock:
            if self._key != key:
                self._recs = _visible(store.web(run_id, before_step=step + 1), step)
                self._key = key
            return self._recs


def draw_context(store: WebStore, config: WebConfig, *, run_id: str, step: int,
                 rng: np.random.Generator, post_agents: Iterable[str] | None = None,
                 query_vector: np.ndarray | None = None,
                 cache: WebCache | None = None) -> ContextDraw:
    """Retrieve ``k_t`` items of the visible web for one agent (uniformly, or by similarity)."""
    reads = None if post_agents is None else list(post_agents)
    if cache is not None:
        pool = _visible(cache.web(store, run_id, step), step, reads)
    else:
        pool = visible_web(store, run_id, step, reads)
    k = k_for(len(pool), config.beta)
    if config.retrieval == "uniform":
        idx = rng.choice(len(pool), size=k, replace=False) if k else np.zeros(0, dtype=int)
        return ContextDraw(records=tuple(pool[i] for i in idx), web_size=len(pool), k=k)
    # similarity: top-k by the query among the visible web. Posts of this step are not visible,
    # so ask for enough extra hits to drop them (at most one per agent).
    query: Any = config.query if query_vector is None else query_vector
    extra = len(config.agents)
    hits = store.search(query, k + extra, run_id=run_id, kind=list(WEB_KINDS),
                        post_agents=reads, before_step=step + 1) if k else []
    hits = [r for r in hits if not (r.kind == "post" and r.step >= step)][:k]
    return ContextDraw(records=tuple(hits), web_size=len(pool), k=k)


def query_vector_for(store: WebStore, config: WebConfig) -> np.ndarray | None:
    """The query's embedding for ``retrieval="similarity"`` (``None`` for uniform retrieval)."""
    if config.retrieval != "similarity":
        return None
    if store.embedder is None:
        raise ValueError("retrieval='similarity' needs a store with an embedder")
    return np.asarray(store.embedder.embed([config.query])[0], dtype=np.float32)
