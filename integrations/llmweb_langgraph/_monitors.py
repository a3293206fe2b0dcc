"""The monitors a web graph makes for its runs: opened by a run's first node, closed after its end.

A :class:`~llmweb_plugin.monitor.CollapseMonitor` owns two worker threads (embedding and
storage) and the run's in-memory series. A web graph is compiled once and invoked for many runs
(the LangGraph server keeps one graph per settings for the life of the process), so a monitor it
makes for a run must not outlive the run, or every run leaks two threads and its records' memory.

Each node of a run holds a *lease* on the run's monitor while it works (``with leases.use(rid)``).
The lease ends the monitor's life when its last holder leaves after either

- the run's last step (the final ``metrics`` node called :meth:`RunMonitors.finish`), or
- a node failed: the invocation raises, and LangGraph may resume the thread later from its
  checkpoint (in this process or another). Parallel ``agent`` tasks of the failed step still
  holding the lease finish first; the last one out flushes and closes the monitor.

A later node of the same run (a resume) finds no lease and makes a fresh monitor: a closed monitor
is never reused. A monitor the user passed in is theirs: it is lent to every node and never closed
here. Closing flushes what was queued (the records of a failed step are idempotent: the resume
overwrites them) and never raises into the graph: a failure to close is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from llmweb_plugin.monitor import CollapseMonitor
from llmweb_plugin.store import WebStore

logger = logging.getLogger(__name__)


@dataclass
class _Lease:
    monitor: CollapseMonitor
    holders: int = 0
    ending: bool = False


class RunMonitors:
    """One monitor per run of a web graph, alive while the run's nodes work (see the module).

    Args:
        store: the store the graph's own monitors write to.
        given: the user's monitor; lent for its own run id and never closed here.
    """

    def __init__(self, store: WebStore, given: CollapseMonitor | None = None) -> None:
        self.store = store
        self.given = given
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    @contextmanager
    def use(self, rid: str) -> Iterator[CollapseMonitor]:
        """Hold the monitor of run ``rid`` while the body runs; a failing body ends its life.

        Raises:
            ValueError: a user's monitor was given and ``rid`` is another run.
        """
        if self.given is not None:
            if rid != self.given.run_id:
                raise ValueError(
                    f"this checkpoint belongs to run {rid!r} but the monitor records run "
                    f"{self.given.run_id!r}; resume with monitor=None or a monitor for {rid!r}"
                )
            yield self.given
            return
        with self._lock:
            lease = self._leases.get(rid)
            if lease is None:
                lease = self._leases[rid] = _Lease(CollapseMonitor(self.store, run_id=rid))
            lease.holders += 1
        ok = False
        try:
            yield lease.monitor
            ok = True
        finally:
            self._leave(rid, lease, failed=not ok)

    def finish(self, rid: str) -> None:
        """Mark run ``rid`` as ended: its monitor closes when its last holder leaves."""
        with self._lock:
            lease = self._leases.get(rid)
            if lease is not None:
                lease.ending = True

    def open_runs(self) -> list[str]:
        """The run ids whose own monitor is open (a run under way or paused by an interrupt)."""
        with self._lock:
            return sorted(self._leases)

    def close(self) -> None:
        """Close every own monitor still open (a paused run's); a later resume makes a new one."""
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            _close(lease.monitor)

    def _leave(self, rid: str, lease: _Lease, *, failed: bool) -> None:
        with self._lock:
            lease.holders -= 1
            lease.ending = lease.ending or failed
            if not lease.ending or lease.holders > 0:
                return
            if self._leases.get(rid) is lease:
                del self._leases[rid]
        _close(lease.monitor)


def _close(monitor: CollapseMonitor) -> None:
    try:
        monitor.close()
    except Exception:  # monitoring never raises into the user's graph
        logger.exception("llmweb: closing the monitor of run %s failed", monitor.run_id)
