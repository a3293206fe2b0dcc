"""Per-step cost of the LangGraph web against the same step as a plain Python loop.

Instant fake agents (n = 3, L = 40: 120 responses + 3 posts per step), so what is measured is
orchestration: retrieval from Qdrant, recording through the monitor, the metric read-back, and,
for the graph, LangGraph's supersteps, ``Send`` fan-out, thread pool and checkpointing.

Baseline: :func:`llmweb_plugin.web.run_web`, the same core pieces in a sequential loop,
measured in the same run on the same kind of store. Two embedders: a hashing embedder (no model:
the pure orchestration cost) and the real all-MiniLM-L6-v2 (what a user pays per step besides
the models themselves).

Run: HF_HUB_OFFLINE=1 python benchmarks/bench_web_overhead.py [--steps 20] [--repeat 3]
Target (issue): LangGraph overhead under 100 ms per step for n = 3, L = 40.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver

import llmweb_plugin as lw
from llmweb_langgraph import create_web_graph
from llmweb_plugin.web import run_web

N_AGENTS, L = 3, 40


class HashEmbedder:
    """A deterministic 384-d embedder without a model (hash-seeded unit vectors)."""

    name = "bench-hash-384"
    dim = 384

    def embed(self, texts: Any) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


class Instant:
    """An instant agent: L distinct canned answers, no model."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def generate_n(self, prompt: str, n: int) -> list[str]:
        self.calls += 1
        return [f"{self.name} says Bitcoin may rise, call {self.calls}, sample {j}."
                for j in range(n)]


def agents() -> dict[str, Instant]:
    return {f"a{i}": Instant(f"a{i}") for i in range(N_AGENTS)}


def per_step_ms(fn: Callable[[Callable[[Any], None]], Any], steps: int) -> list[float]:
    """Run ``fn(on_step)``; return the wall time of each step (ms) from on_step timestamps."""
    stamps: list[float] = []
    t0 = time.perf_counter()
    fn(lambda m: stamps.append(time.perf_counter()))
    assert len(stamps) == steps, (len(stamps), steps)
    prev = [t0, *stamps[:-1]]
    return [(b - a) * 1e3 for a, b in zip(prev, stamps)]


def bench(embedder: Any, steps: int, repeat: int, location: str) -> dict[str, float]:
    loop_ms: list[float] = []
    graph_ms: list[float] = []
    for r in range(repeat):
        with lw.WebStore(location if location == ":memory:" else f"{location}/loop{r}",
                         embedder=embedder) as st:
            loop_ms += per_step_ms(lambda cb: run_web(
                agents(), store=st, responses_per_step=L, n_steps=steps, rng=r,
                run_id=f"loop{r}", on_step=cb), steps)[1:]  # step 1 includes the seeds
        with lw.WebStore(location if location == ":memory:" else f"{location}/graph{r}",
                         embedder=embedder) as st:
            def run_graph(cb: Callable[[Any], None], st: lw.WebStore = st, r: int = r) -> None:
                g = create_web_graph(agents(), store=st, responses_per_step=L, n_steps=steps,
                                     rng=r, run_id=f"graph{r}", on_step=cb)
                g.compile(checkpointer=InMemorySaver()).invoke(
                    {}, {"configurable": {"thread_id": "t"}, "recursion_limit": 10 * steps})

            graph_ms += per_step_ms(run_graph, steps)[1:]
    lm, gm = statistics.median(loop_ms), statistics.median(graph_ms)
    return {"loop": lm, "graph": gm, "overhead": gm - lm, "ratio": gm / lm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--real-embedder", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    print(f"n = {N_AGENTS} instant agents, L = {L}, T = {args.steps} steps, median over "
          f"{args.repeat} runs x {args.steps - 1} steps (step 1 excluded: it writes the seeds)")
    print(f"{'embedder':<22} {'loop ms/step':>13} {'graph ms/step':>14} {'overhead ms':>12} "
          f"{'graph/loop':>11}")
    rows = [("hash (no model)", HashEmbedder())]
    if args.real_embedder:
        emb = lw.default_embedder()
        emb.embed(["warm up"])
        rows.append(("all-MiniLM-L6-v2", emb))
    for label, emb in rows:
        r = bench(emb, args.steps, args.repeat, ":memory:")
        print(f"{label:<22} {r['loop']:>13.1f} {r['graph']:>14.1f} {r['overhead']:>12.1f} "
              f"{r['ratio']:>10.2f}x")


if __name__ == "__main__":
    main()
