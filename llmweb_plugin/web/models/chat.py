"""The LangChain chat model over a loaded local model (:class:`LocalChatModel`): n answers
from one batched ``generate`` call, seeded per call, under the process-wide generation lock (the
package docstring, :mod:`llmweb_plugin.web.models`, tells how to use them)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel, LangSmithParams
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
        convert_to_messages,
    )
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.prompt_values import PromptValue
    from langchain_core.runnables import RunnableConfig, ensure_config
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "llmweb_plugin.web.models needs langchain-core, torch and transformers: "
        "pip install torch==2.13.0 && pip install 'llmweb-plugin[local]'"
    ) from exc

from .generation import (
    MIN_SENTENCE_CHARS,
    first_sentence_end,
    generate_rows,
    sentence_stopper,
    truncate_at_stop,
)
from .loading import GENERATE_LOCK, LoadedModel, import_transformers, shared_model
from .specs import DEFAULT_MODEL, get_spec

__all__ = ["LocalChatModel", "check_options"]

logger = logging.getLogger(__name__)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        return message.role
    if isinstance(message, ToolMessage):
        return "user"
    return "user"

_CALL_OPTIONS = ("n", "temperature", "top_p", "max_new_tokens", "stop_at_sentence_end")


class LocalChatModel(BaseChatModel):
    """A LangChain chat model running a small GGUF model locally on the CPU.

    Build it with :func:`local_chat_model`. Fields are the defaults of each call; ``n``,
    ``temperature``, ``top_p`` and ``max_new_tokens`` may also be passed per call as keywords.

    Example:
        >>> chat = local_chat_model(max_new_tokens=16, seed=0)     # doctest: +SKIP
        >>> chat.invoke("Say hello.").content                      # doctest: +SKIP
        'Hello! ...'
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Name from :data:`MODELS`."""
    system_prompt: str | None = None
    """Prepended as a system message when the messages have none."""
    temperature: float = 0.8
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: int = 48
    """Upper bound on generated tokens per answer."""
    seed: int | None = None
    """With a seed, call k samples with ``torch.manual_seed(seed + k)`` (reproducible)."""
    n: int = 1
    """Answers per call (all in one batched generate)."""
    stop_at_sentence_end: bool = False
    """End each answer at its first sentence end (see :func:`first_sentence_end`): the
    generation of a row stops there and the text is cut there (``finish_reason`` ``"stop"``)."""
    cache_dir: str | None = None
    """Folder holding model caches; default :func:`default_cache_root`."""

    _call_index: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "llmweb-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "n": self.n,
            "stop_at_sentence_end": self.stop_at_sentence_end,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="llmweb-local",
            ls_model_name=self.model_name,
            ls_model_type="chat",
            ls_temperature=float(kwargs.get("temperature", self.temperature)),
            ls_max_tokens=int(kwargs.get("max_new_tokens", self.max_new_tokens)),
        )
        if stop:
            params["ls_stop"] = stop
        return params

    @property
    def call_count(self) -> int:
        """How many generation calls this instance has made (the next call's seed offset)."""
        return self._call_index

    # ----------------------------------------------------------------- helpers

    def loaded(self) -> LoadedModel:
        """The shared loaded model (loads it on first use)."""
        get_spec(self.model_name)
        return shared_model(self.model_name, self.cache_dir)

    def _resolve(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - set(_CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"unexpected generation option(s) {unknown}; accepted: {', '.join(_CALL_OPTIONS)}"
            )
        opts = {name: kwargs.get(name, getattr(self, name)) for name in _CALL_OPTIONS}
        check_options(
            model=self.model_name,
            temperature=opts["temperature"],
            top_p=opts["top_p"],
            max_new_tokens=opts["max_new_tokens"],
            n=opts["n"],
        )
        if not isinstance(opts["stop_at_sentence_end"], bool):
            raise TypeError(f"stop_at_sentence_end must be True or False, got "
                            f"{opts['stop_at_sentence_end']!r}")
        return opts

    @staticmethod
    def _as_messages(value: Any) -> list[BaseMessage]:
        if isinstance(value, str):
            return [HumanMessage(content=value)]
        if isinstance(value, PromptValue):
            return value.to_messages()
        if isinstance(value, Sequence):
            return convert_to_messages(value)
        raise TypeError(
            f"expected a string, a PromptValue or a sequence of messages, got {type(value)!r}"
        )

    def _chat_dicts(self, messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
        chat = [{"role": _role(m), "content": _content_text(m.content)} for m in messages]
        if self.system_prompt and not any(c["role"] == "system" for c in chat):
            chat.insert(0, {"role": "system", "content": self.system_prompt})
        return chat

    def render_prompt(self, messages: Any) -> str:
        """The exact prompt text the model sees for ``messages`` (chat template applied).

        Args:
            messages: a string, a ``PromptValue`` or a sequence of messages.

        Returns:
            The rendered prompt, ending with the assistant-turn header.
        """
        return self._render(self.loaded().tokenizer, self._as_messages(messages))

    def _render(self, tokenizer: Any, messages: Sequence[BaseMessage]) -> str:
        return str(
            tokenizer.apply_chat_template(
                self._chat_dicts(messages), tokenize=False, add_generation_prompt=True
            )
        )

    # ----------------------------------------------------------------- generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Generate ``n`` answers to ``messages`` in one batched ``model.generate`` call.

        Args:
            messages: the conversation.
            stop: strings at whose first occurrence each answer is cut.
            run_manager: LangChain's run manager (unused: no token streaming).
            **kwargs: per-call ``n``, ``temperature``, ``top_p``, ``max_new_tokens``.

        Returns:
            A ``ChatResult`` with ``n`` generations.
        """
        opts = self._resolve(kwargs)
        n = int(opts["n"])
        temperature = float(opts["temperature"])
        loaded = self.loaded()
        torch = import_transformers()[0]
        tokenizer, lm = loaded.tokenizer, loaded.model
        prompt = self._render(tokenizer, messages)
        enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        prompt_len = int(enc["input_ids"].shape[1])
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": int(opts["max_new_tokens"]),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": loaded.eos_token_ids,
        }
        greedy = temperature == 0.0
        if greedy:
            gen_kwargs.update(do_sample=False, num_return_sequences=1)
        else:
            gen_kwargs.update(
                do_sample=True,
                temperature=temperature,
                top_p=float(opts["top_p"]),
                num_return_sequences=n,
            )
        if stop:
            gen_kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
        one_sentence = bool(opts["stop_at_sentence_end"])
        if one_sentence:
            from transformers import StoppingCriteriaList

            gen_kwargs["stopping_criteria"] = StoppingCriteriaList(
                [sentence_stopper(tokenizer, prompt_len, MIN_SENTENCE_CHARS)]
            )

        with GENERATE_LOCK:
            call_index = self._call_index
            self._call_index += 1
            start = time.perf_counter()
            with torch.inference_mode():
                if self.seed is not None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(self.seed + call_index)
                        out = generate_rows(lm, enc, gen_kwargs)
                else:
                    out = generate_rows(lm, enc, gen_kwargs)
            seconds = time.perf_counter() - start

        rows = out[:, prompt_len:].tolist()
        if greedy and n > 1:
            rows = rows * n
        eos = set(loaded.eos_token_ids)
        pad = tokenizer.pad_token_id
        generations: list[ChatGeneration] = []
        total_out = 0
        for index, row in enumerate(rows):
            end = next((i for i, tok in enumerate(row) if tok in eos), None)
            produced = row if end is None else row[: end + 1]
            if one_sentence and end is None and pad is not None:
                # a row stopped by the sentence criterion is padded while the others go on
                while len(produced) > 1 and produced[-1] == pad:
                    produced = produced[:-1]
            text = tokenizer.decode(row if end is None else row[:end], skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, stop)
            if one_sentence:
                cut = first_sentence_end(text, at_end=True)
                if cut is not None:  # a complete first sentence: the answer ended as asked
                    stopped = True
                    text = text[:cut]
            finish = "stop" if (end is not None or stopped) else "length"
            out_tokens = len(produced)
            total_out += out_tokens
            message = AIMessage(
                content=text.strip(),
                usage_metadata={
                    "input_tokens": prompt_len,
                    "output_tokens": out_tokens,
                    "total_tokens": prompt_len + out_tokens,
                },
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "llmweb-local",
                    "finish_reason": finish,
                },
            )
            generations.append(
                ChatGeneration(
                    message=message, generation_info={"finish_reason": finish, "index": index}
                )
            )
        logger.debug(
            "%s: %d answer(s), %d new tokens in %.2f s", self.model_name, n, total_out, seconds
        )
        return ChatResult(
            generations=generations,
            llm_output={
                "model_name": self.model_name,
                "n": n,
                "call_index": call_index,
                "seed": None if self.seed is None else self.seed + call_index,
                "generate_seconds": seconds,
                "token_usage": {
                    "input_tokens": prompt_len,
                    "output_tokens": total_out,
                    "total_tokens": prompt_len + total_out,
                },
            },
        )

    def generate_n(
        self,
        messages_or_prompt: Any,
        n: int,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Generate ``n`` answers in one batched call and return their texts.

        Goes through ``BaseChatModel.generate``, so callbacks fire as for ``invoke``
        (``on_llm_end`` sees all ``n`` generations) and, inside LangGraph, the parent run's
        config (callbacks, tags, metadata) is picked up from context when ``config`` is None.

        Args:
            messages_or_prompt: a string, a ``PromptValue`` or a sequence of messages.
            n: number of answers, at least 1.
            config: a LangChain ``RunnableConfig`` (callbacks, tags, metadata, run_name, run_id).
            stop: strings at whose first occurrence each answer is cut.
            **kwargs: per-call ``temperature``, ``top_p``, ``max_new_tokens``.

        Returns:
            The ``n`` answer texts, stripped.
        """
        result = self.generate(**self._generate_args(messages_or_prompt, n, config, stop), **kwargs)
        return [g.text for g in result.generations[0]]

    async def agenerate_n(
        self,
        messages_or_prompt: Any,
        n: int,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async twin of :meth:`generate_n` (generation runs in LangChain's executor)."""
        result = await self.agenerate(
            **self._generate_args(messages_or_prompt, n, config, stop), **kwargs
        )
        return [g.text for g in result.generations[0]]

    def _generate_args(
        self,
        messages_or_prompt: Any,
        n: int,
        config: RunnableConfig | None,
        stop: list[str] | None,
    ) -> dict[str, Any]:
        """The arguments of ``generate``/``agenerate`` for :meth:`generate_n` and its twin."""
        cfg = ensure_config(config)
        return {
            "messages": [self._as_messages(messages_or_prompt)],
            "stop": stop,
            "callbacks": cfg.get("callbacks"),
            "tags": cfg.get("tags"),
            "metadata": cfg.get("metadata"),
            "run_name": cfg.get("run_name"),
            "run_id": cfg.pop("run_id", None),
            "n": n,
        }


def check_options(*, model: str, temperature: Any, top_p: Any, max_new_tokens: Any, n: Any) -> None:
    """Refuse a bad generation setting (the same checks for the factory and each call).

    Raises:
        ValueError: an unknown model, or a value out of range (the message names it).
        TypeError: a value of the wrong type.
    """
    get_spec(model)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
