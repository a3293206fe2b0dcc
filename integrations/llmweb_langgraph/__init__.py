"""llmweb for LangGraph: the paper's LLM web as an uncompiled ``StateGraph``.

Example::

    from llmweb_langgraph import create_web_graph
    graph = create_web_graph(agents, store=store, n_steps=60).compile(checkpointer=saver)
    out = graph.invoke({}, {"configurable": {"thread_id": "run-1"}})
"""

from __future__ import annotations

from .web import AgentTask, WebGraph, WebState, create_web_graph

__all__ = ["AgentTask", "WebGraph", "WebState", "create_web_graph"]
