"""Benchmark the GMM proxies against a straightforward per-agent, per-point loop.

Run by hand (not collected by pytest)::

    python benchmarks/bench_gmm.py             # Fig. 4 preset, naive ratio, n=1000 (T=50)
    python benchmarks/bench_gmm.py --full      # also n=1000 agents x T=200 (tens of minutes)
    python benchmarks/bench_gmm.py --quick     # shorter naive comparison
    python benchmarks/bench_gmm.py --no-numba  # skip the compiled engine (numba) section

The numba section (needs ``pip install 'llmweb-plugin[fast]'``) runs the compiled engine on
n=1000 agents for the full T=200 steps (target: under 60 s) and compares its update rate with
the numpy engine's n=1000 run of section 3.

Baseline: ``llmweb_plugin.proxies._reference._reference_run``, the paper's pseudo-code as written
(loop over replicates, agents and points; log-sum-exp ownership recomputed from the stored points
at every use). It consumes the random generator exactly like the vectorised simulator, so both
must give the same numbers (checked to 1e-12; the script exits 1 otherwise).

Also prints the theory check (decay of pairwise weight differences vs ``(1 - 1/k_t)^{k_t}``) and
the companion model's silo curve (p = 0, k in {1, 2, 5, 10, 20, 29}).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from llmweb_plugin.proxies import SiloGMM, gmm_preset, weight_decay_check
from llmweb_plugin.proxies._reference import _reference_run


def _timed(fn, repeat: int = 1):
    best_wall = best_cpu = math.inf
    out = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return out, best_wall, best_cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="naive comparison on 60 steps only")
    ap.add_argument("--full", action="store_true", help="run n=1000 agents for T=200 steps")
    ap.add_argument("--n1000-steps", type=int, default=50, help="steps for the n=1000 run")
    ap.add_argument("--silo-replicates", type=int, default=20)
    ap.add_argument("--silo-steps", type=int, default=100)
    ap.add_argument("--no-numba", action="store_true", help="skip the numba engine section")
    ap.add_argument("--numba-steps", type=int, default=200, help="steps for the numba n=1000 run")
    args = ap.parse_args(argv)
    ok = True
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f}, numpy {np.__version__}")

    # 1. Fig. 4 preset, vectorised (target < 1 s for 5 replicates x 200 steps)
    fig4 = gmm_preset("lwd-fig4")
    res, wall, cpu = _timed(lambda: fig4.run(rng=0), repeat=3)
    print(f"\n[fig4] lwd-fig4 (n=3, B=2, T=200, 5 replicates): {wall:.3f} s wall, {cpu:.3f} s "
          f"CPU (best of 3; target < 1 s)")
    print(f"[fig4] ||D||_F at t=0: {np.round(res.norms[0], 2).tolist()}; t=25 max "
          f"{res.norms[25].max():.3f}; mean t>50 {res.norms[51:].mean():.3f}")

    # 2. vectorised vs naive per-agent per-point loop, same seed
    sim = fig4 if not args.quick else dataclasses.replace(fig4, n_steps=60)
    fast, fwall, fcpu = _timed(lambda: sim.run(rng=0), repeat=3)
    slow, swall, scpu = _timed(lambda: _reference_run(sim, rng=0))
    dw = float(np.abs(fast.weights - slow.weights).max())
    dn = float(np.abs(fast.norms - slow.norms).max())
    same = dw <= 1e-12 and dn <= 1e-12
    ok &= same
    print(f"\n[naive] T={sim.n_steps}, 5 replicates: vectorised {fwall:.3f} s wall "
          f"({fcpu:.3f} s CPU), naive loop {swall:.2f} s wall ({scpu:.2f} s CPU); ratio "
          f"{swall / fwall:.0f}x wall, {scpu / fcpu:.0f}x CPU; max |diff| weights {dw:.1e}, "
          f"norms {dn:.1e} -> {'SAME' if same else 'DIFFERENT'}")

    # 3. n = 1000 agents (target: T = 200 in < 60 s)
    steps = 200 if args.full else args.n1000_steps
    big = gmm_preset("lwd-fig4-n1000", n_steps=steps)
    bres, bwall, bcpu = _timed(lambda: big.run(rng=0, engine="numpy"))
    work = int(bres.k.sum()) * big.n_agents
    print(f"\n[n1000] n=1000, T={steps}: {bwall:.1f} s wall, {bcpu:.1f} s CPU; "
          f"{work:.2e} agent-point updates ({work / bcpu:.2e}/s CPU), final |A| "
          f"{int(bres.a_sizes[-1])}, k_T-1 {int(bres.k[-1])}, ||D||_F {bres.norms[-1, 0]:.3f}")
    if steps < 200:
        full_k = sum(math.floor(0.5 * 3000 * (t + 1) + 1e-9) for t in range(200))
        est = bcpu * (full_k * 1000) / work
        print(f"[n1000] T=200 needs {full_k * 1000:.2e} updates: at this rate about {est:.0f} s "
              "(a lower bound: larger A is less cache friendly); run --full to measure")

    # 3b. compiled engine (numba) on n = 1000 agents, T = 200 (target < 60 s)
    if not args.no_numba:
        try:
            import numba
        except ImportError:
            print("\n[numba] not installed (pip install 'llmweb-plugin[fast]'): skipped")
        else:
            warm = gmm_preset("lwd-fig4")
            _, cwall, _ = _timed(lambda: warm.run(rng=0, engine="numba"))  # JIT or cache load
            _, fwall4, _ = _timed(lambda: warm.run(rng=0, engine="numba"), repeat=3)
            print(f"\n[numba] numba {numba.__version__}, {numba.get_num_threads()} threads; first "
                  f"call {cwall:.2f} s (compile or cache load); lwd-fig4 {fwall4:.3f} s wall")
            nsteps = args.numba_steps
            nbig = gmm_preset("lwd-fig4-n1000", n_steps=nsteps)
            load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            nres, nwall, ncpu = _timed(lambda: nbig.run(rng=0, engine="numba"))
            load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            nwork = int(nres.k.sum()) * nbig.n_agents
            rate_np = work / bwall
            print(f"[numba] n=1000, T={nsteps}: {nwall:.1f} s wall, {ncpu:.1f} s CPU "
                  f"(target < 60 s for T=200: {'MET' if nwall < 60 else 'MISSED'}); "
                  f"{nwork:.2e} updates, {nwork / nwall:.2e}/s wall, {nwork / ncpu:.2e}/s CPU; "
                  f"load average {load0:.1f} before, {load1:.1f} after; ||D||_F "
                  f"{nres.norms[-1, 0]:.3f}")
            print(f"[numba] vs numpy (n=1000, T={steps}: {bwall:.1f} s wall, {rate_np:.2e}/s "
                  f"wall, {work / bcpu:.2e}/s CPU): {nwork / nwall / rate_np:.1f}x updates/s "
                  f"wall, {(nwork / ncpu) / (work / bcpu):.1f}x per CPU second")

    # 4. theory check: decay of pairwise weight differences
    chk_res = gmm_preset("lwd-fig4", n_replicates=50).run(rng=0)
    chk = weight_decay_check(chk_res)
    print("\n[theory] d = pi_ib - pi_jb; prediction E[d(t+1)|d(t)] = (1-1/k_t)^k_t d(t) "
          "(50 replicates)")
    print(f"{'steps':>9} {'mean k':>7} {'predicted':>9} {'slope':>7} {'|d| ratio':>9} "
          f"{'mean|d|':>8} {'mean|d|*sqrt(k)':>15}")
    for lo, hi in [(0, 5), (5, 10), (10, 25), (25, 50), (50, 100), (100, 200)]:
        sl = slice(lo, hi)
        scaled = float(np.mean(chk.mean_abs_diff[lo:hi] * np.sqrt(chk.k[sl])))
        print(f"{lo:>4}-{hi:<4} {chk.k[sl].mean():7.0f} {chk.predicted[sl].mean():9.3f} "
              f"{chk.slope[sl].mean():7.3f} {chk.abs_ratio[sl].mean():9.3f} "
              f"{chk.mean_abs_diff[lo]:8.4f} {scaled:15.3f}")

    chk6 = weight_decay_check(gmm_preset("lwd-fig6", n_replicates=10).run(rng=0))
    print("[theory] lwd-fig6 (11 overlapping components, 10 replicates):")
    for lo, hi in [(0, 5), (5, 25), (25, 100), (100, 200)]:
        sl = slice(lo, hi)
        print(f"{lo:>4}-{hi:<4} {chk6.k[sl].mean():7.0f} {chk6.predicted[sl].mean():9.3f} "
              f"{chk6.slope[sl].mean():7.3f} {chk6.abs_ratio[sl].mean():9.3f}")

    # 5. companion model: silos at T vs k, p = 0
    R, T = args.silo_replicates, args.silo_steps
    print(f"\n[silo] n=30, K=30, r=5, sigma=0.2, p=0, T={T}, {R} replicates: silos at T")
    w0 = time.perf_counter()
    for k in (1, 2, 5, 10, 20, 29):
        s = SiloGMM(n_agents=30, n_components=30, mirror_prob=0.0, n_neighbors=k, rag_size=5,
                    n_steps=T, n_replicates=R).run(rng=0).summary()
        print(f"[silo] k={k:2d}: {s['silos_mean']:5.2f} +- {s['silos_se']:.2f} (s.e.), "
              f"mean t* {s['t_star_mean']:6.1f}, converged {s['converged_fraction']:.2f}")
    print(f"[silo] sweep took {time.perf_counter() - w0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
