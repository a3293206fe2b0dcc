"""CollapseCallbackHandler on LangGraph: ``create_agent`` agents and plain ``StateGraph`` nodes."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain.agents import create_agent
from langchain_core.language_models import GenericFakeChatModel
from langgraph.graph import END, START, MessagesState, StateGraph
from llmweb_langchain import AsyncCollapseCallbackHandler, CollapseCallbackHandler
from typing_extensions import TypedDict


class ToolFreeFake(GenericFakeChatModel):
    """``create_agent`` binds tools to its model; with no tools binding is a no-op."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolFreeFake:  # type: ignore[override]
        return self


def fake(*answers: str) -> ToolFreeFake:
    return ToolFreeFake(messages=iter(answers))


def records(mon):
    return [(r.agent, r.step, r.text, r.metadata["attributed_by"]) for r in mon.records()]


def test_create_agent_agents_with_names(monitor, check_history):
    h = CollapseCallbackHandler(monitor)
    agents = {name: create_agent(model=fake(f"{name} answer one", f"{name} answer two"),
                                 tools=[], name=name)
              for name in ("legal", "finance", "hr")}
    for _ in range(2):
        for name, agent in agents.items():
            out = agent.invoke({"messages": [("user", "status?")]}, config={"callbacks": [h]})
            assert out["messages"][-1].content.startswith(name)
    # step_by="invocation" (default): an agent's n-th invocation is its step n-1
    assert records(monitor) == [
        ("finance", 0, "finance answer one", "lc_agent_name"),
        ("hr", 0, "hr answer one", "lc_agent_name"),
        ("legal", 0, "legal answer one", "lc_agent_name"),
        ("finance", 1, "finance answer two", "lc_agent_name"),
        ("hr", 1, "hr answer two", "lc_agent_name"),
        ("legal", 1, "legal answer two", "lc_agent_name"),
    ]
    assert [r.index for r in monitor.records()] == [0] * 6
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(0, 3, 3), (1, 3, 3)]
    assert h.tracked_runs == 0


def test_create_agent_explicit_step_overrides_langgraph_step(monitor):
    h = CollapseCallbackHandler(monitor)
    agent = create_agent(model=fake("a", "b", "c"), tools=[], name="ops")
    for step in (1, 2, 3):
        agent.invoke({"messages": [("user", "go")]},
                     config={"callbacks": [h], "metadata": {"llmweb_step": step}})
    assert records(monitor) == [("ops", 1, "a", "lc_agent_name"), ("ops", 2, "b", "lc_agent_name"),
                                ("ops", 3, "c", "lc_agent_name")]


class Debate(TypedDict):
    messages: Annotated[list, operator.add]


def _graph(model_a, model_b, *, async_b: bool):
    def alpha(state: MessagesState) -> dict:
        return {"messages": [model_a.invoke(state["messages"])]}

    async def beta_async(state: MessagesState) -> dict:
        return {"messages": [await model_b.ainvoke(state["messages"])]}

    def beta_sync(state: MessagesState) -> dict:
        return {"messages": [model_b.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("alpha", alpha)
    g.add_node("beta", beta_async if async_b else beta_sync)
    g.add_edge(START, "alpha")
    g.add_edge("alpha", "beta")
    g.add_edge("beta", END)
    return g.compile()


def test_state_graph_sync_nodes(monitor, check_history):
    h = CollapseCallbackHandler(monitor, step_by="langgraph_step")
    app = _graph(fake("alpha 1", "alpha 2"), fake("beta 1", "beta 2"), async_b=False)
    for _ in range(2):
        app.invoke({"messages": [("user", "q")]}, config={"callbacks": [h]})
    assert records(monitor) == [
        ("alpha", 1, "alpha 1", "langgraph_node"), ("alpha", 1, "alpha 2", "langgraph_node"),
        ("beta", 2, "beta 1", "langgraph_node"), ("beta", 2, "beta 2", "langgraph_node"),
    ]
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(1, 1, 2), (2, 1, 2)]
    assert h.tracked_runs == 0


async def test_state_graph_async_graph_with_sync_and_async_node(monitor, check_history):
    h = AsyncCollapseCallbackHandler(monitor, step_by="langgraph_step")
    app = _graph(fake("alpha async-graph"), fake("beta async-node"), async_b=True)
    out = await app.ainvoke({"messages": [("user", "q")]}, config={"callbacks": [h]})
    assert [m.content for m in out["messages"]][-2:] == ["alpha async-graph", "beta async-node"]
    assert records(monitor) == [("alpha", 1, "alpha async-graph", "langgraph_node"),
                                ("beta", 2, "beta async-node", "langgraph_node")]
    check_history(monitor)
    assert h.tracked_runs == 0


def test_parallel_nodes_share_a_step(monitor, check_history):
    """Fan-out: three departments answer in the same superstep -> one step, three agents."""
    h = CollapseCallbackHandler(monitor, step_by="langgraph_step")
    models = {n: fake(f"{n} thinks rates will rise", f"{n} thinks rates will fall")
              for n in ("legal", "finance", "hr")}

    def node(name):
        def run(state: Debate) -> dict:
            return {"messages": [models[name].invoke("rates?")]}
        return run

    g = StateGraph(Debate)
    for n in models:
        g.add_node(n, node(n))
        g.add_edge(START, n)
        g.add_edge(n, END)
    app = g.compile()
    app.invoke({"messages": []}, config={"callbacks": [h]})
    app.invoke({"messages": []}, config={"callbacks": [h], "metadata": {"llmweb_step": 2}})
    assert [(r.agent, r.step, r.text) for r in monitor.records()] == [
        ("finance", 1, "finance thinks rates will rise"), ("hr", 1, "hr thinks rates will rise"),
        ("legal", 1, "legal thinks rates will rise"),
        ("finance", 2, "finance thinks rates will fall"), ("hr", 2, "hr thinks rates will fall"),
        ("legal", 2, "legal thinks rates will fall"),
    ]
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(1, 3, 3), (2, 3, 3)]


def test_graph_streaming(monitor):
    h = CollapseCallbackHandler(monitor, step_by="langgraph_step")
    app = _graph(fake("streamed alpha text"), fake("streamed beta text"), async_b=False)
    tokens = [chunk.content for chunk, meta in app.stream(
        {"messages": [("user", "q")]}, config={"callbacks": [h]}, stream_mode="messages")]
    assert "".join(tokens) == "streamed alpha textstreamed beta text"
    assert records(monitor) == [("alpha", 1, "streamed alpha text", "langgraph_node"),
                                ("beta", 2, "streamed beta text", "langgraph_node")]
