"""Fresh external documents (kind ``external``) into the web: :class:`ExternalInjection`.

At a rate per step, as a fraction of the step's posts, or exactly as many as keep the synthetic
share of the web below a bound; :func:`inject_on_alarm` fires it from a
:class:`~llmweb_plugin.monitor.CollapseMonitor` alarm in apps that do not run a web graph. Which
documents were used is read back from the store, so a resumed run injects nothing twice.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ...store import WEB_KINDS, Record, WebStore
from ..hooks import WebHook
from ._common import RngLike, as_generator, exact_fraction
from .sources import as_text_source

if TYPE_CHECKING:  # pragma: no cover
    from ...monitor import AlarmEvent, CollapseMonitor

__all__ = ["ExternalInjection", "InjectionStats", "inject_on_alarm"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InjectionStats:
    """Counters of an :class:`ExternalInjection` (this process only; the store is the truth)."""

    injected: int = 0
    shortfall: int = 0
    steps: int = 0


class ExternalInjection(WebHook):
    """Add fresh external documents (kind ``external``) to the web after every step.

    The step's count ``k`` is the largest of the rules given:

    - ``per_step``: exactly that many;
    - ``fraction_of_posts=f``: the cumulative count through step ``t`` is exactly
      ``floor(f * posts_through_t)``, i.e. ``k_t = floor(f P_t) - floor(f P_{t-1})``;
    - ``max_synthetic_fraction=b``: the fewest documents so that
      ``posts / web <= b`` once the step's posts are in: ``k = max(0, ceil(P / b) - W)``
      (``P`` posts and ``W`` web documents of the run, counted in the store).

    Documents are recorded at step ``t`` (the web of step ``t + 1`` holds them) with agent
    ``agent``, index = their position in the source, and metadata ``source``, ``source_index``,
    ``mitigation``. Their order is the source's (``order="sequential"``) or drawn with the step's
    ``rng`` among those not injected yet (``order="random"``, reads the whole source). Which
    documents were used is read back from the store, so a resumed run continues where it stopped.
    An exhausted source is logged, counted (``stats.shortfall``, event ``injection_exhausted``)
    and not an error.

    Args:
        source: an iterable of ``str`` (a ``str`` itself is a path), a path to a UTF-8 file with
            one document per line (empty lines skipped), or a :class:`QdrantSource`.
        per_step: documents per step.
        fraction_of_posts: documents per post, ``>= 0``.
        max_synthetic_fraction: the bound ``b`` in ``(0, 1]`` on ``posts / web``.
        agent: the agent name of the external records.
        on_alarm_only: stay idle until the monitor raises a collapse alarm (or the store already
            holds this hook's documents for the run), then inject every step.
        order: ``"sequential"`` or ``"random"``.
        name: the hook's name in events.

    Raises:
        ValueError: no rule given, or a rule out of range.
    """

    def __init__(
        self,
        source: Any,
        *,
        per_step: int | None = None,
        fraction_of_posts: float | None = None,
        max_synthetic_fraction: float | None = None,
        agent: str = "external",
        on_alarm_only: bool = False,
        order: str = "sequential",
        name: str = "external_injection",
    ) -> None:
        if per_step is None and fraction_of_posts is None and max_synthetic_fraction is None:
            raise ValueError(
                "ExternalInjection needs a rate: per_step=k, fraction_of_posts=f and/or "
                "max_synthetic_fraction=b"
            )
        if per_step is not None and (isinstance(per_step, bool) or int(per_step) != per_step
                                     or per_step < 0):
            raise ValueError(f"per_step must be a non-negative integer; got {per_step!r}")
        self._frac = None if fraction_of_posts is None else exact_fraction(fraction_of_posts,
                                                                   "fraction_of_posts")
        if self._frac is not None and self._frac < 0:
            raise ValueError(f"fraction_of_posts must be >= 0; got {fraction_of_posts}")
        self._bound = None if max_synthetic_fraction is None else exact_fraction(
            max_synthetic_fraction, "max_synthetic_fraction")
        if self._bound is not None and not 0 < self._bound <= 1:
            raise ValueError(
                f"max_synthetic_fraction must be in (0, 1]; got {max_synthetic_fraction}"
            )
        if order not in ("sequential", "random"):
            raise ValueError(f"order must be 'sequential' or 'random'; got {order!r}")
        if not isinstance(agent, str) or not agent:
            raise ValueError("agent must be a non-empty string")
        self.source = as_text_source(source)
        self.per_step = None if per_step is None else int(per_step)
        self.fraction_of_posts = fraction_of_posts
        self.max_synthetic_fraction = max_synthetic_fraction
        self.agent = agent
        self.on_alarm_only = bool(on_alarm_only)
        self.order = order
        self.name = name
        self._lock = threading.Lock()
        self._injected = 0
        self._shortfall = 0
        self._steps = 0
        self._warned_exhausted = False
        self._alarm_cursor: int = 0
        self._alarm_used: set[int] = set()

    # ------------------------------------------------------------------ accounting
    @property
    def stats(self) -> InjectionStats:
        """What this object injected in this process."""
        with self._lock:
            return InjectionStats(injected=self._injected, shortfall=self._shortfall,
                                  steps=self._steps)

    def planned(self, *, posts_total: int, posts_step: int, web_total: int) -> int:
        """How many documents the rules ask for, given the run's counts after the step's posts.

        Args:
            posts_total: posts in the web through this step, ``P_t``.
            posts_step: posts of this step, ``P_t - P_{t-1}``.
            web_total: web documents through this step (seed, external, human, post).
        """
        k = 0
        if self.per_step is not None:
            k = max(k, self.per_step)
        if self._frac is not None:
            k = max(k, math.floor(self._frac * posts_total)
                    - math.floor(self._frac * (posts_total - posts_step)))
        if self._bound is not None and posts_total > 0:
            k = max(k, math.ceil(Fraction(posts_total) / self._bound) - web_total)
        return max(k, 0)

    @staticmethod
    def _source_index(r: Record) -> int:
        si = r.metadata.get("source_index")
        return int(si) if isinstance(si, (int, float)) and not isinstance(si, bool) else r.index

    def _used(self, store: WebStore, run_id: str, before_step: int | None) -> list[int]:
        recs = store.records(run_id, agent=self.agent, kind="external", before_step=before_step)
        return [self._source_index(r) for r in recs]

    def _choose(self, used: Sequence[int], k: int, rng: np.random.Generator | None,
                cursor_floor: int = 0) -> list[tuple[int, str]]:
        if k <= 0:
            return []
        if self.order == "sequential":
            start = max([cursor_floor, *[u + 1 for u in used]])
            out = []
            for i in range(start, start + k):
                text = self.source.get(i)
                if text is None:
                    break
                out.append((i, text))
            return out
        pool = self.source.all()
        taken = set(used)
        free = [i for i in range(len(pool)) if i not in taken]
        if not free:
            return []
        gen = rng if rng is not None else np.random.default_rng(len(taken))
        pick = gen.choice(len(free), size=min(k, len(free)), replace=False)
        return [(free[int(j)], pool[free[int(j)]]) for j in pick]

    def _record(self, monitor: CollapseMonitor, step: int, chosen: list[tuple[int, str]]) -> None:
        for idx, text in chosen:
            monitor.record(text, agent=self.agent, step=step, kind="external", index=idx,
                           metadata={"source": self.source.label, "source_index": idx,
                                     "mitigation": self.name})

    def _note(self, monitor: CollapseMonitor, step: int, requested: int, done: int) -> None:
        short = requested - done
        with self._lock:
            self._injected += done
            self._shortfall += short
            self._steps += 1
            warn = short > 0 and not self._warned_exhausted
            if short > 0:
                self._warned_exhausted = True
        if short > 0:
            monitor.log_event("injection_exhausted", step=step, requested=requested,
                              injected=done, source=self.source.label, mitigation=self.name)
            if warn:
                logger.warning("llmweb: external source %s is exhausted at step %d (%d of %d "
                               "documents injected); further shortfalls are counted",
                               self.source.label, step, done, requested)

    # ------------------------------------------------------------------ hook
    def after_step(self, *, step: int, posts: Sequence[Record], monitor: CollapseMonitor,
                   rng: np.random.Generator) -> None:
        """Inject this step's documents (see the class docstring).

        A failure (e.g. the store is unreachable) raises: the web fails the step, which a
        checkpointed run resumes; a mitigation that silently did nothing would bias the
        measurement. An exhausted source is not a failure.
        """
        monitor.flush()
        store, run_id = monitor.store, monitor.run_id
        web = store.web(run_id, before_step=step + 1)  # one read: A(t) after the step's posts
        mine = [r for r in web if r.kind == "external" and r.agent == self.agent]
        used = [self._source_index(r) for r in mine if r.step < step]
        if self.on_alarm_only and not monitor.alarms and not used:
            monitor.annotate(step, injected=0)
            return
        p_total = sum(r.kind == "post" for r in web)
        p_step = sum(r.kind == "post" and r.step == step for r in web)
        # a resumed step may already hold some of its own documents: do not count them twice
        own_now = sum(r.step == step for r in mine)
        base = len(web) - own_now
        k = self.planned(posts_total=p_total, posts_step=p_step, web_total=base)
        chosen = self._choose(used, k, rng)
        self._record(monitor, step, chosen)
        done = len(chosen)
        self._note(monitor, step, k, done)
        frac = p_total / (base + done) if base + done else None
        monitor.annotate(step, injected=done, synthetic_fraction_after_injection=frac)
        monitor.log_event("injection", step=step, requested=k, injected=done,
                          posts=p_total, web_size=base + done, synthetic_fraction=frac,
                          mitigation=self.name)

    # ------------------------------------------------------------------ outside a graph
    def inject(self, monitor: CollapseMonitor, *, step: int, n: int | None = None,
               rng: RngLike = None) -> int:
        """Inject now, outside a web graph (e.g. from an alarm); returns how many were queued.

        Uses ``n`` documents, or what the rules ask for given the store's current counts
        (documents still queued in the monitor are not yet counted). Never flushes, so it is
        safe inside ``CollapseMonitor(on_alarm=...)`` callbacks, which run on the monitor's
        worker thread.

        Args:
            monitor: the monitor of the run to inject into.
            step: the step to record the documents at.
            n: how many; default: the rules.
            rng: for ``order="random"``.
        """
        store, run_id = monitor.store, monitor.run_id
        if n is None:
            p_total = store.count(run_id, kind="post")
            p_step = len(store.records(run_id, kind="post", step=step))
            web = store.count(run_id, kind=list(WEB_KINDS))
            n = self.planned(posts_total=p_total, posts_step=p_step, web_total=web)
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        with self._lock:
            used = sorted(set(self._used(store, run_id, None)) | self._alarm_used)
            cursor = self._alarm_cursor
        chosen = self._choose(used, n, as_generator(rng) if self.order == "random" else None,
                              cursor_floor=cursor)
        with self._lock:
            for idx, _ in chosen:
                self._alarm_used.add(idx)
                self._alarm_cursor = max(self._alarm_cursor, idx + 1)
        self._record(monitor, step, chosen)
        self._note(monitor, step, n, len(chosen))
        monitor.annotate(step, injected=len(chosen))
        monitor.log_event("injection", step=step, requested=n, injected=len(chosen),
                          mitigation=self.name, trigger="manual")
        return len(chosen)

    def __repr__(self) -> str:
        rules = {k: v for k, v in (("per_step", self.per_step),
                                   ("fraction_of_posts", self.fraction_of_posts),
                                   ("max_synthetic_fraction", self.max_synthetic_fraction))
                 if v is not None}
        return f"ExternalInjection(source={self.source.label!r}, {rules})"


def inject_on_alarm(monitor: CollapseMonitor, injection: ExternalInjection, *,
                    n: int | None = None, rng: RngLike = None) -> Callable[[AlarmEvent], None]:
    """Make ``monitor``'s collapse alarms inject external documents (for apps without a graph).

    Sets ``monitor.on_alarm`` to a callback that calls ``injection.inject(monitor,
    step=alarm.step, n=n)`` and then any callback that was set before. Returns the callback.
    Its failures are counted by the monitor (``stats.handler_errors``), never raised. The
    callback runs on the monitor's worker thread and only queues records (no flush).
    """
    previous = monitor.on_alarm
    gen = as_generator(rng)

    def _on_alarm(event: AlarmEvent) -> None:
        try:
            count = injection.inject(monitor, step=event.step, n=n, rng=gen)
            monitor.log_event("alarm_injection", step=event.step, injected=count,
                              mitigation=injection.name)
        finally:
            if previous is not None:
                previous(event)

    monitor.on_alarm = _on_alarm
    return _on_alarm
