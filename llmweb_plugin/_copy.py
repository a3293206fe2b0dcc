"""Copy a run or a whole collection between two stores: :meth:`WebStore.copy_to`.

Records move as they are stored (id, vector, text and metadata), read through the source's client and
written with the target's :meth:`~llmweb_plugin.store.WebStore.upsert`, so any two backends work
(qdrant-client's local mode, the in-process edge engine, a Qdrant server or cluster) and the
target keeps its own bookkeeping (e.g. per-step summaries) as for records written there. Copying
again writes the same ids over themselves: no duplicates. After the copy the target is counted;
fewer records there than were read is an error, never a silent loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._record import Record
    from .store import WebStore

logger = logging.getLogger(__name__)

__all__ = ["CopyResult", "copy_points"]


@dataclass(frozen=True, kw_only=True)
class CopyResult:
    """What :meth:`~llmweb_plugin.store.WebStore.copy_to` did.

    Attributes:
        copied: records read from the source and written to the target.
        run_id: the run copied, or ``None`` for the whole collection.
        source: the source collection; target: the target collection.
        target_count: records of that run (or in all) in the target afterwards
            (``WebStore.count``).
    """

    copied: int
    run_id: str | None
    source: str
    target: str
    target_count: int


def copy_points(
    source: WebStore,
    target: WebStore,
    *,
    run_id: str | None = None,
    batch: int = 1024,
    progress: Callable[[int], Any] | None = None,
    read: Callable[[Any], Record],
) -> CopyResult:
    """Copy the points of ``run_id`` (or all) from ``source`` to ``target``; see ``copy_to``.

    ``read`` turns a point into a :class:`~llmweb_plugin.store.Record` (``Record.from_point``).

    Raises:
        TypeError: ``target`` is not a WebStore-like store.
        ValueError: bad ``batch`` or ``run_id``; the target is the source; the two collections
            hold vectors of another size or distance; the run is not in the source.
        RuntimeError: the target holds fewer points afterwards than were copied.
    """
    for attr in ("client", "collection", "dim", "distance", "_lock"):
        if not hasattr(target, attr):
            raise TypeError(f"copy_to needs a WebStore as target; got {type(target).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer; got {batch!r}")
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise ValueError(f"run_id must be a non-empty string or None; got {run_id!r}")
    if target.client is source.client and target.collection == source.collection:
        raise ValueError(f"copy_to: the target is the source collection {source.collection!r}; "
                         "give another store or collection")
    if (target.dim, target.distance) != (source.dim, source.distance):
        raise ValueError(
            f"copy_to: collection {source.collection!r} holds {source.dim}-d "
            f"{source.distance.value} vectors, the target {target.collection!r} "
            f"{target.dim}-d {target.distance.value} ones. Open the target with "
            f"embedder=None, dim={source.dim}, distance={source.distance.value.lower()!r}")
    flt = source._filter(run_id=run_id)  # the store's own records (no bookkeeping points)
    want = source.count(run_id)
    if run_id is not None and want == 0:
        known = source.runs()
        raise ValueError(f"run {run_id!r} is not in {source.collection!r} "
                         f"(runs: {', '.join(map(repr, known[:10])) or 'none'})")
    # qdrant-client's local mode filters the whole collection for every page: read big pages
    page = max(batch, source._page) if source.backend == "local" else batch
    copied, offset = 0, None
    while True:
        with source._lock:
            source._check_open()
            points, offset = source.client.scroll(
                source.collection, scroll_filter=flt, limit=page, offset=offset,
                with_payload=True, with_vectors=True)
        for start in range(0, len(points), batch):
            chunk = [read(p) for p in points[start:start + batch]]
            try:
                target.upsert(chunk)
            except ValueError as exc:
                raise ValueError(f"copy_to: a point among {chunk[0].id} .. {chunk[-1].id} of "
                                 f"{source.collection!r} is not an llmweb record ({exc}); "
                                 "copy a collection llmweb wrote") from exc
            copied += len(chunk)
            if progress is not None:
                progress(copied)
        if offset is None:
            break
    got = target.count(run_id)
    if got < copied or copied < want:
        raise RuntimeError(
            f"copy_to: read {copied} of {want} points of "
            f"{'run ' + repr(run_id) if run_id else 'the collection'} but the target holds {got}; "
            "the copy is incomplete. Copy again (it is idempotent)")
    logger.info("llmweb: copied %d points (%s) from %r to %r", copied, run_id or "all runs",
                source.collection, target.collection)
    return CopyResult(copied=copied, run_id=run_id, source=source.collection,
                      target=target.collection, target_count=got)
