"""CollapseCallbackHandler: real LangChain runs (fake models) -> real Qdrant records and metrics."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import (
    BaseChatModel,
    FakeListChatModel,
    FakeListLLM,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from llmweb_langchain import AsyncCollapseCallbackHandler, CollapseCallbackHandler

import llmweb_plugin as lw

PROMPT = ChatPromptTemplate.from_messages([("human", "{q}")])


def fake(*answers: Any) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(answers))


def chain_of(model: Any) -> Any:
    return PROMPT | model | StrOutputParser()


def triples(mon: lw.CollapseMonitor) -> list[tuple[str, int, str]]:
    return [(r.agent, r.step, r.text) for r in mon.records()]


class MultiGen(BaseChatModel):
    """A chat model that returns ``n`` generations per call (like an API with ``n=``)."""

    answers: list[Any]

    @property
    def _llm_type(self) -> str:
        return "multi-gen-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=a))
                                       for a in self.answers])


class FixedRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query, *, run_manager=None):  # type: ignore[override]
        return list(self.docs)


# ---------------------------------------------------------------------- LCEL chains
def test_lcel_chain_explicit_agent_and_step(monitor, check_history):
    h = CollapseCallbackHandler(monitor)
    root = uuid.uuid4()
    out = chain_of(fake("Contracts need two signatures.")).invoke(
        {"q": "what about contracts?"},
        config={"callbacks": [h], "metadata": {"llmweb_agent": "legal", "llmweb_step": 3},
                "tags": ["contracts"], "run_id": root},
    )
    assert out == "Contracts need two signatures."
    recs = monitor.records()
    assert [(r.agent, r.step, r.kind, r.index, r.text) for r in recs] == [
        ("legal", 3, "response", 0, "Contracts need two signatures.")]
    meta = dict(recs[0].metadata)
    run_uuid = uuid.UUID(meta.pop("lc_run_id"))
    assert run_uuid != root  # the model's own run, not the chain's
    assert meta == {"attributed_by": "llmweb_agent", "model": "GenericFakeChatModel",
                    "tags": ["contracts"]}
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(3, 1, 1)]
    assert h.tracked_runs == 0
    assert monitor.stats.handler_errors == 0


def test_agent_attribution_order(monitor):
    h = CollapseCallbackHandler(monitor, default_agent="fallback")
    cases = [
        ({"llmweb_agent": "a1", "lc_agent_name": "x", "langgraph_node": "y"}, ["t"], "a1"),
        ({"lc_agent_name": "a2", "langgraph_node": "y"}, ["t"], "a2"),
        ({"langgraph_node": "a3"}, ["t"], "a3"),
        ({}, ["langsmith:hidden", "a4", "later"], "a4"),
        ({}, ["nostream"], "fallback"),
        ({}, [], "fallback"),
    ]
    for i, (md, tags, _) in enumerate(cases):
        fake(f"answer {i}").invoke("q", config={"callbacks": [h], "tags": tags,
                                                "metadata": {**md, "llmweb_step": i}})
    recs = monitor.records()
    assert [(r.step, r.agent, r.text) for r in recs] == [
        (i, want, f"answer {i}") for i, (_, _, want) in enumerate(cases)]
    assert [r.metadata["attributed_by"] for r in recs] == [
        "llmweb_agent", "lc_agent_name", "langgraph_node", "tag", "default", "default"]


def test_agent_tags_option_and_inherited_tags(monitor):
    h = CollapseCallbackHandler(monitor, agent_tags={"hr", "legal"})
    chain = chain_of(fake("one", "two"))
    chain.invoke({"q": "x"}, config={"callbacks": [h], "tags": ["prod", "hr"]})
    chain.invoke({"q": "x"}, config={"callbacks": [h], "tags": ["prod"]})
    assert triples(monitor) == [("assistant", 0, "two"), ("hr", 0, "one")]
    # the model run's own tags (seq:step:2 is LangChain bookkeeping) are stored
    assert [r.metadata["tags"] for r in monitor.records()] == [["prod"], ["prod", "hr"]]


def test_step_sources_and_per_agent_counter(monitor, check_history):
    h = CollapseCallbackHandler(monitor, step_by="langgraph_step")  # the per-call counter
    model = fake(*[f"text {i}" for i in range(7)])

    def call(md):
        model.invoke("q", config={"callbacks": [h], "metadata": md})

    call({"llmweb_agent": "a"})                      # counter: a -> 0
    call({"llmweb_agent": "a"})                      # a -> 1
    call({"llmweb_agent": "b"})                      # b -> 0
    call({"llmweb_agent": "b", "langgraph_step": 5})  # langgraph step
    call({"llmweb_agent": "b", "llmweb_step": "7", "langgraph_step": 5})  # explicit wins, "7" ok
    call({"llmweb_agent": "a", "llmweb_step": -1})   # bad: counted, counter used (a -> 2)
    call({"llmweb_agent": "a", "llmweb_step": 2.5})  # bad: counted, counter used (a -> 3)
    assert triples(monitor) == [
        ("a", 0, "text 0"), ("b", 0, "text 2"), ("a", 1, "text 1"), ("a", 2, "text 5"),
        ("a", 3, "text 6"), ("b", 5, "text 3"), ("b", 7, "text 4"),
    ]
    stats = monitor.flush()
    assert stats.handler_errors == 2
    assert "llmweb_step=-1" in stats.errors[0] and "llmweb_step=2.5" in stats.errors[1]
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [
        (0, 2, 2), (1, 1, 1), (2, 1, 1), (3, 1, 1), (5, 1, 1), (7, 1, 1)]


def test_several_chains_in_threads(monitor, check_history):
    h = CollapseCallbackHandler(monitor)
    names = ["legal", "finance", "hr"]
    errors: list[BaseException] = []

    def worker(name):
        try:
            chain = chain_of(fake(*[f"{name} view number {s}" for s in range(4)]))
            for s in range(4):
                chain.invoke({"q": "status?"}, config={
                    "callbacks": [h], "metadata": {"llmweb_agent": name, "llmweb_step": s}})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(triples(monitor)) == sorted(
        (n, s, f"{n} view number {s}") for n in names for s in range(4))
    hist = check_history(monitor)
    assert [(m.step, m.n_agents, m.n_records) for m in hist] == [(s, 3, 3) for s in range(4)]
    assert all(np.isfinite(m.norm) and m.norm > 0 for m in hist)
    assert h.tracked_runs == 0


def test_concurrency_8_threads_x_200_calls(monitor, check_history):
    h = CollapseCallbackHandler(monitor)
    n_threads, n_calls = 8, 200
    barrier = threading.Barrier(n_threads)

    def worker(t):
        model = FakeListChatModel(responses=[f"agent {t} says {i}" for i in range(n_calls)])
        barrier.wait()
        for _ in range(n_calls):
            model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": f"t{t}"}})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = monitor.flush()
    assert (stats.received, stats.stored, stats.failed, stats.handler_errors) == (1600, 1600, 0, 0)
    assert monitor.store.count(monitor.run_id) == 1600
    recs = monitor.records()
    for t in range(n_threads):
        mine = [(r.step, r.text) for r in recs if r.agent == f"t{t}"]
        assert sorted(mine) == [(i, f"agent {t} says {i}") for i in range(n_calls)]
    hist = check_history(monitor)
    assert len(hist) == n_calls and {(m.n_agents, m.n_records) for m in hist} == {(8, 8)}
    assert h.tracked_runs == 0


# ---------------------------------------------------------------------- async
async def test_async_handler_and_sync_handler_under_ainvoke(store):
    with lw.CollapseMonitor(store, run_id="async") as mon:
        ah = AsyncCollapseCallbackHandler(mon)
        sh = CollapseCallbackHandler(mon, default_agent="sync")
        chain_a = chain_of(fake("alpha one", "alpha two"))
        chain_b = chain_of(fake("beta one"))
        await asyncio.gather(
            chain_a.ainvoke({"q": "x"}, config={"callbacks": [ah],
                                                "metadata": {"llmweb_agent": "alpha"}}),
            chain_b.ainvoke({"q": "x"}, config={"callbacks": [sh]}),
        )
        await chain_a.ainvoke({"q": "x"}, config={"callbacks": [ah],
                                                  "metadata": {"llmweb_agent": "alpha"}})
        # the async handler also works under sync invocation
        chain_of(fake("gamma")).invoke({"q": "x"}, config={"callbacks": [ah]})
        assert sorted(triples(mon)) == [("alpha", 0, "alpha one"), ("alpha", 1, "alpha two"),
                                        ("assistant", 0, "gamma"), ("sync", 0, "beta one")]
        assert ah.tracked_runs == 0 and sh.tracked_runs == 0


# ---------------------------------------------------------------------- streaming
def test_streaming_records_the_aggregated_message(monitor):
    h = CollapseCallbackHandler(monitor)
    chain = chain_of(fake("streamed words arrive one by one"))
    pieces = list(chain.stream({"q": "x"}, config={"callbacks": [h],
                                                   "metadata": {"llmweb_agent": "news"}}))
    assert len(pieces) > 3 and "".join(pieces) == "streamed words arrive one by one"
    assert triples(monitor) == [("news", 0, "streamed words arrive one by one")]
    assert h.tracked_runs == 0


async def test_async_streaming(monitor):
    h = AsyncCollapseCallbackHandler(monitor)
    model = fake("async stream text")
    chunks = [c async for c in model.astream("x", config={"callbacks": [h],
                                                           "metadata": {"llmweb_step": 2}})]
    assert "".join(c.content for c in chunks) == "async stream text"
    assert triples(monitor) == [("assistant", 2, "async stream text")]


# ---------------------------------------------------------------------- message shapes
def test_usage_metadata_recorded_per_agent(monitor):
    h = CollapseCallbackHandler(monitor)
    msg = AIMessage(content="with usage", usage_metadata={
        "input_tokens": 11, "output_tokens": 4, "total_tokens": 15})
    model = GenericFakeChatModel(messages=iter([msg, msg.model_copy()]))
    for _ in range(2):
        model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": "ops"}})
    assert monitor.usage == {"ops": {"input_tokens": 22, "output_tokens": 8, "total_tokens": 30}}
    recs = monitor.records()
    assert [r.metadata["usage"] for r in recs] == [
        {"input_tokens": 11, "output_tokens": 4, "total_tokens": 15}] * 2


def test_content_blocks_are_joined(monitor):
    h = CollapseCallbackHandler(monitor)
    msg = AIMessage(content=[{"type": "reasoning", "reasoning": "hidden"},
                             {"type": "text", "text": "Visible "}, "and plain."])
    GenericFakeChatModel(messages=iter([msg])).invoke("q", config={"callbacks": [h]})
    assert triples(monitor) == [("assistant", 0, "Visible and plain.")]


def test_n_generations_share_one_step(monitor):
    h = CollapseCallbackHandler(monitor)
    model = MultiGen(answers=["first take", "second take", "third take"])
    model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": "m"}})
    model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": "m"}})
    model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": "m",
                                                             "llmweb_step": 9}})
    recs = monitor.records()
    assert [(r.step, r.index, r.text) for r in recs] == [
        (0, 0, "first take"), (0, 1, "second take"), (0, 2, "third take"),
        (1, 0, "first take"), (1, 1, "second take"), (1, 2, "third take"),
        (9, 0, "first take"), (9, 1, "second take"), (9, 2, "third take"),
    ]
    assert [r.metadata.get("generation") for r in recs[6:]] == [0, 1, 2]
    assert len({r.metadata["lc_run_id"] for r in recs}) == 3


def test_plain_llm_and_empty_output(monitor):
    h = CollapseCallbackHandler(monitor)
    chain = PROMPT | FakeListLLM(responses=["a completion", "   "])
    chain.invoke({"q": "x"}, config={"callbacks": [h], "metadata": {"llmweb_agent": "llm"}})
    chain.invoke({"q": "x"}, config={"callbacks": [h], "metadata": {"llmweb_agent": "llm"}})
    assert triples(monitor) == [("llm", 0, "a completion")]
    stats = monitor.flush()
    assert (stats.received, stats.stored, stats.skip_reasons) == (2, 1, {"empty_text": 1})
    assert monitor.records()[0].metadata["model"] == "FakeListLLM"


def test_metadata_keys_are_copied_and_reserved_ones_refused(monitor):
    h = CollapseCallbackHandler(monitor, metadata_keys=("session_id",))
    fake("hello").invoke("q", config={"callbacks": [h],
                                      "metadata": {"session_id": "s-42", "other": 1}})
    md = monitor.records()[0].metadata
    assert md["session_id"] == "s-42" and "other" not in md
    with pytest.raises(ValueError, match="reserved"):
        CollapseCallbackHandler(monitor, metadata_keys=("step",))
    with pytest.raises(TypeError, match="CollapseMonitor"):
        CollapseCallbackHandler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_agent"):
        CollapseCallbackHandler(monitor, default_agent="")


# ---------------------------------------------------------------------- retrieval
def test_retrieved_documents_attached_per_agent(monitor):
    h = CollapseCallbackHandler(monitor, max_retrieved=2, snippet_chars=10)
    docs = [Document(page_content="Clause 7 covers termination.", id="d1"),
            Document(page_content="Clause 9 covers payment terms.", id="d2"),
            Document(page_content="Annex A.", id="d3")]
    rag = ({"context": FixedRetriever(docs=docs), "q": RunnablePassthrough()}
           | ChatPromptTemplate.from_messages([("human", "{context}\n{q}")])
           | fake("Termination is in clause 7.") | StrOutputParser())
    rag.invoke("where is termination?", config={"callbacks": [h],
                                                "metadata": {"llmweb_agent": "legal"}})
    # a plain chain in another top-level run sees nothing of that retrieval
    chain_of(fake("no context")).invoke({"q": "x"}, config={
        "callbacks": [h], "metadata": {"llmweb_agent": "legal"}})
    recs = monitor.records()
    assert [r.text for r in recs] == ["Termination is in clause 7.", "no context"]
    assert recs[0].metadata["retrieved"] == [{"id": "d1", "snippet": "Clause 7 c"},
                                             {"id": "d2", "snippet": "Clause 9 c"}]
    assert "retrieved" not in recs[1].metadata
    assert h.tracked_runs == 0


# ---------------------------------------------------------------------- never break the app
class RaisingEmbedder:
    name = "raising"
    dim = 4

    def embed(self, texts):
        raise RuntimeError("embedding service down")


def test_failing_embedder_never_breaks_the_chain():
    store = lw.WebStore(":memory:", embedder=None, dim=4)
    mon = lw.CollapseMonitor(store, run_id="fail", embedder=RaisingEmbedder())
    h = CollapseCallbackHandler(mon)
    out = chain_of(fake("still answered")).invoke({"q": "x"}, config={"callbacks": [h]})
    assert out == "still answered"
    with pytest.raises(lw.MonitorError, match="embedding service down"):
        mon.flush(strict=True)
    stats = mon.stats
    assert (stats.received, stats.stored, stats.failed) == (1, 0, 1)
    assert [it.text for it in mon.failed_items] == ["still answered"]
    assert store.count("fail") == 0
    mon.close()
    store.close()


def test_handler_failures_are_counted_not_raised(monitor):
    h = CollapseCallbackHandler(monitor)
    monitor.close()  # recording into a closed monitor raises inside the handler
    assert chain_of(fake("fine")).invoke({"q": "x"}, config={"callbacks": [h]}) == "fine"
    stats = monitor.stats
    assert stats.handler_errors == 1 and "on_llm_end: RuntimeError" in stats.errors[-1]
    assert h.raise_error is False


class Boom(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "boom"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        raise ValueError("model exploded")


def test_bookkeeping_is_empty_after_many_calls_and_errors(monitor):
    h = CollapseCallbackHandler(monitor)
    chain = chain_of(FakeListChatModel(responses=[f"r{i}" for i in range(50)]))
    for i in range(50):
        chain.invoke({"q": "x"}, config={"callbacks": [h]})
    bad = PROMPT | Boom() | StrOutputParser()
    for _ in range(5):
        with pytest.raises(ValueError, match="model exploded"):
            bad.invoke({"q": "x"}, config={"callbacks": [h]})
    failing_step = RunnableLambda(lambda _: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        (chain | failing_step).invoke({"q": "x"}, config={"callbacks": [h]})
    assert h.tracked_runs == 0 and h.evicted == 0
    assert monitor.flush().stored == 51


def test_bookkeeping_is_bounded(monitor):
    h = CollapseCallbackHandler(monitor, max_tracked_runs=3)
    for i in range(10):  # starts that never end (e.g. abandoned streams)
        h.on_chain_start({}, {}, run_id=uuid.uuid4(), parent_run_id=None)
    assert h.tracked_runs == 3 and h.evicted == 7


def test_other_handlers_still_run(monitor):
    seen = []

    class Other(BaseCallbackHandler):
        def on_llm_end(self, response, **kwargs):
            seen.append(response.generations[0][0].text)

    chain_of(fake("shared")).invoke({"q": "x"}, config={
        "callbacks": [CollapseCallbackHandler(monitor), Other()]})
    assert seen == ["shared"] and triples(monitor) == [("assistant", 0, "shared")]


def test_tool_call_turns_are_a_counted_skip_not_a_warning(monitor, caplog):
    """A tool-calling agent's tool turn has no text: counted as ``tool_call_only``, not lost."""
    import logging

    call = AIMessage(content="", tool_calls=[{"name": "search", "args": {"q": "btc"},
                                              "id": "call-1", "type": "tool_call"}])
    model = GenericFakeChatModel(messages=iter([call, call, AIMessage("the answer")]))
    h = CollapseCallbackHandler(monitor)
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin.monitor"):
        for _ in range(3):
            model.invoke("q", config={"callbacks": [h], "metadata": {"llmweb_agent": "tooly"}})
    stats = monitor.flush()
    assert stats.skip_reasons == {"tool_call_only": 2}
    assert (stats.received, stats.stored, stats.failed) == (3, 1, 0)
    assert [r.text for r in monitor.records()] == ["the answer"]
    assert sum("tool_call_only" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING) == 1


@pytest.mark.parametrize("kw,match", [
    ({"max_retrieved": -1}, "max_retrieved and snippet_chars must be >= 0"),
    ({"snippet_chars": -5}, "max_retrieved and snippet_chars must be >= 0"),
    ({"max_tracked_runs": 0}, "max_tracked_runs must be >= 1"),
])
def test_handler_rejects_bad_bounds(monitor, kw, match):
    with pytest.raises(ValueError, match=match):
        CollapseCallbackHandler(monitor, **kw)
    with pytest.raises(ValueError, match=match):
        AsyncCollapseCallbackHandler(monitor, **kw)
