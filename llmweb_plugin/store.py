"""The shared web: one Qdrant collection per embedding model, records with their provenance.

``WebStore`` wraps a :class:`qdrant_client.QdrantClient`. The same calls serve qdrant-client's
embedded local mode (``":memory:"`` or a folder) and a Qdrant server or cluster (``url=``), so a
URL is all a user changes.

Point layout (compatible with ``langchain_qdrant.QdrantVectorStore``)::

    vector:  unnamed, size = embedder.dim, cosine distance
    payload: {"page_content": text,
              "metadata": {"run_id", "agent", "step", "kind", "index", "created_at", ...user keys}}

**What the vectors are.** With a cosine collection (the default) the store keeps unit vectors:
Qdrant normalises cosine vectors itself (a server always; qdrant-client's local mode in memory,
while it saves them to a folder as given, so a reopened folder would read back other vectors).
:meth:`WebStore.upsert` therefore writes each nonzero vector scaled to unit length (a zero vector
stays zero), in a form Qdrant keeps bit for bit, and :meth:`WebStore.records` reads those same
vectors in memory and after reopening. Every metric (the live monitor's, a report's, a rebuild from
the store in another process) is computed on these stored vectors, so they all agree for any
embedder. Euclid, dot and manhattan collections keep the vectors as given. (A record rewritten
under the same id in local mode, and a Qdrant server's own normalisation, may differ from the
written vector in the last float32 bit, about 1e-7 relative.)

Point ids are ``uuid5(run_id | agent | step | kind | index)``: writing the same record twice is
idempotent. ``kind`` is one of ``seed``, ``post``, ``response``, ``external``, ``human``; the web
``A(t)`` of a run is every record of the web kinds (all but ``response``).

Example:
    >>> import numpy as np
    >>> store = WebStore(":memory:", embedder=None, dim=3, collection="demo")
    >>> store.upsert([Record(text="hello", run_id="r", agent="seed", step=0, kind="seed",
    ...                      vector=np.array([1.0, 0.0, 0.0]))])
    1
    >>> [r.text for r in store.web("r")]
    ['hello']
    >>> store.close()
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from . import _edge, _summaries, _summary_book, _write
from ._copy import CopyResult, copy_points
from ._local_folder import _check_local_folder, _unlisted_collections
from ._record import KINDS, RESERVED_METADATA, WEB_KINDS, Record, _sort_key, point_id
from ._server import RetryPolicy, WriteStats, _Writer, ensure_payload_indexes
from .embeddings import Embedder, check_embedder, default_embedder

__all__ = [
    "KINDS",
    "RESERVED_METADATA",
    "WEB_KINDS",
    "Record",
    "StoreLockedError",
    "WebStore",
    "point_id",
]

logger = logging.getLogger(__name__)

_UPSERT_BATCH = 256
_SCROLL_PAGE = 1024
# Local mode filters the whole collection again for every page: read it in one page there.
_LOCAL_SCROLL_PAGE = 1_000_000


class StoreLockedError(RuntimeError):
    """A local Qdrant folder is already open in another process (or another client)."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "embedder"


#: Rounds of Qdrant's own float32 normalisation tried to reach a vector it leaves unchanged.
_FIXED_POINT_ROUNDS = 8


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows of ``vectors`` (shape ``(n, dim)``) as a cosine collection keeps them (float32).

    A nonzero row is scaled to unit length (in float64, after dividing by its largest magnitude,
    so no row overflows or underflows), then made a fixed point of the normalisation
    qdrant-client's local mode applies in memory (``row / np.linalg.norm(row)`` in float32): the
    copy Qdrant holds in memory and the copy it saves to disk are then the same bits. A row whose
    float32 norm is already exactly 1 is returned unchanged, so this is idempotent. A zero row
    stays zero (Qdrant keeps it; the metrics count it in ``n_zero_vectors``).
    """
    V = np.array(vectors, dtype=np.float32, copy=True).reshape(len(vectors), -1)
    sqrt = np.sqrt  # np.linalg.norm(x) of a real 1-d x is sqrt(x.dot(x)): the same bits
    todo = np.flatnonzero((sqrt(np.array([r.dot(r) for r in V], np.float32)) != 1.0)
                          & V.any(axis=1))
    if not len(todo):
        return V
    W = V[todo].astype(np.float64)
    W /= np.max(np.abs(W), axis=1, keepdims=True)  # elementwise: the same as row by row
    U = (W / sqrt(np.array([w.dot(w) for w in W]))[:, None]).astype(np.float32)
    for i, u in zip(todo, U):
        for _ in range(_FIXED_POINT_ROUNDS):
            n = sqrt(u.dot(u))
            if n == 1.0:
                break
            u = u / n
        V[i] = u
    return V


def _distance(name: str | models.Distance) -> models.Distance:
    if isinstance(name, models.Distance):
        return name
    table = {d.value.lower(): d for d in models.Distance}
    try:
        return table[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown distance {name!r}; use one of {sorted(table)}"
        ) from None


class WebStore:
    """The shared web of one or many runs, in one Qdrant collection.

    Args:
        location: ``":memory:"`` (default) or a folder for qdrant-client's embedded local mode.
        url: a Qdrant server or cluster URL instead of a local location.
        api_key: the server's API key (never logged).
        client: an existing ``QdrantClient`` to use as is (``close()`` leaves it open).
        collection: collection name; default ``llmweb__<embedder name>``.
        embedder: the :class:`~llmweb_plugin.embeddings.Embedder` whose vectors this collection
            holds; default :func:`~llmweb_plugin.embeddings.default_embedder`. Pass ``None``
            together with ``dim=`` for a store that only receives vectors, or ``None`` alone to
            read an existing collection: its vector size and distance are taken from it (the
            collection named by ``collection=``, else the only ``llmweb__*`` collection there).
        dim: vector size when no embedder is given.
        distance: ``"cosine"``, ``"euclid"``, ``"dot"`` or ``"manhattan"``; default (``None``)
            cosine, or the existing collection's when its size is read from it. A cosine
            collection stores (and the metrics measure) unit vectors, see :meth:`as_stored`;
            the others store the vectors as given.
        backend: for a folder, ``"local"`` (qdrant-client's local mode, what langchain-qdrant
            and LlamaIndex open) or ``"edge"`` (Qdrant's engine in-process, for large runs: see
            :mod:`llmweb_plugin._edge`); default: the folder's own, ``"local"`` for a new one.
        retries, retry_backoff, retry_deadline: how a write to a server is retried on transient
            errors (connection, timeout, 5xx, 429): at most ``retries`` retries, a first delay of
            ``retry_backoff`` s doubling with jitter, ``retry_deadline`` s in all; a 4xx is not
            retried. See :mod:`llmweb_plugin._server` and ``write_stats``. Unused in local mode.
        **client_kwargs: passed to ``QdrantClient`` (e.g. ``timeout``: seconds per request,
            default 5; ``prefer_grpc``).

    Raises:
        StoreLockedError: the local folder is already open in another process.
        ValueError: an existing collection has another vector size or distance; a local
            folder is damaged (unreadable ``meta.json``, a collection's ``storage.sqlite``
            missing); no collection to read when neither an embedder nor ``dim=`` is given.

    Example:
        >>> import numpy as np, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with WebStore(folder, embedder=None, dim=3) as w:
        ...     w.upsert([Record(text="hi", run_id="r", agent="a", step=1,
        ...                      vector=np.array([1.0, 0.0, 0.0]))])
        1
        >>> with WebStore(folder, embedder=None) as r:   # read: no dim needed
        ...     (r.collection, r.dim, r.count("r"))
        ('llmweb__vectors-3', 3, 1)
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        client: QdrantClient | None = None,
        collection: str | None = None,
        embedder: Embedder | None | str = "default",
        dim: int | None = None,
        distance: str | models.Distance | None = None,
        backend: str | None = None,
        retries: int = 8, retry_backoff: float = 0.25, retry_deadline: float = 60.0,
        **client_kwargs: Any,
    ) -> None:
        given = sum(x is not None for x in (location, url, client))
        policy = RetryPolicy(retries=retries, backoff=retry_backoff, deadline=retry_deadline)
        if given > 1:
            raise ValueError("pass only one of location, url= or client=")
        if isinstance(embedder, str):
            if embedder != "default":
                raise ValueError("embedder must be an Embedder object, 'default' or None")
            chosen: Embedder | None = default_embedder() if dim is None else None
        else:
            chosen = embedder
        self.embedder: Embedder | None = None if chosen is None else check_embedder(chosen)
        if self.embedder is not None:
            if dim is not None and dim != self.embedder.dim:
                raise ValueError(f"dim={dim} disagrees with the embedder's dim={self.embedder.dim}")
            dim = int(self.embedder.dim)
        if dim is not None and (isinstance(dim, bool) or int(dim) < 1):
            raise ValueError(
                f"dim must be a positive vector size; got {dim!r}. Pass an embedder, dim=, or "
                "neither (embedder=None) to read an existing collection")
        read_dim = dim is None  # no embedder, no dim: take both from an existing collection
        self.dim = 0 if dim is None else int(dim)
        self.distance = _distance("cosine" if distance is None else distance)
        name = self.embedder.name if self.embedder is not None else f"vectors-{self.dim}"
        self.collection = collection or ("" if read_dim else f"llmweb__{_slug(name)}")
        self._owns_client = client is None
        self._lock = threading.RLock()
        self._closed = False
        self._folder: Path | None = None
        edge = _edge.wants_edge(location, backend, remote=location is None and given > 0)
        if client is not None:
            self.client = client
            self._where = "the given Qdrant client"
        elif edge:  # Qdrant's Rust engine in-process (qdrant-edge), same API and layout
            self._folder = Path(os.fspath(location))  # type: ignore[arg-type]
            self._where = f"edge folder {os.fspath(self._folder)!r}"
            self.client = _edge.EdgeClient(self._folder, locked=StoreLockedError)  # type: ignore
        elif url is not None:
            self.client = QdrantClient(url=url, api_key=api_key, **client_kwargs)
            self._where = f"the Qdrant server {url!r}"
        else:
            loc = ":memory:" if location is None else os.fspath(location)
            self._where = "this in-memory Qdrant" if loc == ":memory:" else f"folder {loc!r}"
            if loc == ":memory:":
                self.client = QdrantClient(location=":memory:", **client_kwargs)
            else:
                self._folder = Path(loc)
                if read_dim and not self._folder.is_dir():
                    raise ValueError(
                        f"no Qdrant folder at {loc!r} to read. Pass an embedder or dim= to "
                        "create a new store there")
                _check_local_folder(self._folder)
                Path(loc).mkdir(parents=True, exist_ok=True)
                try:
                    self.client = QdrantClient(path=loc, **client_kwargs)
                except RuntimeError as exc:
                    if "already accessed" in str(exc):
                        raise StoreLockedError(
                            f"the local Qdrant folder {loc!r} is already open in another process "
                            "or client. Embedded local mode is single-process: close the other "
                            "WebStore, or run a Qdrant server and use WebStore(url=...) for "
                            "multi-process work."
                        ) from exc
                    raise
        opts = getattr(self.client, "init_options", {}) or {}
        self.is_local = opts.get("location") == ":memory:" or opts.get("path") is not None
        self._writer = _Writer(None if self.is_local else policy, self._where)  # retries
        self.backend = _edge.backend_name(self.client, url=url)  # "local", "edge" or "server"
        self._page = _LOCAL_SCROLL_PAGE if self.is_local else _SCROLL_PAGE
        try:
            if read_dim:
                self._adopt_collection(collection, keep_distance=distance is not None)
            else:
                self._writer.call(lambda: self._ensure_collection(named=collection is not None),
                                  what="opening the collection")
        except BaseException:
            if self._owns_client:  # release a local folder's lock for the next attempt
                self.client.close()
            raise

    # ------------------------------------------------------------------ setup
    def _adopt_collection(self, collection: str | None, *, keep_distance: bool) -> None:
        """Open an existing collection, taking its vector size (and distance) from it."""
        side = _summaries.is_side  # summaries' collections are neither listed nor picked
        names = [n for n in sorted(c.name for c in self.client.get_collections().collections)
                 if not side(n)]
        if collection is None:
            ours = [n for n in names if n.startswith("llmweb__")]
            if len(ours) != 1:
                lost = ([n for n in _unlisted_collections(self._folder, names) if not side(n)]
                        if self._folder is not None else [])
                hint = (f" The folder also holds data of collections its meta.json does not list: "
                        f"{', '.join(map(repr, lost))}; pass collection=NAME and dim= (its "
                        "vector size) to open one." if lost else "")
                raise ValueError(
                    f"{'no' if not ours else 'several'} llmweb collections in {self._where} "
                    f"(collections: {', '.join(map(repr, names)) or 'none'}) and no embedder or "
                    f"dim= to create one: pass collection=NAME to read one, or an embedder or "
                    f"dim= to create a new one.{hint}")
            collection = ours[0]
        elif not self.client.collection_exists(collection):
            raise ValueError(
                f"collection {collection!r} does not exist in {self._where} "
                f"(collections: {', '.join(map(repr, names)) or 'none'}); pass an embedder or "
                "dim= to create it")
        self.collection = collection
        vectors = self._vector_params()
        self.dim = int(vectors.size)
        if not keep_distance:
            self.distance = vectors.distance
        self._validate_collection()
        logger.info("llmweb: reading collection %r (%d-d vectors, %s distance)",
                    self.collection, self.dim, self.distance.value)

    def _ensure_collection(self, *, named: bool = True) -> None:
        with self._lock:
            if self.client.collection_exists(self.collection):
                self._validate_collection()
                if not self.is_local:  # a server: add the payload indexes it lacks
                    ensure_payload_indexes(self.client, self.collection, self._writer, created=False)
                return
            if not named:  # a default name that is new here: say what else the store holds
                others = sorted(n for c in self.client.get_collections().collections if (
                    n := c.name).startswith("llmweb__") and not _summaries.is_side(n))
                if others:
                    logger.warning(
                        "llmweb: creating a new, empty collection %r; this Qdrant store already "
                        "holds %s. Pass collection=... (or the embedder those were made with) "
                        "to read them.", self.collection, ", ".join(map(repr, others)))
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.dim, distance=self.distance),
            )
            if not self.is_local:  # payload indexes have no effect in local mode
                ensure_payload_indexes(self.client, self.collection, self._writer, created=True)
            _summaries.ensure_side(self)  # the summaries' collection, beside the records

    def _vector_params(self) -> models.VectorParams:
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if isinstance(vectors, dict):
            if "" not in vectors:
                raise ValueError(
                    f"collection {self.collection!r} uses named vectors {sorted(vectors)} "
                    "(e.g. LlamaIndex's 'text-dense' layout); llmweb needs the unnamed-vector "
                    "layout of langchain-qdrant. Use another collection name."
                )
            vectors = vectors[""]
        if vectors is None:
            raise ValueError(f"collection {self.collection!r} has no dense vector configuration")
        return vectors

    def _validate_collection(self) -> None:
        vectors = self._vector_params()
        size, dist = vectors.size, vectors.distance
        if size != self.dim or dist != self.distance:
            raise ValueError(
                f"collection {self.collection!r} holds {size}-d vectors with {dist.value} distance, "
                f"but this store was opened for {self.dim}-d vectors with {self.distance.value} "
                "distance. Use the embedder the collection was made with, or another collection."
            )

    # ------------------------------------------------------------------ writes
    def upsert(self, records: Iterable[Record], vectors: np.ndarray | None = None) -> int:
        """Write records (idempotent by point id), in batches. Returns the number written.

        Args:
            records: records; each needs a ``vector`` unless ``vectors`` is given.
            vectors: optional array of shape ``(n_records, dim)`` overriding ``Record.vector``.
        """
        recs = list(records)
        V = _write.prepare(recs, vectors, self.dim, KINDS)
        stored = self.as_stored(V) if len(V) else V
        points = _write.rows(recs, stored)  # ids and payloads computed once, vectors as one array
        with self._lock:
            self._check_open()  # the records, then their summaries in the side collection
            _summary_book.book(self).write(recs, stored, points, self._put)
        return len(recs)

    def _put(self, collection: str, points: Sequence[Any]) -> None:
        for start in range(0, len(points), _UPSERT_BATCH):
            batch = _write.for_client(self.client, points[start : start + _UPSERT_BATCH])
            self._writer.call(lambda b=batch: self.client.upsert(  # type: ignore[misc]
                collection, points=b, wait=True), what=f"writing {len(batch)} point(s)")

    def as_stored(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` (shape ``(n, dim)``) as this collection keeps them, as float32.

        A cosine collection keeps unit vectors (Qdrant normalises them on a server and in
        local mode alike), so :meth:`upsert` writes each nonzero vector scaled to unit length and
        a zero vector as zero; what is written is exactly what is read back, in the same process
        and after reopening a local folder. Other distances keep the vectors as given. The
        monitor measures these vectors, so every read-out of a run gives the same numbers.
        Idempotent. Rows are not checked for NaN or inf here (:meth:`upsert` refuses them).

        Raises:
            ValueError: ``vectors`` is not of shape ``(n, dim)``.
        """
        V = np.asarray(vectors, dtype=np.float32)
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"vectors has shape {V.shape}; expected (n, {self.dim})")
        if self.distance == models.Distance.COSINE:
            return _unit_rows(V)
        return V.copy()

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        run_id: str,
        agent: str,
        step: int,
        kind: str,
        start_index: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """Embed ``texts`` with the store's embedder and write them; returns the records."""
        if self.embedder is None:
            raise ValueError("this store has no embedder; pass vectors to upsert() instead")
        texts = list(texts)
        vecs = self.embedder.embed(texts) if texts else np.zeros((0, self.dim), np.float32)
        if texts and np.all(np.isfinite(vecs)):  # the records carry the vectors as stored
            vecs = self.as_stored(vecs)
        recs = [
            Record(text=t, run_id=run_id, agent=agent, step=step, kind=kind,
                   index=start_index + i, metadata=dict(metadata or {}), vector=v)
            for i, (t, v) in enumerate(zip(texts, vecs))
        ]
        self.upsert(recs)
        return recs

    def add_seeds(self, texts: Sequence[str], *, run_id: str, agent: str = "seed") -> list[Record]:
        """Write the seed documents ``A(0)`` of a run (kind ``seed``, step 0)."""
        return self.add_texts(texts, run_id=run_id, agent=agent, step=0, kind="seed")

    def delete_run(self, run_id: str) -> None:
        """Delete every record of ``run_id``."""
        with self._lock:
            self._check_open()
            self.client.delete(
                self.collection,
                points_selector=models.FilterSelector(
                    filter=models.Filter(must=[models.FieldCondition(
                        key="metadata.run_id", match=models.MatchValue(value=run_id))])
                ),
                wait=True,
            )
            _summary_book.book(self).forget_run(run_id)  # and its summaries beside

    def copy_to(self, other: WebStore, *, run_id: str | None = None, batch: int = 1024,
                progress: Callable[[int], Any] | None = None) -> CopyResult:
        """Copy ``run_id``'s records (default: all) into ``other``'s collection.

        Ids, vectors, texts and metadata are kept, between any two backends (local, edge,
        server); copying again gives no duplicates. ``progress`` gets the records copied so far
        after each batch. See :mod:`llmweb_plugin._copy` for what is checked.
        """
        return copy_points(self, other, run_id=run_id, batch=batch, progress=progress,
                           read=Record.from_point)

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _filter(
        *,
        run_id: str | None = None,
        agent: str | Sequence[str] | None = None,
        step: int | None = None,
        kind: str | Sequence[str] | None = None,
        before_step: int | None = None,
    ) -> models.Filter | None:
        must: list[Any] = []

        def match(key: str, value: Any) -> None:
            if isinstance(value, (list, tuple, set, frozenset)):
                must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
            else:
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))

        if run_id is not None:
            match("metadata.run_id", run_id)
        if agent is not None:
            match("metadata.agent", agent)
        if kind is not None:
            match("metadata.kind", kind)
        if step is not None:
            match("metadata.step", int(step))
        if before_step is not None:
            must.append(models.FieldCondition(key="metadata.step",
                                              range=models.Range(lt=int(before_step))))
        out = [] if kind is not None else [_summaries.not_summary()]  # never a summary point
        return models.Filter(must=must or None, must_not=out or None) if must or out else None

    def _scroll(self, flt: models.Filter | None, with_vectors: bool) -> Iterator[Any]:
        offset = None
        while True:
            with self._lock:
                self._check_open()
                points, offset = self.client.scroll(
                    self.collection, scroll_filter=flt, limit=self._page, offset=offset,
                    with_payload=True, with_vectors=with_vectors,
                )
            yield from points
            if offset is None:
                return

    def records(
        self,
        run_id: str | None = None,
        *,
        agent: str | Sequence[str] | None = None,
        step: int | None = None,
        kind: str | Sequence[str] | None = None,
        before_step: int | None = None,
        with_vectors: bool = False,
    ) -> list[Record]:
        """Records matching the filters, in a stable order (step, kind, agent, index).

        With ``with_vectors``, a cosine collection's vectors are the unit vectors
        :meth:`as_stored` wrote, in memory and after reopening alike (vectors an older version
        saved unnormalised in a local folder are normalised as they are read).
        """
        flt = self._filter(run_id=run_id, agent=agent, step=step, kind=kind,
                           before_step=before_step)
        recs = [Record.from_point(p) for p in self._scroll(flt, with_vectors)]
        if with_vectors and self.distance == models.Distance.COSINE:
            recs = [_unit_record(r) for r in recs]
        recs.sort(key=_sort_key)
        return recs

    def web(
        self,
        run_id: str,
        *,
        post_agents: Iterable[str] | None = None,
        before_step: int | None = None,
        with_vectors: bool = False,
    ) -> list[Record]:
        """The web ``A(t)`` of a run: seeds, posts, external and human documents.

        Args:
            run_id: the run.
            post_agents: if given, only posts by these agents are included (seeds, external and
                human documents always are): the view of one agent in a non-full topology.
            before_step: only records with ``step < before_step`` (the web as it stood then).
            with_vectors: load the vectors too.
        """
        recs = self.records(run_id, kind=list(WEB_KINDS), before_step=before_step,
                            with_vectors=with_vectors)
        if post_agents is not None:
            allowed = set(post_agents)
            recs = [r for r in recs if r.kind != "post" or r.agent in allowed]
        return recs

    def sample(
        self,
        k: int,
        *,
        run_id: str,
        rng: np.random.Generator | int | None = None,
        post_agents: Iterable[str] | None = None,
        before_step: int | None = None,
    ) -> list[Record]:
        """``k`` records drawn uniformly without replacement from the run's web.

        The web is put in its stable order before drawing, so a given ``rng`` seed gives the same
        sample whatever order Qdrant returned the points in.

        Raises:
            ValueError: ``k`` is negative or larger than the web.
        """
        pool = self.web(run_id, post_agents=post_agents, before_step=before_step)
        if k < 0 or k > len(pool):
            raise ValueError(f"cannot sample k={k} from a web of {len(pool)} records")
        gen = np.random.default_rng(rng)
        idx = gen.choice(len(pool), size=k, replace=False) if k else np.zeros(0, dtype=int)
        return [pool[i] for i in idx]

    def search(
        self,
        query: str | Sequence[float] | np.ndarray,
        k: int = 4,
        *,
        run_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        post_agents: Iterable[str] | None = None,
        before_step: int | None = None,
    ) -> list[Record]:
        """The ``k`` most similar records to a text or vector (records carry ``score``)."""
        if isinstance(query, str):
            if self.embedder is None:
                raise ValueError("this store has no embedder; search with a vector")
            vec = self.embedder.embed([query])[0]
        else:
            vec = np.asarray(query, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"query vector has size {vec.shape[0]}; this store holds {self.dim}-d")
        flt = self._filter(run_id=run_id, kind=kind, before_step=before_step)
        if post_agents is not None:
            allowed = list(post_agents)
            not_other_posts = models.Filter(
                should=[
                    models.Filter(must_not=[models.FieldCondition(
                        key="metadata.kind", match=models.MatchValue(value="post"))]),
                    models.FieldCondition(key="metadata.agent", match=models.MatchAny(any=allowed)),
                ]
            )
            must = list(flt.must) if flt is not None and isinstance(flt.must, list) else []
            flt = models.Filter(must=[*must, not_other_posts], must_not=flt and flt.must_not)
        with self._lock:
            self._check_open()
            res = self.client.query_points(
                self.collection, query=vec.tolist(), query_filter=flt, limit=int(k),
                with_payload=True,
            )
        return [Record.from_point(p) for p in res.points]

    def count(self, run_id: str | None = None, *, kind: str | Sequence[str] | None = None) -> int:
        """Exact number of records matching the filters."""
        with self._lock:
            self._check_open()
            return int(self.client.count(
                self.collection, count_filter=self._filter(run_id=run_id, kind=kind), exact=True
            ).count)

    def runs(self) -> list[str]:
        """The run ids present in the collection, sorted."""
        ids: set[str] = set()
        offset = None
        while True:
            with self._lock:
                self._check_open()
                points, offset = self.client.scroll(
                    self.collection, limit=self._page, offset=offset,
                    with_payload=["metadata.run_id"], with_vectors=False,
                )
            for p in points:
                rid = ((p.payload or {}).get("metadata") or {}).get("run_id")
                if rid is not None:
                    ids.add(str(rid))
            if offset is None:
                return sorted(ids)

    @property
    def write_stats(self) -> WriteStats:
        """Calls to the server, attempts, retries and failures (all zero in local mode), and the
        failed summary writes (``summary_failures``, any backend)."""
        book = self.__dict__.get("_summary_book")
        return replace(self._writer.stats, summary_failures=getattr(book, "failed_writes", 0))

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this WebStore is closed")

    def close(self) -> None:
        """Close the client if this store created it (releases a local folder's lock)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _summary_book.on_close(self)  # summaries a failed side write left: lost, said so
            if self._owns_client:
                self.client.close()

    def __enter__(self) -> WebStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "local" if self.is_local else "server"
        return f"WebStore(collection={self.collection!r}, dim={self.dim}, {where})"


def _unit_record(record: Record) -> Record:
    """``record`` with its vector as a cosine collection keeps it (unchanged when it already is).

    Qdrant's local mode saves cosine vectors as they were given, so a folder written before the
    store normalised them holds raw vectors that read back unnormalised after reopening.
    """
    v = record.vector
    if v is None or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 1.0 or not np.any(v):
        return record
    return replace(record, vector=_unit_rows(v[None, :])[0])


def with_vector(record: Record, vector: np.ndarray) -> Record:
    """A copy of ``record`` carrying ``vector``."""
    return replace(record, vector=vector)
