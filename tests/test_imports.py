"""Imports point one way and stay light: the core pulls in no framework and no model."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("langchain", "langgraph", "llama_index", "torch", "sentence_transformers",
         "transformers", "numba", "matplotlib")


def _loaded_after(*statements: str) -> list[list[str]]:
    """Top-level modules loaded after each statement, run in order in one fresh interpreter."""
    code = "import sys, json\nsnaps = []\n" + "".join(
        f"{st}\nsnaps.append(sorted({{m.split('.')[0] for m in sys.modules}}))\n"
        for st in statements) + "print(json.dumps(snaps))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _heavy(mods: list[str]) -> list[str]:
    return sorted(m for m in mods if any(m == h or m.startswith(h + "_") for h in HEAVY))


def test_imports_stay_light():
    """The core loads no framework and no model; each adapter loads only its own framework."""
    core, lc = _loaded_after("import llmweb_plugin", "import llmweb_langchain")
    assert _heavy(core) == []
    assert "qdrant_client" in core and "numpy" in core
    assert set(_heavy(lc)) <= {"langchain_core"}
    (li,) = _loaded_after("import llmweb_llamaindex")
    assert set(_heavy(li)) <= {"llama_index", "llama_index_instrumentation"}


def test_public_names_are_pinned():
    import llmweb_langchain
    import llmweb_llamaindex

    assert llmweb_langchain.__all__ == [
        "AsyncCollapseCallbackHandler", "CollapseCallbackHandler", "LangChainEmbedder",
        "PromptVariationMiddleware", "collapse_monitor"]
    assert llmweb_llamaindex.__all__ == [
        "CollapseEventHandler", "InstrumentHandle", "LegacyCollapseCallbackHandler",
        "LlamaIndexAgent", "LlamaIndexEmbedder", "instrument"]
    for mod in (llmweb_langchain, llmweb_llamaindex):
        assert mod.__all__ == sorted(mod.__all__)
        assert all(hasattr(mod, n) for n in mod.__all__)


def test_fixed_public_names_of_the_issues_resolve():
    import llmweb_langchain
    import llmweb_langgraph
    import llmweb_plugin as lw
    from llmweb_langchain.middleware import PromptVariationMiddleware
    from llmweb_plugin.web.models import local_chat_model  # noqa: F401

    assert llmweb_langchain.PromptVariationMiddleware is PromptVariationMiddleware
    assert callable(llmweb_langgraph.create_web_graph)
    for name in ("InteractingGMMWeb", "SiloGMM", "DiversityReport", "WebStore", "CollapseMonitor",
                 "gmm_preset", "GMM_PRESETS"):
        assert name in lw.__all__ and hasattr(lw, name), name
    assert isinstance(lw.gmm_preset("lwd-fig4"), lw.InteractingGMMWeb)
    assert isinstance(lw.gmm_preset("companion-silo"), lw.SiloGMM)
