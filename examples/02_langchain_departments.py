"""An existing LangChain app with three "departments", monitored by adding one line.

The app: every day, the legal department (an LCEL chain), the finance department (a
``langchain.agents.create_agent`` agent) and the HR department (a LangGraph ``StateGraph``) read
the shared memo board (yesterday's memos of all three) and write today's memo. Because they read
each other, their memos drift toward one consensus: the network-level collapse of the LLM Web
Dynamics paper. The one added line, ``with collapse_monitor(...) as mon:``, stores every model
output in a Qdrant collection with who said it and when, and the table printed at the end is
the paper's series per day (``||D||_F`` between the departments' mean embeddings, and the mean
cosine distance between the memos) to watch them converge.

Attribution needs nothing from the app: the chain is tagged ``legal`` (LangChain tags), the
agent is named ``finance`` (``create_agent(name=...)``), the graph node is called ``hr``. The day
is passed as ``llmweb_step`` run metadata so the three departments line up by day (without it the
chain would count its own calls, and the agent and the graph would use LangGraph's step numbers).

Offline: the stand-in chat model ``MemoModel`` rewrites a memo from the board (llmweb's
``EchoAgent``); ``--local`` runs the real SmolLM2-135M instead (slower).

Run:  python examples/02_langchain_departments.py [--days 6] [--local] [--path DIR]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, MessagesState, StateGraph
from llmweb_langchain import collapse_monitor

import llmweb_plugin as lw
from llmweb_plugin.web import EchoAgent

QUESTION = "What should the company focus on next quarter?"
FIRST_MEMOS = [
    "Legal: renegotiate the supplier contracts before the March deadline to limit liability.",
    "Finance: cut cloud spending by a fifth and delay the new office to protect margins.",
    "HR: hire two senior engineers and fund training so the team stops burning out.",
]
SEEDS = {"legal": 1, "finance": 2, "hr": 3}


class MemoModel(BaseChatModel):
    """Offline stand-in for a hosted chat model: rewrites one memo of the board."""

    department: str

    @property
    def _llm_type(self) -> str:
        return "memo-model"

    def bind_tools(self, tools: Any, **kwargs: Any) -> MemoModel:  # no tools in this app
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        prompt = str(messages[-1].content)
        text = EchoAgent(self.department, seed=7)(prompt)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def make_model(department: str, local: bool) -> BaseChatModel:
    if local:
        from llmweb_plugin.web.models import local_chat_model

        return local_chat_model(max_new_tokens=40, seed=SEEDS[department],
                                system_prompt=f"You write short memos for the {department} "
                                              "department.")
    return MemoModel(department=department)


def build_departments(local: bool) -> dict[str, Any]:
    """The app's three departments, as they would exist without llmweb."""
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are the legal department."),
        ("human", "Memo board:\n{board}\n\n{question}"),
    ])
    legal = (prompt | make_model("legal", local) | StrOutputParser()).with_config(
        tags=["legal"])

    finance = create_agent(model=make_model("finance", local), tools=[], name="finance",
                           system_prompt="You are the finance department.")

    hr_model = make_model("hr", local)

    def hr(state: MessagesState) -> dict:
        return {"messages": [hr_model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("hr", hr)
    graph.add_edge(START, "hr")
    graph.add_edge("hr", END)
    return {"legal": legal, "finance": finance, "hr": graph.compile()}


def run_day(departments: dict[str, Any], board: list[str], day: int) -> list[str]:
    """Every department reads the board and writes a memo (the app's own loop)."""
    text = "\n".join(f"- {m}" for m in board)
    config = {"metadata": {"llmweb_step": day}}
    memos = [departments["legal"].invoke({"board": text, "question": QUESTION}, config=config)]
    for name in ("finance", "hr"):
        out = departments[name].invoke(
            {"messages": [("user", f"Memo board:\n{text}\n\n{QUESTION}")]}, config=config)
        memos.append(out["messages"][-1].content)
    return memos


def print_table(history: list[lw.StepMetrics]) -> None:
    print(f"\n{'day':>4} {'agents':>6} {'memos':>5} {'||D||_F':>9} {'normalized':>10} "
          f"{'mean cos dist':>13}")
    for m in history:
        print(f"{m.step:>4} {m.n_agents:>6} {m.n_records:>5} {m.norm:>9.4f} "
              f"{m.normalized_norm:>10.4f} {m.mean_cosine_distance:>13.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="three departments converging, monitored")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--local", action="store_true", help="use the local SmolLM2 model")
    ap.add_argument("--path", default=None, help="a Qdrant folder (default: in memory)")
    args = ap.parse_args(argv)

    departments = build_departments(args.local)
    store = lw.WebStore(args.path) if args.path else lw.WebStore(":memory:")
    board = list(FIRST_MEMOS)

    with collapse_monitor(store=store, run_id="departments") as mon:  # <- the one added line
        for day in range(1, args.days + 1):
            board = run_day(departments, board, day)  # today's memos are tomorrow's board
            print(f"day {day}: " + " | ".join(m[:50] for m in board))

    history = mon.history()
    print_table(history)
    print(f"\nstored {mon.stats.stored} memos in {store.collection!r} "
          f"(run {mon.run_id!r}); agents: {sorted({r.agent for r in mon.records()})}")
    if history:
        first, last = history[0], history[-1]
        print(f"||D||_F day {first.step}: {first.norm:.3f}, day {last.step}: {last.norm:.3f}; "
              f"mean cosine distance {first.mean_cosine_distance:.3f} -> "
              f"{last.mean_cosine_distance:.3f}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
