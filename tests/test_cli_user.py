"""The ``llmweb`` command line as a new user meets it (issue 10, item 5).

Held stores, a Qdrant server URL, bad arguments refused before anything is written, the parent
folder given to ``runs``/``report``, Markdown tables that render, one first-vs-last ratio, one
option vocabulary with help and defaults, and run settings that travel with the store.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from pathlib import Path

import pytest

import llmweb_plugin as lw
from llmweb_plugin.cli import build_parser, main
from llmweb_plugin.cli import run as cli_run
from llmweb_plugin.report import first_last_ratio

QUICK = ["--fake", "--n-agents", "2", "-T", "2", "-L", "1", "--no-progress", "--no-report"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _fake_run(out: Path, run_id: str, *extra: str) -> None:
    assert main(["run", "--fake", "--n-agents", "2", "-T", "3", "-L", "2", "--out", str(out),
                 "--run-id", run_id, "--no-progress", *extra]) == 0


# ---------------------------------------------------------------------- (a) a held --out
def test_second_run_on_a_held_store_is_one_clear_line(tmp_path: Path, capsys, embedder) -> None:
    out = tmp_path / "out"
    with lw.WebStore(out / "store", embedder=embedder):  # the first run, still going
        before = _snapshot(out)
        assert main(["run", *QUICK, "--out", str(out), "--run-id", "second"]) == 2
        captured = capsys.readouterr()
        assert _snapshot(out) == before  # refused before writing anything
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("llmweb run: error: the Qdrant folder ")
    assert "in use by another process" in err and "--url URL" in err and "--out" in err
    assert "WebStore(" not in err  # no Python code suggested on the command line
    assert not (out / "second").exists()


def test_a_store_taken_between_check_and_open_is_still_one_line(tmp_path: Path, capsys,
                                                                monkeypatch, embedder) -> None:
    out = tmp_path / "out"
    monkeypatch.setattr(cli_run, "_check_store_free", lambda store_dir: None)  # lose the race
    with lw.WebStore(out / "store", embedder=embedder):
        assert main(["run", *QUICK, "--out", str(out), "--run-id", "race"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("llmweb run: error: the local Qdrant folder")


# ---------------------------------------------------------------------- (b) --url / --api-key
def test_run_on_a_qdrant_server_never_shows_the_key(tmp_path: Path, capsys, caplog,
                                                    monkeypatch) -> None:
    import llmweb_plugin.store as store_mod

    real = store_mod.QdrantClient
    calls: list[dict] = []

    def server(*args, **kwargs):  # a Qdrant "server" that lives in memory
        if "url" in kwargs:
            calls.append(kwargs)
            return real(location=":memory:")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_mod, "QdrantClient", server)
    caplog.set_level(logging.DEBUG)
    secret = "SECRET-key-9f8e7d"
    out = tmp_path / "out"
    assert main(["-vv", "run", *QUICK, "--out", str(out), "--run-id", "srv",
                 "--url", "http://qdrant.example:6333", "--api-key", secret]) == 0
    assert [(c["url"], c["api_key"]) for c in calls] == [("http://qdrant.example:6333", secret)]
    captured = capsys.readouterr()
    assert "store: http://qdrant.example:6333" in captured.out
    assert not (out / "store").exists()  # the web went to the server, not a folder
    settings = json.loads((out / "srv" / "settings.json").read_text())
    assert settings["store_url"] == "http://qdrant.example:6333"
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    for text in (captured.out, captured.err, caplog.text, written):
        assert secret not in text
    res = json.loads((out / "srv" / "results.json").read_text())
    assert len(res["posts"]) == 4 and [h["step"] for h in res["history"]] == [1, 2]
    # the key may also come from the environment
    calls.clear()
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    assert main(["run", *QUICK, "--out", str(out), "--run-id", "srv2",
                 "--url", "https://user:pw@qdrant.example:6333/?api-key=x"]) == 0
    assert calls[0]["api_key"] == "from-env"
    assert json.loads((out / "srv2" / "settings.json").read_text())["store_url"] == \
        "https://qdrant.example:6333/"  # no user:password, no query string kept


# ---------------------------------------------------------------------- (c) bad arguments
BAD_RUN_ARGS = [
    (["--steps", "0"], "--steps must be >= 1; got 0"),
    (["-T", "-3"], "--steps must be >= 1; got -3"),
    (["--responses", "0"], "--responses must be >= 1; got 0"),
    (["-L", "-1"], "--responses must be >= 1; got -1"),
    (["--beta", "0"], "--beta must lie in (0, 1]; got 0.0"),
    (["--beta", "1.5"], "--beta must lie in (0, 1]; got 1.5"),
    (["--beta", "nan"], "--beta must lie in (0, 1]; got nan"),
    (["--n-agents", "1"], "--n-agents must be >= 2 (the collapse metric compares agents); got 1"),
    (["--seed", "-1"], "--seed must be >= 0; got -1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1; got 0"),
    (["--max-concurrency", "0"], "--max-concurrency must be >= 1; got 0"),
    (["--query", "  "], "--query is empty"),
    (["--run-id", "a/b"], "--run-id 'a/b' is not a usable run id"),
    (["--run-id", ".."], "--run-id '..' is not a usable run id"),
    (["--agents", "a=llmweb_plugin.web:EchoAgent"], "--agents: give at least two agents"),
    (["--agents", "nonsense,b=llmweb_plugin.web:EchoAgent"],
     "--agents 'nonsense': expected NAME=MODULE:ATTR"),
    (["--agents", "a=no_such_module_q:x,a=no_such_module_q:y"], "--agents names must be unique"),
    (["--agents", "a=m:x,b=m:y", "--n-agents", "5"], "--n-agents counts local or fake agents"),
    (["--api-key", "k"], "--api-key needs --url"),
    (["--url", "localhost:6333"], "--url must be a Qdrant server address"),
]


def test_every_bad_run_argument_is_refused_before_any_side_effect(tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    from llmweb_plugin.web import models

    built: list[int] = []
    monkeypatch.setattr(models, "local_agents", lambda n, **kw: built.append(n) or {})
    out = tmp_path / "out"
    for argv, message in BAD_RUN_ARGS:
        # no --fake: a refused run must not even load the local models
        assert main(["run", *argv, "--out", str(out), "--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err] and err.startswith("llmweb run: error: "), argv
        assert message in err, (argv, err)
        assert not out.exists(), argv  # no store, no checkpoint, no settings.json
    assert built == []


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    target = tmp_path / "results.txt"
    target.write_text("mine")
    assert main(["run", *QUICK, "--out", str(target)]) == 2
    assert "--out" in capsys.readouterr().err and target.read_text() == "mine"


def test_resume_refuses_flags_that_would_change_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", *QUICK, "--out", str(out), "--run-id", "r"]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    for argv, flag in ((["-T", "5"], "--steps"), (["--beta", "0.25"], "--beta"),
                       (["--paper"], "--paper"), (["--n-agents", "4"], "--n-agents")):
        assert main(["run", "--resume", "r", "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert f"{flag} asks for" in err and "a resumed run keeps its settings" in err
    assert _snapshot(out) == before
    # the same values again are fine: the finished run is a no-op
    assert main(["run", "--resume", "r", "--fake", "-T", "2", "--out", str(out),
                 "--no-progress", "--no-report"]) == 0
    assert "run r: 4 posts, 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["gmm", "--steps", "0"], "llmweb gmm: error: --steps must be >= 1; got 0"),
    (["gmm", "--n-agents", "1"], "llmweb gmm: error: --n-agents must be >= 2"),
    (["gmm", "--replicates", "0"], "llmweb gmm: error: --replicates must be >= 1; got 0"),
    (["gmm", "--beta", "0"], "llmweb gmm: error: --beta must lie in (0, 1]; got 0.0"),
    (["silo", "-T", "0"], "llmweb silo: error: --steps must be >= 1; got 0"),
    (["silo", "--seed", "-2"], "llmweb silo: error: --seed must be >= 0; got -2"),
    (["experiment", "--window", "0"], "llmweb experiment: error: --window must be >= 1; got 0"),
    (["experiment", "--proxy", "web", "--fake", "--beta", "2"],
     "llmweb experiment: error: --beta must lie in (0, 1]; got 2.0"),
])
def test_other_subcommands_refuse_shared_options_the_same_way(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), *(["--no-plot"] if argv[0] != "experiment" else [])]) \
        == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------- (d) the parent folder
def test_runs_and_report_find_the_store_under_out_and_change_nothing(tmp_path: Path,
                                                                      capsys) -> None:
    out = tmp_path / "llmweb-out"
    _fake_run(out, "u", "--no-report")
    capsys.readouterr()
    before = _snapshot(out)
    assert main(["runs", "--path", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert [r["run_id"] for r in json.loads(captured.out)["runs"]] == ["u"]
    assert f"reading the store in {out / 'store'}" in captured.err
    rep = tmp_path / "rep.json"
    assert main(["report", "--path", str(out), "--run", "u", "--out", str(rep)]) == 0
    assert json.loads(rep.read_text())["runs"][0]["steps"] == [1, 2, 3]
    assert _snapshot(out) == before  # no meta.json, no .lock, nothing rewritten
    assert not (out / "meta.json").exists() and not (out / ".lock").exists()


def test_a_folder_without_a_store_is_named_and_left_untouched(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "llmweb-out"
    (folder / "some-run").mkdir(parents=True)
    (folder / "some-run" / "notes.txt").write_text("x")
    before = _snapshot(folder)
    for argv in (["runs"], ["report", "--run", "some-run"]):
        assert main([*argv, "--path", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"no Qdrant store in {str(folder)!r}" in err and "meta.json" in err
        assert len(err.splitlines()) == 1
    assert _snapshot(folder) == before


# ---------------------------------------------------------------------- (e) Markdown tables
def _tables(md: str) -> list[list[str]]:
    """The Markdown tables of ``md``: runs of consecutive lines that start with ``|``."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_metrics_md_tables_render_every_row_with_the_header_s_cells(tmp_path: Path,
                                                                     capsys) -> None:
    out = tmp_path / "out"
    _fake_run(out, "m")
    printed = capsys.readouterr().out
    md = (out / "m" / "metrics.md").read_text()
    tables = _tables(md)
    assert len(tables) == 1 and len(tables[0]) == 2 + 3  # header, separator, 3 steps
    for table in tables + _tables(printed):
        head = _cells(table[0])
        assert [_cells(row) for row in table] == [head] * len(table)
        assert re.search(r"(?<!\\)\|\|", table[0]) is None  # no bare "||" in the header
    assert "\\|\\|D(t)\\|\\|_F" in md  # the metric's name, escaped, below the table
    # the report's own Markdown, too
    rep_md = tmp_path / "rep.md"
    assert main(["report", "--path", str(out), "--run", "m", "--out", str(rep_md)]) == 0
    for table in _tables(rep_md.read_text()):
        assert len({_cells(row) for row in table}) == 1, table[0]


# ---------------------------------------------------------------------- (f) one ratio
def test_first_last_ratio_against_brute_force() -> None:
    norms = [3.0, None, 2.5, float("nan"), 2.0, 1.8, 1.5, 1.2, 1.0, 0.9, float("inf")]
    finite = [3.0, 2.5, 2.0, 1.8, 1.5, 1.2, 1.0, 0.9]
    r = first_last_ratio(norms)
    assert (r.n_steps, r.window) == (8, 2)
    assert r.first_mean == pytest.approx((3.0 + 2.5) / 2)
    assert r.last_mean == pytest.approx((1.0 + 0.9) / 2)
    assert r.ratio == pytest.approx(((1.0 + 0.9) / 2) / ((3.0 + 2.5) / 2))
    for m in range(1, 30):
        vals = finite * 4
        got = first_last_ratio(vals[:m])
        w = max(2, m // 4) if m >= 4 else 0  # the verdict's window rule (trend.window_means)
        assert got.window == w
        assert got.ratio == (None if m < 4 else pytest.approx(
            (sum(vals[:m][-w:]) / w) / (sum(vals[:w]) / w)))
    assert first_last_ratio([]).ratio is None and first_last_ratio([None, math.nan]).window == 0
    assert first_last_ratio([3.0, 2.0, 1.0]).first_mean is None  # below 4 steps: no windows
    assert first_last_ratio([0.0, 0.0, 1.0, 1.0]).ratio is None  # no ratio to a zero start


def test_terminal_files_and_report_give_the_same_ratio(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", "--fake", "--n-agents", "3", "-T", "8", "-L", "2", "--out", str(out),
                 "--run-id", "f", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "f" / "results.json").read_text())
    norms = [h["norm"] for h in res["history"]]
    brute = (sum(norms[-2:]) / 2) / (sum(norms[:2]) / 2)  # 8 steps: w = 2
    terminal = res["summary"]["ratio_last_first"]
    report = json.loads((out / "f" / "report.json").read_text())["runs"][0]["norm_ratio"]
    assert res["summary"]["window"] == report["window"] == 2
    assert terminal == pytest.approx(brute, rel=1e-12)
    assert report["ratio"] == pytest.approx(terminal, rel=1e-6)  # store vectors vs history
    assert f"last / first = {terminal:.4g}" in printed
    assert f"last / first = {terminal:.4g}" in (out / "f" / "metrics.md").read_text()
    rep_md = tmp_path / "rep.md"
    assert main(["report", "--path", str(out), "--run", "f", "--out", str(rep_md)]) == 0
    assert f"| {report['ratio']:.4g} (w=2) |" in rep_md.read_text()
    assert f"{report['ratio']:.4g}" == f"{terminal:.4g}"


# ---------------------------------------------------------------------- (g) one vocabulary
def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help_and_shows_its_default() -> None:
    subs = _subcommands()
    assert set(subs) >= {"run", "runs", "report", "gmm", "silo", "experiment"}
    for name, sub in subs.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"llmweb {name} {'/'.join(action.option_strings)}"
            if action.help == argparse.SUPPRESS:  # only the deprecated old spellings hide
                assert type(action).__name__ == "_DeprecatedAlias", where
                continue
            assert action.help and action.help.strip(), f"{where} has no help"
            if action.nargs == 0 or action.required:  # flags; --run is required
                continue
            text = action.help % {**vars(action), "prog": sub.prog}
            assert "(default" in text, f"{where} does not show its default: {text!r}"
            if action.default is not None:
                assert str(action.default) in text, f"{where}: {text!r}"


SHARED = {"steps": ("--steps", "-T"), "responses": ("--responses", "-L"),
          "n_agents": ("--n-agents",), "replicates": ("--replicates",), "seed": ("--seed",),
          "beta": ("--beta",)}


def test_one_vocabulary_across_subcommands() -> None:
    subs = _subcommands()
    seen: dict[str, set[str]] = {}
    for name in ("run", "gmm", "silo", "experiment"):
        visible = {a.dest: tuple(a.option_strings) for a in subs[name]._actions
                   if a.help != argparse.SUPPRESS and a.option_strings}
        for dest, strings in SHARED.items():
            if dest in visible:
                assert visible[dest] == strings, (name, dest, visible[dest])
                seen.setdefault(dest, set()).add(name)
        # no other visible option means the same thing under another name
        flat = {s for v in visible.values() for s in v}
        assert not flat & {"--n-steps", "--samples-per-step", "--seeds"}, name
        if name != "run":
            assert "--agents" not in flat, name  # a spec in run; never a count elsewhere
    assert seen["steps"] == {"run", "gmm", "silo", "experiment"}
    assert seen["responses"] == {"run", "gmm", "experiment"}
    assert seen["replicates"] == {"gmm", "silo", "experiment"}
    assert seen["n_agents"] == {"run", "gmm", "silo", "experiment"}


@pytest.mark.parametrize(("argv", "dest", "value", "note"), [
    (["gmm", "--n-steps", "7"], "steps", 7, "--n-steps is deprecated; use --steps"),
    (["gmm", "--samples-per-step", "2"], "responses", 2,
     "--samples-per-step is deprecated; use --responses"),
    (["silo", "--n-steps", "9"], "steps", 9, "--n-steps is deprecated; use --steps"),
    (["experiment", "--seeds", "4"], "replicates", 4, "--seeds is deprecated; use --replicates"),
    (["experiment", "--agents", "5"], "n_agents", 5, "--agents is deprecated; use --n-agents"),
])
def test_old_spellings_still_work_with_one_deprecation_line(capsys, argv, dest, value, note):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip()
    assert err == f"llmweb {argv[0]}: note: {note}"
    default = build_parser().parse_args([argv[0]])  # the alias does not reset the default
    assert getattr(default, dest) == (3 if argv[0] == "experiment" and dest == "n_agents"
                                      else None)


def test_deprecated_gmm_alias_gives_the_same_run_as_the_new_name(tmp_path: Path, capsys) -> None:
    for flags, name in ((["--n-steps", "4", "--samples-per-step", "2"], "old"),
                        (["-T", "4", "-L", "2"], "new")):
        assert main(["gmm", *flags, "--replicates", "2", "--out", str(tmp_path), "--name", name,
                     "--no-plot"]) == 0
    capsys.readouterr()
    old = json.loads((tmp_path / "old.json").read_text())
    new = json.loads((tmp_path / "new.json").read_text())
    assert old["params"]["n_steps"] == new["params"]["n_steps"] == 4
    assert old["params"]["samples_per_step"] == 2
    assert old["result"] == new["result"]


# ---------------------------------------------------------------------- (h) settings kept
def test_report_shows_the_run_settings_from_the_out_folder_or_the_store_alone(
        tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    _fake_run(out, "s", "--no-report", "--beta", "0.75", "--seed", "5")
    capsys.readouterr()

    def given(path: Path, *extra: str) -> dict:
        rep = tmp_path / "rep.json"
        assert main(["report", "--path", str(path), "--run", "s", "--out", str(rep), *extra]) == 0
        return json.loads(rep.read_text())["runs"][0]["settings"]["given"]

    # a copy of the store alone (no settings.json anywhere near it) still knows them
    alone = tmp_path / "elsewhere" / "only-store"
    shutil.copytree(out / "store", alone)
    g = given(alone)
    assert (g["beta"], g["seed"], g["n_steps"], g["responses_per_step"], g["n_agents"]) == \
        (0.75, 5, 3, 2, 2)
    assert g["fake"] is True
    # beside the run folder, <out>/<run>/settings.json is read (and wins over the store copy)
    sfile = out / "s" / "settings.json"
    sfile.write_text(json.dumps({**json.loads(sfile.read_text()), "note": "from the file"}))
    assert given(out)["note"] == "from the file"
    assert given(out / "store")["note"] == "from the file"
    # --settings is shown on top of both
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"note": "given", "model": "x"}))
    g = given(out, "--settings", str(extra))
    assert (g["note"], g["model"], g["beta"]) == ("given", "x", 0.75)


def test_run_report_shows_settings_and_store_keeps_them(tmp_path: Path, capsys,
                                                         embedder) -> None:
    from llmweb_plugin.cli.report import stored_run_settings

    out = tmp_path / "out"
    _fake_run(out, "k", "--no-report")
    with lw.WebStore(out / "store", embedder=embedder) as st:
        kept = stored_run_settings(st, "k")
        assert kept == json.loads((out / "k" / "settings.json").read_text())
        seeds = st.records("k", kind="seed")
        assert sum("llmweb_settings" in r.metadata for r in seeds) == 1  # one copy, seed 0
        assert stored_run_settings(st, "no-such-run") == {}
