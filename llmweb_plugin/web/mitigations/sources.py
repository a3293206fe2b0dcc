"""Where external documents come from: an iterable, a file of lines, or a Qdrant collection.

:func:`as_text_source` turns each into an indexable, lazily read sequence of non-empty texts whose
item ``i`` is always the same, so :class:`~llmweb_plugin.web.mitigations.ExternalInjection` can
record which items it used and a resumed run continue where it stopped. Items that are not
strings or are empty are skipped and counted (``skipped``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...store import WebStore

__all__ = ["QdrantSource", "as_text_source"]

logger = logging.getLogger(__name__)


class _TextSource:
    """An indexable, lazily read sequence of non-empty texts (item ``i`` is always the same)."""

    def __init__(self, make_iter: Callable[[], Iterator[Any]], label: str) -> None:
        self._make_iter = make_iter
        self._it: Iterator[Any] | None = None
        self._buf: list[str] = []
        self._done = False
        self.label = label
        self.skipped: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _pull(self, upto: int | None) -> None:
        # Caller holds the lock. Reads until len(buf) > upto (or to the end when upto is None).
        if self._done:
            return
        if self._it is None:
            self._it = iter(self._make_iter())
        while upto is None or len(self._buf) <= upto:
            try:
                item = next(self._it)
            except StopIteration:
                self._done = True
                return
            if not isinstance(item, str):
                self.skipped["not_a_string"] += 1
                logger.warning("llmweb: external source %s yielded a %s, not a str; skipped",
                               self.label, type(item).__name__)
                continue
            if not item.strip():
                self.skipped["empty_text"] += 1
                continue
            self._buf.append(item)

    def get(self, i: int) -> str | None:
        """Item ``i`` (0-based), or ``None`` if the source has fewer items."""
        with self._lock:
            self._pull(i)
            return self._buf[i] if i < len(self._buf) else None

    def all(self) -> list[str]:
        """Every item (reads a lazy source to its end)."""
        with self._lock:
            self._pull(None)
            return list(self._buf)


class QdrantSource:
    """Documents of another Qdrant collection (their ``page_content``) as an external source.

    The order is stable: a :class:`~llmweb_plugin.store.WebStore` gives its records in
    (step, kind, agent, index) order; a raw ``QdrantClient`` collection is read in point-id order
    (Qdrant's scroll order).

    Args:
        store_or_client: a :class:`~llmweb_plugin.store.WebStore` or a ``QdrantClient``.
        collection: the collection to read; default the WebStore's own collection (required
            with a client).
        run_id: only records of this run (llmweb layout: ``metadata.run_id``).
        kind: only records of this kind (llmweb layout: ``metadata.kind``), e.g. ``"seed"``.
    """

    def __init__(self, store_or_client: Any, collection: str | None = None, *,
                 run_id: str | None = None, kind: str | None = None) -> None:
        self.store_or_client = store_or_client
        self.collection = collection
        self.run_id = run_id
        self.kind = kind
        if not isinstance(store_or_client, WebStore):
            if not hasattr(store_or_client, "scroll"):
                raise TypeError(
                    "QdrantSource needs a WebStore or a qdrant_client.QdrantClient; got "
                    f"{type(store_or_client).__name__}"
                )
            if collection is None:
                raise ValueError(
                    "QdrantSource(client, collection=...): name the collection to read")

    def __iter__(self) -> Iterator[Any]:
        src = self.store_or_client
        if isinstance(src, WebStore) and self.collection in (None, src.collection):
            for rec in src.records(self.run_id, kind=self.kind):
                yield rec.text
            return
        from qdrant_client import models

        client = src.client if isinstance(src, WebStore) else src
        collection = self.collection or src.collection
        must: list[Any] = []
        if self.run_id is not None:
            must.append(models.FieldCondition(key="metadata.run_id",
                                              match=models.MatchValue(value=self.run_id)))
        if self.kind is not None:
            must.append(models.FieldCondition(key="metadata.kind",
                                              match=models.MatchValue(value=self.kind)))
        flt = models.Filter(must=must) if must else None
        offset = None
        while True:
            points, offset = client.scroll(collection, scroll_filter=flt, limit=256,
                                           offset=offset, with_payload=True, with_vectors=False)
            for p in points:
                yield (p.payload or {}).get("page_content")
            if offset is None:
                return

    def __repr__(self) -> str:
        return f"QdrantSource(collection={self.collection!r}, run_id={self.run_id!r})"


def as_text_source(source: Any) -> _TextSource:
    """``source`` (an iterable of ``str``, a path to a file of lines or a
    :class:`QdrantSource`) as an indexable, lazily read sequence of texts."""
    if isinstance(source, _TextSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"external source file {str(path)!r} does not exist. Pass a file of lines, a "
                "list of strings (a bare str is read as a path) or a QdrantSource."
            )

        def lines() -> Iterator[str]:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    yield line.rstrip("\n").rstrip("\r")

        return _TextSource(lines, f"file:{path}")
    if isinstance(source, QdrantSource):
        return _TextSource(lambda: iter(source), f"qdrant:{source.collection or 'web'}")
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(
            "source must be an iterable of str, a path to a file of lines, or a QdrantSource; "
            f"got {type(source).__name__}"
        )
    if isinstance(source, Sequence):
        items = list(source)
        return _TextSource(lambda: iter(items), "iterable")
    it = iter(source)  # a one-shot iterator or generator: buffered, read lazily once
    return _TextSource(lambda: it, "iterable")
