"""The record side of :meth:`~llmweb_plugin.store.WebStore.upsert`: checked vectors and :class:`Rows`.

:func:`prepare` checks a batch of records and their vectors (the same checks, errors and order as
one record at a time, with the finiteness check done on the whole array) and returns the rows as
the collection keeps them. :class:`Rows` holds the batch as columns (point ids, one float32
array, payloads), each computed once: the summaries read the ids and payloads from it, the edge
backend hands the array to its engine without building a ``PointStruct`` per record, and any other
client gets the same ``PointStruct``\\ s as before (:meth:`Rows.structs`). What is stored (ids,
payload, vector values) is the same on every path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from qdrant_client import models

Record = Any  # a store.Record (not imported here: store is _record's only importer)


__all__ = ["Rows", "for_client", "prepare", "rows"]


class _Pt:
    """One row of :class:`Rows` seen as a point (``id``, ``vector``, ``payload``)."""

    __slots__ = ("id", "payload", "vector")

    def __init__(self, pid: str, vector: np.ndarray, payload: dict[str, Any]) -> None:
        self.id, self.vector, self.payload = pid, vector, payload

    def __repr__(self) -> str:
        return f"_Pt(id={self.id!r})"


class Rows(Sequence[_Pt]):
    """A batch of records to write, as columns: point ids, vectors (float32, ``(n, dim)``) and
    payloads. A sequence of points (slicing gives ``Rows``), so writers that split a batch or
    look at its ids work on it unchanged.

    Attributes:
        ids: the point ids.
        vectors: the vectors as stored, one row per point.
        payloads: the payloads (langchain-qdrant layout).
        plain: no payload's metadata has an ``llmweb_*`` key (nothing for a backend to pack).
    """

    __slots__ = ("ids", "payloads", "plain", "vectors")

    def __init__(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]],
                 *, plain: bool = False) -> None:
        self.ids, self.vectors, self.payloads, self.plain = ids, vectors, payloads, plain

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> _Pt: ...
    @overload
    def __getitem__(self, i: slice) -> Rows: ...
    def __getitem__(self, i: int | slice) -> _Pt | Rows:
        if isinstance(i, slice):
            return Rows(self.ids[i], self.vectors[i], self.payloads[i], plain=self.plain)
        return _Pt(self.ids[i], self.vectors[i], self.payloads[i])

    def __iter__(self) -> Iterator[_Pt]:
        return map(_Pt, self.ids, self.vectors, self.payloads)

    def structs(self) -> list[models.PointStruct]:
        """The rows as qdrant-client points (what every client other than edge is given)."""
        return [models.PointStruct(id=i, vector=v, payload=p)
                for i, v, p in zip(self.ids, self.vectors.tolist(), self.payloads)]


def _first_nonfinite(recs: Sequence[Record], V: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(V).all(axis=1)) if len(V) else ()
    if len(bad):
        raise ValueError(f"record {recs[int(bad[0])].point_id} has a non-finite vector")


def prepare(recs: Sequence[Record], vectors: np.ndarray | None, dim: int,
            kinds: Sequence[str]) -> np.ndarray:
    """The vectors of ``recs`` (``vectors`` if given, else each record's), checked, as float32
    rows of shape ``(n, dim)`` (not yet normalised: ``WebStore.as_stored`` does that).

    Raises:
        ValueError: the first bad record, in order: a kind not in ``kinds``, no vector, a vector
            of another size, a non-finite vector; or ``vectors`` of the wrong shape.
    """
    if vectors is not None:
        V = np.asarray(vectors, dtype=np.float32)
        if V.shape != (len(recs), dim):
            raise ValueError(f"vectors has shape {V.shape}; expected ({len(recs)}, {dim})")
    rows: list[np.ndarray] = []
    for i, rec in enumerate(recs):
        err = None
        if rec.kind not in kinds:
            err = ValueError(f"kind must be one of {tuple(kinds)}; got {rec.kind!r}")
        elif vectors is None:
            vec = rec.vector
            if vec is None:
                err = ValueError(f"record {rec.point_id} has no vector; embed it first")
            else:
                vec = np.asarray(vec, dtype=np.float32).reshape(-1)
                if vec.shape[0] != dim:
                    err = ValueError(f"vector of size {vec.shape[0]}; this store holds {dim}-d")
                rows.append(vec)
        if err is not None:  # a non-finite vector earlier in the batch is reported first
            _first_nonfinite(recs, V[:i] if vectors is not None else
                             (np.stack(rows[:i]) if i else np.zeros((0, dim), np.float32)))
            raise err
    if vectors is None:
        V = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    _first_nonfinite(recs, V)
    return V


def rows(recs: Sequence[Record], stored: np.ndarray) -> Rows:
    """The batch to write: each record's point id and payload (computed once) beside ``stored``."""
    plain = not any(str(k).startswith("llmweb_") for r in recs for k in r.metadata)
    return Rows([r.point_id for r in recs], stored, [r.payload() for r in recs], plain=plain)


def for_client(client: Any, batch: Sequence[Any]) -> Sequence[Any]:
    """``batch`` as ``client.upsert`` takes it: ``Rows`` for a client that says it takes them
    (``takes_rows``: the edge backend's), else qdrant-client points."""
    if isinstance(batch, Rows) and not getattr(client, "takes_rows", False):
        return batch.structs()
    return batch
