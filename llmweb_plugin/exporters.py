"""Exporters: a monitor's live numbers, sent to the tools users already watch.

``CollapseMonitor(store, exporters=[...])`` tells each exporter what happens as it happens. An
exporter is any object with some of the methods of :class:`MonitorExporter` (subclass
:class:`BaseExporter` to get no-op defaults); every argument is passed by keyword:

- ``on_step(run_id, step, metrics, complete, vendi)``: a step's metrics changed. ``metrics`` is
  the step's :class:`~llmweb_plugin.metrics.StepMetrics` as :meth:`CollapseMonitor.history`
  computes it (no ``extras``); ``complete`` says a later step has records or the monitor was
  flushed with ``step_complete=True`` (a partial step's numbers move as records arrive, so
  live gauges should show complete steps); ``vendi`` is the Vendi score of the step's nonzero
  vectors (:func:`~llmweb_plugin.metrics.vendi_score`), given for complete steps when an
  exporter sets ``wants_vendi = True`` (else ``None``).
- ``on_alarm(event)``: an :class:`~llmweb_plugin.monitor.AlarmEvent` fired.
- ``on_verdict(run_id, step, verdict, previous)``: the headline of
  :func:`~llmweb_plugin.trend.collapse_verdict` over the complete steps changed (it starts
  as ``"inconclusive"``); computed when a step completes, only if some exporter has
  ``on_verdict``.
- ``on_records(run_id, outcome, agent, count, reason)``: ``count`` records of ``agent``
  were ``"stored"``, ``"skipped"`` (``reason`` as in ``stats.skip_reasons``) or ``"failed"``.
  Events, not a state: a failed record stored by ``retry_failed()`` counts once as failed
  and once as stored.
- ``on_usage(run_id, agent, tokens)``: token counts added with ``record_usage``.
- ``on_close(run_id, stats)``: the monitor closed (after its last flush).

Exporters run on the monitor's threads (the caller's for skips and usage, the workers' for
stored records and steps): they must be thread-safe, return quickly, and must not call
``flush``, ``history`` or ``close`` of the monitor (the worker waiting on itself would
deadlock). Whatever an exporter raises (``BaseException`` included) is caught, counted in
``monitor.stats.exporter_errors`` and logged (a warning on the first failure of each
exporter, debug level after); it never reaches the monitor or the host app.

Example:
    >>> import llmweb_plugin as lw
    >>> from llmweb_plugin.exporters import BaseExporter
    >>> class Norms(BaseExporter):
    ...     def __init__(self):
    ...         self.seen = {}
    ...     def on_step(self, *, run_id, step, metrics, complete, vendi):
    ...         if complete:
    ...             self.seen[step] = metrics.norm
    >>> norms = Norms()
    >>> with lw.CollapseMonitor(lw.WebStore(":memory:"), run_id="x", exporters=[norms]) as mon:
    ...     for agent in ("a", "b"):
    ...         _ = mon.record(f"{agent} says hello", agent=agent, step=1)
    ...     hist = mon.history()
    >>> norms.seen == {1: hist[0].norm}
    True
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .metrics import StepMetrics, vendi_score
from .trend import collapse_verdict

if TYPE_CHECKING:
    from .monitor import AlarmEvent, CollapseMonitor, MonitorStats
    from .trend import CollapseVerdict

__all__ = ["EXPORTER_METHODS", "OUTCOMES", "BaseExporter", "ExporterHub", "MonitorExporter"]

# the monitor's own log, which users filter on (the exporters are part of the monitor)
logger = logging.getLogger("llmweb_plugin.monitor")

#: The methods an exporter may have; an object with none of them is a ``TypeError``.
EXPORTER_METHODS = ("on_step", "on_alarm", "on_verdict", "on_records", "on_usage", "on_close")
#: The outcomes ``on_records`` reports.
OUTCOMES = ("stored", "skipped", "failed")
_VENDI_STEPS = 4  # newest steps whose vectors are kept for their Vendi score
_VENDI_MAX_ROWS = 4096  # a step with more nonzero vectors gets no Vendi score (memory bound)


@runtime_checkable
class MonitorExporter(Protocol):
    """The full protocol; an exporter needs only the methods it uses (see the module doc)."""

    def on_step(self, *, run_id: str, step: int, metrics: StepMetrics, complete: bool,
                vendi: float | None) -> None: ...
    def on_alarm(self, event: AlarmEvent) -> None: ...
    def on_verdict(self, *, run_id: str, step: int, verdict: CollapseVerdict,
                   previous: str) -> None: ...
    def on_records(self, *, run_id: str, outcome: str, agent: str, count: int,
                   reason: str | None) -> None: ...
    def on_usage(self, *, run_id: str, agent: str, tokens: Mapping[str, int]) -> None: ...
    def on_close(self, *, run_id: str, stats: MonitorStats) -> None: ...


class BaseExporter:
    """No-op implementations of every :class:`MonitorExporter` method, to subclass."""

    #: Ask the monitor for each complete step's Vendi score (costs an eigen-decomposition).
    wants_vendi: bool = False

    def on_step(self, *, run_id: str, step: int, metrics: StepMetrics, complete: bool,
                vendi: float | None) -> None:
        """A step's metrics changed."""

    def on_alarm(self, event: AlarmEvent) -> None:
        """An alarm fired."""

    def on_verdict(self, *, run_id: str, step: int, verdict: CollapseVerdict,
                   previous: str) -> None:
        """The headline verdict changed."""

    def on_records(self, *, run_id: str, outcome: str, agent: str, count: int,
                   reason: str | None) -> None:
        """Records were stored, skipped or failed."""

    def on_usage(self, *, run_id: str, agent: str, tokens: Mapping[str, int]) -> None:
        """Token usage was added."""

    def on_close(self, *, run_id: str, stats: MonitorStats) -> None:
        """The monitor closed."""


def _guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """A hub entry point never raises into the monitor's threads (nor the caller's)."""

    @functools.wraps(fn)
    def wrapper(self: ExporterHub, *args: Any, **kwargs: Any) -> None:
        try:
            fn(self, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a failing hub must not stop a worker
            self._count_error(self, fn.__name__, exc)

    return wrapper


def _has(exporter: Any, method: str) -> bool:
    """Does ``exporter`` implement ``method`` (a no-op inherited from BaseExporter does not)?"""
    fn = getattr(type(exporter), method, None) or getattr(exporter, method, None)
    return callable(fn) and fn is not getattr(BaseExporter, method)


class ExporterHub:
    """The monitor's side of the protocol: what changed, and every call guarded.

    Internal to :class:`~llmweb_plugin.monitor.CollapseMonitor` (which makes one and calls it
    from a few places); reads the monitor's state under its lock and calls the exporters
    outside it.
    """

    def __init__(self, monitor: CollapseMonitor, exporters: Sequence[Any] | None) -> None:
        if exporters is None:
            exporters = ()
        if isinstance(exporters, (str, bytes)) or not isinstance(exporters, Sequence):
            raise TypeError(f"exporters must be a list of exporter objects; got "
                            f"{type(exporters).__name__}")
        for i, exp in enumerate(exporters):
            if not any(callable(getattr(exp, m, None)) for m in EXPORTER_METHODS):
                raise TypeError(f"exporters[{i}] ({type(exp).__name__}) has none of the exporter "
                                f"methods {', '.join(EXPORTER_METHODS)}; see "
                                "llmweb_plugin.exporters")
        self._mon = monitor
        self._exporters = tuple(exporters)
        self._wants = {m: tuple(e for e in self._exporters if _has(e, m))
                       for m in EXPORTER_METHODS}
        self._wants_vendi = any(getattr(e, "wants_vendi", False) for e in self._wants["on_step"])
        self._lock = threading.Lock()  # the hub's own state (not the monitor's lock)
        # one publication at a time, so a stale snapshot is never sent after a newer one;
        # taken before the monitor's lock, never while holding it
        self._sync_lock = threading.RLock()
        self._failed_once: set[int] = set()
        self.errors = 0
        self._dirty: set[int] = set()  # steps changed since they were last published
        self._open: set[int] = set()  # published as incomplete, to re-publish once complete
        self._n_alarms = 0
        self._verdict = "inconclusive"
        self._n_complete = 0  # complete steps the verdict was last computed on
        self._rows: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self._rows_floor = -math.inf  # steps at or below it lost their rows (no Vendi)

    @property
    def active(self) -> bool:
        return bool(self._exporters)

    # ---------------------------------------------------------------- calling exporters
    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        for exp in self._wants[method]:
            try:
                getattr(exp, method)(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - an exporter never breaks the monitor
                self._count_error(exp, method, exc)

    def _count_error(self, exp: Any, method: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = id(exp) not in self._failed_once
            self._failed_once.add(id(exp))
        try:
            with self._mon._lock:
                self._mon._note_error(f"exporter {type(exp).__name__}.{method}: "
                                      f"{type(exc).__name__}: {exc}")
        except Exception as note_exc:  # noqa: BLE001 - the note is best effort
            logger.debug("llmweb: could not note an exporter error: %r", note_exc)
        logger.log(logging.WARNING if first else logging.DEBUG,
                   "llmweb: exporter %s failed in %s and was skipped (run %s): %r%s",
                   type(exp).__name__, method, self._mon.run_id, exc,
                   "; further failures of this exporter are counted in stats.exporter_errors "
                   "and logged at debug level" if first else "")

    # ---------------------------------------------------------------- records
    @_guarded
    def stored(self, items: Sequence[Any], vecs: np.ndarray | None) -> None:
        """Records were upserted (the worker's store stage, outside the monitor's lock)."""
        if not self._exporters or not items:
            return
        metric = [i for i, it in enumerate(items) if it.kind in self._mon.metric_kinds]
        with self._lock:
            self._dirty.update(items[i].step for i in metric)
            if self._wants_vendi and vecs is not None:
                for i in metric:
                    self._keep_row(items[i].step, vecs[i])
        self._outcome("stored", items)

    @_guarded
    def failed(self, items: Sequence[Any]) -> None:
        if self._exporters:
            self._outcome("failed", items)

    @_guarded
    def skipped(self, reason: str, agent: str | None) -> None:
        self._call("on_records", run_id=self._mon.run_id, outcome="skipped",
                   agent="" if agent is None else agent, count=1, reason=reason)

    @_guarded
    def usage(self, agent: str, tokens: Mapping[str, Any]) -> None:
        ints = {str(k): int(v) for k, v in tokens.items()
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool)}
        if ints:
            self._call("on_usage", run_id=self._mon.run_id, agent=agent, tokens=ints)

    def _outcome(self, outcome: str, items: Sequence[Any]) -> None:
        per_agent: dict[str, int] = defaultdict(int)
        for it in items:
            per_agent[it.agent] += 1
        for agent, n in per_agent.items():
            self._call("on_records", run_id=self._mon.run_id, outcome=outcome, agent=agent,
                       count=n, reason=None)

    def _keep_row(self, step: int, vec: np.ndarray) -> None:
        if step <= self._rows_floor or not np.any(vec):
            return
        rows = self._rows.get(step)
        if rows is None:
            rows = self._rows[step] = []
            while len(self._rows) > _VENDI_STEPS:  # drop the oldest step's rows
                old = min(self._rows)
                del self._rows[old]
                self._rows_floor = max(self._rows_floor, old)
        if len(rows) <= _VENDI_MAX_ROWS:
            rows.append(np.array(vec, dtype=np.float64))

    def _vendi(self, step: int) -> float | None:
        with self._lock:
            rows = list(self._rows.get(step, ()))
        if not rows or len(rows) > _VENDI_MAX_ROWS:
            return None
        return vendi_score(np.stack(rows))

    # ---------------------------------------------------------------- steps, alarms, verdict
    @_guarded
    def sync(self, *, final: bool) -> None:
        """Publish changed steps, new alarms and a changed verdict (after the alarm checks)."""
        if not self._exporters:
            return
        with self._sync_lock:
            self._sync(final=final)

    def _sync(self, *, final: bool) -> None:
        mon = self._mon
        with mon._lock:
            max_step = mon._max_step
            with self._lock:
                newly = {s for s in self._open if final or s < max_step}
                todo = sorted(self._dirty | newly)
                self._dirty.clear()
            steps: list[tuple[int, StepMetrics, bool]] = []
            for s in todo:
                acc = mon._acc.get(s)
                if acc is not None:
                    steps.append((s, acc.metrics(), final or s < max_step))
            alarms = list(mon.alarms[self._n_alarms:])
            self._n_alarms += len(alarms)
            n_complete = sum(1 for s in mon._acc if final or s < max_step)
        with self._lock:
            for s, _, complete in steps:
                (self._open.discard if complete else self._open.add)(s)
        for s, m, complete in steps:
            vendi = self._vendi(s) if complete and self._wants_vendi else None
            self._call("on_step", run_id=mon.run_id, step=s, metrics=m, complete=complete,
                       vendi=vendi)
        for ev in alarms:
            self._call("on_alarm", ev)
        if self._wants["on_verdict"] and n_complete != self._n_complete:
            self._n_complete = n_complete
            self._check_verdict(final=final, max_step=max_step)

    def _check_verdict(self, *, final: bool, max_step: float) -> None:
        try:
            hist = [h for h in self._mon.history(flush=False) if final or h.step < max_step]
            verdict = collapse_verdict(hist)
        except Exception as exc:  # noqa: BLE001 - a verdict that cannot be computed is logged
            logger.debug("llmweb: no verdict for the exporters (run %s): %r", self._mon.run_id,
                         exc)
            return
        if verdict.verdict == self._verdict:
            return
        previous, self._verdict = self._verdict, verdict.verdict
        self._call("on_verdict", run_id=self._mon.run_id, step=hist[-1].step if hist else -1,
                   verdict=verdict, previous=previous)

    @_guarded
    def close(self, stats: MonitorStats) -> None:
        self._call("on_close", run_id=self._mon.run_id, stats=stats)
        with self._lock:
            self._rows.clear()
