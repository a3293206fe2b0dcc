"""The plots of a diversity report (a :class:`~.data.ReportData`), drawn with matplotlib.

``matplotlib.figure.Figure`` and the Agg canvas are used directly, so nothing touches pyplot's
global state or the user's backend. Labels never go through mathtext (``$`` is escaped).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import ReportData, RunReport

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["figures"]

_HINT = "pip install 'llmweb-plugin[report]'"
_LABELS = {
    "norm": "||D(t)||_F (raw)",
    "normalized_norm": "||D(t)||_F / sqrt(m(m-1))",
    "within_spread": "within-agent spread",
    "between_spread": "between-agent spread",
    "total_spread": "total spread",
    "mean_cosine_distance": "mean cosine distance",
    "vendi_score": "Vendi score (cosine kernel)",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
}


def _mpl() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"plots in llmweb reports need matplotlib: {_HINT}") from exc
    return Figure


def _plain(text: object, limit: int = 40) -> str:
    """Text safe for a matplotlib label: no mathtext (``$``), shortened."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _colour(i: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](i % 10)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _step_axis(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _undefined(ax: Axes, values: np.ndarray, why: str) -> bool:
    if values.size == 0 or not np.any(np.isfinite(values)):
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.35",
                wrap=True)
        return True
    return False


def _plot_series(ax: Axes, rep: ReportData, name: str, *, marks: bool) -> None:
    runs = rep.runs
    ax.set_title(_LABELS.get(name, name), fontsize=10)
    _step_axis(ax)
    all_vals = np.concatenate([r.series(name) for r in runs])
    why = ("undefined: fewer than two agents" if name in ("norm", "normalized_norm")
           else "undefined")
    if _undefined(ax, all_vals, why):
        return
    default_groups = bool(rep.groups) and not rep.groups_given
    run_colour = {r.run_id: _colour(i) for i, r in enumerate(runs)}
    if rep.groups and not default_groups:
        for gi, members in enumerate(rep.groups.values()):
            for rid in members:
                run_colour[rid] = _colour(gi)
    comp = rep.comparison()
    for gi, (g, data) in enumerate(comp.items()):
        band = data["series"][name]
        steps = np.array(band["steps"], dtype=float)
        n = len(data["runs"])
        if default_groups:  # different runs, not replicates: show their range, no mean
            lo = np.array(band["min"], dtype=float)
            hi = np.array(band["max"], dtype=float)
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(steps[ok], lo[ok], hi[ok], color="0.5", alpha=0.15, linewidth=0,
                            label=f"range over the {n} runs")
            continue
        mean = np.array(band["mean"], dtype=float)
        sd = np.array(band["sd"], dtype=float)
        colour = _colour(gi)
        ok = np.isfinite(sd) & np.isfinite(mean)
        if ok.any():
            ax.fill_between(steps[ok], (mean - sd)[ok], (mean + sd)[ok], color=colour,
                            alpha=0.18, linewidth=0)
        lbl = f"{_plain(g)}: mean \u00b1 s.d. ({n} run{'s' if n != 1 else ''})"
        ax.plot(steps, mean, color=colour, lw=2.2, label=lbl)
    many = len(runs) > 1
    for r in runs:
        y = r.series(name)
        label = None if (rep.groups and not default_groups) else _plain(r.run_id)
        ax.plot(r.steps, y, color=run_colour[r.run_id], lw=1.0 if many else 1.6,
                alpha=0.55 if many else 1.0, marker=None if many else "o", ms=3, label=label)
        if marks:
            steps_arr = np.array(r.steps)
            alarm_steps = [a["step"] for a in r.alarms]
            if alarm_steps:
                idx = [r.steps.index(s) for s in alarm_steps if s in r.steps]
                ax.plot(steps_arr[idx], y[idx], "x", color="crimson", ms=8, mew=2,
                        label="alarm" if r is runs[0] else None)
            mit_steps = [int(s) for s in r.mitigations.get("records_by_step", {})]
            mit_steps += [s["step"] for s in r.per_step if s.get("mitigation")]
            for j, s in enumerate(sorted(set(mit_steps))):
                ax.axvline(s, color="seagreen", ls=":", lw=1,
                           label="mitigation" if j == 0 and r is runs[0] else None)
    if many or marks:
        _, labels = ax.get_legend_handles_labels()
        if labels:
            ax.legend(fontsize=7, loc="best")


def _series_figure(rep: ReportData, names: Sequence[str], ncols: int,
                   marks: bool = False) -> bytes:
    Figure = _mpl()
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        _plot_series(ax, rep, name, marks=marks)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return _png(fig)


def _agents_figure(run: RunReport) -> bytes:
    Figure = _mpl()
    fig = Figure(figsize=(10.4, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "spread", "per-agent spread (mean sq. distance to own mean)"),
                           (axes[1], "mean_cosine_distance", "per-agent mean cosine distance")):
        ax.set_title(_plain(title, 60), fontsize=10)
        _step_axis(ax)
        for i, agent in enumerate(run.agents):
            ys = [s["per_agent"].get(agent, {}).get(key) for s in run.per_step]
            y = np.array([np.nan if v is None else v for v in ys], dtype=float)
            ax.plot(run.steps, y, color=_colour(i), marker="o", ms=3, label=_plain(agent))
        if len(run.agents) <= 12:
            ax.legend(fontsize=7)
    fig.suptitle(_plain(f"run {run.run_id}", 80), fontsize=10)
    return _png(fig)


def _mds_figure(run: RunReport) -> bytes:
    Figure = _mpl()
    mds = run.mds or {}
    pts = mds.get("points", [])
    fig = Figure(figsize=(10.4, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    colour = {a: _colour(i) for i, a in enumerate(run.agents)}
    xy = np.array([[p["x"], p["y"]] for p in pts]) if pts else np.zeros((1, 2))
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2
    half = max(float((xy.max(axis=0) - xy.min(axis=0)).max()) / 2, 1e-6) * 1.08
    for ax, key, which in ((axes[0], "first_step", "first"), (axes[1], "last_step", "last")):
        step = mds.get(key)
        sel = [p for p in pts if p["step"] == step]
        ax.set_title(f"{which} step (t = {step})", fontsize=10)
        for agent in run.agents:
            xs = [p["x"] for p in sel if p["agent"] == agent]
            ys = [p["y"] for p in sel if p["agent"] == agent]
            if xs:
                ax.scatter(xs, ys, s=22, alpha=0.75, color=colour[agent], label=_plain(agent),
                           edgecolors="none")
        ax.set_xlabel("MDS 1")
        ax.grid(alpha=0.3)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal", adjustable="box")
    axes[0].set_ylabel("MDS 2")
    if len(run.agents) <= 12:
        axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(_plain(f"classical MDS of response embeddings, run {run.run_id} "
                        "(one joint embedding: shared axes)", 100), fontsize=10)
    return _png(fig)


def figures(rep: ReportData) -> dict[str, bytes]:
    """All plots of the report as PNG bytes, by file-safe name (insertion order = page order).

    Raises:
        ImportError: matplotlib is missing (``pip install 'llmweb-plugin[report]'``).
    """
    out: dict[str, bytes] = {
        "norm": _series_figure(rep, ["norm", "normalized_norm"], 2, marks=len(rep.runs) == 1),
        "spread": _series_figure(rep, ["within_spread", "between_spread"], 2),
        "diversity": _series_figure(
            rep, ["mean_cosine_distance", "vendi_score", "distinct_1", "distinct_2"], 2),
    }
    for i, run in enumerate(rep.runs):
        out[f"agents-{i + 1}"] = _agents_figure(run)
        if run.mds is not None:
            out[f"mds-{i + 1}"] = _mds_figure(run)
    return out
