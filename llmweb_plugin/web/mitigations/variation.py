"""Vary each agent's prompt per step: :class:`PromptVariation` (persona, wording, temperature).

What it chose is recorded in the request's metadata, which the web stores with the agent's
records. ``llmweb_langchain.middleware`` wraps it as LangChain ``create_agent`` middleware.

Example:
    >>> from llmweb_plugin.web import AgentRequest
    >>> from llmweb_plugin.web.mitigations import PromptVariation
    >>> pv = PromptVariation(personas=["You are terse.", "You are a historian."],
    ...                      temperature_schedule=[0.2, 0.9])
    >>> req = pv.vary(AgentRequest(agent="a", step=1, query="Why?"), rng=0)
    >>> sorted(req.metadata)
    ['mitigation', 'persona', 'persona_index', 'temperature']
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..hooks import AgentRequest, WebHook
from ._common import RngLike, as_generator

__all__ = ["PromptVariation", "Variation"]


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
        gen = as_generator(rng)
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
