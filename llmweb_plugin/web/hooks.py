"""Hook points of an agent web step, where mitigations plug in.

An agent web (``llmweb_langgraph.create_web_graph``) calls, at every step ``t``:

1. ``before_step(step=t, monitor=..., rng=...)`` on every hook, before any agent reads the web
   (e.g. inject fresh external documents with ``monitor.record(..., kind="external", step=t)``
   and ``monitor.flush()``);
2. ``vary(request, rng=...)`` on every hook, in order, for each agent's request: a hook may return
   a changed :class:`AgentRequest` (another system prompt, query wording, temperature); whatever
   it changes is recorded in ``request.metadata`` and lands in the stored records' metadata;
3. ``after_step(step=t, posts=[...], monitor=..., rng=...)`` once the step's posts are stored
   (e.g. sample posts for human review).

Hooks must be deterministic given ``rng`` (a ``numpy.random.Generator`` derived from the web's
seed, the step and the hook's position), so a run resumed from a checkpoint repeats them exactly.
:class:`WebHook` is a no-op base class to subclass; :func:`check_hooks` checks a list of hooks
before a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import CollapseMonitor
    from ..store import Record

__all__ = ["AgentRequest", "WebHook", "check_hooks"]


@dataclass(frozen=True, kw_only=True)
class AgentRequest:
    """What one agent is asked at one step.

    Attributes:
        agent: the agent's name.
        step: the step ``t`` (1-based).
        query: the question (the paper's fixed query by default).
        context: the retrieved texts, in the order they appear in the prompt.
        prompt_template: a ``str.format`` template with ``{context}`` and ``{query}``.
        system_prompt: a system prompt to put before the prompt, or ``None``.
        temperature: sampling temperature to use, or ``None`` for the agent's own.
        metadata: what hooks changed, stored with the agent's records.
    """

    agent: str
    step: int
    query: str
    context: tuple[str, ...] = ()
    prompt_template: str = "{context}\n\n{query}"
    system_prompt: str | None = None
    temperature: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """The user prompt: the context as a bulleted block, then the query."""
        ctx = "\n".join(f"- {' '.join(t.split())}" for t in self.context)
        return self.prompt_template.format(context=ctx, query=self.query).strip()


class WebHook:
    """Base class of agent-web hooks: every method is a no-op. Subclass what you need."""

    name: str = "hook"

    def before_step(self, *, step: int, monitor: CollapseMonitor,
                    rng: np.random.Generator) -> None:
        """Called once per step before the agents read the web."""

    def vary(self, request: AgentRequest, *, rng: np.random.Generator) -> AgentRequest:
        """Return the (possibly changed) request of one agent at one step."""
        return request

    def after_step(self, *, step: int, posts: Sequence[Record], monitor: CollapseMonitor,
                   rng: np.random.Generator) -> None:
        """Called once per step after its posts are stored."""


def check_hooks(hooks: Sequence[Any]) -> tuple[WebHook, ...]:
    """Check that each mitigation has the :class:`~llmweb_plugin.web.WebHook` methods."""
    if isinstance(hooks, WebHook):
        hooks = [hooks]
    out = []
    for h in hooks:
        missing = [m for m in ("before_step", "vary", "after_step")
                   if not callable(getattr(h, m, None))]
        if missing:
            raise TypeError(f"mitigation {h!r} lacks {missing}; subclass "
                            "llmweb_plugin.web.WebHook")
        out.append(h)
    return tuple(out)


def hook_name(h: Any) -> str:
    """A hook's name for error messages: its ``name``, else its class name."""
    name = getattr(h, "name", None)
    return type(h).__name__ if not name or name == WebHook.name else str(name)
