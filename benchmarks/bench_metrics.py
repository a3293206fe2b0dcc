"""collapse_norm against a scipy-pdist ||D||_F and against one plain numpy pass (the floor).

Run: python benchmarks/bench_metrics.py
Targets (issue): >= 100x faster than pdist at n = 20k, within 3x of the memory-bound floor.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial.distance import pdist

import llmweb_plugin as lw


def best_of(fn, repeat=5):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    d = 384
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'pdist s':>9} {'ours ms':>8} {'floor ms':>9} {'vs pdist':>9} {'vs floor':>9} {'rel err':>9}")
    for n in (1_000, 5_000, 10_000, 20_000):
        X = rng.normal(size=(n, d)).astype(np.float32)
        t_p, ref = best_of(lambda: float(np.sqrt(2.0 * np.sum(pdist(X) ** 2))), repeat=1)
        t_o, ours = best_of(lambda: lw.collapse_norm(X))
        t_f, _ = best_of(lambda: X.sum(dtype=np.float64))
        print(f"{n:>6} {t_p:>9.2f} {t_o * 1e3:>8.2f} {t_f * 1e3:>9.2f} {t_p / t_o:>8.0f}x "
              f"{t_o / t_f:>8.2f}x {abs(ours - ref) / ref:>9.1e}")


if __name__ == "__main__":
    main()
