"""Mitigations as measured experiments: the same web with and without each, over seeds.

Two proxies, one result type (:class:`ExperimentResult`):

- :func:`run_gmm_experiment` runs the interacting Gaussian-mixture proxy
  (:class:`~llmweb_plugin.proxies.InteractingGMMWeb`) once per seed and arm. Each seed's run draws from
  its own generator with the simulator's documented draw protocol, so all arms of a seed start
  from the same weights and the same ``A(0)``, an arm with every rate at zero reproduces
  ``InteractingGMMWeb(n_replicates=1).run(rng=seed)`` to rounding, and an injection-only arm
  reproduces the simulator's own ``GMMInjection``. The mitigations' analogues (:class:`GMMArm`):

  * **external injection** (the same as ``GMMInjection``): ``injection`` points from a fixed
    external mixture (``injection_weights``, default uniform) are appended to ``A`` every step;
  * **prompt variation** (an *analogue*): when agent ``i`` writes its ``L`` samples at a step it
    samples from ``(1 - variation) pi_i + variation * p``, with ``p ~ Dirichlet(a)`` a fresh
    "persona" per agent and step; its own weights ``pi_i`` (what it learnt) are untouched, just as
    a persona changes an LLM's answer, not what it read;
  * **human sampling** (an *analogue*): the cumulative number of the agents' points replaced by
    draws from a fixed "human" mixture (``human_weights``, default uniform) through step ``t`` is
    exactly ``floor(human_rate * points generated)``, the replaced points chosen uniformly among
    the step's new points (the web's :class:`~llmweb_plugin.web.mitigations.HumanSampling` with a
    reviewer who rewrites every sampled post).

- :func:`run_web_experiment` runs the LLM web itself (:func:`llmweb_plugin.web.run_web`,
  the same steps and records as ``llmweb_langgraph.create_web_graph``) per arm and seed into one
  store, with run ids ``exp-<arm>-s<seed>``, and reads the monitor's per-step history.

Effect sizes compare each arm with a baseline arm over the last ``window`` steps: per seed, the
mean ``||D(t)||_F`` over the window; then the paired difference of means across seeds with a
percentile bootstrap 95% CI (seeds resampled, a fixed generator, so reports are reproducible)
and Cohen's ``d`` (difference over the pooled standard deviation across seeds). The same is
done for a secondary diversity measure: on the GMM, the mean entropy of the agents' mixture
weights (``||D||`` measures disagreement between agents, not how diverse the consensus is); on
the web, the mean cosine distance of the step's responses.

Example:
    >>> from llmweb_plugin.proxies import InteractingGMMWeb
    >>> web = InteractingGMMWeb(n_agents=3, n_steps=6)
    >>> res = run_gmm_experiment({"none": GMMArm(), "inject": GMMArm(injection=9)}, web=web,
    ...                          seeds=range(3), window=2)
    >>> res.norms["none"].shape, sorted(res.effects)
    ((3, 7), ['inject'])
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..metrics import collapse_norm

if TYPE_CHECKING:  # pragma: no cover
    from ..web import WebHook
    from ..proxies import InteractingGMMWeb
    from ..store import WebStore

__all__ = [
    "DEMO_EXTERNAL_POSTS",
    "DEMO_HUMAN_POSTS",
    "DEMO_PERSONAS",
    "DEMO_QUERY_TEMPLATES",
    "Effect",
    "ExperimentResult",
    "GMMArm",
    "default_gmm_arms",
    "default_web_arms",
    "effect_size",
    "run_gmm_experiment",
    "run_web_experiment",
    "simulate_gmm_arm",
]

logger = logging.getLogger(__name__)


# =============================================================================== effect sizes
@dataclass(frozen=True, kw_only=True)
class Effect:
    """An arm against the baseline over the last ``window`` steps (paired by seed).

    Attributes:
        metric: what was compared (``norm``, ``entropy``, ``mean_cosine_distance``).
        arm: the arm.
        baseline: the baseline arm.
        window: the steps averaged, e.g. ``(191, 200)``.
        n_seeds: seeds in both arms with a defined value.
        mean_arm: mean over seeds of the arm's window means.
        mean_baseline: the same for the baseline.
        diff: ``mean_arm - mean_baseline``.
        ci_low: lower end of the 95% bootstrap CI of ``diff``.
        ci_high: upper end.
        cohens_d: ``diff`` over the pooled s.d. across seeds (``None`` if undefined).
        relative: ``diff / mean_baseline`` (``None`` if the baseline is 0).
    """

    metric: str
    arm: str
    baseline: str
    window: tuple[int, int]
    n_seeds: int
    mean_arm: float
    mean_baseline: float
    diff: float
    ci_low: float
    ci_high: float
    cohens_d: float | None
    relative: float | None

    @property
    def verdict(self) -> str:
        """``higher``/``lower`` when the CI excludes 0, else ``no clear effect``."""
        if self.ci_low > 0:
            return "higher"
        if self.ci_high < 0:
            return "lower"
        return "no clear effect"


def effect_size(arm_values: ArrayLike, baseline_values: ArrayLike, *, metric: str = "norm",
                arm: str = "arm", baseline: str = "baseline", window: tuple[int, int] = (0, 0),
                n_boot: int = 2000, rng: np.random.Generator | int | None = 0) -> Effect:
    """Paired effect of one arm vs the baseline from per-seed window means.

    Args:
        arm_values: per-seed values of the arm, shape ``(n_seeds,)`` (NaN = undefined).
        baseline_values: the baseline's, same seeds in the same order.
        metric, arm, baseline, window: labels.
        n_boot: bootstrap resamples of the seeds.
        rng: generator of the bootstrap (fixed by default: reproducible reports).

    Example:
        >>> e = effect_size([2.0, 2.2, 2.1], [1.0, 1.1, 0.9])
        >>> round(e.diff, 3), e.ci_low > 0
        (1.1, True)
    """
    x = np.asarray(arm_values, dtype=np.float64)
    y = np.asarray(baseline_values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"arm and baseline values must be 1-D of one length; got {x.shape} "
                         f"and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n == 0:
        nan = float("nan")
        return Effect(metric=metric, arm=arm, baseline=baseline, window=window, n_seeds=0,
                      mean_arm=nan, mean_baseline=nan, diff=nan, ci_low=nan, ci_high=nan,
                      cohens_d=None, relative=None)
    diffs = x - y
    diff = float(diffs.mean())
    gen = np.random.default_rng(rng)
    boot = diffs[gen.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    if n > 1:
        pooled = math.sqrt((float(x.var(ddof=1)) + float(y.var(ddof=1))) / 2.0)
    else:
        pooled = 0.0
    if pooled > 0:
        d: float | None = diff / pooled
    else:
        d = 0.0 if diff == 0 else None
    mb = float(y.mean())
    return Effect(metric=metric, arm=arm, baseline=baseline, window=window, n_seeds=n,
                  mean_arm=float(x.mean()), mean_baseline=mb, diff=diff, ci_low=lo, ci_high=hi,
                  cohens_d=d, relative=(diff / mb) if mb != 0 else None)


def _window_means(values: np.ndarray, steps: np.ndarray, window: int) -> tuple[np.ndarray,
                                                                                tuple[int, int]]:
    """Per-seed mean over the last ``window`` columns; NaNs ignored (all-NaN -> NaN)."""
    w = max(1, min(int(window), values.shape[1]))
    block = values[:, -w:]
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        means = np.nanmean(block, axis=1) if block.size else np.full(values.shape[0], np.nan)
    return means, (int(steps[-w]), int(steps[-1]))


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    """Silence numpy's "mean of empty slice" warnings (all-NaN columns are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# =============================================================================== results
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
        with _quiet_nanmean():
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
            bm, _ = _window_means(base_vals, self.steps, self.window)
            with _quiet_nanmean():
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
                with _quiet_nanmean():
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


def _effects(values: Mapping[str, np.ndarray], steps: np.ndarray, baseline: str, window: int,
             metric: str, n_boot: int) -> dict[str, Effect]:
    base, win = _window_means(values[baseline], steps, window)
    out = {}
    for arm, v in values.items():
        if arm == baseline:
            continue
        m, _ = _window_means(v, steps, window)
        out[arm] = effect_size(m, base, metric=metric, arm=arm, baseline=baseline, window=win,
                               n_boot=n_boot)
    return out


def _check_arms(arms: Mapping[str, Any], baseline: str | None) -> tuple[list[str], str]:
    if not isinstance(arms, Mapping) or not arms:
        raise ValueError("arms must be a non-empty mapping {name: arm}")
    names = list(arms)
    for a in names:
        if not isinstance(a, str) or not a:
            raise ValueError(f"arm names must be non-empty strings; got {a!r}")
    base = names[0] if baseline is None else baseline
    if base not in arms:
        raise ValueError(f"baseline {base!r} is not an arm; arms: {names}")
    return [base] + [a for a in names if a != base], base


def _check_seeds(seeds: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in seeds)
    if not out:
        raise ValueError("seeds is empty; pass e.g. range(20)")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct; got {out}")
    if any(s < 0 for s in out):
        raise ValueError("seeds must be non-negative integers")
    return out


# =============================================================================== the GMM proxy
@dataclass(frozen=True, kw_only=True)
class GMMArm:
    """Which mitigation analogues an arm of a GMM-proxy experiment switches on.

    Attributes:
        injection: external points appended to ``A`` every step (``GMMInjection.n_points``).
        injection_weights: the external mixture's weights, shape ``(B,)``; default uniform.
        variation: prompt-variation analogue, in ``[0, 1]``: the generation mixture is
            ``(1 - variation) pi_i + variation p`` with a fresh ``p ~ Dirichlet(a)`` per agent
            and step.
        human_rate: human-sampling analogue, in ``[0, 1]``: that fraction of the agents' points
            (cumulative, exact) is replaced by draws from the human mixture.
        human_weights: the human mixture's weights, shape ``(B,)``; default uniform.
        note: a description for reports.
    """

    injection: int = 0
    injection_weights: ArrayLike | None = None
    variation: float = 0.0
    human_rate: float = 0.0
    human_weights: ArrayLike | None = None
    note: str = ""

    def describe(self) -> str:
        """A one-line description (the ``note`` if given)."""
        if self.note:
            return self.note
        parts = []
        if self.injection:
            parts.append(f"external injection: {self.injection} points/step from a fixed mixture")
        if self.variation:
            parts.append(f"prompt-variation analogue: generation mixed {self.variation:g} toward "
                         "a fresh Dirichlet persona per agent and step")
        if self.human_rate:
            parts.append(f"human-sampling analogue: {self.human_rate:g} of the agents' points "
                         "replaced by draws from a fixed human mixture")
        return "; ".join(parts) or "no mitigation"


@dataclass(frozen=True, kw_only=True)
class GMMArmRun:
    """One arm of the GMM proxy over several seeds.

    Attributes:
        norms: ``||D(t)||_F``, shape ``(n_seeds, T + 1)``.
        entropy: mean over agents of the entropy of their weights, shape ``(n_seeds, T + 1)``.
        final_weights: shape ``(n_seeds, n_agents, B)``.
        a_sizes: ``|A(t)|``, shape ``(T + 1,)``.
        n_synthetic: agents' points in ``A(t)`` (after replacements), shape ``(T + 1,)``.
        n_external: injected points in ``A(t)``, shape ``(T + 1,)``.
        n_human: human replacements in ``A(t)``, shape ``(T + 1,)``.
        synthetic_fraction: ``n_synthetic / a_sizes``, shape ``(T + 1,)``.
    """

    norms: np.ndarray
    entropy: np.ndarray
    final_weights: np.ndarray
    a_sizes: np.ndarray
    n_synthetic: np.ndarray
    n_external: np.ndarray
    n_human: np.ndarray
    synthetic_fraction: np.ndarray


def _simplex(w: ArrayLike | None, B: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(B, 1.0 / B)
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (B,):
        raise ValueError(f"{name} must have shape (B,) = ({B},); got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.isclose(arr.sum(), 1.0):
        raise ValueError(f"{name} must be non-negative and sum to 1")
    return arr


def _rate(x: float, name: str) -> Fraction:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {x!r}")
    if not math.isfinite(float(x)) or not 0 <= float(x) <= 1:
        raise ValueError(f"{name} must be in [0, 1]; got {x!r}")
    return Fraction(float(x)).limit_denominator(10**9)  # 0.3 -> 3/10, 1/3 -> 1/3


def _entropy(w: np.ndarray) -> np.ndarray:
    p = np.clip(w, 1e-300, 1.0)
    return -(w * np.log(p)).sum(axis=-1)


def simulate_gmm_arm(web: InteractingGMMWeb, arm: GMMArm, seeds: Sequence[int]) -> GMMArmRun:
    """Run one arm of the GMM proxy for every seed (seed ``s`` = ``default_rng(s)``).

    All seeds run together (their agents are updated in one vectorised pass) but each draws
    only from its own generator, in the order of the simulator's protocol (initial weights,
    ``A(0)``; then per step and agent: [persona], points, the ``k_t`` read indexes; then [the
    replaced points], [the external points]); bracketed draws happen only when their rate is
    non-zero, so a zero-rate arm is exactly the plain simulation.

    Args:
        web: the simulator's settings (``n_replicates`` is ignored: one replicate per seed;
            ``initial_points``/``initial_weights`` are not supported here).
        arm: the mitigations.
        seeds: the seeds.

    Raises:
        ValueError: bad settings or rates.
    """
    from ..proxies._numpy_engine import _update_agents
    from ..proxies._shared import (
        _draw_gmm_points,
        _floor_k,
        _initial_state,
        _normalised_densities,
    )

    if web.initial_points is not None or web.initial_weights is not None:
        raise ValueError("simulate_gmm_arm draws A(0) and the weights itself; leave "
                         "initial_points and initial_weights as None")
    if web.injection is not None:
        raise ValueError("put the injection in the arm (GMMArm(injection=...)), not in web=")
    # The simulator's own parameter checks and conversions; one replicate per seed.
    prep = replace(web._validate(), R=1)
    seeds = _check_seeds(seeds)
    n, T, L, B, d = prep.n, prep.T, prep.L, prep.B, prep.d
    S, N = len(seeds), n * len(seeds)
    m_ext = int(arm.injection)
    if isinstance(arm.injection, bool) or m_ext != arm.injection or m_ext < 0:
        raise ValueError(f"injection must be a non-negative integer; got {arm.injection!r}")
    ext_w = _simplex(arm.injection_weights, B, "injection_weights")
    hum_w = _simplex(arm.human_weights, B, "human_weights")
    rho = float(_rate(arm.variation, "variation"))
    h = _rate(arm.human_rate, "human_rate")
    gens = [np.random.default_rng(s) for s in seeds]

    m0 = n * L
    steps = np.arange(T + 1)
    syn_total = steps * n * L
    h_cum = np.array([math.floor(h * int(x)) for x in syn_total], dtype=np.int64)
    sizes = m0 + syn_total + steps * m_ext
    cap = int(sizes[-1])
    Q = np.empty((B, S * cap))

    def store(s: int, start: int, pts: np.ndarray) -> None:
        Q[:, s * cap + start: s * cap + start + len(pts)] = _normalised_densities(pts, prep)

    # Initial state, per seed: weights then A(0) (L points per agent), as the simulator draws it.
    w0 = np.empty((S, n, B))
    for s, g in enumerate(gens):
        w, a0 = _initial_state(prep, g)
        w0[s] = w[0]
        store(s, 0, a0[0])

    pi = np.ascontiguousarray(w0.reshape(N, B).T)  # (B, N), column = seed-major agent
    off = (np.arange(N) // n) * cap
    norms = np.empty((S, T + 1))
    ent = np.empty((S, T + 1))
    size = m0
    alpha0 = np.full(B, prep.alpha0)
    for t in range(T + 1):
        cur = pi.T.reshape(S, n, B)
        norms[:, t] = collapse_norm(cur) if n > 1 else 0.0
        ent[:, t] = _entropy(cur).mean(axis=1)
        if t == T:
            break
        k = _floor_k(prep.beta, size)
        new_pts = np.empty((N, L, d))
        idx = np.empty((N, k), dtype=np.int64)
        for row in range(N):
            g = gens[row // n]
            wg = pi[:, row]
            if rho > 0:
                persona = g.dirichlet(alpha0)
                wg = (1.0 - rho) * wg + rho * persona
            new_pts[row] = _draw_gmm_points(g, wg, L, prep)
            idx[row] = g.choice(size, size=k, replace=False)
        # the simulator's sequential online update over the k read points, all agents at once
        _update_agents(pi, Q, idx, off, k, prep.eps)
        # A += the agents' points (some replaced by human draws), then the external points
        n_rep = int(h_cum[t + 1] - h_cum[t])
        for s, g in enumerate(gens):
            pts = new_pts[s * n: (s + 1) * n].reshape(n * L, d)
            if n_rep:
                which = g.choice(n * L, size=n_rep, replace=False)
                pts = pts.copy()
                pts[which] = _draw_gmm_points(g, hum_w, n_rep, prep)
            store(s, size, pts)
        size += n * L
        if m_ext:
            for s, g in enumerate(gens):
                store(s, size, _draw_gmm_points(g, ext_w, m_ext, prep))
            size += m_ext
    n_syn = syn_total - h_cum
    final = np.array(pi.T.reshape(S, n, B))
    return GMMArmRun(norms=norms, entropy=ent, final_weights=final, a_sizes=sizes,
                     n_synthetic=n_syn, n_external=steps * m_ext, n_human=h_cum,
                     synthetic_fraction=n_syn / sizes)


def run_gmm_experiment(
    arms: Mapping[str, GMMArm | Mapping[str, Any]],
    *,
    web: InteractingGMMWeb | None = None,
    seeds: Iterable[int] = range(20),
    baseline: str | None = None,
    window: int | None = None,
    n_boot: int = 2000,
) -> ExperimentResult:
    """The GMM proxy with and without each mitigation analogue, over seeds.

    Args:
        arms: ``{name: GMMArm or its fields as a dict}``; the first is the baseline unless
            ``baseline`` says otherwise.
        web: the simulator settings; default the paper's Fig. 4 setting
            (``InteractingGMMWeb()``: 3 agents, B = 2 components at +-5, beta 0.5, L 3, T 200).
        seeds: one run per seed and arm (paired: a seed starts every arm from the same state).
        baseline: the arm the others are compared with.
        window: the last steps averaged for the effects (default ``max(1, T // 10)``).
        n_boot: bootstrap resamples.

    Returns:
        An :class:`ExperimentResult` (``steps = 0..T``; secondary metric ``entropy``).
    """
    from ..proxies import InteractingGMMWeb

    order, base = _check_arms(arms, baseline)
    web = InteractingGMMWeb() if web is None else web
    seed_t = _check_seeds(seeds)
    parsed: dict[str, GMMArm] = {}
    for a in order:
        spec = arms[a]
        parsed[a] = spec if isinstance(spec, GMMArm) else GMMArm(**dict(spec))
    if window is not None and int(window) < 1:  # before the runs, not after
        raise ValueError(f"window must be >= 1; got {window}")
    runs = {a: simulate_gmm_arm(web, parsed[a], seed_t) for a in order}
    T = int(web.n_steps)
    steps = np.arange(T + 1)
    w = max(1, T // 10) if window is None else int(window)
    norms = {a: runs[a].norms for a in order}
    ent = {a: runs[a].entropy for a in order}
    sf = {a: np.broadcast_to(runs[a].synthetic_fraction, (len(seed_t), T + 1)).copy()
          for a in order}
    settings = {
        "web": {f: _jsonable(getattr(web, f)) for f in (
            "n_agents", "means", "cov", "dirichlet_alpha", "beta", "samples_per_step",
            "n_steps", "eps")},
        "arms": {a: {k: _jsonable(v) for k, v in asdict(parsed[a]).items()} for a in order},
        "arm_notes": {a: parsed[a].describe() for a in order},
        "analogues": "prompt variation and human sampling on the GMM are analogues (see "
                     "llmweb_plugin.experiment); injection is GMMInjection",
        "n_boot": n_boot,
    }
    return ExperimentResult(
        proxy="gmm", arms=tuple(order), baseline=base, seeds=seed_t, steps=steps, norms=norms,
        series={"entropy": ent, "synthetic_fraction": sf}, secondary="entropy", window=w,
        effects=_effects(norms, steps, base, w, "norm", n_boot),
        secondary_effects=_effects(ent, steps, base, w, "entropy", n_boot),
        settings=settings,
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


# =============================================================================== the LLM web
HooksFactory = Callable[[int], Sequence["WebHook"]]


def run_web_experiment(
    agents_factory: Callable[[int], Mapping[str, Any]],
    arms: Mapping[str, Sequence[WebHook] | HooksFactory],
    *,
    store: WebStore,
    seeds: Iterable[int] = range(3),
    n_steps: int = 5,
    responses_per_step: int = 4,
    baseline: str | None = None,
    window: int | None = None,
    overwrite: bool = False,
    n_boot: int = 2000,
    arm_notes: Mapping[str, str] | None = None,
    on_run: Callable[[str, int, Any], Any] | None = None,
    **web_kwargs: Any,
) -> ExperimentResult:
    """The LLM web with and without each mitigation, over seeds, into one store.

    Each (arm, seed) runs :func:`llmweb_plugin.web.run_web` (the steps and records of
    ``llmweb_langgraph.create_web_graph``, without checkpointing) with ``rng=seed``, run id
    ``exp-<arm>-s<seed>``, a fresh monitor, and the arm's hooks as ``mitigations``.

    Args:
        agents_factory: ``seed -> {name: agent}`` (fresh agents per run, e.g. seeded models).
        arms: ``{name: hooks}``, hooks being a sequence of
            :class:`~llmweb_plugin.web.WebHook` or a factory ``seed -> hooks`` (use a factory
            for stateful hooks such as a review queue per run). The first arm is the baseline
            unless ``baseline`` says otherwise.
        store: the shared :class:`~llmweb_plugin.store.WebStore` (all runs go there).
        seeds: the seeds.
        n_steps: ``T``.
        responses_per_step: ``L``.
        baseline: the arm the others are compared with.
        window: the last steps averaged for the effects (default ``max(1, T // 3)``).
        overwrite: delete an existing run with the same id first (else a ``ValueError``).
        n_boot: bootstrap resamples.
        arm_notes: descriptions of the arms for the report.
        on_run: called with ``(arm, seed, WebResult)`` after each run.
        **web_kwargs: passed to ``run_web`` (``query``, ``seeds`` as ``web_seeds``, ``beta``,
            ``retrieval``, ``topology``, ``prompt_template``, ``system_prompts``,
            ``temperatures``).

    Returns:
        An :class:`ExperimentResult` (``steps = 1..T``, secondary ``mean_cosine_distance``,
        series ``synthetic_fraction``, ``injected``, ``sampled``) with ``run_ids``.
    """
    from ..web import run_web
    from ..monitor import CollapseMonitor

    order, base = _check_arms(arms, baseline)
    seed_t = _check_seeds(seeds)
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    if "web_seeds" in web_kwargs:
        web_kwargs["seeds"] = web_kwargs.pop("web_seeds")
    bad = {"mitigations", "monitor", "run_id", "rng", "store", "agents"} & set(web_kwargs)
    if bad:
        raise ValueError(f"run_web_experiment sets {sorted(bad)} itself")
    T = int(n_steps)
    w = max(1, T // 3) if window is None else int(window)
    if w < 1:  # before the runs, so a bad window writes nothing to the store
        raise ValueError(f"window must be >= 1; got {window}")
    steps = np.arange(1, T + 1)
    S = len(seed_t)
    metric_names = ("mean_cosine_distance", "synthetic_fraction", "injected", "sampled",
                    "web_size")
    norms = {a: np.full((S, T), np.nan) for a in order}
    series = {m: {a: np.full((S, T), np.nan) for a in order} for m in metric_names}
    run_ids: dict[str, list[str]] = {a: [] for a in order}
    for a in order:
        for si, seed in enumerate(seed_t):
            hooks_spec = arms[a]
            hooks = list(hooks_spec(seed) if callable(hooks_spec) else hooks_spec)
            rid = f"exp-{a}-s{seed}"
            if store.count(rid):
                if not overwrite:
                    raise ValueError(f"the store already holds run {rid!r}; pass overwrite=True "
                                     "or use another store")
                store.delete_run(rid)
            mon = CollapseMonitor(store, run_id=rid)
            try:
                res = run_web(agents_factory(seed), store=store, mitigations=hooks, monitor=mon,
                              n_steps=T, responses_per_step=responses_per_step, rng=seed,
                              **web_kwargs)
            finally:
                mon.close()
            run_ids[a].append(rid)
            for m in res.history:
                j = int(m.step) - 1
                if not 0 <= j < T:
                    continue
                norms[a][si, j] = m.norm
                series["mean_cosine_distance"][a][si, j] = m.mean_cosine_distance
                ex = m.extras or {}
                for key in ("synthetic_fraction", "web_size"):
                    v = ex.get(key)
                    series[key][a][si, j] = np.nan if v is None else float(v)
                series["injected"][a][si, j] = float(ex.get("injected", 0) or 0)
                series["sampled"][a][si, j] = float(ex.get("sampled", 0) or 0)
            if on_run is not None:
                on_run(a, seed, res)
            logger.info("llmweb experiment: arm %s seed %d done (final norm %.4g)", a, seed,
                        norms[a][si, -1])
    settings = {
        "n_steps": T, "responses_per_step": int(responses_per_step),
        "web": {k: _jsonable(v) for k, v in web_kwargs.items()},
        "arm_notes": {a: (arm_notes or {}).get(a, _describe_hooks(arms[a], seed_t[0]))
                      for a in order},
        "n_boot": n_boot,
    }
    return ExperimentResult(
        proxy="web", arms=tuple(order), baseline=base, seeds=seed_t, steps=steps, norms=norms,
        series=series, secondary="mean_cosine_distance", window=w,
        effects=_effects(norms, steps, base, w, "norm", n_boot),
        secondary_effects=_effects(series["mean_cosine_distance"], steps, base, w,
                                   "mean_cosine_distance", n_boot),
        settings=settings, run_ids={a: tuple(v) for a, v in run_ids.items()},
    )


def _describe_hooks(spec: Any, seed: int) -> str:
    if callable(spec) and not isinstance(spec, Sequence):
        return "hooks from a factory"
    hooks = list(spec)
    return ", ".join(repr(h) for h in hooks) if hooks else "no mitigation"


# =============================================================================== default arms
#: Hand-written posts (for llmweb) standing in for a stream of fresh human data about crypto
#: currencies, used by the demo injection arm. Bring your own with ``--external FILE``.
DEMO_EXTERNAL_POSTS: tuple[str, ...] = (
    "My local coffee shop stopped accepting Bitcoin because the card terminal was simpler.",
    "I moved my savings out of an exchange after reading its terms of service twice.",
    "Our credit union asked members whether they want crypto custody; most said no.",
    "A friend in Lagos uses stablecoins to pay suppliers because dollars are hard to get.",
    "The tax form for my few crypto trades took longer than the rest of my return.",
    "Miners near the dam sell power back to the grid in summer when prices spike.",
    "I lost a seed phrase in a house move and the coins are simply gone.",
    "The museum gift shop sells Bitcoin-themed socks now, which feels like a top signal.",
    "Our city council debated heating a public pool with waste heat from a mining rig.",
    "A retired teacher in my street buys ten dollars of Bitcoin every Friday, ignoring charts.",
    "The hardware wallet firmware update bricked nothing, but the instructions were awful.",
    "Freelancers on my team asked to be paid in USDC; accounting said absolutely not.",
    "Chargebacks are impossible with crypto, which my online store both loves and fears.",
    "An auditor told me half of the small tokens she looked at had no working product.",
    "The farmers' market tried a QR code for Lightning tips and got three payments all day.",
    "Ransomware gangs still demand Bitcoin, and insurers have started to refuse those claims.",
    "My grandmother asked whether Bitcoin is a company; honestly it was a fair question.",
    "I watched a developer conference where half the talks were about stopping scams.",
    "Energy researchers say flexible mining load can help balance wind farms at night.",
    "A landlord in my town accepts rent in Ether but prices it in euros every month.",
    "Students at the local college run a node in the library basement for a class project.",
    "Exchange outages during big price moves are why I keep a little cash on two platforms.",
    "The bank app added a crypto tab, and support cannot answer a single question about it.",
    "A charity I volunteer for got a large crypto donation and sold it within the hour.",
    "Gas fees on my last NFT transfer were more than the NFT was worth.",
    "Court filings from the exchange collapse read like a thriller about missing spreadsheets.",
    "The village in El Salvador that adopted Bitcoin early still mostly uses dollars day to day.",
    "I tried to buy a pizza with crypto and the restaurant converted it to fiat instantly.",
    "Cold storage feels safe until you realise your heirs have no idea how to use it.",
    "A podcast guest argued that Bitcoin's price is mostly driven by global liquidity cycles.",
    "Our payroll provider now offers crypto salaries, but nobody at the company opted in.",
    "The mining pool I joined pays out daily, which makes the small rewards feel real.",
    "Airport lounges started advertising crypto cards; the cashback is paid in tokens.",
    "An elderly neighbour was scammed by a fake exchange that looked exactly like a real one.",
    "Developers keep shipping layer-two networks faster than users can learn their names.",
    "A historian compared the crypto boom with the railway mania of the 1840s.",
)

#: Hand-written replacements a demo reviewer writes for the posts it samples.
DEMO_HUMAN_POSTS: tuple[str, ...] = (
    "Nobody knows where Bitcoin goes next; I keep it small and boring.",
    "I use crypto for one thing: sending money home cheaply. The rest is noise to me.",
    "Bitcoin's future depends more on regulation than on technology at this point.",
    "I sold my coins to pay for a car and I do not regret it.",
    "The price charts are exciting, but my bank still does everything I need.",
    "If Bitcoin survives another decade it will be because people stopped hyping it.",
    "My brother mines in his garage; the electricity bill is the real story.",
    "Crypto taught me more about fraud prevention than any course I took.",
    "I think central bank digital currencies will crowd out most coins.",
    "Bitcoin looks like digital gold to me: useless for coffee, fine for savings.",
    "Honestly I lost interest after the last crash; too stressful.",
    "Fees and volatility are why my shop stopped taking crypto payments.",
    "Young people at my work treat Bitcoin like a lottery ticket.",
    "Self-custody is great until you forget your password.",
    "The technology is clever, but the culture around it puts people off.",
    "I expect a few big coins to survive and thousands to vanish.",
    "Stablecoins are the only part of crypto my family actually uses.",
    "Regulators arrived late, but their rules may finally make this safer.",
    "I hold some Bitcoin as insurance against my own country's currency.",
    "Every cycle the same promises come back with new names.",
    "Mining could use stranded energy, but it can also keep old coal plants running.",
    "I would rather own index funds; crypto is a side bet at most.",
    "My pension fund bought an ETF, so I own Bitcoin without ever touching it.",
    "The best thing about Bitcoin is that nobody can stop you from using it.",
)

#: Personas for the demo prompt-variation arm.
DEMO_PERSONAS: tuple[str, ...] = (
    "You are a cautious retail investor who has lost money before.",
    "You are an energy engineer who thinks about power grids.",
    "You are a small-business owner who cares about fees and speed.",
    "You are an economic historian who compares today with past bubbles.",
    "You are a software developer who builds payment apps.",
)

#: Query templates (paraphrases) for the demo prompt-variation arm.
DEMO_QUERY_TEMPLATES: tuple[str, ...] = (
    "{query}",
    "In your own words and from your own experience: {query}",
    "{query} Say something the posts above do not already say.",
)


def default_gmm_arms(*, injection: int = 9, variation: float = 0.5,
                     human_rate: float = 0.5) -> dict[str, GMMArm]:
    """The demo arms of the GMM proxy: none, injection, variation, human (analogues).

    The defaults are for the Fig. 4 setting (3 agents x L = 3 points per step): 9 external
    points per step and a human rate of 0.5 both halve the synthetic share of new data.
    """
    return {
        "none": GMMArm(),
        "injection": GMMArm(injection=injection),
        "variation": GMMArm(variation=variation),
        "human": GMMArm(human_rate=human_rate),
    }


def default_web_arms(
    n_agents: int,
    *,
    review_dir: str | os.PathLike[str],
    external: Sequence[str] | str | os.PathLike[str] | None = None,
    human_posts: Sequence[str] | None = None,
    human_rate: float = 0.5,
    personas: Sequence[str] = DEMO_PERSONAS,
    query_templates: Sequence[str] = DEMO_QUERY_TEMPLATES,
    temperatures: Sequence[float] = (0.6, 0.9, 1.2),
) -> tuple[dict[str, HooksFactory], dict[str, str]]:
    """The demo arms of the web proxy and their descriptions.

    - ``none``: no hook;
    - ``injection``: :class:`~llmweb_plugin.web.mitigations.ExternalInjection` of ``n_agents``
      documents per step (half the new web documents), from ``external`` (default
      :data:`DEMO_EXTERNAL_POSTS`, sequential);
    - ``variation``: :class:`~llmweb_plugin.web.mitigations.PromptVariation` rotating
      ``personas``, ``query_templates`` and ``temperatures``;
    - ``human``: :class:`~llmweb_plugin.web.mitigations.HumanSampling` at ``human_rate`` into a
      JSONL queue per run under ``review_dir``, with a reviewer that replaces every sampled post
      by the next of ``human_posts`` (default :data:`DEMO_HUMAN_POSTS`).

    Returns:
        ``(arms, notes)``: ``{name: seed -> hooks}`` and ``{name: description}``.
    """
    from ..web.mitigations import ExternalInjection, HumanSampling, JsonlSink, PromptVariation

    ext = DEMO_EXTERNAL_POSTS if external is None else external
    pool = tuple(DEMO_HUMAN_POSTS if human_posts is None else human_posts)
    if not pool:
        raise ValueError("human_posts is empty")
    rdir = Path(review_dir)

    def injection(seed: int) -> list[WebHook]:
        return [ExternalInjection(ext, per_step=n_agents)]

    def variation(seed: int) -> list[WebHook]:
        return [PromptVariation(personas=personas, query_templates=query_templates,
                                temperature_schedule=temperatures)]

    def human(seed: int) -> list[WebHook]:
        path = rdir / f"review-s{seed}.jsonl"
        if path.exists():
            path.unlink()
        return [HumanSampling(human_rate, sink=JsonlSink(path),
                              reviewer=lambda item: pool[item.seq % len(pool)])]

    arms: dict[str, HooksFactory] = {"none": lambda seed: [], "injection": injection,
                                     "variation": variation, "human": human}
    notes = {
        "none": "no mitigation",
        "injection": f"ExternalInjection: {n_agents} fresh documents per step",
        "variation": f"PromptVariation: {len(personas)} personas, {len(query_templates)} query "
                     f"templates, temperatures {list(temperatures)} (rotated)",
        "human": f"HumanSampling: rate {human_rate:g}, every sampled post replaced by a "
                 "hand-written one (kind human)",
    }
    return arms, notes
