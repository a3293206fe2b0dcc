"""What defines an LLM-web experiment: :class:`WebConfig` and :func:`make_config`.

Everything except the agents' models and the store: the agents' names, the seed documents
``A(0)``, the query, ``beta``, ``L`` (responses per step), ``T`` (steps), the retrieval mode, the
topology, the prompt template and per-agent prompt settings, all checked when the config is made.

Example:
    >>> from llmweb_plugin.web import k_for, make_config
    >>> k_for(21, 0.5), k_for(100, 0.29)
    (10, 29)
    >>> cfg = make_config(["a", "b"], n_steps=3, responses_per_step=2)
    >>> len(cfg.seeds), cfg.beta, cfg.post_agents({"a": ["b"], "b": []}, "b")
    (20, 0.5, ['b'])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .rng import STREAM_TOPOLOGY, derive_rng
from .seeds import CRYPTO_SEEDS
from .topology import Neighbours, check_agents, neighbours

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "PAPER_QUERY",
    "RETRIEVAL_MODES",
    "WebConfig",
    "k_for",
    "make_config",
]

PAPER_QUERY = "Please provide EXACTLY one concise sentence about the future prospects of Bitcoin."
DEFAULT_PROMPT_TEMPLATE = "Here are some posts from the web:\n{context}\n\n{query}"
RETRIEVAL_MODES: tuple[str, ...] = ("uniform", "similarity")


def k_for(web_size: int, beta: float) -> int:
    """``floor(beta * web_size)``, robust to float rounding (``k_for(100, 0.29) == 29``)."""
    if web_size < 0:
        raise ValueError(f"web_size must be >= 0; got {web_size}")
    return int(math.floor(float(beta) * int(web_size) + 1e-9))


def _seed_items(seeds: Iterable[Any]) -> tuple[tuple[str, ...], tuple[Mapping[str, Any], ...]]:
    texts, metas = [], []
    for s in seeds:
        if isinstance(s, str):
            text, meta = s, {}
        elif isinstance(getattr(s, "text", None), str):
            text = s.text
            label = getattr(s, "label", None)
            meta = {"label": label} if label is not None else {}
        else:
            raise TypeError(f"seeds must be strings (or objects with a .text); got "
                            f"{type(s).__name__}")
        if not text.strip():
            raise ValueError("seeds contain an empty text; remove it")
        texts.append(text)
        metas.append(meta)
    return tuple(texts), tuple(metas)


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """Everything that defines an LLM-web experiment except the agents' models and the store.

    Attributes:
        agents: agent names, in order (the order fixes each agent's random stream).
        seeds: the seed texts ``A(0)``.
        seed_metadata: metadata stored with each seed (e.g. its label).
        query: the question every agent answers at every step.
        beta: retrieval fraction, ``k_t = floor(beta * |A_t|)``, in ``(0, 1]``.
        responses_per_step: ``L``, answers per agent per step (the first is posted).
        n_steps: ``T``, the number of steps.
        retrieval: ``"uniform"`` (the paper) or ``"similarity"`` (top-k by the query).
        topology: see :func:`neighbours`.
        prompt_template: ``str.format`` template with ``{context}`` and ``{query}``.
        system_prompts: per-agent system prompt (agents not listed use their own).
        temperatures: per-agent sampling temperature (agents not listed use their own).
    """

    agents: tuple[str, ...]
    seeds: tuple[str, ...]
    seed_metadata: tuple[Mapping[str, Any], ...] = ()
    query: str = PAPER_QUERY
    beta: float = 0.5
    responses_per_step: int = 40
    n_steps: int = 60
    retrieval: str = "uniform"
    topology: Any = "full"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompts: Mapping[str, str | None] = field(default_factory=dict)
    temperatures: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = check_agents(self.agents)
        if "seed" in names:
            raise ValueError("'seed' is reserved for the seed documents; rename that agent")
        for nm, v in (("responses_per_step", self.responses_per_step),
                      ("n_steps", self.n_steps)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{nm} must be an integer >= 1; got {v!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, numbers.Real) \
                or not 0.0 < float(self.beta) <= 1.0:
            raise ValueError(f"beta must be in (0, 1]; got {self.beta!r}")
        if self.retrieval not in RETRIEVAL_MODES:
            raise ValueError(f"unknown retrieval {self.retrieval!r}; use one of "
                             f"{RETRIEVAL_MODES}")
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError("query must be a non-empty string")
        try:
            self.prompt_template.format(context="- x", query="q")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"prompt_template must be a str.format template using only "
                             f"{{context}} and {{query}}; formatting failed: {exc!r}") from None
        if "{context}" not in self.prompt_template or "{query}" not in self.prompt_template:
            raise ValueError("prompt_template must contain both {context} and {query}")
        if not self.seeds:
            raise ValueError("seeds is empty; the web needs seed documents A(0) to read from")
        if self.seed_metadata and len(self.seed_metadata) != len(self.seeds):
            raise ValueError("seed_metadata must have one entry per seed")
        if k_for(len(self.seeds), self.beta) < 1:
            raise ValueError(
                f"k_0 = floor(beta * |A(0)|) = floor({self.beta} * {len(self.seeds)}) = 0: the "
                "agents would read nothing at the first step. Give more seeds or a larger beta."
            )
        for nm, per in (("system_prompts", self.system_prompts),
                        ("temperatures", self.temperatures)):
            unknown = set(per) - set(names)
            if unknown:
                raise ValueError(f"{nm} names unknown agents {sorted(unknown)}; the agents are "
                                 f"{names}")
        for a, t in self.temperatures.items():
            if t is not None and (not isinstance(t, numbers.Real) or not t >= 0):
                raise ValueError(f"temperature of {a!r} must be >= 0 or None; got {t!r}")
        neighbours(names, self.topology, rng=0)  # validate the topology now

    def resolve_topology(self, seed: int) -> Neighbours:
        """The topology of a run with this seed (``small_world`` draws from it)."""
        return neighbours(self.agents, self.topology, rng=derive_rng(seed, STREAM_TOPOLOGY))

    def post_agents(self, nbrs: Mapping[str, Iterable[str]], agent: str) -> list[str] | None:
        """Whose posts ``agent`` reads (itself and its neighbours); ``None`` for everyone."""
        reads = set(nbrs.get(agent, ())) | {agent}
        if reads >= set(self.agents):
            return None
        return sorted(reads)


def make_config(agents: Sequence[str], *, seeds: Sequence[Any] | None = None,
                query: str = PAPER_QUERY, beta: float = 0.5, responses_per_step: int = 40,
                n_steps: int = 60, retrieval: str = "uniform", topology: Any = "full",
                prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
                system_prompts: Mapping[str, str | None] | None = None,
                temperatures: Mapping[str, float | None] | None = None) -> WebConfig:
    """A validated :class:`WebConfig`; ``seeds=None`` uses the shipped 20 crypto posts."""
    if seeds is None:
        seeds = CRYPTO_SEEDS
    if isinstance(seeds, str):
        raise TypeError("seeds must be a sequence of texts, not one string")
    texts, metas = _seed_items(seeds)
    return WebConfig(
        agents=tuple(agents), seeds=texts, seed_metadata=metas, query=query, beta=beta,
        responses_per_step=responses_per_step, n_steps=n_steps, retrieval=retrieval,
        topology=topology, prompt_template=prompt_template,
        system_prompts=dict(system_prompts or {}), temperatures=dict(temperatures or {}),
    )
