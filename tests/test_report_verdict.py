"""The report's verdict (issue 12): first section of HTML, Markdown and JSON, with text evidence.

Runs are built so the answer is known: agents whose posts converge to one shared sentence
(collapsing), agents who keep writing their own new texts (not collapsing), and runs too short for
a verdict. The embedder is a deterministic fake (a Gaussian vector seeded by SHA-256 of the text:
equal texts, equal vectors, different texts nearly orthogonal); the store is real embedded Qdrant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.cli import main
from llmweb_plugin.report import first_last_ratio
from llmweb_plugin.testing import SeededEmbedder

AGENTS = ("a", "b", "c")
L = 4
SHARED = "the one sentence every agent ends up writing"
N_STEPS = 24




def _own(agent: str, step: int, i: int) -> str:
    return f"agent {agent} writes its own text {i} at step {step} <script>alert({i})</script>"


def converging(agent: str, step: int) -> list[str]:
    """Step s: min(L, s // 3) of an agent's L posts are the shared sentence, the rest its own."""
    k = min(L, step // 3)
    return [SHARED] * k + [_own(agent, step, i) for i in range(k, L)]


def own_texts(agent: str, step: int) -> list[str]:
    return [_own(agent, step, i) for i in range(L)]


def _record(store, run_id, texts_of, n_steps=N_STEPS, agents=AGENTS):
    for s in range(n_steps):
        for a in agents:
            store.add_texts(texts_of(a, s), run_id=run_id, agent=a, step=s, kind="response")


@pytest.fixture(scope="module")
def store():
    st = lw.WebStore(":memory:", embedder=SeededEmbedder())
    for i in range(3):
        _record(st, f"collapse-{i}", converging)
        _record(st, f"stable-{i}", own_texts)
    _record(st, "short-2", converging, n_steps=2)
    _record(st, "short-1", converging, n_steps=1)
    yield st
    st.close()


@pytest.fixture(scope="module")
def collapse_report(store):
    return lw.DiversityReport.from_store(store, run_id="collapse-0")


def _sections(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(marker)]


# ---------------------------------------------------------------------- collapsing, everywhere
def test_collapsing_run_says_collapsing_in_json(collapse_report):
    v = collapse_report.to_json()["verdict"]
    assert v["verdict"] == "collapsing" and v["scope"] == "run" and v["run_id"] == "collapse-0"
    assert v["sentence"].startswith("collapsing: agents agree more")
    assert v["convergence"] == "fell" and v["diversity"] == "fell"
    # every convergence and diversity metric has its trend, with an interval
    assert set(v["trends"]) == {"norm", "between_spread", "vendi_score", "mean_cosine_distance",
                                "distinct_1", "distinct_2"}
    assert v["roles"]["norm"] == "convergence" and v["roles"]["vendi_score"] == "diversity"
    norm = v["trends"]["norm"]
    assert norm["verdict"] == "collapsing" and norm["n_steps"] == N_STEPS
    assert norm["relative_change_ci"][1] < 0 and norm["ci"][1] < 0
    # the same numbers as the verdict computed directly from the run's per-step series
    run = collapse_report.runs[0]
    ref = lw.collapse_verdict({k: run.series(k) for k in v["trends"]}, steps=run.steps)
    assert ref.verdict == v["verdict"] and ref.sentence == v["sentence"]
    assert ref.trends["norm"].slope == pytest.approx(norm["slope"], rel=1e-12)
    assert ref.trends["norm"].p_value == pytest.approx(norm["p_value"], rel=1e-12)
    assert collapse_report.to_json()["runs"][0]["verdict"]["verdict"] == "collapsing"


def test_collapsing_run_text_evidence_shows_what_converged(collapse_report):
    ev = collapse_report.to_json()["verdict"]["evidence"]["collapse-0"]
    first, last = ev["first"], ev["last"]
    assert (first["step"], last["step"]) == (0, N_STEPS - 1)
    # last step: every post is the shared sentence -> its 3-grams shared by all three agents,
    # and every post is a near-duplicate (cosine of the stored vectors) of another agent's post
    grams = [g["ngram"] for g in last["shared"]]
    assert "the one sentence" in grams and "every agent ends" in grams
    assert all(g["n_agents"] == 3 for g in last["shared"])
    nd = last["near_duplicates"]
    assert (nd["n_posts"], nd["n_near_duplicates"], nd["method"]) == (12, 12, "cosine")
    assert nd["share"] == 1.0
    # first step: every post is the agent's own -> no near-duplicate, no shared sentence
    nd0 = first["near_duplicates"]
    assert (nd0["n_posts"], nd0["n_near_duplicates"], nd0["share"]) == (12, 0, 0.0)
    assert not any("the one sentence" == g["ngram"] for g in first["shared"])
    # brute force: the shares from the embedder's vectors by hand
    for step, got in ((0, nd0), (N_STEPS - 1, nd)):
        texts = [t for a in AGENTS for t in converging(a, step)]
        owner = np.repeat(AGENTS, L)
        E = SeededEmbedder().embed(texts).astype(np.float64)
        S = E @ E.T
        hit = [any(S[i, j] >= 0.9 and owner[i] != owner[j] for j in range(len(texts)))
               for i in range(len(texts))]
        assert got["n_near_duplicates"] == sum(hit)


def test_collapsing_run_html_opens_with_the_verdict(collapse_report, tmp_path):
    page = collapse_report.to_html(tmp_path / "r.html")
    i_verdict = page.index('<h2 id="verdict">Verdict</h2>')
    assert i_verdict < page.index("<h2>Runs</h2>") < page.index("<figure>")
    assert i_verdict == page.index("<h2")  # the first section
    section = page[i_verdict:page.index("<h2>Runs</h2>")]
    assert '<p class="verdict">collapsing: agents agree more' in section
    assert "||D|| fell" in section and "97.5% CI" in section  # the interval, under the sentence
    assert "\u201cthe one sentence\u201d (3/3)" in section
    assert "100% (12/12; cosine" in section and "0% (0/12; cosine" in section


def test_collapsing_run_markdown_opens_with_the_verdict(collapse_report, tmp_path):
    md = collapse_report.to_markdown(tmp_path / "r.md")
    heads = _sections(md, "## ")
    assert heads[0] == "## Verdict" and heads[1] == "## Runs"
    section = md[md.index("## Verdict"):md.index("## Runs")]
    assert "**collapsing: agents agree more" in section
    assert "\\|\\|D\\|\\| fell" in section and "97.5% CI" in section
    assert "the one sentence" in section and "100% (12/12" in section


# ---------------------------------------------------------------------- not collapsing
def test_stable_run_is_not_collapsing(store):
    v = lw.DiversityReport.from_store(store, run_id="stable-0").verdict()
    assert v["verdict"] != "collapsing"
    assert v["trends"]["norm"]["verdict"] != "collapsing"
    assert v["trends"]["vendi_score"]["verdict"] != "collapsing"
    ev = v["evidence"]["stable-0"]
    assert ev["first"]["near_duplicates"]["share"] == 0.0
    assert ev["last"]["near_duplicates"]["share"] == 0.0


@pytest.mark.parametrize(("run_id", "n"), [("short-2", 2), ("short-1", 1)])
def test_short_run_is_inconclusive_with_the_reason(store, run_id, n, tmp_path):
    rep = lw.DiversityReport.from_store(store, run_id=run_id)
    v = rep.verdict()
    assert v["verdict"] == "inconclusive"
    assert v["sentence"].startswith("inconclusive: ")
    reason = f"only {n} finite value{'s' if n != 1 else ''}; need at least 6"
    assert v["trends"]["vendi_score"]["reason"] == reason
    assert all(t["verdict"] == "inconclusive" for t in v["trends"].values())
    md = rep.to_markdown(tmp_path / "s.md")
    assert "**inconclusive: " in md and reason in md
    assert reason in rep.to_html()


# ---------------------------------------------------------------------- replicates
def test_pooled_verdict_over_replicates_with_a_band(store):
    ids = [f"collapse-{i}" for i in range(3)]
    rep = lw.DiversityReport.from_store(store, run_ids=ids)
    v = rep.verdict()
    assert v["scope"] == "pooled" and v["verdict"] == "collapsing" and v["runs"] == ids
    assert "pass groups of replicate runs" in v["sentence"]  # pooled over all runs by default
    norm = v["trends"]["norm"]
    assert norm["n_replicates"] == 3 and norm["counts"]["collapsing"] == 3
    # the band, against the per-step norms of the three runs by hand
    M = np.array([rep.run(r).series("norm") for r in ids])
    band = norm["band"]
    assert band["steps"] == [float(s) for s in range(N_STEPS)]
    np.testing.assert_allclose(band["median"], np.median(M, axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(band["mean"], M.mean(axis=0), rtol=1e-9, atol=1e-12)
    assert set(v["per_run"]) == set(ids) and set(v["evidence"]) == set(ids)
    assert all(p["verdict"] == "collapsing" for p in v["per_run"].values())


def test_groups_of_replicates_each_get_a_pooled_verdict(store, tmp_path):
    groups = {"base": ["collapse-0", "collapse-1"], "fresh": ["stable-0", "stable-1"]}
    rep = lw.DiversityReport.from_store(store, run_ids=[r for g in groups.values() for r in g],
                                        groups=groups)
    v = rep.verdict()
    assert v["scope"] == "groups" and v["verdict"] == "differs by group"
    assert v["groups"]["base"]["verdict"] == "collapsing"
    assert v["groups"]["fresh"]["verdict"] != "collapsing"
    assert v["sentence"].startswith("base: collapsing")
    page = rep.to_html()
    section = page[page.index('id="verdict"'):page.index("<h2>Runs</h2>")]
    assert "group base (collapse-0, collapse-1)" in section
    assert "group fresh (stable-0, stable-1)" in section


def test_json_verdict_round_trips_through_json_dumps(store):
    for kw in ({"run_id": "collapse-0"}, {"run_id": "short-1"},
               {"run_ids": ["collapse-0", "collapse-1", "stable-0"]}):
        data = lw.DiversityReport.from_store(store, **kw).to_json()
        text = json.dumps(data, allow_nan=False)
        assert json.loads(text)["verdict"] == data["verdict"]


# ---------------------------------------------------------------------- escaping
def test_html_and_markdown_escape_model_text_and_names(tmp_path):
    with lw.WebStore(":memory:", embedder=SeededEmbedder()) as st:
        rid = "<script>alert('run')</script>"
        bad = "<script>alert(1)</script> shared <b>words</b> for all"
        for s in range(8):
            for a in ("<script>x</script>", "b", "c"):
                st.add_texts([bad if s >= 4 else f"{a} own {s} {i} <i>x</i>" for i in range(2)],
                             run_id=rid, agent=a, step=s, kind="response")
        rep = lw.DiversityReport.from_store(st, run_id=rid)
        page = rep.to_html()
        md = rep.to_markdown(tmp_path / "x.md")
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "<b>words" not in page and "<i>x" not in page
    assert "<script" not in md.lower() and "&lt;script&gt;" in md
    section = page[page.index('id="verdict"'):page.index("<h2>Runs</h2>")]
    assert "script alert 1" in section  # the shared words, as words
    assert "<td>&lt;script&gt;alert(&#x27;run&#x27;)&lt;/script&gt;</td>" in section  # run id


# ---------------------------------------------------------------------- never breaks a report
def test_a_failing_verdict_leaves_the_report_and_says_why(store, monkeypatch, tmp_path):
    from llmweb_plugin.report import verdict as verdict_module

    def boom(*args, **kwargs):
        raise RuntimeError("numerics exploded")

    monkeypatch.setattr(verdict_module, "collapse_verdict", boom)
    monkeypatch.setattr(verdict_module, "text_evidence", boom)
    rep = lw.DiversityReport.from_store(store, run_ids=["collapse-0", "collapse-1"])
    v = rep.verdict()
    assert v["verdict"] == "unavailable" and "numerics exploded" in v["sentence"]
    assert v["per_run"]["collapse-0"]["verdict"] == "unavailable"
    assert v["evidence"] == {"collapse-0": None, "collapse-1": None}
    md = rep.to_markdown(tmp_path / "u.md")
    assert "verdict unavailable: numerics exploded" in md and "not computed" in md
    assert len(rep.runs[0].per_step) == N_STEPS  # the rest of the report is all there


# ---------------------------------------------------------------------- `llmweb report`
@pytest.fixture(scope="module")
def web_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("web")
    with lw.WebStore(d, embedder=SeededEmbedder()) as st:
        _record(st, "c", converging)
    return d


def test_llmweb_report_prints_the_verdict_line(web_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--path", str(web_dir), "--run", "c", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    lines = _sections(cap.out, "verdict:")
    assert len(lines) == 1 and lines[0].startswith("verdict: collapsing: agents agree more")
    assert 'id="verdict"' in out.read_text()
    # JSON on stdout stays pure JSON; the verdict line goes to stderr
    assert main(["report", "--path", str(web_dir), "--run", "c", "--format", "json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["verdict"]["verdict"] == "collapsing"
    assert _sections(cap.err, "verdict: collapsing")


# ---------------------------------------------------------------------- one window rule
def test_first_last_ratio_uses_the_verdicts_window_rule():
    g = np.random.default_rng(3)
    for n in range(41):
        vals = list(g.uniform(0.2, 2.0, n))
        for j in g.choice(n, size=n // 5, replace=False) if n else []:
            vals[j] = None if j % 2 else math.nan
        r = first_last_ratio(vals)
        early, late, w = lw.window_means([np.nan if v is None else v for v in vals])
        assert r.window == w, n
        if w == 0:
            assert r.ratio is None and r.first_mean is None and r.last_mean is None
        else:
            assert r.first_mean == pytest.approx(early, rel=1e-12)
            assert r.last_mean == pytest.approx(late, rel=1e-12)
            assert r.ratio == pytest.approx(late / early, rel=1e-12)


def test_report_ratio_is_one_plus_the_norm_trends_relative_change(collapse_report):
    data = collapse_report.to_json()
    ratio = data["runs"][0]["norm_ratio"]
    norm = data["verdict"]["trends"]["norm"]
    assert ratio["window"] == norm["window"] == N_STEPS // 4
    assert ratio["ratio"] == pytest.approx(1 + norm["relative_change"], rel=1e-9, abs=1e-12)
