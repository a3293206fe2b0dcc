"""Prompt variation as LangChain ``create_agent`` middleware.

:class:`PromptVariationMiddleware` gives an existing ``langchain.agents.create_agent`` agent
the :class:`llmweb_plugin.web.mitigations.PromptVariation` mitigation without rewriting it::

    from langchain.agents import create_agent
    from llmweb_langchain.middleware import PromptVariationMiddleware
    from llmweb_plugin.web.mitigations import PromptVariation

    variation = PromptVariation(personas=["You are terse.", "You are a historian."],
                                temperature_schedule=[0.3, 1.0])
    agent = create_agent(model, tools, middleware=[PromptVariationMiddleware(variation,
                                                                             agent="legal")])

It hooks ``wrap_model_call`` (and ``awrap_model_call``), not ``before_model``: ``before_model``
can only return agent-state updates, so a persona put there would stay in the conversation
history for good and the temperature could not change, whereas ``wrap_model_call`` changes one
model call only (``request.override(system_message=..., messages=..., model_settings=...)``).
Each model call is one "step" of the agent (a per-middleware counter, 1, 2, ...).

What was applied is recorded three ways:

- in the model call's LangChain run metadata (keys :data:`VARIATION_METADATA_KEYS`), so
  ``CollapseCallbackHandler(..., metadata_keys=VARIATION_METADATA_KEYS)`` stores it with the
  response (the call runs inside a small ``llmweb_prompt_variation`` runnable that carries the
  metadata; ``tag_run=False`` skips it);
- in the answer's ``AIMessage.response_metadata["llmweb_variation"]`` (kept in agent state);
- in ``middleware.applied`` (the last ``keep`` entries), ``monitor.log_event("prompt_variation",
  ...)`` when a monitor is given, and ``on_apply(dict)`` when given.

The temperature goes through ``model_settings`` (``model.bind(temperature=t)``), which chat
models that accept a ``temperature`` call argument honour; ``apply_temperature=False`` leaves it
out for models that reject it. A failure inside the middleware is counted (``errors``, and the
monitor's ``count_handler_error``) and the call proceeds unchanged: it never breaks the agent.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from llmweb_plugin.web.mitigations import PromptVariation, Variation

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.runnables.config import ensure_config, merge_configs
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "llmweb_langchain.middleware needs LangChain 1.x: pip install 'llmweb-plugin[langchain]'"
    ) from exc

__all__ = ["VARIATION_METADATA_KEYS", "PromptVariationMiddleware"]

logger = logging.getLogger(__name__)

#: Run-metadata keys the middleware sets on each varied model call.
VARIATION_METADATA_KEYS: tuple[str, ...] = (
    "persona", "persona_index", "query_template", "template_index", "temperature",
    "variation_step", "variation_agent",
)


def _last_human_index(messages: list[Any]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return i
    return None


class PromptVariationMiddleware(AgentMiddleware):
    """Per-call persona, query template and temperature for a ``create_agent`` agent.

    Args:
        variation: the :class:`~llmweb_plugin.web.mitigations.PromptVariation` to apply.
        agent: the agent's name (drives the rotation offset and the records' attribution).
        seed: seed of the per-call random generator (``mode="random"``): call ``s`` of agent
            ``a`` uses ``numpy.random.default_rng([seed, crc32(a), s])``.
        apply_temperature: pass the temperature as a model call setting.
        monitor: optional :class:`~llmweb_plugin.monitor.CollapseMonitor` for events and
            error counts.
        on_apply: optional callback receiving each applied variation as a dict.
        tag_run: run the call inside a runnable carrying the variation as run metadata.
        keep: how many applied variations ``applied`` keeps.
    """

    def __init__(
        self,
        variation: PromptVariation,
        *,
        agent: str = "agent",
        seed: int = 0,
        apply_temperature: bool = True,
        monitor: Any | None = None,
        on_apply: Callable[[dict[str, Any]], Any] | None = None,
        tag_run: bool = True,
        keep: int = 10_000,
    ) -> None:
        super().__init__()
        if not isinstance(variation, PromptVariation):
            raise TypeError(
                f"variation must be a llmweb_plugin.web.mitigations.PromptVariation; got "
                f"{type(variation).__name__}"
            )
        if not isinstance(agent, str) or not agent:
            raise ValueError("agent must be a non-empty string")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an int >= 0; got {keep!r}")
        self.variation = variation
        self.agent = agent
        self.seed = int(seed)
        self.apply_temperature = bool(apply_temperature)
        self.monitor = monitor
        self.on_apply = on_apply
        self.tag_run = bool(tag_run)
        self.applied: deque[dict[str, Any]] = deque(maxlen=int(keep))
        self.errors = 0
        self._calls = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"PromptVariationMiddleware[{self.agent}]"

    # ------------------------------------------------------------------ the variation
    def _next_step(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def _vary(self, request: ModelRequest) -> tuple[ModelRequest, dict[str, Any]]:
        step = self._next_step()
        rng = np.random.default_rng([self.seed, zlib.crc32(self.agent.encode("utf-8")), step])
        v: Variation = self.variation.choose(self.agent, step, rng)
        overrides: dict[str, Any] = {}
        if v.persona is not None:
            old = request.system_prompt
            text = v.persona if not old else f"{v.persona}\n\n{old}"
            overrides["system_message"] = SystemMessage(content=text)
        if v.query_template is not None:
            msgs = list(request.messages)
            i = _last_human_index(msgs)
            if i is not None and isinstance(msgs[i].content, str):
                msgs[i] = msgs[i].model_copy(
                    update={"content": v.query_template.format(query=msgs[i].content)}
                )
                overrides["messages"] = msgs
        if v.temperature is not None and self.apply_temperature:
            overrides["model_settings"] = {**request.model_settings, "temperature": v.temperature}
        info = {**v.as_metadata(), "variation_step": step, "variation_agent": self.agent}
        return (request.override(**overrides) if overrides else request), info

    def _note(self, info: dict[str, Any]) -> None:
        self.applied.append(info)
        if self.monitor is not None:
            self.monitor.log_event("prompt_variation", **info)
        if self.on_apply is not None:
            self.on_apply(dict(info))

    def _failed(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
        if self.monitor is not None:
            self.monitor.count_handler_error(f"PromptVariationMiddleware.{where}", exc)
        else:
            logger.warning("llmweb: prompt variation %s failed and was skipped: %r", where, exc)

    @staticmethod
    def _tag(response: Any, info: dict[str, Any]) -> Any:
        msgs = response.result if isinstance(response, ModelResponse) else [response]
        for m in msgs:
            if isinstance(m, AIMessage):
                m.response_metadata = {**(m.response_metadata or {}), "llmweb_variation": info}
        return response

    def _config(self, info: dict[str, Any]) -> Any:
        return merge_configs(ensure_config(), {"metadata": dict(info),
                                               "run_name": "llmweb_prompt_variation"})

    # ------------------------------------------------------------------ hooks
    def wrap_model_call(self, request: ModelRequest,
                        handler: Callable[[ModelRequest], Any]) -> Any:
        """Call the model once with this call's persona, query template and temperature."""
        try:
            new_request, info = self._vary(request)
            self._note(info)
        except Exception as exc:  # noqa: BLE001 - never break the agent
            self._failed("wrap_model_call", exc)
            return handler(request)
        if self.tag_run:
            response = RunnableLambda(handler).invoke(new_request, self._config(info))
        else:
            response = handler(new_request)
        try:
            return self._tag(response, info)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - tagging cannot really fail
            self._failed("tag", exc)
            return response

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[Any]]) -> Any:
        """Async :meth:`wrap_model_call`."""
        try:
            new_request, info = self._vary(request)
            self._note(info)
        except Exception as exc:  # noqa: BLE001 - never break the agent
            self._failed("awrap_model_call", exc)
            return await handler(request)
        if self.tag_run:

            def _sync(_: Any) -> Any:  # pragma: no cover - ainvoke uses afunc
                raise RuntimeError("the async agent calls the async handler")

            async def _async(req: ModelRequest) -> Any:
                return await handler(req)

            response = await RunnableLambda(_sync, afunc=_async).ainvoke(
                new_request, self._config(info)
            )
        else:
            response = await handler(new_request)
        try:
            return self._tag(response, info)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover
            self._failed("tag", exc)
            return response

    def __repr__(self) -> str:
        return f"PromptVariationMiddleware({self.variation!r}, agent={self.agent!r})"
