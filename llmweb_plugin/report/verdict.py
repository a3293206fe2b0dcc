"""The report's verdict: is the web collapsing, and what did the agents' posts converge onto?

Computed from a run's per-step rows and its stored records, kept as plain data (dicts) in
:class:`~.data.RunReport` and :class:`~.data.ReportData`, so the renderers only read it:

- :func:`run_verdict`: one run's :func:`~llmweb_plugin.trend.collapse_verdict` over its
  per-step series: between-agent convergence (``norm``, ``between_spread``) and within-web
  diversity (``vendi_score``, ``mean_cosine_distance``, ``distinct_1``, ``distinct_2``), each with
  its trend and interval;
- :func:`run_evidence`: at the first and the last step, the word 3-grams shared by most agents'
  posts and the share of posts that are near-duplicates of another agent's post (cosine of the
  stored embeddings, :func:`~llmweb_plugin.evidence.near_duplicate_share`);
- :func:`report_verdict`: the headline of a whole report: one run's verdict, or, with several
  runs, a pooled verdict per group of replicates (:func:`~llmweb_plugin.trend.pooled_trend` per
  metric, with its band), the runs aligned on their steps.

A verdict that cannot be computed never stops the report: it becomes ``"unavailable"`` with the
reason, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..evidence import text_evidence
from ..store import Record
from ..trend import collapse_verdict
from .data import RunReport, jsonable

__all__ = ["ALARM_VS_VERDICT", "VERDICT_METRICS", "VERDICT_RNG", "report_verdict",
           "run_evidence", "run_verdict"]

logger = logging.getLogger(__name__)

#: per-step series the verdict reads (convergence, then diversity)
VERDICT_METRICS = ("norm", "between_spread", "vendi_score", "mean_cosine_distance",
                   "distinct_1", "distinct_2")
#: seed of the bootstrap over replicates in a pooled verdict (so a report is reproducible)
VERDICT_RNG = 0
#: how the verdict differs from the monitor's alarm (shown beside it)
ALARM_VS_VERDICT = ("The verdict tests the trend of each whole series (slope and late-vs-early "
                    "windows, with intervals that allow for autocorrelated steps); the monitor's "
                    "alarm only flags a single step whose ||D|| fell below alarm_fraction times "
                    "the early baseline.")


def _unavailable(exc: Exception) -> dict[str, Any]:
    """Called from an ``except`` block: log with the traceback, say why in the verdict."""
    logger.warning("collapse verdict could not be computed: %s", exc, exc_info=exc)
    return {"verdict": "unavailable", "sentence": f"verdict unavailable: {exc}",
            "convergence": "absent", "diversity": "absent", "trends": {}, "roles": {}}


def run_verdict(per_step: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One run's collapse verdict as plain data (``CollapseVerdict.to_dict()``, JSON-ready).

    Args:
        per_step: the run's per-step rows (``step`` and the metrics of :data:`VERDICT_METRICS`).
    """
    try:
        rows = [{"step": r["step"], **{k: r.get(k) for k in VERDICT_METRICS if k in r}}
                for r in per_step]
        return jsonable(collapse_verdict(rows, rng=VERDICT_RNG).to_dict())
    except Exception as exc:  # noqa: BLE001 - a report without a verdict beats no report
        return _unavailable(exc)


def _step_evidence(step: int, recs: Sequence[Record]) -> dict[str, Any]:
    vectors = [r.vector for r in recs]
    emb = (np.stack([np.asarray(v, dtype=np.float64) for v in vectors])
           if recs and all(v is not None for v in vectors) else None)
    ev = text_evidence([r.text for r in recs], [r.agent for r in recs], emb, n=3, top=5)
    return jsonable({"step": int(step), **ev.to_dict()})


def run_evidence(first: tuple[int, Sequence[Record]],
                 last: tuple[int, Sequence[Record]]) -> dict[str, Any] | None:
    """Text evidence at the first and the last step, as plain data.

    Args:
        first: ``(step, records)`` of the first step (records with their vectors when stored).
        last: the same for the last step.

    Returns:
        ``{"first": {...}, "last": {...}}``, each ``TextEvidence.to_dict()`` plus ``step``
        (shared 3-grams, ``near_duplicates.share`` with its method), or ``None`` on failure
        (logged).
    """
    try:
        return {"first": _step_evidence(*first), "last": _step_evidence(*last)}
    except Exception as exc:  # a report without evidence beats no report (logged)
        logger.warning("text evidence could not be computed: %s", exc, exc_info=True)
        return None


def _pooled(runs: Sequence[RunReport]) -> dict[str, Any]:
    """One pooled verdict over replicate runs, aligned on the union of their steps."""
    try:
        steps = sorted({s for r in runs for s in r.steps})
        pos = {s: j for j, s in enumerate(steps)}
        cols: dict[str, np.ndarray] = {}
        for name in VERDICT_METRICS:
            if not any(name in row for r in runs for row in r.per_step):
                continue
            M = np.full((len(runs), len(steps)), np.nan)
            for i, r in enumerate(runs):
                for s, v in zip(r.steps, r.series(name)):
                    M[i, pos[s]] = v
            cols[name] = M
        v = collapse_verdict(cols, steps=steps, rng=VERDICT_RNG)
        return jsonable(v.to_dict())
    except Exception as exc:  # noqa: BLE001 - a report without a verdict beats no report
        return _unavailable(exc)


def report_verdict(runs: Sequence[RunReport], groups: Mapping[str, Sequence[str]],
                   groups_given: bool) -> dict[str, Any]:
    """The headline verdict of a report, as plain JSON-ready data.

    - one run: its verdict (``scope = "run"``, ``run_id``);
    - several runs in one group (the default group ``"all runs"``, or one given group): that
      group's pooled verdict (``scope = "pooled"``, ``group``, ``runs``); each metric's trend is
      a ``PooledTrend`` with its band over the runs;
    - several runs and ``groups={}``: ``scope = "runs"``, each run's verdict named (common
      verdict, or ``"differs by run"``);
    - several groups: ``scope = "groups"`` with each group's pooled verdict under ``groups``;
      ``verdict`` is the groups' common verdict, or ``"differs by group"``, and ``sentence``
      names each group's.

    Always: ``per_run`` (run id -> that run's verdict), ``evidence`` (run id -> its first- and
    last-step text evidence) and ``alarm_vs_verdict`` (how the verdict differs from the alarm).
    """
    by_id = {r.run_id: r for r in runs}
    extra = {"per_run": {r.run_id: r.verdict for r in runs},
             "evidence": {r.run_id: r.evidence for r in runs},
             "alarm_vs_verdict": ALARM_VS_VERDICT}
    if len(runs) == 1:
        only = runs[0]
        base = only.verdict if only.verdict is not None else run_verdict(only.per_step)
        return {**base, "scope": "run", "run_id": only.run_id, **extra}
    pooled = {g: {**_pooled([by_id[m] for m in members]), "group": g, "runs": list(members)}
              for g, members in groups.items()}
    if not pooled:  # several runs, groups={} given: no pooling asked, one verdict per run
        per = {r.run_id: r.verdict or run_verdict(r.per_step) for r in runs}
        kinds = {v["verdict"] for v in per.values()}
        return {"verdict": kinds.pop() if len(kinds) == 1 else "differs by run",
                "sentence": "; ".join(f"{rid}: {v['sentence']}" for rid, v in per.items()),
                "scope": "runs", **extra}
    if len(pooled) == 1:
        ((_g, v),) = pooled.items()
        note = ("" if groups_given else
                " (pooled over all runs as replicates; pass groups of replicate runs for a "
                "verdict per condition)")
        return {**v, "sentence": v["sentence"] + note, "scope": "pooled", **extra}
    kinds = {v["verdict"] for v in pooled.values()}
    return {"verdict": kinds.pop() if len(kinds) == 1 else "differs by group",
            "sentence": "; ".join(f"{g}: {v['sentence']}" for g, v in pooled.items()),
            "scope": "groups", "groups": pooled, **extra}
