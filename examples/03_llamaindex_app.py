"""The LlamaIndex twin of example 02: three departments, one line of monitoring.

The app: every day, the legal department asks a query engine over the company handbook, and the
finance and HR departments talk to chat engines; each reads the memo board (yesterday's memos of
all three) and writes today's memo. ``instrument(mon)`` attaches llmweb to LlamaIndex's root
instrumentation dispatcher, so every LLM output lands in Qdrant; the app names its departments
and days with LlamaIndex's own ``instrument_tags({"llmweb_agent": ..., "llmweb_step": ...})``.

Offline: ``MemoLLM`` is a stand-in ``CustomLLM`` that rewrites a memo from the board (llmweb's
``EchoAgent``), and the handbook index uses LlamaIndex's ``MockEmbedding`` (stand-ins for your
hosted LLM and embedding model). llmweb itself embeds with the real all-MiniLM-L6-v2.

Run:  python examples/03_llamaindex_app.py [--days 6] [--path DIR]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import (
    CompletionResponse,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llmweb_llamaindex import instrument

import llmweb_plugin as lw
from llmweb_plugin.web import EchoAgent

QUESTION = "What should the company focus on next quarter?"
HANDBOOK = [
    "Supplier contracts are reviewed every March by the legal team.",
    "Every new office requires board approval and a two-year budget.",
    "Engineers are entitled to ten days of paid training a year.",
]
FIRST_MEMOS = [
    "Legal: renegotiate the supplier contracts before the March deadline to limit liability.",
    "Finance: cut cloud spending by a fifth and delay the new office to protect margins.",
    "HR: hire two senior engineers and fund training so the team stops burning out.",
]


class MemoLLM(CustomLLM):
    """Offline stand-in for a hosted LLM: rewrites one memo line (``- ...``) of its prompt."""

    department: str = "memo"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=f"memo-{self.department}")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=EchoAgent(self.department, seed=7)(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        yield self.complete(prompt, formatted=formatted, **kwargs)


def build_departments() -> dict[str, Any]:
    """The app's three departments, as they would exist without llmweb."""
    index = VectorStoreIndex.from_documents([Document(text=t) for t in HANDBOOK],
                                            embed_model=MockEmbedding(embed_dim=16))
    return {
        "legal": index.as_query_engine(llm=MemoLLM(department="legal"), similarity_top_k=1),
        "finance": SimpleChatEngine.from_defaults(llm=MemoLLM(department="finance")),
        "hr": SimpleChatEngine.from_defaults(llm=MemoLLM(department="hr")),
    }


def run_day(departments: dict[str, Any], board: list[str], day: int) -> list[str]:
    text = "Memo board:\n" + "\n".join(f"- {m}" for m in board) + f"\n\n{QUESTION}"
    memos = []
    for name, engine in departments.items():
        with instrument_tags({"llmweb_agent": name, "llmweb_step": day}):
            if name == "legal":
                memos.append(str(engine.query(text)))
            else:
                engine.reset()  # a fresh conversation every day
                memos.append(str(engine.chat(text)))
    return memos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="three LlamaIndex departments, monitored")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--path", default=None, help="a Qdrant folder (default: in memory)")
    args = ap.parse_args(argv)

    departments = build_departments()
    store = lw.WebStore(args.path) if args.path else lw.WebStore(":memory:")
    mon = lw.CollapseMonitor(store, run_id="llamaindex-departments")
    board = list(FIRST_MEMOS)

    with instrument(mon):  # <- the one added line (or: handle = instrument(mon))
        for day in range(1, args.days + 1):
            board = run_day(departments, board, day)
            print(f"day {day}: " + " | ".join(m[:50] for m in board))

    history = mon.history()
    print(f"\n{'day':>4} {'agents':>6} {'memos':>5} {'||D||_F':>9} {'mean cos dist':>13}")
    for m in history:
        print(f"{m.step:>4} {m.n_agents:>6} {m.n_records:>5} {m.norm:>9.4f} "
              f"{m.mean_cosine_distance:>13.4f}")
    recs = mon.records()
    print(f"\nstored {len(recs)} memos (run {mon.run_id!r}); agents: "
          f"{sorted({r.agent for r in recs})}; models: {sorted({r.metadata['model'] for r in recs})}")
    mon.close()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
