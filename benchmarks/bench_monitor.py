"""Monitor embedding throughput against raw sentence-transformers ``encode`` on the same texts.

The monitor does more than encode (queueing, Qdrant upserts, per-step running sums); the target is
>= 0.9x the texts/s of a bare ``model.encode(texts, batch_size=64)`` called once on all texts (which
sorts them all by length; the monitor embeds in batches as records arrive, on a worker thread).
``BENCH_BATCH=64`` runs the monitor with another ``batch_size``.

Run: python benchmarks/bench_monitor.py [n_texts]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import llmweb_plugin as lw  # noqa: E402

BATCH = int(os.environ.get("BENCH_BATCH", "256"))  # the monitor's default batch_size


def texts(n: int) -> list[str]:
    words = ["bitcoin", "market", "adoption", "regulation", "volatility", "rally", "crash",
             "institutions", "halving", "energy", "future", "prospects", "investors", "risk"]
    return [f"Agent view {i}: the {words[i % 14]} and {words[(i * 7) % 14]} will shape "
            f"the {words[(i * 3) % 14]} of crypto in {2026 + i % 9}." for i in range(n)]


def main(n: int = 2000, repeats: int = 3) -> None:
    emb = lw.default_embedder()
    data = texts(n)
    emb.embed(data[:64])  # load + warm up
    model = emb.model

    def raw_run() -> float:
        t = time.perf_counter()
        model.encode(data, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - t

    def monitor_run(r: int) -> tuple[float, float]:
        store = lw.WebStore(":memory:", embedder=emb)
        mon = lw.CollapseMonitor(store, run_id=f"bench{r}", batch_size=BATCH)
        t = time.perf_counter()
        for i, text in enumerate(data):
            mon.record(text, agent=f"a{i % 3}", step=i // 300)
        enq = time.perf_counter() - t
        mon.flush()
        total = time.perf_counter() - t
        assert mon.stats.stored == n and mon.stats.failed == 0
        mon.close()
        store.close()
        return total, enq

    raws, mons, enqs = [], [], []
    for r in range(repeats):  # interleaved, so background load hits both alike
        raws.append(raw_run())
        total, enq = monitor_run(r)
        mons.append(total)
        enqs.append(enq)
    raw, total = min(raws), min(mons)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"texts: {n}, best of {repeats} interleaved runs, load average {load:.2f}")
    print(f"raw encode      : {n / raw:8.1f} texts/s ({raw:.2f} s; all: "
          f"{', '.join(f'{x:.2f}' for x in raws)})")
    print(f"monitor (e2e)   : {n / total:8.1f} texts/s ({total:.2f} s; all: "
          f"{', '.join(f'{x:.2f}' for x in mons)}; enqueue {min(enqs) * 1e6 / n:.1f} us/text)")
    print(f"ratio monitor/raw: {raw / total:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
