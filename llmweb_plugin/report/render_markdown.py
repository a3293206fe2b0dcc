"""A :class:`~llmweb_plugin.report.data.ReportData` as Markdown, with its plots as PNG files.

Every piece of run data is escaped for a Markdown table cell (:func:`md_escape`): no raw HTML, no
emphasis, code, links or stray pipes from model text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data import ReportData
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

__all__ = ["md_escape", "render_markdown"]

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


def _verdict_md(rep: ReportData) -> list[str]:
    """The first section: the headline sentence and its interval, per-metric trends, evidence."""
    v = rep.verdict
    if not v:
        return []
    md = ["## Verdict\n"]
    for kind, x in verdict_parts(v):
        if kind == "table":
            md.append(_md_table(VERDICT_HEAD, x))
        elif kind == "label":
            md.append(f"### {md_escape(x)}\n")
        elif kind == "interval":
            md.append(md_escape(x) + "\n")
        elif kind == "note":
            md.append(f"_{md_escape(x)}_\n")
        else:  # the headline over several blocks, or a block's sentence
            md.append(f"**{md_escape(x)}**\n")
    md.append("### What the posts share (first and last step)\n")
    md.append(_md_table(EVIDENCE_HEAD, evidence_rows(v)))
    return md


def render_markdown(rep: ReportData, figs: Mapping[str, bytes], path: Path) -> str:
    """The report as Markdown for ``path``; writes the plots as PNG files into ``<stem>_files/``.

    Args:
        rep: the report's data.
        figs: its plots as PNG bytes by name (:func:`llmweb_plugin.report.plots.figures`).
        path: where the Markdown will be written (the caller writes it); fixes the folder.

    Returns:
        The Markdown text.
    """
    folder = path.parent / f"{path.stem}_files"
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in figs.items():
        (folder / f"{name}.png").write_bytes(png)
    rel = folder.name

    def img(name: str) -> str:
        return f"![{name}]({rel}/{name}.png)\n\n_{md_escape(caption(name))}_\n"

    md: list[str] = [f"# {md_escape(rep.title)}\n",
                     f"Generated {md_escape(rep.generated_at)} by llmweb {rep.llmweb_version}.\n"]
    md += _verdict_md(rep)
    for w in rep.warnings:
        md.append(f"> **Warning:** {md_escape(w)}\n")
    md += ["## Runs\n", _md_table(SUMMARY_HEAD, summary_rows(rep))]
    if rep.groups:
        md.append(md_escape(band_note(rep)) + " Groups: "
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
                                [[e["agent"], e["kind"], str(e["index"]), clip(e["text"])]
                                 for e in ex]))
        md += ["### Per-agent diversity (first and last step)\n",
               _md_table(AGENT_HEAD, agent_rows(run)),
               "### Per-step numbers\n", _md_table(STEP_HEAD, step_rows(run)),
               "### Mitigations and alarms\n"]
        if run.source == "monitor":
            md.append(_md_table(["step", "norm", "baseline", "fraction"],
                                [[str(a["step"]), fmt(a["norm"]), fmt(a["baseline"]),
                                  fmt(a["fraction"])] for a in run.alarms]))
            md.append(_md_table(["event", "data"], event_rows(run)))
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
        md.append(_md_table(["agent", *keys], usage_rows(run)) if run.usage
                  else "_not recorded_\n")
        md += ["### Settings\n", _md_table(["setting", "value", "source"], settings_rows(run))]
    return "\n".join(md)
