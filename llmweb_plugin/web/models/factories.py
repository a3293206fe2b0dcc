"""Factories: one local chat model (:func:`local_chat_model`), or distinct agents from one small
model (:func:`local_agents`: a persona and a temperature each)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .chat import LocalChatModel, check_options
from .specs import DEFAULT_MODEL

__all__ = ["PERSONAS", "local_agents", "local_chat_model"]

PERSONAS: dict[str, str] = {
    "optimist_analyst": (
        "You are an optimistic market analyst. You look for growth, opportunity and good news, "
        "and you answer in one or two confident sentences."
    ),
    "sceptical_economist": (
        "You are a sceptical economist. You doubt easy claims, point out risks and missing "
        "evidence, and you answer in one or two careful sentences."
    ),
    "neutral_journalist": (
        "You are a neutral journalist. You report what is known without taking sides, and you "
        "answer in one or two plain sentences."
    ),
    "cautious_regulator": (
        "You are a cautious financial regulator. You think about stability, rules and who could "
        "be harmed, and you answer in one or two measured sentences."
    ),
    "contrarian_blogger": (
        "You are a contrarian blogger. You argue against whatever most people believe, and you "
        "answer in one or two punchy sentences."
    ),
}
"""Short system prompts that make distinct agents out of one small model."""


def local_chat_model(
    model: str = DEFAULT_MODEL,
    *,
    system_prompt: str | None = None,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 48,
    seed: int | None = None,
    n: int = 1,
    stop_at_sentence_end: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LocalChatModel:
    """A LangChain chat model running a small local model offline on the CPU.

    Cheap: the weights load lazily on the first generation and are shared by every instance of
    the same model in the process.

    Args:
        model: a name from :data:`MODELS` (``"smollm2-135m"``, or ``"gemma-3-270m"`` when its
            packages are installed).
        system_prompt: system message prepended when a conversation has none (a persona).
        temperature: sampling temperature, ``>= 0``; 0 decodes greedily.
        top_p: nucleus sampling mass in ``(0, 1]``.
        max_new_tokens: upper bound on generated tokens per answer, ``>= 1``.
        seed: makes outputs depend only on (seed, call index); None uses torch's global state.
        n: default number of answers per call.
        stop_at_sentence_end: end each answer at its first sentence end (generation stops
            there; see :func:`first_sentence_end`).
        cache_dir: folder holding model caches; default :func:`default_cache_root`.

    Returns:
        The chat model.

    Raises:
        ValueError: a bad parameter or an unknown model name (the message lists known ones).

    Example:
        >>> chat = local_chat_model(temperature=0.7, seed=1)
        >>> chat.model_name, chat.temperature, chat.seed
        ('smollm2-135m', 0.7, 1)
    """
    check_options(model=model, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, n=n)
    if not isinstance(stop_at_sentence_end, bool):
        raise TypeError(f"stop_at_sentence_end must be True or False, got {stop_at_sentence_end!r}")
    return LocalChatModel(
        model=model,
        system_prompt=system_prompt,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        n=n,
        stop_at_sentence_end=stop_at_sentence_end,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
    )


def local_agents(
    n: int = 3,
    *,
    temperatures: Sequence[float] = (0.7, 0.9, 1.0),
    seed: int | None = 0,
    stop_at_sentence_end: bool = True,
    **kw: Any,
) -> dict[str, LocalChatModel]:
    """Distinct agents from one small model: a persona and a temperature each.

    Agent ``i`` gets the ``i``-th persona of :data:`PERSONAS` (cycled, with a ``-2``, ``-3``...
    suffix past the end), ``temperatures[i % len(temperatures)]`` and seed
    ``seed + 1_000_003 * i`` (None stays None). All share one loaded model.

    Args:
        n: number of agents, ``>= 1``.
        temperatures: temperatures to cycle through.
        seed: base seed, or None for torch's global state.
        stop_at_sentence_end: end each answer at its first sentence (default True: a web's
            agents are asked for one sentence, and a batch of answers then costs the longest
            first sentence instead of ``max_new_tokens`` tokens).
        **kw: passed to :func:`local_chat_model` (``model``, ``top_p``, ``max_new_tokens``,
            ``cache_dir``, ...), except ``system_prompt``/``temperature``/``seed``.

    Returns:
        ``{agent name: chat model}`` in persona order.

    Example:
        >>> agents = local_agents(4)
        >>> list(agents)
        ['optimist_analyst', 'sceptical_economist', 'neutral_journalist', 'cautious_regulator']
        >>> [a.temperature for a in agents.values()]
        [0.7, 0.9, 1.0, 0.7]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    temps = list(temperatures)
    if not temps:
        raise ValueError("temperatures must not be empty")
    clash = sorted({"system_prompt", "temperature", "seed"} & set(kw))
    if clash:
        raise TypeError(f"local_agents sets {clash} itself; pass personas via PERSONAS instead")
    names = list(PERSONAS)
    agents: dict[str, LocalChatModel] = {}
    for i in range(n):
        persona = names[i % len(names)]
        lap = i // len(names)
        name = persona if lap == 0 else f"{persona}-{lap + 1}"
        chat = local_chat_model(
            system_prompt=PERSONAS[persona],
            temperature=temps[i % len(temps)],
            seed=None if seed is None else seed + 1_000_003 * i,
            stop_at_sentence_end=stop_at_sentence_end,
            **kw,
        )
        chat.name = name
        agents[name] = chat
    return agents
