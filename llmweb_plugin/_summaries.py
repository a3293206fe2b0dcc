"""Per-(run, step, agent, kind) sufficient statistics kept beside the records (issue 13, item 1).

They live in a side collection, ``f"{collection}__llmweb_summaries"`` (same vector size and
distance, made with the main one on every backend), so the main collection holds only records and
langchain-qdrant or LlamaIndex opening it see nothing else. Every
:meth:`~llmweb_plugin.store.WebStore.upsert` writes the records first, then, in a separate request
to the side collection, one summary point per (run, step, agent, kind) it touched, a manifest per
run (the list of its summary keys) and one catalog point (records per run). Side points keep the
record layout (``metadata.kind == "summary"``, zero vector, empty ``page_content``) and
deterministic ids, so a re-written summary replaces the old one.

A key's statistics are those of the records *stored* under it, keyed by their point id:
``n``, the set of record indices (as ranges), the sum and sum of squares of ``x - shift`` (``shift``
a fixed reference row, for precision), the sum of unit vectors and the count of nonzero rows
(mean cosine distance), counts of mitigation tags, context sizes and queries, token usage, first
and last write time, and a deterministic bottom-k sample (the :data:`SAMPLE_K` records with the
smallest hash of their point id: a uniform sample, unchanged by re-writes, and the bottom-k of a
union is the bottom-k of the parts' bottom-k). A record written again under the same id (resume,
``retry_failed``, a repeated index) replaces its old contribution: the old vector and payload are
read back by id and subtracted. A record that failed to store is in no summary.

Between the two writes the summaries lag the records. Readers (:func:`load_run`) check them
before trusting them: the catalog's counts against the main collection's exact point count
(``O(1)`` without a filter), else the run's own filtered count; a mismatch (records that landed
while their summaries did not, a crash, another writer, records written by another tool) returns
``None`` with the reason and the caller reads the records as before. A count cannot reveal a
re-written record whose summary was not updated, so before a batch that re-writes counted records
the run's manifest is marked *unsure*; the summary write clears it. A failed summary write is
logged and kept to be written with the next batch (the records did land: the store does not
raise); a failed record write during a re-write, or a process that stopped before the summary
write, leaves the mark: the run is then untrusted for good (readers fall back; ``llmweb store
copy`` into a new collection rebuilds its summaries). A collection whose summary points an older
llmweb wrote *inside* it is read by its records, with one warning.
"""

from __future__ import annotations

import bisect
import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import models

logger = logging.getLogger(__name__)

SUMMARY_KIND = "summary"
#: the side collection of ``collection`` is ``collection + SIDE_SUFFIX``
SIDE_SUFFIX = "__llmweb_summaries"
#: metadata key holding a summary point's statistics
STATS_KEY = "llmweb_summary"
#: records kept per key in the bottom-k sample
SAMPLE_K = 64
#: metadata keys whose values are counted per key (the report's default mitigation keys)
TAG_KEYS: tuple[str, ...] = ("mitigation",)
_MAX_DISTINCT = 64  # distinct context sizes / queries kept per key before giving up on them
_NS = uuid.UUID("5d0c7a44-1f0e-5b8e-9a1d-6c6c6d777375")
_VERSION = 1
_RETRIEVE_CHUNK = 1024


def summary_id(run_id: str, step: int, agent: str, kind: str) -> str:
    return str(uuid.uuid5(_NS, f"summary|{run_id}|{agent}|{int(step)}|{kind}"))


def manifest_id(run_id: str) -> str:
    return str(uuid.uuid5(_NS, f"manifest|{run_id}"))


CATALOG_ID = str(uuid.uuid5(_NS, "catalog"))


def point_hash(pid: Any) -> int:
    """A uniform 60-bit hash of a point id: the random bits of a uuid5 id (llmweb's own ids are
    uuid5 of the provenance; anything else is hashed with uuid5 first)."""
    h = str(pid).replace("-", "")
    if len(h) != 32 or h[12] != "5":
        h = uuid.uuid5(_NS, str(pid)).hex
    return int(h[:12] + h[13:16], 16)


Key = tuple[str, int, str, str]  # run, step, agent, kind


def side_name(collection: str) -> str:
    """The side collection holding ``collection``'s summaries."""
    return f"{collection}{SIDE_SUFFIX}"


def is_side(name: str) -> bool:
    """Whether ``name`` is a side collection (never a collection of records)."""
    return name.endswith(SIDE_SUFFIX)


def has_side(store: Any) -> bool:
    return bool(store.client.collection_exists(side_name(store.collection)))


def ensure_side(store: Any) -> None:
    """Create the store's side collection (same vector size and distance) if it is missing."""
    side = side_name(store.collection)
    if store.__dict__.get("_side_ok") == side:
        return
    with store._lock:
        if not store.client.collection_exists(side):
            store.client.create_collection(
                side, vectors_config=models.VectorParams(size=store.dim, distance=store.distance))
        store.__dict__["_side_ok"] = side


def _legacy(store: Any, pid: str) -> bool:
    """Whether the main collection holds the summary point ``pid`` an older llmweb wrote there
    (one warning per store)."""
    with store._lock:
        found = bool(store.client.retrieve(store.collection, ids=[pid], with_payload=False))
    if found and not store.__dict__.get("_legacy_warned"):
        store.__dict__["_legacy_warned"] = True
        logger.warning(
            "llmweb: collection %r holds summary points an older llmweb wrote inside it; its "
            "reports and history read every record. `llmweb store copy` into a new collection "
            "rebuilds the summaries beside it (and leaves those points behind).", store.collection)
    return found


# ---------------------------------------------------------------------- one key's statistics
def _num_key(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


@dataclass
class KeyStats:
    """The statistics of the stored records of one (run, step, agent, kind)."""

    n: int = 0
    ranges: list[list[int]] = field(default_factory=list)
    shift: np.ndarray | None = None
    sum: np.ndarray | None = None
    sumsq: float = 0.0
    unit_sum: np.ndarray | None = None
    n_unit: int = 0
    n_zero: int = 0
    sample: list[list[int]] = field(default_factory=list)  # [hash, index], sorted, <= SAMPLE_K
    tags: dict[str, int] = field(default_factory=dict)
    ctx: dict[str, int] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    queries_overflow: bool = False
    ctx_overflow: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    usage_exact: bool = True
    created: list[str] = field(default_factory=list)  # [first, last]

    # -- indices
    def has(self, index: int) -> bool:
        r = self.ranges
        if len(r) == 1:  # the common case: indices written in order, one range
            return r[0][0] <= index < r[0][1]
        for a, b in r:
            if a <= index < b:
                return True
        return False

    def _add_index(self, index: int) -> None:
        r = self.ranges
        if len(r) == 1 and index == r[0][1]:  # the next index of the only range
            r[0][1] = index + 1
            return
        for i, (a, b) in enumerate(r):
            if index == b:
                r[i][1] = b + 1
                if i + 1 < len(r) and r[i + 1][0] == b + 1:
                    r[i][1] = r[i + 1][1]
                    del r[i + 1]
                return
            if index == a - 1:
                r[i][0] = index
                return
            if index < a:
                r.insert(i, [index, index + 1])
                return
        r.append([index, index + 1])

    def indices(self) -> Iterator[int]:
        for a, b in self.ranges:
            yield from range(a, b)

    # -- contributions
    def apply(self, vec: np.ndarray, meta: Mapping[str, Any], sign: int) -> None:
        """Add (``sign=1``) or remove (``-1``) one record's vector and payload metadata."""
        self.add_rows(np.asarray(vec)[None, :], np.array([sign], dtype=np.float64))
        self.apply_meta(meta, sign)

    def add_rows(self, V: np.ndarray, signs: np.ndarray) -> None:
        """Add rows of ``V`` (shape ``(m, dim)``) with weights ``signs`` (+1 add, -1 remove)."""
        V = np.asarray(V, dtype=np.float64)
        if not len(V):
            return
        if self.shift is None:
            self.shift = V[0].copy()
            self.sum = np.zeros_like(self.shift)
            self.unit_sum = np.zeros_like(self.shift)
        assert self.sum is not None and self.unit_sum is not None
        dev = V - self.shift
        self.n += int(signs.sum())
        self.sum += signs @ dev
        self.sumsq += float(signs @ np.einsum("ij,ij->i", dev, dev))
        mx = np.max(np.abs(V), axis=1)
        ok = mx > 0
        if ok.any():
            W = V[ok] / mx[ok, None]
            self.unit_sum += signs[ok] @ (W / np.linalg.norm(W, axis=1)[:, None])
        self.n_unit += int(signs[ok].sum())
        self.n_zero += int(signs[~ok].sum())

    def apply_meta(self, meta: Mapping[str, Any], sign: int) -> None:
        """Add or remove one record's payload metadata (tags, context size, query, usage)."""
        for key in TAG_KEYS:
            val = meta.get(key)
            if key in meta and val not in (None, "", False):
                t = f"{key}={val}"
                self.tags[t] = self.tags.get(t, 0) + sign
                if self.tags[t] == 0:
                    del self.tags[t]
        if "context_size" in meta:
            self._count(self.ctx, _num_key(meta["context_size"]), sign, "ctx_overflow")
        if "query" in meta:
            self._count(self.queries, str(meta["query"]), sign, "queries_overflow")
        if "usage" in meta or "usage_input_tokens" in meta or "usage_output_tokens" in meta:
            self._usage(meta, sign)
        c = meta.get("created_at")
        if sign > 0 and isinstance(c, str) and c:
            self.created = [min(self.created[0], c), max(self.created[1], c)] if self.created \
                else [c, c]

    def _count(self, table: dict[str, int], key: str | None, sign: int, flag: str) -> None:
        if key is None:
            return
        if key not in table and sign > 0 and len(table) >= _MAX_DISTINCT:
            setattr(self, flag, True)
            return
        table[key] = table.get(key, 0) + sign
        if table[key] <= 0:
            del table[key]

    def _usage(self, meta: Mapping[str, Any], sign: int) -> None:
        """Token usage as ``report.build._stored_usage`` reads it: flat keys per record, else a
        ``usage`` mapping counted once per ``lc_run_id``."""
        def ok(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        flat = {name: meta[key] for key, name in (("usage_input_tokens", "input_tokens"),
                                                   ("usage_output_tokens", "output_tokens"))
                if ok(meta.get(key))}
        nested = meta.get("usage")
        add: dict[str, int] = {}
        if flat:
            add = {k: int(v) for k, v in flat.items()}
        elif isinstance(nested, Mapping):
            call = meta.get("lc_run_id")
            if call is not None:
                if sign < 0:  # a replaced call's usage cannot be taken back reliably
                    self.usage_exact = False
                    return
                if str(call) in self.calls:
                    return
                self.calls.append(str(call))
            add = {str(k): int(v) for k, v in nested.items() if ok(v)}
        for k, v in add.items():
            self.usage[k] = self.usage.get(k, 0) + sign * v

    def sample_add(self, h: int, index: int) -> None:
        s = self.sample  # sorted
        if len(s) < SAMPLE_K or h < s[-1][0]:
            i = bisect.bisect_left(s, [h])  # the first entry whose hash is >= h
            if i == len(s) or s[i][0] != h:
                s.insert(i, [h, index])
                del s[SAMPLE_K:]

    # -- persistence
    def copy(self) -> KeyStats:
        """A deep copy (what ``from_payload(to_payload())`` gives, without the round trip)."""
        def arr(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.array(a, dtype=np.float64)
        return KeyStats(
            n=self.n, ranges=[list(r) for r in self.ranges], shift=arr(self.shift),
            sum=arr(self.sum), sumsq=self.sumsq, unit_sum=arr(self.unit_sum),
            n_unit=self.n_unit, n_zero=self.n_zero, sample=[list(e) for e in self.sample],
            tags=dict(self.tags), ctx=dict(self.ctx), queries=dict(self.queries),
            queries_overflow=self.queries_overflow, ctx_overflow=self.ctx_overflow,
            usage=dict(self.usage), calls=list(self.calls), usage_exact=self.usage_exact,
            created=list(self.created))

    def to_payload(self) -> dict[str, Any]:
        def arr(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else np.asarray(a, dtype=np.float64).tolist()
        return {
            "version": _VERSION, "n": self.n, "ranges": [list(r) for r in self.ranges],
            "shift": arr(self.shift), "sum": arr(self.sum), "sumsq": self.sumsq,
            "unit_sum": arr(self.unit_sum), "n_unit": self.n_unit, "n_zero": self.n_zero,
            "sample": [list(e) for e in self.sample], "tags": dict(self.tags),
            "ctx": dict(self.ctx), "queries": dict(self.queries),
            "queries_overflow": self.queries_overflow, "ctx_overflow": self.ctx_overflow,
            "usage": dict(self.usage), "calls": list(self.calls),
            "usage_exact": self.usage_exact, "created": list(self.created),
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> KeyStats:
        def arr(a: Any) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=np.float64)
        return cls(
            n=int(p["n"]), ranges=[[int(a), int(b)] for a, b in p["ranges"]],
            shift=arr(p["shift"]), sum=arr(p["sum"]), sumsq=float(p["sumsq"]),
            unit_sum=arr(p["unit_sum"]), n_unit=int(p["n_unit"]), n_zero=int(p["n_zero"]),
            sample=[[int(h), int(i)] for h, i in p["sample"]], tags=dict(p["tags"]),
            ctx=dict(p["ctx"]), queries=dict(p["queries"]),
            queries_overflow=bool(p["queries_overflow"]), ctx_overflow=bool(p["ctx_overflow"]),
            usage=dict(p["usage"]), calls=list(p["calls"]), usage_exact=bool(p["usage_exact"]),
            created=list(p["created"]),
        )


def _meta_point(pid: str, dim: int, metadata: dict[str, Any]) -> models.PointStruct:
    # built from valid parts (a str id, a float list, a JSON payload): pydantic's check of the
    # sums and the sample, a tenth of a millisecond per point, would find nothing
    return models.PointStruct.model_construct(
        id=pid, vector=[0.0] * dim, payload={"page_content": "", "metadata": metadata})


# ---------------------------------------------------------------------- the writer
def not_summary() -> models.FieldCondition:
    """The condition that leaves summary points out (for ``must_not``)."""
    return models.FieldCondition(key="metadata.kind", match=models.MatchValue(value=SUMMARY_KIND))


# ---------------------------------------------------------------------- readers
@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """A run's summaries, checked against its records.

    Attributes:
        run_id: the run.
        keys: (step, agent, kind) -> statistics.
        n_records: records the summaries cover (the run's exact record count).
    """

    run_id: str
    keys: Mapping[tuple[int, str, str], KeyStats]
    n_records: int

    def of_kinds(self, kinds: Iterable[str]) -> dict[tuple[int, str, str], KeyStats]:
        ks = set(kinds)
        return {k: v for k, v in self.keys.items() if k[2] in ks and v.n > 0}


def catalog(store: Any) -> dict[str, Any] | None:
    """The collection's catalog (records per run, from the side collection) and whether it
    accounts for every point of the main collection (``complete``)."""
    if not has_side(store):
        _legacy(store, CATALOG_ID)
        return None
    with store._lock:
        pts = store.client.retrieve(side_name(store.collection), ids=[CATALOG_ID],
                                    with_payload=True)
        total = int(store.client.count(store.collection, exact=True).count)
    cat = ((pts[0].payload or {}).get("metadata") or {}).get("llmweb_catalog") if pts else None
    if not isinstance(cat, Mapping):
        _legacy(store, CATALOG_ID)
        return None
    runs = {str(k): int(v) for k, v in cat["runs"].items()}
    return {"runs": runs, "complete": total == sum(runs.values())}


def load_run(store: Any, run_id: str) -> tuple[RunSummary | None, str]:
    """The run's checked summaries, or ``(None, reason)`` to read its records instead."""
    side = side_name(store.collection)
    got = []
    if has_side(store):
        with store._lock:
            got = store.client.retrieve(side, ids=[manifest_id(run_id)], with_payload=True)
    if not got:
        if _legacy(store, manifest_id(run_id)):
            return None, (f"run {run_id!r} has no summaries beside the collection (an older "
                          "llmweb wrote them inside it; `llmweb store copy` rebuilds them)")
        return None, f"run {run_id!r} has no summaries (written by another tool or an older llmweb)"
    meta0 = (got[0].payload or {}).get("metadata") or {}
    if meta0.get("llmweb_unsure"):
        return None, (f"the summaries of run {run_id!r} may miss a re-write of its records (a "
                      "write failed or the process stopped between the records and their "
                      "summaries); `llmweb store copy` into a new collection rebuilds them")
    man = meta0.get("llmweb_manifest") or []
    keys = [(int(s), str(a), str(k)) for s, a, k in man]
    ids = [summary_id(run_id, s, a, k) for s, a, k in keys]
    pts: dict[str, Any] = {}
    with store._lock:
        for start in range(0, len(ids), _RETRIEVE_CHUNK):
            for p in store.client.retrieve(side, ids=ids[start:start + _RETRIEVE_CHUNK],
                                           with_payload=True):
                pts[str(p.id)] = p
    stats: dict[tuple[int, str, str], KeyStats] = {}
    for key, pid in zip(keys, ids):
        meta = ((pts[pid].payload or {}).get("metadata") or {}) if pid in pts else {}
        if STATS_KEY not in meta:
            return None, f"run {run_id!r}: a summary point is missing ({key})"
        stats[key] = KeyStats.from_payload(meta[STATS_KEY])
    n = sum(v.n for v in stats.values())
    cat = catalog(store)
    if cat is not None and cat["complete"] and cat["runs"].get(run_id) == n:
        return RunSummary(run_id=run_id, keys=stats, n_records=n), ""
    actual = int(store.count(run_id))
    if actual != n:
        return None, (f"the summaries of run {run_id!r} count {n} records but the store holds "
                      f"{actual} (an interrupted write, or another writer)")
    return RunSummary(run_id=run_id, keys=stats, n_records=n), ""


def warn_fallback(reason: str, what: str) -> None:
    """Log why ``what`` reads every record (a warning when summaries exist but disagree)."""
    level = logging.INFO if "no summaries" in reason else logging.WARNING
    logger.log(level, "llmweb: %s reads every record: %s", what, reason)


def progress(total: int, desc: str) -> Any:
    """A tqdm bar when tqdm is installed, else an object that logs the start and the end."""
    try:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit="rec", leave=False)
    except ImportError:  # pragma: no cover - tqdm comes with the [all] extra
        class _Log:
            def __init__(self) -> None:
                logger.info("llmweb: %s: reading %d records", desc, total)

            def update(self, k: int) -> None:
                pass

            def close(self) -> None:
                logger.info("llmweb: %s: done", desc)
        return _Log()


# ---------------------------------------------------------------------- exact statistics
def merge(parts: Sequence[KeyStats]) -> KeyStats:
    """The statistics of the union of disjoint keys (for one agent over several kinds)."""
    parts = [p for p in parts if p.n > 0 and p.shift is not None]
    if len(parts) == 1:
        return parts[0]
    out = KeyStats()
    for p in parts:
        assert p.shift is not None and p.sum is not None and p.unit_sum is not None
        if out.shift is None:
            out.shift, out.sum, out.unit_sum = p.shift.copy(), p.sum.copy(), p.unit_sum.copy()
            out.sumsq = p.sumsq
        else:
            assert out.sum is not None and out.unit_sum is not None
            d = p.shift - out.shift  # rows relative to out.shift = (x - p.shift) + d
            out.sumsq += p.sumsq + 2.0 * float(d @ p.sum) + p.n * float(d @ d)
            out.sum += p.sum + p.n * d
            out.unit_sum += p.unit_sum
        out.n += p.n
        out.n_unit += p.n_unit
        out.n_zero += p.n_zero
        out.sample = sorted(out.sample + p.sample)[:SAMPLE_K]
    return out


def step_accumulator(step: int, by_agent: Mapping[str, KeyStats]) -> Any:
    """A :class:`~llmweb_plugin.metrics.StepAccumulator` holding the agents' sums."""
    from .metrics import StepAccumulator

    acc = StepAccumulator(step)
    for agent in sorted(by_agent):
        st = by_agent[agent]
        if st.n <= 0 or st.shift is None:
            continue
        acc._count[agent] = st.n
        acc._shift[agent] = st.shift.copy()
        acc._sum[agent] = np.array(st.sum, dtype=np.float64)
        acc._sumsq[agent] = float(st.sumsq)
        acc._types[agent] = str
        acc._unit_sum = (np.array(st.unit_sum) if acc._unit_sum is None
                         else acc._unit_sum + st.unit_sum)
        acc._n_unit += st.n_unit
        acc._n_zero += st.n_zero
    return acc


def per_step(summary: RunSummary, kinds: Iterable[str]) -> dict[int, dict[str, KeyStats]]:
    """step -> agent -> statistics over ``kinds``."""
    grouped: dict[int, dict[str, list[KeyStats]]] = {}
    for (s, a, _k), st in summary.of_kinds(kinds).items():
        grouped.setdefault(s, {}).setdefault(a, []).append(st)
    return {s: {a: merge(v) for a, v in ag.items()} for s, ag in sorted(grouped.items())}


def stored_history(store: Any, run_id: str, kinds: Sequence[str]) -> list[Any] | None:
    """The run's per-step :class:`~llmweb_plugin.metrics.StepMetrics` from its summaries (exact),
    or ``None`` when it has none that agree with its records (logged)."""
    summary, why = load_run(store, run_id)
    if summary is None:
        warn_fallback(why, f"the history of run {run_id!r}")
        return None
    return [step_accumulator(s, ag).metrics() for s, ag in per_step(summary, kinds).items()]


def history_from_records(store: Any, run_id: str, kinds: Sequence[str]) -> list[Any]:
    """The run's per-step metrics from every stored record, read in pages with a progress bar
    (the path for runs without summaries; the numbers of llmweb before summaries)."""
    from .metrics import StepAccumulator

    flt = store._filter(run_id=run_id, kind=list(kinds))
    bar = progress(store.count(run_id, kind=list(kinds)), f"reading run {run_id}")
    rows: list[tuple[int, str, Any]] = []
    try:
        for p in store._scroll(flt, True):
            meta = (p.payload or {}).get("metadata") or {}
            v = p.vector.get("") if isinstance(p.vector, dict) else p.vector
            if v is not None:
                rows.append((int(meta.get("step", 0) or 0), str(meta.get("agent", "")), v))
            bar.update(1)
    finally:
        bar.close()
    if not rows:
        return []
    V = np.asarray([r[2] for r in rows], dtype=np.float32)
    if str(getattr(store.distance, "value", store.distance)).lower() == "cosine":
        V = store.as_stored(V)  # a folder from before unit vectors reads back normalised
    by_step: dict[int, Any] = {}
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    for i in order:
        s, a, _v = rows[i]
        acc = by_step.get(s)
        if acc is None:
            acc = by_step[s] = StepAccumulator(s)
        acc.add(np.asarray(V[i], dtype=np.float64)[None, :], [a])
    return [by_step[s].metrics() for s in sorted(by_step)]


def run_history(store: Any, run_id: str, kinds: Sequence[str]) -> list[Any]:
    """The run's per-step metrics: from its summaries when they agree with its records, else
    from the records (logged, a warning when the summaries disagree)."""
    hist = stored_history(store, run_id, kinds)
    return hist if hist is not None else history_from_records(store, run_id, kinds)
