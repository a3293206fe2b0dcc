"""What :func:`llmweb_plugin.reproduce.reproduce` returns, and the files it writes from it.

``DIR/TARGET/comparison.md`` (title, settings, the comparison table, notes, how each claim was
decided), ``DIR/TARGET/result.json`` (settings, series, each claim with ``"agrees"``,
``"measured"`` and its source) and ``DIR/TARGET/figure.png`` (drawn by the target).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._core import Claim

__all__ = ["ReproduceResult", "claim_to_dict", "write_outputs"]


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _verdict_word(agrees: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "not testable"}[agrees]


def _ours_cell(c: Claim) -> str:
    text = c.ours
    if c.interval is not None:
        lo, hi = c.interval
        kind = f", {c.interval_kind}" if c.interval_kind else ""
        text += f" [{_num(float(lo))}, {_num(float(hi))}{kind}]"
    return _cell(text)


def _jsonable(obj: Any) -> Any:
    """JSON-ready copy: tuples -> lists, numpy scalars/arrays -> Python, NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def claim_to_dict(c: Claim) -> dict[str, Any]:
    """One claim as ``result.json`` holds it."""
    p = c.published
    return _jsonable({
        "id": p.id, "text": p.text, "value": p.value, "source": p.source,
        "ours": c.ours, "interval": list(c.interval) if c.interval is not None else None,
        "interval_kind": c.interval_kind, "agrees": c.agrees, "detail": c.detail,
        "measured": dict(c.measured),
    })


@dataclass(frozen=True, kw_only=True)
class ReproduceResult:
    """One reproduction: our numbers beside the published claims, and where they were written.

    Attributes:
        target: the target name, e.g. ``"lwd-fig4"``.
        claims: one :class:`~llmweb_plugin.reproduce.Claim` per published claim.
        settings: every knob that changed the numbers (replicates, quick, seed, ...).
        series: the curves behind the figure (JSON-ready lists).
        notes: plain sentences: differences from the paper, readings where it is silent.
        out_dir: the folder written (``DIR/TARGET``).
        paths: file kind (``"figure"``, ``"comparison"``, ``"result"``) -> path written.
        elapsed_s: wall time of the target's run, in seconds.

    Example:
        >>> from llmweb_plugin.reproduce import Claim, PublishedClaim
        >>> pub = PublishedClaim(id="x", text="falls", value="< 1", source="paper, Fig. 1")
        >>> r = ReproduceResult(target="demo", claims=(Claim(published=pub, ours="0.5",
        ...     agrees=True, detail="0.5 < 1"),), settings={}, series={}, notes=(),
        ...     out_dir="", paths={}, elapsed_s=0.0)
        >>> r.agrees
        True
    """

    target: str
    claims: tuple[Claim, ...]
    settings: Mapping[str, Any]
    series: Mapping[str, Any]
    notes: tuple[str, ...]
    out_dir: str
    paths: Mapping[str, str]
    elapsed_s: float

    @property
    def agrees(self) -> bool | None:
        """``True`` when every testable claim agrees, ``False`` when one does not, ``None``
        when no claim could be tested."""
        tested = [c.agrees for c in self.claims if c.agrees is not None]
        if not tested:
            return None
        return all(tested)

    @property
    def disagreements(self) -> tuple[Claim, ...]:
        """The claims our numbers contradict."""
        return tuple(c for c in self.claims if c.agrees is False)

    def table(self) -> str:
        """The comparison as a Markdown table: claim | published (source) | ours | agrees?"""
        lines = ["| claim | published (source) | ours (interval) | agrees? |",
                 "|---|---|---|---|"]
        for c in self.claims:
            p = c.published
            lines.append(f"| {_cell(p.text)} | {_cell(p.value)} ({_cell(p.source)}) | "
                         f"{_ours_cell(c)} | {_verdict_word(c.agrees)} |")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many claims agreed, which did not."""
        n_yes = sum(c.agrees is True for c in self.claims)
        n_test = sum(c.agrees is not None for c in self.claims)
        text = f"{self.target}: {n_yes} of {n_test} testable claims agree"
        if self.disagreements:
            text += "; disagrees on: " + ", ".join(c.published.id for c in self.disagreements)
        untested = [c.published.id for c in self.claims if c.agrees is None]
        if untested:
            text += "; not testable here: " + ", ".join(untested)
        return text

    def markdown(self) -> str:
        """The text of ``comparison.md``."""
        out = [f"# Reproduction: {self.target}", "", self.summary() + ".", "",
               "## Settings", ""]
        out += [f"- `{k}`: {json.dumps(_jsonable(v))}" for k, v in self.settings.items()]
        out += ["", f"Run time: {self.elapsed_s:.1f} s.", "", "## Comparison", "", self.table(),
                ""]
        if self.notes:
            out += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        out += ["## How each claim was decided", ""]
        for c in self.claims:
            out.append(f"- **{c.published.id}** ({_verdict_word(c.agrees)}): {c.detail}")
        out.append("")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the content of ``result.json``)."""
        return _jsonable({
            "target": self.target, "agrees": self.agrees, "summary": self.summary(),
            "settings": dict(self.settings), "elapsed_s": self.elapsed_s,
            "claims": [claim_to_dict(c) for c in self.claims],
            "series": dict(self.series), "notes": list(self.notes),
            "out_dir": self.out_dir, "paths": dict(self.paths),
        })


def write_outputs(result: ReproduceResult, draw: Any) -> ReproduceResult:
    """Write ``comparison.md``, ``result.json`` and ``figure.png`` into ``result.out_dir``.

    The figure is drawn last; without matplotlib the two text files are still written and the
    returned result carries a note instead of a figure path.

    Returns:
        ``result`` with ``paths`` (and, when the figure failed, ``notes``) filled in.
    """
    folder = Path(result.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    figure = folder / "figure.png"
    notes = result.notes
    paths: dict[str, str] = {}
    try:
        draw(str(figure))
        paths["figure"] = str(figure)
    except ImportError as exc:
        notes = (*notes, f"figure.png not written: {exc}")
    paths["comparison"] = str(folder / "comparison.md")
    paths["result"] = str(folder / "result.json")
    done = ReproduceResult(target=result.target, claims=result.claims, settings=result.settings,
                           series=result.series, notes=notes, out_dir=result.out_dir,
                           paths=paths, elapsed_s=result.elapsed_s)
    Path(paths["comparison"]).write_text(done.markdown(), encoding="utf-8")
    Path(paths["result"]).write_text(json.dumps(done.to_json(), indent=1), encoding="utf-8")
    return done
