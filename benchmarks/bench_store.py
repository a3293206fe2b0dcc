"""The store at scale: local folder (qdrant-client local mode) against edge (qdrant-edge in-process).

For each size and backend, in a fresh subprocess (so peak RSS is that run's own): ingest N records
through a ``CollapseMonitor`` with a cheap deterministic embedder (``SeededEmbedder``, 384-d: the
store is what is measured, not a model), close, then time reopening the folder, the run's
per-step history rebuilt from the store, and ``DiversityReport.from_store``. Target (issue 13):
edge ingests >= 10x faster than the local folder; 1M records ingest, reopen and report on two cores.

Local sizes above ``--local-max`` are not run (hours at the local rate) but estimated from the
largest measured local rate, and marked ``est.``.

Run: python benchmarks/bench_store.py [--sizes 20000,200000] [--backends local,edge]
     python benchmarks/bench_store.py --sizes 1000000 --backends edge
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DIM = 384
AGENTS = 5
PER_STEP = 1000  # records per step: 200 per agent


def one(size: int, backend: str, folder: Path) -> dict[str, float]:
    """Ingest, reopen, history, report for one (size, backend); returns the timings."""
    import llmweb_plugin as lw
    from llmweb_plugin.report import DiversityReport
    from llmweb_plugin.testing import SeededEmbedder

    emb = SeededEmbedder(DIM)
    store = lw.WebStore(folder, embedder=emb, backend=backend)
    t0 = time.perf_counter()
    with lw.CollapseMonitor(store, run_id="bench", alarm_fraction=None) as mon:
        for i in range(size):
            mon.record(f"record {i} of agent {i % AGENTS}", agent=f"a{i % AGENTS}",
                       step=1 + i // PER_STEP)
        mon.flush()
        ingest = time.perf_counter() - t0
        live = mon.history(flush=False)
        assert mon.stats.stored == size and mon.stats.failed == 0, mon.stats
    store.close()
    t = time.perf_counter()
    store = lw.WebStore(folder, embedder=None)
    reopen = time.perf_counter() - t
    t = time.perf_counter()
    try:
        from llmweb_plugin._summaries import run_history
        hist = run_history(store, "bench", ("response",))
    except ImportError:  # a tree without summaries: the monitor's rebuild from the records
        with lw.CollapseMonitor(store, run_id="probe", embedder=emb) as probe:
            hist = probe._trend_history("bench")[1]
    history = time.perf_counter() - t
    assert len(hist) == len(live), (len(hist), len(live))
    worst = max(abs(a.norm - b.norm) / max(abs(a.norm), 1e-300) for a, b in zip(live, hist))
    t = time.perf_counter()
    rep = DiversityReport.from_store(store, run_id="bench")
    report = time.perf_counter() - t
    assert len(rep.run("bench").per_step) == len(live)
    count = store.count("bench")
    store.close()
    assert count == size, count
    return {"size": size, "backend": backend, "ingest_s": ingest, "rate": size / ingest,
            "reopen_s": reopen, "history_s": history, "history_rel_err": worst,
            "report_s": report,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "disk_mb": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20}


def _run_child(size: int, backend: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        out = subprocess.run([sys.executable, __file__, "--one", f"{size}:{backend}",
                              "--folder", os.path.join(tmp, "store")],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{backend} at {size}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,200000", help="record counts (default: %(default)s)")
    ap.add_argument("--backends", default="local,edge", help="default: %(default)s")
    ap.add_argument("--local-max", type=int, default=200_000,
                    help="largest size run on the local folder; larger ones are estimated "
                    "(default: %(default)s)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        size, backend = args.one.split(":")
        print(json.dumps(one(int(size), backend, Path(args.folder))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    if any(s < 1 for s in sizes) or not set(backends) <= {"local", "edge"}:
        raise SystemExit("--sizes must be positive counts; --backends from local,edge")
    rows: dict[tuple[int, str], dict] = {}
    for size in sizes:
        for be in backends:
            if be == "local" and size > args.local_max:
                continue
            rows[size, be] = _run_child(size, be)
            r = rows[size, be]
            print(f"  {be:5s} {size:>9,}: {r['rate']:8.0f} rec/s, reopen {r['reopen_s']:.2f} s, "
                  f"history {r['history_s']:.2f} s, report {r['report_s']:.2f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    local_rates = [(s, rows[s, "local"]["rate"]) for s in sizes if (s, "local") in rows]
    print(f"\n| records | backend | ingest rec/s | ingest time | edge/local | reopen s | "
          f"history s | report s | peak RSS MB | disk MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for be in backends:
            r = rows.get((size, be))
            if r is None:
                if be == "local" and local_rates:
                    rate = local_rates[-1][1]
                    print(f"| {size:,} | local | {rate:,.0f} (est.) | {size / rate / 60:,.0f} min "
                          f"(est.) | | | | | | |")
                continue
            ratio = ""
            if be == "edge":
                base = rows.get((size, "local"), {}).get("rate") or (
                    local_rates[-1][1] if local_rates else None)
                if base:
                    ratio = f"{r['rate'] / base:.1f}x" + ("" if (size, "local") in rows
                                                          else " (vs est.)")
            print(f"| {size:,} | {be} | {r['rate']:,.0f} | {r['ingest_s']:,.1f} s | {ratio} | "
                  f"{r['reopen_s']:.2f} | {r['history_s']:.2f} | {r['report_s']:.2f} | "
                  f"{r['peak_rss_mb']:,.0f} | {r['disk_mb']:,.0f} |")
    print(f"\n(two cores: os.cpu_count()={os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f} at the end; {DIM}-d SeededEmbedder, {AGENTS} agents, "
          f"{PER_STEP} records per step)")


if __name__ == "__main__":
    main()
