"""Attribution and steps of the LangChain handlers in the LangGraph patterns people write.

Each test runs the pattern (fake chat models that support ``bind_tools``), then checks what
reached the Qdrant store (agent, step, text per record) and that every step's norm is finite
and equal to a brute-force recomputation (``check_history``).
"""

from __future__ import annotations

import logging
import operator
from itertools import count
from typing import Annotated, Any

import numpy as np
import pytest
from langchain.agents import create_agent
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import Send
from langgraph_supervisor import create_supervisor
from langgraph_swarm import create_handoff_tool, create_swarm
from llmweb_langchain import AsyncCollapseCallbackHandler, CollapseCallbackHandler, attribution
from llmweb_langchain import collapse_monitor as collapse_monitor_block
from typing_extensions import TypedDict

import llmweb_plugin as lw

pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

_ids = count()


class FakeModelWithBindTools(GenericFakeChatModel):
    """A fake chat model agents can bind tools to (binding changes nothing)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeModelWithBindTools:  # type: ignore[override]
        return self


def fake(*answers: Any) -> FakeModelWithBindTools:
    return FakeModelWithBindTools(messages=iter(answers))


def handoff(tool: str, text: str = "") -> AIMessage:
    """A model turn that calls the handoff tool ``tool``."""
    return AIMessage(text, tool_calls=[{"name": tool, "args": {}, "id": f"call{next(_ids)}",
                                        "type": "tool_call"}])


def rows(mon: lw.CollapseMonitor) -> list[tuple[str, int, str]]:
    return sorted((r.agent, r.step, r.text) for r in mon.records())


def finite_history(mon: lw.CollapseMonitor, check_history: Any) -> list[tuple[int, int]]:
    """(step, n_agents) per step, after checking every norm is finite and brute-force exact."""
    hist = check_history(mon)
    assert all(np.isfinite(h.norm) and h.norm > 0 for h in hist), [h.norm for h in hist]
    return [(h.step, h.n_agents) for h in hist]


def repro_app() -> Any:
    a = create_react_agent(fake("Rates rise.", "Rates rise again."), tools=[], name="alpha")
    b = create_react_agent(fake("Rates fall.", "Rates fall again."), tools=[], name="beta")
    return (StateGraph(MessagesState).add_node(a).add_node(b).add_edge(START, "alpha")
            .add_edge("alpha", "beta").compile())


# ------------------------------------------------------------- create_react_agent subgraphs
def test_issue_repro_react_agent_subgraphs(monitor, check_history):
    """The issue's repro: was ['agent', 'agent'] with a NaN norm."""
    app = repro_app()
    app.invoke({"messages": [("user", "?")]},
               {"callbacks": [CollapseCallbackHandler(monitor)], "metadata": {"llmweb_step": 1}})
    assert rows(monitor) == [("alpha", 1, "Rates rise."), ("beta", 1, "Rates fall.")]
    assert {r.metadata["attributed_by"] for r in monitor.records()} == {"graph_name"}
    assert finite_history(monitor, check_history) == [(1, 2)]


async def test_issue_repro_async_handler(monitor, check_history):
    h = AsyncCollapseCallbackHandler(monitor)
    app = repro_app()
    for _ in range(2):  # no llmweb_step: one step per invocation
        await app.ainvoke({"messages": [("user", "?")]}, {"callbacks": [h]})
    assert rows(monitor) == [("alpha", 0, "Rates rise."), ("alpha", 1, "Rates rise again."),
                             ("beta", 0, "Rates fall."), ("beta", 1, "Rates fall again.")]
    assert finite_history(monitor, check_history) == [(0, 2), (1, 2)]
    assert h.tracked_runs == 0 and h.generic_attributions == 0


def test_unnamed_react_agents_named_by_their_node_without_chain_events(monitor, check_history):
    """No graph name and no chain events: the namespace alone names the agent."""
    h = CollapseCallbackHandler(monitor, track_retrieval=False, step_by="langgraph_step")
    assert h.ignore_chain
    g = StateGraph(MessagesState)
    g.add_node("hawk", create_react_agent(fake("Hike now."), tools=[]))
    g.add_node("dove", create_react_agent(fake("Cut now."), tools=[]))
    app = g.add_edge(START, "hawk").add_edge(START, "dove").compile()
    app.invoke({"messages": [("user", "rates?")]}, {"callbacks": [h]})
    assert rows(monitor) == [("dove", 1, "Cut now."), ("hawk", 1, "Hike now.")]
    assert {r.metadata["attributed_by"] for r in monitor.records()} == {"langgraph_checkpoint_ns"}
    assert finite_history(monitor, check_history) == [(1, 2)]


def test_react_agent_invoked_on_its_own(monitor, caplog):
    """Named: its graph name. Unnamed: the inner node "agent", counted and warned once."""
    h = CollapseCallbackHandler(monitor)
    create_react_agent(fake("Named answer."), tools=[], name="solo").invoke(
        {"messages": [("user", "?")]}, {"callbacks": [h]})
    unnamed = create_react_agent(fake("Anon one.", "Anon two."), tools=[])
    with caplog.at_level(logging.WARNING, logger="llmweb_langchain.callbacks"):
        for _ in range(2):
            unnamed.invoke({"messages": [("user", "?")]}, {"callbacks": [h]})
    assert rows(monitor) == [("agent", 0, "Anon one."), ("agent", 1, "Anon two."),
                             ("solo", 0, "Named answer.")]
    assert h.generic_attributions == 2
    warned = [r.getMessage() for r in caplog.records if "inner node name" in r.getMessage()]
    assert len(warned) == 1 and "'agent'" in warned[0] and "llmweb_agent" in warned[0]


# ------------------------------------------------------------------ create_agent subgraphs
def test_create_agent_subgraph_agents(monitor, check_history):
    a = create_agent(model=fake("Equities up."), tools=[], name="alpha")
    b = create_agent(model=fake("Bonds up."), tools=[], name="beta")
    app = (StateGraph(MessagesState).add_node(a).add_node(b).add_edge(START, "alpha")
           .add_edge("alpha", "beta").compile())
    app.invoke({"messages": [("user", "?")]}, {"callbacks": [CollapseCallbackHandler(monitor)]})
    assert rows(monitor) == [("alpha", 0, "Equities up."), ("beta", 0, "Bonds up.")]
    assert {r.metadata["attributed_by"] for r in monitor.records()} == {"lc_agent_name"}
    assert finite_history(monitor, check_history) == [(0, 2)]


# ------------------------------------------------------------------------ supervisor
def test_supervisor_with_handoff_tools_three_invocations(monitor, check_history):
    """Three invocations without llmweb_step: steps 0, 1, 2, each with all three agents."""
    turns = []
    for i in range(3):
        turns += [handoff("transfer_to_alpha"), handoff("transfer_to_beta"),
                  AIMessage(f"Summary {i}: views differ.")]
    alpha = create_react_agent(fake(*[f"Alpha view {i}: rates rise." for i in range(3)]),
                               tools=[], name="alpha")
    beta = create_react_agent(fake(*[f"Beta view {i}: rates fall." for i in range(3)]),
                              tools=[], name="beta")
    app = create_supervisor([alpha, beta], model=fake(*turns)).compile()
    for _ in range(3):  # a handler per call, as in the issue: steps are shared per monitor
        app.invoke({"messages": [("user", "rates?")]},
                   {"callbacks": [CollapseCallbackHandler(monitor)]})
    assert rows(monitor) == sorted(
        [("alpha", i, f"Alpha view {i}: rates rise.") for i in range(3)]
        + [("beta", i, f"Beta view {i}: rates fall.") for i in range(3)]
        + [("supervisor", i, f"Summary {i}: views differ.") for i in range(3)])
    assert monitor.stats.skip_reasons["tool_call_only"] == 6  # the supervisor's handoffs
    assert finite_history(monitor, check_history) == [(0, 3), (1, 3), (2, 3)]


# ---------------------------------------------------------------------------- swarm
def test_swarm_agents_hand_off(monitor, check_history):
    alpha = create_react_agent(
        fake(handoff("transfer_to_beta", "Alpha: rates will rise; over to beta.")),
        tools=[create_handoff_tool(agent_name="beta")], name="alpha")
    beta = create_react_agent(fake("Beta: rates will fall."),
                              tools=[create_handoff_tool(agent_name="alpha")], name="beta")
    app = create_swarm([alpha, beta], default_active_agent="alpha").compile()
    app.invoke({"messages": [("user", "rates?")]}, {"callbacks": [CollapseCallbackHandler(monitor)]})
    assert rows(monitor) == [("alpha", 0, "Alpha: rates will rise; over to beta."),
                             ("beta", 0, "Beta: rates will fall.")]
    assert finite_history(monitor, check_history) == [(0, 2)]


# ----------------------------------------------------- team of teams, plain model nodes
def test_nested_teams_give_the_individual_agents(monitor, check_history):
    """research(alpha, beta: react agents) -> ops(gamma: plain node) -> editor (plain node)."""
    alpha = create_react_agent(fake("Alpha finds growth."), tools=[], name="alpha")
    beta = create_react_agent(fake("Beta finds risk."), tools=[], name="beta")
    research = (StateGraph(MessagesState).add_node(alpha).add_node(beta)
                .add_edge(START, "alpha").add_edge("alpha", "beta").compile(name="research"))
    gamma_model, editor_model = fake("Gamma plans logistics."), fake("Editor merges it all.")

    def gamma(state: MessagesState) -> dict:
        return {"messages": [gamma_model.invoke(state["messages"])]}

    def editor(state: MessagesState) -> dict:
        return {"messages": [editor_model.invoke(state["messages"])]}

    ops = StateGraph(MessagesState).add_node("gamma", gamma).add_edge(START, "gamma").compile(
        name="ops")
    app = (StateGraph(MessagesState).add_node(research).add_node(ops).add_node("editor", editor)
           .add_edge(START, "research").add_edge("research", "ops").add_edge("ops", "editor")
           .add_edge("editor", END).compile())
    h = CollapseCallbackHandler(monitor)
    app.invoke({"messages": [("user", "plan?")]}, {"callbacks": [h]})
    assert rows(monitor) == [("alpha", 0, "Alpha finds growth."), ("beta", 0, "Beta finds risk."),
                             ("editor", 0, "Editor merges it all."),
                             ("gamma", 0, "Gamma plans logistics.")]
    by = {r.agent: r.metadata["attributed_by"] for r in monitor.records()}
    assert by == {"alpha": "graph_name", "beta": "graph_name", "gamma": "langgraph_node",
                  "editor": "langgraph_node"}
    assert finite_history(monitor, check_history) == [(0, 4)]
    assert h.tracked_runs == 0


# -------------------------------------------------------------- Send fan-out with personas
class Panel(TypedDict):
    views: Annotated[list, operator.add]


def _panel(model: Any, metadata_key: str) -> Any:
    def persona(arg: dict) -> dict:
        # Send's argument is the node's input, not its config: the node names the agent
        # in the metadata of its own model call.
        msg = model.invoke(f"As the {arg['persona']}: rates?",
                           config={"metadata": {metadata_key: arg["persona"]}})
        return {"views": [msg.content]}

    return (StateGraph(Panel).add_node("persona", persona)
            .add_conditional_edges(START, lambda s: [Send("persona", {"persona": p})
                                                     for p in ("optimist", "skeptic", "quant")])
            .add_edge("persona", END).compile())


@pytest.mark.parametrize("key, handler_kwargs", [("llmweb_agent", {}),
                                                 ("persona", {"agent_keys": ["persona"]})])
def test_send_fan_out_to_one_node_with_personas(monitor, check_history, key, handler_kwargs):
    app = _panel(fake(*[f"View number {i}." for i in range(6)]), key)
    h = CollapseCallbackHandler(monitor, **handler_kwargs)
    for _ in range(2):
        app.invoke({"views": []}, {"callbacks": [h]})
    recs = monitor.records()
    assert sorted((r.agent, r.step) for r in recs) == [
        (p, s) for p in ("optimist", "quant", "skeptic") for s in (0, 1)]
    assert sorted(r.text for r in recs) == [f"View number {i}." for i in range(6)]
    assert {r.metadata["attributed_by"] for r in recs} == {key}
    assert finite_history(monitor, check_history) == [(0, 3), (1, 3)]


def test_send_fan_out_without_a_key_is_one_agent(monitor):
    """Without naming the persona the node is the agent (documented), all in one step."""
    def persona(arg: dict) -> dict:
        return {"views": [model.invoke(arg["persona"]).content]}

    model = fake("one.", "two.")
    app = (StateGraph(Panel).add_node("persona", persona)
           .add_conditional_edges(START, lambda s: [Send("persona", {"persona": p})
                                                    for p in ("a", "b")]).compile())
    app.invoke({"views": []}, {"callbacks": [CollapseCallbackHandler(monitor)]})
    assert sorted((r.agent, r.step) for r in monitor.records()) == [("persona", 0)] * 2


# -------------------------------------------------------------------- LCEL chains, tags
def test_lcel_chains_named_by_tags(monitor, check_history):
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    chains = {name: prompt | fake(f"{name} memo 0", f"{name} memo 1") | StrOutputParser()
              for name in ("legal", "finance")}
    h = CollapseCallbackHandler(monitor)
    for _ in range(2):
        for name, chain in chains.items():
            chain.invoke({"q": "budget?"}, {"callbacks": [h], "tags": [name]})
    assert rows(monitor) == [(n, s, f"{n} memo {s}") for n in ("finance", "legal")
                             for s in (0, 1)]
    assert finite_history(monitor, check_history) == [(0, 2), (1, 2)]


def test_explicit_llmweb_agent_wins_inside_a_subgraph(monitor):
    app = repro_app()
    app.invoke({"messages": [("user", "?")]}, {"callbacks": [CollapseCallbackHandler(monitor)],
                                               "metadata": {"llmweb_agent": "desk"}})
    assert rows(monitor) == [("desk", 0, "Rates fall."), ("desk", 0, "Rates rise.")]


# ------------------------------------------------------------------------------ steps
def test_step_by_langgraph_step_keeps_the_old_numbers(monitor):
    """LangGraph's own superstep: both agents run inside their subgraph's step 1, every time."""
    h = CollapseCallbackHandler(monitor, step_by="langgraph_step")
    app = repro_app()
    for _ in range(2):
        app.invoke({"messages": [("user", "?")]}, {"callbacks": [h]})
    assert [r.step for r in monitor.records()] == [1, 1, 1, 1]


def test_step_by_time_buckets(monitor, check_history, monkeypatch):
    clock = iter([1000.0, 1005.0, 1005.0, 1075.0, 1075.0, 1130.0, 1130.0])
    monkeypatch.setattr(attribution, "_clock", lambda: next(clock))
    h = CollapseCallbackHandler(monitor, step_by="time:60")  # starts the clock at 1000
    app = repro_app()
    app.invoke({"messages": [("user", "?")]}, {"callbacks": [h]})  # t = 5, 5
    app.invoke({"messages": [("user", "?")]}, {"callbacks": [h]})  # t = 75, 75
    fake("Late note.").invoke("?", {"callbacks": [h], "metadata": {"llmweb_agent": "alpha"}})
    fake("Later.").invoke("?", {"callbacks": [h], "metadata": {"llmweb_agent": "beta",
                                                               "llmweb_step": 9}})
    assert rows(monitor) == [("alpha", 0, "Rates rise."), ("alpha", 1, "Rates rise again."),
                             ("alpha", 2, "Late note."), ("beta", 0, "Rates fall."),
                             ("beta", 1, "Rates fall again."), ("beta", 9, "Later.")]


def test_bad_llmweb_step_counts_and_uses_the_invocation_step(monitor):
    h = CollapseCallbackHandler(monitor)
    fake("first.").invoke("?", {"callbacks": [h], "metadata": {"llmweb_agent": "a"}})
    fake("second.").invoke("?", {"callbacks": [h], "metadata": {"llmweb_agent": "a",
                                                                "llmweb_step": -3}})
    assert rows(monitor) == [("a", 0, "first."), ("a", 1, "second.")]
    stats = monitor.flush()
    assert stats.handler_errors == 1 and stats.stored == 2
    assert "llmweb_step=-3" in stats.errors[0] and "step_by='invocation'" in stats.errors[0]


@pytest.mark.parametrize("bad", ["invocations", "time:0", "time:-5", "time:abc", "time:nan",
                                 "time:inf", "time:", "", "langgraph"])
def test_bad_step_by_is_a_clear_value_error(monitor, bad):
    with pytest.raises(ValueError, match=r'step_by must be "invocation".*"time:<seconds>"'):
        CollapseCallbackHandler(monitor, step_by=bad)
    with pytest.raises(ValueError, match="step_by must be"):
        AsyncCollapseCallbackHandler(monitor, step_by=bad)
    with pytest.raises(ValueError, match="step_by must be"), \
            collapse_monitor_block(monitor, step_by=bad):
        pass
    assert monitor.flush().received == 0


@pytest.mark.parametrize("bad", [None, 60, ("time", 60)])
def test_step_by_of_wrong_type_is_a_type_error(monitor, bad):
    with pytest.raises(TypeError, match="step_by must be"):
        CollapseCallbackHandler(monitor, step_by=bad)


@pytest.mark.parametrize("bad", ["persona", [""], [3]])
def test_agent_keys_must_be_a_list_of_names(monitor, bad):
    with pytest.raises(TypeError, match="agent_keys must be a list of non-empty str"):
        CollapseCallbackHandler(monitor, agent_keys=bad)


def test_collapse_monitor_block_uses_invocation_steps(store, check_history):
    app = repro_app()
    with collapse_monitor_block(store=store, run_id="block") as mon:
        for _ in range(2):
            app.invoke({"messages": [("user", "?")]})
    assert sorted((r.agent, r.step) for r in store.records("block")) == [
        ("alpha", 0), ("alpha", 1), ("beta", 0), ("beta", 1)]
    assert [(h.step, h.n_agents) for h in check_history(mon)] == [(0, 2), (1, 2)]
