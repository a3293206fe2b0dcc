"""Adapt whatever a user already has into an agent of an LLM web.

An agent of a web answers one :class:`~llmweb_plugin.web.AgentRequest` ``n`` times (the
paper's ``L`` generations per step). :func:`as_responder` turns into such a :class:`Responder`:

- a LangChain chat model (``BaseChatModel``): one ``generate([messages], n=L)`` call when the model
  declares it samples ``n`` answers in one batch (a ``supports_n`` attribute, a ``generate_n``
  method like the local SmolLM2 model's, or an ``n`` field like OpenAI's), otherwise
  ``model.batch([messages] * L, config)``;
- a LangChain runnable (LCEL): ``runnable.batch([prompt] * L, config)`` with the prompt as a
  string; the output may be a string or a message;
- a compiled LangGraph graph, such as a ``langchain.agents.create_agent`` agent: input
  ``{"messages": [("user", prompt)]}``, answer = the text of the last AI message;
- a plain callable ``str -> str``, called ``L`` times, or any object with
  ``generate_n(prompt, n) -> list[str]``, called once;
- any object with ``respond(request, n, *, config=None)`` (already a :class:`Responder`, e.g.
  the LlamaIndex adapter in ``llmweb_llamaindex``).

Frameworks are recognised by duck typing (a LangChain object can only exist if LangChain is
already imported), so this module imports no framework itself except the message classes when
a chat model is called.

The request's system prompt becomes a ``SystemMessage`` for chat models and graphs and is put
before the prompt text for runnables and callables. Its temperature is applied to chat models
with a ``temperature`` field (``model.model_copy(update={"temperature": t})``) and ignored
otherwise; ``AgentAnswer.metadata["temperature_applied"]`` says which happened. The LangChain run
config given to :meth:`Responder.respond` (callbacks, tags, metadata) is passed to the model, so
a user's callback handlers see every call.

An agent that raises fails the step with :class:`AgentError` naming the agent: a crashed model
is not something to monitor around. A checkpointed web resumes from that step.

Example:
    >>> from llmweb_plugin.web import AgentRequest
    >>> r = as_responder(lambda prompt: "Bitcoin will " + str(len(prompt)), name="echo")
    >>> r.respond(AgentRequest(agent="echo", step=1, query="Why?"), 2).texts
    ('Bitcoin will 4', 'Bitcoin will 4')
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .hooks import AgentRequest

__all__ = [
    "AgentAnswer",
    "AgentError",
    "CallableResponder",
    "ChatModelResponder",
    "EchoAgent",
    "GraphResponder",
    "Responder",
    "RunnableResponder",
    "as_responder",
    "message_text",
]

logger = logging.getLogger(__name__)


class AgentError(RuntimeError):
    """An agent (model, runnable, graph or callable) failed or answered something unusable."""


@dataclass(frozen=True, kw_only=True)
class AgentAnswer:
    """The ``n`` answers of one agent to one request.

    Attributes:
        texts: the answers, in generation order (empty strings allowed: they are skipped).
        metadata: facts about the call (``temperature_applied``, ``n_batched``, ...), stored with
            the records.
        usage: token counts reported by the model (``input_tokens``, ``output_tokens``), if any.
    """

    texts: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    usage: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class Responder(Protocol):
    """An agent of an LLM web: answers one request ``n`` times."""

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer | Sequence[str]:
        """Return ``n`` answers to ``request``; ``config`` is a LangChain run config to pass on."""
        ...  # pragma: no cover


# ---------------------------------------------------------------------- helpers
def _is_instance(obj: object, module: str, name: str) -> bool:
    """``isinstance(obj, module.name)`` without importing ``module`` if it is not loaded yet."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def message_text(msg: Any) -> str:
    """The text of a LangChain message, a string, or a message-like object."""
    if isinstance(msg, str):
        return msg
    content = getattr(msg, "content", msg)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    raise TypeError(f"cannot read text from {type(msg).__name__}")


def _usage(msg: Any) -> dict[str, int]:
    um = getattr(msg, "usage_metadata", None) or {}
    out: dict[str, int] = {}
    for k in ("input_tokens", "output_tokens"):
        v = um.get(k) if isinstance(um, Mapping) else None
        if isinstance(v, int) and not isinstance(v, bool):
            out[k] = v
    return out


def _add_usage(total: dict[str, int], part: Mapping[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def _string_prompt(request: AgentRequest) -> str:
    prompt = request.render()
    if request.system_prompt:
        return f"{request.system_prompt.strip()}\n\n{prompt}"
    return prompt


def _lc_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys of a LangChain run config that travel to an inner call."""
    if not config:
        return {}
    return {k: config[k] for k in ("callbacks", "tags", "metadata", "run_name",
                                   "max_concurrency") if config.get(k) is not None}


# ---------------------------------------------------------------------- responders
class ChatModelResponder:
    """A LangChain ``BaseChatModel`` as a web agent.

    Args:
        model: the chat model.
        name: the agent's name (for error messages).
        use_n: ``True`` to ask for ``n`` answers in one ``generate(..., n=n)`` call, ``False`` to
            batch ``n`` calls; ``None`` (default): the model's ``supports_n`` attribute if it has
            one, else ``True`` when it has a ``generate_n`` method (the local model) or an ``n``
            field (OpenAI-style APIs). A model that returns a different number of generations
            is batched from then on.

    A model with a ``seed`` field that is set (the local model, OpenAI's ``seed``) is called with
    a seed derived from its own, the web's seed, the step and the agent (recorded as
    ``model_seed``), so a web of seeded models is reproducible, also after a resume.
    """

    def __init__(self, model: Any, *, name: str = "agent", use_n: bool | None = None) -> None:
        self.model = model
        self.name = name
        if use_n is None:
            declared = getattr(model, "supports_n", None)
            if declared is not None:
                use_n = bool(declared)
            else:  # a generate_n method (the local model) or an ``n`` field (OpenAI-style APIs)
                use_n = callable(getattr(model, "generate_n", None)) or \
                    "n" in getattr(type(model), "model_fields", {})
        self.use_n = use_n

    def _copy(self, temperature: float | None, seed: int | None) -> tuple[Any, dict[str, Any]]:
        """The model with the request's temperature and the step's seed applied, if it has them."""
        fields = getattr(type(self.model), "model_fields", {})
        update: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if temperature is not None:
            meta["temperature_applied"] = "temperature" in fields
            if meta["temperature_applied"]:
                update["temperature"] = float(temperature)
        if seed is not None and "seed" in fields and getattr(self.model, "seed", None) is not None:
            # a seeded model gets a seed per (its seed, web seed, step, agent): reproducible runs
            # whatever the order of calls, also after a resume in a new process
            own = int(self.model.seed)
            update["seed"] = int(np.random.default_rng([abs(own), seed]).integers(0, 2**31 - 1))
            meta["model_seed"] = update["seed"]
        if update and hasattr(self.model, "model_copy"):
            return self.model.model_copy(update=update), meta
        return self.model, meta

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer:
        from langchain_core.messages import HumanMessage, SystemMessage

        msgs: list[Any] = []
        if request.system_prompt:
            msgs.append(SystemMessage(content=request.system_prompt))
        msgs.append(HumanMessage(content=request.render()))
        cfg = _lc_config(config)
        step_seed = (cfg.get("metadata") or {}).get("llmweb_seed")
        model, meta = self._copy(request.temperature, step_seed)
        usage: dict[str, int] = {}
        texts: list[str] = []
        if self.use_n:
            res = model.generate(
                [msgs], n=n, callbacks=cfg.get("callbacks"), tags=cfg.get("tags"),
                metadata=cfg.get("metadata"), run_name=cfg.get("run_name"),
            )
            gens = res.generations[0]
            if len(gens) == n:
                for j, g in enumerate(gens):
                    msg = getattr(g, "message", None)
                    texts.append(message_text(msg) if msg is not None else str(g.text))
                    if msg is not None:  # one prompt for all n: count its tokens once
                        u = _usage(msg)
                        if j:
                            u.pop("input_tokens", None)
                        _add_usage(usage, u)
            else:
                logger.warning("llmweb: agent %r: generate(n=%d) gave %d generations; batching "
                               "%d calls from now on", self.name, n, len(gens), n)
                self.use_n = False
        if not self.use_n:
            outs = model.batch([msgs] * n, config=cfg or None)
            texts = [message_text(o) for o in outs]
            for o in outs:
                _add_usage(usage, _usage(o))
        meta["n_batched"] = self.use_n
        return AgentAnswer(texts=tuple(texts), metadata=meta, usage=usage)


class RunnableResponder:
    """A LangChain runnable (LCEL) taking a string prompt and returning a string or message."""

    def __init__(self, runnable: Any, *, name: str = "agent") -> None:
        self.runnable = runnable
        self.name = name

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer:
        prompt = _string_prompt(request)
        outs = self.runnable.batch([prompt] * n, config=_lc_config(config) or None)
        texts: list[str] = []
        usage: dict[str, int] = {}
        for o in outs:
            if isinstance(o, Mapping) and "messages" in o:
                o = _last_ai_message(o["messages"], self.name)
            try:
                texts.append(message_text(o))
            except TypeError:
                raise AgentError(
                    f"agent {self.name!r}: the runnable returned {type(o).__name__}; it must "
                    "return a string or a message (end the chain with StrOutputParser())"
                ) from None
            _add_usage(usage, _usage(o))
        meta = {"temperature_applied": False} if request.temperature is not None else {}
        return AgentAnswer(texts=tuple(texts), metadata=meta, usage=usage)


def _last_ai_message(messages: Sequence[Any], name: str) -> Any:
    for m in reversed(list(messages)):
        if getattr(m, "type", None) == "ai":
            return m
    raise AgentError(f"agent {name!r}: the graph's output holds no AI message")


class GraphResponder:
    """A compiled LangGraph graph with a ``messages`` state (e.g. a ``create_agent`` agent).

    Each of the ``n`` answers is a separate invocation with input
    ``{"messages": [("user", prompt)]}`` (a ``("system", ...)`` message first when the request has
    a system prompt); the answer is the last AI message's text. The calls run as standalone
    graphs, not as subgraphs of the web: they do not share the web's checkpointer, and a graph
    compiled with its own checkpointer gets a fresh ``thread_id`` per call.
    """

    def __init__(self, graph: Any, *, name: str = "agent") -> None:
        self.graph = graph
        self.name = name

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer:
        msgs: list[tuple[str, str]] = []
        if request.system_prompt:
            msgs.append(("system", request.system_prompt))
        msgs.append(("user", request.render()))
        base = _lc_config(config)
        meta_in = dict(base.get("metadata") or {})
        stem = f"llmweb:{meta_in.get('llmweb_run_id', '')}:{self.name}:{request.step}"
        configs = [
            {**base, "configurable": {"thread_id": f"{stem}:{j}"}} for j in range(n)
        ]
        # An empty context: inside a LangGraph node the parent's config would otherwise turn
        # these calls into subgraph runs sharing one checkpoint namespace.
        outs = contextvars.Context().run(
            self.graph.batch, [{"messages": list(msgs)} for _ in range(n)], configs
        )
        texts: list[str] = []
        usage: dict[str, int] = {}
        for o in outs:
            if not isinstance(o, Mapping) or "messages" not in o:
                raise AgentError(
                    f"agent {self.name!r}: the graph returned {type(o).__name__} without a "
                    "'messages' key; web agents must be message-state graphs (create_agent)"
                )
            m = _last_ai_message(o["messages"], self.name)
            texts.append(message_text(m))
            _add_usage(usage, _usage(m))
        meta = {"temperature_applied": False} if request.temperature is not None else {}
        return AgentAnswer(texts=tuple(texts), metadata=meta, usage=usage)


class CallableResponder:
    """A plain callable ``str -> str`` (or an object with ``generate_n(prompt, n)``)."""

    def __init__(self, fn: Callable[[str], str], *, name: str = "agent") -> None:
        self.fn = fn
        self.name = name

    def respond(self, request: AgentRequest, n: int, *,
                config: Mapping[str, Any] | None = None) -> AgentAnswer:
        prompt = _string_prompt(request)
        gen_n = getattr(self.fn, "generate_n", None)
        if callable(gen_n):
            texts = list(gen_n(prompt, n))
            if len(texts) != n:
                raise AgentError(f"agent {self.name!r}: generate_n(prompt, {n}) returned "
                                 f"{len(texts)} answers")
        else:
            texts = [self.fn(prompt) for _ in range(n)]
        for t in texts:
            if not isinstance(t, str):
                raise AgentError(f"agent {self.name!r} returned {type(t).__name__}; a callable "
                                 "agent must return str")
        meta = {"temperature_applied": False} if request.temperature is not None else {}
        return AgentAnswer(texts=tuple(texts), metadata=meta)


def as_responder(obj: Any, *, name: str = "agent") -> Responder:
    """Wrap a chat model, runnable, compiled graph, callable or responder as a :class:`Responder`.

    Args:
        obj: the agent (see the module docstring for what is accepted).
        name: the agent's name, used in error messages.

    Raises:
        TypeError: ``obj`` is none of the accepted kinds (a LlamaIndex LLM needs
            ``llmweb_llamaindex.LlamaIndexAgent(llm)``).
    """
    if callable(getattr(obj, "respond", None)) and not callable(getattr(obj, "invoke", None)):
        return obj  # type: ignore[no-any-return]
    if _is_instance(obj, "langchain_core.language_models.chat_models", "BaseChatModel"):
        return ChatModelResponder(obj, name=name)
    if _is_instance(obj, "langgraph.pregel", "Pregel"):
        return GraphResponder(obj, name=name)
    if _is_instance(obj, "langchain_core.runnables.base", "Runnable"):
        return RunnableResponder(obj, name=name)
    if _is_instance(obj, "llama_index.core.base.llms.base", "BaseLLM"):
        raise TypeError(
            f"agent {name!r} is a LlamaIndex LLM; wrap it: "
            "llmweb_llamaindex.LlamaIndexAgent(llm)"
        )
    if callable(obj) or callable(getattr(obj, "generate_n", None)):
        return CallableResponder(obj, name=name)
    raise TypeError(
        f"agent {name!r} is a {type(obj).__name__}; an agent must be a LangChain chat model, a "
        "runnable, a compiled LangGraph graph, a callable str -> str, or an object with "
        "respond(request, n, config=None)"
    )


def normalise_answer(answer: AgentAnswer | Sequence[str], n: int, name: str) -> AgentAnswer:
    """Check a responder's output: ``n`` strings. Raises :class:`AgentError` otherwise."""
    if not isinstance(answer, AgentAnswer):
        if isinstance(answer, str) or not isinstance(answer, Sequence):
            raise AgentError(f"agent {name!r} returned {type(answer).__name__}; respond() must "
                             "return an AgentAnswer or a list of strings")
        answer = AgentAnswer(texts=tuple(answer))
    if len(answer.texts) != n:
        raise AgentError(f"agent {name!r} returned {len(answer.texts)} answers; {n} were asked")
    for t in answer.texts:
        if not isinstance(t, str):
            raise AgentError(f"agent {name!r} returned a {type(t).__name__} answer; answers must "
                             "be str")
    return answer


# ---------------------------------------------------------------------- a fake agent
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class EchoAgent:
    """An instant, deterministic fake agent for smoke tests, examples and benchmarks.

    It answers by taking a sentence from its context (a line of the prompt starting with
    ``"- "``), keeping a random stretch of its words and adding one of its own stock phrases; so
    a web of echo agents drifts toward its own posts, like the paper's LLMs, at no cost. The
    answer depends only on ``(seed, name, prompt, generation index)``.

    Args:
        name: the agent's name (selects its stock phrases).
        seed: a seed for the answers.
        phrases: its own stock phrases (a default set when ``None``).
    """

    _PHRASES = (
        "In my view", "Honestly", "Long term", "Looking ahead", "Realistically",
        "To be fair", "Frankly", "As I see it", "Most likely", "On balance",
    )

    def __init__(self, name: str = "echo", *, seed: int = 0,
                 phrases: Sequence[str] | None = None) -> None:
        self.name = name
        self.seed = int(seed)
        digest = hashlib.sha256(f"{name}|{seed}".encode()).digest()
        pick = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        pool = list(phrases) if phrases else list(self._PHRASES)
        self.phrases = tuple(pool) if phrases else tuple(
            pool[i] for i in pick.choice(len(pool), size=3, replace=False))

    def __call__(self, prompt: str) -> str:
        return self.generate_n(prompt, 1)[0]

    def generate_n(self, prompt: str, n: int) -> list[str]:
        """``n`` answers to ``prompt``."""
        lines = [ln[2:].strip() for ln in prompt.splitlines() if ln.startswith("- ")]
        digest = hashlib.sha256(f"{self.seed}|{self.name}|{prompt}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        out = []
        for _ in range(n):
            phrase = self.phrases[int(rng.integers(len(self.phrases)))]
            if not lines:
                out.append(f"{phrase}, Bitcoin's future is uncertain.")
                continue
            src = lines[int(rng.integers(len(lines)))]
            sentences = [s for s in _SENTENCE.split(src) if s]
            body = sentences[int(rng.integers(len(sentences)))].rstrip(".!?").strip()
            for known in (*self._PHRASES, *self.phrases):  # drop an echoed stock phrase
                if body.lower().startswith(known.lower() + ","):
                    body = body[len(known) + 1:].strip()
                    break
            words = body.split() or ["Bitcoin"]
            keep = min(len(words), max(5, int(len(words) * rng.uniform(0.7, 1.0))))
            start = int(rng.integers(0, len(words) - keep + 1))
            body = " ".join(words[start:start + keep])
            body = f"{phrase}, {body[:1].lower()}{body[1:]}"
            out.append(body + ".")
        return out
