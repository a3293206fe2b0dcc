"""The human review queue: sampled posts wait in a sink; decisions flow back into the web.

A sink (:class:`JsonlSink`, an append-only JSON-lines log, or :class:`QdrantReviewSink`, a
Qdrant collection next to the web's) holds one :class:`ReviewItem` per sampled post.
:class:`ReviewQueue` approves or replaces items and writes decided ones into the web as kind
``human`` records with ``review_of=<post id>``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ...store import Record, WebStore, point_id

if TYPE_CHECKING:  # pragma: no cover
    from ...monitor import CollapseMonitor

__all__ = [
    "REVIEW_STATUSES",
    "JsonlSink",
    "QdrantReviewSink",
    "ReviewItem",
    "ReviewQueue",
    "ReviewSink",
]

logger = logging.getLogger(__name__)

REVIEW_STATUSES = ("pending", "approved", "replaced")


@dataclass(frozen=True, kw_only=True)
class ReviewItem:
    """One sampled post in the review queue.

    Attributes:
        id: the post's point id (also the item's id).
        run_id, agent, step, index: the post's provenance.
        text: the post's text.
        seq: position in the queue (0, 1, ...); the index of its ``human`` record.
        sampled_step: the step at which it was sampled.
        status: ``pending``, ``approved`` or ``replaced``.
        replacement: the reviewer's text, for ``replaced``.
        applied_step: the step its ``human`` record was written at, once applied.
    """

    id: str
    run_id: str
    agent: str
    step: int
    index: int
    text: str
    seq: int
    sampled_step: int
    status: str = "pending"
    replacement: str | None = None
    applied_step: int | None = None

    @property
    def reviewed_text(self) -> str | None:
        """The text that enters the web, once decided."""
        if self.status == "approved":
            return self.text
        if self.status == "replaced":
            return self.replacement
        return None


class ReviewSink(Protocol):
    """Where sampled posts wait for review (:class:`JsonlSink`, :class:`QdrantReviewSink`)."""

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        """Queue posts not queued yet; returns how many were new."""

    def items(self) -> list[ReviewItem]:
        """Every item, by ``seq``."""

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        """Change an item's ``status``/``replacement``/``applied_step``; returns it."""


_ITEM_FIELDS = ("id", "run_id", "agent", "step", "index", "text", "seq", "sampled_step",
                "status", "replacement", "applied_step")


class JsonlSink:
    """An append-only JSON-lines review log (one JSON object per line, never pickle).

    Lines are events: ``{"event": "sampled", ...item}``, ``{"event": "update", "id", ...}``.
    The current queue is the replay of the log, so a process can re-open it; a post sampled
    twice (e.g. by a resumed run) is kept once. A damaged line (a crash mid-write) is skipped
    with a warning and counted in ``bad_lines``.

    Args:
        path: the ``.jsonl`` file (created with its folder when missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._items: dict[str, ReviewItem] = {}
        self.bad_lines = 0
        if self.path.exists():
            self._replay()

    def _replay(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                    kind = ev.pop("event")
                    if kind == "sampled":
                        item = ReviewItem(**{k: ev[k] for k in _ITEM_FIELDS if k in ev})
                        self._items.setdefault(item.id, item)
                    elif kind == "update":
                        iid = ev.pop("id")
                        self._items[iid] = replace(self._items[iid], **ev)
                    else:
                        raise ValueError(f"unknown event {kind!r}")
                except (ValueError, KeyError, TypeError) as exc:
                    self.bad_lines += 1
                    logger.warning("llmweb: skipped bad line %d of review log %s: %s", lineno,
                                   self.path, exc)

    def _append(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for ev in events:
                fh.write(json.dumps(ev, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        with self._lock:
            new = []
            for p in posts:
                if p.point_id in self._items:
                    continue
                item = ReviewItem(id=p.point_id, run_id=p.run_id, agent=p.agent, step=p.step,
                                  index=p.index, text=p.text, seq=len(self._items),
                                  sampled_step=int(sampled_step))
                self._items[item.id] = item
                new.append(item)
            self._append([{"event": "sampled", **asdict(item)} for item in new])
            return len(new)

    def items(self) -> list[ReviewItem]:
        with self._lock:
            return sorted(self._items.values(), key=lambda it: it.seq)

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        with self._lock:
            if item_id not in self._items:
                raise KeyError(item_id)
            item = replace(self._items[item_id], **changes)
            self._append([{"event": "update", "id": item_id, **changes}])
            self._items[item_id] = item
            return item

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, items={len(self._items)})"


class QdrantReviewSink:
    """A review queue in its own Qdrant collection, next to the web's.

    Each sampled post is copied (text, provenance, vector; same point id) into ``collection``
    with metadata ``review`` (``pending``/``approved``/``replaced``), ``review_of``, ``seq``,
    ``sampled_step``, ``replacement`` and ``applied_step``, so reviewers can browse and search it
    with any Qdrant tool.

    With embedded local Qdrant (``":memory:"`` or a folder) one client serves both collections:
    review from the thread that runs the web, or between runs; a Qdrant server has no such limit.

    Args:
        store: the web's :class:`~llmweb_plugin.store.WebStore` (its client and vector size).
        collection: the review collection's name.
    """

    def __init__(self, store: WebStore, collection: str = "llmweb_review") -> None:
        if not isinstance(store, WebStore):
            raise TypeError(f"store must be a WebStore; got {type(store).__name__}")
        if collection == store.collection:
            raise ValueError("the review collection must differ from the web's collection")
        self.web_store = store
        self.collection = collection
        self.review_store = WebStore(client=store.client, collection=collection,
                                     embedder=store.embedder, dim=None if store.embedder
                                     is not None else store.dim)
        self._lock = threading.Lock()

    @staticmethod
    def _to_item(rec: Record) -> ReviewItem:
        m = rec.metadata
        return ReviewItem(id=rec.point_id, run_id=rec.run_id, agent=rec.agent, step=rec.step,
                          index=rec.index, text=rec.text, seq=int(m.get("seq", 0)),
                          sampled_step=int(m.get("sampled_step", rec.step)),
                          status=str(m.get("review", "pending")),
                          replacement=m.get("replacement"),
                          applied_step=None if m.get("applied_step") is None
                          else int(m["applied_step"]))

    def _records(self, with_vectors: bool = False) -> list[Record]:
        return self.review_store.records(kind="post", with_vectors=with_vectors)

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        with self._lock:
            existing = {r.point_id for r in self._records()}
            todo = [p for p in posts if p.point_id not in existing]
            if not todo:
                return 0
            need = [p for p in todo if p.vector is None]
            vecs: dict[str, np.ndarray] = {}
            if need:
                by_run: dict[str, set[int]] = defaultdict(set)
                for p in need:
                    by_run[p.run_id].add(p.step)
                for run, steps in by_run.items():
                    for s in steps:
                        for r in self.web_store.records(run, kind="post", step=s,
                                                        with_vectors=True):
                            if r.vector is not None:
                                vecs[r.point_id] = r.vector
            seq0 = len(existing)
            recs = []
            for i, p in enumerate(todo):
                vec = p.vector if p.vector is not None else vecs.get(p.point_id)
                if vec is None:
                    raise ValueError(f"post {p.point_id} has no vector in the web store")
                recs.append(Record(
                    text=p.text, run_id=p.run_id, agent=p.agent, step=p.step, kind="post",
                    index=p.index, id=p.point_id, vector=vec,
                    metadata={"review": "pending", "review_of": p.point_id, "seq": seq0 + i,
                              "sampled_step": int(sampled_step), "replacement": None,
                              "applied_step": None},
                ))
            self.review_store.upsert(recs)
            return len(recs)

    def items(self) -> list[ReviewItem]:
        with self._lock:
            return sorted((self._to_item(r) for r in self._records()), key=lambda it: it.seq)

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        with self._lock:
            recs = [r for r in self._records(with_vectors=True) if r.point_id == item_id]
            if not recs:
                raise KeyError(item_id)
            rec = recs[0]
            meta = dict(rec.metadata)
            for k, v in changes.items():
                meta["review" if k == "status" else k] = v
            self.review_store.upsert([replace(rec, metadata=meta)])
            return self._to_item(replace(rec, metadata=meta))

    def __repr__(self) -> str:
        return f"QdrantReviewSink(collection={self.collection!r})"


class ReviewQueue:
    """Review sampled posts and write the outcome back into the web.

    Args:
        sink: a :class:`JsonlSink` or :class:`QdrantReviewSink`.
        reviewer_agent: the agent name of the ``human`` records.

    Example:
        >>> import tempfile, os
        >>> q = ReviewQueue(JsonlSink(os.path.join(tempfile.mkdtemp(), "review.jsonl")))
        >>> q.pending()
        []
    """

    def __init__(self, sink: ReviewSink, *, reviewer_agent: str = "human") -> None:
        for attr in ("add", "items", "update"):
            if not callable(getattr(sink, attr, None)):
                raise TypeError(f"sink must have add/items/update (JsonlSink, QdrantReviewSink); "
                                f"{type(sink).__name__} has no {attr}()")
        self.sink = sink
        self.reviewer_agent = reviewer_agent

    def items(self, run_id: str | None = None) -> list[ReviewItem]:
        """Every item (of ``run_id``), by ``seq``."""
        return [it for it in self.sink.items() if run_id is None or it.run_id == run_id]

    def pending(self, run_id: str | None = None) -> list[ReviewItem]:
        """Items awaiting a decision."""
        return [it for it in self.items(run_id) if it.status == "pending"]

    def get(self, item_id: str) -> ReviewItem:
        """The item ``item_id`` (a post id). Raises ``KeyError`` if it was never sampled."""
        for it in self.sink.items():
            if it.id == item_id:
                return it
        raise KeyError(f"no review item {item_id!r}; see pending() for the queued ones")

    def _decide(self, item_id: str, status: str, replacement: str | None) -> ReviewItem:
        item = self.get(item_id)
        if item.applied_step is not None:
            raise ValueError(f"review item {item_id!r} was already applied at step "
                             f"{item.applied_step}; it cannot change any more")
        return self.sink.update(item_id, status=status, replacement=replacement)

    def approve(self, item_id: str) -> ReviewItem:
        """Approve the post as written: it enters the web as a ``human`` document."""
        return self._decide(item_id, "approved", None)

    def replace(self, item_id: str, new_text: str) -> ReviewItem:
        """Replace the post by ``new_text``, which enters the web as a ``human`` document."""
        if not isinstance(new_text, str) or not new_text.strip():
            raise ValueError("new_text must be a non-empty string")
        return self._decide(item_id, "replaced", new_text)

    def apply(self, monitor: CollapseMonitor, step: int) -> int:
        """Write decided, unapplied items of the monitor's run into the web at ``step``.

        Each becomes a ``human`` record (agent ``reviewer_agent``, index ``seq``) with metadata
        ``review_of`` (the post id), ``review`` (``approved``/``replaced``), ``reviewed_agent``
        and ``reviewed_step``. Idempotent: an item already applied is only re-written (at its
        own step, same point id) if its record is missing from the store. Returns the number of
        items applied at ``step``.
        """
        run_id = monitor.run_id
        decided = [it for it in self.items(run_id)
                   if it.status in ("approved", "replaced")]
        if not decided:
            return 0
        present: set[str] | None = None
        count = 0
        to_record: list[ReviewItem] = []
        for it in decided:  # sink writes first, then the web writes (one client at a time)
            if it.applied_step is None:
                to_record.append(self.sink.update(it.id, applied_step=int(step)))
                continue
            if present is None:
                monitor.flush()
                present = {r.point_id for r in monitor.store.records(
                    run_id, agent=self.reviewer_agent, kind="human")}
            pid = point_id(run_id, self.reviewer_agent, it.applied_step, "human", it.seq)
            if pid in present:
                count += int(it.applied_step == step)
            else:
                to_record.append(it)
        for it in to_record:
            text = it.reviewed_text
            if text is None or it.applied_step is None:  # pragma: no cover - guarded above
                continue
            monitor.record(text, agent=self.reviewer_agent, step=it.applied_step, kind="human",
                           index=it.seq,
                           metadata={"review_of": it.id, "review": it.status,
                                     "reviewed_agent": it.agent, "reviewed_step": it.step,
                                     "mitigation": "human_review"})
            count += int(it.applied_step == step)
        return count
