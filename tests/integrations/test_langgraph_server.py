"""The web graph on LangGraph's own server (issue 13, item 4).

The server test starts the in-memory LangGraph server (``langgraph dev`` of
``langgraph-cli[inmem]``) on 127.0.0.1 in a subprocess with the project's ``langgraph.json``, a
clean environment and a temporary working folder, runs a small web of deterministic fake agents
through ``langgraph_sdk``, and checks the final state and, after the server stopped, the records
in the Qdrant folder the server wrote. The settings tests check the factory's configuration
rules in-process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from llmweb_langgraph import create_web_graph
from llmweb_langgraph.server import make_web_graph, server_settings, web_graph_for

import llmweb_plugin as lw
from llmweb_plugin.testing import SeededEmbedder, brute_force_collapse_norm
from llmweb_plugin.web import EchoAgent

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("alpha", "beta", "gamma")
#: the fake agents, importable in the server from its working folder (on its PYTHONPATH)
FAKE_AGENTS_MODULE = "from llmweb_plugin.web import EchoAgent\n\n" + "".join(
    f"\ndef {a}():\n    return EchoAgent({a!r}, seed=0)\n" for a in AGENTS)
SPECS = ",".join(f"{a}=fake_agents_llmweb:{a}" for a in AGENTS)
EMBEDDER = "llmweb_plugin.testing:SeededEmbedder"
T, L, SEED = 3, 2, 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, n: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-n:] if path.exists() else ""


class Server:
    """A ``langgraph dev`` subprocess in its own process group; ``stop()`` ends the group."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own group: the server and children
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        try:  # a child left in the group after the leader exited
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """The in-memory LangGraph server serving ``langgraph.json``; yields it and its store folder."""
    for pkg in ("langgraph_cli", "langgraph_api", "langgraph_runtime_inmem", "langgraph_sdk"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed: pip install 'langgraph-cli[inmem]' langgraph-sdk")
    app = tmp_path / "app"
    app.mkdir()
    (app / "fake_agents_llmweb.py").write_text(FAKE_AGENTS_MODULE, encoding="utf-8")
    store_dir = tmp_path / "store"
    port = _free_port()
    env = {  # a clean environment: nothing of the caller's leaks into the server
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(app),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        # the operator's settings (agents and store are not for API clients to choose)
        "LLMWEB_AGENTS": SPECS,
        "LLMWEB_STORE": str(store_dir),
        "LLMWEB_EMBEDDER": EMBEDDER,
    }
    log = tmp_path / "server.log"
    # No --allow-blocking: the factory is a coroutine that builds the graph in a worker thread,
    # and the nodes are sync functions the server runs in its executor, so langgraph dev's
    # blocking-call detector (blockbuster) stays on and would fail the run if we blocked its loop.
    # --no-reload: one process, no file watcher (the store folder is written during the run).
    cmd = [sys.executable, "-m", "langgraph_cli", "dev", "--host", "127.0.0.1", "--port",
           str(port), "--no-browser", "--no-reload", "--config", str(ROOT / "langgraph.json")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{srv.url}/ok", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer /ok in 90 s:\n{_log_tail(log)}")
            time.sleep(0.25)
        yield srv, store_dir
    finally:
        srv.stop()


def _reference_run(tmp_path: Path) -> dict[str, Any]:
    """The same web in-process (same agents, seed, L, T, embedder): what the server must give."""
    store = lw.WebStore(":memory:", embedder=SeededEmbedder())
    try:
        agents = {a: EchoAgent(a, seed=0) for a in AGENTS}
        graph = create_web_graph(agents, store=store, beta=0.5, responses_per_step=L, n_steps=T,
                                 rng=SEED).compile(checkpointer=InMemorySaver())
        return graph.invoke({}, {"configurable": {"thread_id": "reference"}})
    finally:
        store.close()


def test_web_runs_on_langgraph_server(server: tuple[Server, Path], tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    srv, store_dir = server
    client = get_sync_client(url=srv.url)
    # a client may not choose where the data goes: refused before anything runs or is written
    bad = client.threads.create()
    with pytest.raises(Exception, match="set LLMWEB_STORE in the server's environment"):
        client.runs.wait(bad["thread_id"], "llmweb_web", input={},
                         config={"configurable": {"llmweb_store": str(tmp_path / "elsewhere")}})
    assert [r["status"] for r in client.runs.list(bad["thread_id"])] == ["error"]
    assert not (tmp_path / "elsewhere").exists()

    thread = client.threads.create()
    out = client.runs.wait(
        thread["thread_id"], "llmweb_web", input={},
        config={"configurable": {"llmweb_steps": T, "llmweb_responses": L, "llmweb_seed": SEED}})
    assert isinstance(out, dict) and "__error__" not in out, out
    run_id = out["run_id"]
    assert (out["seed"], out["step"], out["agents"]) == (SEED, T, list(AGENTS))
    assert [h["step"] for h in out["history"]] == list(range(1, T + 1))
    assert Counter((p["step"], p["agent"]) for p in out["posts"]) == {
        (t, a): 1 for t in range(1, T + 1) for a in AGENTS}
    for h in out["history"]:
        assert h["n_records"] == len(AGENTS) * L
        assert h["per_agent_counts"] == {a: L for a in AGENTS}
    state = client.threads.get_state(thread["thread_id"])  # the server's own checkpoint
    assert state["next"] == [] and state["values"]["history"] == out["history"]

    # the same web in-process gives the same posts and norms: the server ran this web
    ref = _reference_run(tmp_path)
    assert sorted((p["step"], p["agent"], p["text"]) for p in out["posts"]) == \
        sorted((p["step"], p["agent"], p["text"]) for p in ref["posts"])
    assert [h["norm"] for h in out["history"]] == pytest.approx(
        [h["norm"] for h in ref["history"]], rel=1e-6)

    srv.stop()  # the embedded Qdrant folder is single-process: read it after the server ended
    assert srv.proc.returncode is not None
    store = lw.WebStore(store_dir, embedder=SeededEmbedder())
    try:
        assert store.runs() == [run_id]
        assert store.count(run_id, kind="seed") == 20
        posts = store.records(run_id, kind="post")
        assert sorted((p.step, p.agent, p.text) for p in posts) == \
            sorted((p["step"], p["agent"], p["text"]) for p in out["posts"])
        resp = store.records(run_id, kind="response", with_vectors=True)
        assert Counter((r.step, r.agent) for r in resp) == {
            (t, a): L for t in range(1, T + 1) for a in AGENTS}
        assert store.count(run_id) == 20 + len(AGENTS) * T + len(AGENTS) * L * T
        for h in out["history"]:  # each step's norm, recomputed from the stored vectors
            means = np.stack([np.mean([r.vector for r in resp
                                       if r.step == h["step"] and r.agent == a], axis=0)
                              for a in AGENTS]).astype(np.float64)
            assert h["norm"] == pytest.approx(brute_force_collapse_norm(means), rel=1e-4)
    finally:
        store.close()


# ---------------------------------------------------------------------- settings, in-process
ENV = {"LLMWEB_AGENTS": "a=llmweb_plugin.web:EchoAgent, b=llmweb_plugin.web:EchoAgent",
       "LLMWEB_STORE": ":memory:", "LLMWEB_EMBEDDER": EMBEDDER}


def test_settings_from_environment_and_configurable() -> None:
    s = server_settings({}, ENV)
    assert (s.agents, s.store, s.embedder) == (
        ("a=llmweb_plugin.web:EchoAgent", "b=llmweb_plugin.web:EchoAgent"), ":memory:", EMBEDDER)
    assert (s.responses_per_step, s.n_steps, s.beta, s.seed, s.run_id) == (4, 8, 0.5, None, None)
    env = {**ENV, "LLMWEB_STEPS": "5", "LLMWEB_RESPONSES": "3", "LLMWEB_BETA": "0.25",
           "LLMWEB_SEED": "11"}
    s = server_settings({"llmweb_steps": 2, "thread_id": "x", "run_id": "server-run"}, env)
    assert (s.n_steps, s.responses_per_step, s.beta, s.seed, s.run_id) == (2, 3, 0.25, 11, None)
    allowed = {**ENV, "LLMWEB_CONFIGURABLE_IMPORTS": "1"}
    s = server_settings({"llmweb_agents": ["x=m:a", "y=m:b"], "llmweb_store": "http://q:6333"},
                        allowed)
    assert (s.agents, s.store) == (("x=m:a", "y=m:b"), "http://q:6333")


@pytest.mark.parametrize(("configurable", "env", "error", "match"), [
    ({}, {"LLMWEB_STORE": "/x"}, ValueError, "no agents: set LLMWEB_AGENTS"),
    ({}, {"LLMWEB_AGENTS": ENV["LLMWEB_AGENTS"]}, ValueError, "no store: set LLMWEB_STORE"),
    ({"llmweb_agents": "a=m:x,b=m:y"}, ENV, ValueError, "'llmweb_agents' names code to import"),
    ({"llmweb_embedder": "m:E"}, ENV, ValueError, "LLMWEB_CONFIGURABLE_IMPORTS=1"),
    ({}, {**ENV, "LLMWEB_AGENTS": "a=m:x"}, ValueError, "at least two agents"),
    ({}, {**ENV, "LLMWEB_AGENTS": "a=m:x,a=m:y"}, ValueError, "must be unique"),
    ({}, {**ENV, "LLMWEB_AGENTS": "a=m,b=m:y"}, ValueError, "'a=m' is not NAME=MODULE:ATTR"),
    ({"llmweb_steps": "three"}, ENV, ValueError,
     "'llmweb_steps' / environment LLMWEB_STEPS must be an integer"),
    ({"llmweb_steps": 0}, ENV, ValueError, "LLMWEB_STEPS must be >= 1"),
    ({"llmweb_responses": True}, ENV, TypeError, "LLMWEB_RESPONSES must be an integer"),
    ({"llmweb_seed": -1}, ENV, ValueError, "LLMWEB_SEED must be >= 0"),
    ({"llmweb_beta": 1.5}, ENV, ValueError, r"LLMWEB_BETA must be a number in \(0, 1\]"),
    ({}, {**ENV, "LLMWEB_BETA": "half"}, ValueError, "LLMWEB_BETA must be a number"),
    ({"llmweb_run_id": 5}, ENV, TypeError, "LLMWEB_RUN_ID must be a string"),
    ({"llmweb_query": "  "}, ENV, ValueError, "LLMWEB_QUERY must not be empty"),
])
def test_bad_settings_are_refused(configurable: dict[str, Any], env: dict[str, str],
                                  error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        server_settings(configurable, env)


def test_factory_builds_and_reuses_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LLMWEB_RUN_ID", "factory-run")
    config = {"configurable": {"llmweb_steps": 2, "llmweb_responses": 2, "llmweb_seed": 3,
                               "thread_id": "t1"}}
    g1 = asyncio.run(make_web_graph(config))
    g2 = asyncio.run(make_web_graph(config))
    assert g1 is g2  # one graph (one monitor per run, one store) per settings and process
    other = asyncio.run(make_web_graph({"configurable": {"llmweb_steps": 3}}))
    assert other is not g1 and other.web_config.n_steps == 3
    assert (g1.web_config.n_steps, g1.web_config.responses_per_step, g1.run_id) == (2, 2,
                                                                                    "factory-run")
    out = g1.compile(checkpointer=InMemorySaver()).invoke({}, config)
    assert out["run_id"] == "factory-run" and len(out["history"]) == 2
    assert web_graph_for(server_settings(config["configurable"])) is g1  # the sync entry too


def test_bad_embedder_path_is_refused() -> None:
    for path, error, match in (("no-colon", ValueError, "'no-colon' is not MODULE:ATTR"),
                               ("llmweb_plugin.testing:Nope", LookupError, "has no attribute")):
        s = server_settings({}, {**ENV, "LLMWEB_EMBEDDER": path, "LLMWEB_STORE": ":memory:"})
        with pytest.raises(error, match=match):
            web_graph_for(s)


def test_langgraph_json_names_the_factory() -> None:
    import json

    conf = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    module, _, attr = conf["graphs"]["llmweb_web"].partition(":")
    mod = importlib.import_module(module)
    assert getattr(mod, attr) is make_web_graph
    assert asyncio.iscoroutinefunction(make_web_graph)
