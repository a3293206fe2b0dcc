"""A report built from Python shows the settings ``llmweb run`` kept with the run (issue 10).

``llmweb run`` keeps its settings on the run's first seed record; before, only ``llmweb report``
read them, so ``DiversityReport.from_store`` (and ``from_monitor``) showed no settings at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import llmweb_plugin as lw
from llmweb_plugin.cli import main
from llmweb_plugin.cli.report import SETTINGS_KEY as CLI_KEY
from llmweb_plugin.report import DiversityReport
from llmweb_plugin.report.build import SETTINGS_KEY


def test_from_store_reads_the_settings_llmweb_run_kept(tmp_path: Path, capsys, embedder) -> None:
    out = tmp_path / "out"
    assert main(["run", "--fake", "--n-agents", "2", "-T", "3", "-L", "2", "--out", str(out),
                 "--run-id", "s", "--no-progress", "--no-report", "--beta", "0.75",
                 "--seed", "5"]) == 0
    assert CLI_KEY == SETTINGS_KEY  # the key the CLI writes is the key the report reads
    kept = json.loads((out / "s" / "settings.json").read_text())
    with lw.WebStore(out / "store", embedder=None) as store:
        given = DiversityReport.from_store(store, run_id="s").run("s").settings["given"]
        assert (given["beta"], given["seed"], given["n_steps"], given["n_agents"]) == \
            (0.75, 5, 3, 2)
        assert given == {k: v for k, v in kept.items() if v is not None}
        # settings given in Python win over the kept ones, key by key
        g2 = DiversityReport.from_store(store, run_id="s", settings={"beta": "shown", "m": 1},
                                        run_settings={"s": {"seed": 9}}).run("s").settings["given"]
        assert (g2["beta"], g2["m"], g2["seed"], g2["n_steps"]) == ("shown", 1, 9, 3)
        # a monitor's report of the run shows them too
        with lw.CollapseMonitor(store, run_id="s", embedder=embedder) as mon:
            g3 = DiversityReport.from_monitor(mon).run("s").settings["given"]
        assert g3 == given
    capsys.readouterr()
    # the CLI's report of the store alone shows the same settings
    rep = tmp_path / "rep.json"
    assert main(["report", "--path", str(out / "store"), "--run", "s", "--out", str(rep)]) == 0
    assert json.loads(rep.read_text())["runs"][0]["settings"]["given"] == given


def test_a_run_without_kept_settings_reports_only_what_is_given(store) -> None:
    store.add_seeds(["a seed"], run_id="r")
    for i, agent in enumerate(("a", "b")):
        store.add_texts([f"{agent} says {i}"], run_id="r", agent=agent, step=1, kind="response")
    given = DiversityReport.from_store(store, run_id="r", settings={"x": 1}).run("r")
    assert given.settings["given"] == {"x": 1}
