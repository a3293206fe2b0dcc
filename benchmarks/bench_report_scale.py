"""Report and history cost against run size, from summaries vs the old full read (issue 13 item 1).

Writes two runs through the monitor (10 steps x 4 agents; 20k and 200k responses by default,
``--sizes`` to change) into an in-memory store (``--folder DIR`` for a local folder, which
ingests about 6x slower; then the timings are taken after reopening it), with the cheap
deterministic ``SeededEmbedder`` (384-d). For each run it times:

- ``report``: ``DiversityReport.from_store`` (summaries + bottom-k samples);
- ``history``: the run's per-step metrics as ``CollapseMonitor.trend(run_id=...)`` reads them;
- ``old report`` / ``old history``: the full-scroll paths of before (``report.build.build_run``,
  ``_summaries.history_from_records``), measured in the same process on runs up to
  ``--old-max`` records (default 20k: the old report of a 200k run takes many minutes).

It prints the ratio of the largest run's time over the smallest one's (target <= 2x) and the
speed-up over the old path. Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_report_scale.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import llmweb_plugin as lw
from llmweb_plugin import _summaries as S
from llmweb_plugin.report import DiversityReport
from llmweb_plugin.report.build import build_run
from llmweb_plugin.testing import SeededEmbedder

STEPS, AGENTS = 10, 4


def _write(store: lw.WebStore, run_id: str, n: int) -> float:
    per = n // (STEPS * AGENTS)
    t0 = time.perf_counter()
    with lw.CollapseMonitor(store, run_id=run_id, alarm_fraction=None, batch_size=512) as mon:
        for s in range(1, STEPS + 1):
            for a in range(AGENTS):
                for i in range(per):
                    mon.record(f"agent {a} step {s} answer {i % (50 + 10 * s)}", agent=f"a{a}",
                               step=s, index=i)
    return time.perf_counter() - t0


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _measure(store: lw.WebStore, run_id: str, old: bool) -> dict[str, float]:
    kw = dict(metric_kinds=("response",), given_settings={}, n_examples=2,
              mitigation_keys=("mitigation",), max_mds_points=2000)
    out = {"report": _time(lambda: DiversityReport.from_store(store, run_id=run_id)),
           "history": _time(lambda: S.run_history(store, run_id, ["response"]))}
    if old:
        out["old report"] = _time(lambda: build_run(store, run_id, **kw), repeat=1)
        out["old history"] = _time(lambda: S.history_from_records(store, run_id, ["response"]),
                                   repeat=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000", help="responses per run, comma-separated")
    ap.add_argument("--folder", default=None, help="a local folder store instead of memory")
    ap.add_argument("--old-max", type=int, default=20000,
                    help="time the old full-scroll paths on runs up to this size (0: never)")
    args = ap.parse_args()
    logging.getLogger("llmweb_plugin").setLevel(logging.ERROR)
    sizes = [int(x) for x in args.sizes.split(",")]
    emb = SeededEmbedder(384)
    where = args.folder
    store = lw.WebStore(where if where else ":memory:", embedder=emb)
    for n in sizes:
        took = _write(store, f"run-{n}", n)
        print(f"wrote {n} responses in {took:.1f} s ({n / took:.0f}/s)", flush=True)
    if where:
        store.close()
        t0 = time.perf_counter()
        store = lw.WebStore(where, embedder=emb)
        print(f"reopened the folder in {time.perf_counter() - t0:.1f} s")
    rows = {n: _measure(store, f"run-{n}", n <= args.old_max) for n in sizes}
    cols = list(rows[sizes[0]])
    for n in sizes:
        rows[n] = {c: rows[n].get(c, float("nan")) for c in cols}
    print(f"{'records':>9}  " + "  ".join(f"{c:>12}" for c in cols) + "   (seconds)")
    for n in sizes:
        print(f"{n:>9}  " + "  ".join(f"{rows[n][c]:>12.3f}" for c in cols))
    lo, hi = sizes[0], sizes[-1]
    for c in ("report", "history"):
        line = f"{c}: {hi // 1000}k / {lo // 1000}k = {rows[hi][c] / rows[lo][c]:.2f}x (target <= 2x)"
        if f"old {c}" in cols:
            line += "; speed-up over the old full read: " + ", ".join(
                f"{n // 1000}k {rows[n][f'old {c}'] / rows[n][c]:.0f}x" for n in sizes
                if n <= args.old_max)
        print(line)
    store.close()


if __name__ == "__main__":
    main()
