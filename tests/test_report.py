"""DiversityReport: numbers against the core metrics recomputed from the stored vectors, outputs,
escaping, bad inputs, and a store reopened from disk in a new process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.report import SCHEMA, DiversityReport, classical_mds
from llmweb_plugin.report.render_markdown import md_escape
from llmweb_plugin.testing import brute_force_collapse_norm

POOLS = {
    "alice": ["bitcoin will reach new highs", "crypto adoption keeps growing",
              "investors love bitcoin"],
    "bob": ["regulators threaten bitcoin", "bitcoin is too volatile", "a crash looms for crypto"],
    "carol": ["mining wastes energy", "stablecoins will replace bitcoin",
              "ethereum outpaces bitcoin"],
}
CONSENSUS = "bitcoin's future is uncertain but promising"
XSS_SCRIPT = "<script>document.title='pwned'</script> bitcoin"
XSS_IMG = "nice <img src=x onerror=\"document.title='pwned'\"> coin | pipe\nnewline"


def write_run(store: lw.WebStore, run_id: str, *, agents=("alice", "bob", "carol"), steps=4,
              L=3, collapse_at=3, rng=0, meta=None) -> None:
    """Responses (L per agent and step) and one post per agent and step, real embeddings
    (one embedding call per run)."""
    gen = np.random.default_rng(rng)
    recs = []
    for t in range(1, steps + 1):
        for a in agents:
            pool = POOLS.get(a, POOLS["alice"])
            if t < collapse_at:
                texts = [f"{pool[int(gen.integers(3))]} {int(gen.integers(1000))}"
                         for _ in range(L)]
            else:
                texts = [f"{CONSENSUS} {i}" for i in range(L)]
            md = {"context_size": 2 + t, "query": "Bitcoin?", **(meta or {})}
            recs += [lw.Record(text=x, run_id=run_id, agent=a, step=t, kind="response", index=i,
                               metadata=md) for i, x in enumerate(texts)]
            recs.append(lw.Record(text=texts[0], run_id=run_id, agent=a, step=t, kind="post"))
    store.upsert(recs, vectors=store.embedder.embed([r.text for r in recs]))


def recompute(store: lw.WebStore, run_id: str) -> dict[int, dict[str, object]]:
    """The per-step numbers from the stored vectors, with the core metrics and brute force."""
    by_step = defaultdict(list)
    for r in store.records(run_id, kind="response", with_vectors=True):
        by_step[r.step].append(r)
    out = {}
    for s, rs in sorted(by_step.items()):
        V = np.stack([r.vector for r in rs]).astype(np.float64)
        agents = [r.agent for r in rs]
        names = sorted(set(agents))
        means = np.stack([V[[a == n for a in agents]].mean(axis=0) for n in names])
        sp = lw.spread(V, agents)
        m = len(names)
        out[s] = {
            "norm": lw.collapse_norm(means) if m >= 2 else None,
            "norm_brute": brute_force_collapse_norm(means) if m >= 2 else None,
            "normalized_norm": lw.normalized_collapse_norm(means) if m >= 2 else None,
            "within_spread": sp.within, "between_spread": sp.between, "total_spread": sp.total,
            "mean_cosine_distance": lw.mean_cosine_distance(V),
            "vendi_score": lw.vendi_score(V),
            "distinct_1": lw.distinct_n([r.text for r in rs], 1),
            "distinct_2": lw.distinct_n([r.text for r in rs], 2),
            "per_agent": {n: {"spread": sp.per_agent[n],
                              "mean_cosine_distance": lw.mean_cosine_distance(
                                  V[[a == n for a in agents]]),
                              "vendi_score": lw.vendi_score(V[[a == n for a in agents]]),
                              "n": sp.counts[n]} for n in names},
            "V": V,
        }
    return out


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


@pytest.fixture()
def run_store(store):
    write_run(store, "r1")
    return store


def test_json_numbers_equal_the_core_metrics_on_stored_vectors(run_store) -> None:
    rep = DiversityReport.from_store(run_store, run_id="r1")
    data = json.loads(json.dumps(rep.to_json(), allow_nan=False))
    assert data["schema"] == SCHEMA == "llmweb.report/1"
    (run,) = data["runs"]
    assert run["run_id"] == "r1" and run["agents"] == ["alice", "bob", "carol"]
    assert run["steps"] == [1, 2, 3, 4]
    assert run["counts"] == {"seed": 0, "external": 0, "human": 0, "post": 12, "response": 36}
    ref = recompute(run_store, "r1")
    for row in run["per_step"]:
        exp = ref[row["step"]]
        assert row["n_agents"] == 3 and row["n_records"] == 9
        assert row["norm"] == approx(exp["norm"]) and row["norm"] == approx(exp["norm_brute"])
        for key in ("normalized_norm", "within_spread", "between_spread", "total_spread",
                    "mean_cosine_distance", "vendi_score", "distinct_1", "distinct_2"):
            assert row[key] == approx(exp[key]), key
        for agent, vals in exp["per_agent"].items():
            got = row["per_agent"][agent]
            assert got["n"] == vals["n"] == 3
            for key in ("spread", "mean_cosine_distance", "vendi_score"):
                assert got[key] == approx(vals[key]), (agent, key)
        assert row["context_size"] == row["step"] + 2
        assert row["records_by_kind"]["post"] == 3
        assert row["web_size"] == 3 * row["step"]
        assert row["synthetic_fraction"] == 1.0
    # the collapse written into the data shows: distinct clouds, then one consensus sentence
    assert run["per_step"][-1]["norm"] < 0.5 * run["per_step"][0]["norm"]
    # MDS: the core classical_mds of the first and last step's vectors, in stored order
    V = np.concatenate([ref[1]["V"], ref[4]["V"]])
    Y = classical_mds(V)
    pts = run["mds"]["points"]
    assert [p["step"] for p in pts] == [1] * 9 + [4] * 9
    np.testing.assert_allclose([[p["x"], p["y"]] for p in pts], Y, atol=1e-9)
    # examples: each agent's first two responses (its post repeats the first one)
    resp = {(r.agent, r.step, r.index): r.text for r in run_store.records("r1", kind="response")}
    assert [(e["agent"], e["kind"], e["index"], e["text"])
            for e in run["examples"]["first"]] == [
        (a, "response", i, resp[(a, 1, i)]) for a in ("alice", "bob", "carol") for i in (0, 1)]
    assert [e["text"] for e in run["examples"]["last"]] == [f"{CONSENSUS} {i}"
                                                           for _ in range(3) for i in (0, 1)]
    inferred = run["settings"]["inferred"]
    assert inferred["responses_per_agent_per_step"] == 3
    assert inferred["context_size"] == {"first": 3, "last": 6}
    assert inferred["queries"] == {"Bitcoin?": 36}
    assert inferred["steps"] == {"first": 1, "last": 4, "count": 4}
    assert run["warnings"] == [] and run["usage"] == {}


def test_several_runs_get_bands_equal_to_mean_and_sd(store) -> None:
    for i in range(3):
        write_run(store, f"rep-{i}", rng=i, steps=3)
    rep = DiversityReport.from_store(store, run_ids=["rep-0", "rep-1", "rep-2"],
                                     settings={"beta": 0.5},
                                     run_settings={"rep-1": {"beta": 0.25}})
    data = rep.to_json()
    assert data["groups"] == {"all runs": ["rep-0", "rep-1", "rep-2"]}
    band = data["comparison"]["all runs"]["series"]["norm"]
    assert band["steps"] == [1, 2, 3] and band["n"] == [3, 3, 3]
    per_run = np.array([[s["norm"] for s in r["per_step"]] for r in data["runs"]])
    np.testing.assert_allclose(band["mean"], per_run.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(band["sd"], per_run.std(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(band["min"], per_run.min(axis=0), rtol=1e-12)
    np.testing.assert_allclose(band["max"], per_run.max(axis=0), rtol=1e-12)
    assert [r["settings"]["given"]["beta"] for r in data["runs"]] == [0.5, 0.25, 0.5]
    # explicit groups: a band per condition
    rep2 = DiversityReport.from_store(store, run_ids=["rep-0", "rep-1", "rep-2"],
                                      groups={"a": ["rep-0", "rep-1"], "b": ["rep-2"]})
    comp = rep2.comparison()
    assert comp["b"]["series"]["vendi_score"]["sd"] == [None] * 3 or all(
        np.isnan(comp["b"]["series"]["vendi_score"]["sd"]))
    assert rep2.to_json()["comparison"]["b"]["series"]["norm"]["sd"] == [None, None, None]
    html = rep2.to_html()
    assert html.count("<img ") == 3 + 2 * 3  # 3 series figures, MDS + agents per run
    with pytest.raises(ValueError, match="not in this report"):
        DiversityReport.from_store(store, run_ids=["rep-0"], groups={"x": ["nope"]})


def test_one_agent_run_reports_everything_but_the_norm(store) -> None:
    write_run(store, "solo", agents=("alice",), steps=2)
    rep = DiversityReport.from_store(store, run_id="solo")
    data = json.loads(json.dumps(rep.to_json(), allow_nan=False))  # NaN became null
    (run,) = data["runs"]
    assert [s["norm"] for s in run["per_step"]] == [None, None]
    assert [s["normalized_norm"] for s in run["per_step"]] == [None, None]
    assert all(s["vendi_score"] >= 1 and s["mean_cosine_distance"] >= 0 for s in run["per_step"])
    assert any("one agent" in w and "undefined" in w for w in run["warnings"])
    assert data["warnings"] == run["warnings"]
    html = rep.to_html()
    assert "undefined with fewer than two agents" in html


def test_steps_with_one_agent_are_named(store) -> None:
    write_run(store, "mix", steps=1)
    store.add_texts(["late answer"], run_id="mix", agent="alice", step=2, kind="response")
    rep = DiversityReport.from_store(store, run_id="mix")
    assert rep.runs[0].series("norm")[1] != rep.runs[0].series("norm")[1]  # NaN at step 2
    assert rep.warnings == ["||D(t)||_F is undefined at steps [2]: only one agent answered there."]


def test_missing_and_empty_runs_are_clear_errors(store) -> None:
    write_run(store, "r1", steps=1)
    store.add_seeds(["a seed", "another seed"], run_id="seeds-only")
    with pytest.raises(LookupError, match=r"run 'nope' not found in collection .*'r1'"):
        DiversityReport.from_store(store, run_id="nope")
    with pytest.raises(ValueError, match=r"no response records .*'seed': 2"):
        DiversityReport.from_store(store, run_id="seeds-only")
    with pytest.raises(ValueError, match="exactly one"):
        DiversityReport.from_store(store)
    with pytest.raises(ValueError, match="exactly one"):
        DiversityReport.from_store(store, run_id="r1", run_ids=["r1"])
    with pytest.raises(TypeError, match="not a string"):
        DiversityReport.from_store(store, run_ids="r1")
    with pytest.raises(ValueError, match="metric_kinds"):
        DiversityReport.from_store(store, run_id="r1", metric_kinds=("answer",))
    with pytest.raises(TypeError, match="WebStore"):
        DiversityReport.from_store("not a store", run_id="r1")


def test_mitigations_usage_and_tags_from_the_store(store) -> None:
    write_run(store, "m", steps=3, meta={"usage_input_tokens": 7, "usage_output_tokens": 2})
    store.add_texts(["fresh news about bitcoin", "an analyst's note"], run_id="m", agent="news",
                    step=2, kind="external", metadata={"mitigation": "inject_real_data"})
    store.add_texts(["a human wrote this"], run_id="m", agent="editor", step=3, kind="human")
    rep = DiversityReport.from_store(store, run_id="m")
    run = rep.to_json()["runs"][0]
    assert run["usage"] == {a: {"input_tokens": 7 * 9, "output_tokens": 2 * 9}
                            for a in ("alice", "bob", "carol")}
    assert run["mitigations"]["records_by_step"] == {"2": {"external": 2}, "3": {"human": 1}}
    assert run["mitigations"]["tags"] == {"external:inject_real_data": 2}
    rows = {s["step"]: s for s in run["per_step"]}
    assert rows[2]["mitigation"] == {"inject_real_data": 2}
    assert rows[2]["records_by_kind"]["external"] == 2
    assert [rows[s]["web_size"] for s in (1, 2, 3)] == [3, 8, 12]
    assert rows[3]["synthetic_fraction"] == pytest.approx(9 / 12)
    assert run["events"] == [] and run["alarms"] == []


def test_from_monitor_adds_events_alarms_usage_and_annotations(store) -> None:
    with lw.CollapseMonitor(store, run_id="live", baseline_steps=1, alarm_fraction=0.5) as mon:
        gen = np.random.default_rng(3)
        for t in range(1, 5):
            for a in ("alice", "bob"):
                for i in range(3):
                    text = (f"{POOLS[a][int(gen.integers(3))]} {i}" if t < 3
                            else f"{CONSENSUS} {i}")
                    mon.record(text, agent=a, step=t)
                mon.record_usage(a, input_tokens=10, output_tokens=4)
            if t == 2:
                mon.record("real news", agent="news", step=t, kind="external",
                           metadata={"mitigation": "inject"})
                mon.log_event("mitigation", step=t, injected=1)
                mon.annotate(t, injected=1)
        rep = DiversityReport.from_monitor(mon, settings={"model": "fake"})
        history = mon.history()
    run = rep.to_json()["runs"][0]
    assert run["source"] == "monitor"
    # the monitor sums the embedder's float32 output; Qdrant stores cosine vectors re-normalised
    assert [s["norm"] for s in run["per_step"]] == [pytest.approx(h.norm, rel=1e-6, abs=1e-9)
                                                   for h in history]
    assert [s["within_spread"] for s in run["per_step"]] == [pytest.approx(h.within_spread, rel=1e-6)
                                                            for h in history]
    assert run["usage"] == {"alice": {"input_tokens": 40, "output_tokens": 16},
                            "bob": {"input_tokens": 40, "output_tokens": 16}}
    assert [a["step"] for a in run["alarms"]] == [3, 4]
    assert [e["kind"] for e in run["events"]] == ["mitigation", "alarm", "alarm"]
    assert run["per_step"][1]["annotations"] == {"injected": 1}
    assert run["settings"]["given"] == {"model": "fake"}
    inferred = run["settings"]["inferred"]
    assert inferred["alarm_fraction"] == 0.5 and inferred["metric_kinds"] == ["response"]
    assert inferred["monitor_stats"]["stored"] == 25
    html = rep.to_html()
    assert html.count("<tr><td>alarm</td>") == 2
    with pytest.raises(TypeError, match="CollapseMonitor"):
        DiversityReport.from_monitor(store)


def test_html_is_self_contained_and_escapes_every_model_text(store) -> None:
    write_run(store, "x<b>run</b>", steps=2)
    store.add_texts([XSS_SCRIPT, XSS_IMG], run_id="x<b>run</b>", agent="<i>evil</i>", step=2,
                    kind="response")
    store.add_texts([XSS_IMG], run_id="x<b>run</b>", agent="<i>evil</i>", step=2, kind="post")
    store.add_texts([XSS_SCRIPT], run_id="x<b>run</b>", agent="alice", step=2, kind="post",
                    start_index=1)
    rep = DiversityReport.from_store(store, run_id="x<b>run</b>", title="T <script>x</script>")
    page = rep.to_html()
    assert "<script" not in page.lower()
    assert ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">") in page
    imgs = re.findall(r"<img [^>]*>", page)
    assert imgs and all(re.fullmatch(r'<img alt="[\w-]+" src="data:image/png;base64,[A-Za-z0-9+/=]+">',
                                     i) for i in imgs)
    assert "onerror" not in page.replace("onerror=&quot;", "")  # only as escaped text
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "&lt;i&gt;evil&lt;/i&gt;" in page and "<i>evil" not in page
    assert "x&lt;b&gt;run&lt;/b&gt;" in page and "<b>run" not in page
    assert not re.search(r"(src|href)=\"(?!data:image/png)", page)  # no fetches of any kind
    assert "http://" not in page and "https://" not in page


def test_markdown_writes_plots_beside_it_and_escapes_text(store, tmp_path: Path) -> None:
    write_run(store, "md", steps=2)
    store.add_texts([XSS_IMG], run_id="md", agent="alice", step=2, kind="post", start_index=1)
    rep = DiversityReport.from_store(store, run_id="md", n_examples=3)
    text = rep.to_markdown(tmp_path / "rep.md")
    assert (tmp_path / "rep.md").read_text() == text
    names = sorted(p.name for p in (tmp_path / "rep_files").iterdir())
    assert names == ["agents-1.png", "diversity.png", "mds-1.png", "norm.png", "spread.png"]
    for n in names:
        assert (tmp_path / "rep_files" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](rep_files/{n})" in text
    assert "<img" not in text and "<script" not in text.lower()
    row = next(line for line in text.splitlines() if "onerror" in line)
    assert "coin \\| pipe<br>newline" in row and "&lt;img src=x" in row
    assert row.count(" | ") == 3 and row.startswith("| alice | post | 1 | ")
    assert md_escape("a|b\nc [x](javascript:y) *z* <b>'&'</b>") == (
        "a\\|b<br>c \\[x\\](javascript:y) \\*z\\* &lt;b&gt;'&amp;'&lt;/b&gt;")


def test_to_json_writes_a_strict_json_file(store, tmp_path: Path) -> None:
    write_run(store, "solo", agents=("bob",), steps=1)
    rep = DiversityReport.from_store(store, run_id="solo")
    d = rep.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == d
    assert "NaN" not in (tmp_path / "r.json").read_text()


def test_rendering_without_matplotlib_names_the_extra(store, monkeypatch) -> None:
    write_run(store, "r", steps=1)
    rep = DiversityReport.from_store(store, run_id="r")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'llmweb-plugin\[report\]'"):
        rep.to_html()
    assert rep.to_json()["runs"][0]["run_id"] == "r"  # numbers need no matplotlib


def test_importing_the_report_does_not_import_matplotlib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", ("import sys, llmweb_plugin.report, llmweb_plugin.cli.report; "
                                "print('matplotlib' in sys.modules)")],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_WRITER = textwrap.dedent("""
    import json, sys
    import llmweb_plugin as lw
    path = sys.argv[1]
    embedder = HashEmbedder()
    pools = {"alice": ["bitcoin will soar", "crypto adoption grows", "buy the dip"],
             "bob": ["regulation hurts bitcoin", "crypto is risky", "a crash is coming"]}
    with lw.WebStore(path, embedder=embedder) as store:
        with lw.CollapseMonitor(store, run_id="disk-run") as mon:
            for t in range(1, 4):
                for a, pool in pools.items():
                    for i in range(3):
                        text = pool[(i + t) % 3] if t < 3 else "bitcoin is uncertain " + str(i)
                        mon.record(text, agent=a, step=t, metadata={"context_size": t})
            hist = mon.history()
    print(json.dumps([{"step": h.step, "norm": h.norm, "within": h.within_spread,
                       "mcd": h.mean_cosine_distance} for h in hist]))
""")


def test_report_from_a_store_reopened_from_disk_in_a_new_process(hash_embedder, tmp_path: Path
                                                                   ) -> None:
    """The writer and this reader share only the folder; both embed with the hash embedder
    (persistence needs no meaning, and a new process then loads no model)."""
    folder = tmp_path / "web"
    writer = type(hash_embedder).SOURCE + _WRITER
    out = subprocess.run([sys.executable, "-c", writer, str(folder)], capture_output=True,
                         text=True, timeout=300, check=False,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout.strip().splitlines()[-1])
    with lw.WebStore(folder, embedder=hash_embedder) as store:
        assert store.runs() == ["disk-run"]
        rep = DiversityReport.from_store(store, run_id="disk-run")
        ref = recompute(store, "disk-run")
    run = rep.to_json()["runs"][0]
    assert run["source"] == "store" and run["counts"]["response"] == 18
    assert [s["step"] for s in run["per_step"]] == [w["step"] for w in written] == [1, 2, 3]
    for row, w in zip(run["per_step"], written):
        assert row["norm"] == approx(w["norm"]) == approx(ref[row["step"]]["norm_brute"])
        assert row["within_spread"] == approx(w["within"])
        assert row["mean_cosine_distance"] == approx(w["mcd"])
        assert row["context_size"] == row["step"]
