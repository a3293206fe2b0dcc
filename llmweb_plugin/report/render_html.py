"""A :class:`~llmweb_plugin.report.data.ReportData` as one self-contained HTML page.

Inline CSS, plots as base64 PNG ``<img>``, no script at all, a Content-Security-Policy that forbids
any fetch, and every piece of run data (model text, agent names, run ids, settings) escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

from .data import ReportData, RunReport
from .tables import (
    AGENT_HEAD,
    EVIDENCE_HEAD,
    STEP_HEAD,
    SUMMARY_HEAD,
    VERDICT_HEAD,
    agent_rows,
    band_note,
    caption,
    clip,
    event_rows,
    evidence_rows,
    fmt,
    settings_rows,
    step_rows,
    summary_rows,
    usage_rows,
    verdict_parts,
)

__all__ = ["CSP", "render_html"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d232a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d8dde3;
padding-bottom:.2rem}h3{margin-top:1.4rem}
.meta{color:#5a6470;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #d8dde3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eef0f3}
figcaption{color:#5a6470;font-size:.85rem}
.warn{background:#fff6e0;border-left:4px solid #e5a500;padding:.5rem .8rem;margin:.5rem 0}
.text{white-space:pre-wrap;word-break:break-word;max-width:820px}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
.verdict{font-size:1.15rem;font-weight:600;background:#eef4fb;border-left:4px solid #2f6db5;
padding:.5rem .8rem;margin:.5rem 0}.interval{margin:.3rem 0 .6rem}
"""


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], text_cols: Sequence[int] = (),
           num_from: int = 99) -> str:
    if not rows:
        return "<p class=\"meta\">none</p>"
    out = ["<table><thead><tr>", *(f"<th>{_esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for j, cell in enumerate(row):
            cls = " class=\"text\"" if j in text_cols else (" class=\"num\"" if j >= num_from
                                                               else "")
            out.append(f"<td{cls}>{_esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _examples_html(run: RunReport) -> str:
    parts = []
    for which, title in (("first", "first step"), ("last", "last step")):
        ex = run.examples.get(which, [])
        step = ex[0]["step"] if ex else None
        parts.append(f"<h4>{_esc(title)}{'' if step is None else f' (t = {int(step)})'}</h4>")
        rows = [[e["agent"], e["kind"], str(e["index"]), clip(e["text"])] for e in ex]
        parts.append(_table(["agent", "kind", "index", "text"], rows, text_cols=(3,)))
    return "".join(parts)


def _verdict_html(rep: ReportData) -> list[str]:
    """The first section: the headline sentence and its interval, per-metric trends, evidence."""
    v = rep.verdict
    if not v:
        return []
    h = ["<h2 id=\"verdict\">Verdict</h2>"]
    for kind, x in verdict_parts(v):
        if kind == "table":
            h.append(_table(VERDICT_HEAD, x, text_cols=(3,), num_from=4))
        elif kind == "label":
            h.append(f"<h3>{_esc(x)}</h3>")
        elif kind == "interval":
            h.append(f"<p class=\"interval\">{_esc(x)}</p>")
        elif kind == "note":
            h.append(f"<p class=\"meta\">{_esc(x)}</p>")
        else:  # the headline over several blocks, or a block's sentence
            h.append(f"<p class=\"verdict\">{_esc(x)}</p>")
    h.append("<h3>What the posts share (first and last step)</h3>")
    h.append(_table(EVIDENCE_HEAD, evidence_rows(v), text_cols=(2,)))
    return h


def render_html(rep: ReportData, figs: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page (a string).

    Args:
        rep: the report's data.
        figs: its plots as PNG bytes by name (:func:`llmweb_plugin.report.plots.figures`).
    """
    h: list[str] = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_esc(rep.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(rep.title)}</h1>",
        (f"<p class=\"meta\">generated {_esc(rep.generated_at)} by llmweb {_esc(rep.llmweb_version)}; "
         f"collection {_esc(rep.runs[0].settings.get('inferred', {}).get('collection', '?'))}"
         "</p>"),
    ]
    h += _verdict_html(rep)
    for w in rep.warnings:
        h.append(f"<div class=\"warn\">{_esc(w)}</div>")
    h.append("<h2>Runs</h2>")
    h.append(_table(SUMMARY_HEAD, summary_rows(rep), num_from=4))
    if rep.groups:
        h.append("<p class=\"meta\">" + _esc(band_note(rep)) + " Groups: "
                 + "; ".join(f"{_esc(g)} = {_esc(', '.join(m))}" for g, m in rep.groups.items())
                 + "</p>")
    h.append("<h2>Collapse and diversity over steps</h2>")
    for name in ("norm", "spread", "diversity"):
        h.append(_figure_html(name, figs[name]))
    for i, run in enumerate(rep.runs):
        h.append(f"<h2>Run {_esc(run.run_id)}</h2>")
        for w in run.warnings:
            h.append(f"<div class=\"warn\">{_esc(w)}</div>")
        for name in (f"mds-{i + 1}", f"agents-{i + 1}"):
            if name in figs:
                h.append(_figure_html(name, figs[name]))
        h.append("<h3>Example posts</h3>")
        h.append(_examples_html(run))
        h.append("<h3>Per-agent diversity (first and last step)</h3>")
        h.append(_table(AGENT_HEAD, agent_rows(run), num_from=2))
        h.append(f"<details><summary>Per-step numbers ({len(run.per_step)} steps)</summary>")
        h.append(_table(STEP_HEAD, step_rows(run), num_from=1))
        h.append("</details>")
        h.append("<h3>Mitigations and alarms</h3>")
        alarms = [[str(a["step"]), fmt(a["norm"]), fmt(a["baseline"]), fmt(a["fraction"])]
                  for a in run.alarms]
        h.append("<p>Alarms (norm below fraction \u00d7 baseline):</p>")
        h.append(_table(["step", "norm", "baseline", "fraction"], alarms, num_from=1)
                 if run.source == "monitor" or alarms
                 else "<p class=\"meta\">known only from a live monitor</p>")
        h.append("<p>Events:</p>")
        h.append(_table(["kind", "data"], event_rows(run), text_cols=(1,))
                 if run.source == "monitor" else
                 "<p class=\"meta\">known only from a live monitor</p>")
        mit = run.mitigations
        rows = [[s, str(c.get("external", 0)), str(c.get("human", 0))]
                for s, c in mit.get("records_by_step", {}).items()]
        h.append("<p>External and human records by step:</p>")
        h.append(_table(["step", "external", "human"], rows, num_from=1))
        tags = [[k, str(v)] for k, v in mit.get("tags", {}).items()]
        h.append(f"<p>Records tagged by a mitigation ({_esc(', '.join(mit.get('tag_keys', [])))}"
                 "), by kind and tag:</p>")
        h.append(_table(["kind:tag", "records"], tags, num_from=1))
        h.append("<h3>Token usage</h3>")
        keys = sorted({k for u in run.usage.values() for k in u})
        h.append(_table(["agent", *keys], usage_rows(run), num_from=1) if run.usage
                 else "<p class=\"meta\">not recorded</p>")
        h.append("<h3>Settings</h3>")
        h.append(_table(["setting", "value", "source"], settings_rows(run), text_cols=(1,)))
    h.append("</body></html>\n")
    return "\n".join(h)


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt=\"{_esc(name)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{_esc(caption(name))}</figcaption></figure>")
