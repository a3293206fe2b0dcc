"""A model answer with a lone surrogate is kept, not lost (issue 10, trust the signal).

``CollapseMonitor.record`` refuses a lone surrogate (UTF-8 cannot encode it), so before, a
framework handler that passed such an answer on counted a handler error and the answer was gone.
The adapters now call ``monitor.repair_text`` first: the answer is stored with U+FFFD in place of
each lone surrogate and counted in ``stats.repaired``. Each test pushes a real framework event.
"""

from __future__ import annotations

import logging

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import MockLLM
from llmweb_langchain import CollapseCallbackHandler
from llmweb_llamaindex import LegacyCollapseCallbackHandler, instrument

import llmweb_plugin as lw

BAD = "Rates will rise \ud800 next year."
KEPT = "Rates will rise \ufffd next year."


def _stored(mon: lw.CollapseMonitor) -> list[tuple[str, str]]:
    return [(r.agent, r.text) for r in mon.records()]


def test_langchain_answer_with_a_lone_surrogate_is_stored_and_counted(monitor, caplog):
    model = GenericFakeChatModel(messages=iter([AIMessage(content=BAD),
                                                AIMessage(content="A clean answer."),
                                                AIMessage(content="\udfff again")]))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        for i, agent in enumerate(("alpha", "beta", "alpha")):
            chain.invoke({"q": "rates?"}, {"callbacks": [CollapseCallbackHandler(monitor)],
                                           "metadata": {"llmweb_agent": agent,
                                                        "llmweb_step": 1 + i // 2}})
    st = monitor.flush()
    assert sorted(_stored(monitor)) == sorted([("alpha", KEPT), ("beta", "A clean answer."),
                                               ("alpha", "\ufffd again")])
    assert (st.received, st.stored, st.failed, st.handler_errors) == (3, 3, 0, 0)
    assert st.repaired == {"text": 2}
    warned = [r for r in caplog.records if "surrogate" in r.getMessage()]
    assert len(warned) == 1 and "'alpha'" in warned[0].getMessage()  # logged once


def test_langchain_agent_name_with_a_lone_surrogate_keeps_the_answer(monitor):
    model = GenericFakeChatModel(messages=iter([AIMessage(content="An answer.")]))
    model.invoke("q", {"callbacks": [CollapseCallbackHandler(monitor)],
                       "metadata": {"llmweb_agent": "agent-\udc80", "llmweb_step": 1}})
    st = monitor.flush()
    assert _stored(monitor) == [("agent-\ufffd", "An answer.")]
    assert st.repaired == {"agent": 1} and st.handler_errors == 0


def test_llamaindex_instrumented_answer_with_a_lone_surrogate_is_stored(monitor):
    handle = instrument(monitor)
    try:
        with instrument_tags({"llmweb_agent": "legal", "llmweb_step": 1}):
            MockLLM().complete(BAD)  # MockLLM echoes the prompt: the answer holds the surrogate
    finally:
        handle.detach()
    st = monitor.flush()
    assert _stored(monitor) == [("legal", KEPT)]
    assert st.repaired == {"text": 1} and (st.stored, st.handler_errors) == (1, 0)


def test_llamaindex_legacy_answer_with_a_lone_surrogate_is_stored(monitor):
    llm = MockLLM(callback_manager=CallbackManager([LegacyCollapseCallbackHandler(monitor)]))
    llm.complete(BAD)
    st = monitor.flush()
    assert _stored(monitor) == [("assistant", KEPT)]  # the default agent
    assert st.repaired == {"text": 1} and (st.stored, st.handler_errors) == (1, 0)


@pytest.mark.parametrize("raw,kept,n", [
    ("ok \ud800", "ok \ufffd", 1),
    ("pair \ud83d\ude00 joined", "pair \U0001F600 joined", 1),  # a split pair is rejoined
    ("plain é text", "plain é text", 0),
])
def test_repair_text_replaces_only_what_utf8_cannot_encode(monitor, raw, kept, n):
    assert monitor.repair_text(raw, agent="a") == kept
    kept.encode("utf-8")
    assert monitor.stats.repaired == ({"text": 1} if n else {})
    assert monitor.stats.received == 0  # repairing is not recording
