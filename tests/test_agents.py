"""``as_responder``: chat models, runnables, compiled graphs, callables, as web agents."""

from __future__ import annotations

from itertools import cycle
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda

from llmweb_plugin.web import (
    AgentAnswer,
    AgentError,
    AgentRequest,
    CallableResponder,
    ChatModelResponder,
    EchoAgent,
    GraphResponder,
    RunnableResponder,
    as_responder,
    message_text,
)
from llmweb_plugin.web.agents import normalise_answer

REQ = AgentRequest(agent="a", step=2, query="Why?", context=("one", "two"))


class NChatModel(BaseChatModel):
    """A deterministic chat model that samples ``n`` answers in one call, like the local one."""

    supports_n: ClassVar[bool] = True
    temperature: float = 0.7
    seed: int | None = None
    calls: list = []  # noqa: RUF012 - shared log of (n, temperature, seed, messages)

    @property
    def _llm_type(self) -> str:
        return "n-fake"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, n: int = 1,
                  **kwargs: Any) -> ChatResult:
        self.calls.append((n, self.temperature, self.seed, [m.type for m in messages]))
        text = messages[-1].content
        gens = [ChatGeneration(message=AIMessage(
            content=f"t={self.temperature} s={self.seed} #{j} len={len(text)}",
            usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}))
            for j in range(n)]
        return ChatResult(generations=gens)


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[dict] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None,
                            tags=None, metadata=None, **kwargs):
        self.starts.append(dict(metadata or {}))


def test_chat_model_with_n_is_called_once_with_temperature_and_seed() -> None:
    model = NChatModel(seed=5, calls=[])
    r = as_responder(model, name="a")
    assert isinstance(r, ChatModelResponder) and r.use_n
    req = AgentRequest(agent="a", step=1, query="Q?", system_prompt="Be terse.",
                       temperature=0.2)
    rec = Recorder()
    ans = r.respond(req, 4, config={"callbacks": [rec],
                                    "metadata": {"llmweb_agent": "a", "llmweb_seed": 99}})
    assert len(model.calls) == 1  # the copy logs into the same shared list
    n, temp, seed, types = model.calls[0]
    assert (n, temp, types) == (4, 0.2, ["system", "human"])
    assert seed is not None and seed != 5 and ans.metadata["model_seed"] == seed
    assert ans.metadata["temperature_applied"] is True and ans.metadata["n_batched"] is True
    assert [t.split()[2] for t in ans.texts] == ["#0", "#1", "#2", "#3"]
    assert ans.usage == {"input_tokens": 10, "output_tokens": 12}  # one prompt, 4 outputs
    assert model.temperature == 0.7 and model.seed == 5  # the user's model is unchanged
    assert rec.starts and rec.starts[0]["llmweb_agent"] == "a"
    # the same web seed gives the same model seed; another gives another
    r.respond(req, 1, config={"metadata": {"llmweb_seed": 99}})
    r.respond(req, 1, config={"metadata": {"llmweb_seed": 100}})
    assert model.calls[1][2] == seed and model.calls[2][2] != seed


def test_unseeded_model_stays_unseeded() -> None:
    model = NChatModel(calls=[])
    ans = as_responder(model).respond(REQ, 2, config={"metadata": {"llmweb_seed": 1}})
    assert model.calls[0][2] is None and "model_seed" not in ans.metadata


def test_chat_model_without_n_is_batched_and_temperature_not_applied() -> None:
    model = FakeListChatModel(responses=["x", "y", "z"])
    r = as_responder(model, name="f")
    assert isinstance(r, ChatModelResponder) and not r.use_n
    ans = r.respond(AgentRequest(agent="f", step=1, query="q", temperature=0.3), 3,
                    config={"max_concurrency": 1})
    assert ans.texts == ("x", "y", "z")
    assert ans.metadata == {"temperature_applied": False, "n_batched": False}


def test_model_that_ignores_n_falls_back_to_batching() -> None:
    class Liar(NChatModel):
        def _generate(self, messages, stop=None, run_manager=None, n=1, **kw):
            return super()._generate(messages, stop, run_manager, n=1)

    model = Liar(calls=[])
    r = as_responder(model)
    ans = r.respond(REQ, 3)
    assert len(ans.texts) == 3 and r.use_n is False
    assert [c[0] for c in model.calls] == [1, 1, 1, 1]  # the wasted n-call, then 3 batched


def test_runnable_gets_a_string_prompt_with_the_system_prompt() -> None:
    seen: list[str] = []

    def fn(prompt: str) -> str:
        seen.append(prompt)
        return f"{len(seen)}"

    r = as_responder(RunnableLambda(fn), name="lc")
    assert isinstance(r, RunnableResponder)
    req = AgentRequest(agent="lc", step=1, query="Q?", context=("c1",), system_prompt="SYS")
    ans = r.respond(req, 2, config={"max_concurrency": 1})
    assert sorted(ans.texts) == ["1", "2"]
    assert seen[0] == "SYS\n\n" + req.render() and seen[0].endswith("Q?")
    chain = FakeListChatModel(responses=["chained"]) | StrOutputParser()
    assert as_responder(chain).respond(REQ, 2).texts == ("chained", "chained")
    msg_out = RunnableLambda(lambda p: AIMessage(content=[{"type": "text", "text": "blocks"}]))
    assert as_responder(msg_out).respond(REQ, 1).texts == ("blocks",)
    with pytest.raises(AgentError, match="StrOutputParser"):
        as_responder(RunnableLambda(lambda p: {"x": 1}), name="bad").respond(REQ, 1)


def test_create_agent_graph_as_agent() -> None:
    from langchain.agents import create_agent

    model = GenericFakeChatModel(messages=cycle([AIMessage(content="graph answer")]))
    agent = create_agent(model, system_prompt="be brief", name="bob")
    r = as_responder(agent, name="bob")
    assert isinstance(r, GraphResponder)
    rec = Recorder()
    ans = r.respond(AgentRequest(agent="bob", step=3, query="q?", system_prompt="extra"), 3,
                    config={"callbacks": [rec], "metadata": {"llmweb_agent": "bob"}})
    assert ans.texts == ("graph answer",) * 3
    assert len(rec.starts) == 3 and all(s["llmweb_agent"] == "bob" for s in rec.starts)


def test_graph_with_its_own_checkpointer_gets_fresh_threads() -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    model = GenericFakeChatModel(messages=cycle([AIMessage(content="ok")]))
    saver = InMemorySaver()
    agent = create_agent(model, checkpointer=saver)
    ans = as_responder(agent).respond(REQ, 2, config={"metadata": {"llmweb_run_id": "r"}})
    assert ans.texts == ("ok", "ok")
    threads = {c.config["configurable"]["thread_id"] for c in saver.list(None)}
    assert threads == {"llmweb:r:agent:2:0", "llmweb:r:agent:2:1"}


def test_callables_and_generate_n() -> None:
    calls: list[str] = []

    def fn(prompt: str) -> str:
        calls.append(prompt)
        return "ans"

    r = as_responder(fn)
    assert isinstance(r, CallableResponder)
    assert r.respond(REQ, 3).texts == ("ans",) * 3 and len(calls) == 3
    ans = r.respond(AgentRequest(agent="a", step=1, query="q", temperature=0.5), 1)
    assert ans.metadata == {"temperature_applied": False}
    echo = EchoAgent("e", seed=1)
    assert as_responder(echo).respond(REQ, 4).texts == tuple(echo.generate_n(REQ.render(), 4))
    with pytest.raises(AgentError, match="must return str"):
        as_responder(lambda p: None, name="x").respond(REQ, 1)


def test_objects_with_respond_pass_through_and_are_checked() -> None:
    class Mine:
        def respond(self, request, n, *, config=None):
            return ["a"] * n

    m = Mine()
    assert as_responder(m) is m
    assert normalise_answer(m.respond(REQ, 2), 2, "m").texts == ("a", "a")
    with pytest.raises(AgentError, match="returned 2 answers; 3 were asked"):
        normalise_answer(["a", "b"], 3, "m")
    with pytest.raises(AgentError, match="AgentAnswer or a list"):
        normalise_answer("ab", 2, "m")
    with pytest.raises(AgentError, match="int answer"):
        normalise_answer(AgentAnswer(texts=(1,)), 1, "m")  # type: ignore[arg-type]


def test_unsupported_agents_are_type_errors() -> None:
    with pytest.raises(TypeError, match="agent 'x' is a int"):
        as_responder(3, name="x")
    from llama_index.core.llms import MockLLM

    try:
        from llmweb_llamaindex import LlamaIndexAgent  # noqa: F401
    except ImportError:
        with pytest.raises(TypeError, match="LlamaIndexAgent"):
            as_responder(MockLLM(), name="li")


def test_message_text() -> None:
    assert message_text("s") == "s"
    assert message_text(AIMessage(content="x")) == "x"
    assert message_text(AIMessage(content=["a", {"type": "text", "text": "b"},
                                           {"type": "image_url", "image_url": "u"}])) == "ab"
    with pytest.raises(TypeError):
        message_text(AIMessage(content="x").__class__.__mro__)  # a tuple is no message


def test_echo_agent_is_deterministic_and_uses_its_context() -> None:
    prompt = REQ.render()
    a, b = EchoAgent("a", seed=0), EchoAgent("a", seed=0)
    assert a.generate_n(prompt, 5) == b.generate_n(prompt, 5)
    assert a.generate_n(prompt, 5) != EchoAgent("b", seed=0).generate_n(prompt, 5)
    for text in a.generate_n(prompt, 5):
        assert ("one" in text or "two" in text) and text.endswith(".")
    assert a("no context") == a.generate_n("no context", 1)[0]
