"""One text of the web with its provenance: :class:`Record`, its kinds and its point id.

A record's Qdrant payload follows langchain-qdrant's layout (``page_content`` and ``metadata``
with the reserved provenance keys); its point id is ``uuid5`` of the provenance, so writing the
same record twice is idempotent. :class:`~llmweb_plugin.store.WebStore` reads and writes them;
import the public names from :mod:`llmweb_plugin.store`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS: tuple[str, ...] = ("seed", "external", "human", "post", "response")
WEB_KINDS: tuple[str, ...] = ("seed", "external", "human", "post")
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}
RESERVED_METADATA: frozenset[str] = frozenset(
    {"run_id", "agent", "step", "kind", "index", "created_at"}
)
_NAMESPACE = uuid.UUID("9b3e6f0c-2f55-5f43-9a57-6c6c6d776562")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def point_id(run_id: str, agent: str, step: int, kind: str, index: int) -> str:
    """The deterministic point id of a record: ``uuid5`` of its provenance.

    The same string as ``str(uuid.uuid5(namespace, name))``, computed without building a
    ``UUID`` (a quarter of the time: ingest computes one per record).
    """
    name = f"{run_id}|{agent}|{int(step)}|{kind}|{int(index)}"
    b = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _jsonable(value: Any) -> Any:
    """Payload values must survive JSON (a server) as well as local mode."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    return str(value)


@dataclass(frozen=True, kw_only=True)
class Record:
    """One text in the web, with its provenance.

    Attributes:
        text: the text (``page_content``).
        run_id: the run (experiment or app session) it belongs to.
        agent: who wrote it (``"seed"`` for seed documents by default).
        step: the iteration it belongs to (seeds: 0; an agent's answers at step t: t).
        kind: ``seed``, ``post``, ``response``, ``external`` or ``human``.
        index: position among records with the same (run, agent, step, kind).
        metadata: free user metadata (JSON-serialisable values).
        created_at: ISO-8601 UTC time of writing; filled on upsert when empty.
        vector: the embedding, shape ``(dim,)``, when loaded.
        score: similarity score, for search results.
        id: the point id; derived from the provenance when empty.
    """

    text: str
    run_id: str
    agent: str
    step: int
    kind: str = "response"
    index: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    score: float | None = None
    id: str = ""

    @property
    def point_id(self) -> str:
        return self.id or point_id(self.run_id, self.agent, self.step, self.kind, self.index)

    def payload(self) -> dict[str, Any]:
        """The Qdrant payload (langchain-qdrant layout)."""
        bad = RESERVED_METADATA.intersection(self.metadata)
        if bad:
            raise ValueError(
                f"metadata keys {sorted(bad)} are reserved by llmweb; rename them "
                f"(reserved: {sorted(RESERVED_METADATA)})"
            )
        meta = {str(k): _jsonable(v) for k, v in self.metadata.items()}
        meta.update(
            run_id=self.run_id,
            agent=self.agent,
            step=int(self.step),
            kind=self.kind,
            index=int(self.index),
            created_at=self.created_at or _now(),
        )
        return {"page_content": self.text, "metadata": meta}

    @classmethod
    def from_point(cls, point: Any) -> Record:
        payload = point.payload or {}
        meta = dict(payload.get("metadata") or {})
        vec = point.vector
        if isinstance(vec, dict):  # named vectors: take the unnamed/default one if present
            vec = vec.get("") or next(iter(vec.values()), None)
        user = {k: v for k, v in meta.items() if k not in RESERVED_METADATA}
        return cls(
            text=str(payload.get("page_content", "")),
            run_id=str(meta.get("run_id", "")),
            agent=str(meta.get("agent", "")),
            step=int(meta.get("step", 0) or 0),
            kind=str(meta.get("kind", "")),
            index=int(meta.get("index", 0) or 0),
            metadata=user,
            created_at=str(meta.get("created_at", "")),
            vector=None if vec is None else np.asarray(vec, dtype=np.float32),
            score=getattr(point, "score", None),
            id=str(point.id),
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _sort_key(r: Record) -> tuple[int, int, str, int, str]:
    return (r.step, _KIND_ORDER.get(r.kind, 99), r.agent, r.index, r.point_id)
