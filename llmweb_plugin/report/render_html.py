"""Rendering of a :class:`~llmweb_plugin.report.DiversityReport` as HTML and Markdown.

Plots come from :mod:`llmweb_plugin.report_plots`. The HTML page is self-contained:
inline CSS, plots as base64 PNG ``<img>``, no script at all, a Content-Security-Policy that forbids
any fetch, and every piece of run data (model text, agent names, run ids, settings) escaped.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .plots import caption

if TYPE_CHECKING:  # pragma: no cover
    from .diversity import DiversityReport, RunReport

__all__ = ["CSP", "md_escape", "render_html", "render_markdown"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_MAX_EXAMPLE_CHARS = 2000


# ---------------------------------------------------------------------- formatting helpers
def _num(x: Any) -> str:
    if x is None:
        return "\u2013"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "\u2013" if not math.isfinite(x) else f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "\u2013".join(_num(v) for v in x)
    return str(x)


def _first_last(run: RunReport, key: str) -> tuple[Any, Any]:
    return run.per_step[0].get(key), run.per_step[-1].get(key)


def _summary_rows(rep: DiversityReport) -> list[list[str]]:
    rows = []
    for r in rep.runs:
        n0, n1 = _first_last(r, "norm")
        nr = r.norm_ratio  # the one first-vs-last definition (report_data.first_last_ratio)
        ratio = f"{_num(nr.ratio)} (w={nr.window})" if nr.ratio is not None else _num(None)
        c0, c1 = _first_last(r, "mean_cosine_distance")
        v0, v1 = _first_last(r, "vendi_score")
        rows.append([
            r.run_id, r.source, f"{len(r.agents)}: " + ", ".join(r.agents[:8])
            + (" ..." if len(r.agents) > 8 else ""),
            f"{r.steps[0]}\u2013{r.steps[-1]} ({len(r.steps)})",
            str(sum(r.counts.values())), str(r.counts.get("response", 0)),
            f"{_num(n0)} \u2192 {_num(n1)}", ratio,
            f"{_num(c0)} \u2192 {_num(c1)}", f"{_num(v0)} \u2192 {_num(v1)}",
        ])
    return rows


def _band_note(rep: DiversityReport) -> str:
    if not rep.groups_given:
        return ("Shaded: the range (min to max) over the runs at each step; pass groups of "
                "replicate runs to get mean \u00b1 s.d. bands per condition.")
    return "Bands: mean \u00b1 s.d. over the runs of each group at each step."


_SUMMARY_HEAD = ["run", "source", "agents", "steps", "records", "responses",
                 "norm first \u2192 last",
                 "last / first (mean of w steps)", "mean cos. dist.", "Vendi"]
_STEP_HEAD = ["step", "agents", "responses", "norm", "norm (normalised)", "within", "between",
              "mean cos. dist.", "Vendi", "distinct-1", "distinct-2", "k_t", "web size",
              "synthetic frac.", "external", "human", "mitigation tags"]


def _step_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for s in run.per_step:
        kinds = s.get("records_by_kind", {})
        tags = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("mitigation", {}).items()))
        rows.append([str(s["step"]), str(s["n_agents"]), str(s["n_records"]), _num(s["norm"]),
                     _num(s["normalized_norm"]), _num(s["within_spread"]),
                     _num(s["between_spread"]), _num(s["mean_cosine_distance"]),
                     _num(s["vendi_score"]), _num(s["distinct_1"]), _num(s["distinct_2"]),
                     _num(s.get("context_size")), _num(s.get("web_size")),
                     _num(s.get("synthetic_fraction")), str(kinds.get("external", 0)),
                     str(kinds.get("human", 0)), tags])
    return rows


_AGENT_HEAD = ["agent", "step", "responses", "spread", "mean cos. dist.", "Vendi", "distinct-2"]


def _agent_rows(run: RunReport) -> list[list[str]]:
    rows = []
    chosen = [run.per_step[0]] + ([run.per_step[-1]] if len(run.per_step) > 1 else [])
    for agent in run.agents:
        for s in chosen:
            a = s["per_agent"].get(agent)
            if a is None:
                continue
            rows.append([agent, str(s["step"]), str(a["n"]), _num(a["spread"]),
                         _num(a["mean_cosine_distance"]), _num(a["vendi_score"]),
                         _num(a["distinct_2"])])
    return rows


def _usage_rows(run: RunReport) -> list[list[str]]:
    keys = sorted({k for u in run.usage.values() for k in u})
    return [[a] + [str(u.get(k, 0)) for k in keys] for a, u in sorted(run.usage.items())]


def _flat_settings(run: RunReport) -> list[list[str]]:
    rows = []
    for origin in ("given", "inferred"):
        for k, v in run.settings.get(origin, {}).items():
            if v is None:
                continue
            if isinstance(v, dict):
                v = ", ".join(f"{kk}: {_num(vv)}" for kk, vv in v.items())
            elif isinstance(v, (list, tuple)):
                v = ", ".join(_num(x) for x in v)
            else:
                v = _num(v)
            rows.append([k, str(v), origin])
    return rows


def _event_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for e in run.events:
        rest = ", ".join(f"{k}={_num(v)}" for k, v in e.items() if k not in ("kind", "run_id"))
        rows.append([str(e.get("kind", "")), rest])
    return rows


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_EXAMPLE_CHARS else text[:_MAX_EXAMPLE_CHARS] + " \u2026"


# ---------------------------------------------------------------------- HTML
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
        rows = [[e["agent"], e["kind"], str(e["index"]), _clip(e["text"])] for e in ex]
        parts.append(_table(["agent", "kind", "index", "text"], rows, text_cols=(3,)))
    return "".join(parts)


def render_html(rep: DiversityReport) -> str:
    """The report as one self-contained HTML page (a string)."""
    from .. import __version__

    figs = rep.figures()
    h: list[str] = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_esc(rep.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(rep.title)}</h1>",
        (f"<p class=\"meta\">generated {_esc(rep.generated_at)} by llmweb {_esc(__version__)}; "
         f"collection {_esc(rep.runs[0].settings.get('inferred', {}).get('collection', '?'))}"
         "</p>"),
    ]
    for w in rep.warnings:
        h.append(f"<div class=\"warn\">{_esc(w)}</div>")
    h.append("<h2>Runs</h2>")
    h.append(_table(_SUMMARY_HEAD, _summary_rows(rep), num_from=4))
    if rep.groups:
        h.append("<p class=\"meta\">" + _esc(_band_note(rep)) + " Groups: "
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
        h.append(_table(_AGENT_HEAD, _agent_rows(run), num_from=2))
        h.append(f"<details><summary>Per-step numbers ({len(run.per_step)} steps)</summary>")
        h.append(_table(_STEP_HEAD, _step_rows(run), num_from=1))
        h.append("</details>")
        h.append("<h3>Mitigations and alarms</h3>")
        alarms = [[str(a["step"]), _num(a["norm"]), _num(a["baseline"]), _num(a["fraction"])]
                  for a in run.alarms]
        h.append("<p>Alarms (norm below fraction \u00d7 baseline):</p>")
        h.append(_table(["step", "norm", "baseline", "fraction"], alarms, num_from=1)
                 if run.source == "monitor" or alarms
                 else "<p class=\"meta\">known only from a live monitor</p>")
        h.append("<p>Events:</p>")
        h.append(_table(["kind", "data"], _event_rows(run), text_cols=(1,))
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
        h.append(_table(["agent", *keys], _usage_rows(run), num_from=1) if run.usage
                 else "<p class=\"meta\">not recorded</p>")
        h.append("<h3>Settings</h3>")
        h.append(_table(["setting", "value", "source"], _flat_settings(run), text_cols=(1,)))
    h.append("</body></html>\n")
    return "\n".join(h)


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt=\"{_esc(name)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{_esc(caption(name))}</figcaption></figure>")


# ---------------------------------------------------------------------- Markdown
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: object) -> str:
    """Text safe in a Markdown table cell: ``& < >`` as entities (no raw HTML), emphasis, code,
    link brackets and pipes backslash-escaped, newlines as ``<br>``."""
    s = html.escape(str(text), quote=False)  # no entities with '#' in them for Markdown
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s.replace("\n", "<br>")


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(md_escape(c) for c in head) + " |",
           "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def render_markdown(rep: DiversityReport, path: Path) -> str:
    """The report as Markdown; writes the plots as PNG files into ``<stem>_files/``."""
    from .. import __version__

    figs = rep.figures()
    folder = path.parent / f"{path.stem}_files"
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in figs.items():
        (folder / f"{name}.png").write_bytes(png)
    rel = folder.name

    def img(name: str) -> str:
        return f"![{name}]({rel}/{name}.png)\n\n_{md_escape(caption(name))}_\n"

    md: list[str] = [f"# {md_escape(rep.title)}\n",
                     f"Generated {md_escape(rep.generated_at)} by llmweb {__version__}.\n"]
    for w in rep.warnings:
        md.append(f"> **Warning:** {md_escape(w)}\n")
    md += ["## Runs\n", _md_table(_SUMMARY_HEAD, _summary_rows(rep))]
    if rep.groups:
        md.append(md_escape(_band_note(rep)) + " Groups: "
                  + "; ".join(f"{md_escape(g)} = {md_escape(', '.join(m))}"
                              for g, m in rep.groups.items()) + "\n")
    md.append("## Collapse and diversity over steps\n")
    md += [img("norm"), img("spread"), img("diversity")]
    for i, run in enumerate(rep.runs):
        md.append(f"## Run {md_escape(run.run_id)}\n")
        for name in (f"mds-{i + 1}", f"agents-{i + 1}"):
            if name in figs:
                md.append(img(name))
        md.append("### Example posts\n")
        for which in ("first", "last"):
            ex = run.examples.get(which, [])
            step = ex[0]["step"] if ex else "?"
            md.append(f"**{which} step (t = {md_escape(step)})**\n")
            md.append(_md_table(["agent", "kind", "index", "text"],
                                [[e["agent"], e["kind"], str(e["index"]), _clip(e["text"])]
                                 for e in ex]))
        md += ["### Per-agent diversity (first and last step)\n",
               _md_table(_AGENT_HEAD, _agent_rows(run)),
               "### Per-step numbers\n", _md_table(_STEP_HEAD, _step_rows(run)),
               "### Mitigations and alarms\n"]
        if run.source == "monitor":
            md.append(_md_table(["step", "norm", "baseline", "fraction"],
                                [[str(a["step"]), _num(a["norm"]), _num(a["baseline"]),
                                  _num(a["fraction"])] for a in run.alarms]))
            md.append(_md_table(["event", "data"], _event_rows(run)))
        else:
            md.append("Alarms and events are known only from a live monitor.\n")
        mit = run.mitigations
        md.append(_md_table(["step", "external", "human"],
                            [[s, str(c.get("external", 0)), str(c.get("human", 0))]
                             for s, c in mit.get("records_by_step", {}).items()]))
        md.append(_md_table(["kind:tag", "records"],
                            [[k, str(v)] for k, v in mit.get("tags", {}).items()]))
        md.append("### Token usage\n")
        keys = sorted({k for u in run.usage.values() for k in u})
        md.append(_md_table(["agent", *keys], _usage_rows(run)) if run.usage
                  else "_not recorded_\n")
        md += ["### Settings\n", _md_table(["setting", "value", "source"], _flat_settings(run))]
    return "\n".join(md)
