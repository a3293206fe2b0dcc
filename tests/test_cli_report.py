"""``llmweb runs`` and ``llmweb report`` on a real Qdrant folder: output, numbers and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.cli import main
from llmweb_plugin.report import DiversityReport

TEXTS = {
    "alice": ["bitcoin will reach new highs", "crypto adoption keeps growing", "buy the dip"],
    "bob": ["regulators threaten bitcoin", "bitcoin is too volatile", "a crash looms"],
}


@pytest.fixture(scope="module")
def web_dir(embedder, tmp_path_factory) -> Path:
    """A Qdrant folder with a two-agent run, a one-agent run and a seeds-only run."""
    folder = tmp_path_factory.mktemp("cli") / "web"
    recs = []
    for run, agents in (("r1", ("alice", "bob")), ("solo", ("alice",))):
        for t in (1, 2, 3):
            for a in agents:
                for i, text in enumerate(TEXTS[a]):
                    text = text if t < 3 else f"bitcoin is uncertain {i}"
                    recs.append(lw.Record(text=f"{text} <b>|</b>", run_id=run, agent=a, step=t,
                                          index=i))
    recs.append(lw.Record(text="a seed", run_id="seeds", agent="seed", step=0, kind="seed"))
    with lw.WebStore(folder, embedder=embedder) as store:
        store.upsert(recs, vectors=embedder.embed([r.text for r in recs]))
    return folder


def test_runs_lists_every_run_with_norms(web_dir: Path, embedder, capsys) -> None:
    assert main(["runs", "--path", str(web_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["collection"] == "llmweb__all-MiniLM-L6-v2"
    rows = {r["run_id"]: r for r in data["runs"]}
    assert sorted(rows) == ["r1", "seeds", "solo"]
    assert rows["r1"]["agents"] == ["alice", "bob"] and rows["r1"]["steps"] == 3
    assert rows["r1"]["records"] == 18 and rows["r1"]["responses"] == 18
    assert rows["solo"]["first_norm"] is None and rows["seeds"]["first_step"] is None
    with lw.WebStore(web_dir, embedder=embedder) as store:
        rep = DiversityReport.from_store(store, run_id="r1").to_json()["runs"][0]
    assert rows["r1"]["first_norm"] == pytest.approx(rep["per_step"][0]["norm"], rel=1e-12)
    assert rows["r1"]["last_norm"] == pytest.approx(rep["per_step"][-1]["norm"], rel=1e-12)

    assert main(["runs", "--path", str(web_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "collection llmweb__all-MiniLM-L6-v2: 3 run(s)"
    assert lines[1].split() == ["run", "agents", "steps", "records", "responses", "first", "norm",
                                "last", "norm"]
    r1 = next(line for line in lines if line.startswith("r1 "))
    assert "2 (alice, bob)" in r1 and "1-3 (3)" in r1 and f"{rows['r1']['first_norm']:.4g}" in r1


def test_report_json_html_md(web_dir: Path, embedder, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": "SmolLM2-135M", "beta": 0.5}))
    assert main(["report", "--path", str(web_dir), "--run", "r1", "--format", "json",
                 "--out", str(out), "--settings", str(settings)]) == 0
    data = json.loads(out.read_text())
    with lw.WebStore(web_dir, embedder=embedder) as store:
        direct = DiversityReport.from_store(store, run_id="r1").to_json()
    assert data["runs"][0]["per_step"] == direct["runs"][0]["per_step"]
    assert data["runs"][0]["settings"]["given"] == {"model": "SmolLM2-135M", "beta": 0.5}
    # JSON to stdout when no --out
    assert main(["report", "--path", str(web_dir), "--run", "r1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "llmweb.report/1"
    # format from the suffix; two runs compared in one page
    html = tmp_path / "cmp.html"
    assert main(["report", "--path", str(web_dir), "--run", "r1", "--run", "solo",
                 "--out", str(html), "--title", "r1 vs solo"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {html}" in err and "one agent" in err
    page = html.read_text()
    assert "<title>r1 vs solo</title>" in page and "Content-Security-Policy" in page
    assert "&lt;b&gt;|&lt;/b&gt;" in page and "<b>|" not in page
    md = tmp_path / "rep.md"
    assert main(["report", "--path", str(web_dir), "--run", "r1", "--out", str(md)]) == 0
    assert "![norm](rep_files/norm.png)" in md.read_text()
    assert (tmp_path / "rep_files" / "mds-1.png").is_file()


def test_one_agent_run_warns_and_still_reports(web_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "solo.json"
    assert main(["report", "--path", str(web_dir), "--run", "solo", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: run 'solo' has one agent ('alice')" in err and "undefined" in err
    run = json.loads(out.read_text())["runs"][0]
    assert [s["norm"] for s in run["per_step"]] == [None, None, None]
    assert all(s["mean_cosine_distance"] > 0 for s in run["per_step"][:2])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run", "nope"], ("error: run 'nope' not found in collection "
                             "'llmweb__all-MiniLM-L6-v2' (runs there: 'r1', 'seeds', 'solo')")),
        (["--run", "seeds"], "error: run 'seeds' is empty for this report: it has no response"),
        (["--run", "r1", "--collection", "other"],
         "error: collection 'other' not found in folder"),
        (["--run", "r1", "--group", "oops"], "--group 'oops': write NAME=RUN1,RUN2"),
        (["--run", "r1", "--group", "g=r1,zz"], "group 'g' names runs ['zz'] that are not"),
    ],
)
def test_report_errors_are_clear(web_dir: Path, capsys, argv, message) -> None:
    assert main(["report", "--path", str(web_dir), "--format", "json", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_missing_folder_and_empty_folder(tmp_path: Path, capsys) -> None:
    assert main(["report", "--path", str(tmp_path / "nowhere"), "--run", "r1"]) == 2
    assert "no Qdrant folder at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # nothing created
    (tmp_path / "empty").mkdir()
    assert main(["runs", "--path", str(tmp_path / "empty")]) == 2
    assert "no Qdrant store in" in capsys.readouterr().err
    assert not any((tmp_path / "empty").iterdir())  # no meta.json, no .lock
    (tmp_path / "empty" / "meta.json").write_text('{"collections": {}, "aliases": {}}')
    assert main(["runs", "--path", str(tmp_path / "empty")]) == 2
    assert "no llmweb collections in folder" in capsys.readouterr().err


def test_locked_folder_is_a_clear_error(web_dir: Path, embedder, capsys) -> None:
    with lw.WebStore(web_dir, embedder=embedder):
        assert main(["runs", "--path", str(web_dir)]) == 2
    assert "is open in another process" in capsys.readouterr().err
    assert main(["runs", "--path", str(web_dir), "--json"]) == 0  # released again


def test_several_collections_need_a_name(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "two"
    for name in ("llmweb__a", "llmweb__b"):
        with lw.WebStore(folder, embedder=None, dim=2, collection=name) as s:
            s.upsert([lw.Record(text="x", run_id=name, agent="a", step=1,
                                vector=np.array([1.0, 0.0]))])
    assert main(["runs", "--path", str(folder)]) == 2
    assert "several llmweb collections" in capsys.readouterr().err
    assert main(["runs", "--path", str(folder), "--collection", "llmweb__b", "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["llmweb__b"]
