"""The writer of the summaries beside the records: :class:`SummaryBook` (issue 13, item 1).

One book per :class:`~llmweb_plugin.store.WebStore` keeps the statistics of the keys it wrote
(read back from the side collection on first use) and writes a batch's records, then their
summaries; see :mod:`llmweb_plugin._summaries` for what is kept, where, and how readers check it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from ._summaries import (
    _RETRIEVE_CHUNK,
    CATALOG_ID,
    STATS_KEY,
    SUMMARY_KIND,
    Key,
    KeyStats,
    _meta_point,
    ensure_side,
    has_side,
    manifest_id,
    point_hash,
    side_name,
    summary_id,
)
from ._write import Rows

logger = logging.getLogger(__name__)

__all__ = ["SummaryBook", "book", "on_close"]


class SummaryBook:
    """The summaries one :class:`~llmweb_plugin.store.WebStore` keeps as it writes.

    :meth:`write` writes a batch of records through the store and then their summaries into the
    side collection; :meth:`plan` computes the new statistics under the store's lock (a failed
    record write changes nothing), :meth:`forget_run` drops a deleted run's.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.side = side_name(store.collection)
        self._keys: dict[Key, KeyStats] = {}
        self._manifests: dict[str, list[list[Any]]] = {}
        self._catalog: dict[str, Any] | None = None
        self._unsure: set[str] = set()  # runs whose summaries cannot be trusted any more
        self._pending: dict[str, models.PointStruct] = {}  # side points a failed write left
        self.failed_writes = 0
        self._lock = threading.Lock()

    def _retrieve(self, ids: Sequence[str], *, vectors: bool = False,
                  collection: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for start in range(0, len(ids), _RETRIEVE_CHUNK):
            for p in self.store.client.retrieve(collection or self.side,
                                                ids=list(ids[start:start + _RETRIEVE_CHUNK]),
                                                with_payload=True, with_vectors=vectors):
                out[str(p.id)] = p
        return out

    def _load(self, keys: Iterable[Key], runs: Iterable[str]) -> None:
        need_k = [k for k in dict.fromkeys(keys) if k not in self._keys]
        need_r = [r for r in dict.fromkeys(runs) if r not in self._manifests]
        ids = [summary_id(r, s, a, k) for r, s, a, k in need_k] + \
              [manifest_id(r) for r in need_r] + ([CATALOG_ID] if self._catalog is None else [])
        got = self._retrieve(ids) if ids else {}
        for key in need_k:
            p = got.get(summary_id(*key))
            meta = ((p.payload or {}).get("metadata") or {}) if p is not None else {}
            self._keys[key] = (KeyStats.from_payload(meta[STATS_KEY]) if STATS_KEY in meta
                               else KeyStats())
        for r in need_r:
            p = got.get(manifest_id(r))
            meta = ((p.payload or {}).get("metadata") or {}) if p is not None else {}
            self._manifests[r] = [list(k) for k in meta.get("llmweb_manifest", [])]
            if meta.get("llmweb_unsure"):  # an earlier writer stopped mid-way: never trusted
                self._unsure.add(r)
        if self._catalog is None:
            p = got.get(CATALOG_ID)
            meta = ((p.payload or {}).get("metadata") or {}) if p is not None else {}
            cat = meta.get("llmweb_catalog")
            self._catalog = {"runs": dict(cat["runs"]) if isinstance(cat, Mapping) else {}}

    def _manifest_point(self, run: str, man: list[list[Any]], unsure: bool) -> models.PointStruct:
        return _meta_point(manifest_id(run), int(self.store.dim), {
            "run_id": run, "agent": "", "step": -1, "kind": SUMMARY_KIND, "index": 0,
            "llmweb_manifest": man, "llmweb_unsure": unsure})

    def write(self, recs: Sequence[Any], stored: np.ndarray,
              points: Sequence[models.PointStruct],
              put: Callable[[str, Sequence[models.PointStruct]], None]) -> None:
        """Write ``points`` (the records) with ``put(collection, points)``, then their summaries.

        Raises what the record write raises. A failed summary write does not raise (the records
        are stored): it is logged, counted in ``failed_writes`` and written with the next batch;
        until then the readers' checks see the summaries lag and read the records.
        """
        call = self.store._writer.call
        if self.store.__dict__.get("_side_ok") != self.side:  # e.g. an older llmweb's collection
            call(lambda: ensure_side(self.store), what="opening the summaries' collection")
        mark, side, commit, rewrites = call(lambda: self.plan(recs, stored, points),
                                            what="reading the run's summaries")
        if mark:  # a count cannot reveal a stale re-written record: say so first
            put(self.side, mark)
        try:
            put(self.store.collection, points)
        except BaseException:
            with self._lock:
                self._unsure |= rewrites  # which of the re-written records landed is unknown
            raise
        commit()
        with self._lock:
            for p in side:
                self._pending[str(p.id)] = p
            todo = sorted(self._pending.values(), key=_rank)
        try:
            put(self.side, todo)
        except Exception as exc:  # noqa: BLE001 - the records are stored; never lose them here
            self.failed_writes += 1
            logger.warning("llmweb: writing the summaries of %d record(s) to %r failed (%s); they "
                           "are written with the next batch, and until then reports read the "
                           "records", len(recs), self.side, exc)
            return
        with self._lock:
            for p in todo:
                if self._pending.get(str(p.id)) is p:
                    del self._pending[str(p.id)]

    def plan(self, recs: Sequence[Any], stored: np.ndarray,
             points_in: Sequence[models.PointStruct],
             ) -> tuple[list[models.PointStruct], list[models.PointStruct], Callable[[], None],
                        set[str]]:
        """For writing ``recs`` (their vectors as stored, their points as about to be written):
        the *unsure* marks to write first, the summary points to write after the records, the
        commit that makes the new statistics current once the records are stored, and the runs
        whose counted records the batch re-writes."""
        if not recs:
            return [], [], lambda: None, set()
        with self._lock:
            keys = [(r.run_id, int(r.step), r.agent, r.kind) for r in recs]
            self._load(keys, [k[0] for k in keys])
            assert self._catalog is not None
            new: dict[Key, KeyStats] = {}
            # records already counted under their id are re-writes: read the old ones back
            if isinstance(points_in, Rows):  # the store's own batch: its columns as they are
                ids, payloads = points_in.ids, points_in.payloads
            else:
                ids = [str(p.id) for p in points_in]
                payloads = [p.payload for p in points_in]
            counted = [self._keys[k].has(int(r.index)) for r, k in zip(recs, keys)]
            again = [pid for pid, c in zip(ids, counted) if c]
            rewrites = {k[0] for k, c in zip(keys, counted) if c}
            old = (self._retrieve(again, vectors=True, collection=self.store.collection)
                   if again else {})
            # a row of the batch is kept as its position in ``stored``, an old vector as an array
            batch: dict[str, tuple[int | np.ndarray, Mapping[str, Any]]] = {}
            runs_delta: dict[str, int] = {}
            rows: dict[Key, tuple[list[int | np.ndarray], list[float]]] = {}
            for i, (rec, key, pay, pid) in enumerate(zip(recs, keys, payloads, ids)):
                st = new.get(key)
                if st is None:
                    st = new[key] = self._keys[key].copy()
                    rows[key] = ([], [])
                meta = (pay or {})["metadata"]
                vs, sg = rows[key]
                index = int(rec.index)
                prev = batch.get(pid)
                if prev is None and st.has(index):
                    p = old.get(pid)
                    if p is not None and p.vector is not None:
                        v = p.vector.get("") if isinstance(p.vector, dict) else p.vector
                        prev = (np.asarray(v, dtype=np.float32),
                                dict((p.payload or {}).get("metadata") or {}))
                    else:  # counted but gone (deleted by someone else): recount from scratch
                        st.n += 1  # make the mismatch visible to readers rather than guess
                if prev is not None:
                    vs.append(prev[0])
                    sg.append(-1.0)
                    st.apply_meta(prev[1], -1)
                else:
                    st._add_index(index)
                    runs_delta[key[0]] = runs_delta.get(key[0], 0) + 1
                vs.append(i)
                sg.append(1.0)
                st.apply_meta(meta, +1)
                st.sample_add(point_hash(pid), index)
                batch[pid] = (i, meta)
            for key, (vs, sg) in rows.items():
                if all(type(x) is int for x in vs):  # only this batch's rows, in order
                    V = stored[vs]
                else:
                    V = np.stack([stored[x] if type(x) is int else x for x in vs])
                new[key].add_rows(V, np.asarray(sg))
            dim = int(self.store.dim)
            points = []
            manifests: dict[str, list[list[Any]]] = {}
            grown: set[str] = set()
            for key, st in new.items():
                run, step, agent, kind = key
                points.append(_meta_point(summary_id(*key), dim, {
                    "run_id": run, "agent": agent, "step": step, "kind": SUMMARY_KIND,
                    "index": 0, "of_kind": kind, STATS_KEY: st.to_payload()}))
                man = manifests.get(run) or list(self._manifests[run])
                if [step, agent, kind] not in man:
                    man.append([step, agent, kind])
                    grown.add(run)
                manifests[run] = man
            for run, man in manifests.items():
                # an unchanged manifest is on the side already (or pending): written again only
                # to clear this batch's mark, or to keep an untrusted run's mark over a pending one
                if run in grown or run in rewrites or run in self._unsure:
                    points.append(self._manifest_point(run, man, run in self._unsure))
            mark = [self._manifest_point(r, list(self._manifests[r]), True)
                    for r in sorted(rewrites - self._unsure)]
            cat_runs = dict(self._catalog["runs"])
            for run, d in runs_delta.items():
                cat_runs[run] = int(cat_runs.get(run, 0)) + d
            catalog = {"runs": cat_runs}
            points.append(_meta_point(CATALOG_ID, dim, {"kind": SUMMARY_KIND,
                                                        "llmweb_catalog": catalog}))

        def commit() -> None:
            with self._lock:
                self._keys.update(new)
                self._manifests.update(manifests)
                self._catalog = catalog

        return mark, points, commit, rewrites

    def forget_run(self, run_id: str) -> None:
        """After the run's records were deleted: delete its summaries, update the catalog."""
        with self._lock:
            self._manifests.pop(run_id, None)
            self._unsure.discard(run_id)
            for k in [k for k in self._keys if k[0] == run_id]:
                del self._keys[k]
            for pid in [pid for pid, p in self._pending.items()
                        if ((p.payload or {}).get("metadata") or {}).get("run_id") == run_id]:
                del self._pending[pid]
            if not has_side(self.store):
                return
            self._load((), ())
            assert self._catalog is not None
            runs = dict(self._catalog["runs"])
            runs.pop(run_id, None)
            self._catalog = {"runs": runs}
            flt = models.Filter(must=[models.FieldCondition(
                key="metadata.run_id", match=models.MatchValue(value=run_id))])
            call = self.store._writer.call
            call(lambda: self.store.client.delete(
                self.side, points_selector=models.FilterSelector(filter=flt), wait=True),
                what="deleting the run's summaries")
            cat = _meta_point(CATALOG_ID, int(self.store.dim),
                              {"kind": SUMMARY_KIND, "llmweb_catalog": self._catalog})
            self._pending[CATALOG_ID] = cat
            call(lambda: self.store.client.upsert(self.side, points=[cat], wait=True),
                 what="writing the summaries' catalog")
            del self._pending[CATALOG_ID]


def on_close(store: Any) -> int:
    """At ``store.close()``: warn about the side points a failed summary write left unwritten
    (they are lost with the book; the runs' readers read their records). Returns their count."""
    b = store.__dict__.get("_summary_book")
    if b is None:
        return 0
    with b._lock:
        left = list(b._pending.values())
    if left:
        runs = sorted({str(((p.payload or {}).get("metadata") or {}).get("run_id"))
                       for p in left if str(p.id) != CATALOG_ID})
        logger.warning(
            "llmweb: closing the store with %d summary point(s) of run(s) %s not written to %r "
            "(an earlier summary write failed and no later batch wrote them); readers of those "
            "runs read every record. `llmweb store copy` into a new collection rebuilds them",
            len(left), ", ".join(map(repr, runs)) or "(catalog only)", b.side)
    return len(left)


def _rank(p: models.PointStruct) -> int:
    """Summary points first, then manifests, the catalog last: a summary write cut short leaves
    the catalog and manifests behind their summaries, which the readers' checks detect."""
    meta = (p.payload or {}).get("metadata") or {}
    return 2 if str(p.id) == CATALOG_ID else 1 if "llmweb_manifest" in meta else 0


def book(store: Any) -> SummaryBook:
    """The store's :class:`SummaryBook` (made on first use)."""
    b = store.__dict__.get("_summary_book")
    if b is None:
        b = store.__dict__.setdefault("_summary_book", SummaryBook(store))
    return b
