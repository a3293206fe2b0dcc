"""Several metrics at once: :class:`CollapseVerdict` and :func:`collapse_verdict`.

Between-agent convergence (``||D||``, between spread) and within-web diversity (Vendi, mean cosine
distance, distinct-n) are judged separately; the headline says which fell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import _as_float_array, _check_alpha, _check_margin
from ._phrases import _label, _pct
from ._pooled import PooledTrend, pooled_trend
from ._single import CollapseTrend, _trends

#: Verdicts of :func:`collapse_verdict` (see its docstring).
HEADLINE_VERDICTS = ("collapsing", "converging", "narrowing", "diverging", "stable", "inconclusive")
#: Metrics that measure between-agent convergence (lower = agents agree more).
CONVERGENCE_METRICS = ("norm", "normalized_norm", "between_spread")
#: Metrics that measure within-web diversity (lower = less diverse web).
DIVERSITY_METRICS = ("vendi_score", "vendi", "mean_cosine_distance", "distinct_n", "distinct_1",
                     "distinct_2", "distinct_3")
#: Metrics read from per-step records (``StepMetrics`` or dict rows) by :func:`collapse_verdict`.
_ROW_METRICS = ("norm", "between_spread", "vendi_score", "vendi", "mean_cosine_distance",
                "distinct_n", "distinct_1", "distinct_2", "distinct_3")


@dataclass(frozen=True, kw_only=True)
class CollapseVerdict:
    """Headline verdict over several metrics, each with its own :class:`CollapseTrend`.

    Group status, for the convergence group (``||D||``, between spread) and the diversity group
    (Vendi, mean cosine distance, distinct-n) separately: ``"fell"`` (at least one metric
    "collapsing" and none "diverging"), ``"rose"`` (at least one "diverging", none
    "collapsing"), ``"mixed"`` (both), ``"held"`` (every metric "stable"), ``"unclear"`` (no
    significant change, at least one "inconclusive"), ``"absent"`` (no metric of the group).

    Headline ``verdict``:

    - ``"collapsing"``: convergence fell **and** diversity fell;
    - ``"converging"``: convergence fell, diversity did not fall (held, rose, unclear, mixed or
      not measured) - agents agree more but the web did not provably lose diversity (e.g. a
      shared injected source);
    - ``"narrowing"``: diversity fell, convergence did not fall;
    - ``"diverging"``: no metric of either group is "collapsing" and at least one is "diverging";
    - ``"stable"``: every metric of both groups is "stable";
    - ``"inconclusive"``: otherwise (nothing significant and something inconclusive, or no
      convergence/diversity metric at all).

    Metrics of role ``"other"`` get a trend but do not enter the headline.

    Attributes:
        verdict: one of :data:`HEADLINE_VERDICTS`.
        sentence: the headline in words.
        convergence: group status of the convergence metrics.
        diversity: group status of the diversity metrics.
        trends: metric -> :class:`CollapseTrend` (or :class:`PooledTrend` for a metric given
            as replicates), in input order.
        roles: metric -> ``"convergence"``, ``"diversity"`` or ``"other"``.
        alpha: error rate of the intervals.
    """

    verdict: str
    sentence: str
    convergence: str
    diversity: str
    trends: dict[str, CollapseTrend | PooledTrend]
    roles: dict[str, str]
    alpha: float = 0.05

    @property
    def summary(self) -> str:
        """Same as :attr:`sentence`."""
        return self.sentence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        return {"verdict": self.verdict, "sentence": self.sentence,
                "convergence": self.convergence, "diversity": self.diversity,
                "alpha": self.alpha, "roles": dict(self.roles),
                "trends": {k: v.to_dict() for k, v in self.trends.items()}}


def _columns(history: object, steps: Any) -> tuple[dict[str, np.ndarray], Any]:
    """Per-metric columns and steps from a mapping or a sequence of per-step records."""
    if isinstance(history, Mapping):
        cols = {}
        for k, v in history.items():
            if not isinstance(k, str):
                raise TypeError(f"metric names must be str; got {k!r}")
            if k in ("step", "steps"):
                if steps is None:
                    steps = v
                continue
            arr = np.asarray(v, dtype=object)
            cols[k] = _as_float_array(v, f"history[{k!r}]", 2 if arr.ndim == 2 else 1)
        return cols, steps
    if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
        raise TypeError("history must be a mapping metric -> per-step values, or a sequence of "
                        f"per-step records (StepMetrics or dicts); got {type(history).__name__}")
    rows: list[Mapping[str, Any]] = []
    for i, rec in enumerate(history):
        if isinstance(rec, Mapping):
            d = dict(rec)
        elif hasattr(rec, "as_dict"):
            d = dict(rec.as_dict())
        else:
            raise TypeError(f"history[{i}] must be a StepMetrics or a dict of metric values; "
                            f"got {type(rec).__name__}")
        extras = d.get("extras")
        if isinstance(extras, Mapping):
            d = {**extras, **d}
        rows.append(d)
    names = [k for k in _ROW_METRICS if any(k in r for r in rows)]
    cols = {k: _as_float_array([r.get(k) for r in rows], f"history[*][{k!r}]", 1)
            for k in names}
    if steps is None and rows and all("step" in r for r in rows):
        steps = [r["step"] for r in rows]
    return cols, steps


def _group(verdicts: list[str]) -> str:
    if not verdicts:
        return "absent"
    down, up = "collapsing" in verdicts, "diverging" in verdicts
    if down and up:
        return "mixed"
    if down:
        return "fell"
    if up:
        return "rose"
    return "held" if all(v == "stable" for v in verdicts) else "unclear"


def _listing(trends: Mapping[str, CollapseTrend | PooledTrend], names: list[str]) -> str:
    return ", ".join(f"{_label(k)} {_pct(trends[k].relative_change)}"
                     + ("" if trends[k].verdict in ("collapsing", "diverging", "stable")
                        else f" {trends[k].verdict}") for k in names)


def _headline(trends: Mapping[str, CollapseTrend | PooledTrend], roles: Mapping[str, str],
              margin: float) -> tuple[str, str, str, str]:
    conv = [k for k in trends if roles[k] == "convergence"]
    div = [k for k in trends if roles[k] == "diversity"]
    cs = _group([trends[k].verdict for k in conv])
    ds = _group([trends[k].verdict for k in div])
    C, V = _listing(trends, conv), _listing(trends, div)
    if cs == "fell" and ds == "fell":
        return ("collapsing", (f"collapsing: agents agree more ({C}) and the web's diversity fell "
                f"({V})"), cs, ds)
    if cs == "fell":
        why = {
            "held": f"but the web's diversity held ({V}): convergence without diversity loss "
                    "(e.g. a shared injected source)",
            "rose": f"but the web's diversity rose ({V}): convergence without diversity loss "
                    "(e.g. a shared injected source)",
            "unclear": f"but a fall in the web's diversity is not shown ({V}): convergence, "
                       "not (yet) collapse",
            "mixed": f"but the diversity metrics disagree ({V}): convergence, not clearly collapse",
            "absent": "but no diversity metric was given (Vendi, mean cosine distance or "
                      "distinct-n), so diversity loss is untested: convergence, not collapse",
        }[ds]
        return "converging", f"converging: agents agree more ({C}) {why}", cs, ds
    if ds == "fell":
        why = {"held": f"while agents did not converge ({C})",
               "rose": f"while agents drew apart ({C})",
               "unclear": f"while agents' convergence is not shown ({C})",
               "mixed": f"while the convergence metrics disagree ({C})",
               "absent": "(no convergence metric given)"}[cs]
        # only a measured absence of convergence supports "not towards each other"
        tail = ("every agent narrows, not towards each other" if cs in ("held", "rose") else
                "the web narrows; whether the agents converge is not shown")
        return "narrowing", f"narrowing: the web's diversity fell ({V}) {why}: {tail}", cs, ds
    risen = [k for k in conv + div if trends[k].verdict == "diverging"]
    if risen:
        return ("diverging", f"diverging: {_listing(trends, risen)} rose and nothing fell", cs, ds)
    both = conv + div
    if both and all(trends[k].verdict == "stable" for k in both):
        return ("stable", (f"stable: no metric changed by more than {100 * margin:g}% "
                f"({_listing(trends, both)})"), cs, ds)
    if not both:
        return ("inconclusive", ("inconclusive: no convergence or diversity metric given "
                f"(known: {', '.join(CONVERGENCE_METRICS + DIVERSITY_METRICS)})"), cs, ds)
    return ("inconclusive", (f"inconclusive: no metric shows a clear trend "
            f"({_listing(trends, both)})"), cs, ds)


def collapse_verdict(history: object, *, steps: Sequence[float] | np.ndarray | None = None,
                     alpha: float = 0.05, rng: np.random.Generator | int | None = None,
                     margin: float = 0.10,
                     roles: Mapping[str, str] | None = None) -> CollapseVerdict:
    """Which fell: between-agent convergence, within-web diversity, or both?

    Args:
        history: either a mapping ``metric -> per-step values`` (a ``"step"`` or ``"steps"``
            key is taken as the steps), or a sequence of per-step records - ``StepMetrics``
            (``CollapseMonitor.history()``) or dicts such as the report's per-step rows - from
            which the known metrics present are read (``norm``, ``between_spread``,
            ``vendi_score``, ``mean_cosine_distance``, ``distinct_1/2/3``, ``distinct_n``; also
            inside ``extras``) with their ``step``. Replicates (seeds, runs of one condition):
            in a mapping, give a metric's values with shape ``(n_replicates, n_steps)`` on the
            shared ``steps`` (NaN where a replicate has no value); that metric gets a
            :class:`PooledTrend` (:func:`pooled_trend`, with its band) and the headline uses
            the pooled verdicts.
        steps: the steps, if not in ``history``.
        alpha, rng, margin: as in :func:`collapse_trend`.
        roles: overrides or additions, metric -> ``"convergence"`` | ``"diversity"`` |
            ``"other"``. Defaults: :data:`CONVERGENCE_METRICS` and :data:`DIVERSITY_METRICS`;
            any other metric is ``"other"``. Every metric is read as "higher = more diverse".

    Returns:
        A frozen :class:`CollapseVerdict` (rules in its docstring).

    Raises:
        TypeError / ValueError: on malformed input (not on short, NaN or constant data).

    Example:
        >>> import numpy as np
        >>> g = np.random.default_rng(1)
        >>> fall = np.linspace(1.0, 0.6, 30) + g.normal(0, 0.02, 30)
        >>> held = 5 + g.normal(0, 0.02, 30)
        >>> collapse_verdict({"norm": fall, "vendi_score": held}, rng=0).verdict
        'converging'
    """
    alpha, margin = _check_alpha(alpha), _check_margin(margin)
    cols, steps = _columns(history, steps)
    role_of: dict[str, str] = {}
    extra = dict(roles or {})
    for k, v in extra.items():
        if v not in ("convergence", "diversity", "other"):
            raise ValueError(f"roles[{k!r}] must be 'convergence', 'diversity' or 'other'; "
                             f"got {v!r}")
    gen = np.random.default_rng(rng)
    trends: dict[str, CollapseTrend | PooledTrend] = {}
    for k, y in cols.items():
        role_of[k] = extra.get(k, "convergence" if k in CONVERGENCE_METRICS
                               else "diversity" if k in DIVERSITY_METRICS else "other")
        if y.ndim == 2:
            trends[k] = pooled_trend(y, steps=steps, alpha=alpha, rng=gen, metric=k,
                                     higher_is_diverse=True, margin=margin)
        else:
            trends[k] = _trends(y[None, :], steps, alpha=alpha, rng=gen, metric=k,
                                higher_is_diverse=True, margin=margin)[0]
    verdict, sentence, cs, ds = _headline(trends, role_of, margin)
    return CollapseVerdict(verdict=verdict, sentence=sentence, convergence=cs, diversity=ds,
                           trends=trends, roles=role_of, alpha=alpha)
