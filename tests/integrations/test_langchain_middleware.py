"""PromptVariationMiddleware in a real ``langchain.agents.create_agent`` agent.

The chat model is a fake that records the messages and call arguments it received; everything
else (the agent graph, the middleware chain, callbacks, the monitor, Qdrant) is real.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llmweb_langchain.callbacks import CollapseCallbackHandler
from llmweb_langchain.middleware import (
    VARIATION_METADATA_KEYS,
    PromptVariationMiddleware,
)

from llmweb_plugin.web.mitigations import PromptVariation

PERSONAS = ["You are a historian.", "You are an engineer.", "You are a farmer."]
TEMPLATES = ["{query}", "Briefly: {query}"]
TEMPS = [0.2, 0.7, 1.1]


class RecordingChatModel(BaseChatModel):
    """Answers "answer <n>" and keeps what each call received."""

    calls: list[tuple[list[Any], dict[str, Any]]] = []  # noqa: RUF012 - a pydantic field

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls.append((list(messages), dict(kwargs)))
        msg = AIMessage(content=f"answer {len(self.calls)} about bitcoin")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def expected(agent: str, step: int) -> tuple[str, str, float]:
    off = zlib.crc32(agent.encode())
    return (PERSONAS[(step - 1 + off % 3) % 3], TEMPLATES[(step - 1 + off % 2) % 2],
            TEMPS[(step - 1 + off % 3) % 3])


def make(agent: str = "legal", **kw: Any):
    model = RecordingChatModel(calls=[])
    pv = PromptVariation(personas=PERSONAS, query_templates=TEMPLATES, temperature_schedule=TEMPS)
    mw = PromptVariationMiddleware(pv, agent=agent, **kw)
    app = create_agent(model, tools=[], middleware=[mw], system_prompt="Answer in one sentence.")
    return model, mw, app


def test_each_model_call_gets_its_own_persona_template_and_temperature():
    model, mw, app = make()
    outs = [app.invoke({"messages": [("user", f"question {i}")]}) for i in range(4)]
    assert len(model.calls) == 4
    for step, ((msgs, kwargs), out) in enumerate(zip(model.calls, outs), start=1):
        persona, template, temp = expected("legal", step)
        assert isinstance(msgs[0], SystemMessage)
        assert msgs[0].content == f"{persona}\n\nAnswer in one sentence."
        assert isinstance(msgs[1], HumanMessage)
        assert msgs[1].content == template.format(query=f"question {step - 1}")
        assert kwargs["temperature"] == temp
        # the agent's state keeps the user's own words; only the model call was varied
        assert [m.content for m in out["messages"][:1]] == [f"question {step - 1}"]
        info = out["messages"][-1].response_metadata["llmweb_variation"]
        assert (info["persona"], info["query_template"], info["temperature"]) == (persona,
                                                                                  template, temp)
        assert info["variation_step"] == step and info["variation_agent"] == "legal"
    assert [a["variation_step"] for a in mw.applied] == [1, 2, 3, 4]
    assert mw.errors == 0


def test_the_callback_handler_stores_what_was_applied(monitor, store):
    _, _, app = make(monitor=monitor)
    handler = CollapseCallbackHandler(monitor, default_agent="legal",
                                      metadata_keys=VARIATION_METADATA_KEYS)
    for i in range(3):
        app.invoke({"messages": [("user", f"q{i}")]}, config={"callbacks": [handler]})
    monitor.flush()
    recs = store.records("test", kind="response")
    assert [r.text for r in recs] == [f"answer {i} about bitcoin" for i in (1, 2, 3)]
    for step, r in enumerate(recs, start=1):
        persona, template, temp = expected("legal", step)
        assert r.metadata["persona"] == persona
        assert r.metadata["query_template"] == template
        assert r.metadata["temperature"] == temp
        assert r.metadata["variation_step"] == step
    events = [e for e in monitor.events if e["kind"] == "prompt_variation"]
    assert [e["variation_step"] for e in events] == [1, 2, 3]


async def test_async_agents_are_varied_too():
    model, _, app = make(agent="async-agent")
    out = await app.ainvoke({"messages": [("user", "hi")]})
    persona, template, temp = expected("async-agent", 1)
    msgs, kwargs = model.calls[0]
    assert msgs[0].content.startswith(persona) and kwargs["temperature"] == temp
    assert msgs[1].content == template.format(query="hi")
    assert out["messages"][-1].response_metadata["llmweb_variation"]["persona"] == persona


def test_without_run_tagging_or_temperature():
    model, _, app = make(tag_run=False, apply_temperature=False)
    app.invoke({"messages": [("user", "hi")]})
    msgs, kwargs = model.calls[0]
    assert "temperature" not in kwargs
    assert msgs[0].content.startswith(expected("legal", 1)[0])


def test_a_failing_variation_is_counted_and_the_call_proceeds(monitor):
    def broken(step: int) -> float:
        raise RuntimeError("schedule broke")

    model = RecordingChatModel(calls=[])
    mw = PromptVariationMiddleware(PromptVariation(temperature_schedule=broken), monitor=monitor)
    app = create_agent(model, tools=[], middleware=[mw])
    out = app.invoke({"messages": [("user", "hi")]})
    assert out["messages"][-1].content == "answer 1 about bitcoin"
    assert model.calls[0][1] == {}  # the original request, unchanged
    assert mw.errors == 1 and monitor.stats.handler_errors == 1


def test_random_mode_is_reproducible_for_a_seed():
    def personas_seen(seed: int) -> list[str]:
        model = RecordingChatModel(calls=[])
        pv = PromptVariation(personas=PERSONAS, mode="random")
        app = create_agent(model, tools=[],
                           middleware=[PromptVariationMiddleware(pv, agent="r", seed=seed)])
        for i in range(6):
            app.invoke({"messages": [("user", f"q{i}")]})
        return [c[0][0].content for c in model.calls]

    assert personas_seen(3) == personas_seen(3)
    assert len(set(personas_seen(3))) > 1


def test_bad_arguments():
    with pytest.raises(TypeError, match="PromptVariation"):
        PromptVariationMiddleware(object())
    with pytest.raises(ValueError, match="agent"):
        PromptVariationMiddleware(PromptVariation(personas=["p"]), agent="")


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_keep_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="keep must be an int >= 0"):
        PromptVariationMiddleware(PromptVariation(personas=["p"]), keep=bad)
