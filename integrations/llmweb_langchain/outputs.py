"""Reading a LangChain model result: the text of a generation and its token usage.

Helpers of :mod:`llmweb_langchain.callbacks` (moved here unchanged to keep that module under
the layout's 700 lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmweb_plugin.web import message_text

__all__ = ["USAGE_MAP", "generation_text", "int_tokens"]

#: Legacy ``llm_output["token_usage"]`` keys -> the ``usage_metadata`` keys.
USAGE_MAP = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens",
             "total_tokens": "total_tokens"}


def generation_text(gen: Any) -> str:
    """The text of one generation (a chat generation's message, else its ``text``)."""
    msg = getattr(gen, "message", None)
    if msg is not None:
        try:
            return message_text(msg)
        except TypeError:  # content that is neither a string nor a list of blocks
            return ""
    text = getattr(gen, "text", "")
    return text if isinstance(text, str) else str(text)


def int_tokens(usage: Any) -> dict[str, int]:
    """The integer counts of a usage mapping (others, and booleans, left out)."""
    if not isinstance(usage, Mapping):
        return {}
    return {str(k): int(v) for k, v in usage.items()
            if isinstance(v, int) and not isinstance(v, bool)}
