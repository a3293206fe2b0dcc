"""Issue 14, Prometheus: the standard path (OpenTelemetry's PrometheusMetricReader served by
prometheus_client on 127.0.0.1), scraped by a real Prometheus server (Debian's package) and read
back through its HTTP query API; and the Grafana dashboard's queries name metrics the exporter
really produces."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import llmweb_plugin as lw
from llmweb_plugin.testing import SeededEmbedder

pytest.importorskip("prometheus_client", reason="needs the prometheus extra: pip install "
                    "'llmweb-plugin[prometheus]'")
pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs the prometheus extra: "
                    "pip install 'llmweb-plugin[prometheus]'")
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from llmweb_plugin.telemetry import OTelExporter

DASHBOARD = Path(__file__).resolve().parents[1] / "examples" / "grafana-dashboard.json"
AGENTS = ("a", "b", "c")


def _prometheus_binary() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(mon: lw.CollapseMonitor, n_steps: int = 6) -> None:
    """Agents that start apart and end up mostly writing one sentence (an alarm fires)."""
    for s in range(n_steps):
        for a in AGENTS:
            n_shared = 0 if s < 3 else 3
            texts = ["the one shared sentence"] * n_shared + [
                f"agent {a} writes its own text {i} at step {s}" for i in range(n_shared, 4)]
            mon.record_many(texts, agent=a, step=s)
        mon.flush()


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _query(base: str, promql: str) -> dict:
    return json.loads(_get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))


def _wait(what: str, fn, deadline_s: float = 60.0, log: Path | None = None):
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{tail}")


def test_a_real_prometheus_reads_the_monitors_norm(tmp_path):
    binary = _prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus server is not installed (Debian: apt-get install "
                    "prometheus; .ci/run installs it)")
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    exporter_port = httpd.server_port
    prom_port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: llmweb\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n")
    log = tmp_path / "prometheus.log"
    store = lw.WebStore(":memory:", embedder=SeededEmbedder())
    mon = lw.CollapseMonitor(store, run_id="prom",
                             exporters=[OTelExporter(meter_provider=provider)])
    proc = None
    try:
        _run(mon)
        want = mon.history()[-1]
        stats = mon.stats
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{prom_port}"
        _wait("prometheus to be ready", lambda: _get(f"{base}/-/ready"), log=log)

        def scraped():
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited ({proc.returncode}): "
                                     f"{log.read_text(errors='replace')[-2000:]}")
            body = _query(base, "llmweb_collapse_norm")
            return body if body["data"]["result"] else None

        body = _wait("a scrape with llmweb_collapse_norm", scraped, log=log)
        print("prometheus /api/v1/query?query=llmweb_collapse_norm ->", json.dumps(body))
        assert body["status"] == "success"
        (series,) = body["data"]["result"]
        assert series["metric"]["__name__"] == "llmweb_collapse_norm"
        assert series["metric"]["run_id"] == "prom" and series["metric"]["job"] == "llmweb"
        assert float(series["value"][1]) == want.norm > 0  # the same float, via Prometheus
        (step,) = _query(base, "llmweb_step")["data"]["result"]
        assert float(step["value"][1]) == want.step == 5
        records = {r["metric"]["outcome"]: float(r["value"][1]) for r in _query(
            base, "sum by (outcome) (llmweb_records_total)")["data"]["result"]}
        assert records == {"stored": stats.stored} == {"stored": 72}
        (alarms,) = _query(base, "llmweb_collapse_alarms_total")["data"]["result"]
        assert float(alarms["value"][1]) == len(mon.alarms) >= 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        mon.close()
        store.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
        provider.shutdown()


def test_the_grafana_dashboard_parses_and_names_metrics_the_exporter_produces():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    named = set(re.findall(r"\bllmweb_\w+", " ".join(exprs)))
    assert {"llmweb_collapse_norm", "llmweb_spread_between", "llmweb_spread_within",
            "llmweb_records_total"} <= named
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    store = lw.WebStore(":memory:", embedder=SeededEmbedder())
    with lw.CollapseMonitor(store, exporters=[OTelExporter(meter_provider=provider)]) as mon:
        _run(mon)
        assert mon.alarms
        exposed = set(re.findall(r"^(llmweb_\w+)\{", generate_latest(registry).decode(), re.MULTILINE))
    assert named <= exposed, f"dashboard names metrics nobody exports: {named - exposed}"
    provider.shutdown()
    store.close()
