"""Crash safety with a real process death at every node boundary, then ``llmweb run --resume``.

A 3-step run of 3 fake agents (``llmweb run --fake -T 3 -L 2``) saves 17 task writes (start,
setup, and per step: dispatch, one per agent, metrics) and 12 checkpoints. For every write and
the first two checkpoints, a process runs the real command (``llmweb_plugin.cli.main``) with
the SQLite checkpointer's ``put_writes`` (or ``put``) patched to ``os._exit(9)`` right after
(or before) its n-th call: the process dies with nothing flushed or closed, at every boundary
between nodes, including those where the checkpoint's ``next`` is empty although steps remain,
and before the run's first checkpoint. One "zygote" subprocess imports everything once and
forks a child per kill point, so the matrix takes seconds. Each run is then resumed with
``llmweb run --resume k`` in a fresh process (this one) and must end with exactly what an
uninterrupted run holds: ``|A(0)| + n T`` seeds and posts, ``n L T`` responses and ``T``
history entries, the same records and the same ``||D(t)||_F`` series; the resume re-runs
only agent tasks whose writes were not saved, each once, and a second resume is a no-op. One kill
point also runs both processes as the real ``llmweb`` console script with the real MiniLM
embedder, alongside the matrix.

The fork children embed with a deterministic hash embedder (counting and ids need no
semantics; the store's embedder is swapped the same way in this process for the resume).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import llmweb_langgraph.web as lg_web
import llmweb_plugin as lw
import llmweb_plugin.store as lw_store
from llmweb_plugin.cli import main
from llmweb_plugin.web import CRYPTO_SEEDS, EchoAgent, run_web

N, L, T = 3, 2, 3
AGENTS = [f"echo-{i + 1}" for i in range(N)]
RUN = ["run", "--fake", "-T", str(T), "-L", str(L), "--run-id", "k", "--no-progress",
       "--no-report"]
N_WRITES, N_PUTS = 2 + T * (N + 2), 2 + 1 + 3 * T  # put_writes and put calls of a whole run
KILL_POINTS = ([("put_writes", n) for n in range(1, N_WRITES + 1)]
               + [("put", n) for n in (1, 2)] + [("put_before", n) for n in (1, 2)])


class HashEmbedder:
    """Deterministic unit 16-d vectors from a text's SHA-256 (no model to load)."""

    name = "hash-test"
    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), 16), np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode("utf-8")).digest()[:16]
            out[i] = np.frombuffer(h, np.uint8).astype(np.float32) - 127.5
        # unit norm, like MiniLM: qdrant-client's local mode persists cosine vectors
        # unnormalised and reads them back so after a reopen
        return out / np.linalg.norm(out, axis=1, keepdims=True)


#: one subprocess: imports once, then forks a child per kill point that runs `llmweb run`
ZYGOTE = "import hashlib\nimport numpy as np\n" + inspect.getsource(HashEmbedder)
ZYGOTE += textwrap.dedent('''
    import json, os, sys, threading
    from langgraph.checkpoint.sqlite import SqliteSaver
    import llmweb_plugin.store as lw_store
    from llmweb_plugin.cli import main
    # what `llmweb run` imports lazily, imported once here rather than in every child (torch:
    # `llmweb run` sets its thread count even for --fake; 3 of each child's 4 s when not here)
    import importlib
    for name in ("langchain_core.tracers.context", "langchain_core.tracers.run_collector",
                 "langchain_core.tracers.stdout", "numpy.random", "portalocker", "sqlite3",
                 "torch", "llmweb_langgraph", "llmweb_plugin.cli.run", "llmweb_plugin.cli.report",
                 "llmweb_plugin.web", "llmweb_plugin.report"):
        try:
            importlib.import_module(name)
        except ImportError:  # only a speed-up
            pass

    lw_store.default_embedder = HashEmbedder
    root, points, run = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    KILL = {"kind": None, "n": 0}
    COUNT = {"put": 0, "put_writes": 0}
    lock = threading.Lock()
    put_writes, put = SqliteSaver.put_writes, SqliteSaver.put

    def patched_put_writes(self, config, writes, task_id, task_path=""):
        put_writes(self, config, writes, task_id, task_path)
        with lock:
            COUNT["put_writes"] += 1
            if KILL["kind"] == "put_writes" and COUNT["put_writes"] == KILL["n"]:
                os._exit(9)

    def patched_put(self, config, checkpoint, metadata, new_versions):
        with lock:
            COUNT["put"] += 1
            if KILL["kind"] == "put_before" and COUNT["put"] == KILL["n"]:
                os._exit(9)
        out = put(self, config, checkpoint, metadata, new_versions)
        if KILL["kind"] == "put" and COUNT["put"] == KILL["n"]:
            os._exit(9)
        return out

    SqliteSaver.put_writes, SqliteSaver.put = patched_put_writes, patched_put
    if threading.active_count() != 1:  # fork is only safe without other threads
        sys.exit(f"zygote has {threading.active_count()} threads before fork")
    status, running = {}, {}
    for kind, n in points:
        if len(running) >= 3:  # a few at a time: the children wait on disk writes mostly
            pid, st = os.wait()
            status[running.pop(pid)] = os.waitstatus_to_exitcode(st)
        folder = os.path.join(root, f"{kind}-{n}")
        os.makedirs(folder)
        pid = os.fork()
        if pid == 0:
            KILL.update(kind=kind, n=n)
            sys.stdout = sys.stderr = open(os.path.join(folder, "log.txt"), "w")
            code = main(run + ["--out", folder])
            sys.stdout.write(json.dumps(COUNT) + "\\n")
            sys.stdout.flush()
            os._exit(100 + code)  # not killed: 100 + the exit code
        running[pid] = f"{kind}-{n}"
    while running:
        pid, st = os.wait()
        status[running.pop(pid)] = os.waitstatus_to_exitcode(st)
    print(json.dumps(status))
''')


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


KILL_CLI = textwrap.dedent('''
    import os, sys
    from langgraph.checkpoint.sqlite import SqliteSaver
    from llmweb_plugin.cli import main

    n, count, put_writes = int(os.environ["KILL_AFTER_POSTS"]), [0], SqliteSaver.put_writes

    def patched(self, config, writes, *args, **kwargs):
        put_writes(self, config, writes, *args, **kwargs)
        if any(channel == "posts" for channel, _ in writes):  # an agent task's writes
            count[0] += 1
            if count[0] == n:
                os._exit(9)

    SqliteSaver.put_writes = patched
    sys.exit(main(sys.argv[1:]))
''')
#: after the agent tasks of steps 1 and 2: the checkpoint's ``next`` is then empty
CONSOLE_KILL_AFTER = 2 * N

#: runs the killed ``llmweb run`` and then ``llmweb run --resume`` (the console script)
CONSOLE_PAIR = textwrap.dedent('''
    import json, os, shutil, subprocess, sys
    root, run = sys.argv[1], json.loads(sys.argv[2])
    out = os.path.join(root, "out")
    kill = subprocess.run([sys.executable, os.path.join(root, "kill.py"), *run, "--out", out],
                          capture_output=True, text=True,
                          env={**os.environ, "KILL_AFTER_POSTS": sys.argv[3]})
    script = shutil.which("llmweb", path=os.path.dirname(sys.executable)) or shutil.which("llmweb")
    cmd = [script] if script else [sys.executable, "-m", "llmweb_plugin.cli"]
    resume = subprocess.run([*cmd, "run", "--resume", "k", "--out", out, "--no-progress",
                             "--no-report"], capture_output=True, text=True)
    print(json.dumps({"kill": [kill.returncode, kill.stdout, kill.stderr],
                      "resume": [resume.returncode, resume.stdout, resume.stderr]}))
''')


@pytest.fixture(scope="module")
def console_pair(tmp_path_factory) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``llmweb run --fake`` (real MiniLM embedder) killed after agent write 2 n, then resumed
    with the ``llmweb`` console script; started without waiting, so that it runs alongside
    the kill-point matrix."""
    root = tmp_path_factory.mktemp("console")
    (root / "kill.py").write_text(KILL_CLI)
    (root / "pair.py").write_text(CONSOLE_PAIR)
    proc = subprocess.Popen([sys.executable, str(root / "pair.py"), str(root), json.dumps(RUN),
                             str(CONSOLE_KILL_AFTER)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    yield proc, root
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def killed(tmp_path_factory, console_pair) -> tuple[Path, dict[str, int]]:
    """Every kill point's folder (and an uninterrupted ``none-0``), and each child's exit code."""
    root = tmp_path_factory.mktemp("kills")
    script = root / "zygote.py"
    script.write_text(ZYGOTE)
    points = [("none", 0), *KILL_POINTS]
    proc = subprocess.run([sys.executable, str(script), str(root / "runs"), json.dumps(points),
                           json.dumps(RUN)], capture_output=True, text=True, env=_env(),
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "runs", json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture()
def hash_store(monkeypatch):
    """``llmweb run`` in this process embeds with the hash embedder, like the fork children."""
    monkeypatch.setattr(lw_store, "default_embedder", HashEmbedder)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _saved_state(folder: Path) -> tuple[bool, int, set[tuple[str, int]]]:
    """What the killed run's checkpoint holds: (run state?, finished steps, saved agent tasks)."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from llmweb_langgraph import create_web_graph

    with lw.WebStore(":memory:", embedder=HashEmbedder()) as st, \
            contextlib.closing(sqlite3.connect(folder / "checkpoints.sqlite",
                                               check_same_thread=False)) as conn:
        graph = create_web_graph({a: EchoAgent(a) for a in AGENTS}, store=st,
                                 responses_per_step=L, n_steps=T, run_id="k",
                                 rng=0).compile(checkpointer=SqliteSaver(conn))
        snap = graph.get_state({"configurable": {"thread_id": "k"}})
    values = snap.values or {}
    saved = {(p["agent"], p["step"]) for task in snap.tasks if task.name == "agent"
             and isinstance(task.result, dict) for p in task.result.get("posts", [])}
    return bool(values.get("run_id")), len(values.get("history") or []), saved


def _store_summary(folder: Path) -> dict:
    with lw.WebStore(folder / "store", embedder=HashEmbedder()) as st:
        recs = st.records("k")
        return {"seed": st.count("k", kind="seed"), "post": st.count("k", kind="post"),
                "response": st.count("k", kind="response"),
                "seed+post": st.count("k", kind=["seed", "post"]),
                "records": [(r.point_id, r.text) for r in recs],
                "keys": [(r.agent, r.step, r.kind, r.index) for r in recs],
                "post_ids": sorted(r.point_id for r in recs if r.kind == "post"),
                "post_texts": [r.text for r in recs if r.kind == "post"]}


@pytest.fixture(scope="module")
def reference(killed) -> tuple[dict, dict]:
    """The uninterrupted run: its store summary and its results.json."""
    root, _ = killed
    return (_store_summary(root / "none-0"),
            json.loads((root / "none-0" / "k" / "results.json").read_text()))


def test_the_uninterrupted_run_matches_run_web(killed, reference) -> None:
    root, status = killed
    assert status["none-0"] == 100  # not killed; llmweb run returned 0
    log = (root / "none-0" / "log.txt").read_text()
    # the kill points cover every write and checkpoint of the run
    assert json.loads(log.strip().splitlines()[-1]) == {"put": N_PUTS, "put_writes": N_WRITES}
    ref, res = reference
    assert (ref["seed"], ref["post"], ref["response"]) == (len(CRYPTO_SEEDS), N * T, N * L * T)
    with lw.WebStore(":memory:", embedder=HashEmbedder()) as st:
        web = run_web({a: EchoAgent(a, seed=0) for a in AGENTS}, store=st,
                      responses_per_step=L, n_steps=T, rng=0, run_id="k")
        assert ref["records"] == [(r.point_id, r.text) for r in st.records("k")]
    assert [h["norm"] for h in res["history"]] == \
        pytest.approx([h.norm for h in web.history], rel=1e-5)


@pytest.mark.parametrize(("kind", "n"), KILL_POINTS, ids=[f"{k}-{n}" for k, n in KILL_POINTS])
def test_resume_after_a_kill_at_every_node_boundary(killed, reference, hash_store, monkeypatch,
                                                    kind: str, n: int) -> None:
    root, status = killed
    folder = root / f"{kind}-{n}"
    assert status[f"{kind}-{n}"] == 9, (folder / "log.txt").read_text()[-2000:]  # killed
    has_state, done, saved = _saved_state(folder)

    calls: list[tuple[str, int]] = []
    run_agent = lg_web.run_agent

    def counting_run_agent(*args, **kwargs):
        calls.append((kwargs["agent"], kwargs["step"]))
        return run_agent(*args, **kwargs)

    monkeypatch.setattr(lg_web, "run_agent", counting_run_agent)
    code, out, err = _cli("run", "--resume", "k", "--out", str(folder), "--no-progress",
                          "--no-report")
    assert code == 0, err
    assert f"run k: {N * T} posts, {T} steps" in out
    if not has_state:
        assert "run k had no saved state yet (stopped before its first checkpoint): started " \
               "it afresh with its saved settings" in out
        done, saved = 0, set()
    elif done == T:
        assert f"run k had already finished its {T} steps: nothing to do" in out
    else:
        assert f"resumed run k after {done} of {T} finished steps" in out
    # only unfinished agent tasks ran again, each once: no finished step, no task whose
    # writes the checkpoint shows as saved, and every task of the later steps. (Writes saved
    # for a checkpoint still being written in the background are not shown by get_state but
    # are used by the resume, so the step in progress may re-run fewer tasks than shown.)
    assert len(calls) == len(set(calls)), calls
    assert {t for _, t in calls} <= set(range(done + 1, T + 1)), (done, calls)
    assert not set(calls) & saved, (saved, calls)
    assert {(a, t) for t in range(done + 2, T + 1) for a in AGENTS} <= set(calls), calls
    # a second resume changes nothing and says so
    code, out2, _ = _cli("run", "--resume", "k", "--out", str(folder), "--no-progress",
                         "--no-report")
    assert code == 0 and f"run k had already finished its {T} steps: nothing to do" in out2

    after, (ref, ref_res) = _store_summary(folder), reference
    assert after["seed"] == len(CRYPTO_SEEDS)
    assert after["seed+post"] == len(CRYPTO_SEEDS) + N * T
    assert after["post"] == N * T and after["response"] == N * L * T
    assert len(set(after["keys"])) == len(after["keys"])
    assert len(set(after["post_texts"])) == N * T
    assert after["records"] == ref["records"]  # the same points, ids and texts
    res = json.loads((folder / "k" / "results.json").read_text())
    assert [h["step"] for h in res["history"]] == list(range(1, T + 1))
    assert [h["norm"] for h in res["history"]] == \
        pytest.approx([h["norm"] for h in ref_res["history"]], rel=1e-6)
    assert sorted(p["id"] for p in res["posts"]) == after["post_ids"]


def test_llmweb_run_resume_as_console_scripts(console_pair) -> None:
    """Killed after step 2's agent writes (the checkpoint's ``next`` is empty), resumed by
    the real ``llmweb`` script: before the fix this printed "6 posts, 1 steps" and exited 0."""
    proc, root = console_pair
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    pair = json.loads(stdout.strip().splitlines()[-1])
    assert pair["kill"][0] == 9, pair["kill"][2][-3000:]
    out = root / "out"
    done = subprocess.CompletedProcess([], *pair["resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    # step 2's metrics usually had not run (1 finished step); its writes may have landed
    assert re.search(rf"^resumed run k after [12] of {T} finished steps$", done.stdout,
                     re.MULTILINE)
    assert f"run k: {N * T} posts, {T} steps" in done.stdout
    res = json.loads((out / "k" / "results.json").read_text())
    assert [h["step"] for h in res["history"]] == list(range(1, T + 1))
    with lw.WebStore(out / "store") as st:  # MiniLM's collection; nothing is embedded here
        assert st.count("k", kind=["seed", "post"]) == len(CRYPTO_SEEDS) + N * T
        assert st.count("k", kind="response") == N * L * T
        recs = st.records("k")
        assert len({r.point_id for r in recs}) == len(recs)
        assert len({(r.agent, r.step, r.kind, r.index) for r in recs}) == len(recs)
        assert sorted(p["id"] for p in res["posts"]) == \
            sorted(r.point_id for r in recs if r.kind == "post")
