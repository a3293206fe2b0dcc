"""CollapseEventHandler / instrument(): LlamaIndex MockLLM in real engines -> Qdrant records."""

from __future__ import annotations

import asyncio
import threading

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import ChatMessage, CompletionResponse, CustomLLM, LLMMetadata, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llmweb_llamaindex import CollapseEventHandler, InstrumentHandle, instrument

import llmweb_plugin as lw

DOCS = ["Clause 7 covers termination of the contract.",
        "Quarterly revenue grew by ten percent.",
        "New hires get four weeks of onboarding."]


@pytest.fixture()
def root_handlers():
    """The root dispatcher's handlers before the test; the test must leave them as it found them."""
    root = get_dispatcher()
    before = (list(root.event_handlers), list(root.span_handlers))
    yield root
    leftover = (list(root.event_handlers), list(root.span_handlers))
    root.event_handlers, root.span_handlers = before
    assert leftover == before, "a test left a handler attached to the root dispatcher"


@pytest.fixture()
def handle(monitor, root_handlers):
    h = instrument(monitor)
    yield h
    h.detach()


@pytest.fixture(scope="module")
def index():
    docs = [Document(text=t) for t in DOCS]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))


def triples(mon):
    return [(r.agent, r.step, r.text) for r in mon.records()]


def test_query_engine_over_an_index(monitor, handle, index, check_history):
    qe = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    answers = {}
    for step in (1, 2):
        for agent in ("legal", "finance"):
            with instrument_tags({"llmweb_agent": agent, "llmweb_step": step}):
                answers[agent, step] = str(qe.query(f"{agent} question {step}?"))
    assert triples(monitor) == [
        (a, s, answers[a, s]) for s in (1, 2) for a in ("finance", "legal")]
    assert all(f"question {s}?" in answers[a, s] for a, s in answers)  # MockLLM echoes the prompt
    rec = monitor.records()[0]
    assert rec.metadata["event"] == "completion" and rec.metadata["model"] == "MockLLM"
    assert rec.metadata["li_span_id"].startswith("MockLLM.")
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(1, 2, 2), (2, 2, 2)]
    assert handle.handler.tracked == 0


def test_chat_engine_sync_and_streaming(monitor, handle):
    engine = SimpleChatEngine.from_defaults(llm=MockLLM())
    with instrument_tags({"llmweb_agent": "helpdesk"}):
        first = str(engine.chat("hello there"))
        streamed = engine.stream_chat("and again")
        pieces = list(streamed.response_gen)
    streamed_text = "".join(pieces)  # the engine strips its own copy of the answer
    assert streamed.response == streamed_text.strip() and "and again" in streamed_text
    assert triples(monitor) == [("helpdesk", 0, first), ("helpdesk", 1, streamed_text)]
    assert [r.metadata["event"] for r in monitor.records()] == ["chat", "chat"]
    assert handle.handler.tracked == 0


def test_one_record_per_call_for_every_entry_point(monitor, handle):
    """CustomLLM implements chat via complete, achat via chat, astream via stream: no doubles."""
    llm = MockLLM(max_tokens=2)
    msgs = [ChatMessage(role="user", content="hi")]

    async def astream_chat():
        return [x async for x in await llm.astream_chat(msgs)][-1].message.content

    async def astream_complete():
        return [x async for x in await llm.astream_complete("a b")][-1].text

    calls = {
        "complete": lambda: llm.complete("a b").text,
        "chat": lambda: llm.chat(msgs).message.content,
        "stream_chat": lambda: list(llm.stream_chat(msgs))[-1].message.content,
        "stream_complete": lambda: list(llm.stream_complete("a b"))[-1].text,
        "acomplete": lambda: asyncio.run(llm.acomplete("a b")).text,
        "achat": lambda: asyncio.run(llm.achat(msgs)).message.content,
        "astream_chat": lambda: asyncio.run(astream_chat()),
        "astream_complete": lambda: asyncio.run(astream_complete()),
    }
    outputs = []
    for step, (name, call) in enumerate(calls.items()):
        with instrument_tags({"llmweb_agent": name, "llmweb_step": step}):
            outputs.append(call())
    assert outputs[:2] == ["text text"] * 2  # (MockLLM streams one token fewer)
    recs = monitor.records()
    assert [(r.step, r.agent, r.text) for r in recs] == [
        (s, n, out) for s, (n, out) in enumerate(zip(calls, outputs))]
    assert [r.metadata["event"] for r in recs] == [
        "completion", "chat", "chat", "completion"] * 2
    assert handle.handler.tracked == 0


async def test_two_concurrent_async_streams_of_one_llm_in_separate_tasks(monitor, handle):
    llm = MockLLM(max_tokens=3)

    async def one(agent):
        with instrument_tags({"llmweb_agent": agent}):
            gen = await llm.astream_complete("x y z")
            return [c async for c in gen][-1].text

    outs = await asyncio.gather(one("a"), one("b"))
    assert outs[0] == outs[1] and outs[0].startswith("text")
    assert triples(monitor) == [("a", 0, outs[0]), ("b", 0, outs[1])]


def test_instrument_is_idempotent_and_detach_works(monitor, root_handlers):
    n_before = len(root_handlers.event_handlers)
    h1 = instrument(monitor)
    h2 = instrument(monitor)
    assert h1 is h2 and isinstance(h1, InstrumentHandle)
    assert len(root_handlers.event_handlers) == n_before + 1
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(monitor, default_agent="other")
    MockLLM(max_tokens=1).complete("x")
    assert monitor.flush().stored == 1  # not 2
    h1.detach()
    h1.detach()  # idempotent
    assert not h1.active and len(root_handlers.event_handlers) == n_before
    MockLLM(max_tokens=1).complete("x")
    assert monitor.flush().stored == 1  # detached: nothing more
    with instrument(monitor, default_agent="again") as h3:  # a fresh handle after detach
        assert h3 is not h1
        MockLLM(max_tokens=1).complete("x")
    assert not h3.active
    assert triples(monitor) == [("again", 0, "text"), ("assistant", 0, "text")]


def test_two_monitors_both_record(store, root_handlers):
    with lw.CollapseMonitor(store, run_id="m1") as m1, \
            lw.CollapseMonitor(store, run_id="m2") as m2:
        with instrument(m1, default_agent="one"), instrument(m2, default_agent="two"):
            MockLLM(max_tokens=1).complete("x")
        assert [(r.agent, r.text) for r in m1.records()] == [("one", "text")]
        assert [(r.agent, r.text) for r in m2.records()] == [("two", "text")]


def test_agents_in_threads(monitor, handle):
    llm = MockLLM(max_tokens=2)

    def work(agent):
        with instrument_tags({"llmweb_agent": agent}):
            for _ in range(5):
                llm.complete("q")

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted((r.agent, r.step) for r in monitor.records()) == [
        (f"t{i}", s) for i in range(4) for s in range(5)]
    assert handle.handler.tracked == 0


class UsageLLM(CustomLLM):
    """A CustomLLM whose responses report OpenAI-style token counts."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="usage-llm")

    @llm_completion_callback()
    def complete(self, prompt, formatted=False, **kwargs):
        return CompletionResponse(text=f"answer to {prompt}", additional_kwargs={
            "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})

    @llm_completion_callback()
    def stream_complete(self, prompt, formatted=False, **kwargs):
        raise NotImplementedError


def test_usage_and_model_name(monitor, handle):
    with instrument_tags({"llmweb_agent": "ops", "session": "s1"}):
        UsageLLM().complete("q1")
        UsageLLM().chat([ChatMessage(role="user", content="q2")])
    recs = monitor.records()
    assert [r.text for r in recs] == ["answer to q1", "answer to user: q2\nassistant: "]
    assert recs[0].metadata["usage"] == {"input_tokens": 7, "output_tokens": 3,
                                         "total_tokens": 10}
    assert recs[0].metadata["model"] == "usage-llm"
    assert recs[0].metadata["tags"] == {"session": "s1"}
    # CustomLLM.chat converts the completion into a chat response without its token counts
    assert "usage" not in recs[1].metadata
    assert monitor.usage == {"ops": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}}


def test_bad_step_tag_is_counted_and_counter_used(monitor, handle):
    with instrument_tags({"llmweb_agent": "x", "llmweb_step": "soon"}):
        MockLLM(max_tokens=1).complete("q")
    assert triples(monitor) == [("x", 0, "text")]
    assert monitor.stats.handler_errors == 1 and "soon" in monitor.stats.errors[-1]


class RaisingEmbedder:
    name = "raising"
    dim = 4

    def embed(self, texts):
        raise RuntimeError("embedding service down")


def test_failing_embedder_never_breaks_the_app(root_handlers, index):
    store = lw.WebStore(":memory:", embedder=None, dim=4)
    mon = lw.CollapseMonitor(store, run_id="fail", embedder=RaisingEmbedder())
    with instrument(mon):
        answer = str(index.as_query_engine(llm=MockLLM()).query("termination?"))
    assert "termination?" in answer
    with pytest.raises(lw.MonitorError, match="embedding service down"):
        mon.flush(strict=True)
    assert (mon.stats.failed, mon.stats.stored) == (1, 0)
    mon.close()
    store.close()


def test_handler_failures_are_counted_not_raised(monitor, handle):
    monitor.close()
    assert MockLLM(max_tokens=1).complete("q").text == "text"
    assert monitor.stats.handler_errors == 1
    assert "CollapseEventHandler(LLMCompletionEndEvent)" in monitor.stats.errors[-1]


def test_errors_leave_no_bookkeeping(monitor, handle):
    class Broken(MockLLM):
        @llm_completion_callback()
        def complete(self, prompt, formatted=False, **kwargs):
            raise ValueError("model exploded")

    for _ in range(3):
        with pytest.raises(ValueError, match="model exploded"):
            Broken().complete("q")
    stream = MockLLM(max_tokens=3).stream_complete("q")
    next(stream)
    stream.close()  # an abandoned stream
    assert handle.handler.tracked == 0
    assert monitor.flush().received == 0


def test_constructor_checks(monitor):
    with pytest.raises(TypeError, match="CollapseMonitor"):
        CollapseEventHandler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_agent"):
        CollapseEventHandler(monitor, default_agent="")


@pytest.mark.parametrize("bad", [0, -3, 1.5, False])
def test_event_handler_max_tracked_must_be_a_positive_int(monitor, bad):
    with pytest.raises(ValueError, match="max_tracked must be >= 1"):
        CollapseEventHandler(monitor, max_tracked=bad)
