"""LlamaIndexEmbedder (fake and real MiniLM) and LlamaIndexAgent in an agent web's protocol."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import MockLLM
from llmweb_llamaindex import LlamaIndexAgent, LlamaIndexEmbedder, instrument
from pydantic import PrivateAttr

import llmweb_plugin as lw
from llmweb_plugin.web import AgentRequest, as_responder


class MiniLMEmbedding(BaseEmbedding):
    """The minimal LlamaIndex ``BaseEmbedding`` over llmweb's own MiniLM embedder."""

    _inner: lw.Embedder = PrivateAttr()

    def __init__(self, inner: lw.Embedder) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2")
        self._inner = inner

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._inner.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._inner.embed(texts).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)


def test_adapter_plumbing_exact_values():
    li = MockEmbedding(embed_dim=6)
    emb = LlamaIndexEmbedder(li, name="mock-6")
    out = emb.embed(["a", "b"])
    assert (emb.name, emb.dim, out.dtype, out.shape) == ("mock-6", 6, np.float32, (2, 6))
    np.testing.assert_array_equal(out, np.asarray(li.get_text_embedding_batch(["a", "b"]),
                                                  dtype=np.float32))
    assert emb.embed([]).shape == (0, 6)


def test_name_rules_and_bad_shapes():
    with pytest.raises(ValueError, match="name="):
        LlamaIndexEmbedder(MockEmbedding(embed_dim=4))  # model_name "unknown"
    with pytest.raises(TypeError, match="BaseEmbedding"):
        LlamaIndexEmbedder(object(), name="x")
    wrong = LlamaIndexEmbedder(MockEmbedding(embed_dim=4), name="w", dim=5)
    with pytest.raises(ValueError, match=r"shape \(1, 4\); expected \(1, 5\)"):
        wrong.embed(["x"])


def test_real_minilm_through_llamaindex(embedder):
    emb = LlamaIndexEmbedder(MiniLMEmbedding(embedder))
    assert (emb.name, emb.dim) == ("all-MiniLM-L6-v2", 384)
    texts = ["Interest rates rose again.", "The cat sat on the mat."]
    np.testing.assert_allclose(emb.embed(texts), embedder.embed(texts), rtol=1e-5, atol=1e-6)
    # same name as the default embedder: the same collection, usable interchangeably
    store = lw.WebStore(":memory:", embedder=emb)
    assert store.collection == "llmweb__all-MiniLM-L6-v2"
    with lw.CollapseMonitor(store, run_id="r") as mon:
        for t in texts:
            mon.record(t, agent="a")
    assert store.search("bank interest", 1, run_id="r")[0].text == "Interest rates rose again."
    store.close()


def test_agent_callable_generate_n_and_respond():
    agent = LlamaIndexAgent(MockLLM(), system_prompt="You are terse.")
    said = agent("What next?")  # MockLLM without max_tokens echoes its prompt
    assert "You are terse." in said and "What next?" in said
    assert agent.generate_n("What next?", 3) == [said] * 3
    with pytest.raises(ValueError, match="positive int"):
        agent.generate_n("x", 0)
    req = AgentRequest(agent="a", step=1, query="Why?", context=("ctx one",),
                       system_prompt="Persona B.", temperature=0.5)
    assert as_responder(agent, name="a") is agent  # joins an agent web as is
    ans = agent.respond(req, 2)
    assert len(ans.texts) == 2 and ans.texts[0] == ans.texts[1]
    assert "Persona B." in ans.texts[0] and "You are terse." not in ans.texts[0]
    assert "- ctx one" in ans.texts[0] and "Why?" in ans.texts[0]
    assert ans.metadata == {"temperature_applied": False}
    with pytest.raises(TypeError, match="LlamaIndex LLM"):
        LlamaIndexAgent(object())


def test_agent_calls_are_monitored_when_instrumented(monitor):
    root = get_dispatcher()
    before = list(root.event_handlers)
    agent = LlamaIndexAgent(MockLLM(max_tokens=2))
    with instrument(monitor), instrument_tags({"llmweb_agent": "li-agent", "llmweb_step": 1}):
        agent.generate_n("q", 2)
    assert [(r.agent, r.step, r.index, r.text) for r in monitor.records()] == [
        ("li-agent", 1, 0, "text text"), ("li-agent", 1, 1, "text text")]
    assert list(root.event_handlers) == before
