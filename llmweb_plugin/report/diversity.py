"""Diversity reports: the paper's three pictures for your own runs, and what the paper lacks.

A :class:`DiversityReport` is built from a :class:`~llmweb_plugin.store.WebStore` and one or
more run ids (it reads everything from Qdrant, so a report can be made later, by another process,
from a folder or a server) or from a live :class:`~llmweb_plugin.monitor.CollapseMonitor` (which
adds its events, alarms and token usage). Every number comes from the core metrics
(:func:`~llmweb_plugin.metrics.step_metrics`, :func:`~llmweb_plugin.metrics.spread`,
:func:`~llmweb_plugin.metrics.mean_cosine_distance`, :func:`~llmweb_plugin.metrics.vendi_score`,
:func:`~llmweb_plugin.metrics.distinct_n`) applied to the stored vectors and texts.

Every output opens with the verdict (:meth:`DiversityReport.verdict`): is the web collapsing
(agents converging *and* the web's diversity falling), with intervals, and the text evidence of
what the posts converged onto.

Outputs: one self-contained HTML file (``to_html``), Markdown with the plots as PNG files beside
it (``to_markdown``), and the numbers as a JSON-ready dict (``to_json``, schema
``llmweb.report/1``). Plots need matplotlib (``pip install 'llmweb-plugin[report]'``).

Conventions read from the stored records (all optional):

- response ``metadata.context_size``: the number of retrieved items ``k_t`` (reported per step);
- response ``metadata.query``: the question asked (distinct values are listed in the settings);
- response ``metadata.usage_input_tokens`` / ``metadata.usage_output_tokens``: token usage,
  summed per agent when no live monitor is given (a ``metadata.usage`` mapping, as
  ``llmweb_langchain``'s handler writes it, is read too, once per ``metadata.lc_run_id``);
- ``metadata.mitigation`` on any record: the mitigation that produced or changed it, counted per
  step and value (see ``mitigation_keys``); ``external`` and ``human`` records are counted per step.

Example:
    >>> import numpy as np, llmweb_plugin as lw
    >>> store = lw.WebStore(":memory:", embedder=None, dim=2, collection="doc")
    >>> recs = [lw.Record(text=f"{a} at {t}", run_id="r1", agent=a, step=t, index=i,
    ...                   vector=np.array([1.0, (t + i) * (1 if a == "a" else -1) / 4]))
    ...         for t in (1, 2) for a in ("a", "b") for i in range(2)]
    >>> store.upsert(recs)
    8
    >>> rep = DiversityReport.from_store(store, run_id="r1")
    >>> [round(s["norm"], 4) for s in rep.to_json()["runs"][0]["per_step"]]
    [0.9755, 1.481]
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..store import KINDS, WebStore
from .build import build_run
from .data import ReportData, RunReport, jsonable
from .summarised import build_run_summarised
from .verdict import report_verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import CollapseMonitor

__all__ = ["SCHEMA", "DiversityReport"]

logger = logging.getLogger(__name__)

SCHEMA = "llmweb.report/1"


class DiversityReport:
    """A diversity report over one or several runs (build with ``from_store``/``from_monitor``).

    Attributes:
        runs: one :class:`RunReport` per run, in the order asked.
        groups: group name -> run ids (replicates of one condition); plots draw a mean +- s.d.
            band per group. Without groups, several runs form one group ``"all runs"`` whose
            range (min to max) is shaded.
        groups_given: whether ``groups`` was passed (else it is the default).
        title: the report's title.
        generated_at: ISO-8601 UTC time the report was computed.
    """

    def __init__(self, runs: Sequence[RunReport], *, groups: Mapping[str, Sequence[str]] | None
                 = None, title: str | None = None) -> None:
        runs = list(runs)
        if not runs:
            raise ValueError("a DiversityReport needs at least one run")
        ids = [r.run_id for r in runs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"run ids must be distinct; got {ids}")
        self.groups_given = groups is not None
        groups_: dict[str, list[str]]
        if groups is None:
            groups_ = {"all runs": ids} if len(runs) > 1 else {}
        else:
            if isinstance(groups, str) or not isinstance(groups, Mapping):
                raise TypeError("groups must be a mapping {name: [run ids]}")
            groups_ = {str(g): [str(x) for x in members] for g, members in groups.items()}
            for g, members in groups_.items():
                unknown = sorted(set(members) - set(ids))
                if unknown or not members:
                    raise ValueError(f"group {g!r} names runs {unknown or members} that are not in "
                                     f"this report (runs: {ids})")
        self.runs: tuple[RunReport, ...] = tuple(runs)
        self.groups: dict[str, list[str]] = groups_
        self.title = title or ("Diversity report: " + ", ".join(ids[:4])
                               + (" ..." if len(ids) > 4 else ""))
        self.generated_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._figures: dict[str, bytes] | None = None
        self._verdict: dict[str, Any] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_store(
        cls,
        store: WebStore,
        run_id: str | None = None,
        *,
        run_ids: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        run_settings: Mapping[str, Mapping[str, Any]] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        metric_kinds: Sequence[str] = ("response",),
        n_examples: int = 2,
        mitigation_keys: Sequence[str] = ("mitigation",),
        max_mds_points: int = 2000,
        title: str | None = None,
    ) -> DiversityReport:
        """Read one or several runs from a store and compute the report.

        Args:
            store: the :class:`~llmweb_plugin.store.WebStore` holding the runs.
            run_id: one run; or give ``run_ids``.
            run_ids: several runs to compare (e.g. with and without a mitigation).
            settings: settings shown for every run (e.g. the model names, beta, temperature),
                merged over the settings ``llmweb run`` kept with each run in the store.
            run_settings: per-run settings, ``{run_id: {...}}``, merged over ``settings``.
            groups: ``{name: [run ids]}``: runs that are replicates of one condition; each
                group gets a mean +- s.d. band. Default: one band over all runs (if several).
            metric_kinds: the record kinds the statistics are computed over.
            n_examples: example texts per agent at the first and last step.
            mitigation_keys: metadata keys that mark records made or changed by a mitigation.
            max_mds_points: at most this many points enter the MDS (thinned evenly).
            title: the report's title.

        Raises:
            LookupError: a run is not in the collection.
            ValueError: a run has no records of ``metric_kinds``; bad arguments.
        """
        if not isinstance(store, WebStore):
            raise TypeError(f"store must be a WebStore; got {type(store).__name__}")
        if (run_id is None) == (run_ids is None):
            raise ValueError("pass run_id='...' or run_ids=[...], exactly one of them")
        ids = [run_id] if run_id is not None else list(run_ids or [])
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a list of run ids, not a string; use run_id=")
        if not ids:
            raise ValueError("run_ids is empty; name at least one run")
        kinds = tuple(metric_kinds)
        bad = set(kinds) - set(KINDS)
        if bad or not kinds:
            raise ValueError(f"metric_kinds must be some of {KINDS}; got {kinds}")
        if n_examples < 0:
            raise ValueError(f"n_examples must be >= 0; got {n_examples}")
        runs = []
        for rid in ids:  # from the run's summaries when it has them, else from every record
            kw = dict(metric_kinds=kinds, n_examples=n_examples, max_mds_points=max_mds_points,
                      given_settings={**(settings or {}), **((run_settings or {}).get(rid, {}))},
                      mitigation_keys=tuple(mitigation_keys))
            runs.append(build_run_summarised(store, rid, **kw) or build_run(store, rid, **kw))
        return cls(runs, groups=groups, title=title)

    @classmethod
    def from_monitor(
        cls,
        monitor: CollapseMonitor | Sequence[CollapseMonitor],
        *,
        settings: Mapping[str, Any] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        n_examples: int = 2,
        mitigation_keys: Sequence[str] = ("mitigation",),
        max_mds_points: int = 2000,
        title: str | None = None,
    ) -> DiversityReport:
        """The report of a live monitor's run (flushed first), with its events, alarms and usage.

        Args:
            monitor: a :class:`~llmweb_plugin.monitor.CollapseMonitor`, or several to compare.
            settings: settings shown for the run(s).
            groups, n_examples, mitigation_keys, max_mds_points, title: as in :meth:`from_store`.
        """
        from ..monitor import CollapseMonitor

        if isinstance(monitor, CollapseMonitor):
            mons = [monitor]
        elif isinstance(monitor, (list, tuple)):
            mons = list(monitor)
        else:
            mons = []
        if not mons or not all(isinstance(m, CollapseMonitor) for m in mons):
            raise TypeError("from_monitor takes a CollapseMonitor or a list of them")
        runs = []
        for mon in mons:
            mon.flush()
            runs.append(build_run(
                mon.store, mon.run_id, metric_kinds=mon.metric_kinds,
                given_settings=dict(settings or {}), n_examples=n_examples,
                mitigation_keys=tuple(mitigation_keys), max_mds_points=max_mds_points,
                monitor=mon,
            ))
        return cls(runs, groups=groups, title=title)

    # ------------------------------------------------------------------ read-outs
    def verdict(self) -> dict[str, Any]:
        """The report's headline verdict as JSON-ready data (the first section of every output).

        One run: its :class:`~llmweb_plugin.trend.CollapseVerdict` (``to_dict()``: ``verdict``,
        ``sentence``, ``convergence``, ``diversity``, per-metric ``trends`` with intervals).
        Several runs: a pooled verdict per group of replicates (each metric's trend a
        :class:`~llmweb_plugin.trend.PooledTrend` with its band). Always with ``per_run``
        verdicts and ``evidence`` (shared n-grams and near-duplicate share at the first and
        last step of each run); rules in :func:`llmweb_plugin.report.verdict.report_verdict`.
        """
        if self._verdict is None:
            self._verdict = report_verdict(self.runs, self.groups, self.groups_given)
        return self._verdict

    def data(self) -> ReportData:
        """The report as plain data: what the plots and renderers read."""
        return ReportData(runs=self.runs, groups=self.groups, groups_given=self.groups_given,
                          title=self.title, generated_at=self.generated_at,
                          llmweb_version=__version__, verdict=self.verdict())

    def run(self, run_id: str) -> RunReport:
        """The run ``run_id``.

        Raises:
            LookupError: it is not in this report.
        """
        return self.data().run(run_id)

    @property
    def warnings(self) -> list[str]:
        """Every run's warnings, in run order."""
        return self.data().warnings

    def comparison(self) -> dict[str, Any]:
        """Per group: mean, s.d., min and max over its runs at each step, for each series."""
        return self.data().comparison()

    def to_json(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The report's numbers as a JSON-ready dict (NaN -> ``None``); also written if ``path``."""
        data = jsonable({
            "schema": SCHEMA,
            "title": self.title,
            "generated_at": self.generated_at,
            "llmweb_version": __version__,
            "verdict": self.verdict(),
            "runs": [r.as_dict() for r in self.runs],
            "groups": self.groups,
            "comparison": self.comparison(),
            "warnings": self.warnings,
        })
        if path is not None:
            Path(path).write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
        return data

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """One self-contained HTML page (plots inline, no scripts); written if ``path``.

        Raises:
            ImportError: matplotlib is missing (``pip install 'llmweb-plugin[report]'``).
        """
        from .render_html import render_html

        page = render_html(self.data(), self.figures())
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def to_markdown(self, path: str | os.PathLike[str]) -> str:
        """Markdown at ``path``, with the plots as PNG files in ``<stem>_files/`` beside it.

        Returns:
            The Markdown text.
        """
        from .render_markdown import render_markdown

        p = Path(path)
        text = render_markdown(self.data(), self.figures(), p)
        p.write_text(text, encoding="utf-8")
        return text

    def figures(self) -> dict[str, bytes]:
        """The report's plots as PNG bytes, by name."""
        from .plots import figures

        if self._figures is None:
            self._figures = figures(self.data())
        return dict(self._figures)

    def __repr__(self) -> str:
        return (f"DiversityReport(runs={[r.run_id for r in self.runs]}, "
                f"groups={list(self.groups)})")
