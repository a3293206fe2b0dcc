"""The worker side of :class:`~llmweb_plugin.monitor.CollapseMonitor`: batch, embed, store.

The caller's thread only validates and enqueues an :class:`_Item`. Two pipelined worker threads
do the rest: the first collects a batch (up to ``batch_size`` records, waiting ``linger`` seconds
to fill it) and embeds it (torch releases the GIL); the second upserts the previous batch into the
:class:`~llmweb_plugin.store.WebStore` and adds the metric records to the per-step accumulators.
Each queued record is marked done only after the store stage, so ``flush`` waits for both.

One bad record fails only itself: :func:`_bisect` splits a failing batch in halves until the
failing records are alone, and gives up on the rest of the batch as a whole when nothing succeeds
within :func:`_budget` calls (the embedder or the store is down). A non-finite row from the
embedder fails its record alone. The embedded vectors are put in the form the store keeps
(:meth:`~llmweb_plugin.store.WebStore.as_stored`: unit vectors for a cosine collection) before
they are stored and added to the step's metrics, so the monitor measures what the store holds. Any exception, ``BaseException`` included, fails its records and
the workers keep going; failures are counted, logged and kept in ``failed_items``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._intake import _Intake, _IntakeQueue
from .embeddings import Embedder
from .metrics import StepAccumulator
from .store import Record, WebStore

if TYPE_CHECKING:
    from .exporters import ExporterHub

# the monitor's own log, which users filter on (the worker is part of the monitor)
logger = logging.getLogger("llmweb_plugin.monitor")

_STOP = object()
_MAX_ERRORS = 20


@dataclass(frozen=True)
class _Item:
    text: str
    agent: str
    step: int
    kind: str
    index: int
    metadata: Mapping[str, Any]
    created_at: str
    error: str = ""  # why it failed, once it has
    pid: str = ""  # the point id (computed once by record())

    def describe(self) -> str:
        where = f"agent {self.agent!r}, step {self.step}, {self.kind} #{self.index}"
        return f"{where}: {self.error}" if self.error else where


def _bisect(items: list[Any], attempt: Callable[[list[Any]], Any], *,
            budget: int) -> tuple[list[tuple[list[Any], Any]], list[tuple[list[Any], BaseException]]]:
    """Call ``attempt`` on ``items``; on failure, split in halves until the failures are alone.

    Returns ``(done, failed)``: the sub-lists that succeeded with ``attempt``'s result, in order,
    and the failing sub-lists with their exception. Singletons that fail are the bad items. If
    ``budget`` calls fail before any succeeds, the callee is failing as a whole (a service down):
    what is left fails as one group instead of being tried item by item.
    """
    done: list[tuple[list[Any], Any]] = []
    failed: list[tuple[list[Any], BaseException]] = []
    stack = [items]
    n_failed_calls = 0
    any_ok = False
    while stack:
        sub = stack.pop()
        try:
            result = attempt(sub)
        except BaseException as exc:  # noqa: BLE001 - a SystemExit in an embedder fails records
            n_failed_calls += 1
            if not any_ok and n_failed_calls >= budget:
                rest = sub + [it for s in reversed(stack) for it in s]
                stack.clear()
                failed.append((rest, exc))
            elif len(sub) == 1 or getattr(exc, "transient", False):  # server down: no split
                failed.append((sub, exc))
            else:
                mid = len(sub) // 2
                stack.append(sub[mid:])
                stack.append(sub[:mid])
            continue
        any_ok = True
        done.append((sub, result))
    return done, failed


def _budget(n: int) -> int:
    """Failed calls allowed before anything succeeds: enough to isolate a few bad records."""
    return 2 * max(n, 1).bit_length() + 2


class _IngestWorker(_Intake):
    """The background pipeline, a base class of ``CollapseMonitor``.

    It holds no state of its own: ``CollapseMonitor.__init__`` sets every attribute listed below,
    and the monitor provides the alarm checks the store stage runs when a step is completed.
    """

    run_id: str
    store: WebStore
    embedder: Embedder
    metric_kinds: tuple[str, ...]
    batch_size: int
    linger: float
    failed_items: list[_Item]
    _lock: threading.RLock
    _queue: _IntakeQueue
    _worker: threading.Thread | None
    _store_worker: threading.Thread | None
    _store_q: queue.Queue[Any]
    _embedded: int
    _stored: int
    _failed: int
    _errors: list[str]
    _unreported: list[_Item]
    _acc: dict[int, StepAccumulator]
    _kind_counts: dict[int, dict[str, int]]
    _step_agents: dict[int, set[str]]
    _max_step: float
    _exporters: ExporterHub

    if TYPE_CHECKING:  # provided by CollapseMonitor
        def _check_single_agent(self, *, final: bool) -> None: ...
        def _check_alarms(self, *, final: bool) -> None: ...
        def count_handler_error(self, where: str, exc: BaseException) -> None: ...

    def _ensure_worker(self) -> None:
        # Two pipelined stages: embedding (torch releases the GIL) overlaps the Qdrant upsert of
        # the previous batch. Each queued record is marked done only after the store stage.
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(
                target=self._run, name=f"llmweb-embed-{self.run_id}", daemon=True
            )
            self._worker.start()
        if self._store_worker is None or not self._store_worker.is_alive():
            self._store_worker = threading.Thread(
                target=self._run_store, name=f"llmweb-store-{self.run_id}", daemon=True
            )
            self._store_worker.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._store_q.put(_STOP)
                self._queue.task_done()
                return
            batch = [first]
            deadline = time.monotonic() + self.linger
            stop = False
            while len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            try:
                good, vecs, bad = self._embed(batch)
            except BaseException as exc:  # noqa: BLE001 - never let the worker die
                good, vecs, bad = [], None, [(batch, exc)]
            for items, err in bad:
                self._fail(items, "embed", err)
                for _ in items:
                    self._queue.task_done()
            if good:
                self._store_q.put((good, vecs))
            if stop:
                self._store_q.put(_STOP)
                self._queue.task_done()
                return

    def _run_store(self) -> None:
        while True:
            job = self._store_q.get()
            if job is _STOP:
                return
            batch, vecs = job
            advanced = False
            try:
                advanced = self._store(batch, vecs)
            except BaseException as exc:  # noqa: BLE001 - never let the worker die
                self._fail(batch, "store", exc)
            if advanced:  # a step was completed by a later one
                try:
                    with self._lock:
                        self._check_single_agent(final=False)
                        self._check_alarms(final=False)
                except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit from on_alarm
                    self.count_handler_error("alarm check", exc)
            self._exporters.sync(final=False)  # never raises
            for _ in batch:
                self._queue.task_done()

    def _note_error(self, msg: str) -> None:
        self._errors.append(msg)
        del self._errors[:-_MAX_ERRORS]

    def _fail(self, batch: list[_Item], where: str, exc: BaseException) -> None:
        msg = f"{where}: {type(exc).__name__}: {exc}"
        failed = [replace(it, error=msg) for it in batch]
        with self._lock:
            self._failed += len(failed)
            self._unreported.extend(failed)
            self.failed_items.extend(failed)
            self._note_error(msg if len(failed) > 1 else f"{failed[0].describe()}")
        logger.error("llmweb: %s failed for %d record(s) of run %s (%s): %r", where, len(batch),
                     self.run_id, failed[0].describe() if len(failed) == 1 else "the batch", exc)
        self._exporters.failed(failed)

    def _embed_call(self, batch: list[_Item]) -> np.ndarray:
        vecs = np.asarray(self.embedder.embed([it.text for it in batch]), dtype=np.float32)
        if vecs.shape != (len(batch), self.store.dim):
            raise ValueError(
                f"embedder returned shape {vecs.shape}; expected ({len(batch)}, {self.store.dim})"
            )
        return vecs

    def _embed(self, batch: list[_Item]) -> tuple[list[_Item], np.ndarray | None,
                                                    list[tuple[list[_Item], BaseException]]]:
        """Embed ``batch``; returns the embedded items, their vectors, and the failed groups."""
        done, bad = _bisect(batch, self._embed_call, budget=_budget(len(batch)))
        good: list[_Item] = []
        blocks: list[np.ndarray] = []
        for items, vecs in done:
            finite = np.isfinite(vecs).all(axis=1)
            if not finite.all():  # a non-finite row fails its record alone
                bad.extend(([it], ValueError("the embedder returned a non-finite (NaN/inf) "
                                             "vector for this text"))
                           for it, ok in zip(items, finite) if not ok)
                items = [it for it, ok in zip(items, finite) if ok]
                vecs = vecs[finite]
            good.extend(items)
            # the vectors as the store keeps them (unit for cosine): the metrics measure these
            blocks.append(self.store.as_stored(vecs))
        with self._lock:
            self._embedded += len(good)
        if not good:
            return [], None, bad
        return good, (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), bad

    def _store(self, batch: list[_Item], vecs: np.ndarray) -> bool:
        """Upsert ``batch``; failing records fail alone. True if a newer step was reached."""
        recs = [
            Record(text=it.text, run_id=self.run_id, agent=it.agent, step=it.step, kind=it.kind,
                   index=it.index, metadata=it.metadata, created_at=it.created_at, id=it.pid)
            for it in batch
        ]
        positions = list(range(len(batch)))  # the vectors go as one array, not row by row
        done, bad = _bisect(positions, lambda pos: self.store.upsert(
            [recs[i] for i in pos], vecs if len(pos) == len(recs) else vecs[pos]),
            budget=_budget(len(batch)))
        with self._lock:
            prev_max = self._max_step
            by_step: dict[int, list[int]] = {}  # one accumulator call per step, not per record
            for pos, _ in done:
                self._stored += len(pos)
                for i in pos:
                    it = batch[i]
                    self._kind_counts[it.step][it.kind] += 1
                    if it.kind in self.metric_kinds:
                        by_step.setdefault(it.step, []).append(i)
                        self._step_agents[it.step].add(it.agent)
                        self._max_step = max(self._max_step, it.step)
            for step, rows in by_step.items():
                acc = self._acc.get(step)
                if acc is None:
                    acc = self._acc[step] = StepAccumulator(step)
                acc.add(vecs[rows], [batch[i].agent for i in rows])
            advanced = self._max_step > prev_max
        stored = [i for pos, _ in done for i in pos]
        self._exporters.stored([batch[i] for i in stored], vecs[stored])
        for pos, exc in bad:
            self._fail([batch[i] for i in pos], "store", exc)
        return advanced
