"""Tests for llmweb_plugin.reproduce (issue 15): the framework, lwd-fig4 and companion-silo at
quick scale, and ``llmweb reproduce``.

Every "agrees" written to result.json is re-decided here from the numbers result.json holds (and,
where cheap, from a brute-force rerun of the simulator with the same seed), never from constants.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.cli import main
from llmweb_plugin.proxies import SiloGMM, gmm_preset
from llmweb_plugin.reproduce import (
    TARGETS,
    Claim,
    Outcome,
    PublishedClaim,
    ReproduceResult,
    _framework,
    available_targets,
    reproduce,
)
from llmweb_plugin.trend import pooled_trend

PNG = b"\x89PNG\r\n\x1a\n"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------------------- a fake target
def _fake_module(values: list[float]) -> types.ModuleType:
    """A target whose claims are decided from ``values`` (one agrees, one not, one untestable)."""
    mod = types.ModuleType("llmweb_plugin.reproduce._fake_target")
    mod.DESCRIPTION = "a fake target for the framework's tests"

    def run(*, replicates, quick, rng, scale: float = 1.0):
        x = np.asarray(values) * scale
        pub = [PublishedClaim(id=f"c{i}", text=f"claim {i} | piped", value=v, source="nowhere")
               for i, v in enumerate(("mean > 0", "mean > 100", "n/a"))]
        m = float(x.mean())
        claims = (
            Claim(published=pub[0], ours=f"{m:.2f}", agrees=m > 0, detail="mean > 0",
                  interval=(float(x.min()), float(x.max())), interval_kind="range",
                  measured={"mean": m}),
            Claim(published=pub[1], ours=f"{m:.2f}", agrees=m > 100, detail="mean > 100",
                  measured={"mean": m}),
            Claim(published=pub[2], ours="-", agrees=None, detail="needs a model server"),
        )
        return Outcome(target="fake", claims=claims,
                       settings={"replicates": replicates, "scale": scale},
                       series={"x": x.tolist(), "nan": [float("nan")]},
                       draw=lambda path: Path(path).write_bytes(PNG + b"fake"))

    mod.run = run
    return mod


@pytest.fixture
def fake_target(monkeypatch):
    name = "llmweb_plugin.reproduce._fake_target"
    monkeypatch.setitem(sys.modules, name, _fake_module([1.0, 2.0, 3.0]))
    registry = {**TARGETS, "fake": "_fake_target", "ghost": "_no_such_target_module"}
    monkeypatch.setattr(_framework, "TARGETS", registry)
    monkeypatch.setattr(sys.modules["llmweb_plugin.reproduce"], "TARGETS", registry)
    return "fake"


# ---------------------------------------------------------------------------- framework
def test_registry_lists_every_target_and_the_present_ones_with_descriptions():
    assert list(TARGETS) == ["lwd-fig4", "lwd-fig6", "companion-silo", "lwd-fig2",
                             "mas-topology"]
    avail = available_targets()
    assert {"lwd-fig4", "companion-silo"} <= set(avail)
    assert set(avail) <= set(TARGETS)
    for text in avail.values():
        assert len(text) > 20 and "\n" not in text


def test_top_package_reproduce_is_callable_and_loaded_only_on_use(tmp_path, fake_target):
    import llmweb_plugin.reproduce as pkg

    assert lw.reproduce is pkg and "reproduce" in lw.__all__
    r = lw.reproduce(fake_target, out=tmp_path, replicates=3)
    assert r.target == "fake" and r.settings["replicates"] == 3 and r.agrees is False
    code = ("import sys, llmweb_plugin as lw; a = 'llmweb_plugin.reproduce' in sys.modules; "
            "lw.reproduce; import llmweb_plugin.reproduce.lwd_fig4; "
            "print(a, 'llmweb_plugin.reproduce' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == ["False", "True", "False"]


def test_unknown_and_missing_targets_raise_and_write_nothing(tmp_path, fake_target):
    with pytest.raises(ValueError, match=r"unknown target 'nope'.*lwd-fig4"):
        reproduce("nope", out=tmp_path)
    with pytest.raises(ValueError, match=r"'ghost' is registered but not part of this build"):
        reproduce("ghost", out=tmp_path)
    assert _files(tmp_path) == []


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"bogus": 1}, TypeError, r"unknown option\(s\) \['bogus'\]; this target accepts \['scale'\]"),
    ({"replicates": 0}, ValueError, "replicates must be >= 1"),
    ({"replicates": 2.5}, ValueError, "replicates must be a whole number"),
    ({"replicates": True}, ValueError, "replicates must be a whole number"),
    ({"quick": "yes"}, ValueError, "quick must be True or False"),
])
def test_bad_arguments_raise_before_anything_is_written(tmp_path, fake_target, kwargs, exc,
                                                        match):
    with pytest.raises(exc, match=match):
        reproduce(fake_target, out=tmp_path, **kwargs)
    assert _files(tmp_path) == []


def test_real_targets_refuse_options_they_do_not_take(tmp_path):
    with pytest.raises(TypeError, match=r"\['engin'\]; this target accepts \['engine'\]"):
        reproduce("lwd-fig4", out=tmp_path, engin="numba")
    with pytest.raises(TypeError, match=r"\['engine'\]; this target accepts no options"):
        reproduce("companion-silo", out=tmp_path, engine="numba")
    assert _files(tmp_path) == []


def test_result_files_table_and_agreement(tmp_path, fake_target):
    r = reproduce(fake_target, out=tmp_path, replicates=4, scale=2.0, rng=7)
    assert r.out_dir == str(tmp_path / "fake")
    assert _files(tmp_path) == ["fake", "fake/comparison.md", "fake/figure.png",
                                "fake/result.json"]
    assert [c.agrees for c in r.claims] == [True, False, None]
    assert r.agrees is False and [c.published.id for c in r.disagreements] == ["c1"]
    assert r.settings == {"target": "fake", "replicates": 4, "scale": 2.0, "quick": False,
                          "seed": 7}
    table = r.table().splitlines()
    assert table[0] == "| claim | published (source) | ours (interval) | agrees? |"
    assert len(table) == 5
    assert table[2] == ("| claim 0 \\| piped | mean > 0 (nowhere) | 4.00 [2, 6, range] | yes |")
    assert table[3].endswith("| **no** |") and table[4].endswith("| not testable |")
    md = (tmp_path / "fake" / "comparison.md").read_text()
    assert r.table() in md and "- `scale`: 2.0" in md and "**c2** (not testable)" in md
    assert "fake: 1 of 2 testable claims agree; disagrees on: c1; not testable here: c2" in md
    data = json.loads((tmp_path / "fake" / "result.json").read_text())
    assert data["agrees"] is False and data["series"]["nan"] == [None]
    assert data == json.loads(json.dumps(r.to_json()))
    # each claim's "agrees" re-decided from result.json's own series
    mean = float(np.mean(data["series"]["x"]))
    assert [c["agrees"] for c in data["claims"]] == [mean > 0, mean > 100, None]
    assert data["claims"][0]["measured"]["mean"] == pytest.approx(mean)
    assert data["claims"][0]["interval"] == [min(data["series"]["x"]), max(data["series"]["x"])]
    assert (tmp_path / "fake" / "figure.png").read_bytes().startswith(PNG)


def test_agrees_is_none_without_testable_claims_and_true_when_all_agree():
    pub = PublishedClaim(id="a", text="t", value="v", source="s")
    mk = lambda *flags: ReproduceResult(
        target="x", claims=tuple(Claim(published=pub, ours="o", agrees=f, detail="d")
                                 for f in flags),
        settings={}, series={}, notes=(), out_dir="", paths={}, elapsed_s=0.0)
    assert mk(None, None).agrees is None and mk(True, None).agrees is True
    assert mk(True, False).agrees is False and mk().agrees is None


def test_figure_failure_keeps_the_numbers(tmp_path, fake_target, monkeypatch):
    def no_mpl(path):
        raise ImportError("the figure needs matplotlib: pip install 'llmweb-plugin[report]'")

    mod = sys.modules["llmweb_plugin.reproduce._fake_target"]
    real = mod.run
    monkeypatch.setattr(mod, "run", lambda **kw: __import__("dataclasses").replace(
        real(**kw), draw=no_mpl))
    r = reproduce(fake_target, out=tmp_path)
    assert sorted(r.paths) == ["comparison", "result"]
    assert _files(tmp_path / "fake") == ["comparison.md", "result.json"]
    assert any("llmweb-plugin[report]" in n for n in r.notes)


# ---------------------------------------------------------------------------- lwd-fig4
def test_lwd_fig4_quick_claims_follow_from_its_numbers(tmp_path):
    r = reproduce("lwd-fig4", quick=True, out=tmp_path, rng=0)
    folder = tmp_path / "lwd-fig4"
    assert (folder / "figure.png").read_bytes().startswith(PNG)
    data = json.loads((folder / "result.json").read_text())
    s, claims = data["series"], {c["id"]: c for c in data["claims"]}
    R = data["settings"]["replicates"]
    assert R == 30 and data["settings"]["n_steps"] == 200 and data["settings"]["engine"] == "numpy"
    assert list(claims) == ["start_1.1_to_2.3", "below_0.3_by_t25",
                            "floor_0.02_to_0.15_after_t50", "collapse_verdict"]
    assert all(c["source"] and "2506.15690" in c["source"] for c in claims.values())

    # brute force: the same simulator, same seed, outside the framework
    norms = gmm_preset("lwd-fig4", n_replicates=R).run(rng=np.random.default_rng(0),
                                                      engine="numpy").norms[:200].T
    np.testing.assert_allclose(s["median"], np.median(norms, axis=0), rtol=1e-12)
    np.testing.assert_allclose(s["p95"], np.quantile(norms, 0.95, axis=0), rtol=1e-12)
    assert s["t"] == list(range(1, 201))

    c = claims["start_1.1_to_2.3"]
    m = c["measured"]
    assert m["median_t1"] == pytest.approx(s["median"][0])
    assert m["share_in_range"] == pytest.approx(np.mean((norms[:, 0] >= 1.1) & (norms[:, 0] <= 2.3)))
    assert c["agrees"] == (m["range"][0] <= s["median"][0] <= m["range"][1])

    c = claims["below_0.3_by_t25"]
    m = c["measured"]
    share = float(np.mean(norms[:, 24] < 0.3))
    assert m["share_below"] == pytest.approx(share) and m["median_t25"] == s["median"][24]
    assert c["agrees"] == (s["median"][24] < m["threshold"] and share >= m["min_share"])
    assert m["chance_all_5_below"] == pytest.approx(share ** 5)

    c = claims["floor_0.02_to_0.15_after_t50"]
    late = [v for t, v in zip(s["t"], s["median"], strict=True) if t > 50]
    lo, hi = c["measured"]["range"]
    assert c["measured"]["steps"] == 150
    assert c["measured"]["steps_inside"] == sum(lo <= v <= hi for v in late)
    assert c["agrees"] == all(lo <= v <= hi for v in late)
    assert c["interval"] == [min(s["p05"][50:]), max(s["p95"][50:])]

    c = claims["collapse_verdict"]
    pooled = pooled_trend(norms, steps=np.arange(1, 201), rng=0)
    assert c["measured"]["verdict"] == pooled.verdict
    assert c["measured"]["counts"] == pooled.counts
    assert c["agrees"] == (pooled.verdict == "collapsing")

    assert data["agrees"] == all(c["agrees"] for c in claims.values())
    md = (folder / "comparison.md").read_text()
    assert r.table() in md and "## How each claim was decided" in md


# ---------------------------------------------------------------------------- companion-silo
def test_companion_silo_quick_claims_follow_from_its_numbers(tmp_path):
    reproduce("companion-silo", quick=True, out=tmp_path, rng=0)
    data = json.loads((tmp_path / "companion-silo" / "result.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    st = data["settings"]
    assert (st["replicates"], st["n_steps"]) == (10, 100)
    assert all("2506.00077" in c["source"] and "our reading" in c["value"]
               for c in claims.values())

    c = claims["fewer_silos_with_more_neighbours"]
    mean, ci = c["measured"]["mean"], c["measured"]["ci"]
    assert mean == data["series"]["silos_at_T"]["mean"]
    assert all(lo <= m <= hi for m, (lo, hi) in zip(mean, ci, strict=True))
    rises = any(ci[i + 1][0] > ci[i][1] for i in range(len(ci) - 1))
    assert c["agrees"] == (ci[0][0] > ci[-1][1] and not rises)
    # brute force: the first run of the sweep (k = 1) is the same simulator with the same seed
    first = SiloGMM(n_agents=30, n_components=30, mirror_prob=0.0, n_neighbors=1, rag_size=5,
                    n_steps=100, n_replicates=10).run(rng=np.random.default_rng(0))
    assert mean[0] == pytest.approx(first.final_silos.mean())

    c = claims["consensus_with_all_neighbours"]
    assert c["agrees"] == (c["measured"]["converged_share"] >= c["measured"]["min_share"])
    k29 = data["series"]["silos_over_time_by_k"]["29"]
    if c["measured"]["converged_share"] == 1.0:  # every replicate ends on one silo
        assert k29["p95"][-1] == 1.0 and c["measured"]["final_silos_mean"] == 1.0

    c = claims["mirroring_delays_consensus"]
    mean, ci = c["measured"]["mean"], c["measured"]["ci"]
    assert mean == data["series"]["t_star"]["mean"] and c["measured"]["p"][0] == 0.0
    assert all(0 <= m <= st["n_steps"] for m in mean)
    falls = any(ci[i + 1][1] < ci[i][0] for i in range(len(ci) - 1))
    assert c["agrees"] == (ci[-1][0] > ci[0][1] and not falls)
    assert data["agrees"] == all(c["agrees"] for c in claims.values())


# ---------------------------------------------------------------------------- CLI
def test_cli_runs_prints_the_table_and_writes(tmp_path, capsys):
    rc = main(["reproduce", "lwd-fig4", "--quick", "--replicates", "8", "--seed", "2",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads((tmp_path / "lwd-fig4" / "result.json").read_text())
    assert data["settings"]["replicates"] == 8 and data["settings"]["seed"] == 2
    assert "| claim | published (source) | ours (interval) | agrees? |" in out
    assert f"wrote {tmp_path / 'lwd-fig4' / 'figure.png'}" in out
    n_no = sum(c["agrees"] is False for c in data["claims"])
    assert out.count("DISAGREES: ") == n_no
    assert ("every testable claim agrees" in out) == (n_no == 0)


def test_cli_says_disagreements_plainly_and_exits_0(tmp_path, capsys, fake_target):
    assert main(["reproduce", "fake", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DISAGREES: claim 1 | piped (published mean > 100); ours: 2.00. mean > 100" in out
    assert "not testable here: claim 2 | piped: needs a model server" in out
    assert "fake: the reproduction DISAGREES with 1 published claim(s)" in out


def test_cli_list(capsys, fake_target):
    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("lwd-fig4 ") for line in lines)
    assert any(line.startswith("companion-silo ") for line in lines)
    assert "ghost" in lines[-1] and "not part of this build" in lines[-1]


def test_cli_list_through_python_m():
    out = subprocess.run([sys.executable, "-m", "llmweb_plugin.cli", "reproduce", "--list"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0 and "lwd-fig4" in out.stdout and "companion-silo" in out.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["lwd-fig4", "--replicates", "0"], "--replicates must be >= 1; got 0"),
    (["lwd-fig4", "--seed", "-1"], "--seed must be >= 0"),
    (["nope"], "unknown target 'nope'"),
    ([], "give a TARGET"),
    (["ghost"], "'ghost' is registered but not part of this build"),
    (["lwd-fig4", "--agents", "a=m:x"], "unknown option(s)"),  # a target without agents
    (["lwd-fig4", "--paper"], "'paper'"),
    (["lwd-fig2", "--steps", "0"], "--steps must be >= 1; got 0"),
    (["lwd-fig2", "--quick", "--agents", "a=m:x,b=m:y"], "leave quick out"),
])
def test_cli_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, fake_target, argv,
                                                    message):
    assert main(["reproduce", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmweb reproduce: error: ") and message in err
    assert _files(tmp_path) == []


def test_cli_flag_of_the_wrong_type_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "lwd-fig4", "--replicates", "many", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--replicates" in capsys.readouterr().err
    assert _files(tmp_path) == []


def test_cli_passes_the_web_flags_to_the_target(tmp_path, capsys):
    # lwd-fig2 --quick (fake agents): --steps and --responses reach the target's settings
    rc = main(["reproduce", "lwd-fig2", "--quick", "--steps", "7", "--responses", "2",
               "--out", str(tmp_path)])
    assert rc == 0
    got = json.loads((tmp_path / "lwd-fig2" / "result.json").read_text(encoding="utf-8"))
    assert got["settings"]["n_steps"] == 7 and got["settings"]["responses_per_step"] == 2
    assert all(c["agrees"] is None for c in got["claims"])  # fake agents: plumbing only
