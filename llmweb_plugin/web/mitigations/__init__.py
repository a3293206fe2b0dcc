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

Modules, top-down: :mod:`.sampling` (human sampling) -> :mod:`.review` (items, sinks, queue);
:mod:`.injection` -> :mod:`.sources` (iterables, files, Qdrant); :mod:`.variation`; all on
:mod:`._common` (exact rates, the ``rng`` argument) and :class:`llmweb_plugin.web.WebHook`.

Example:
    >>> from llmweb_plugin.web.mitigations import ExternalInjection
    >>> inj = ExternalInjection(["a fresh post", "another one"], fraction_of_posts=0.3)
    >>> inj.planned(posts_total=10, posts_step=3, web_total=30), inj.stats.injected
    (1, 0)
"""

from __future__ import annotations

from .injection import ExternalInjection, InjectionStats, inject_on_alarm
from .review import JsonlSink, QdrantReviewSink, ReviewItem, ReviewQueue, ReviewSink
from .sampling import HumanSampling
from .sources import QdrantSource
from .variation import PromptVariation, Variation

__all__ = [
    "ExternalInjection",
    "HumanSampling",
    "InjectionStats",
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
