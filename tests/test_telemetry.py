"""Issue 14: exporters, and the OpenTelemetry exporter read back through the SDK's in-memory
reader and span exporter (real SDK, real embedded Qdrant, the seeded embedder)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.exporters import BaseExporter
from llmweb_plugin.testing import FlakyEmbedder, SeededEmbedder

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra: pip install "
                    "'llmweb-plugin[otel]'")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from llmweb_plugin.telemetry import GAUGES, OTelExporter

AGENTS = ("a", "b", "c")
SHARED = "the one sentence every agent ends up writing"


@pytest.fixture()
def store():
    st = lw.WebStore(":memory:", embedder=SeededEmbedder())
    yield st
    st.close()


def _texts(agent: str, step: int, n: int = 3) -> list[str]:
    """min(n, step // 2) of the agent's n texts are the shared sentence: the agents converge."""
    k = min(n, step // 2)
    return [SHARED] * k + [f"agent {agent} writes its own text {i} at step {step}"
                           for i in range(k, n)]


def _points(reader: InMemoryMetricReader) -> dict[str, list]:
    data = reader.get_metrics_data()
    out: dict[str, list] = defaultdict(list)
    for rm in (data.resource_metrics if data else ()):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name].extend(m.data.data_points)
    return out


@pytest.mark.parametrize("step_attribute", [False, True])
def test_gauges_per_step_equal_the_history(store, step_attribute):
    reader = InMemoryMetricReader()
    otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]),
                        step_attribute=step_attribute)
    mon = lw.CollapseMonitor(store, run_id="g", exporters=[otel], alarm_fraction=None)
    seen = []
    for s in range(8):
        for a in AGENTS:
            mon.record_many(_texts(a, s), agent=a, step=s)
        mon.flush()  # the step is complete
        pts = _points(reader)
        # one point per gauge: the latest complete step of the one open run (bounded)
        assert {n: len(pts[n]) for n in (*GAUGES, "llmweb.step")} == dict.fromkeys(
            (*GAUGES, "llmweb.step"), 1)
        (step_pt,) = pts["llmweb.step"]
        want_attrs = {"run_id": "g", "step": s} if step_attribute else {"run_id": "g"}
        assert dict(step_pt.attributes) == want_attrs
        seen.append((step_pt.value, {n: pts[n][0].value for n in GAUGES}))
    hist = mon.history()
    assert [s for s, _ in seen] == [h.step for h in hist] == list(range(8))
    for (_, got), h in zip(seen, hist):
        for name, fld in GAUGES.items():
            if fld != "vendi":
                assert got[name] == getattr(h, fld), (h.step, name)  # the same floats
        vecs = np.stack([r.vector for r in mon.records(step=h.step, with_vectors=True)])
        assert got["llmweb.diversity.vendi"] == pytest.approx(lw.vendi_score(vecs), rel=1e-9)
    assert seen[0][1]["llmweb.collapse.norm"] > 0.5 > seen[-1][1]["llmweb.collapse.norm"]
    mon.close()
    assert {n: pts for n, pts in _points(reader).items() if n in GAUGES} == {}  # run closed


def test_a_partial_step_is_not_on_the_gauge_until_complete(store):
    reader = InMemoryMetricReader()
    otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]))
    mon = lw.CollapseMonitor(store, run_id="p", exporters=[otel])
    for a in AGENTS:
        mon.record(f"{a} at step 1", agent=a, step=1)
    mon.flush(step_complete=False)
    assert _points(reader).get("llmweb.collapse.norm", []) == []
    mon.record("a at step 2", agent="a", step=2)
    mon.record("b at step 2", agent="b", step=2)
    mon.flush(step_complete=False)  # step 1 is complete now: step 2 has records
    pts = _points(reader)
    assert pts["llmweb.step"][0].value == 1
    (pt,) = pts["llmweb.collapse.norm"]
    assert pt.value == mon.history()[0].norm  # (history() completes step 2 in turn)
    mon.close()


def test_nan_norm_of_a_one_agent_step_is_not_reported(store):
    reader = InMemoryMetricReader()
    otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]))
    with lw.CollapseMonitor(store, run_id="n", exporters=[otel]) as mon:
        mon.record_many(["x one", "x two"], agent="only", step=0)
        mon.flush()
        pts = _points(reader)
        assert np.isnan(mon.history()[0].norm)
        assert pts.get("llmweb.collapse.norm", []) == []
        assert pts["llmweb.spread.within"][0].value == mon.history()[0].within_spread


def test_record_and_token_counters_match_the_monitor(store):
    reader = InMemoryMetricReader()
    otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]))
    emb = FlakyEmbedder(SeededEmbedder())
    mon = lw.CollapseMonitor(store, run_id="c", embedder=emb, exporters=[otel], batch_size=1)
    want: Counter = Counter()
    for s in range(3):
        for a in AGENTS:
            for i in range(2):
                text = "FAIL me" if (a, i) == ("b", 1) and s == 2 else f"{a} {s} {i}"
                mon.record(text, agent=a, step=s)
                want["failed" if text.startswith("FAIL") else "stored", a] += 1
    mon.record("   ", agent="c", step=3)
    mon.count_skip("tool_call_only", agent="a")
    want["skipped", "c"] += 1
    want["skipped", "a"] += 1
    mon.record_usage("a", input_tokens=12, output_tokens=30)
    mon.record_usage("a", input_tokens=3)
    mon.record_usage("b", output_tokens=7, total_tokens=7)
    stats = mon.flush()
    got = Counter()
    reasons = Counter()
    for pt in _points(reader)["llmweb.records"]:
        got[pt.attributes["outcome"], pt.attributes["agent"]] += pt.value
        if "reason" in pt.attributes:
            reasons[pt.attributes["reason"]] += pt.value
    assert got == want
    by_outcome = Counter()
    for (outcome, _), n in got.items():
        by_outcome[outcome] += n
    assert by_outcome == {"stored": stats.stored, "skipped": stats.skipped,
                          "failed": stats.failed} == {"stored": 17, "skipped": 2, "failed": 1}
    assert reasons == stats.skip_reasons == {"empty_text": 1, "tool_call_only": 1}
    tokens = defaultdict(dict)
    for pt in _points(reader)["llmweb.tokens"]:
        tokens[pt.attributes["agent"]][pt.attributes["type"]] = pt.value
    assert tokens == {a: {k.removesuffix("_tokens"): v for k, v in u.items()}
                      for a, u in mon.usage.items()}
    assert tokens == {"a": {"input": 15, "output": 30}, "b": {"output": 7, "total": 7}}
    mon.close()


def test_agents_beyond_max_agents_count_as_other(store, caplog):
    reader = InMemoryMetricReader()
    otel = OTelExporter(meter_provider=MeterProvider(metric_readers=[reader]), max_agents=2)
    with caplog.at_level(logging.WARNING), lw.CollapseMonitor(store, exporters=[otel]) as mon:
        for a in ("a", "b", "c", "d"):
            mon.record(f"{a} speaks", agent=a, step=0)
        mon.flush()
    got = {pt.attributes["agent"]: pt.value for pt in _points(reader)["llmweb.records"]}
    assert got == {"a": 1, "b": 1, "other": 2}
    assert sum("further agents are counted as 'other'" in r.getMessage()
               for r in caplog.records) == 1
    with pytest.raises(ValueError, match="max_agents"):
        OTelExporter(meter_provider=MeterProvider(), max_agents=0)


def test_alarm_and_verdict_changes_become_span_events(store):
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    otel = OTelExporter(meter_provider=MeterProvider(), tracer_provider=tp)
    mon = lw.CollapseMonitor(store, run_id="v", exporters=[otel])
    verdicts = []
    for s in range(12):
        for a in AGENTS:
            mon.record_many(_texts(a, s), agent=a, step=s)
        mon.flush()
        verdicts.append(mon.verdict().verdict)
    mon.close()
    done = spans.get_finished_spans()
    alarm_events = [ev for sp in done if sp.name == "llmweb.collapse.alarm" for ev in sp.events]
    assert [ev.name for ev in alarm_events] == ["llmweb.collapse.alarm"] * len(mon.alarms)
    assert [(ev.attributes["llmweb.step"], ev.attributes["llmweb.norm"])
            for ev in alarm_events] == [(al.step, al.norm) for al in mon.alarms]
    assert len(mon.alarms) >= 1
    changes = [ev.attributes for sp in done if sp.name == "llmweb.collapse.verdict"
               for ev in sp.events if ev.name == "llmweb.collapse.verdict_changed"]
    # brute force: the verdict after each step, and where it changed
    want, prev = [], "inconclusive"
    for s, v in enumerate(verdicts):
        if v != prev:
            want.append((s, prev, v))
            prev = v
    assert [(c["llmweb.step"], c["llmweb.verdict.previous"], c["llmweb.verdict"])
            for c in changes] == want
    assert want and want[-1][2] == mon.verdict().verdict != "inconclusive"
    assert {c["llmweb.run_id"] for c in changes} == {"v"}


class _Raising:
    """An exporter that raises in every method, and counts its calls."""

    wants_vendi = True

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def _boom(self, *args, **kwargs):
        self.calls += 1
        raise self.exc

    on_step = on_alarm = on_verdict = on_records = on_usage = on_close = _boom


class _Collect(BaseExporter):
    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def on_step(self, **kw):
        self.calls["on_step"] += 1

    def on_records(self, **kw):
        self.calls["on_records"] += 1

    def on_close(self, **kw):
        self.calls["on_close"] += 1


def _drive(mon) -> None:
    for s in range(8):
        for a in AGENTS:
            mon.record_many(_texts(a, s), agent=a, step=s)
        mon.flush()
    mon.record("", agent="a", step=8)
    mon.record_usage("a", input_tokens=5)


def test_exporters_that_raise_are_counted_and_never_break_the_monitor(store, caplog):
    plain = lw.CollapseMonitor(lw.WebStore(":memory:", embedder=SeededEmbedder()), run_id="r")
    _drive(plain)
    want_hist = plain.history()
    plain.close()
    bad1, bad2 = _Raising(RuntimeError("exporter down")), _Raising(SystemExit(3))
    good = _Collect()
    with caplog.at_level(logging.DEBUG, logger="llmweb_plugin.monitor"):
        mon = lw.CollapseMonitor(store, run_id="r", exporters=[bad1, good, bad2])
        _drive(mon)  # nothing raises into the caller
        hist = mon.history()
        stats = mon.close()
    assert [(h.step, h.norm, h.mean_cosine_distance) for h in hist] == [
        (h.step, h.norm, h.mean_cosine_distance) for h in want_hist]
    assert stats.stored == 72 and stats.skipped == 1 and stats.failed == 0
    assert mon.alarms and len(mon.records()) == 72
    assert bad1.calls == bad2.calls > 20  # every method was called despite the failures
    assert mon.stats.exporter_errors == bad1.calls + bad2.calls
    assert good.calls["on_close"] == 1 and good.calls["on_step"] >= 8
    msgs = [r for r in caplog.records if "exporter _Raising failed" in r.getMessage()]
    assert [r.levelno for r in msgs].count(logging.WARNING) == 2  # once per exporter
    assert len(msgs) == bad1.calls + bad2.calls


def test_an_object_with_no_exporter_method_is_a_type_error(store):
    with pytest.raises(TypeError, match=r"exporters\[1\] \(object\) has none of the exporter"):
        lw.CollapseMonitor(store, exporters=[_Collect(), object()])
    with pytest.raises(TypeError, match="exporters must be a list"):
        lw.CollapseMonitor(store, exporters=_Collect())  # type: ignore[arg-type]
    with lw.CollapseMonitor(store, exporters=None) as mon:  # type: ignore[arg-type]
        assert mon.stats.exporter_errors == 0


def _otel_modules_after(*statements: str) -> list[list[str]]:
    """OpenTelemetry modules loaded after each statement, in order, in a fresh interpreter."""
    code = "import sys, json\nsnaps = []\n" + "".join(
        f"{st}\nsnaps.append(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        for st in statements) + "print(json.dumps(snaps))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_opentelemetry_import_unless_the_exporter_is_used():
    core, lc_core, lc = _otel_modules_after(
        "import llmweb_plugin, llmweb_plugin.exporters, llmweb_plugin.telemetry",
        "import langchain_core.callbacks, langchain_core.tracers.context",
        "import llmweb_langchain, llmweb_langchain.tracing")
    assert core == []
    # langchain-core's tracer context (langsmith) imports OpenTelemetry when it is installed;
    # the handler and its trace annotation add nothing to that
    assert lc == lc_core


def test_missing_opentelemetry_names_the_extra(monkeypatch):
    for name in ("opentelemetry", "opentelemetry.metrics", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'llmweb-plugin\[otel\]'"):
        OTelExporter()
