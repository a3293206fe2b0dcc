"""01: an LLM web as a LangGraph graph, checkpointed, with the collapse metric per step.

Three agents read a shared Qdrant web seeded with 20 crypto posts, answer the paper's query L times
per step, and post their first answer back; ||D(t)||_F between the agents' mean answer embeddings
is read back from Qdrant after every step.

By default the agents are instant deterministic fakes (``EchoAgent``: they recombine what they
read), so this runs offline in seconds. ``--local`` uses the real local SmolLM2-135M model (three
personas; a few minutes). Any LangChain chat model, LCEL runnable, ``create_agent`` agent or
plain ``str -> str`` callable works as an agent.

Run: HF_HUB_OFFLINE=1 python examples/01_agent_web.py [--local] [--steps 6] [--responses 4]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

import llmweb_plugin as lw
from llmweb_langgraph import create_web_graph
from llmweb_plugin.web import CRYPTO_SEEDS, EchoAgent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local", action="store_true", help="real local SmolLM2 agents")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--responses", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.local:
        from llmweb_plugin.web.models import local_agents

        agents = local_agents(3, seed=args.seed, max_new_tokens=40)
    else:
        agents = {name: EchoAgent(name, seed=args.seed)
                  for name in ("optimist", "sceptic", "journalist")}

    with tempfile.TemporaryDirectory() as tmp:
        store = lw.WebStore(Path(tmp) / "store")  # a Qdrant folder; WebStore(url=...) for a server
        conn = sqlite3.connect(Path(tmp) / "checkpoints.sqlite", check_same_thread=False)
        graph = create_web_graph(
            agents, store=store, seeds=CRYPTO_SEEDS, beta=0.5,
            responses_per_step=args.responses, n_steps=args.steps, rng=args.seed,
            run_id="example-01",
            on_step=lambda m: print(f"step {m.step:2d}  ||D||_F = {m.norm:.4f}  "
                                    f"web = {m.extras['web_size']}"),
        ).compile(checkpointer=SqliteSaver(conn))
        config = {"configurable": {"thread_id": "example-01"}}
        out = graph.invoke({}, config)  # after a crash: graph.invoke(None, config) resumes

        posts = store.records(out["run_id"], kind="post")
        first, last = min(p.step for p in posts), max(p.step for p in posts)
        print(f"\n{store.count(out['run_id'], kind='seed')} seeds, {len(posts)} posts, "
              f"{store.count(out['run_id'], kind='response')} responses in Qdrant")
        for step in (first, last):
            print(f"\nposts at step {step}:")
            for p in posts:
                if p.step == step:
                    print(f"  [{p.agent}] {p.text}")
        norms = [h["norm"] for h in out["history"]]
        print(f"\n||D||_F first step {norms[0]:.4f} -> last step {norms[-1]:.4f}")
        conn.close()
        store.close()


if __name__ == "__main__":
    main()
