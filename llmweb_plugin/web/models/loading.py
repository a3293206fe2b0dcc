"""Loading a local model: the one-time conversion of the GGUF into a cache folder, the load from
it, and the process-wide copy every chat model of the same model shares.

Loaded weights are shared per (model name, cache folder) and loaded lazily under a load lock;
generation runs under one process-wide generation lock (:data:`GENERATE_LOCK`) because the torch
module is shared by LangGraph's worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .specs import DEFAULT_MODEL, LocalModelSpec, get_spec
from .weights import materialised_gguf, model_cache_folder

__all__ = ["GENERATE_LOCK", "LoadedModel", "import_transformers", "load_local_model",
           "shared_model", "unload_local_models"]

logger = logging.getLogger(__name__)

_LOCAL_HINT = "pip install torch==2.13.0 && pip install 'llmweb-plugin[local]'"
_CACHE_MARKER = "llmweb-cache.json"


def _cache_complete(folder: Path) -> bool:
    return (folder / _CACHE_MARKER).is_file() and (folder / "config.json").is_file()


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


def import_transformers() -> tuple[Any, Any, Any]:
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
    torch, auto_model, auto_tokenizer = import_transformers()
    import copy

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        with materialised_gguf(spec, tmp) as gguf_path:
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
    spec = get_spec(model)
    folder = model_cache_folder(model, cache_dir=cache_dir)
    torch, auto_model, auto_tokenizer = import_transformers()
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
GENERATE_LOCK = threading.RLock()
_LOADED: dict[tuple[str, str], LoadedModel] = {}


def shared_model(model: str, cache_dir: str | None) -> LoadedModel:
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
    with _LOAD_LOCK, GENERATE_LOCK:
        _LOADED.clear()
