"""A run's report from its summaries: ``O(steps x agents)`` points plus bounded samples.

:func:`build_run_summarised` gives the :class:`~.data.RunReport` that :func:`~.build.build_run`
computes from every record, reading instead the run's summaries
(:mod:`llmweb_plugin._summaries`) and, by point id, a deterministic sample of at most
``SAMPLE_K`` records per step and the few example records. Exact from the sums: the counts,
``||D(t)||_F``, the spreads (per step and per agent), the mean cosine distance (per step and per
agent), web size, mitigation tags, context sizes, token usage, examples and settings. From the
sample, and labelled ``sampled: n of N`` in the step's row and in the warnings when the sample is
smaller than the step: the Vendi score, distinct-1/2 (per step and per agent), the MDS and the
text evidence. ``None`` (the caller reads every record instead) when the run has no summaries,
they disagree with the records, or the report asks for something they do not keep.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _summaries as S
from ..metrics import distinct_n, vendi_score
from ..store import KINDS, WEB_KINDS, Record, WebStore, point_id
from .build import (
    _examples,
    _mds,
    _safe,
    _step_row,
    _stored_settings,
    _value_or_range,
    inferred_settings,
)
from .data import RunReport
from .verdict import run_evidence, run_verdict

__all__ = ["build_run_summarised"]

logger = logging.getLogger(__name__)
_NAN = float("nan")


def _fetch(store: WebStore, ids: Sequence[str], vectors: bool) -> dict[str, Record]:
    out: dict[str, Record] = {}
    with store._lock:
        for start in range(0, len(ids), 1024):
            for p in store.client.retrieve(store.collection, ids=list(ids[start:start + 1024]),
                                           with_payload=True, with_vectors=vectors):
                out[str(p.id)] = Record.from_point(p)
    return out


def _agent_row(st: S.KeyStats, recs: list[Record]) -> dict[str, Any]:
    assert st.sum is not None and st.unit_sum is not None
    dmean = st.sum / st.n
    spread = max(st.sumsq - st.n * float(dmean @ dmean), 0.0) / st.n
    k = st.n_unit
    mcd = 1.0 - (float(st.unit_sum @ st.unit_sum) - k) / (k * (k - 1)) if k >= 2 else _NAN
    V = np.stack([r.vector for r in recs]).astype(np.float64) if recs else np.zeros((0, 1))
    return {"n": st.n, "spread": spread, "mean_cosine_distance": mcd,
            "vendi_score": _safe(vendi_score, V),
            "distinct_2": distinct_n([r.text for r in recs], 2)}


def build_run_summarised(
    store: WebStore, run_id: str, *, metric_kinds: Sequence[str],
    given_settings: Mapping[str, Any], n_examples: int, mitigation_keys: Sequence[str],
    max_mds_points: int,
) -> RunReport | None:
    """The run's report from its summaries, or ``None`` to read its records (reason logged)."""
    what = f"the report of run {run_id!r}"
    if not set(mitigation_keys) <= set(S.TAG_KEYS):
        S.warn_fallback(f"no summaries of mitigation keys {sorted(mitigation_keys)}", what)
        return None
    summ, why = S.load_run(store, run_id)
    if summ is None:
        S.warn_fallback(why, what)
        return None
    keys = {k: v for k, v in summ.keys.items() if v.n > 0}
    if any(not v.usage_exact or v.ctx_overflow for v in keys.values()):
        S.warn_fallback("a re-written record replaced token usage or context sizes the "
                        "summaries cannot take back", what)
        return None
    metric = summ.of_kinds(metric_kinds)
    if not metric:
        return None  # build_run raises its own clear error
    by_step = S.per_step(summ, metric_kinds)
    steps = sorted(by_step)
    # the deterministic samples: bottom-k by hash of point id per step and per agent
    samp: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for (s, a, k), st in metric.items():
        samp[s] += [(h, point_id(run_id, a, s, k, i), a) for h, i in st.sample]
    step_ids = {s: sorted(v)[:S.SAMPLE_K] for s, v in samp.items()}
    agent_ids = {(s, a): sorted(e for e in v if e[2] == a)[:S.SAMPLE_K]
                 for s, v in samp.items() for a in {e[2] for e in v}}
    want = sorted({e[1] for v in step_ids.values() for e in v}
                  | {e[1] for v in agent_ids.values() for e in v})
    got = _fetch(store, want, vectors=True)
    if len(got) != len(want):
        S.warn_fallback(f"{len(want) - len(got)} sampled record(s) are missing", what)
        return None
    counts: Counter[str] = Counter()
    kinds_at: dict[int, Counter[str]] = defaultdict(Counter)
    tags_at: dict[int, Counter[str]] = defaultdict(Counter)
    tag_totals: Counter[str] = Counter()
    one = len(mitigation_keys) == 1
    for (s, _a, k), st in keys.items():
        counts[k] += st.n
        kinds_at[s][k] += st.n
        for t, c in st.tags.items():
            tag = t.split("=", 1)[1] if one else t
            tags_at[s][tag] += c
            tag_totals[f"{k}:{tag}"] += c
    per_step: list[dict[str, Any]] = []
    sampled_steps: dict[int, str] = {}
    cached: dict[int, tuple[int, np.ndarray, list[str]]] = {}
    step_recs: dict[int, list[Record]] = {}
    cum: Counter[str] = Counter()
    for s in sorted(set(by_step) | set(kinds_at)):
        cum.update(kinds_at.get(s, Counter()))
        if s not in by_step:
            continue
        m = S.step_accumulator(s, by_step[s]).metrics()
        recs = [got[pid] for _h, pid, _a in step_ids[s]]
        recs.sort(key=lambda r: (r.agent, r.kind, r.index))
        step_recs[s] = recs
        V = np.stack([np.asarray(r.vector, dtype=np.float64) for r in recs])
        cached[s] = (s, V, [r.agent for r in recs])
        texts = [r.text for r in recs]
        row = _step_row(s, m, V, texts, {
            a: _agent_row(by_step[s][a], [got[pid] for _h, pid, _x in agent_ids[(s, a)]])
            for a in sorted(by_step[s])})
        if len(recs) < m.n_records:
            sampled_steps[s] = row["sampled"] = f"{len(recs)} of {m.n_records}"
        web = sum(cum[k] for k in WEB_KINDS)
        row["records_by_kind"] = {k: kinds_at[s].get(k, 0) for k in KINDS}
        row["web_size"] = web
        row["synthetic_fraction"] = cum["post"] / web if web else None
        ctx = [float(v) for (s2, _a, k), st in metric.items() if s2 == s for v in st.ctx]
        row["context_size"] = _value_or_range([int(v) if v.is_integer() else v for v in ctx])
        row["mitigation"] = dict(tags_at.get(s, {}))
        row["annotations"] = {}
        per_step.append(row)
    agents_all = sorted({a for (_s, a, _k) in metric})
    warnings: list[str] = []
    if len(agents_all) < 2:
        warnings.append(
            f"run {run_id!r} has one agent ({agents_all[0]!r}): ||D(t)||_F compares the agents' "
            "mean embeddings and is undefined with fewer than two agents. The other statistics "
            "are reported.")
    else:
        single = [r["step"] for r in per_step if r["n_agents"] < 2]
        if single:
            warnings.append(f"||D(t)||_F is undefined at steps {single}: only one agent "
                            "answered there.")
    if sampled_steps:
        shown = ", ".join(f"step {s}: {v}" for s, v in list(sampled_steps.items())[:6])
        warnings.append(
            f"sampled: Vendi, distinct-1/2, the MDS and the text evidence of run {run_id!r} use a "
            f"deterministic sample of up to {S.SAMPLE_K} records per step ({shown}"
            f"{', ...' if len(sampled_steps) > 6 else ''}); ||D||, the spreads and the mean "
            "cosine distance are exact over every record.")
    mds = _mds(cached[steps[0]], cached[steps[-1]], max_mds_points)
    if mds is not None and (steps[0] in sampled_steps or steps[-1] in sampled_steps):
        mds["sampled"] = {str(s): sampled_steps.get(s, "all") for s in (steps[0], steps[-1])}
    examples = {"first": _examples(_example_recs(store, run_id, keys, steps[0], n_examples),
                                   steps[0], n_examples),
                "last": _examples(_example_recs(store, run_id, keys, steps[-1], n_examples),
                                  steps[-1], n_examples)}
    usage: dict[str, Counter[str]] = defaultdict(Counter)
    for (_s, a, _k), st in metric.items():
        usage[a].update(st.usage)
    lens = Counter()
    for (s, a, _k), st in metric.items():
        lens[(a, s)] += st.n
    queries: Counter[str] = Counter()
    for st in metric.values():
        queries.update(st.queries)
    if any(st.queries_overflow for st in metric.values()):
        warnings.append(f"run {run_id!r}: too many distinct queries to summarise; the report's "
                        "query list is left out")
        queries = Counter()
    created = sorted(c for st in keys.values() for c in st.created)
    seeds0 = [point_id(run_id, a, s, k, 0) for (s, a, k), st in keys.items()
              if k == "seed" and st.has(0)]
    seed_recs = sorted(_fetch(store, seeds0, vectors=False).values(), key=lambda r: r.agent)
    counts_d = {k: counts.get(k, 0) for k in KINDS}
    inferred = inferred_settings(store, agents_all, steps, lens, per_step, queries,
                                 counts_d["seed"], created)
    inferred["read_from"] = f"summaries ({len(keys)} keys, {len(want)} sampled records)"
    mitigations = {
        "records_by_step": {str(s): {k: kinds_at[s][k] for k in ("external", "human")
                                     if kinds_at[s].get(k)}
                            for s in sorted(kinds_at)
                            if kinds_at[s].get("external") or kinds_at[s].get("human")},
        "tags": dict(sorted(tag_totals.items())), "tag_keys": list(mitigation_keys),
    }
    return RunReport(
        run_id=run_id, source="store", agents=tuple(agents_all),
        metric_kinds=tuple(metric_kinds), counts=counts_d, per_step=tuple(per_step), mds=mds,
        examples=examples, usage={a: dict(c) for a, c in sorted(usage.items()) if c},
        mitigations=mitigations,
        settings={"given": {**_stored_settings(seed_recs), **given_settings},
                  "inferred": inferred}, warnings=tuple(warnings),
        verdict=run_verdict(per_step),
        evidence=run_evidence((steps[0], step_recs[steps[0]]), (steps[-1], step_recs[steps[-1]])),
    )


def _example_recs(store: WebStore, run_id: str, keys: Mapping[tuple[int, str, str], Any],
                  step: int, n: int) -> list[Record]:
    """The first responses and posts of each agent at ``step``, read by point id."""
    ids = []
    for (s, a, k), st in keys.items():
        if s != step or k not in ("post", "response"):
            continue
        take = n if k == "response" else max(n, 1) + n
        idx = []
        for i in st.indices():
            if len(idx) >= take:
                break
            idx.append(i)
        ids += [point_id(run_id, a, s, k, i) for i in idx]
    recs = list(_fetch(store, ids, vectors=False).values())
    recs.sort(key=lambda r: (r.step, r.kind, r.agent, r.index))
    return recs
