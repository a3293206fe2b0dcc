"""``CollapseMonitor``: the sink every callback and agent web writes to.

The caller's thread only validates and enqueues (microseconds); a background worker embeds in
batches, upserts into the :class:`~llmweb_plugin.store.WebStore`, and keeps running sums per step
so the paper's series (``||D(t)||_F`` between the agents' mean embeddings, spread, mean cosine
distance) costs ``O(d)`` per record. (The worker side lives in ``_ingest.py``, the checks of
:meth:`CollapseMonitor.record`'s arguments in ``_validate.py``.)

Metrics are computed on the vectors as stored (:meth:`~llmweb_plugin.store.WebStore.as_stored`:
unit vectors for a cosine collection, a zero vector staying zero and counted in ``n_zero_vectors``;
the embedder's own for euclid or dot), so :meth:`CollapseMonitor.history`, a report,
``trend(run_id=...)`` and a rebuild from the folder in a later process give the same numbers.

Failures of the embedder or the store are counted, logged and kept (``failed_items``,
``retry_failed()``), and reported by :meth:`CollapseMonitor.flush` and
:meth:`CollapseMonitor.close`; nothing is dropped silently and nothing raises into the caller's
thread except a misuse of :meth:`CollapseMonitor.record` itself (a non-string text, a bad kind,
a lone surrogate, a bad ``step`` or ``index``).

One bad record fails only itself: a batch whose embedding or upsert fails is split in halves until
the failing records are alone, and a non-finite row from the embedder fails its record alone. When
nothing in a batch succeeds after a few splits (the embedder or the store is down), the rest of the
batch fails as a whole instead of being tried record by record. Any exception from the embedder or
the store, ``BaseException`` included, fails its records and the workers keep going, so
:meth:`CollapseMonitor.flush` and :meth:`CollapseMonitor.close` always return.

A step whose metric records come from a single agent has no ``||D||`` (NaN): the first such step
of a run is logged as a warning (once per run), since it usually means attribution collapsed.

**Alarm and verdict.** Two read-outs answer different questions. The *alarm*
(``alarm_fraction``, :class:`AlarmEvent`) is an online threshold: it fires as soon as one finished
step's norm falls below ``alarm_fraction`` times the mean of the first ``baseline_steps`` steps.
It is early and cheap, but one noisy step can fire it and it states no error rate.
:meth:`CollapseMonitor.trend` (one metric) and :meth:`CollapseMonitor.verdict` (convergence and
diversity together) test the whole series so far (:func:`~llmweb_plugin.trend.collapse_trend`: a
slope test and an early-versus-late window test robust to autocorrelated steps), with a stated
false-alarm rate (about 5% "collapsing" on autocorrelated noise at 30 steps), an interval, and
"inconclusive" when the series is too short or too noisy to say. Use the alarm to react during a
run and the verdict to state what happened.

Example:
    >>> import llmweb_plugin as lw
    >>> store = lw.WebStore(":memory:")
    >>> with lw.CollapseMonitor(store, run_id="demo") as mon:
    ...     for step in (1, 2):
    ...         for agent in ("a", "b"):
    ...             _ = mon.record(f"{agent} says something about step {step}", agent=agent, step=step)
    ...     hist = mon.history()
    >>> [h.n_agents for h in hist]
    [2, 2]
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._ingest import _STOP, _IngestWorker, _Item
from ._intake import _IntakeQueue
from ._summaries import run_history
from ._single_agent import warn_single_agent
from ._validate import _check_index, _check_step, _check_str, _repair_surrogates
from .embeddings import Embedder, check_embedder, default_embedder
from .exporters import ExporterHub
from .metrics import StepAccumulator, StepMetrics
from .store import KINDS, RESERVED_METADATA, WEB_KINDS, Record, WebStore, point_id
from .trend import CollapseTrend, CollapseVerdict, collapse_trend, collapse_verdict

__all__ = ["AlarmEvent", "CollapseMonitor", "MonitorError", "MonitorStats", "new_run_id"]

logger = logging.getLogger(__name__)

_MAX_NAMED_FAILURES = 5  # failed records named in one flush message
#: Per-step numbers of :class:`StepMetrics` that :meth:`CollapseMonitor.trend` can test.
_TREND_FIELDS = ("norm", "normalized_norm", "between_spread", "within_spread", "total_spread",
                 "mean_cosine_distance")


def new_run_id(prefix: str = "run") -> str:
    """A fresh, sortable run id such as ``run-20261201-104250-1a2b3c``."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{now}-{uuid.uuid4().hex[:6]}"


class MonitorError(RuntimeError):
    """Raised by ``flush(strict=True)`` when records failed to embed or store."""


@dataclass(frozen=True, kw_only=True)
class MonitorStats:
    """Counters of a monitor. ``received == skipped + stored + failed + pending``.

    Attributes:
        received: calls to ``record`` that passed argument checks.
        embedded: texts embedded.
        stored: records written to Qdrant.
        skipped: records not written on purpose (see ``skip_reasons``).
        skip_reasons: count per reason, e.g. ``{"empty_text": 2}``.
        failed: records whose embedding or upsert failed (kept in ``failed_items``).
        pending: records queued but not yet processed.
        errors: the last error messages (at most 20).
        handler_errors: failures inside framework adapters, counted by them.
        repaired: values kept after :meth:`CollapseMonitor.repair_text` replaced their lone
            surrogates with U+FFFD, per argument (e.g. ``{"text": 1}``); they are also received
            and stored as usual.
        exporter_errors: failures of the monitor's exporters (caught, never raised).
    """

    received: int = 0
    embedded: int = 0
    stored: int = 0
    skipped: int = 0
    skip_reasons: Mapping[str, int] = field(default_factory=dict)
    failed: int = 0
    pending: int = 0
    errors: tuple[str, ...] = ()
    handler_errors: int = 0
    repaired: Mapping[str, int] = field(default_factory=dict)
    exporter_errors: int = 0


@dataclass(frozen=True, kw_only=True)
class AlarmEvent:
    """The norm of ``step`` fell below ``fraction`` times the early ``baseline``."""

    step: int
    norm: float
    baseline: float
    fraction: float
    run_id: str


class CollapseMonitor(_IngestWorker):
    """Embeds, stores and measures everything agents say, step by step.

    Args:
        store: the shared :class:`~llmweb_plugin.store.WebStore`.
        run_id: the run's id; a fresh one (:func:`new_run_id`) when ``None``.
        embedder: defaults to the store's embedder (or the default one). A different embedder
            than the store's collection was made for is a ``ValueError``.
        metric_kinds: which kinds enter the per-step metrics (the paper: the ``response``\\ s).
        batch_size: most texts embedded per batch.
        alarm_fraction: the alarm fires when a step's norm falls below this fraction of the
            baseline; ``None`` disables it.
        baseline_steps: how many first steps (with a defined norm) form the baseline.
        on_alarm: called with each :class:`AlarmEvent`; its exceptions are counted, not raised.
        linger: seconds the worker waits to fill a batch once it has one record.
        max_queue: most records waiting to be embedded (``None``: no bound). When it is full,
            ``on_full="block"`` makes :meth:`record` wait up to ``block_timeout`` s, then drop;
            ``"drop"`` drops at once. A drop is counted (``stats.skip_reasons["queue_full"]``),
            logged as a warning and summed up by :meth:`close` (see ``_intake.py``).
        exporters: objects told of step metrics, alarms, verdicts, records and close
            (:mod:`llmweb_plugin.exporters`); their errors are counted, never raised.
    """

    def __init__(
        self,
        store: WebStore,
        run_id: str | None = None,
        embedder: Embedder | None = None,
        *,
        metric_kinds: Sequence[str] = ("response",),
        batch_size: int = 256,
        alarm_fraction: float | None = 0.5,
        baseline_steps: int = 3,
        on_alarm: Callable[[AlarmEvent], Any] | None = None,
        linger: float = 0.002,
        max_queue: int | None = 10_000, on_full: str = "block", block_timeout: float = 10.0,
        exporters: Sequence[Any] = (),
    ) -> None:
        if not isinstance(store, WebStore):
            raise TypeError(f"store must be a WebStore; got {type(store).__name__}")
        if embedder is None:
            embedder = store.embedder if store.embedder is not None else default_embedder()
        embedder = check_embedder(embedder)
        assert embedder is not None
        if int(embedder.dim) != store.dim:
            raise ValueError(
                f"embedder {embedder.name!r} makes {embedder.dim}-d vectors but collection "
                f"{store.collection!r} holds {store.dim}-d vectors"
            )
        if store.embedder is not None and store.embedder.name != embedder.name:
            raise ValueError(
                f"collection {store.collection!r} is for embedder {store.embedder.name!r}, not "
                f"{embedder.name!r}: one collection per embedding model. Open "
                "WebStore(..., embedder=your_embedder) instead."
            )
        bad = set(metric_kinds) - set(KINDS)
        if bad:
            raise ValueError(f"metric_kinds {sorted(bad)} are not kinds; use some of {KINDS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if alarm_fraction is not None and not 0 < alarm_fraction < 1:
            raise ValueError(f"alarm_fraction must be in (0, 1) or None; got {alarm_fraction}")
        if baseline_steps < 1:
            raise ValueError(f"baseline_steps must be >= 1; got {baseline_steps}")
        if run_id is not None:
            _check_str("run_id", run_id)
        self.store = store
        self.run_id = run_id or new_run_id()
        self.embedder = embedder
        self.metric_kinds = tuple(metric_kinds)
        self.batch_size = int(batch_size)
        self.alarm_fraction = alarm_fraction
        self.baseline_steps = int(baseline_steps)
        self.on_alarm = on_alarm
        self.linger = float(linger)
        self._exporters = ExporterHub(self, exporters)

        self._lock = threading.RLock()  # counters, accumulators, index counters
        self._queue = _IntakeQueue(max_queue, on_full, block_timeout)  # bounded (_intake.py)
        self._worker: threading.Thread | None = None
        self._store_worker: threading.Thread | None = None
        self._store_q: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._closed = False
        self._received = 0
        self._embedded = 0
        self._stored = 0
        self._skip_reasons: dict[str, int] = defaultdict(int)
        self._skip_logged: set[tuple[str, str | None]] = set()
        self._failed = 0
        self._errors: list[str] = []
        self._unreported: list[_Item] = []
        self._handler_errors = 0
        self._repaired: dict[str, int] = defaultdict(int)
        self._auto_step: dict[str, int] = defaultdict(int)
        self._next_index: dict[tuple[str, int, str], int] = defaultdict(int)
        self._acc: dict[int, StepAccumulator] = {}
        self._kind_counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._extras: dict[int, dict[str, Any]] = defaultdict(dict)
        self._usage: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._alarmed: set[int] = set()
        self._step_agents: dict[int, set[str]] = defaultdict(set)  # metric records' agents
        self._warned_single_agent = False
        self._max_step = -math.inf
        self.alarms: list[AlarmEvent] = []
        self.events: list[dict[str, Any]] = []
        self.failed_items: list[_Item] = []

    # ------------------------------------------------------------------ caller side
    def count_skip(self, reason: str, *, agent: str | None = None) -> None:
        """Count a record that was deliberately not written (e.g. a tool-call-only answer).

        It shows in ``stats.received`` and ``stats.skip_reasons[reason]``, so nothing is lost
        silently. The first skip of a reason per agent is logged as a warning, later ones at
        debug level (a tool-calling agent would otherwise flood the log).
        """
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"reason must be a non-empty str; got {reason!r}")
        with self._lock:
            self._received += 1
            self._count_skip_locked(reason, agent)

    def _count_skip_locked(self, reason: str, agent: str | None) -> None:
        self._skip_reasons[reason] += 1
        self._exporters.skipped(reason, agent)
        first = (reason, agent) not in self._skip_logged
        self._skip_logged.add((reason, agent))
        logger.log(logging.WARNING if first else logging.DEBUG,
                   "llmweb: skipped a record (%s) from agent %r (run %s)%s", reason, agent,
                   self.run_id, "; further ones are logged at debug level" if first else "")

    def repair_text(self, text: str, *, agent: str | None = None, field: str = "text") -> str:
        """``text`` with each lone surrogate replaced by U+FFFD, for adapters that must keep it.

        :meth:`record` refuses a lone surrogate (it cannot be encoded); a framework adapter
        calls this first so a model's answer is kept instead of lost. A repair is counted in
        ``stats.repaired[field]`` and the first one per field is logged as a warning. A value
        that needs no repair (or is not a ``str``: :meth:`record` reports it) is returned as is.
        """
        if not isinstance(text, str) or text.isascii():
            return text
        fixed, n = _repair_surrogates(text)
        if n:
            with self._lock:
                self._repaired[field] += 1
                first = self._repaired[field] == 1
            logger.log(logging.WARNING if first else logging.DEBUG,
                       "llmweb: a %s from agent %r (run %s) held %d surrogate code point(s) UTF-8 "
                       "cannot encode; kept it with U+FFFD for each lone one%s", field, agent,
                       self.run_id, n,
                       "; further ones are logged at debug level" if first else "")
        return fixed

    def record(
        self,
        text: str,
        *,
        agent: str,
        step: int | None = None,
        kind: str = "response",
        metadata: Mapping[str, Any] | None = None,
        index: int | None = None,
    ) -> str | None:
        """Queue one text for embedding and storage; returns its point id (``None`` if skipped).

        Args:
            text: what the agent said. Empty or whitespace-only text is a counted skip.
            agent: who said it.
            step: the iteration; ``None`` uses a per-agent counter (0, 1, 2, ...).
            kind: ``response`` (default), ``post``, ``seed``, ``external`` or ``human``.
            metadata: free JSON-serialisable metadata (keys other than the reserved ones).
            index: position among the same (agent, step, kind); a per-key counter when ``None``.
                Recording the same (agent, step, kind, index) twice overwrites: idempotent.

        Raises:
            TypeError: ``text`` or ``agent`` is not a ``str``.
            ValueError: ``text`` or ``agent`` holds a lone surrogate (not UTF-8 encodable), a bad
                ``kind``, a ``step`` that is not a finite non-negative integer, an ``index``
                that is not a non-negative ``int``, or reserved metadata keys. Nothing is counted.
            RuntimeError: the monitor is closed.
        """
        _check_str("text", text)
        _check_str("agent", agent)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        step = _check_step(step)
        index = _check_index(index)
        meta = dict(metadata or {})
        bad = RESERVED_METADATA.intersection(meta)
        if bad:
            raise ValueError(f"metadata keys {sorted(bad)} are reserved by llmweb; rename them")
        if self._closed:
            raise RuntimeError("this CollapseMonitor is closed")
        with self._lock:
            self._received += 1
            if not text.strip():
                self._count_skip_locked("empty_text", agent)
                return None
            if step is None:
                step = self._auto_step[agent]
                self._auto_step[agent] += 1
            key = (agent, step, kind)
            if index is None:
                index = self._next_index[key]
                self._next_index[key] += 1
            else:
                self._next_index[key] = max(self._next_index[key], index + 1)
            item = _Item(text, agent, step, kind, index, meta,
                         _dt.datetime.now(_dt.timezone.utc).isoformat(),
                         pid=point_id(self.run_id, agent, step, kind, index))  # once per record
            self._ensure_worker()
        if not self._enqueue(item):  # the queue is full: a counted drop (see _intake.py)
            return None
        return item.pid

    def record_many(
        self, texts: Sequence[str], *, agent: str, step: int | None = None,
        kind: str = "response", metadata: Mapping[str, Any] | None = None,
    ) -> list[str | None]:
        """``record`` each text with the same agent, step and kind (indexes 0, 1, ...)."""
        _check_str("agent", agent)
        step = _check_step(step)
        if step is None:
            with self._lock:
                step = self._auto_step[agent]
                self._auto_step[agent] += 1
        return [self.record(t, agent=agent, step=step, kind=kind, metadata=metadata)
                for t in texts]

    def record_usage(self, agent: str, **tokens: int) -> None:
        """Add token counts (e.g. ``input_tokens=12, output_tokens=30``) to an agent's usage."""
        with self._lock:
            for k, v in tokens.items():
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                    self._usage[agent][k] += int(v)
        self._exporters.usage(agent, tokens)

    def annotate(self, step: int, **values: Any) -> None:
        """Attach extra numbers to a step's history record (e.g. ``injected=3``)."""
        with self._lock:
            self._extras[int(step)].update(values)

    def log_event(self, kind: str, **data: Any) -> None:
        """Keep an event (mitigation, alarm, ...) for the history and the report."""
        with self._lock:
            self.events.append({"kind": kind, "run_id": self.run_id, **data})

    def count_handler_error(self, where: str, exc: BaseException) -> None:
        """Adapters call this when they swallow their own failure; counted and logged."""
        with self._lock:
            self._handler_errors += 1
            self._note_error(f"{where}: {type(exc).__name__}: {exc}")
        logger.warning("llmweb: %s failed and was skipped: %r", where, exc)


    # ------------------------------------------------------------------ worker side
    # _ensure_worker, _run, _run_store, _embed, _store, _fail: see _IngestWorker (_ingest.py)

    # ------------------------------------------------------------------ attribution
    def _check_single_agent(self, *, final: bool) -> None:
        """Warn once per run about the first complete step whose metric records have one agent."""
        warn_single_agent(self, final=final)

    # ------------------------------------------------------------------ alarms
    def _check_alarms(self, *, final: bool) -> None:
        if self.alarm_fraction is None:
            return
        steps = sorted(self._acc)
        norms = [(s, self._acc[s].metrics().norm) for s in steps]
        finite = [(s, n) for s, n in norms if math.isfinite(n)]
        if len(finite) <= self.baseline_steps:
            return
        base_steps = finite[: self.baseline_steps]
        baseline = float(np.mean([n for _, n in base_steps]))
        last_base = base_steps[-1][0]
        fired: list[AlarmEvent] = []
        for s, n in finite[self.baseline_steps:]:
            complete = final or s < self._max_step
            if not complete or s in self._alarmed or s <= last_base:
                continue
            if n < self.alarm_fraction * baseline:
                self._alarmed.add(s)
                ev = AlarmEvent(step=s, norm=n, baseline=baseline, fraction=self.alarm_fraction,
                                run_id=self.run_id)
                self.alarms.append(ev)
                self.events.append({"kind": "alarm", "run_id": self.run_id, "step": s,
                                    "norm": n, "baseline": baseline})
                fired.append(ev)
        for ev in fired:
            logger.warning("llmweb: collapse alarm in run %s at step %d: norm %.4g < %.2f x "
                           "baseline %.4g", ev.run_id, ev.step, ev.norm, ev.fraction, ev.baseline)
            if self.on_alarm is not None:
                try:
                    self.on_alarm(ev)
                except Exception as exc:
                    self.count_handler_error("on_alarm callback", exc)

    # ------------------------------------------------------------------ read-outs
    @property
    def stats(self) -> MonitorStats:
        """A snapshot of the counters."""
        with self._lock:
            skipped = sum(self._skip_reasons.values())
            pending = self._received - skipped - self._stored - self._failed
            return MonitorStats(
                received=self._received, embedded=self._embedded, stored=self._stored,
                skipped=skipped, skip_reasons=dict(self._skip_reasons), failed=self._failed,
                pending=max(pending, 0), errors=tuple(self._errors),
                handler_errors=self._handler_errors, repaired=dict(self._repaired),
                exporter_errors=self._exporters.errors,
            )

    @property
    def usage(self) -> dict[str, dict[str, int]]:
        """Token usage per agent, as reported by the models (may be empty)."""
        with self._lock:
            return {a: dict(u) for a, u in self._usage.items()}

    def flush(self, timeout: float | None = None, *, strict: bool = False,
              step_complete: bool = True) -> MonitorStats:
        """Wait until everything queued is embedded and stored (or failed).

        Failures since the last flush are logged as an error naming each failed record (agent,
        step, kind, index and the error, the first five); with ``strict=True`` they raise
        :class:`MonitorError`. A bad record fails alone, so the records around it are stored
        either way. Returns the stats.

        Args:
            timeout: seconds to wait at most; ``None`` waits for as long as it takes.
            strict: raise on failures instead of only logging them.
            step_complete: the newest step is complete, so the alarm may judge it. Pass
                ``False`` when more records of that step are still to come (an agent of a web
                flushing its own part of a step), or a partial step can raise a false alarm.
        """
        if self._worker is not None and self._worker.is_alive():
            if timeout is None:
                self._queue.join()
            else:
                end = time.monotonic() + timeout
                while self._queue.unfinished_tasks and time.monotonic() < end:
                    time.sleep(0.005)
        with self._lock:
            self._check_single_agent(final=step_complete)
            self._check_alarms(final=step_complete)
            unreported, self._unreported = self._unreported, []
        self._exporters.sync(final=step_complete)
        stats = self.stats
        if unreported:
            named = "; ".join(it.describe() for it in unreported[:_MAX_NAMED_FAILURES])
            more = len(unreported) - _MAX_NAMED_FAILURES
            msg = (f"llmweb: {len(unreported)} record(s) of run {self.run_id} failed to embed or "
                   f"store and are kept in monitor.failed_items (call retry_failed()); records "
                   f"that did not fail were stored. Failed: {named}"
                   f"{f'; and {more} more' if more > 0 else ''}")
            logger.error(msg)
            if strict:
                raise MonitorError(msg)
        return stats

    def retry_failed(self) -> int:
        """Queue the failed records again (only those); returns how many were re-queued."""
        with self._lock:
            items, self.failed_items = self.failed_items, []
            self._failed -= len(items)
            failed_ids = {id(it) for it in items}
            self._unreported = [it for it in self._unreported if id(it) not in failed_ids]
            for it in items:
                self._ensure_worker()
                self._queue.put(replace(it, error=""))
        return len(items)

    def history(self, *, flush: bool = True) -> list[StepMetrics]:
        """One :class:`~llmweb_plugin.metrics.StepMetrics` per step with metric records.

        ``extras`` of each record holds the web accounting up to that step (``web_size``,
        ``synthetic_fraction``: posts over the web, and the count of each kind) plus anything
        given to :meth:`annotate`.
        """
        if flush:
            self.flush()
        with self._lock:
            web_at = self._web_accounting_locked()
            out = []
            for s in sorted(set(self._acc) | set(self._extras)):
                acc = self._acc.get(s) or StepAccumulator(s)
                m = acc.metrics()
                out.append(replace(m, extras={**web_at.get(s, {}), **self._extras.get(s, {})}))
            return out

    def step_extras(self, step: int) -> dict[str, Any]:
        """The ``extras`` that :meth:`history` gives ``step``, without computing any metric.

        Empty when the step has neither metric records nor annotations (as in ``history``).
        Does not flush.
        """
        step = int(step)
        with self._lock:
            if step not in self._acc and step not in self._extras:
                return {}
            return {**self._web_accounting_locked().get(step, {}), **self._extras.get(step, {})}

    def _web_accounting_locked(self) -> dict[int, dict[str, Any]]:
        """Per step: web size, synthetic fraction and kind counts, cumulated up to that step."""
        cum: dict[str, int] = defaultdict(int)
        web_at: dict[int, dict[str, Any]] = {}
        for s in sorted(set(self._acc) | set(self._extras) | set(self._kind_counts)):
            for k, c in self._kind_counts.get(s, {}).items():
                cum[k] += c
            web = sum(cum[k] for k in WEB_KINDS)
            web_at[s] = {
                "web_size": web,
                "synthetic_fraction": (cum["post"] / web) if web else None,
                **{f"n_{k}": self._kind_counts.get(s, {}).get(k, 0) for k in KINDS},
            }
        return web_at

    def _trend_history(self, run_id: str | None) -> tuple[str, list[StepMetrics]]:
        """This run's :meth:`history`, or another run's per-step metrics rebuilt from the store."""
        if run_id is None or run_id == self.run_id:
            return self.run_id, self.history()
        _check_str("run_id", run_id)
        self.flush()
        hist = run_history(self.store, run_id, self.metric_kinds)  # summaries, else records
        if not hist:
            known = self.store.runs()
            shown = ", ".join(map(repr, known[:10])) + (" ..." if len(known) > 10 else "")
            raise ValueError(f"run_id {run_id!r} has no {'/'.join(self.metric_kinds)} records in "
                             f"collection {self.store.collection!r}; known runs: "
                             f"{shown or 'none'}. Pass one of them, or None for this monitor's "
                             f"run ({self.run_id!r}).")
        return run_id, hist

    @staticmethod
    def _trend_metrics(hist: Sequence[StepMetrics]) -> list[str]:
        extras = sorted({k for h in hist for k, v in h.extras.items()
                         if isinstance(v, (int, float, np.integer, np.floating))
                         and not isinstance(v, bool) and k not in _TREND_FIELDS})
        return list(_TREND_FIELDS) + extras

    def trend(self, metric: str = "norm", *, run_id: str | None = None, alpha: float = 0.05,
              margin: float = 0.10, higher_is_diverse: bool = True) -> CollapseTrend:
        """Is ``metric`` collapsing over the run so far? A verdict with its uncertainty.

        Tests the whole per-step series (:func:`~llmweb_plugin.trend.collapse_trend`), unlike the
        alarm, which compares one step with the early baseline (see the module docstring).
        Flushes first, so every record queued so far counts; steps with an undefined value (e.g.
        ``||D||`` of a one-agent step) are dropped and counted in ``n_dropped``. Cheap to call
        after every step: the reference distributions are cached per series length (beyond 64
        steps, per length of a fixed grid).

        Args:
            metric: ``"norm"`` (``||D||_F``, default), ``"normalized_norm"``, ``"between_spread"``,
                ``"within_spread"``, ``"total_spread"``, ``"mean_cosine_distance"``, or a
                numeric ``extras`` key of :meth:`history` (e.g. ``"vendi_score"`` given to
                :meth:`annotate`).
            run_id: another run in the same store (rebuilt from its stored records), or
                ``None`` for this monitor's run.
            alpha: error rate; intervals are two-sided ``1 - alpha``.
            margin: equivalence margin for "stable", a fraction of the early mean.
            higher_is_diverse: ``False`` for a metric that rises under collapse.

        Returns:
            A frozen :class:`~llmweb_plugin.trend.CollapseTrend`; ``"inconclusive"`` with the
            reason when there are fewer than 6 steps.

        Raises:
            ValueError: ``metric`` is not one of the valid names (listed in the message), or
                ``run_id`` has no records in the store, or ``alpha``/``margin`` out of range.
            TypeError: ``metric`` or ``run_id`` is not a ``str``.

        Example:
            >>> import llmweb_plugin as lw
            >>> with lw.CollapseMonitor(lw.WebStore(":memory:"), run_id="t") as mon:
            ...     tr = mon.trend()
            >>> tr.verdict, tr.n_steps
            ('inconclusive', 0)
        """
        if not isinstance(metric, str):
            raise TypeError(f"metric must be a str naming a per-step metric; got "
                            f"{type(metric).__name__}")
        rid, hist = self._trend_history(run_id)
        valid = self._trend_metrics(hist)
        if metric not in valid:
            raise ValueError(f"unknown metric {metric!r} for run {rid!r}; valid names: "
                             f"{', '.join(valid)}")
        if metric in _TREND_FIELDS:
            values = [getattr(h, metric) for h in hist]
        else:
            values = [h.extras.get(metric) for h in hist]
        values = [v if isinstance(v, (int, float, np.integer, np.floating))
                  and not isinstance(v, bool) else None for v in values]
        return collapse_trend(values, steps=[h.step for h in hist], alpha=alpha, metric=metric,
                              higher_is_diverse=higher_is_diverse, margin=margin)

    def verdict(self, *, run_id: str | None = None, alpha: float = 0.05,
                margin: float = 0.10) -> CollapseVerdict:
        """Which fell over the run so far: agents' convergence, the web's diversity, or both?

        :func:`~llmweb_plugin.trend.collapse_verdict` on this run's :meth:`history` (or
        another stored run's, see :meth:`trend`): ``norm`` and ``between_spread`` measure
        convergence, ``mean_cosine_distance`` (and ``vendi_score`` / ``distinct_n`` when given
        to :meth:`annotate`) diversity. "collapsing" needs both to fall; agents agreeing on a
        shared but still diverse source reads "converging", with the reason.

        Raises:
            ValueError: ``run_id`` has no records in the store, or ``alpha``/``margin`` out of
                range.
        """
        _rid, hist = self._trend_history(run_id)
        return collapse_verdict(hist, alpha=alpha, margin=margin)

    def latest(self) -> StepMetrics | None:
        """The newest step's metrics, or ``None``."""
        hist = self.history()
        return hist[-1] if hist else None

    def records(self, **filters: Any) -> list[Record]:
        """This run's records as stored in Qdrant (after a flush)."""
        self.flush()
        return self.store.records(self.run_id, **filters)

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float | None = None) -> MonitorStats:
        """Flush, stop the worker and report. The store stays open (it is the caller's).

        With ``timeout`` (seconds), what is not written by then fails: counted, logged and kept
        in ``failed_items`` for :meth:`retry_failed`. ``None`` waits until all is written."""
        if self._closed:
            return self.stats
        stats = self.flush(timeout)
        self._closed = True
        stats, wait = self._abandon(timeout, stats)  # fail what is still queued (_intake.py)
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(_STOP)
            self._worker.join(timeout=wait)
        if self._store_worker is not None:
            self._store_worker.join(timeout=wait)
        self._exporters.close(stats)
        return stats

    def __enter__(self) -> CollapseMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats
        return (f"CollapseMonitor(run_id={self.run_id!r}, stored={s.stored}, "
                f"failed={s.failed}, skipped={s.skipped})")
