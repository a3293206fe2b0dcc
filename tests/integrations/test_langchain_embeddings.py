"""LangChainEmbedder, and langchain-qdrant reading the collection a monitor wrote."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_qdrant import QdrantVectorStore
from llmweb_langchain import CollapseCallbackHandler, LangChainEmbedder

import llmweb_plugin as lw


class MiniLMEmbeddings(Embeddings):
    """The minimal LangChain ``Embeddings`` over llmweb's own MiniLM embedder."""

    def __init__(self, inner: lw.Embedder) -> None:
        self.inner = inner

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed([text])[0].tolist()


def test_adapter_plumbing_exact_values():
    lc = DeterministicFakeEmbedding(size=16)
    emb = LangChainEmbedder(lc, name="fake-16")
    assert (emb.name, emb.dim) == ("fake-16", 16)
    texts = ["alpha", "beta", "alpha"]
    out = emb.embed(texts)
    assert out.dtype == np.float32 and out.shape == (3, 16)
    np.testing.assert_array_equal(out, np.asarray(lc.embed_documents(texts), dtype=np.float32))
    np.testing.assert_array_equal(out[0], out[2])
    assert emb.embed([]).shape == (0, 16)


def test_dim_is_probed_or_checked():
    emb = LangChainEmbedder(DeterministicFakeEmbedding(size=5), name="probe", dim=None)
    assert emb.dim == 5
    wrong = LangChainEmbedder(DeterministicFakeEmbedding(size=5), name="wrong", dim=7)
    with pytest.raises(ValueError, match=r"returned shape \(1, 5\); expected \(1, 7\)"):
        wrong.embed(["x"])


def test_name_is_required_unless_the_model_says():
    with pytest.raises(ValueError, match="name="):
        LangChainEmbedder(DeterministicFakeEmbedding(size=4))

    class Named(DeterministicFakeEmbedding):
        model: str = "acme-embed-v2"

    assert LangChainEmbedder(Named(size=4)).name == "acme-embed-v2"
    with pytest.raises(TypeError, match="not a LangChain Embeddings"):
        LangChainEmbedder(object(), name="x")
    with pytest.raises(ValueError, match="dim"):
        LangChainEmbedder(DeterministicFakeEmbedding(size=4), name="x", dim=0)


def test_webstore_and_monitor_with_a_fake_langchain_embedder():
    emb = LangChainEmbedder(DeterministicFakeEmbedding(size=8), name="fake-8")
    store = lw.WebStore(":memory:", embedder=emb)
    assert (store.collection, store.dim) == ("llmweb__fake-8", 8)
    with lw.CollapseMonitor(store, run_id="r") as mon:
        mon.record("first", agent="a", step=1)
        mon.record("second", agent="b", step=1)
        recs = mon.records(with_vectors=True)
    assert [(r.agent, r.text) for r in recs] == [("a", "first"), ("b", "second")]
    want = emb.embed(["first"])[0]
    # Qdrant keeps cosine-distance vectors unit-normalised
    np.testing.assert_allclose(recs[0].vector, want / np.linalg.norm(want), rtol=1e-5)
    hit = store.search("second", 1, run_id="r")[0]  # the fake is deterministic per text
    assert hit.text == "second" and hit.score == pytest.approx(1.0, abs=1e-5)
    store.close()


def test_real_minilm_through_langchain_embeddings(embedder):
    emb = LangChainEmbedder(MiniLMEmbeddings(embedder), name="minilm-via-langchain", dim=384)
    texts = ["Interest rates rose again.", "The cat sat on the mat."]
    np.testing.assert_allclose(emb.embed(texts), embedder.embed(texts), rtol=1e-5, atol=1e-6)
    store = lw.WebStore(":memory:", embedder=emb)
    with lw.CollapseMonitor(store, run_id="r") as mon:
        for t in texts:
            mon.record(t, agent="a")
    assert store.search("bank rates", 1, run_id="r")[0].text == "Interest rates rose again."
    store.close()


def test_langchain_qdrant_reads_what_the_monitor_wrote(store, embedder):
    texts = {"legal": "Contracts must be signed by both parties.",
             "finance": "Quarterly revenue grew by ten percent.",
             "hr": "New hires get four weeks of onboarding."}
    with lw.CollapseMonitor(store, run_id="shared") as mon:
        h = CollapseCallbackHandler(mon)
        for step, (agent, text) in enumerate(texts.items(), start=1):
            GenericFakeChatModel(messages=iter([text])).invoke("q", config={
                "callbacks": [h], "metadata": {"llmweb_agent": agent, "llmweb_step": step}})
    vs = QdrantVectorStore(client=store.client, collection_name=store.collection,
                           embedding=MiniLMEmbeddings(embedder))
    docs = vs.similarity_search("how much did revenue grow?", k=3)
    assert sorted(d.page_content for d in docs) == sorted(texts.values())
    top = docs[0]
    assert top.page_content == texts["finance"]
    assert {k: top.metadata[k] for k in ("run_id", "agent", "step", "kind", "index")} == {
        "run_id": "shared", "agent": "finance", "step": 2, "kind": "response", "index": 0}
    assert top.metadata["attributed_by"] == "llmweb_agent" and top.metadata["lc_run_id"]

    # ...and a retriever over the web feeds an agent: the record says whose posts it read
    with lw.CollapseMonitor(store, run_id="reader") as mon:
        h = CollapseCallbackHandler(mon)
        rag = ({"context": vs.as_retriever(search_kwargs={"k": 1}), "q": RunnablePassthrough()}
               | ChatPromptTemplate.from_messages([("human", "{context}\n{q}")])
               | GenericFakeChatModel(messages=iter(["Revenue is up."])) | StrOutputParser())
        rag.invoke("revenue growth", config={"callbacks": [h],
                                             "metadata": {"llmweb_agent": "analyst"}})
        rec = mon.records()[0]
    (got,) = rec.metadata["retrieved"]
    assert got["snippet"] == texts["finance"]
    assert (got["source_agent"], got["source_step"], got["source_run_id"]) == (
        "finance", 2, "shared")
    assert got["id"] == top.metadata["_id"]
