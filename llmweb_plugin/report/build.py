"""Reading one run from Qdrant and computing its report with the core metrics.

:func:`build_run` reads one run's records (vectors included) from a
:class:`~llmweb_plugin.store.WebStore` and returns a :class:`~.data.RunReport`: per step the
paper's ``||D(t)||_F`` and the other statistics of :mod:`llmweb_plugin.metrics`, per-agent
diversity, distinct-n, a joint classical MDS of the first and last step, examples, mitigation
counts, token usage, settings, and the run's collapse verdict with its text evidence
(:mod:`.verdict`). :class:`~llmweb_plugin.report.DiversityReport` puts runs together.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import distinct_n, mean_cosine_distance, spread, step_metrics, vendi_score
from ..store import KINDS, WEB_KINDS, Record, WebStore
from .data import RunReport
from .mds import classical_mds_full
from .verdict import run_evidence, run_verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import CollapseMonitor

__all__ = ["build_run"]

_NAN = float("nan")
#: Metadata key of a run's first seed record (kind ``seed``, index 0) where ``llmweb run`` keeps
#: the settings it ran with (``llmweb_plugin.cli.report.save_run_settings`` writes it).
SETTINGS_KEY = "llmweb_settings"


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    """A metric that is undefined for this input (too few or zero vectors) is NaN."""
    try:
        return float(fn(*args, **kwargs))
    except ValueError:
        return _NAN


def _per_step(
    step: int, recs: list[Record]
) -> tuple[dict[str, Any], np.ndarray, list[str]]:
    V = np.stack([np.asarray(r.vector, dtype=np.float64) for r in recs])
    agents = [r.agent for r in recs]
    texts = [r.text for r in recs]
    m = step_metrics(step, V, agents)
    sp = spread(V, agents)
    per_agent: dict[str, dict[str, Any]] = {}
    for a in sorted(set(agents)):
        idx = [i for i, x in enumerate(agents) if x == a]
        Va = V[idx]
        per_agent[a] = {
            "n": len(idx),
            "spread": sp.per_agent[a],
            "mean_cosine_distance": _safe(mean_cosine_distance, Va),
            "vendi_score": _safe(vendi_score, Va),
            "distinct_2": distinct_n([texts[i] for i in idx], 2),
        }
    return _step_row(step, m, V, texts, per_agent), V, agents


def _step_row(step: int, m: Any, V: np.ndarray, texts: list[str],
              per_agent: dict[str, Any]) -> dict[str, Any]:
    """A step's row of the report, the same keys for the full read and the summaries' read.

    Args:
        step: the step.
        m: the step's metrics (``n_agents``, ``n_records``, norms, spreads, mean cosine distance).
        V: the vectors the Vendi score is computed from (all, or the sample).
        texts: the texts distinct-1/2 are computed from, in the order of ``V``.
        per_agent: the per-agent rows.
    """
    return {
        "step": step, "n_agents": m.n_agents, "n_records": m.n_records, "norm": m.norm,
        "normalized_norm": m.normalized_norm, "total_spread": m.total_spread,
        "within_spread": m.within_spread, "between_spread": m.between_spread,
        "mean_cosine_distance": m.mean_cosine_distance, "vendi_score": _safe(vendi_score, V),
        "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
        "per_agent": per_agent,
    }


def _value_or_range(values: list[Any]) -> Any:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return None
    lo, hi = min(nums), max(nums)
    return lo if lo == hi else [lo, hi]


def _mds(first: tuple[int, np.ndarray, list[str]], last: tuple[int, np.ndarray, list[str]],
         max_points: int) -> dict[str, Any]:
    """One joint classical MDS of both steps' vectors, so the two panels share axes."""
    (s0, V0, a0), (s1, V1, a1) = first, last
    if s0 == s1:
        V, agents, steps = V0, a0, [s0] * len(a0)
    else:
        V = np.concatenate([V0, V1])
        agents, steps = a0 + a1, [s0] * len(a0) + [s1] * len(a1)
    if len(agents) > max_points:  # deterministic thinning, keeps both steps
        keep = np.linspace(0, len(agents) - 1, max_points).round().astype(int)
        V, agents, steps = V[keep], [agents[i] for i in keep], [steps[i] for i in keep]
    res = classical_mds_full(V, n_components=2)
    points = [{"step": int(s), "agent": a, "x": float(x), "y": float(y)}
              for s, a, (x, y) in zip(steps, agents, res.coords)]
    return {"first_step": s0, "last_step": s1, "points": points,
            "explained": [float(e) for e in res.explained], "joint": True}


def _examples(recs: list[Record], step: int, n: int) -> list[dict[str, Any]]:
    """Per agent at ``step``: its first ``n`` responses, then its posts that repeat none of them."""
    by_agent: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.step == step and r.kind in ("post", "response"):
            by_agent[r.agent][r.kind].append(r)
    out = []
    for agent in sorted(by_agent):
        shown = by_agent[agent].get("response", [])[:n]
        texts = {r.text for r in shown}
        shown += [r for r in by_agent[agent].get("post", []) if r.text not in texts][: max(n, 1)]
        for r in shown:
            out.append({"step": r.step, "agent": r.agent, "kind": r.kind, "index": r.index,
                        "text": r.text})
    return out


def _is_count(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _stored_usage(recs: list[Record]) -> dict[str, dict[str, int]]:
    """Token usage per agent from record metadata.

    Two layouts are read: flat ``usage_input_tokens`` / ``usage_output_tokens`` per record, and a
    ``usage`` mapping (``llmweb_langchain``'s handler), which describes the whole model call and
    is therefore counted once per ``lc_run_id`` when the records carry one.
    """
    acc: dict[str, Counter[str]] = defaultdict(Counter)
    seen_calls: set[tuple[str, str]] = set()
    for r in recs:
        md = r.metadata
        flat = {name: md[key] for key, name in (("usage_input_tokens", "input_tokens"),
                                                 ("usage_output_tokens", "output_tokens"))
                if _is_count(md.get(key))}
        if flat:
            for name, v in flat.items():
                acc[r.agent][name] += int(v)
            continue
        nested = md.get("usage")
        if isinstance(nested, Mapping):
            call = md.get("lc_run_id")
            if call is not None:
                if (r.agent, str(call)) in seen_calls:
                    continue
                seen_calls.add((r.agent, str(call)))
            for k, v in nested.items():
                if _is_count(v):
                    acc[r.agent][str(k)] += int(v)
    return {a: dict(c) for a, c in sorted(acc.items())}


def _stored_settings(recs: Sequence[Record]) -> dict[str, Any]:
    """The settings kept on the run's first seed record (``{}`` when there are none)."""
    for r in recs:
        if r.kind == "seed" and r.index == 0 and isinstance(r.metadata.get(SETTINGS_KEY), Mapping):
            return {k: v for k, v in r.metadata[SETTINGS_KEY].items() if v is not None}
    return {}



def inferred_settings(store: Any, agents: list[str], steps: Sequence[int], lens: Counter[Any],
                      per_step: Sequence[Mapping[str, Any]], queries: Counter[str],
                      n_seeds: int, created: Sequence[str]) -> dict[str, Any]:
    """The settings a run's records imply (one rule for the full read and the summaries' read).

    Args:
        lens: answers per ``(agent, step)``; ``queries``: query text -> answers;
        created: the records' ``created_at`` values, sorted.
    """
    return {
        "collection": store.collection,
        "embedder": store.embedder.name if store.embedder is not None else None,
        "dim": store.dim,
        "agents": agents,
        "n_agents": len(agents),
        "steps": {"first": steps[0], "last": steps[-1], "count": len(steps)},
        "responses_per_agent_per_step": _value_or_range(list(lens.values())),
        "context_size": ({"first": per_step[0]["context_size"],
                          "last": per_step[-1]["context_size"]}
                         if any(r["context_size"] is not None for r in per_step) else None),
        "queries": dict(queries.most_common(5)) or None,
        "n_seeds": n_seeds,
        "first_record_at": created[0] if created else None,
        "last_record_at": created[-1] if created else None,
    }

def build_run(
    store: WebStore,
    run_id: str,
    *,
    metric_kinds: Sequence[str],
    given_settings: Mapping[str, Any],
    n_examples: int,
    mitigation_keys: Sequence[str],
    max_mds_points: int,
    monitor: CollapseMonitor | None = None,
) -> RunReport:
    """Read run ``run_id`` from ``store`` and compute its :class:`~.data.RunReport`.

    Args:
        store: the store holding the run.
        run_id: the run.
        metric_kinds: the record kinds the statistics are computed over.
        given_settings: settings shown as given (model names, beta, ...), over the settings
            ``llmweb run`` kept on the run's first seed record (read here, so a report built
            from Python shows them as ``llmweb report`` does).
        n_examples: example texts per agent at the first and last step.
        mitigation_keys: metadata keys that mark records made or changed by a mitigation.
        max_mds_points: at most this many points enter the MDS (thinned evenly).
        monitor: the live monitor of the run, for its events, alarms, usage and stats.

    Raises:
        TypeError: ``run_id`` is not a non-empty string.
        LookupError: the run is not in the collection.
        ValueError: the run has no records of ``metric_kinds``.
    """
    if not isinstance(run_id, str) or not run_id:
        raise TypeError(f"run_id must be a non-empty str; got {run_id!r}")
    total = store.count(run_id)
    if total == 0:
        present = store.runs()
        shown = ", ".join(repr(r) for r in present[:20]) or "none"
        raise LookupError(
            f"run {run_id!r} not found in collection {store.collection!r} "
            f"(runs there: {shown}{' ...' if len(present) > 20 else ''})"
        )
    metric_recs = store.records(run_id, kind=list(metric_kinds), with_vectors=True)
    other_kinds = [k for k in KINDS if k not in metric_kinds]
    other = store.records(run_id, kind=other_kinds) if other_kinds else []
    counts = Counter(r.kind for r in metric_recs) + Counter(r.kind for r in other)
    counts_d = {k: counts.get(k, 0) for k in KINDS}
    if not metric_recs:
        raise ValueError(
            f"run {run_id!r} is empty for this report: it has no {'/'.join(metric_kinds)} "
            f"records (records by kind: {counts_d}). Responses are what the statistics are "
            "computed over; record them with kind='response'."
        )
    warnings: list[str] = []
    by_step: dict[int, list[Record]] = defaultdict(list)
    for r in metric_recs:
        if r.vector is None:  # pragma: no cover - store always returns vectors when asked
            continue
        by_step[r.step].append(r)
    all_recs = sorted([*metric_recs, *other], key=lambda r: (r.step, r.kind, r.agent, r.index))
    kinds_at: dict[int, Counter[str]] = defaultdict(Counter)
    tags_at: dict[int, Counter[str]] = defaultdict(Counter)
    tag_totals: Counter[str] = Counter()
    for r in all_recs:
        kinds_at[r.step][r.kind] += 1
        for key in mitigation_keys:
            if key in r.metadata and r.metadata[key] not in (None, "", False):
                tag = f"{key}={r.metadata[key]}" if len(mitigation_keys) > 1 else str(r.metadata[key])
                tags_at[r.step][tag] += 1
                tag_totals[f"{r.kind}:{tag}"] += 1
    annotations: dict[int, dict[str, Any]] = {}
    if monitor is not None:
        for h in monitor.history(flush=False):
            extra = {k: v for k, v in h.extras.items()
                     if k != "web_size" and k != "synthetic_fraction" and not k.startswith("n_")}
            if extra:
                annotations[h.step] = extra
    per_step: list[dict[str, Any]] = []
    cached: dict[int, tuple[int, np.ndarray, list[str]]] = {}
    cum: Counter[str] = Counter()
    all_steps = sorted(set(by_step) | set(kinds_at))
    for s in all_steps:
        cum.update(kinds_at.get(s, Counter()))
        if s not in by_step:
            continue
        recs = by_step[s]
        row, V, agents = _per_step(s, recs)
        cached[s] = (s, V, agents)
        web = sum(cum[k] for k in WEB_KINDS)
        row["records_by_kind"] = {k: kinds_at[s].get(k, 0) for k in KINDS}
        row["web_size"] = web
        row["synthetic_fraction"] = cum["post"] / web if web else None
        row["context_size"] = _value_or_range([r.metadata.get("context_size") for r in recs])
        row["mitigation"] = dict(tags_at.get(s, {}))
        row["annotations"] = annotations.get(s, {})
        per_step.append(row)
    steps = [r["step"] for r in per_step]
    agents_all = sorted({r.agent for r in metric_recs})
    if len(agents_all) < 2:
        warnings.append(
            f"run {run_id!r} has one agent ({agents_all[0]!r}): ||D(t)||_F compares the agents' "
            "mean embeddings and is undefined with fewer than two agents. The other statistics "
            "are reported."
        )
    else:
        single = [r["step"] for r in per_step if r["n_agents"] < 2]
        if single:
            warnings.append(f"||D(t)||_F is undefined at steps {single}: only one agent "
                            "answered there.")
    mds = _mds(cached[steps[0]], cached[steps[-1]], max_mds_points) if steps else None
    examples = {"first": _examples(all_recs, steps[0], n_examples),
                "last": _examples(all_recs, steps[-1], n_examples)}
    # usage: the live monitor's counts, else the stored response metadata
    usage: dict[str, dict[str, int]] = {}
    if monitor is not None and monitor.usage:
        usage = monitor.usage
    else:
        usage = _stored_usage(metric_recs)
    mitigations = {
        "records_by_step": {str(s): {k: kinds_at[s][k] for k in ("external", "human")
                                     if kinds_at[s].get(k)}
                            for s in sorted(kinds_at)
                            if kinds_at[s].get("external") or kinds_at[s].get("human")},
        "tags": dict(sorted(tag_totals.items())),
        "tag_keys": list(mitigation_keys),
    }
    lens = Counter((r.agent, r.step) for r in metric_recs)
    queries = Counter(str(r.metadata["query"]) for r in metric_recs if "query" in r.metadata)
    created = sorted(r.created_at for r in all_recs if r.created_at)
    inferred = inferred_settings(store, agents_all, steps, lens, per_step, queries,
                                 counts_d["seed"], created)
    if monitor is not None:
        inferred.update(metric_kinds=list(monitor.metric_kinds),
                        alarm_fraction=monitor.alarm_fraction,
                        baseline_steps=monitor.baseline_steps,
                        embedder=monitor.embedder.name)
        st = monitor.stats
        inferred["monitor_stats"] = {"received": st.received, "stored": st.stored,
                                     "skipped": st.skipped, "failed": st.failed,
                                     "handler_errors": st.handler_errors}
        if st.failed or st.skipped:
            warnings.append(f"the monitor skipped {st.skipped} and failed to store {st.failed} "
                            "record(s); they are not in this report.")
    events = tuple(dict(e) for e in monitor.events) if monitor is not None else ()
    alarms = tuple(
        {"step": a.step, "norm": a.norm, "baseline": a.baseline, "fraction": a.fraction}
        for a in monitor.alarms) if monitor is not None else ()
    return RunReport(
        run_id=run_id, source="monitor" if monitor is not None else "store",
        agents=tuple(agents_all), metric_kinds=tuple(metric_kinds), counts=counts_d,
        per_step=tuple(per_step), mds=mds, examples=examples, events=events, alarms=alarms,
        usage=usage, mitigations=mitigations,
        settings={"given": {**_stored_settings(all_recs), **given_settings},
                  "inferred": inferred}, warnings=tuple(warnings),
        verdict=run_verdict(per_step),
        evidence=run_evidence((steps[0], by_step[steps[0]]), (steps[-1], by_step[steps[-1]])),
    )
