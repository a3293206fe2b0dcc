"""The report's tables and captions as text, shared by the HTML and the Markdown renderer.

Rows are lists of plain strings (numbers formatted by :func:`fmt`, ``\u2013`` where undefined);
each renderer escapes and marks them up its own way. Reads :mod:`.data` only.
"""

from __future__ import annotations

import math
from typing import Any

from .data import ReportData, RunReport

__all__ = ["AGENT_HEAD", "EVIDENCE_HEAD", "MAX_EXAMPLE_CHARS", "STEP_HEAD", "SUMMARY_HEAD",
           "VERDICT_HEAD", "agent_rows", "band_note", "caption", "clip", "event_rows",
           "evidence_rows", "first_last", "fmt", "settings_rows", "step_rows", "summary_rows",
           "usage_rows", "verdict_blocks", "verdict_interval", "verdict_parts",
           "verdict_rows"]

MAX_EXAMPLE_CHARS = 2000


def fmt(x: Any) -> str:
    if x is None:
        return "\u2013"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "\u2013" if not math.isfinite(x) else f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "\u2013".join(fmt(v) for v in x)
    return str(x)


def first_last(run: RunReport, key: str) -> tuple[Any, Any]:
    return run.per_step[0].get(key), run.per_step[-1].get(key)


def summary_rows(rep: ReportData) -> list[list[str]]:
    rows = []
    for r in rep.runs:
        n0, n1 = first_last(r, "norm")
        nr = r.norm_ratio  # the one first-vs-last definition (data.first_last_ratio)
        ratio = f"{fmt(nr.ratio)} (w={nr.window})" if nr.ratio is not None else fmt(None)
        c0, c1 = first_last(r, "mean_cosine_distance")
        v0, v1 = first_last(r, "vendi_score")
        rows.append([
            r.run_id, r.source, f"{len(r.agents)}: " + ", ".join(r.agents[:8])
            + (" ..." if len(r.agents) > 8 else ""),
            f"{r.steps[0]}\u2013{r.steps[-1]} ({len(r.steps)})",
            str(sum(r.counts.values())), str(r.counts.get("response", 0)),
            f"{fmt(n0)} \u2192 {fmt(n1)}", ratio,
            f"{fmt(c0)} \u2192 {fmt(c1)}", f"{fmt(v0)} \u2192 {fmt(v1)}",
            str((r.verdict or {}).get("verdict", "\u2013")),
        ])
    return rows


# ---------------------------------------------------------------------- the verdict
def verdict_blocks(verdict: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(label, verdict dict)`` per headline block: one for a run or a pooled group, one per
    group (``"group NAME (runs)"``) or per run when the report has several."""
    if not verdict:
        return []
    if verdict.get("scope") == "groups":
        return [(f"group {g} ({', '.join(v.get('runs', []))})", v)
                for g, v in verdict.get("groups", {}).items()]
    if verdict.get("scope") == "runs":
        return [(f"run {rid}", v) for rid, v in verdict.get("per_run", {}).items() if v]
    if verdict.get("scope") == "pooled":
        runs = verdict.get("runs", [])
        return [(f"pooled over {len(runs)} runs ({', '.join(runs)})", verdict)]
    return [(f"run {verdict.get('run_id', '')}", verdict)]


def verdict_interval(v: dict[str, Any]) -> str:
    """The interval line under a headline: the ``||D||`` trend's sentence (change and CI),
    else the first metric's."""
    trends = v.get("trends") or {}
    tr = trends.get("norm") or next(iter(trends.values()), None)
    return str(tr.get("sentence", "")) if tr else ""


VERDICT_HEAD = ["metric", "measures", "verdict", "change, late vs early window (interval)",
                "slope per step", "slope interval", "p (slope)", "p (windows)"]


def verdict_rows(v: dict[str, Any]) -> list[list[str]]:
    """One row per metric of a verdict dict (a run's or a pooled group's)."""
    rows = []
    roles = v.get("roles") or {}
    for name, tr in (v.get("trends") or {}).items():
        ci = tr.get("ci") or [None, None]
        rows.append([name, str(roles.get(name, "")), str(tr.get("verdict", "")),
                     str(tr.get("sentence", "")), fmt(tr.get("slope")),
                     f"{fmt(ci[0])} to {fmt(ci[1])}", fmt(tr.get("p_value")),
                     fmt(tr.get("window_p_value"))])
    return rows


EVIDENCE_HEAD = ["run", "step", "3-grams shared by most agents (agents using it)",
                 "answers nearly repeating another agent's"]


def verdict_parts(verdict: Any) -> list[tuple[str, Any]]:
    """The verdict section above the evidence, in order, for both renderers: ``("headline", text)``
    (one sentence over several groups or runs), ``("label", text)`` (a block's heading),
    ``("sentence", text)`` (a block's headline), ``("interval", text)``, ``("table", rows)``
    (:func:`verdict_rows`) and ``("note", text)`` (how the alarms compare)."""
    parts: list[tuple[str, Any]] = []
    blocks = verdict_blocks(verdict)
    several = verdict.get("scope") in ("groups", "runs")
    if several:
        parts.append(("headline", verdict.get("verdict", "")))
    for label, b in blocks:
        if len(blocks) > 1 or verdict.get("scope") == "pooled":
            parts.append(("label", label))
        if len(blocks) > 1 or not several:
            parts.append(("sentence", b.get("sentence", "")))
        line = verdict_interval(b)
        if line:
            parts.append(("interval", line))
        parts.append(("table", verdict_rows(b)))
    if verdict.get("alarm_vs_verdict"):
        parts.append(("note", verdict["alarm_vs_verdict"]))
    return parts


def evidence_rows(verdict: Any) -> list[list[str]]:
    """Per run, at its first and last step: the shared 3-grams and the near-duplicate share."""
    rows = []
    for rid, ev in ((verdict or {}).get("evidence") or {}).items():
        if not ev:
            rows.append([rid, "\u2013", "not computed", "not computed"])
            continue
        for which in ("first", "last"):
            e = ev.get(which) or {}
            shared = "; ".join(f"\u201c{g['ngram']}\u201d ({g['n_agents']}/{e.get('n_agents')})"
                               for g in e.get("shared", [])) or "none"
            nd = e.get("near_duplicates") or {}
            share = nd.get("share")
            dup = ("\u2013" if share is None else
                   f"{100 * share:.0f}% ({nd.get('n_near_duplicates')}/{nd.get('n_posts')}; "
                   f"{nd.get('method')} \u2265 {fmt(nd.get('threshold'))})")
            rows.append([rid, f"{which} (t = {e.get('step')})", shared, dup])
    return rows


def band_note(rep: ReportData) -> str:
    if not rep.groups_given:
        return ("Shaded: the range (min to max) over the runs at each step; pass groups of "
                "replicate runs to get mean \u00b1 s.d. bands per condition.")
    return "Bands: mean \u00b1 s.d. over the runs of each group at each step."


SUMMARY_HEAD = ["run", "source", "agents", "steps", "records", "responses",
                 "norm first \u2192 last",
                 "last / first (mean of w steps)", "mean cos. dist.", "Vendi", "verdict"]
STEP_HEAD = ["step", "agents", "responses", "norm", "norm (normalised)", "within", "between",
              "mean cos. dist.", "Vendi", "distinct-1", "distinct-2", "k_t", "web size",
              "synthetic frac.", "external", "human", "mitigation tags"]


def step_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for s in run.per_step:
        kinds = s.get("records_by_kind", {})
        tags = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("mitigation", {}).items()))
        rows.append([str(s["step"]), str(s["n_agents"]), str(s["n_records"]), fmt(s["norm"]),
                     fmt(s["normalized_norm"]), fmt(s["within_spread"]),
                     fmt(s["between_spread"]), fmt(s["mean_cosine_distance"]),
                     fmt(s["vendi_score"]), fmt(s["distinct_1"]), fmt(s["distinct_2"]),
                     fmt(s.get("context_size")), fmt(s.get("web_size")),
                     fmt(s.get("synthetic_fraction")), str(kinds.get("external", 0)),
                     str(kinds.get("human", 0)), tags])
    return rows


AGENT_HEAD = ["agent", "step", "responses", "spread", "mean cos. dist.", "Vendi", "distinct-2"]


def agent_rows(run: RunReport) -> list[list[str]]:
    rows = []
    chosen = [run.per_step[0]] + ([run.per_step[-1]] if len(run.per_step) > 1 else [])
    for agent in run.agents:
        for s in chosen:
            a = s["per_agent"].get(agent)
            if a is None:
                continue
            rows.append([agent, str(s["step"]), str(a["n"]), fmt(a["spread"]),
                         fmt(a["mean_cosine_distance"]), fmt(a["vendi_score"]),
                         fmt(a["distinct_2"])])
    return rows


def usage_rows(run: RunReport) -> list[list[str]]:
    keys = sorted({k for u in run.usage.values() for k in u})
    return [[a] + [str(u.get(k, 0)) for k in keys] for a, u in sorted(run.usage.items())]


def settings_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for origin in ("given", "inferred"):
        for k, v in run.settings.get(origin, {}).items():
            if v is None:
                continue
            if isinstance(v, dict):
                v = ", ".join(f"{kk}: {fmt(vv)}" for kk, vv in v.items())
            elif isinstance(v, (list, tuple)):
                v = ", ".join(fmt(x) for x in v)
            else:
                v = fmt(v)
            rows.append([k, str(v), origin])
    return rows


def event_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for e in run.events:
        rest = ", ".join(f"{k}={fmt(v)}" for k, v in e.items() if k not in ("kind", "run_id"))
        rows.append([str(e.get("kind", "")), rest])
    return rows


def clip(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + " \u2026"


_CAPTIONS = {
    "norm": "The paper's collapse statistic: the Frobenius norm of the distance matrix between the "
            "agents' mean response embeddings, raw and normalised by the number of agent pairs.",
    "spread": "Spread of the step's responses split into within-agent and between-agent parts "
              "(total = within + between).",
    "diversity": "Mean pairwise cosine distance, Vendi score and distinct-n over all responses "
                 "of each step.",
    "agents": "Per-agent diversity: each agent's own spread and mean cosine distance per step.",
    "mds": "Classical MDS of the response embeddings at the first and last step, coloured by "
           "agent (the paper's Fig. 3).",
}


def caption(name: str) -> str:
    """The caption of figure ``name`` (``norm``, ``spread``, ``diversity``, ``agents-<i>``, ``mds-<i>``)."""
    return _CAPTIONS.get(name.split("-")[0], "")
