"""``llmweb run`` (``llmweb_plugin.cli.run``) with fake and import-path agents, and ``--resume``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

import llmweb_plugin as lw
from llmweb_plugin.cli import run as cli_run
from llmweb_plugin.web import PAPER_QUERY, AgentError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llmweb")
    cli_run.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", *argv])


def test_run_fake_writes_results_and_report(tmp_path: Path, capsys, embedder) -> None:
    args = parse("--fake", "--steps", "3", "--responses", "2", "--out", str(tmp_path),
                 "--run-id", "r1", "--no-progress")
    assert (args.beta, args.seed, args.topology, args.retrieval) == (0.5, 0, "full", "uniform")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| step | norm |" in out and "run r1: 9 posts, 3 steps" in out
    assert f"report: {tmp_path / 'r1' / 'report.html'}" in out
    res = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert [h["step"] for h in res["history"]] == [1, 2, 3] and len(res["posts"]) == 9
    assert res["settings"]["responses_per_step"] == 2 and res["settings"]["fake"] is True
    # three steps: too few for the first-vs-last ratio (4 at least) and for a verdict (6)
    assert res["summary"]["window"] == 0 and res["summary"]["ratio_last_first"] is None
    assert res["verdict"]["verdict"] == "inconclusive"
    report_json = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert res["verdict"]["sentence"] == report_json["verdict"]["sentence"]
    assert f"verdict: {res['verdict']['sentence']}" in out
    html = (tmp_path / "r1" / "report.html").read_text()
    assert "r1" in html and "<script" not in html
    assert "| 3 |" in (tmp_path / "r1" / "metrics.md").read_text()
    with lw.WebStore(tmp_path / "store", embedder=embedder) as st:
        assert st.count("r1", kind="seed") == 20
        assert st.count("r1", kind="post") == 9 and st.count("r1", kind="response") == 18
        assert [r.agent for r in st.records("r1", kind="post", step=1)] == \
            ["echo-1", "echo-2", "echo-3"]
    # resuming a finished run changes nothing and prints the table again
    args = parse("--resume", "r1", "--out", str(tmp_path), "--no-progress", "--no-report")
    assert args.func(args) == 0
    assert "run r1: 9 posts, 3 steps" in capsys.readouterr().out
    with lw.WebStore(tmp_path / "store", embedder=embedder) as st:
        assert st.count("r1", kind="post") == 9
    # the same run id again is refused
    with pytest.raises(ValueError, match="already exists"):
        cli_run.run_command(parse("--fake", "--out", str(tmp_path), "--run-id", "r1"))


def test_run_through_the_main_cli(tmp_path: Path, capsys) -> None:
    from llmweb_plugin.cli import main

    code = main(["run", "--fake", "--n-agents", "2", "-T", "2", "-L", "1", "--topology", "ring",
                 "--retrieval", "similarity", "--seed", "3", "--out", str(tmp_path),
                 "--run-id", "m", "--no-progress", "--no-report"])
    assert code == 0
    res = json.loads((tmp_path / "m" / "results.json").read_text())
    assert res["settings"]["seed"] == 3 and res["settings"]["retrieval"] == "similarity"
    assert len(res["posts"]) == 4
    assert "report:" in capsys.readouterr().out
    assert main(["run", "--resume", "nope", "--out", str(tmp_path)]) == 2
    assert "no settings of run 'nope'" in capsys.readouterr().err


AGENTS_MODULE = textwrap.dedent('''
    from llmweb_plugin.web import EchoAgent

    STATE = {"fail": True}

    class Flaky:
        """Fails once at step 2 (a crashed model), then answers like an EchoAgent."""
        def __init__(self):
            self.echo = EchoAgent("flaky")
        def respond(self, request, n, *, config=None):
            if request.step == 2 and STATE["fail"]:
                STATE["fail"] = False
                raise ConnectionError("model server went away")
            return self.echo.generate_n(request.render(), n)

    def make_flaky():
        return Flaky()

    steady = EchoAgent("steady")
''')


def test_import_path_agents_and_resume_after_a_failure(tmp_path: Path, monkeypatch, capsys,
                                                       embedder) -> None:
    (tmp_path / "my_agents.py").write_text(AGENTS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = parse("--agents", "f=my_agents:make_flaky", "--agents", "s=my_agents:steady,"
                 "e=llmweb_plugin.web:EchoAgent", "-T", "3", "-L", "2", "--out", str(out),
                 "--run-id", "imp", "--no-progress", "--no-report")
    with pytest.raises(AgentError, match="agent 'f' failed at step 2"):
        args.func(args)
    with lw.WebStore(out / "store", embedder=embedder) as st:
        # step 1, plus the step-2 posts of agents that finished before 'f' failed
        assert 3 <= st.count("imp", kind="post") <= 5
        assert st.count("imp", kind="post") - 3 == len(st.records("imp", kind="post", step=2))
    args = parse("--resume", "imp", "--out", str(out), "--no-progress", "--no-report")
    assert args.func(args) == 0
    assert "run imp: 9 posts, 3 steps" in capsys.readouterr().out
    with lw.WebStore(out / "store", embedder=embedder) as st:
        assert st.count("imp", kind="post") == 9 and st.count("imp", kind="response") == 18
        assert sorted({r.agent for r in st.records("imp", kind="post")}) == ["e", "f", "s"]


def test_bad_agent_specs() -> None:
    with pytest.raises(ValueError, match="NAME=MODULE:ATTR"):
        cli_run.load_agent("no-equals-sign")
    with pytest.raises(ValueError, match="NAME=MODULE:ATTR"):
        cli_run.load_agent("a=module_without_attr")
    with pytest.raises(ModuleNotFoundError):
        cli_run.load_agent("a=surely_not_a_module_xyz:thing")
    with pytest.raises(LookupError, match="no attribute 'nope'"):
        cli_run.load_agent("a=llmweb_plugin.web:nope")
    name, obj = cli_run.load_agent("x=llmweb_plugin.web:EchoAgent")
    assert name == "x" and obj.name == "echo"  # a class is called with no arguments
    with pytest.raises(ValueError, match="exclude each other"):
        cli_run.run_command(parse("--fake", "--agents", "a=m:x"))


def test_paper_flag_and_defaults() -> None:
    s = cli_run._settings_from_args(parse("--paper"))
    assert (s["responses_per_step"], s["n_steps"]) == (40, 60)
    s = cli_run._settings_from_args(parse())
    assert (s["responses_per_step"], s["n_steps"], s["n_agents"], s["beta"]) == \
        (cli_run.DEFAULT_RESPONSES, cli_run.DEFAULT_STEPS, 3, 0.5)
    assert s["query"] == PAPER_QUERY and s["fake"] is False


# ---------------------------------------------------------------------- bad inputs (added)
def test_zero_agents_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    from llmweb_plugin.cli import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--n-agents must be >= 2"):
        cli_run.run_command(parse("--fake", "--n-agents", "0", "--out", str(out),
                                  "--run-id", "z", "--no-progress", "--no-report"))
    assert not out.exists()
    assert main(["run", "--fake", "--n-agents", "0", "--out", str(out), "--run-id", "z"]) == 2
    assert "llmweb run: error: --n-agents must be >= 2" in capsys.readouterr().err
    assert not out.exists()


def test_resume_without_a_settings_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "ghost").mkdir(parents=True)  # a run folder without its settings file
    with pytest.raises(FileNotFoundError, match=r"no settings of run 'ghost' at .*; resume with "
                                                r"the --out folder"):
        cli_run.run_command(parse("--resume", "ghost", "--out", str(out), "--no-progress"))
    assert sorted(p.name for p in out.rglob("*")) == ["ghost"]  # no store, no checkpoint


def test_zero_threads_is_refused(tmp_path: Path, capsys) -> None:
    from llmweb_plugin.cli import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        cli_run.run_command(parse("--fake", "--threads", "0", "--out", str(out), "--run-id", "t0",
                                  "--no-progress", "--no-report"))
    assert not (out / "store").exists() and not (out / "checkpoints.sqlite").exists()
    assert main(["run", "--fake", "--threads", "0", "--out", str(out), "--run-id", "t1"]) == 2
    assert "llmweb run: error: --threads must be >= 1" in capsys.readouterr().err


def test_zero_threads_leaves_no_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        cli_run.run_command(parse("--fake", "--threads", "0", "--out", str(tmp_path),
                                  "--run-id", "t0", "--no-progress", "--no-report"))
    assert not (tmp_path / "t0").exists()


def test_duplicate_agent_names_are_refused(tmp_path: Path, capsys) -> None:
    from llmweb_plugin.cli import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--agents names must be unique"):
        cli_run.run_command(parse("--agents", "a=llmweb_plugin.web:EchoAgent",
                                  "--agents", "a=llmweb_plugin.web:EchoAgent",
                                  "--out", str(out), "--run-id", "dup", "--no-progress",
                                  "--no-report"))
    assert not (out / "store").exists() and not (out / "checkpoints.sqlite").exists()
    both = "b=llmweb_plugin.web:EchoAgent,b=llmweb_plugin.web:EchoAgent"
    assert main(["run", "--agents", both, "--out", str(out), "--run-id", "dup2"]) == 2
    assert "llmweb run: error: --agents names must be unique" in capsys.readouterr().err
    assert cli_run._build_agents({"agent_specs": ["c=llmweb_plugin.web:EchoAgent",
                                                  "d=llmweb_plugin.web:EchoAgent"]}).keys() \
        == {"c", "d"}


def test_duplicate_agent_names_leave_no_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--agents names must be unique"):
        cli_run.run_command(parse("--agents", "a=llmweb_plugin.web:EchoAgent,"
                                  "a=llmweb_plugin.web:EchoAgent", "--out", str(tmp_path),
                                  "--run-id", "dup", "--no-progress", "--no-report"))
    assert not (tmp_path / "dup").exists()
