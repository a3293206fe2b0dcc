"""Diversity reports: the paper's three pictures for your own runs, and what the paper lacks.

Modules, top-down (each imports only those below it; :mod:`.data` imports none of them):

* :mod:`.diversity`: :class:`DiversityReport`, built from a store or a live monitor, written as
  HTML, Markdown or JSON; it loads the plots and renderers only when asked for them;
* :mod:`.build`: reads one run from the store and computes its :class:`RunReport`;
* :mod:`.verdict`: the collapse verdict (one run's, or pooled over replicates) and the text
  evidence of what the posts converged onto, as plain data: every output's first section;
* :mod:`.plots` (matplotlib, extra ``[report]``, loaded only when a report is drawn),
  :mod:`.render_html`, :mod:`.render_markdown`: draw and write a :class:`ReportData`;
* :mod:`.mds`: classical multidimensional scaling (the paper's Fig. 3 projection);
* :mod:`.data`: the plain data (:class:`RunReport`, :class:`ReportData`), the one
  first-vs-last ratio (:func:`first_last_ratio`) and :func:`jsonable`.

``import llmweb_plugin.report`` needs numpy and qdrant-client only.
"""

from __future__ import annotations

from .data import (
    RATIO_RULE,
    SERIES,
    FirstLastRatio,
    ReportData,
    RunReport,
    first_last_ratio,
    jsonable,
)
from .diversity import SCHEMA, DiversityReport
from .mds import MDSResult, classical_mds, classical_mds_full

__all__ = [
    "RATIO_RULE",
    "SCHEMA",
    "SERIES",
    "DiversityReport",
    "FirstLastRatio",
    "MDSResult",
    "ReportData",
    "RunReport",
    "classical_mds",
    "classical_mds_full",
    "first_last_ratio",
    "jsonable",
]
