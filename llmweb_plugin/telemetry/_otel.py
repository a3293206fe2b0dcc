"""``OTelExporter``: a monitor's per-step metrics, records and tokens as OpenTelemetry
instruments; alarms and verdict changes as span events.

**Instruments** (meter ``llmweb_plugin``):

- gauges ``llmweb.collapse.norm``, ``llmweb.collapse.norm_normalized``,
  ``llmweb.diversity.mean_cosine_distance``, ``llmweb.diversity.vendi``,
  ``llmweb.spread.within``, ``llmweb.spread.between`` (:data:`GAUGES`), and ``llmweb.step``
  (the step they describe), attribute ``run_id``;
- counters ``llmweb.records`` (attributes ``outcome`` = stored / skipped / failed, ``agent``,
  and ``reason`` for a skip), ``llmweb.tokens`` (``agent``, ``type``: the usage key without
  its ``_tokens`` suffix, e.g. ``input``) and ``llmweb.collapse.alarms``.

**Bounded cardinality.** A gauge shows, per open run, the *latest complete step* only (a step
is complete once a later step has records, or after ``flush()``); the series of earlier steps
lives in the store (``mon.history()``, reports). A run's gauges stop reporting when its monitor
closes. Steps are not an attribute by default: OpenTelemetry's SDK keeps every attribute set it
has seen, so a ``step`` attribute grows its table by one per step and, past the SDK's
cardinality limit (2,000 by default), the values are reported under ``otel.metric.overflow``
instead (measured with SDK 1.45: from the 2,000th step on). ``step_attribute=True`` adds it for
short runs. Agents are capped at ``max_agents`` distinct names per exporter (later ones count
as ``"other"``, with one warning); skip reasons and token types are few by construction.

NaN values (``||D||`` of a one-agent step, a cosine distance with fewer than two vectors) are
not reported: the gauge has no point for that step rather than a misleading number.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..exporters import BaseExporter

if TYPE_CHECKING:
    from ..metrics import StepMetrics
    from ..monitor import AlarmEvent, MonitorStats
    from ..trend import CollapseVerdict

__all__ = ["GAUGES", "OTelExporter"]

logger = logging.getLogger(__name__)

#: Gauge name -> the field it reports (``vendi``: the step's Vendi score).
GAUGES: Mapping[str, str] = {
    "llmweb.collapse.norm": "norm",
    "llmweb.collapse.norm_normalized": "normalized_norm",
    "llmweb.diversity.mean_cosine_distance": "mean_cosine_distance",
    "llmweb.diversity.vendi": "vendi",
    "llmweb.spread.within": "within_spread",
    "llmweb.spread.between": "between_spread",
}
_DESCRIPTIONS = {
    "norm": "||D||_F between the agents' mean embeddings at the latest complete step",
    "normalized_norm": "||D||_F / sqrt(m (m - 1)) at the latest complete step",
    "mean_cosine_distance": "mean pairwise cosine distance of the latest complete step",
    "vendi": "Vendi score (cosine kernel) of the latest complete step",
    "within_spread": "mean squared distance to the own agent's mean (latest complete step)",
    "between_spread": "spread of the agents' means (latest complete step)",
}
_INSTALL = "pip install 'llmweb-plugin[otel]'"


class OTelExporter(BaseExporter):
    """Publishes a :class:`~llmweb_plugin.CollapseMonitor`'s numbers as OpenTelemetry signals.

    Args:
        meter_provider: where the instruments live; the global one
            (``opentelemetry.metrics.get_meter_provider()``) when ``None``.
        tracer_provider: where alarm and verdict spans go; the global one when ``None``.
        step_attribute: also put ``step`` on the gauges (see the module doc: it grows the SDK's
            attribute table by one per step; fine for short runs).
        max_agents: distinct ``agent`` attribute values at most; later agents count as
            ``"other"``.
        vendi: compute each complete step's Vendi score for ``llmweb.diversity.vendi`` (an
            eigen-decomposition per step; the monitor keeps the newest steps' vectors for it).

    Raises:
        ImportError: OpenTelemetry is not installed (names the extra to install).
        ValueError: ``max_agents`` is below 1.

    Example:
        >>> import llmweb_plugin as lw
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        >>> from llmweb_plugin.telemetry import OTelExporter
        >>> reader = InMemoryMetricReader()
        >>> otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]))
        >>> mon = lw.CollapseMonitor(lw.WebStore(":memory:"), run_id="r", exporters=[otel])
        >>> for agent in ("a", "b"):
        ...     _ = mon.record(f"{agent}: rates will fall", agent=agent, step=1)
        >>> hist = mon.history()
        >>> points = {m.name: m.data.data_points[0] for rm in reader.get_metrics_data()
        ...           .resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        >>> points["llmweb.collapse.norm"].value == hist[0].norm, points["llmweb.step"].value
        (True, 1)
        >>> _ = mon.close()
    """

    wants_vendi = True

    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None, *,
                 step_attribute: bool = False, max_agents: int = 100,
                 vendi: bool = True) -> None:
        try:
            from opentelemetry import metrics, trace
            from opentelemetry.metrics import Observation
        except ImportError as exc:
            raise ImportError(f"OTelExporter needs OpenTelemetry: {_INSTALL}") from exc
        if isinstance(max_agents, bool) or not isinstance(max_agents, int) or max_agents < 1:
            raise ValueError(f"max_agents must be an int >= 1; got {max_agents!r}")
        self.step_attribute = bool(step_attribute)
        self.max_agents = max_agents
        self.wants_vendi = bool(vendi)
        self._Observation = Observation
        mp = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        tp = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        meter = mp.get_meter("llmweb_plugin", __version__)
        self._tracer = tp.get_tracer("llmweb_plugin", __version__)
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[int, dict[str, float]]] = {}  # run -> (step, values)
        self._agents: set[str] = set()
        self._warned_agents = False
        for name, fld in GAUGES.items():
            meter.create_observable_gauge(name, callbacks=[self._observer(fld)],
                                          description=_DESCRIPTIONS[fld])
        meter.create_observable_gauge("llmweb.step", callbacks=[self._observe_step],
                                      description="the step the llmweb gauges describe")
        self._records = meter.create_counter(
            "llmweb.records", unit="{record}",
            description="records by outcome (stored, skipped, failed) and agent")
        self._tokens = meter.create_counter(
            "llmweb.tokens", unit="{token}", description="token usage by agent and type")
        self._alarms = meter.create_counter(
            "llmweb.collapse.alarms", unit="{alarm}", description="collapse alarms fired")

    # ---------------------------------------------------------------- gauges
    def _attrs(self, run_id: str, step: int) -> dict[str, Any]:
        return {"run_id": run_id, "step": step} if self.step_attribute else {"run_id": run_id}

    def _observer(self, fld: str) -> Any:
        def observe(_options: Any) -> Iterable[Any]:
            with self._lock:
                latest = list(self._latest.items())
            return [self._Observation(values[fld], self._attrs(run, step))
                    for run, (step, values) in latest if fld in values]
        return observe

    def _observe_step(self, _options: Any) -> Iterable[Any]:
        with self._lock:
            latest = list(self._latest.items())
        return [self._Observation(step, self._attrs(run, step)) for run, (step, _) in latest]

    def on_step(self, *, run_id: str, step: int, metrics: StepMetrics, complete: bool,
                vendi: float | None) -> None:
        """Keep the latest complete step's values for the gauges (earlier steps: the store)."""
        if not complete:
            return
        values = {fld: float(getattr(metrics, fld)) for fld in GAUGES.values() if fld != "vendi"}
        values["vendi"] = math.nan if vendi is None else float(vendi)
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        with self._lock:
            current = self._latest.get(run_id)
            if current is None or step >= current[0]:
                self._latest[run_id] = (step, values)

    # ---------------------------------------------------------------- counters
    def _agent(self, agent: str) -> str:
        with self._lock:
            if agent in self._agents:
                return agent
            if len(self._agents) < self.max_agents:
                self._agents.add(agent)
                return agent
            first, self._warned_agents = not self._warned_agents, True
        if first:
            logger.warning("llmweb: OTelExporter saw more than %d agents; further agents are "
                           "counted as 'other' (max_agents=)", self.max_agents)
        return "other"

    def on_records(self, *, run_id: str, outcome: str, agent: str, count: int,
                   reason: str | None) -> None:
        attrs = {"outcome": outcome, "agent": self._agent(agent)}
        if reason is not None:
            attrs["reason"] = reason
        self._records.add(count, attrs)

    def on_usage(self, *, run_id: str, agent: str, tokens: Mapping[str, int]) -> None:
        name = self._agent(agent)
        for key, n in tokens.items():
            self._tokens.add(n, {"agent": name, "type": key.removesuffix("_tokens")})

    # ---------------------------------------------------------------- spans
    def _span_event(self, span_name: str, event: str, attrs: dict[str, Any]) -> None:
        span = self._tracer.start_span(span_name, attributes=attrs)
        try:
            span.add_event(event, attributes=attrs)
        finally:
            span.end()

    def on_alarm(self, event: AlarmEvent) -> None:
        self._alarms.add(1)
        self._span_event("llmweb.collapse.alarm", "llmweb.collapse.alarm", {
            "llmweb.run_id": event.run_id, "llmweb.step": event.step,
            "llmweb.norm": event.norm, "llmweb.baseline": event.baseline,
            "llmweb.alarm_fraction": event.fraction})

    def on_verdict(self, *, run_id: str, step: int, verdict: CollapseVerdict,
                   previous: str) -> None:
        self._span_event("llmweb.collapse.verdict", "llmweb.collapse.verdict_changed", {
            "llmweb.run_id": run_id, "llmweb.step": step, "llmweb.verdict": verdict.verdict,
            "llmweb.verdict.previous": previous, "llmweb.verdict.sentence": verdict.sentence})

    def on_close(self, *, run_id: str, stats: MonitorStats) -> None:
        """The run's gauges stop reporting (its history stays in the store)."""
        with self._lock:
            self._latest.pop(run_id, None)

    def __repr__(self) -> str:
        return (f"OTelExporter(step_attribute={self.step_attribute}, "
                f"max_agents={self.max_agents}, vendi={self.wants_vendi})")
