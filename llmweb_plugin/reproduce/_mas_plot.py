"""The ``mas-topology`` figure: the proxy's curves with bands, group sizes, the agent web."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["draw_mas"]


def draw_mas(path: str, series: Mapping[str, Any], st: Mapping[str, Any]) -> None:
    """Write the figure as PNG to ``path`` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = series["t"]
    web = series.get("agent_web")
    fig, axes = plt.subplots(1, 4 if web else 3, figsize=(17 if web else 13, 3.8))
    topo = ("full", "small_world_k4", "small_world_k2", "ring")
    for ax, key, label in ((axes[0], "rms_distance", "RMS pairwise distance of weights"),
                           (axes[1], "pooled_vendi", "pooled Vendi exp(H(mean Pi))")):
        for name in topo:
            b = series[key][name]
            line, = ax.plot(t, b["median"], lw=1.6, label=name)
            ax.fill_between(t, b["p05"], b["p95"], color=line.get_color(), alpha=0.15)
        ax.set_xlabel("step t")
        ax.set_ylabel(label, fontsize=8)
    axes[0].axhline(series["theta"], color="k", ls=":", lw=1, label="theta")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"GMM proxy, n = {st['n_agents']}, {st['replicates']} replicates "
                      "(median, 5-95%)", fontsize=9)
    ax = axes[2]
    for s in st["group_sizes"]:
        b = series["pooled_vendi"][f"n{s}"]
        line, = ax.plot(t, b["median"], lw=1.4, label=f"n = {s}")
        ax.fill_between(t, b["p05"], b["p95"], color=line.get_color(), alpha=0.08)
    ax.set_title("group size (full topology)", fontsize=9)
    ax.set_xlabel("step t")
    ax.set_ylabel("pooled Vendi", fontsize=8)
    ax.legend(fontsize=7)
    if web:
        ax = axes[3]
        for name, v in web.items():
            M = np.asarray(v["normalized_norm"], dtype=float)
            steps = np.arange(1, M.shape[1] + 1)
            for row in M:
                ax.plot(steps, row, lw=1.2, alpha=0.8,
                        color="C0" if name == "full" else "C3")
            ax.plot([], [], color="C0" if name == "full" else "C3", label=name)
        ax.set_title(f"agent web ({st['web_agents']}, n = {st['web_n_agents']})", fontsize=9)
        ax.set_xlabel("step t")
        ax.set_ylabel("||D|| / sqrt(n(n-1))", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
