"""Mitigations of network-level collapse, as agent-web hooks whose effect is measured.

Three :class:`~llmweb_plugin.web.WebHook`\\ s for ``llmweb_langgraph.create_web_graph``
(``mitigations=[...]``), each usable on its own too:

- :class:`ExternalInjection` adds fresh documents (kind ``external``) from a user-supplied source
  (an iterable of strings, a file of lines, or :class:`QdrantSource`) at a rate per step, as a
  fraction of the step's posts, or exactly as many as keep the synthetic share of the web below a
  bound. :func:`inject_on_alarm` fires it from a :class:`~llmweb_plugin.monitor.CollapseMonitor`
  alarm in apps that do not run a web graph.
- :class:`PromptVariation` varies each agent's request per step (persona as system prompt,
  paraphrased query template, temperature schedule) and records what it chose in the request's
  metadata, which the web stores with the agent's records. ``llmweb_langchain.middleware`` wraps
  it as LangChain ``create_agent`` middleware.
- :class:`HumanSampling` samples posts into a review queue (:class:`JsonlSink` or
  :class:`QdrantReviewSink`); approvals and replacements flow back into the web as kind
  ``human`` records with ``review_of=<post id>`` (:class:`ReviewQueue`).

Accounting (exact, read back from the store so a resumed run counts nothing twice):

- the synthetic fraction of the web is ``posts / (seed + external + human + post)``, the
  monitor's definition. A reviewed post stays in the web as a post (the web only grows, as the
  paper's does); its approved or replaced version is added as a ``human`` document, so review
  lowers the synthetic fraction by adding human documents, not by removing posts.
- every step a hook acts on, it calls ``monitor.annotate(step, ...)`` (``injected`` and
  ``synthetic_fraction_after_injection``, read from the store right after the injection, before
  any later hook of the step; ``sampled`` and ``reviewed_applied``) and
  ``monitor.log_event(...)``, so the counts appear in ``monitor.history()`` extras and in
  reports. Inside a web the step's ``synthetic_fraction`` extra is the store's, after all hooks.

Determinism: every choice is a function of the store's content, the step and the ``rng`` the web
passes (derived from its seed, the step and the hook's position), so a run resumed from a
checkpoint repeats a step's injection, sampling and variation exactly and, since point ids derive
from provenance, overwrites instead of duplicating.

Example:
    >>> from llmweb_plugin.web import AgentRequest
    >>> pv = PromptVariation(personas=["You are terse.", "You are a historian."],
    ...                      temperature_schedule=[0.2, 0.9])
    >>> req = pv.vary(AgentRequest(agent="a", step=1, query="Why?"), rng=0)
    >>> sorted(req.metadata)
    ['mitigation', 'persona', 'persona_index', 'temperature']
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ...store import WEB_KINDS, Record, WebStore, point_id
from ..hooks import AgentRequest, WebHook

if TYPE_CHECKING:  # pragma: no cover
    from ...monitor import AlarmEvent, CollapseMonitor

__all__ = [
    "ExternalInjection",
    "HumanSampling",
    "JsonlSink",
    "PromptVariation",
    "QdrantReviewSink",
    "QdrantSource",
    "ReviewItem",
    "ReviewQueue",
    "ReviewSink",
    "Variation",
    "inject_on_alarm",
]

logger = logging.getLogger(__name__)

RngLike = np.random.Generator | int | None


def _exact(x: float, name: str) -> Fraction:
    """A rate as the simplest fraction within float precision (0.3 -> 3/10, 1/3 -> 1/3)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating, Fraction)):
        raise TypeError(f"{name} must be a number; got {type(x).__name__}")
    if isinstance(x, Fraction):
        return x
    if not math.isfinite(float(x)):
        raise ValueError(f"{name} must be finite; got {x!r}")
    return Fraction(float(x)).limit_denominator(10**9)


# =============================================================================== sources
class _TextSource:
    """An indexable, lazily read sequence of non-empty texts (item ``i`` is always the same)."""

    def __init__(self, make_iter: Callable[[], Iterator[Any]], label: str) -> None:
        self._make_iter = make_iter
        self._it: Iterator[Any] | None = None
        self._buf: list[str] = []
        self._done = False
        self.label = label
        self.skipped: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _pull(self, upto: int | None) -> None:
        # Caller holds the lock. Reads until len(buf) > upto (or to the end when upto is None).
        if self._done:
            return
        if self._it is None:
            self._it = iter(self._make_iter())
        while upto is None or len(self._buf) <= upto:
            try:
                item = next(self._it)
            except StopIteration:
                self._done = True
                return
            if not isinstance(item, str):
                self.skipped["not_a_string"] += 1
                logger.warning("llmweb: external source %s yielded a %s, not a str; skipped",
                               self.label, type(item).__name__)
                continue
            if not item.strip():
                self.skipped["empty_text"] += 1
                continue
            self._buf.append(item)

    def get(self, i: int) -> str | None:
        """Item ``i`` (0-based), or ``None`` if the source has fewer items."""
        with self._lock:
            self._pull(i)
            return self._buf[i] if i < len(self._buf) else None

    def all(self) -> list[str]:
        """Every item (reads a lazy source to its end)."""
        with self._lock:
            self._pull(None)
            return list(self._buf)


class QdrantSource:
    """Documents of another Qdrant collection (their ``page_content``) as an external source.

    The order is stable: a :class:`~llmweb_plugin.store.WebStore` gives its records in
    (step, kind, agent, index) order; a raw ``QdrantClient`` collection is read in point-id order
    (Qdrant's scroll order).

    Args:
        store_or_client: a :class:`~llmweb_plugin.store.WebStore` or a ``QdrantClient``.
        collection: the collection to read; default the WebStore's own collection (required
            with a client).
        run_id: only records of this run (llmweb layout: ``metadata.run_id``).
        kind: only records of this kind (llmweb layout: ``metadata.kind``), e.g. ``"seed"``.
    """

    def __init__(self, store_or_client: Any, collection: str | None = None, *,
                 run_id: str | None = None, kind: str | None = None) -> None:
        self.store_or_client = store_or_client
        self.collection = collection
        self.run_id = run_id
        self.kind = kind
        if not isinstance(store_or_client, WebStore):
            if not hasattr(store_or_client, "scroll"):
                raise TypeError(
                    "QdrantSource needs a WebStore or a qdrant_client.QdrantClient; got "
                    f"{type(store_or_client).__name__}"
                )
            if collection is None:
                raise ValueError("QdrantSource(client, collection=...): name the collection to read")

    def __iter__(self) -> Iterator[Any]:
        src = self.store_or_client
        if isinstance(src, WebStore) and self.collection in (None, src.collection):
            for rec in src.records(self.run_id, kind=self.kind):
                yield rec.text
            return
        from qdrant_client import models

        client = src.client if isinstance(src, WebStore) else src
        collection = self.collection or src.collection
        must: list[Any] = []
        if self.run_id is not None:
            must.append(models.FieldCondition(key="metadata.run_id",
                                              match=models.MatchValue(value=self.run_id)))
        if self.kind is not None:
            must.append(models.FieldCondition(key="metadata.kind",
                                              match=models.MatchValue(value=self.kind)))
        flt = models.Filter(must=must) if must else None
        offset = None
        while True:
            points, offset = client.scroll(collection, scroll_filter=flt, limit=256,
                                           offset=offset, with_payload=True, with_vectors=False)
            for p in points:
                yield (p.payload or {}).get("page_content")
            if offset is None:
                return

    def __repr__(self) -> str:
        return f"QdrantSource(collection={self.collection!r}, run_id={self.run_id!r})"


def _as_source(source: Any) -> _TextSource:
    if isinstance(source, _TextSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"external source file {str(path)!r} does not exist. Pass a file of lines, a "
                "list of strings (a bare str is read as a path) or a QdrantSource."
            )

        def lines() -> Iterator[str]:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    yield line.rstrip("\n").rstrip("\r")

        return _TextSource(lines, f"file:{path}")
    if isinstance(source, QdrantSource):
        return _TextSource(lambda: iter(source), f"qdrant:{source.collection or 'web'}")
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(
            "source must be an iterable of str, a path to a file of lines, or a QdrantSource; "
            f"got {type(source).__name__}"
        )
    if isinstance(source, Sequence):
        items = list(source)
        return _TextSource(lambda: iter(items), "iterable")
    it = iter(source)  # a one-shot iterator or generator: buffered, read lazily once
    return _TextSource(lambda: it, "iterable")


# =============================================================================== store helpers
def _gen(rng: RngLike) -> np.random.Generator:
    return np.random.default_rng(rng)


# =============================================================================== injection
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
        self._frac = None if fraction_of_posts is None else _exact(fraction_of_posts,
                                                                   "fraction_of_posts")
        if self._frac is not None and self._frac < 0:
            raise ValueError(f"fraction_of_posts must be >= 0; got {fraction_of_posts}")
        self._bound = None if max_synthetic_fraction is None else _exact(
            max_synthetic_fraction, "max_synthetic_fraction")
        if self._bound is not None and not 0 < self._bound <= 1:
            raise ValueError(
                f"max_synthetic_fraction must be in (0, 1]; got {max_synthetic_fraction}"
            )
        if order not in ("sequential", "random"):
            raise ValueError(f"order must be 'sequential' or 'random'; got {order!r}")
        if not isinstance(agent, str) or not agent:
            raise ValueError("agent must be a non-empty string")
        self.source = _as_source(source)
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
        chosen = self._choose(used, n, _gen(rng) if self.order == "random" else None,
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
    gen = _gen(rng)

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


# =============================================================================== prompt variation
@dataclass(frozen=True, kw_only=True)
class Variation:
    """What :class:`PromptVariation` chose for one agent at one step.

    Attributes:
        persona: the persona (a system prompt), or ``None``.
        persona_index: its position in ``personas``.
        query_template: the query template (with ``{query}``), or ``None``.
        template_index: its position in ``query_templates``.
        temperature: the temperature, or ``None``.
    """

    persona: str | None = None
    persona_index: int | None = None
    query_template: str | None = None
    template_index: int | None = None
    temperature: float | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The non-empty fields, as stored in the records' metadata."""
        out: dict[str, Any] = {}
        if self.persona is not None:
            out["persona"] = self.persona
            out["persona_index"] = self.persona_index
        if self.query_template is not None:
            out["query_template"] = self.query_template
            out["template_index"] = self.template_index
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out


def _stable_offset(agent: str, size: int) -> int:
    return zlib.crc32(agent.encode("utf-8")) % size if size else 0


class PromptVariation(WebHook):
    """Vary each agent's prompt per step: persona, query wording, temperature.

    ``mode="rotate"`` cycles through the lists, agent ``a`` at step ``t`` taking item
    ``(t - 1 + offset(a)) % len`` (``offset`` = CRC-32 of the agent name, so agents differ at a
    step and the same agent moves on each step); ``mode="random"`` draws each item with the
    step's ``rng``. The persona becomes the system prompt (put before an existing one); a query
    template rewrites the query (``template.format(query=query)``); the temperature comes from
    ``temperature_schedule``: a sequence (rotated or drawn like the others) or a callable
    ``step -> float``. The choice is recorded in ``request.metadata`` (``persona``,
    ``persona_index``, ``query_template``, ``template_index``, ``temperature``).

    Args:
        personas: system prompts to vary over.
        query_templates: templates with a ``{query}`` field.
        temperature_schedule: a sequence of temperatures or a callable ``step -> float``.
        mode: ``"rotate"`` or ``"random"``.
        name: the hook's name.

    Raises:
        ValueError: nothing to vary, a template without ``{query}``, a bad mode or temperature.
    """

    def __init__(
        self,
        personas: Sequence[str] | None = None,
        query_templates: Sequence[str] | None = None,
        temperature_schedule: Sequence[float] | Callable[[int], float] | None = None,
        *,
        mode: str = "rotate",
        name: str = "prompt_variation",
    ) -> None:
        if mode not in ("rotate", "random"):
            raise ValueError(f"mode must be 'rotate' or 'random'; got {mode!r}")
        self.personas = None if personas is None else tuple(personas)
        self.query_templates = None if query_templates is None else tuple(query_templates)
        for label, items in (("personas", self.personas),
                             ("query_templates", self.query_templates)):
            if items is not None:
                if not items:
                    raise ValueError(f"{label} is empty; pass at least one, or None")
                if not all(isinstance(s, str) and s.strip() for s in items):
                    raise ValueError(f"{label} must be non-empty strings")
        for tpl in self.query_templates or ():
            if "{query}" not in tpl:
                raise ValueError(f"query template {tpl!r} has no {{query}} field")
            try:
                tpl.format(query="q")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"query template {tpl!r} must only use the {{query}} field "
                    f"(double other braces): {exc}"
                ) from None
        if temperature_schedule is not None and not callable(temperature_schedule):
            temps = tuple(float(x) for x in temperature_schedule)
            if not temps:
                raise ValueError("temperature_schedule is empty; pass at least one value, or None")
            if any(not math.isfinite(x) or x < 0 for x in temps):
                raise ValueError(f"temperatures must be finite and >= 0; got {temps}")
            temperature_schedule = temps
        if self.personas is None and self.query_templates is None and temperature_schedule is None:
            raise ValueError(
                "PromptVariation needs personas, query_templates and/or temperature_schedule"
            )
        self.temperature_schedule = temperature_schedule
        self.mode = mode
        self.name = name

    def _pick(self, items: Sequence[Any], agent: str, step: int,
              gen: np.random.Generator) -> int:
        if self.mode == "rotate":
            return (int(step) - 1 + _stable_offset(agent, len(items))) % len(items)
        return int(gen.integers(len(items)))

    def choose(self, agent: str, step: int, rng: RngLike = None) -> Variation:
        """The variation of ``agent`` at ``step`` (``rng`` is used in ``"random"`` mode)."""
        gen = _gen(rng)
        persona = pi = tpl = ti = temp = None
        if self.personas is not None:
            pi = self._pick(self.personas, agent, step, gen)
            persona = self.personas[pi]
        if self.query_templates is not None:
            ti = self._pick(self.query_templates, agent, step, gen)
            tpl = self.query_templates[ti]
        sched = self.temperature_schedule
        if sched is not None:
            if callable(sched):
                temp = float(sched(int(step)))
                if not math.isfinite(temp) or temp < 0:
                    raise ValueError(f"temperature_schedule({step}) returned {temp}; need >= 0")
            else:
                temp = float(sched[self._pick(sched, agent, step, gen)])
        return Variation(persona=persona, persona_index=pi, query_template=tpl,
                         template_index=ti, temperature=temp)

    @staticmethod
    def apply(request: AgentRequest, variation: Variation) -> AgentRequest:
        """``request`` with ``variation`` applied and recorded in its metadata."""
        changes: dict[str, Any] = {}
        if variation.persona is not None:
            changes["system_prompt"] = (variation.persona if not request.system_prompt
                                        else f"{variation.persona}\n\n{request.system_prompt}")
        if variation.query_template is not None:
            changes["query"] = variation.query_template.format(query=request.query)
        if variation.temperature is not None:
            changes["temperature"] = variation.temperature
        changes["metadata"] = {**request.metadata, **variation.as_metadata()}
        return replace(request, **changes)

    def vary(self, request: AgentRequest, *, rng: Any) -> AgentRequest:
        """The request with this step's variation (see the class docstring)."""
        req = self.apply(request, self.choose(request.agent, request.step, rng))
        return replace(req, metadata={**req.metadata, "mitigation": self.name})

    def __repr__(self) -> str:
        return (f"PromptVariation(personas={len(self.personas or ())}, "
                f"query_templates={len(self.query_templates or ())}, mode={self.mode!r})")


# =============================================================================== human review
REVIEW_STATUSES = ("pending", "approved", "replaced")


@dataclass(frozen=True, kw_only=True)
class ReviewItem:
    """One sampled post in the review queue.

    Attributes:
        id: the post's point id (also the item's id).
        run_id, agent, step, index: the post's provenance.
        text: the post's text.
        seq: position in the queue (0, 1, ...); the index of its ``human`` record.
        sampled_step: the step at which it was sampled.
        status: ``pending``, ``approved`` or ``replaced``.
        replacement: the reviewer's text, for ``replaced``.
        applied_step: the step its ``human`` record was written at, once applied.
    """

    id: str
    run_id: str
    agent: str
    step: int
    index: int
    text: str
    seq: int
    sampled_step: int
    status: str = "pending"
    replacement: str | None = None
    applied_step: int | None = None

    @property
    def reviewed_text(self) -> str | None:
        """The text that enters the web, once decided."""
        if self.status == "approved":
            return self.text
        if self.status == "replaced":
            return self.replacement
        return None


class ReviewSink(Protocol):
    """Where sampled posts wait for review (:class:`JsonlSink`, :class:`QdrantReviewSink`)."""

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        """Queue posts not queued yet; returns how many were new."""

    def items(self) -> list[ReviewItem]:
        """Every item, by ``seq``."""

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        """Change an item's ``status``/``replacement``/``applied_step``; returns it."""


_ITEM_FIELDS = ("id", "run_id", "agent", "step", "index", "text", "seq", "sampled_step",
                "status", "replacement", "applied_step")


class JsonlSink:
    """An append-only JSON-lines review log (one JSON object per line, never pickle).

    Lines are events: ``{"event": "sampled", ...item}``, ``{"event": "update", "id", ...}``.
    The current queue is the replay of the log, so a process can re-open it; a post sampled
    twice (e.g. by a resumed run) is kept once. A damaged line (a crash mid-write) is skipped
    with a warning and counted in ``bad_lines``.

    Args:
        path: the ``.jsonl`` file (created with its folder when missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._items: dict[str, ReviewItem] = {}
        self.bad_lines = 0
        if self.path.exists():
            self._replay()

    def _replay(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                    kind = ev.pop("event")
                    if kind == "sampled":
                        item = ReviewItem(**{k: ev[k] for k in _ITEM_FIELDS if k in ev})
                        self._items.setdefault(item.id, item)
                    elif kind == "update":
                        iid = ev.pop("id")
                        self._items[iid] = replace(self._items[iid], **ev)
                    else:
                        raise ValueError(f"unknown event {kind!r}")
                except (ValueError, KeyError, TypeError) as exc:
                    self.bad_lines += 1
                    logger.warning("llmweb: skipped bad line %d of review log %s: %s", lineno,
                                   self.path, exc)

    def _append(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for ev in events:
                fh.write(json.dumps(ev, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        with self._lock:
            new = []
            for p in posts:
                if p.point_id in self._items:
                    continue
                item = ReviewItem(id=p.point_id, run_id=p.run_id, agent=p.agent, step=p.step,
                                  index=p.index, text=p.text, seq=len(self._items),
                                  sampled_step=int(sampled_step))
                self._items[item.id] = item
                new.append(item)
            self._append([{"event": "sampled", **asdict(item)} for item in new])
            return len(new)

    def items(self) -> list[ReviewItem]:
        with self._lock:
            return sorted(self._items.values(), key=lambda it: it.seq)

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        with self._lock:
            if item_id not in self._items:
                raise KeyError(item_id)
            item = replace(self._items[item_id], **changes)
            self._append([{"event": "update", "id": item_id, **changes}])
            self._items[item_id] = item
            return item

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, items={len(self._items)})"


class QdrantReviewSink:
    """A review queue in its own Qdrant collection, next to the web's.

    Each sampled post is copied (text, provenance, vector; same point id) into ``collection``
    with metadata ``review`` (``pending``/``approved``/``replaced``), ``review_of``, ``seq``,
    ``sampled_step``, ``replacement`` and ``applied_step``, so reviewers can browse and search it
    with any Qdrant tool.

    With embedded local Qdrant (``":memory:"`` or a folder) one client serves both collections:
    review from the thread that runs the web, or between runs; a Qdrant server has no such limit.

    Args:
        store: the web's :class:`~llmweb_plugin.store.WebStore` (its client and vector size).
        collection: the review collection's name.
    """

    def __init__(self, store: WebStore, collection: str = "llmweb_review") -> None:
        if not isinstance(store, WebStore):
            raise TypeError(f"store must be a WebStore; got {type(store).__name__}")
        if collection == store.collection:
            raise ValueError("the review collection must differ from the web's collection")
        self.web_store = store
        self.collection = collection
        self.review_store = WebStore(client=store.client, collection=collection,
                                     embedder=store.embedder, dim=None if store.embedder
                                     is not None else store.dim)
        self._lock = threading.Lock()

    @staticmethod
    def _to_item(rec: Record) -> ReviewItem:
        m = rec.metadata
        return ReviewItem(id=rec.point_id, run_id=rec.run_id, agent=rec.agent, step=rec.step,
                          index=rec.index, text=rec.text, seq=int(m.get("seq", 0)),
                          sampled_step=int(m.get("sampled_step", rec.step)),
                          status=str(m.get("review", "pending")),
                          replacement=m.get("replacement"),
                          applied_step=None if m.get("applied_step") is None
                          else int(m["applied_step"]))

    def _records(self, with_vectors: bool = False) -> list[Record]:
        return self.review_store.records(kind="post", with_vectors=with_vectors)

    def add(self, posts: Sequence[Record], *, sampled_step: int) -> int:
        with self._lock:
            existing = {r.point_id for r in self._records()}
            todo = [p for p in posts if p.point_id not in existing]
            if not todo:
                return 0
            need = [p for p in todo if p.vector is None]
            vecs: dict[str, np.ndarray] = {}
            if need:
                by_run: dict[str, set[int]] = defaultdict(set)
                for p in need:
                    by_run[p.run_id].add(p.step)
                for run, steps in by_run.items():
                    for s in steps:
                        for r in self.web_store.records(run, kind="post", step=s,
                                                        with_vectors=True):
                            if r.vector is not None:
                                vecs[r.point_id] = r.vector
            seq0 = len(existing)
            recs = []
            for i, p in enumerate(todo):
                vec = p.vector if p.vector is not None else vecs.get(p.point_id)
                if vec is None:
                    raise ValueError(f"post {p.point_id} has no vector in the web store")
                recs.append(Record(
                    text=p.text, run_id=p.run_id, agent=p.agent, step=p.step, kind="post",
                    index=p.index, id=p.point_id, vector=vec,
                    metadata={"review": "pending", "review_of": p.point_id, "seq": seq0 + i,
                              "sampled_step": int(sampled_step), "replacement": None,
                              "applied_step": None},
                ))
            self.review_store.upsert(recs)
            return len(recs)

    def items(self) -> list[ReviewItem]:
        with self._lock:
            return sorted((self._to_item(r) for r in self._records()), key=lambda it: it.seq)

    def update(self, item_id: str, **changes: Any) -> ReviewItem:
        with self._lock:
            recs = [r for r in self._records(with_vectors=True) if r.point_id == item_id]
            if not recs:
                raise KeyError(item_id)
            rec = recs[0]
            meta = dict(rec.metadata)
            for k, v in changes.items():
                meta["review" if k == "status" else k] = v
            self.review_store.upsert([replace(rec, metadata=meta)])
            return self._to_item(replace(rec, metadata=meta))

    def __repr__(self) -> str:
        return f"QdrantReviewSink(collection={self.collection!r})"


class ReviewQueue:
    """Review sampled posts and write the outcome back into the web.

    Args:
        sink: a :class:`JsonlSink` or :class:`QdrantReviewSink`.
        reviewer_agent: the agent name of the ``human`` records.

    Example:
        >>> import tempfile, os
        >>> q = ReviewQueue(JsonlSink(os.path.join(tempfile.mkdtemp(), "review.jsonl")))
        >>> q.pending()
        []
    """

    def __init__(self, sink: ReviewSink, *, reviewer_agent: str = "human") -> None:
        for attr in ("add", "items", "update"):
            if not callable(getattr(sink, attr, None)):
                raise TypeError(f"sink must have add/items/update (JsonlSink, QdrantReviewSink); "
                                f"{type(sink).__name__} has no {attr}()")
        self.sink = sink
        self.reviewer_agent = reviewer_agent

    def items(self, run_id: str | None = None) -> list[ReviewItem]:
        """Every item (of ``run_id``), by ``seq``."""
        return [it for it in self.sink.items() if run_id is None or it.run_id == run_id]

    def pending(self, run_id: str | None = None) -> list[ReviewItem]:
        """Items awaiting a decision."""
        return [it for it in self.items(run_id) if it.status == "pending"]

    def get(self, item_id: str) -> ReviewItem:
        """The item ``item_id`` (a post id). Raises ``KeyError`` if it was never sampled."""
        for it in self.sink.items():
            if it.id == item_id:
                return it
        raise KeyError(f"no review item {item_id!r}; see pending() for the queued ones")

    def _decide(self, item_id: str, status: str, replacement: str | None) -> ReviewItem:
        item = self.get(item_id)
        if item.applied_step is not None:
            raise ValueError(f"review item {item_id!r} was already applied at step "
                             f"{item.applied_step}; it cannot change any more")
        return self.sink.update(item_id, status=status, replacement=replacement)

    def approve(self, item_id: str) -> ReviewItem:
        """Approve the post as written: it enters the web as a ``human`` document."""
        return self._decide(item_id, "approved", None)

    def replace(self, item_id: str, new_text: str) -> ReviewItem:
        """Replace the post by ``new_text``, which enters the web as a ``human`` document."""
        if not isinstance(new_text, str) or not new_text.strip():
            raise ValueError("new_text must be a non-empty string")
        return self._decide(item_id, "replaced", new_text)

    def apply(self, monitor: CollapseMonitor, step: int) -> int:
        """Write decided, unapplied items of the monitor's run into the web at ``step``.

        Each becomes a ``human`` record (agent ``reviewer_agent``, index ``seq``) with metadata
        ``review_of`` (the post id), ``review`` (``approved``/``replaced``), ``reviewed_agent``
        and ``reviewed_step``. Idempotent: an item already applied is only re-written (at its
        own step, same point id) if its record is missing from the store. Returns the number of
        items applied at ``step``.
        """
        run_id = monitor.run_id
        decided = [it for it in self.items(run_id)
                   if it.status in ("approved", "replaced")]
        if not decided:
            return 0
        present: set[str] | None = None
        count = 0
        to_record: list[ReviewItem] = []
        for it in decided:  # sink writes first, then the web writes (one client at a time)
            if it.applied_step is None:
                to_record.append(self.sink.update(it.id, applied_step=int(step)))
                continue
            if present is None:
                monitor.flush()
                present = {r.point_id for r in monitor.store.records(
                    run_id, agent=self.reviewer_agent, kind="human")}
            pid = point_id(run_id, self.reviewer_agent, it.applied_step, "human", it.seq)
            if pid in present:
                count += int(it.applied_step == step)
            else:
                to_record.append(it)
        for it in to_record:
            text = it.reviewed_text
            if text is None or it.applied_step is None:  # pragma: no cover - guarded above
                continue
            monitor.record(text, agent=self.reviewer_agent, step=it.applied_step, kind="human",
                           index=it.seq,
                           metadata={"review_of": it.id, "review": it.status,
                                     "reviewed_agent": it.agent, "reviewed_step": it.step,
                                     "mitigation": "human_review"})
            count += int(it.applied_step == step)
        return count


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
        self._rate = _exact(rate, "rate")
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
        gen = _gen(rng)
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
