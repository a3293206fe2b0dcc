"""collapse_monitor: every LangChain run inside the block is monitored, no callbacks passed."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llmweb_langchain import collapse_monitor

import llmweb_plugin as lw

PROMPT = ChatPromptTemplate.from_messages([("human", "{q}")])


def fake(*answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(answers))


def triples(store, run_id):
    return [(r.agent, r.step, r.text) for r in store.records(run_id)]


def test_block_monitors_runs_without_callbacks(store, check_history):
    chain = PROMPT | fake("inside one", "inside two", "outside") | StrOutputParser()
    with collapse_monitor(store=store, run_id="ctx", default_agent="desk") as mon:
        assert mon.run_id == "ctx"
        chain.invoke({"q": "a"})
        chain.invoke({"q": "b"}, config={"metadata": {"llmweb_agent": "legal"}})
    chain.invoke({"q": "c"})  # after the block: not monitored
    assert triples(store, "ctx") == [("desk", 0, "inside one"), ("legal", 0, "inside two")]
    assert mon.stats.stored == 2
    with pytest.raises(RuntimeError, match="closed"):  # the block created it, so closed it
        mon.record("late", agent="x")
    assert [(m.step, m.n_agents) for m in check_history(mon)] == [(0, 2)]


def test_given_monitor_is_flushed_not_closed(monitor):
    with collapse_monitor(monitor) as mon:
        assert mon is monitor
        fake("hello").invoke("q")
    assert monitor.stats.stored == 1  # flushed at exit
    monitor.record("still open", agent="x")
    assert monitor.flush().stored == 2
    with pytest.raises(ValueError, match="uses the given monitor"), \
            collapse_monitor(monitor, run_id="other"):
        pass


def test_default_store_is_in_memory():
    with collapse_monitor(run_id="mem") as mon:
        fake("kept in memory").invoke("q")
    assert triples(mon.store, "mem") == [("assistant", 0, "kept in memory")]
    mon.store.close()


def test_nested_blocks_with_different_monitors_both_record(store):
    outer = lw.CollapseMonitor(store, run_id="outer")
    inner = lw.CollapseMonitor(store, run_id="inner")
    with collapse_monitor(outer, default_agent="o"):
        fake("before").invoke("q")
        with collapse_monitor(inner, default_agent="i"):
            fake("both").invoke("q")
        fake("after").invoke("q")
    assert triples(store, "outer") == [("o", 0, "before"), ("o", 1, "both"), ("o", 2, "after")]
    assert triples(store, "inner") == [("i", 0, "both")]
    outer.close()
    inner.close()


def test_nested_same_monitor_inner_wins_no_duplicates(monitor):
    with collapse_monitor(monitor, default_agent="outer"):
        fake("one").invoke("q")
        with collapse_monitor(monitor, default_agent="inner"):
            fake("two").invoke("q")
        fake("three").invoke("q")
    assert triples(monitor.store, "test") == [
        ("inner", 0, "two"), ("outer", 0, "one"), ("outer", 1, "three")]


def test_batch_threads_and_async_tasks_inherit_the_block(store):
    model = FakeListChatModel(responses=["same answer"])
    with collapse_monitor(store=store, run_id="fan") as mon:
        model.batch(["a", "b", "c", "d"], config={"metadata": {"llmweb_agent": "batch"}})

        async def go():
            await asyncio.gather(*(model.ainvoke("x", config={"metadata": {
                "llmweb_agent": "task", "llmweb_step": i}}) for i in range(3)))
        asyncio.run(go())
        # a thread started by the user with a copied context is covered too
        import contextvars
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(ctx.run, model.invoke, "y",
                        {"metadata": {"llmweb_agent": "thread"}}).result()
        # a bare thread does not inherit the context: not monitored
        t = threading.Thread(target=model.invoke, args=("z",))
        t.start()
        t.join()
    recs = store.records("fan")
    assert sorted((r.agent, r.step) for r in recs) == [
        ("batch", 0), ("batch", 1), ("batch", 2), ("batch", 3),
        ("task", 0), ("task", 1), ("task", 2), ("thread", 0)]
    assert mon.stats.stored == 8


def test_block_exception_propagates_and_monitor_is_closed(store):
    with pytest.raises(KeyError), collapse_monitor(store=store, run_id="err") as mon:
        fake("recorded anyway").invoke("q")
        raise KeyError("user bug")
    assert triples(store, "err") == [("assistant", 0, "recorded anyway")]
    assert mon.stats.stored == 1
