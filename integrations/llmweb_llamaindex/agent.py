"""A LlamaIndex LLM as an agent of an llmweb agent web.

Example:
    >>> from llama_index.core.llms import MockLLM
    >>> agent = LlamaIndexAgent(MockLLM(max_tokens=2))
    >>> agent("hello")
    'text text'
    >>> agent.generate_n("hello", 2)
    ['text text', 'text text']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from llmweb_plugin.web import AgentAnswer, AgentRequest

from .events import response_text, response_usage

__all__ = ["LlamaIndexAgent"]


class LlamaIndexAgent:
    """Wraps a LlamaIndex LLM: ``agent(prompt) -> str``, ``generate_n`` and ``respond``.

    Every call is one ``llm.chat([system?, user])``; instrumented apps see it as usual.

    Args:
        llm: any ``llama_index.core.llms.LLM``.
        system_prompt: a system message put before every prompt (a request's own system
            prompt, in :meth:`respond`, takes its place).

    Raises:
        TypeError: ``llm`` has no ``chat`` method.
    """

    def __init__(self, llm: Any, system_prompt: str | None = None) -> None:
        if not callable(getattr(llm, "chat", None)):
            raise TypeError(f"{type(llm).__name__} is not a LlamaIndex LLM (no chat method)")
        self.llm = llm
        self.system_prompt = system_prompt

    def _chat(self, prompt: str, system_prompt: str | None) -> tuple[str, dict[str, int]]:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be str; got {type(prompt).__name__}")
        messages = []
        if system_prompt:
            messages.append(ChatMessage(role=MessageRole.SYSTEM, content=system_prompt))
        messages.append(ChatMessage(role=MessageRole.USER, content=prompt))
        response = self.llm.chat(messages)
        return response_text(response) or "", response_usage(response)

    def __call__(self, prompt: str) -> str:
        """One answer to ``prompt``."""
        return self._chat(prompt, self.system_prompt)[0]

    def generate_n(self, prompt: str, n: int) -> list[str]:
        """``n`` answers to ``prompt`` (``n`` calls)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        return [self(prompt) for _ in range(n)]

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer:
        """The agent-web protocol: ``n`` answers to ``request`` (``config`` is LangChain's; unused).

        The request's temperature cannot be applied to an arbitrary LlamaIndex LLM; the answer's
        metadata says so (``temperature_applied: False``).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        system = request.system_prompt or self.system_prompt
        prompt = request.render()
        texts: list[str] = []
        usage: dict[str, int] = {}
        for _ in range(n):
            text, u = self._chat(prompt, system)
            texts.append(text)
            for k, v in u.items():
                usage[k] = usage.get(k, 0) + v
        meta = {"temperature_applied": False} if request.temperature is not None else {}
        return AgentAnswer(texts=tuple(texts), metadata=meta, usage=usage)

    def __repr__(self) -> str:
        return f"LlamaIndexAgent(llm={type(self.llm).__name__})"
