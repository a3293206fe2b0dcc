"""The result of a mitigation experiment: per-arm trajectories over seeds and the effects."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .effects import Effect, last_window_means, quiet_nanmean

__all__ = ["ExperimentResult"]


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """Per-arm trajectories over seeds and the effect sizes at the last steps.

    Attributes:
        proxy: ``"gmm"`` or ``"web"``.
        arms: arm names, baseline first.
        baseline: the baseline arm.
        seeds: the seeds, in row order.
        steps: the step of each column, shape ``(n_points,)`` (GMM: ``0..T``; web: ``1..T``).
        norms: ``{arm: ||D(t)||_F}``, each of shape ``(n_seeds, n_points)`` (NaN = undefined).
        series: ``{metric: {arm: (n_seeds, n_points)}}``: secondary series (GMM ``entropy``,
            ``synthetic_fraction``; web ``mean_cosine_distance``, ``synthetic_fraction``,
            ``injected``, ``sampled``).
        secondary: the secondary diversity metric used for effects (``entropy`` on the GMM,
            ``mean_cosine_distance`` on the web).
        window: steps averaged for the effects.
        effects: ``{arm: Effect}`` on ``||D||`` for every non-baseline arm.
        secondary_effects: ``{arm: Effect}`` on the secondary metric.
        settings: the configuration (JSON-ready), including which arms are analogues.
        run_ids: ``{arm: [run id per seed]}`` for the web proxy.
    """

    proxy: str
    arms: tuple[str, ...]
    baseline: str
    seeds: tuple[int, ...]
    steps: np.ndarray
    norms: Mapping[str, np.ndarray]
    series: Mapping[str, Mapping[str, np.ndarray]]
    secondary: str
    window: int
    effects: Mapping[str, Effect]
    secondary_effects: Mapping[str, Effect]
    settings: Mapping[str, Any] = field(default_factory=dict)
    run_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def band(self, arm: str, metric: str = "norm") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and mean +- one s.d. across seeds of ``metric`` for ``arm``, each ``(n_points,)``."""
        vals = self.norms[arm] if metric == "norm" else self.series[metric][arm]
        with quiet_nanmean():
            mean = np.nanmean(vals, axis=0)
            sd = np.nanstd(vals, axis=0, ddof=1) if vals.shape[0] > 1 else np.zeros_like(mean)
        sd = np.nan_to_num(sd)
        return mean, mean - sd, mean + sd

    # ------------------------------------------------------------------ outputs
    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and infinities become ``null``)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, Mapping):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, np.generic):
                return clean(v.item())
            return v

        return clean({
            "proxy": self.proxy, "arms": list(self.arms), "baseline": self.baseline,
            "seeds": list(self.seeds), "steps": self.steps, "window": self.window,
            "secondary": self.secondary, "settings": dict(self.settings),
            "norms": {a: v for a, v in self.norms.items()},
            "series": {m: dict(s) for m, s in self.series.items()},
            "effects": {a: {**asdict(e), "verdict": e.verdict} for a, e in self.effects.items()},
            "secondary_effects": {a: {**asdict(e), "verdict": e.verdict}
                                  for a, e in self.secondary_effects.items()},
            "run_ids": {a: list(v) for a, v in self.run_ids.items()},
        })

    def to_json(self) -> str:
        """The result as JSON text."""
        return json.dumps(self.as_dict(), indent=1, allow_nan=False)

    def to_markdown(self) -> str:
        """A Markdown summary: settings, one effect table per metric, and the arms' notes."""
        def fmt(x: float | None, digits: int = 4) -> str:
            if x is None or not math.isfinite(x):
                return "n/a"
            return f"{x:.{digits}g}"

        w0, w1 = next(iter(self.effects.values())).window if self.effects else (0, 0)
        lines = [
            f"# Mitigation experiment ({self.proxy} proxy)",
            "",
            (f"Seeds: {len(self.seeds)}; baseline arm: `{self.baseline}`; effects over steps "
             f"{w0}..{w1} (per-seed window means, paired by seed; 95% bootstrap CI; Cohen's d "
             "with the pooled s.d. across seeds)."),
            "",
        ]
        notes = self.settings.get("arm_notes") or {}
        if notes:
            lines += ["## Arms", ""]
            for a in self.arms:
                lines.append(f"- `{a}`: {notes.get(a, '')}")
            lines.append("")
        for title, effects, metric in (("||D(t)||_F (disagreement between agents)",
                                        self.effects, "norm"),
                                       (f"{self.secondary} (diversity)", self.secondary_effects,
                                        self.secondary)):
            lines += [f"## {title}", "",
                      ("| arm | mean (arm) | mean (baseline) | difference | 95% CI | "
                       "Cohen's d | relative | verdict |"),
                      "|---|---|---|---|---|---|---|---|"]
            base_vals = self.norms[self.baseline] if metric == "norm" else \
                self.series[metric][self.baseline]
            bm, _ = last_window_means(base_vals, self.steps, self.window)
            with quiet_nanmean():
                lines.append(f"| `{self.baseline}` (baseline) | {fmt(float(np.nanmean(bm)))} | "
                             "| | | | | |")
            for a, e in effects.items():
                rel = "n/a" if e.relative is None else f"{100 * e.relative:+.1f}%"
                lines.append(f"| `{a}` | {fmt(e.mean_arm)} | {fmt(e.mean_baseline)} | "
                             f"{fmt(e.diff)} | [{fmt(e.ci_low)}, {fmt(e.ci_high)}] | "
                             f"{fmt(e.cohens_d, 3)} | {rel} | {e.verdict} |")
            lines.append("")
        if "synthetic_fraction" in self.series:
            lines += ["## Synthetic fraction of the web at the last step", ""]
            for a in self.arms:
                sf = self.series["synthetic_fraction"][a][:, -1]
                with quiet_nanmean():
                    lines.append(f"- `{a}`: {fmt(float(np.nanmean(sf)), 3)}")
            lines.append("")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Save the ``||D(t)||_F`` trajectories (mean, +-1 s.d. band per arm) and the secondary
        metric side by side as an image (matplotlib, Agg backend)."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("plots need matplotlib: pip install 'llmweb-plugin[report]'") from exc
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, metric, label in ((axes[0], "norm", "||D(t)||_F"),
                                  (axes[1], self.secondary, self.secondary)):
            for a in self.arms:
                mean, lo, hi = self.band(a, metric)
                (line,) = ax.plot(self.steps, mean, label=a, lw=1.6)
                ax.fill_between(self.steps, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
            if metric == "norm" and self._positive(metric):
                ax.set_yscale("log")
            ax.set_xlabel("step t")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        axes[0].set_title(f"{self.proxy} proxy: ||D(t)||_F, mean +- 1 s.d. over "
                          f"{len(self.seeds)} seeds",
                          fontsize=9)
        axes[1].set_title(f"{self.secondary}, mean +- 1 s.d.", fontsize=9)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def _positive(self, metric: str) -> bool:
        vals = self.norms if metric == "norm" else self.series[metric]
        arr = np.concatenate([v.ravel() for v in vals.values()])
        arr = arr[np.isfinite(arr)]
        return bool(arr.size) and bool(np.all(arr > 0))

    def save(self, out_dir: str | os.PathLike[str], *, stem: str = "experiment",
             plot: bool = True) -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and (``plot=True``) ``<stem>.png`` to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
        paths["json"].write_text(self.to_json(), encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        if plot:
            paths["plot"] = self.plot(out / f"{stem}.png")
        return paths

