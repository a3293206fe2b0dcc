"""Issue 14, trace annotation: inside an OpenTelemetry span, the LangChain handler puts the
record's run, agent, step and point id on the current span (the SDK's in-memory span exporter;
openinference's LangChain instrumentor is not installed here, so the app's span is opened by
hand, as an instrumented app or an instrumentor would)."""

from __future__ import annotations

import pytest

import llmweb_plugin as lw
from llmweb_plugin.testing import SeededEmbedder

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra: pip install "
                    "'llmweb-plugin[otel]'")
from langchain_core.language_models import GenericFakeChatModel
from llmweb_langchain import CollapseCallbackHandler
from llmweb_langchain.tracing import annotate_current_span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)


@pytest.fixture()
def tracing():
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    yield tp.get_tracer("app"), spans
    tp.shutdown()


@pytest.fixture()
def mon():
    store = lw.WebStore(":memory:", embedder=SeededEmbedder())
    m = lw.CollapseMonitor(store, run_id="traced")
    yield m
    m.close()
    store.close()


def test_the_llm_span_carries_the_stored_records_id(tracing, mon):
    tracer, spans = tracing
    handler = CollapseCallbackHandler(mon)
    answers = iter(["Contracts need signatures.", "Rates will fall."])
    model = GenericFakeChatModel(messages=answers)
    for agent, step in (("legal", 3), ("finance", 4)):
        with tracer.start_as_current_span(f"chat {agent}"):
            model.invoke("hi", config={"callbacks": [handler],
                                       "metadata": {"llmweb_agent": agent, "llmweb_step": step}})
    recs = {r.agent: r for r in mon.records()}
    got = {sp.name: dict(sp.attributes) for sp in spans.get_finished_spans()}
    assert got == {
        f"chat {a}": {"llmweb.run_id": "traced", "llmweb.agent": a, "llmweb.step": r.step,
                      "llmweb.point_id": r.point_id}
        for a, r in recs.items()}
    assert sorted((r.agent, r.step, r.text) for r in recs.values()) == [
        ("finance", 4, "Rates will fall."), ("legal", 3, "Contracts need signatures.")]
    assert mon.stats.handler_errors == 0


def test_no_span_no_annotation_and_the_record_is_kept(tracing, mon):
    _tracer, spans = tracing
    model = GenericFakeChatModel(messages=iter(["Untraced answer."]))
    model.invoke("hi", config={"callbacks": [CollapseCallbackHandler(mon)]})
    assert [r.text for r in mon.records()] == ["Untraced answer."]
    assert spans.get_finished_spans() == () and mon.stats.handler_errors == 0
    assert annotate_current_span("traced", "a", 1, ["x"]) is False  # nothing recording


def test_several_generations_are_all_named_and_skips_left_out(tracing):
    tracer, spans = tracing
    with tracer.start_as_current_span("call"):
        assert annotate_current_span("r", "a", None, ["id-1", None, "id-3"]) is True
    (sp,) = spans.get_finished_spans()
    assert dict(sp.attributes) == {"llmweb.run_id": "r", "llmweb.agent": "a",
                                   "llmweb.point_id": "id-1",
                                   "llmweb.point_ids": ("id-1", "id-3")}
