"""Sample posts for human review after every step: :class:`HumanSampling`.

Sampled posts go to a review sink (:mod:`~llmweb_plugin.web.mitigations.review`); approvals and
replacements come back into the web as ``human`` documents, which lowers the synthetic fraction
by adding human documents, not by removing posts.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...store import Record
from ..hooks import WebHook
from ._common import RngLike, as_generator, exact_fraction
from .review import ReviewItem, ReviewQueue, ReviewSink

if TYPE_CHECKING:  # pragma: no cover
    from ...monitor import CollapseMonitor

__all__ = ["HumanSampling"]


class HumanSampling(WebHook):
    """Sample posts for human review after every step; apply decided reviews.

    How many posts of step ``t`` are sampled:

    - ``stratify=None``: over all posts, the cumulative count through step ``t`` is exactly
      ``floor(rate * P_t)`` (``P_t`` posts so far), drawn uniformly among the step's posts;
    - ``stratify="agent"``: the same quota for each agent's own posts;
    - ``stratify="agent_step"``: each (agent, step) stratum of ``n`` posts gets
      ``floor(rate * n)`` plus one more with probability ``rate * n - floor(rate * n)``.

    Draws use the step's ``rng`` over the posts in a stable order, so a seed reproduces the
    sample. Sampled posts go to the ``sink``; if a ``reviewer`` is given it decides at once
    (``None`` = leave pending, ``True``/``"approve"`` = approve, any other ``str`` = replace by
    that text). Then every decided, unapplied item of the run is written back into the web at
    step ``t`` as a ``human`` record (:meth:`ReviewQueue.apply`). The step is annotated with
    ``sampled`` and ``reviewed_applied``; both are read from the sink, so a resumed step reports
    the same numbers.

    Args:
        rate: fraction of posts to sample, in ``[0, 1]``.
        stratify: ``None``, ``"agent"`` or ``"agent_step"``.
        sink: a :class:`JsonlSink` or :class:`QdrantReviewSink`.
        reviewer: optional automatic reviewer ``ReviewItem -> None | bool | str``.
        reviewer_agent: the agent name of the ``human`` records.
        name: the hook's name.
    """

    def __init__(self, rate: float, *, sink: ReviewSink, stratify: str | None = None,
                 reviewer: Callable[[ReviewItem], Any] | None = None,
                 reviewer_agent: str = "human", name: str = "human_sampling") -> None:
        self._rate = exact_fraction(rate, "rate")
        if not 0 <= self._rate <= 1:
            raise ValueError(f"rate must be in [0, 1]; got {rate}")
        if stratify not in (None, "agent", "agent_step"):
            raise ValueError(f"stratify must be None, 'agent' or 'agent_step'; got {stratify!r}")
        if reviewer is not None and not callable(reviewer):
            raise TypeError("reviewer must be a callable ReviewItem -> None | bool | str")
        self.rate = rate
        self.stratify = stratify
        self.queue = ReviewQueue(sink, reviewer_agent=reviewer_agent)
        self.sink = sink
        self.reviewer = reviewer
        self.name = name

    def select(self, posts: Sequence[Record], *, previous_counts: Mapping[str, int],
               rng: RngLike) -> list[Record]:
        """The posts of one step to sample.

        Args:
            posts: the step's posts.
            previous_counts: posts per agent before this step (for the cumulative quotas).
            rng: the step's random generator.
        """
        gen = as_generator(rng)
        ordered = sorted(posts, key=lambda r: (r.agent, r.index, r.point_id))
        if self.stratify is None:
            strata = {"": ordered}
            before = {"": sum(previous_counts.values())}
        else:
            strata = defaultdict(list)
            for r in ordered:
                strata[r.agent].append(r)
            before = {a: int(previous_counts.get(a, 0)) for a in strata}
        out: list[Record] = []
        for key in sorted(strata):
            group = strata[key]
            n = len(group)
            if self.stratify == "agent_step":
                exact = self._rate * n
                k = math.floor(exact)
                if gen.random() < float(exact - k):
                    k += 1
            else:
                p0 = before[key]
                k = math.floor(self._rate * (p0 + n)) - math.floor(self._rate * p0)
            k = min(k, n)
            if k:
                idx = sorted(int(i) for i in gen.choice(n, size=k, replace=False))
                out.extend(group[i] for i in idx)
        return out

    def after_step(self, *, step: int, posts: Sequence[Record], monitor: CollapseMonitor,
                   rng: np.random.Generator) -> None:
        """Sample this step's posts, auto-review them, apply decided reviews (failures raise)."""
        monitor.flush()
        run_id = monitor.run_id
        posts = [p for p in posts if p.kind == "post" and p.run_id == run_id]
        previous = Counter(r.agent for r in monitor.store.records(run_id, kind="post",
                                                                  before_step=step))
        chosen = self.select(posts, previous_counts=previous, rng=rng)
        self.sink.add(chosen, sampled_step=step)
        if self.reviewer is not None:
            for item in self.queue.items(run_id):
                if item.sampled_step != step or item.status != "pending":
                    continue
                decision = self.reviewer(item)
                if decision is None or decision is False:
                    continue
                if decision is True or decision == "approve":
                    self.queue.approve(item.id)
                elif isinstance(decision, str):
                    self.queue.replace(item.id, decision)
                else:
                    raise TypeError(f"reviewer returned {type(decision).__name__}; expected "
                                    "None, a bool or a str")
        items = self.queue.items(run_id)
        sampled = sum(1 for it in items if it.sampled_step == step)
        pending = sum(1 for it in items if it.status == "pending")
        applied = self.queue.apply(monitor, step)
        monitor.annotate(step, sampled=sampled, reviewed_applied=applied)
        monitor.log_event("human_sampling", step=step, sampled=sampled, applied=applied,
                          pending=pending, mitigation=self.name)

    def __repr__(self) -> str:
        return f"HumanSampling(rate={self.rate}, stratify={self.stratify!r}, sink={self.sink!r})"
