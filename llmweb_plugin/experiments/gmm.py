"""The GMM proxy with and without each mitigation analogue, over seeds.

:func:`run_gmm_experiment` runs the interacting Gaussian-mixture proxy
(:class:`~llmweb_plugin.proxies.InteractingGMMWeb`) once per seed and arm. Each seed's run draws
from its own generator with the simulator's documented draw protocol, so all arms of a seed start
from the same weights and the same ``A(0)``, an arm with every rate at zero reproduces
``InteractingGMMWeb(n_replicates=1).run(rng=seed)`` to rounding, and an injection-only arm
reproduces the simulator's own ``GMMInjection``. The loop is built from the simulator's public
step pieces (:mod:`llmweb_plugin.proxies.steps`). The mitigations' analogues (:class:`GMMArm`):

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

The secondary diversity measure is the mean entropy of the agents' mixture weights (``||D||``
measures disagreement between agents, not how diverse the consensus is).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..metrics import collapse_norm
from ..proxies import InteractingGMMWeb
from ..proxies.steps import (
    draw_points,
    initial_state,
    point_densities,
    prepare,
    read_count,
    update_agents,
)
from .checks import check_arms, check_seeds, plain
from .effects import effects_vs_baseline
from .result import ExperimentResult

__all__ = ["GMMArm", "GMMArmRun", "run_gmm_experiment", "simulate_gmm_arm"]


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
    if web.initial_points is not None or web.initial_weights is not None:
        raise ValueError("simulate_gmm_arm draws A(0) and the weights itself; leave "
                         "initial_points and initial_weights as None")
    if web.injection is not None:
        raise ValueError("put the injection in the arm (GMMArm(injection=...)), not in web=")
    # The simulator's own parameter checks and conversions; one replicate per seed.
    prep = prepare(web, n_replicates=1)
    seeds = check_seeds(seeds)
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
        Q[:, s * cap + start: s * cap + start + len(pts)] = point_densities(pts, prep)

    # Initial state, per seed: weights then A(0) (L points per agent), as the simulator draws it.
    w0 = np.empty((S, n, B))
    for s, g in enumerate(gens):
        w, a0 = initial_state(prep, g)
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
        k = read_count(prep.beta, size)
        new_pts = np.empty((N, L, d))
        idx = np.empty((N, k), dtype=np.int64)
        for row in range(N):
            g = gens[row // n]
            wg = pi[:, row]
            if rho > 0:
                persona = g.dirichlet(alpha0)
                wg = (1.0 - rho) * wg + rho * persona
            new_pts[row] = draw_points(g, wg, L, prep)
            idx[row] = g.choice(size, size=k, replace=False)
        # the simulator's sequential online update over the k read points, all agents at once
        update_agents(pi, Q, idx, off, k, prep.eps)
        # A += the agents' points (some replaced by human draws), then the external points
        n_rep = int(h_cum[t + 1] - h_cum[t])
        for s, g in enumerate(gens):
            pts = new_pts[s * n: (s + 1) * n].reshape(n * L, d)
            if n_rep:
                which = g.choice(n * L, size=n_rep, replace=False)
                pts = pts.copy()
                pts[which] = draw_points(g, hum_w, n_rep, prep)
            store(s, size, pts)
        size += n * L
        if m_ext:
            for s, g in enumerate(gens):
                store(s, size, draw_points(g, ext_w, m_ext, prep))
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
    order, base = check_arms(arms, baseline)
    web = InteractingGMMWeb() if web is None else web
    seed_t = check_seeds(seeds)
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
        "web": {f: plain(getattr(web, f)) for f in (
            "n_agents", "means", "cov", "dirichlet_alpha", "beta", "samples_per_step",
            "n_steps", "eps")},
        "arms": {a: {k: plain(v) for k, v in asdict(parsed[a]).items()} for a in order},
        "arm_notes": {a: parsed[a].describe() for a in order},
        "analogues": "prompt variation and human sampling on the GMM are analogues (see "
                     "llmweb_plugin.experiments.gmm); injection is GMMInjection",
        "n_boot": n_boot,
    }
    return ExperimentResult(
        proxy="gmm", arms=tuple(order), baseline=base, seeds=seed_t, steps=steps, norms=norms,
        series={"entropy": ent, "synthetic_fraction": sf}, secondary="entropy", window=w,
        effects=effects_vs_baseline(norms, steps, base, w, "norm", n_boot),
        secondary_effects=effects_vs_baseline(ent, steps, base, w, "entropy", n_boot),
        settings=settings,
    )

