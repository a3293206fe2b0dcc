"""Live monitoring through OpenTelemetry: a monitor's metrics as instruments, alarms as spans.

:class:`OTelExporter` is an exporter (:mod:`llmweb_plugin.exporters`) for
``CollapseMonitor(..., exporters=[OTelExporter()])``. It imports OpenTelemetry only when it is
made (extra ``otel``: ``pip install 'llmweb-plugin[otel]'``); importing this package does not.
Prometheus reads the same instruments through OpenTelemetry's Prometheus exporter (extra
``prometheus``; see the README, "Live monitoring").
"""

from __future__ import annotations

from ._otel import GAUGES, OTelExporter

__all__ = ["GAUGES", "OTelExporter"]
