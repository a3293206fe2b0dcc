"""LegacyCollapseCallbackHandler on LlamaIndex's CallbackManager, in real engines."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import ChatMessage, MockLLM
from llmweb_llamaindex import LegacyCollapseCallbackHandler

import llmweb_plugin as lw


def triples(mon):
    return [(r.agent, r.step, r.text) for r in mon.records()]


@contextmanager
def global_callback_manager(cm: CallbackManager):
    """The legacy way: ``Settings.callback_manager``; restored afterwards (no leaked state)."""
    previous = Settings.callback_manager
    Settings.callback_manager = cm
    try:
        yield
    finally:
        Settings.callback_manager = previous


def test_query_engine_with_global_callback_manager(monitor, check_history):
    handler = LegacyCollapseCallbackHandler(monitor, default_agent="rag")
    with global_callback_manager(CallbackManager([handler])):
        index = VectorStoreIndex.from_documents(
            [Document(text="Clause 7 covers termination."), Document(text="Revenue grew.")],
            embed_model=MockEmbedding(embed_dim=8))
        qe = index.as_query_engine(llm=MockLLM())
        a1 = str(qe.query("termination?"))
        with instrument_tags({"llmweb_agent": "legal", "llmweb_step": 4}):
            a2 = str(qe.query("which clause?"))
    assert handler not in Settings.callback_manager.handlers
    assert triples(monitor) == [("rag", 0, a1), ("legal", 4, a2)]
    rec = monitor.records()[1]
    assert rec.metadata["event"] == "completion" and rec.metadata["model"] == "MockLLM"
    check_history(monitor)
    assert handler.tracked == 0


def test_chat_engine_sync_stream_and_async(monitor):
    handler = LegacyCollapseCallbackHandler(monitor)
    llm = MockLLM(callback_manager=CallbackManager([handler]))
    engine = SimpleChatEngine.from_defaults(llm=llm)
    first = str(engine.chat("hello"))
    streamed = engine.stream_chat("again")
    text = "".join(streamed.response_gen)

    async def go():
        return (await llm.achat([ChatMessage(role="user", content="async")])).message.content

    third = asyncio.run(go())
    assert triples(monitor) == [("assistant", 0, first), ("assistant", 1, text),
                                ("assistant", 2, third)]
    assert [r.metadata["event"] for r in monitor.records()] == ["chat"] * 3
    assert handler.tracked == 0


def test_failures_are_counted_not_raised(store):
    class RaisingEmbedder:
        name, dim = "raising", 4

        def embed(self, texts):
            raise RuntimeError("down")

    vec_store = lw.WebStore(":memory:", embedder=None, dim=4)
    mon = lw.CollapseMonitor(vec_store, run_id="f", embedder=RaisingEmbedder())
    llm = MockLLM(max_tokens=2, callback_manager=CallbackManager(
        [LegacyCollapseCallbackHandler(mon)]))
    assert llm.complete("x").text == "text text"
    assert mon.flush().failed == 1
    mon.close()
    assert llm.complete("y").text == "text text"  # closed monitor: counted, not raised
    assert mon.stats.handler_errors == 1
    vec_store.close()


def test_constructor_checks(monitor):
    with pytest.raises(TypeError, match="CollapseMonitor"):
        LegacyCollapseCallbackHandler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_agent"):
        LegacyCollapseCallbackHandler(monitor, default_agent="")


def test_bad_step_tag_is_counted_and_counter_used(monitor):
    llm = MockLLM(max_tokens=1, callback_manager=CallbackManager(
        [LegacyCollapseCallbackHandler(monitor)]))
    with instrument_tags({"llmweb_agent": "x", "llmweb_step": "soon"}):
        llm.complete("q")
    assert triples(monitor) == [("x", 0, "text")]
    assert monitor.stats.handler_errors == 1 and "soon" in monitor.stats.errors[-1]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_tracked_must_be_a_positive_int(monitor, bad):
    """max_tracked=0 would evict every open call at once and record nested calls twice."""
    with pytest.raises(ValueError, match="max_tracked must be >= 1"):
        LegacyCollapseCallbackHandler(monitor, max_tracked=bad)
    assert monitor.stats.received == 0
