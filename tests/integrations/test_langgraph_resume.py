"""``llmweb run --resume``: when a run is finished, started afresh, continued or refused.

"Finished" is the run's own step count against its ``n_steps`` (never the checkpoint's
``next``); a run stopped before its first checkpoint starts afresh with the settings in its
``settings.json``; a resume that cannot reach ``n_steps`` exits 1 with a message instead of a
short "success". Kills at every node boundary are in ``test_langgraph_crash.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import llmweb_langgraph.web as lg_web
import llmweb_plugin as lw
import llmweb_plugin.store as lw_store
from llmweb_plugin.cli import main
from llmweb_plugin.cli import run as cli_run


class HashEmbedder:
    """Deterministic unit 16-d vectors from a text's SHA-256 (no model to load)."""

    name = "hash-test"
    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), 16), np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode("utf-8")).digest()[:16]
            out[i] = np.frombuffer(h, np.uint8).astype(np.float32) - 127.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs (a BaseException, so nothing catches it)."""


@pytest.fixture(autouse=True)
def hash_store(monkeypatch):
    """``llmweb run`` embeds with the hash embedder (counting and ids need no semantics)."""
    monkeypatch.setattr(lw_store, "default_embedder", HashEmbedder)


@pytest.fixture()
def agent_calls(monkeypatch) -> list[tuple[str, int]]:
    """Every ``(agent, step)`` an agent task ran for."""
    calls: list[tuple[str, int]] = []
    run_agent = lg_web.run_agent

    def counting(*args, **kwargs):
        calls.append((kwargs["agent"], kwargs["step"]))
        return run_agent(*args, **kwargs)

    monkeypatch.setattr(lg_web, "run_agent", counting)
    return calls


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _records(out: Path, run_id: str) -> list[tuple[str, str, str, int, str]]:
    with lw.WebStore(out / "store", embedder=HashEmbedder()) as st:
        return [(r.point_id, r.agent, r.kind, r.step, r.text) for r in st.records(run_id)]


QUIET = ("--no-progress", "--no-report")
SMALL = ("--fake", "--n-agents", "2", "-T", "2", "-L", "1")


def test_a_run_killed_before_its_first_checkpoint_resumes_with_its_settings(
        tmp_path: Path, monkeypatch) -> None:
    # settings that differ from every default, so that a resume on the defaults would show
    flags = ("--fake", "--n-agents", "2", "-T", "2", "-L", "3", "--seed", "5", "--beta", "0.8",
             "--topology", "ring", "--retrieval", "similarity")
    out = tmp_path / "out"
    with monkeypatch.context() as m:  # killed while the agents/embedder load
        m.setattr(cli_run, "run_experiment", lambda *a, **k: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            _cli("run", *flags, "--out", str(out), "--run-id", "s", *QUIET)
    saved = json.loads((out / "s" / "settings.json").read_text())
    assert (saved["n_agents"], saved["n_steps"], saved["responses_per_step"], saved["seed"],
            saved["beta"], saved["topology"], saved["retrieval"]) == \
        (2, 2, 3, 5, 0.8, "ring", "similarity")
    assert not (out / "checkpoints.sqlite").exists()
    code, _, err = _cli("run", "--fake", "--out", str(out), "--run-id", "s", *QUIET)
    assert code == 2 and "use --resume s" in err  # the id is taken: --resume is the way

    code, stdout, err = _cli("run", "--resume", "s", "--out", str(out), *QUIET)
    assert code == 0, err
    assert "run s had no saved state yet (stopped before its first checkpoint): started it " \
           "afresh with its saved settings" in stdout
    assert "run s: 4 posts, 2 steps" in stdout
    res = json.loads((out / "s" / "results.json").read_text())
    assert res["settings"] == saved
    # the same records as the same settings run in one go
    ref = tmp_path / "ref"
    assert _cli("run", *flags, "--out", str(ref), "--run-id", "s", *QUIET)[0] == 0
    assert _records(out, "s") == _records(ref, "s")
    assert len(_records(out, "s")) == 20 + 4 + 4 * 3
    ref_res = json.loads((ref / "s" / "results.json").read_text())
    assert [h["norm"] for h in res["history"]] == \
        pytest.approx([h["norm"] for h in ref_res["history"]], rel=1e-9)


def test_resuming_a_finished_run_is_a_no_op_and_says_so(tmp_path: Path,
                                                         agent_calls) -> None:
    out = tmp_path / "out"
    assert _cli("run", *SMALL, "--out", str(out), "--run-id", "f", *QUIET)[0] == 0
    before = _records(out, "f")
    assert len(agent_calls) == 4
    code, stdout, err = _cli("run", "--resume", "f", "--out", str(out), *QUIET)
    assert code == 0, err
    assert "run f had already finished its 2 steps: nothing to do" in stdout
    assert "run f: 4 posts, 2 steps" in stdout
    assert len(agent_calls) == 4  # no agent ran again
    assert _records(out, "f") == before


@pytest.mark.parametrize(("n_steps", "message"), [
    (4, ("run 'e' ended after 2 of 4 steps (4 posts) and its checkpoint in {ckpt} has nothing "
         "left to run, so it cannot finish; were its settings changed after it started? Its "
         "results were not written.")),
    (1, ("run 'e' holds 2 finished steps in its checkpoint {ckpt} but its settings ask for 1; "
         "were its settings changed after it started? Its results were not written.")),
])
def test_a_resume_that_cannot_reach_n_steps_fails_loudly(tmp_path: Path, n_steps: int,
                                                         message: str) -> None:
    """Never again "exit 0 with 24 posts, 7 steps" on a 16-step run."""
    out = tmp_path / "out"
    assert _cli("run", *SMALL, "--out", str(out), "--run-id", "e", *QUIET)[0] == 0
    results = (out / "e" / "results.json").read_text()
    sfile = out / "e" / "settings.json"
    sfile.write_text(json.dumps({**json.loads(sfile.read_text()), "n_steps": n_steps}))
    code, stdout, err = _cli("run", "--resume", "e", "--out", str(out), *QUIET)
    assert code == 1
    assert err.strip() == "llmweb run: error: " + message.format(
        ckpt=out / "checkpoints.sqlite")
    assert "run e:" not in stdout
    assert (out / "e" / "results.json").read_text() == results  # not overwritten


def test_resume_with_another_checkpoint_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cli("run", *SMALL, "--out", str(out), "--run-id", "w", *QUIET)[0] == 0
    before = _records(out, "w")
    other = tmp_path / "other.sqlite"
    code, _, err = _cli("run", "--resume", "w", "--out", str(out), "--checkpoint",
                        str(other), *QUIET)
    assert code == 2
    assert err.strip() == (f"llmweb run: error: no checkpoint of run 'w' in {other}, yet the "
                           "store holds 8 of its posts/responses; resume with the --checkpoint "
                           "file the run was started with")
    assert _records(out, "w") == before  # nothing rewritten, nothing deleted


def test_posts_written_before_the_first_checkpoint_landed_are_redone(
        tmp_path: Path, monkeypatch, caplog) -> None:
    """Checkpoints are saved in the background, so agents can write before the run's first
    checkpoint is on disk; a kill then leaves posts but no run state. The resume starts the
    run afresh and ends with exactly the records of an uninterrupted run."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    out = tmp_path / "out"
    put = SqliteSaver.put
    count = [0]

    def only_the_input_checkpoint(self, config, checkpoint, metadata, new_versions):
        count[0] += 1
        return put(self, config, checkpoint, metadata, new_versions) if count[0] == 1 else config

    with monkeypatch.context() as m:  # every later checkpoint and task write is lost
        m.setattr(SqliteSaver, "put", only_the_input_checkpoint)
        m.setattr(SqliteSaver, "put_writes", lambda self, *a, **k: None)
        assert _cli("run", *SMALL, "--out", str(out), "--run-id", "p", *QUIET)[0] == 0
    assert len(_records(out, "p")) == 20 + 4 + 4
    code, stdout, err = _cli("run", "--resume", "p", "--out", str(out), *QUIET)
    assert code == 0, err
    assert "run p had no saved state yet" in stdout and "run p: 4 posts, 2 steps" in stdout
    assert "no checkpointed state but 8 posts/responses in the store" in caplog.text
    ref = tmp_path / "ref"
    assert _cli("run", *SMALL, "--out", str(ref), "--run-id", "p", *QUIET)[0] == 0
    assert _records(out, "p") == _records(ref, "p")
