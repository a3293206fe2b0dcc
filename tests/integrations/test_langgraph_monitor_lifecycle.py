"""The monitors a web graph makes for its runs are closed after each run (no thread/memory leak).

The LangGraph server keeps one compiled web graph per settings for the life of the process and
runs it for every run; each run's own :class:`~llmweb_plugin.monitor.CollapseMonitor` owns two
worker threads (``llmweb-embed-<run>``, ``llmweb-store-<run>``). These tests run one compiled graph
many times, through failures and resumes, and count the live monitor threads and the monitors
left open. A closed monitor refuses ``record`` with ``RuntimeError("... closed")``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from llmweb_langgraph import create_web_graph

import llmweb_plugin as lw
from llmweb_plugin.monitor import CollapseMonitor
from llmweb_plugin.testing import SeededEmbedder
from llmweb_plugin.web import AgentError, EchoAgent

SEEDS = [f"Seed post {i}: Bitcoin, markets and the future, take {i}." for i in range(10)]
AGENTS = ("a0", "a1", "a2")
N, L, T = len(AGENTS), 2, 3


class FailAt:
    """An echo agent that raises at one step, the first ``times`` times it gets there."""

    def __init__(self, name: str, step: int, times: int = 1) -> None:
        self.echo, self.step, self.left = EchoAgent(name), step, times

    def respond(self, request: Any, n: int, *, config: Any = None) -> list[str]:
        if request.step == self.step and self.left > 0:
            self.left -= 1
            raise TimeoutError(f"the model timed out at step {request.step}")
        return self.echo.generate_n(request.render(), n)


@pytest.fixture()
def store():
    s = lw.WebStore(":memory:", embedder=SeededEmbedder())
    yield s
    s.close()


@pytest.fixture()
def created(monkeypatch) -> list[CollapseMonitor]:
    """Every CollapseMonitor constructed during the test, in order."""
    made: list[CollapseMonitor] = []
    init = CollapseMonitor.__init__

    def spy(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(CollapseMonitor, "__init__", spy)
    yield made
    for mon in made:  # never leave threads behind, whatever the test found
        mon.close()


def monitor_threads(monitors: list[CollapseMonitor]) -> list[str]:
    """Names of the live worker threads of these monitors (other tests' may still run)."""
    runs = {m.run_id for m in monitors}
    return sorted(t.name for t in threading.enumerate() if t.is_alive()
                  and t.name.startswith(("llmweb-embed-", "llmweb-store-"))
                  and t.name.split("-", 2)[2] in runs)


def is_closed(mon: CollapseMonitor) -> bool:
    try:
        mon.record("probe", agent="probe", step=99, kind="external")
    except RuntimeError as exc:
        assert "closed" in str(exc)
        return True
    return False


def web(store: lw.WebStore, agents: dict[str, Any] | None = None, **kw: Any):
    agents = agents or {a: EchoAgent(a) for a in AGENTS}
    return create_web_graph(agents, store=store, seeds=SEEDS, responses_per_step=L, n_steps=T,
                            rng=0, **kw)


def assert_complete(store: lw.WebStore, out: dict[str, Any]) -> None:
    rid = out["run_id"]
    assert [h["step"] for h in out["history"]] == list(range(1, T + 1))
    assert store.count(rid, kind="seed") == len(SEEDS)
    assert store.count(rid, kind="post") == N * T
    assert store.count(rid, kind="response") == N * L * T
    assert sorted(r.step for r in store.records(rid, kind="post")) == sorted(
        t for t in range(1, T + 1) for _ in range(N))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_graph_many_runs_closes_each_runs_monitor(store, created, mode) -> None:
    graph = web(store).compile(checkpointer=InMemorySaver())
    counts, outs = [], []
    for i in range(5):
        cfg = {"configurable": {"thread_id": f"run-{i}"}}
        out = graph.invoke({}, cfg) if mode == "sync" else asyncio.run(graph.ainvoke({}, cfg))
        outs.append(out)
        assert_complete(store, out)
        assert monitor_threads(created) == []  # none left by this run or an earlier one
        counts.append(len(threading.enumerate()))
    assert max(counts) <= counts[0]  # live threads do not grow with runs
    assert [m.run_id for m in created] == [o["run_id"] for o in outs]  # one monitor per run
    assert len({o["run_id"] for o in outs}) == 5
    assert [is_closed(m) for m in created] == [True] * 5
    assert graph.builder.monitors.open_runs() == []


def test_a_run_whose_agent_raises_at_step_2_leaves_no_monitor_open(store, created) -> None:
    agents = {"a0": EchoAgent("a0"), "a1": FailAt("a1", step=2, times=10), "a2": EchoAgent("a2")}
    graph = web(store, agents, run_id="fails").compile(checkpointer=InMemorySaver())
    for i in range(3):  # the same failing run, retried: each attempt closes what it opened
        with pytest.raises(AgentError, match=r"agent 'a1' failed at step 2 .*timed out"):
            graph.invoke({} if i == 0 else None, {"configurable": {"thread_id": "f"}})
        assert monitor_threads(created) == []
        assert len(created) == i + 1 and all(is_closed(m) for m in created)
    # step 1 was written in full; the failed step's siblings were flushed, not lost
    steps = sorted(r.step for r in store.records("fails", kind="response"))
    assert steps == [1] * (N * L) + [2] * ((N - 1) * L)
    assert store.count("fails", kind="post") == N + (N - 1)
    assert graph.builder.monitors.open_runs() == []


def test_a_monitor_the_user_passes_stays_open_and_only_ours_close(store, created) -> None:
    mine = lw.CollapseMonitor(store, run_id="mine")
    theirs = web(store, monitor=mine).compile(checkpointer=InMemorySaver())
    ours = web(store).compile(checkpointer=InMemorySaver())
    out_mine = theirs.invoke({}, {"configurable": {"thread_id": "m"}})
    out_ours = ours.invoke({}, {"configurable": {"thread_id": "o"}})
    assert out_mine["run_id"] == "mine"
    assert_complete(store, out_mine)
    assert_complete(store, out_ours)
    assert created[0] is mine and len(created) == 2
    assert not is_closed(mine) and is_closed(created[1])
    assert monitor_threads(created) == monitor_threads([mine]) != []  # the user's workers, only
    assert mine.flush().stored == len(SEEDS) + N * T + N * L * T + 1  # + the open probe
    # a failing run with the user's monitor does not close it either
    mine2 = lw.CollapseMonitor(store, run_id="mine2")
    failing = web(store, {"a0": EchoAgent("a0"), "a1": FailAt("a1", step=2)}, monitor=mine2)
    with pytest.raises(AgentError):
        failing.compile(checkpointer=InMemorySaver()).invoke({}, {"configurable": {
            "thread_id": "m2"}})
    assert not is_closed(mine2) and not is_closed(mine) and len(created) == 3
    mine.close()
    mine2.close()
    assert monitor_threads(created) == []

def test_a_failed_run_resumed_from_its_checkpoint_completes_on_a_new_monitor(store,
                                                                             created) -> None:
    agents = {"a0": EchoAgent("a0"), "a1": FailAt("a1", step=2), "a2": EchoAgent("a2")}
    graph = web(store, agents).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "r"}}
    with pytest.raises(AgentError):
        graph.invoke({}, cfg)
    assert len(created) == 1 and is_closed(created[0]) and monitor_threads(created) == []
    out = graph.invoke(None, cfg)  # the resume: a fresh monitor for the same run
    assert_complete(store, out)
    assert len(created) == 2 and created[1] is not created[0]
    assert created[1].run_id == created[0].run_id == out["run_id"]
    assert all(is_closed(m) for m in created) and monitor_threads(created) == []


def test_a_run_paused_by_interrupts_keeps_its_monitor_until_its_last_step(store,
                                                                          created) -> None:
    graph = web(store).compile(checkpointer=InMemorySaver(), interrupt_after=["dispatch"])
    cfg = {"configurable": {"thread_id": "p"}}
    graph.invoke({}, cfg)
    pauses = 1
    while graph.get_state(cfg).next:
        rid = graph.get_state(cfg).values["run_id"]
        assert graph.builder.monitors.open_runs() == [rid]  # paused, not leaked: resumed below
        graph.invoke(None, cfg)
        pauses += 1
    out = graph.get_state(cfg).values
    assert pauses == T + 1
    assert_complete(store, out)
    assert len(created) == 1 and is_closed(created[0]) and monitor_threads(created) == []
    assert graph.builder.monitors.open_runs() == []


def test_the_server_factorys_cached_graph_leaves_no_monitor_per_run(monkeypatch, created,
                                                                    tmp_path) -> None:
    from llmweb_langgraph import server

    monkeypatch.setenv("LLMWEB_AGENTS",
                       "a=llmweb_plugin.web:EchoAgent,b=llmweb_plugin.web:EchoAgent")
    monkeypatch.setenv("LLMWEB_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LLMWEB_EMBEDDER", "llmweb_plugin.testing:SeededEmbedder")
    monkeypatch.setattr(server, "_graphs", {})  # this test's own cache, store and graph
    monkeypatch.setattr(server, "_stores", {})
    conf = {"llmweb_steps": 2, "llmweb_responses": 1, "llmweb_seed": 3}
    saver = InMemorySaver()  # the server's checkpointer, shared by its runs
    try:
        for i in range(4):  # as the server does: the factory per run, compiled, run
            config = {"configurable": {**conf, "thread_id": f"s{i}"}}
            graph = asyncio.run(server.make_web_graph(config))
            out = asyncio.run(graph.compile(checkpointer=saver).ainvoke({}, config))
            assert len(out["history"]) == 2
            assert monitor_threads(created) == [] and len(created) == i + 1
        assert all(is_closed(m) for m in created)
        # a run paused by an interrupt holds its monitor; the server's exit closes it
        config = {"configurable": {**conf, "thread_id": "paused"}}
        paused = asyncio.run(server.make_web_graph(config)).compile(
            checkpointer=saver, interrupt_after=["dispatch"])
        paused.invoke({}, config)
        assert len(monitor_threads(created)) == 2 and not is_closed(created[-1])
    finally:
        server._close_stores()
    assert all(is_closed(m) for m in created) and monitor_threads(created) == []
