"""The ``edge`` backend of :class:`~llmweb_plugin.store.WebStore`: Qdrant's Rust engine in-process.

``WebStore(folder, backend="edge")`` keeps its collections in ``qdrant-edge-py`` shards (Qdrant's
own segments, payload indexes and write-ahead log, in this process: no server) instead of
qdrant-client's pure-Python local mode. :class:`EdgeClient` speaks the part of
``qdrant_client.QdrantClient`` that the store (and the modules that reach ``store.client``) use,
on the same ``qdrant_client.models`` filters and points, so everything above it (payload layout,
point ids, the vectors as stored) is the same for every backend.

Folder layout (detected on reopening; qdrant-client's local mode has ``meta.json`` instead)::

    <folder>/llmweb-edge.json             {"backend": "edge", "format": 1, "collections": {...}}
    <folder>/collections/<collection>/    one qdrant-edge shard per collection

**Packed bookkeeping.** The engine converts a Python payload value by value (about 4 us per
number on two cores), so a summary point's per-step vector sums would cost milliseconds each.
Inside llmweb's own metadata keys (``metadata.llmweb_*``: summaries, manifests, settings), lists
of 64 or more floats are therefore kept as one tagged base64 string of float64, and lists of 64 or
more lists (a summary's bottom-k sample of ``[hash, index]`` pairs, a run's manifest) as one tagged
JSON string; both are unpacked on every read through this client: exact, and invisible above it.
Filters cannot reach into them (nothing filters there); user metadata is never packed.

A shard is single-process: a second open fails on its write-ahead log's lock, reported as the
store's ``StoreLockedError``. Payload indexes on ``metadata.run_id`` (tenant), ``metadata.agent``,
``metadata.kind`` and ``metadata.step`` are created with each collection. No HNSW index is built
(a plain scan is exact and fast enough for the web's retrieval at these sizes); ``optimize()``
builds one when wanted.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qdrant_client import models

from ._write import Rows

logger = logging.getLogger(__name__)

BACKENDS = ("local", "edge")
MARKER = "llmweb-edge.json"  # an edge folder's own list of collections
_LOCAL_MARKER = "meta.json"  # qdrant-client's local mode
_SHARDS = "collections"
_FORMAT = 1
_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
_INSTALL = "pip install 'llmweb-plugin[edge]'"
_DIST_NAMES = {"Cosine": "Cosine", "Euclid": "Euclid", "Dot": "Dot", "Manhattan": "Manhattan"}


def _qe() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            f"backend='edge' needs qdrant-edge-py (Qdrant's engine in-process): {_INSTALL}"
        ) from exc
    return qdrant_edge


# ---------------------------------------------------------------------- which backend
def folder_backend(folder: str | os.PathLike[str]) -> str | None:
    """``"edge"``, ``"local"`` or ``None`` (not a store yet) for a folder, from its files only.

    Raises:
        ValueError: the folder holds both layouts (an edge marker and qdrant-client's
            ``meta.json``): which one is meant cannot be told.
    """
    path = Path(folder)
    edge, local = (path / MARKER).is_file(), (path / _LOCAL_MARKER).is_file()
    if edge and local:
        raise ValueError(
            f"the folder {os.fspath(path)!r} holds both an edge store ({MARKER}) and a local "
            f"qdrant-client store ({_LOCAL_MARKER}); move one of them to its own folder")
    return "edge" if edge else "local" if local else None


def wants_edge(location: Any, backend: str | None, *, remote: bool) -> bool:
    """Whether ``WebStore(location, backend=...)`` opens an edge folder; checks ``backend``.

    ``backend=None`` takes an existing folder's own backend, and ``"local"`` for a new one.
    ``remote`` is true when a URL or a client was given instead of a location.

    Raises:
        ValueError: an unknown backend; ``"edge"`` without a folder; an explicit backend that
            is not the one the folder was written with (the message names the remedy).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or None: the folder's own); "
                         f"got {backend!r}")
    loc = None if location is None else os.fspath(location)
    if remote or loc in (None, ":memory:"):
        if backend == "edge":
            where = "a URL or client" if remote else "':memory:'"
            raise ValueError(f"backend='edge' keeps its data in a folder; got {where}. Pass a "
                             "folder: WebStore('path/to/folder', backend='edge')")
        return False
    found = folder_backend(loc)
    if backend is not None and found is not None and found != backend:
        raise ValueError(
            f"the folder {loc!r} holds a {found!r} store, not {backend!r}. Open it with "
            f"backend={found!r} (or leave backend= out: the folder's own is used), or copy it "
            f"into a new {backend} folder: `llmweb store copy {loc} NEW_FOLDER --to-backend "
            f"{backend}` (WebStore.copy_to)")
    return (found or backend or "local") == "edge"


def backend_name(client: Any, *, url: str | None = None) -> str:
    """``"edge"``, ``"local"`` or ``"server"``: what a store's client is."""
    if isinstance(client, EdgeClient):
        return "edge"
    opts = getattr(client, "init_options", {}) or {}
    if url is None and (opts.get("location") == ":memory:" or opts.get("path") is not None):
        return "local"
    return "server"


# ---------------------------------------------------------------------- filters and points
_RANGE_KEYS = ("gt", "gte", "lt", "lte")


def _condition(cond: Any) -> Any:
    qe = _qe()
    if isinstance(cond, models.Filter):
        return _filter(cond)
    if isinstance(cond, models.FieldCondition):
        m, r = cond.match, cond.range
        unsupported = [k for k in ("geo_bounding_box", "geo_radius", "geo_polygon",
                                   "values_count") if getattr(cond, k, None) is not None]
        if unsupported or (m is None and r is None and cond.is_empty is None
                           and cond.is_null is None):
            raise TypeError(f"the edge backend does not translate this condition on "
                            f"{cond.key!r} ({unsupported or 'no match or range'})")
        if cond.is_empty is not None or cond.is_null is not None:
            raise TypeError(f"use IsEmptyCondition/IsNullCondition for {cond.key!r}")
        if m is not None and r is not None:
            raise TypeError(f"a condition on {cond.key!r} with both match and range")
        if isinstance(m, models.MatchValue):
            return qe.FieldCondition(key=cond.key, match=qe.MatchValue(m.value))
        if isinstance(m, models.MatchAny):
            return qe.FieldCondition(key=cond.key, match=qe.MatchAny(list(m.any)))
        if isinstance(m, models.MatchExcept):
            return qe.FieldCondition(key=cond.key, match=qe.MatchExcept(list(m.except_)))
        if isinstance(r, models.Range):
            return qe.FieldCondition(key=cond.key, range=qe.RangeFloat(
                **{k: getattr(r, k) for k in _RANGE_KEYS if getattr(r, k) is not None}))
        raise TypeError(f"the edge backend does not translate {type(m or r).__name__} on "
                        f"{cond.key!r}")
    if isinstance(cond, models.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, models.HasIdCondition):
        return qe.HasIdCondition(set(cond.has_id))
    raise TypeError(f"the edge backend does not translate a {type(cond).__name__} filter "
                    "condition")


def _conditions(conds: Any) -> list[Any] | None:
    if conds is None:
        return None
    if not isinstance(conds, list):
        conds = [conds]
    return [_condition(c) for c in conds]


def _filter(flt: models.Filter | None) -> Any:
    """A ``qdrant_client.models.Filter`` as the edge engine's filter (``None`` stays ``None``).

    Raises:
        TypeError: a condition this backend does not translate (never silently dropped).
    """
    if flt is None:
        return None
    if flt.min_should is not None:
        raise TypeError("the edge backend does not translate min_should filters")
    return _qe().Filter(must=_conditions(flt.must), should=_conditions(flt.should),
                        must_not=_conditions(flt.must_not))


def _vector(vec: Any) -> Any:
    if isinstance(vec, dict):
        if set(vec) != {""}:
            raise ValueError(f"the edge backend keeps one unnamed vector; got {sorted(vec)}")
        vec = vec[""]
    return vec.tolist() if hasattr(vec, "tolist") else list(vec)


_PACK_TAG = "llmweb-f64:"
_JSON_TAG = "llmweb-json:"
_PACK_MIN = 64


def _pack(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, list):
        types = set(map(type, value))
        if len(value) >= _PACK_MIN and types == {float}:
            return _PACK_TAG + base64.b64encode(struct.pack(f"<{len(value)}d", *value)).decode()
        if len(value) >= _PACK_MIN and types == {list}:  # e.g. the bottom-k sample, a manifest
            return _JSON_TAG + json.dumps(value, separators=(",", ":"))
        if all(t in _SCALARS for t in types):  # nothing inside to pack
            return list(value)
        return [_pack(v) for v in value]
    return value


_SCALARS = frozenset({int, float, str, bool, type(None)})


def _unpack(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_PACK_TAG):
        raw = base64.b64decode(value[len(_PACK_TAG):])
        return list(struct.unpack(f"<{len(raw) // 8}d", raw))
    if isinstance(value, str) and value.startswith(_JSON_TAG):
        return json.loads(value[len(_JSON_TAG):])
    if isinstance(value, dict):
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


def _own_keys(meta: Any) -> list[str]:
    return [k for k in meta if k.startswith("llmweb_")] if isinstance(meta, dict) else []


def _packed(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """``payload`` with the float lists of its ``metadata.llmweb_*`` values packed."""
    meta = (payload or {}).get("metadata")
    own = _own_keys(meta)
    if not own:
        return payload
    return {**payload, "metadata": {**meta, **{k: _pack(meta[k]) for k in own}}}  # type: ignore


def _unpacked(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    meta = (payload or {}).get("metadata")
    own = _own_keys(meta)
    if not own:
        return payload
    meta.update({k: _unpack(meta[k]) for k in own})  # a fresh dict from the engine
    return payload


class _Point:
    """A point read back: the attributes of qdrant-client's ``Record``/``ScoredPoint``."""

    __slots__ = ("id", "payload", "score", "vector", "version")

    def __init__(self, raw: Any, *, score: float | None = None) -> None:
        pid = raw.id
        self.id = pid if isinstance(pid, int) else str(pid)
        self.payload = _unpacked(raw.payload)
        self.vector = raw.vector
        self.score = score
        self.version = 0

    def __repr__(self) -> str:
        return f"_Point(id={self.id!r}, score={self.score!r})"


@dataclass(frozen=True)
class _Response:
    """What ``query_points`` and ``count`` return: ``.points`` or ``.count``."""

    points: list[_Point] | None = None
    count: int = 0


@dataclass(frozen=True)
class _CollectionInfo:
    """The part of qdrant-client's ``CollectionInfo`` the store reads: ``.config.params.vectors``
    and ``.points_count``."""

    config: Any
    points_count: int


# ---------------------------------------------------------------------- the client
class EdgeClient:
    """A folder of qdrant-edge shards behind the ``QdrantClient`` calls ``WebStore`` makes.

    Args:
        folder: the store's folder (created if missing).
        locked: the exception class raised when another process (or client) has it open.

    Raises:
        locked: a shard's write-ahead log is locked by another open store.
        ValueError: the folder's ``llmweb-edge.json`` is unreadable, or lists a collection
            whose shard is missing.
    """

    def __init__(self, folder: str | os.PathLike[str], *, locked: type[Exception]) -> None:
        self._qe = _qe()
        self.folder = Path(folder)
        self._locked = locked
        self.init_options = {"path": os.fspath(self.folder), "backend": "edge"}
        self._meta = self._read_meta()
        self._shards: dict[str, Any] = {}
        try:
            for name in self._meta["collections"]:
                self._shards[name] = self._load(name)
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- folder
    def _read_meta(self) -> dict[str, Any]:
        path = self.folder / MARKER
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            meta: dict[str, Any] = {"backend": "edge", "format": _FORMAT, "collections": {}}
            self._write_meta(meta)
            return meta
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            ok = isinstance(meta, dict) and isinstance(meta.get("collections"), dict)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            ok, meta = False, str(exc)
        if not ok:
            raise ValueError(
                f"the edge store {os.fspath(self.folder)!r} is damaged: {os.fspath(path)!r} "
                f"cannot be read ({meta if isinstance(meta, str) else 'no collections'}). "
                f"Restore it from a backup (each shard under {_SHARDS}/ keeps its data)")
        return meta

    def _write_meta(self, meta: dict[str, Any]) -> None:
        path = self.folder / MARKER
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _shard_dir(self, name: str) -> Path:
        return self.folder / _SHARDS / name

    def _config(self, name: str) -> Any:
        spec = self._meta["collections"][name]
        qe = self._qe
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(
            size=int(spec["size"]), distance=getattr(qe.Distance, spec["distance"])))

    def _load(self, name: str) -> Any:
        where = self._shard_dir(name)
        if not (where / "segments").is_dir():
            raise ValueError(
                f"the edge store {os.fspath(self.folder)!r} lists collection {name!r} but its "
                f"shard {os.fspath(where)!r} is missing. Restore it from a backup, or remove "
                f"{name!r} from {MARKER} to give it up")
        try:
            return self._qe.EdgeShard.load(os.fspath(where), self._config(name))
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise self._locked(
                    f"the edge store folder {os.fspath(self.folder)!r} is already open in "
                    "another process or WebStore. An edge shard is single-process: close the "
                    "other WebStore, or copy the run to a Qdrant server (`llmweb store copy`) "
                    "for multi-process work.") from exc
            raise

    def _shard(self, name: str) -> Any:
        if self._shards is None:
            raise RuntimeError("this edge store is closed")
        try:
            return self._shards[name]
        except KeyError:
            raise ValueError(f"collection {name!r} does not exist in edge store "
                             f"{os.fspath(self.folder)!r}") from None

    # -------------------------------------------------------------- collections
    def get_collections(self) -> Any:
        return models.CollectionsResponse(collections=[
            models.CollectionDescription(name=n) for n in sorted(self._meta["collections"])])

    def collection_exists(self, collection_name: str) -> bool:
        return collection_name in self._meta["collections"]

    def create_collection(self, collection_name: str, vectors_config: Any, **_: Any) -> bool:
        if not _NAME_OK.match(collection_name):
            raise ValueError(f"collection name {collection_name!r} cannot name an edge shard's "
                             "folder; use letters, digits, '_', '.' and '-'")
        if self.collection_exists(collection_name):
            raise ValueError(f"collection {collection_name!r} already exists")
        if isinstance(vectors_config, dict):
            if set(vectors_config) != {""}:
                raise ValueError("the edge backend keeps one unnamed vector per point")
            vectors_config = vectors_config[""]
        dist = models.Distance(vectors_config.distance).value
        self._meta["collections"][collection_name] = {"size": int(vectors_config.size),
                                                      "distance": _DIST_NAMES[dist]}
        qe = self._qe
        shard = qe.EdgeShard.create(os.fspath(self._shard_dir(collection_name)),
                                    self._config(collection_name))
        for key, schema in (("metadata.run_id", qe.KeywordIndexParams(is_tenant=True)),
                            ("metadata.agent", qe.PayloadSchemaType.Keyword),
                            ("metadata.kind", qe.PayloadSchemaType.Keyword),
                            ("metadata.step", qe.PayloadSchemaType.Integer)):
            shard.update(qe.UpdateOperation.create_field_index(key, schema))
        self._shards[collection_name] = shard
        self._write_meta(self._meta)
        return True

    def get_collection(self, collection_name: str) -> _CollectionInfo:
        shard = self._shard(collection_name)
        spec = self._meta["collections"][collection_name]
        params = models.VectorParams(size=int(spec["size"]),
                                     distance=models.Distance(spec["distance"]))
        config = models.CollectionParams(vectors=params)
        return _CollectionInfo(config=SimpleNamespace(params=config),
                               points_count=int(shard.info().points_count))

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        import shutil

        shard = self._shards.pop(collection_name, None)
        if shard is None:
            return False
        shard.close()
        del self._meta["collections"][collection_name]
        self._write_meta(self._meta)
        shutil.rmtree(self._shard_dir(collection_name), ignore_errors=True)
        return True

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None,
                             **_: Any) -> None:
        """Kept for the client's API; the collection's indexes are made when it is created."""
        logger.debug("edge: payload index %r on %r exists from creation", field_name,
                     collection_name)

    # -------------------------------------------------------------- writes
    #: ``WebStore`` hands record batches over as ``_write.Rows`` (ids, one array, payloads)
    takes_rows = True

    def upsert(self, collection_name: str, points: Sequence[Any], wait: bool = True,
               **_: Any) -> None:
        if isinstance(points, Rows):
            return self.upsert_arrays(collection_name, points.ids, points.vectors,
                                      points.payloads, plain=points.plain)
        qe = self._qe
        shard = self._shard(collection_name)
        shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, _vector(p.vector), _packed(p.payload)) for p in points]))

    def upsert_arrays(self, collection_name: str, ids: Sequence[str], vectors: Any,
                      payloads: Sequence[dict[str, Any]], *, plain: bool = False) -> None:
        """Upsert rows of a float32 array (shape ``(n, dim)``) without building ``PointStruct``s.

        ``plain``: the caller knows no payload has ``metadata.llmweb_*`` keys (nothing to pack).
        """
        qe = self._qe
        Point = qe.Point
        rows = vectors.tolist()
        if not plain:
            payloads = [_packed(p) for p in payloads]
        self._shard(collection_name).update(qe.UpdateOperation.upsert_points(
            [Point(i, v, p) for i, v, p in zip(ids, rows, payloads)]))

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True,
               **_: Any) -> None:
        qe = self._qe
        shard = self._shard(collection_name)
        if isinstance(points_selector, models.FilterSelector):
            op = qe.UpdateOperation.delete_points_by_filter(_filter(points_selector.filter))
        elif isinstance(points_selector, models.PointIdsList):
            op = qe.UpdateOperation.delete_points(list(points_selector.points))
        else:
            raise TypeError(f"the edge backend does not translate {type(points_selector).__name__}")
        shard.update(op)

    def set_payload(self, collection_name: str, payload: dict[str, Any], points: Any,
                    key: str | None = None, wait: bool = True, **_: Any) -> None:
        qe = self._qe
        shard = self._shard(collection_name)
        if key == "metadata":
            payload = {k: _pack(v) if k.startswith("llmweb_") else v for k, v in payload.items()}
        if isinstance(points, models.FilterSelector):
            op = qe.UpdateOperation.set_payload_by_filter(_filter(points.filter), payload, key)
        elif isinstance(points, models.PointIdsList):
            op = qe.UpdateOperation.set_payload(list(points.points), payload, key)
        else:
            op = qe.UpdateOperation.set_payload(list(points), payload, key)
        shard.update(op)

    # -------------------------------------------------------------- reads
    def scroll(self, collection_name: str, scroll_filter: models.Filter | None = None,
               limit: int = 10, offset: Any = None, with_payload: Any = True,
               with_vectors: Any = False, **_: Any) -> tuple[list[_Point], Any]:
        req = self._qe.ScrollRequest(offset=offset, limit=int(limit), filter=_filter(scroll_filter),
                                     with_payload=with_payload, with_vector=bool(with_vectors))
        pts, nxt = self._shard(collection_name).scroll(req)
        return [_Point(p) for p in pts], nxt

    def retrieve(self, collection_name: str, ids: Iterable[Any], with_payload: Any = True,
                 with_vectors: Any = False, **_: Any) -> list[_Point]:
        pts = self._shard(collection_name).retrieve(list(ids), with_payload, bool(with_vectors))
        return [_Point(p) for p in pts]

    def count(self, collection_name: str, count_filter: models.Filter | None = None,
              exact: bool = True, **_: Any) -> _Response:
        req = self._qe.CountRequest(exact=True, filter=_filter(count_filter))
        return _Response(count=int(self._shard(collection_name).count(req)))

    def query_points(self, collection_name: str, query: Any, query_filter: Any = None,
                     limit: int = 10, with_payload: Any = True, with_vectors: Any = False,
                     **_: Any) -> _Response:
        qe = self._qe
        vec = query.tolist() if hasattr(query, "tolist") else list(query)
        req = qe.QueryRequest(limit=int(limit), query=qe.Query.Nearest(vec),
                              filter=_filter(query_filter), with_payload=with_payload,
                              with_vector=bool(with_vectors))
        res = self._shard(collection_name).query(req)
        return _Response(points=[_Point(p, score=p.score) for p in res])

    # -------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        for shard in (self._shards or {}).values():
            shard.flush()

    def optimize(self, collection_name: str) -> bool:
        """Run the engine's optimizers (builds the HNSW index; minutes at 100k points)."""
        return bool(self._shard(collection_name).optimize())

    def close(self, **_: Any) -> None:
        shards, self._shards = self._shards, None  # type: ignore[assignment]
        for name, shard in (shards or {}).items():
            try:
                shard.flush()
            finally:
                shard.close()
            logger.debug("edge: closed shard %r", name)
