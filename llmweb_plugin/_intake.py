"""The bounded intake of :class:`~llmweb_plugin.monitor.CollapseMonitor`: back-pressure, counted
drops, and what ``close(timeout=...)`` does with what is left.

``record()`` puts each record on an :class:`_IntakeQueue` of at most ``max_queue`` records
waiting for the embedding worker (``None``: no bound). When it is full:

* ``on_full="block"`` (default): ``record()`` waits up to ``block_timeout`` seconds for room
  (back-pressure: a fast producer is slowed to the store's pace). If none comes, the record is
  dropped, and while the queue stays full the next records are dropped at once instead of each
  waiting again, so an outage does not hold the app for ``block_timeout`` per call; the first
  record that finds room ends that.
* ``on_full="drop"``: the record is dropped at once.

Nothing is lost silently: a drop is counted in ``stats.skipped`` and
``stats.skip_reasons["queue_full"]`` (so ``received == skipped + stored + failed + pending`` still
holds), logged as a warning at the 1st, 2nd, 4th, 8th, ... drop with the running total, noted in
``stats.errors``, and summed up by ``close()``. Dropped texts are not kept (a bound that kept them
would bound nothing).

``close(timeout=T)`` waits up to ``T`` seconds for the queue to drain; the records still queued
then fail (counted in ``stats.failed``, logged, kept in ``failed_items``, so ``retry_failed()``
and ``flush()`` write them later), and records still being written are reported as pending.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .monitor import MonitorStats

# the monitor's own log, which users filter on
logger = logging.getLogger("llmweb_plugin.monitor")

ON_FULL = ("block", "drop")
DROP_REASON = "queue_full"
_STOP_WAIT = 1.0  # seconds close(timeout=...) waits for each worker to stop


class _IntakeQueue(queue.Queue):  # type: ignore[type-arg]
    """An unbounded ``queue.Queue`` whose bound applies to :meth:`offer` (``record()``) only.

    The monitor's own puts (the stop marker, ``retry_failed()``) always fit, so they can never
    block while the monitor's lock is held.
    """

    def __init__(self, max_queue: int | None, on_full: str, block_timeout: float) -> None:
        if max_queue is not None and (isinstance(max_queue, bool)
                                      or not isinstance(max_queue, int) or max_queue < 1):
            raise ValueError(f"max_queue must be a positive int (records waiting to be "
                             f"embedded) or None for no bound; got {max_queue!r}")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}; got {on_full!r}")
        if isinstance(block_timeout, bool) or not isinstance(block_timeout, (int, float)) \
                or not block_timeout >= 0:
            raise ValueError(f"block_timeout must be a number of seconds >= 0; got "
                             f"{block_timeout!r}")
        super().__init__()
        self.limit = max_queue
        self.on_full = on_full
        self.block_timeout = float(block_timeout)
        self.shedding = False  # a wait timed out and the queue has not had room since

    def offer(self, item: Any) -> bool:
        """Queue ``item`` if there is room (waiting as ``on_full`` says); ``False``: dropped."""
        with self.not_full:
            if self.limit is not None and self._qsize() >= self.limit:
                if self.on_full == "drop" or self.shedding:
                    return False
                end = time.monotonic() + self.block_timeout
                while self._qsize() >= self.limit:
                    left = end - time.monotonic()
                    if left <= 0:
                        self.shedding = True
                        return False
                    self.not_full.wait(left)
            self.shedding = False
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()
            return True


class _Intake:
    """The monitor's side of the intake (a base of ``_IngestWorker``); the monitor sets
    ``_queue`` to an :class:`_IntakeQueue` and provides the attributes named below."""

    run_id: str
    _queue: _IntakeQueue
    _store_q: queue.Queue[Any]
    _lock: threading.RLock
    _skip_reasons: dict[str, int]

    if TYPE_CHECKING:  # provided by _IngestWorker / CollapseMonitor
        @property
        def stats(self) -> MonitorStats: ...
        def _note_error(self, msg: str) -> None: ...
        def _fail(self, batch: list[Any], where: str, exc: BaseException) -> None: ...

    def _enqueue(self, item: Any) -> bool:
        """Offer a record to the intake; a drop is counted and logged. ``False`` if dropped."""
        if self._queue.offer(item):
            return True
        with self._lock:
            self._skip_reasons[DROP_REASON] += 1
            n = self._skip_reasons[DROP_REASON]
            self._note_error(f"dropped (queue full): {item.describe()}")
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th, ... drop
            q = self._queue
            logger.warning(
                "llmweb: dropped a record of run %s (agent %r, step %d): the monitor's queue is "
                "full (max_queue=%d, on_full=%r%s). %d record(s) dropped so far; they are counted "
                "in stats.skip_reasons[%r]. The store is slower than the app or unreachable: "
                "see stats.errors and store.write_stats, or raise max_queue.", self.run_id,
                item.agent, item.step, q.limit, q.on_full,
                f", waited {q.block_timeout:g} s" if q.on_full == "block" else "", n,
                DROP_REASON)
        return False

    def _abandon(self, timeout: float | None,
                 stats: MonitorStats) -> tuple[MonitorStats, float]:
        """After ``close()``'s flush: with a timeout, fail what is still queued (kept in
        ``failed_items``) and report; returns the stats and how long to wait for each worker."""
        left: list[Any] = []
        if timeout is not None:
            for q in (self._queue, self._store_q):
                while True:
                    try:
                        job = q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(job, tuple):  # an embedded batch waiting for the store
                        left.extend(job[0])
                        for _ in job[0]:
                            self._queue.task_done()
                    elif hasattr(job, "describe"):
                        left.append(job)
                        self._queue.task_done()
            if left:
                self._fail(left, "close", TimeoutError(
                    f"not written within close(timeout={timeout:g}); kept in failed_items "
                    "(retry_failed() then flush() writes them)"))
        stats = self.stats
        if left or (timeout is not None and stats.pending):
            logger.error("llmweb: close(timeout=%g) of run %s: %d record(s) were still queued and "
                         "failed (kept in failed_items), %d were still being written.", timeout,
                         self.run_id, len(left), stats.pending)
        dropped = stats.skip_reasons.get(DROP_REASON, 0)
        if dropped:
            logger.warning("llmweb: run %s dropped %d record(s) in all because the monitor's "
                           "queue was full (stats.skip_reasons[%r]).", self.run_id, dropped,
                           DROP_REASON)
        return stats, (30.0 if timeout is None else _STOP_WAIT)
