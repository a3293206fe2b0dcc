"""Latency CollapseCallbackHandler adds on the caller's thread, per LLM call.

Baseline: the same fake chat model (or LCEL chain) invoked without the handler, in the same run.
Each variant makes ``--calls`` invocations, in blocks of ``--block`` calls interleaved with the
blocks of every other variant (so a busy machine slows all of them alike); the median per-call
time over the blocks is reported. Variants:

* ``model``: ``FakeListChatModel.invoke`` (one LLM run per call);
* ``chain``: ``prompt | model | parser`` (three chain runs + one LLM run per call);
* with a no-op ``BaseCallbackHandler``: what LangChain itself spends once any handler is
  attached (run managers, serialising the model for ``on_chat_model_start``), for reference;
* with the handler recording into a monitor whose worker is parked (its embedder waits until
  the timing is over): the handler's own cost on the caller's thread, translation + enqueue;
* with the handler (``track_retrieval=True``, the default, and ``False``) recording into a
  running monitor with an instant embedder: adds the worker's competition for the GIL
  (building points and upserting into embedded Qdrant is Python code);
* once with the real all-MiniLM-L6-v2 embedder (``--real-calls``), what an app really sees.

Target: under 0.5 ms added per call. Run: ``python benchmarks/bench_callback_overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llmweb_langchain import CollapseCallbackHandler

import llmweb_plugin as lw


class InstantEmbedder:
    """A constant 8-d embedder: the monitor's worker costs next to nothing."""

    name = "instant-8"
    dim = 8

    def embed(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), 8), dtype=np.float32)
        out[:, 0] = 1.0
        return out


class ParkedEmbedder(InstantEmbedder):
    """Blocks the monitor's worker (without holding the GIL) until ``release()``."""

    name = "parked-8"

    def __init__(self) -> None:
        self.gate = threading.Event()

    def embed(self, texts: Any) -> np.ndarray:
        self.gate.wait()
        return super().embed(texts)

    def release(self) -> None:
        self.gate.set()


def _time(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _interleaved(variants: dict[str, Callable[[], Any]], calls: int,
                 block: int) -> dict[str, float]:
    """Median seconds per call of each variant, over interleaved blocks of ``block`` calls."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(max(1, calls // block)):
        for name, fn in variants.items():
            times[name].append(_time(fn, block))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--real-calls", type=int, default=2_000,
                    help="calls with the real MiniLM embedder (0 to skip)")
    args = ap.parse_args(argv)

    responses = [f"answer number {i} about interest rates" for i in range(997)]
    model = FakeListChatModel(responses=responses)
    chain = (ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser())

    # one in-memory store per variant: embedded Qdrant slows down past ~20k points
    def fast_store() -> lw.WebStore:
        return lw.WebStore(":memory:", embedder=InstantEmbedder())

    parked = ParkedEmbedder()
    parked_store = lw.WebStore(":memory:", embedder=parked)
    monitors = []

    def handler(track: bool, store: lw.WebStore) -> CollapseCallbackHandler:
        mon = lw.CollapseMonitor(store, alarm_fraction=None)
        monitors.append(mon)
        return CollapseCallbackHandler(mon, track_retrieval=track)

    h_parked = handler(True, parked_store)
    h_track, h_track_c = handler(True, fast_store()), handler(True, fast_store())
    h_fast, h_fast_c = handler(False, fast_store()), handler(False, fast_store())
    md = {"metadata": {"llmweb_agent": "bench"}}
    noop = BaseCallbackHandler()
    variants: dict[str, Callable[[], Any]] = {
        "model, no handler (baseline)": lambda: model.invoke("q", config=md),
        "model + no-op handler": lambda: model.invoke("q", config={**md, "callbacks": [noop]}),
        "model + handler, worker parked":
            lambda: model.invoke("q", config={**md, "callbacks": [h_parked]}),
        "model + handler": lambda: model.invoke("q", config={**md, "callbacks": [h_track]}),
        "model + handler(track_retrieval=False)":
            lambda: model.invoke("q", config={**md, "callbacks": [h_fast]}),
        "chain, no handler (baseline)": lambda: chain.invoke({"q": "q"}, config=md),
        "chain + no-op handler":
            lambda: chain.invoke({"q": "q"}, config={**md, "callbacks": [noop]}),
        "chain + handler, worker parked":
            lambda: chain.invoke({"q": "q"}, config={**md, "callbacks": [h_parked]}),
        "chain + handler":
            lambda: chain.invoke({"q": "q"}, config={**md, "callbacks": [h_track_c]}),
        "chain + handler(track_retrieval=False)":
            lambda: chain.invoke({"q": "q"}, config={**md, "callbacks": [h_fast_c]}),
    }
    for fn in variants.values():  # warm up
        _time(fn, 200)
    med = _interleaved(variants, args.calls, args.block)
    parked.release()

    print(f"{args.calls} calls per variant, blocks of {args.block} (median); "
          "instant embedder")
    print(f"{'variant':45s} {'us/call':>9s} {'added us':>9s} {'ratio':>6s}")
    for name, t in med.items():
        base = med["model, no handler (baseline)" if name.startswith("model")
                   else "chain, no handler (baseline)"]
        print(f"{name:45s} {t * 1e6:9.1f} {(t - base) * 1e6:9.1f} {t / base:6.2f}")

    if args.real_calls:
        real_store = lw.WebStore(":memory:")  # all-MiniLM-L6-v2
        real_store.embedder.embed(["warm up"])  # type: ignore[union-attr]
        h_real = handler(True, real_store)
        t0 = time.perf_counter()
        real_med = _interleaved(
            {"base": lambda: model.invoke("q", config=md),
             "real": lambda: model.invoke("q", config={**md, "callbacks": [h_real]})},
            args.real_calls, args.block)
        base, real = real_med["base"], real_med["real"]
        mon = h_real.monitor
        mon.flush()
        drained = time.perf_counter() - t0
        print(f"\nreal MiniLM embedder, {args.real_calls} calls: baseline {base * 1e6:.1f} us, "
              f"with handler {real * 1e6:.1f} us on the caller's thread "
              f"(+{(real - base) * 1e6:.1f} us, x{real / base:.2f}); "
              f"all {mon.stats.stored} embedded+stored after {drained:.1f} s")

    for mon in monitors:
        stats = mon.close()
        assert stats.failed == 0 and stats.handler_errors == 0, stats
    total = sum(m.stats.stored for m in monitors)
    print(f"\nrecords stored: {total}; handler errors: 0")
    own = max(med[f"{w} + handler, worker parked"] - med[f"{w} + no-op handler"]
              for w in ("model", "chain"))
    worst = max(med[k] - med["model, no handler (baseline)" if k.startswith("model")
                             else "chain, no handler (baseline)"] for k in med)
    print(f"handler's own cost on the caller's thread (parked - no-op handler): "
          f"{own * 1e3:.3f} ms per call; worst added "
          f"latency with the worker running: {worst * 1e3:.3f} ms (target < 0.5 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
