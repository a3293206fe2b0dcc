"""The data of a diversity report: plain classes and the numbers computed from them.

Every other module of :mod:`llmweb_plugin.report` imports this one, and it imports none of them
(numpy only), so data flows one way: :mod:`.build` reads a run from the store into a
:class:`RunReport`; :class:`~llmweb_plugin.report.DiversityReport` holds runs and hands a
:class:`ReportData` to :mod:`.plots`, :mod:`.render_html` and :mod:`.render_markdown`, which read
it and import nothing back.

Here: :data:`SERIES` (the per-step series compared and plotted), :func:`jsonable`, the one
first-vs-last ratio (:func:`first_last_ratio`, :class:`FirstLastRatio`), :class:`RunReport`,
:func:`band` (mean, s.d., range of a series over runs) and :class:`ReportData`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["RATIO_RULE", "SERIES", "FirstLastRatio", "ReportData", "RunReport", "band",
           "first_last_ratio", "jsonable"]

#: per-step series compared across runs (bands) and plotted
SERIES: tuple[str, ...] = (
    "norm", "normalized_norm", "within_spread", "between_spread", "total_spread",
    "mean_cosine_distance", "vendi_score", "distinct_1", "distinct_2",
)
_NAN = float("nan")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into plain Python and NaN/inf into ``None``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    return str(value)


@dataclass(frozen=True, kw_only=True)
class FirstLastRatio:
    """How much ``||D(t)||_F`` changed over a run: the mean of the last steps over the first.

    Attributes:
        n_steps: steps with a finite norm (the others are left out).
        window: ``w``, the number of steps averaged at each end.
        first_mean: mean norm of the first ``w`` of those steps (``None`` below 4 steps).
        last_mean: mean norm of the last ``w`` of those steps (``None`` below 4 steps).
        ratio: ``last_mean / first_mean``; ``None`` below 4 steps or for a zero start.
    """

    n_steps: int
    window: int
    first_mean: float | None
    last_mean: float | None
    ratio: float | None

    def describe(self) -> str:
        """One line for a terminal or a Markdown file (no table pipes)."""
        if self.n_steps == 0:
            return "no step has a finite collapse norm"
        if self.first_mean is None or self.last_mean is None:
            return (f"only {self.n_steps} step(s) with a finite collapse norm: a first-vs-last "
                    "ratio needs at least 4")
        line = (f"mean norm, first {self.window} step(s): {self.first_mean:.4f}; "
                f"last {self.window}: {self.last_mean:.4f}")
        if self.ratio is not None:
            line += f"; last / first = {self.ratio:.4g}"
        return line


def _window(m: int) -> int:
    """The one window rule, ``w = max(2, m // 4)`` of ``m >= 4`` finite values (0 below 4).

    The same rule as :func:`llmweb_plugin.trend.window_means` (the verdict's early and late
    windows); written out here because this module imports nothing of the project, and held to
    it by ``tests/test_report_verdict.py``.
    """
    return max(2, m // 4) if m >= 4 else 0


#: the window rule of :func:`first_last_ratio`, in words (printed beside the ratio)
RATIO_RULE = ("mean of the last w steps over the mean of the first w, w = max(2, m // 4) of the "
              "m steps with a finite norm (none below 4 steps); the collapse verdict's windows")


def first_last_ratio(norms: Sequence[float | None]) -> FirstLastRatio:
    """The one definition of the first-vs-last collapse ratio (terminal, files and reports).

    Steps whose norm is ``None``, NaN or infinite are left out. Of the ``m`` steps left,
    ``w = max(2, m // 4)``: the ratio is the mean of the last ``w`` norms over the mean of the first
    ``w`` (8 steps compare the mean of the last two with the mean of the first two; 40 steps the
    last ten with the first ten). This is the window rule of the collapse verdict
    (:func:`llmweb_plugin.trend.window_means`), so the ratio is ``1 + relative_change`` of the
    verdict's ``||D||`` trend. With fewer than 4 steps there are no two separate windows: the
    means and the ratio are ``None`` (``window`` 0); the ratio is also ``None`` for a zero start.
    Below 1 means the agents' answers moved together.

    Args:
        norms: the per-step ``||D(t)||_F`` in step order.

    Example:
        >>> first_last_ratio([2.0, 2.0, 1.5, 1.0, 1.0, 1.0, 0.5, 0.5]).ratio
        0.25
    """
    vals = [float(x) for x in norms if x is not None and math.isfinite(float(x))]
    m = len(vals)
    w = _window(m)
    if w == 0:
        return FirstLastRatio(n_steps=m, window=0, first_mean=None, last_mean=None, ratio=None)
    first = math.fsum(vals[:w]) / w
    last = math.fsum(vals[-w:]) / w
    ratio = last / first if first > 0 else None
    return FirstLastRatio(n_steps=m, window=w, first_mean=first, last_mean=last, ratio=ratio)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """Everything reported about one run (plain data; see ``DiversityReport.to_json``).

    Attributes:
        run_id: the run.
        source: ``"store"`` or ``"monitor"``.
        agents: agents with metric records, sorted.
        metric_kinds: the record kinds the statistics are computed over.
        counts: records per kind in the run.
        per_step: one dict per step with metric records (keys: step, n_agents, n_records, norm,
            normalized_norm, total/within/between_spread, mean_cosine_distance, vendi_score,
            distinct_1, distinct_2, per_agent, records_by_kind, web_size, synthetic_fraction,
            context_size, mitigation, annotations).
        mds: classical MDS of the first and last step's metric records, or ``None``.
        examples: ``{"first": [...], "last": [...]}`` example records.
        events: monitor events (mitigations, alarms).
        alarms: monitor alarm events.
        usage: token usage per agent.
        mitigations: counts of mitigation records and tags.
        settings: ``{"given": ..., "inferred": ...}``.
        warnings: what could not be computed and why.
        verdict: the run's collapse verdict as plain data
            (:meth:`llmweb_plugin.trend.CollapseVerdict.to_dict`: ``verdict``, ``sentence``,
            ``convergence``, ``diversity``, per-metric ``trends``), or ``None`` if not computed.
        evidence: what the agents' posts share at the ``"first"`` and ``"last"`` step
            (:meth:`llmweb_plugin.evidence.TextEvidence.to_dict` plus ``step``), or ``None``.
    """

    run_id: str
    source: str
    agents: tuple[str, ...]
    metric_kinds: tuple[str, ...]
    counts: dict[str, int]
    per_step: tuple[dict[str, Any], ...]
    mds: dict[str, Any] | None
    examples: dict[str, list[dict[str, Any]]]
    events: tuple[dict[str, Any], ...] = ()
    alarms: tuple[dict[str, Any], ...] = ()
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    mitigations: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    verdict: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None

    @property
    def steps(self) -> list[int]:
        return [int(s["step"]) for s in self.per_step]

    def series(self, name: str) -> np.ndarray:
        """A per-step series as a float array (NaN where undefined)."""
        return np.array([_NAN if s.get(name) is None else float(s[name]) for s in self.per_step])

    @property
    def norm_ratio(self) -> FirstLastRatio:
        """The run's first-vs-last collapse ratio (:func:`first_last_ratio` of its norms)."""
        return first_last_ratio([s.get("norm") for s in self.per_step])

    def as_dict(self) -> dict[str, Any]:
        return jsonable({
            "run_id": self.run_id, "source": self.source, "agents": list(self.agents),
            "metric_kinds": list(self.metric_kinds), "steps": self.steps, "counts": self.counts,
            "norm_ratio": asdict(self.norm_ratio),
            "settings": self.settings, "warnings": list(self.warnings),
            "per_step": list(self.per_step), "mds": self.mds, "examples": self.examples,
            "events": list(self.events), "alarms": list(self.alarms), "usage": self.usage,
            "mitigations": self.mitigations, "verdict": self.verdict,
            "evidence": self.evidence,
        })


def band(runs: Sequence[RunReport], name: str) -> dict[str, list[Any]]:
    """Per step, over ``runs``: mean, s.d. (``ddof=1``), min, max and count of series ``name``.

    Steps are the union of the runs' steps; a run without a finite value at a step is left out
    there (``n`` counts the runs used; s.d. is NaN below two, the others NaN at zero).
    """
    steps = sorted({s for r in runs for s in r.steps})
    M = np.full((len(runs), len(steps)), np.nan)
    pos = {s: j for j, s in enumerate(steps)}
    for i, r in enumerate(runs):
        for s, v in zip(r.steps, r.series(name)):
            M[i, pos[s]] = v
    cols = [M[:, j][np.isfinite(M[:, j])] for j in range(len(steps))]
    mean = [float(c.mean()) if c.size else _NAN for c in cols]
    sd = [float(c.std(ddof=1)) if c.size >= 2 else _NAN for c in cols]
    lo = [float(c.min()) if c.size else _NAN for c in cols]
    hi = [float(c.max()) if c.size else _NAN for c in cols]
    n = [c.size for c in cols]
    return {"steps": steps, "mean": mean, "sd": sd, "min": lo, "max": hi,
            "n": [int(k) for k in n]}


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """What the plots and renderers read of a report (plain data; they import nothing else).

    :meth:`DiversityReport <llmweb_plugin.report.DiversityReport>` builds one from its state; a
    caller can build one from runs directly.

    Attributes:
        runs: one :class:`RunReport` per run, in report order.
        groups: group name -> run ids (replicates of one condition).
        groups_given: whether the groups were given (else they are the default ``"all runs"``).
        title: the report's title.
        generated_at: ISO-8601 UTC time the report was computed.
        llmweb_version: the llmweb version that computed it.
        verdict: the report's headline verdict as plain data (one run's, or pooled over each
            group of replicates; see :class:`~llmweb_plugin.report.DiversityReport`), shown
            first; ``None`` when not computed.
    """

    runs: tuple[RunReport, ...]
    groups: Mapping[str, Sequence[str]]
    groups_given: bool
    title: str
    generated_at: str
    llmweb_version: str
    verdict: Mapping[str, Any] | None = None

    def run(self, run_id: str) -> RunReport:
        """The run ``run_id``.

        Raises:
            LookupError: it is not in this report.
        """
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise LookupError(f"run {run_id!r} is not in this report")

    @property
    def warnings(self) -> list[str]:
        """Every run's warnings, in run order."""
        return [w for r in self.runs for w in r.warnings]

    def comparison(self) -> dict[str, Any]:
        """Per group: mean, s.d., min and max over its runs at each step, for each series."""
        out: dict[str, Any] = {}
        for g, members in self.groups.items():
            runs = [self.run(rid) for rid in members]
            out[g] = {"runs": list(members),
                      "series": {name: band(runs, name) for name in SERIES}}
        return out
