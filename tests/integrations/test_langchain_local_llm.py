"""End to end with a real model: SmolLM2-135M (offline, CPU) behind a LangChain chat model."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llmweb_langchain import CollapseCallbackHandler, collapse_monitor

from llmweb_plugin.web.models import local_chat_model

pytestmark = pytest.mark.slow


def test_three_departments_on_smollm2(monitor, check_history):
    model = local_chat_model(max_new_tokens=16, seed=0)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You work in the {dept} department. Answer in one short sentence."),
         ("human", "{q}")])
    chain = prompt | model | StrOutputParser()
    h = CollapseCallbackHandler(monitor)
    outputs = {}
    for step in (1, 2):
        for dept in ("legal", "finance", "hr"):
            outputs[dept, step] = chain.invoke(
                {"dept": dept, "q": "What should the company do next year?"},
                config={"callbacks": [h], "metadata": {"llmweb_agent": dept, "llmweb_step": step}})
    recs = monitor.records()
    assert [(r.agent, r.step, r.text) for r in recs] == [
        (d, s, outputs[d, s]) for s in (1, 2) for d in ("finance", "hr", "legal")]
    assert all(r.text.strip() for r in recs)
    assert {r.metadata["model"] for r in recs} == {"smollm2-135m"}
    usage = monitor.usage
    assert set(usage) == {"legal", "finance", "hr"}
    for dept in usage:
        assert usage[dept]["input_tokens"] > 0 and 0 < usage[dept]["output_tokens"] <= 2 * 16
        assert usage[dept]["total_tokens"] == (usage[dept]["input_tokens"]
                                               + usage[dept]["output_tokens"])
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(1, 3, 3), (2, 3, 3)]
    assert all(m.norm > 0 for m in hist)
    assert h.tracked_runs == 0


def test_n_generations_in_one_call_under_collapse_monitor(store):
    model = local_chat_model(max_new_tokens=12, seed=1, temperature=1.0)
    with collapse_monitor(store=store, run_id="smol-n") as mon:
        result = model.generate([[HumanMessage("Name a colour.")]], n=3,
                                metadata={"llmweb_agent": "painter"})
    texts = [g.text for g in result.generations[0]]
    assert len(texts) == 3
    recs = store.records("smol-n")
    assert [(r.agent, r.step, r.index, r.text) for r in recs] == [
        ("painter", 0, i, t) for i, t in enumerate(texts) if t.strip()]
    assert mon.stats.received == 3
