"""A diversity report of a small synthetic multi-agent run, with and without a mitigation.

Three agents answer the same question for 8 steps, 6 times each. Their answers drift toward a
shared consensus (the collapse the paper describes); with the mitigation, fresh external documents
are injected every step and the drift is weaker. Two replicates of each condition are recorded through a
``CollapseMonitor`` with the real offline embedder (all-MiniLM-L6-v2) into one Qdrant folder, and
a comparison report is written as HTML, Markdown and JSON. If Debian's ``chromium`` is installed,
a screenshot of the HTML page is taken too.

Run:  python examples/04_diversity_report.py [--out DIR]
Then: llmweb runs --path DIR/web ; llmweb report --path DIR/web --run baseline-0 --out r.html
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

import llmweb_plugin as lw
from llmweb_plugin.report import DiversityReport

OWN = {
    "optimist": ["Bitcoin will reach new all-time highs", "institutional money keeps flowing in",
                 "adoption by payment firms will lift the price", "the halving cuts supply"],
    "skeptic": ["regulators will clamp down on crypto", "Bitcoin is a speculative bubble",
                "energy costs make mining unsustainable", "a crash like 2018 is coming"],
    "analyst": ["volatility will stay high for years", "ETF flows drive the short-term price",
                "Bitcoin behaves like a risk asset", "correlation with stocks is rising"],
}
CONSENSUS = ["Bitcoin's future is uncertain but promising",
             "Bitcoin's future remains uncertain yet promising"]
TAILS = ["", " in the coming years", ", many believe", " according to analysts", " overall"]
FRESH = [f"Fresh report {i}: {t}" for i, t in enumerate(
    ["miners diversify into AI hosting", "a central bank pilots a digital currency",
     "lightning network payments double", "a major exchange faces a lawsuit",
     "developers propose a new scripting upgrade", "retail interest falls to a two-year low",
     "a country adds bitcoin to its reserves", "fees spike during an ordinals craze"])]


def simulate(mon: lw.CollapseMonitor, *, steps: int, L: int, drift: float, inject: bool,
             rng: np.random.Generator) -> None:
    """Answers pick the consensus with a probability growing with the step (times ``drift``)."""
    for t in range(1, steps + 1):
        p = drift * (t - 1) / (steps - 1)
        for agent, own in OWN.items():
            texts = []
            for _ in range(L):
                pool = CONSENSUS if rng.random() < p else own
                texts.append(pool[rng.integers(len(pool))] + TAILS[rng.integers(len(TAILS))] + ".")
            for i, text in enumerate(texts):
                mon.record(text, agent=agent, step=t, index=i,
                           metadata={"context_size": 10 + 2 * t, "query": "Bitcoin's future?"})
            mon.record(texts[0], agent=agent, step=t, kind="post")
            mon.record_usage(agent, input_tokens=40 * L, output_tokens=12 * L)
        if inject:
            doc = FRESH[(t - 1) % len(FRESH)]
            mon.record(doc, agent="newswire", step=t, kind="external",
                       metadata={"mitigation": "external_injection"})
            mon.log_event("mitigation", step=t, injected=1, name="external_injection")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: $LLMWEB_EXAMPLE_OUT/04_diversity_report, else a "
                    "temp dir)")
    args = ap.parse_args()
    env_out = os.environ.get("LLMWEB_EXAMPLE_OUT")
    out = args.out or (Path(env_out) / "04_diversity_report" if env_out
                       else Path(tempfile.mkdtemp(prefix="llmweb-04-")))
    out.mkdir(parents=True, exist_ok=True)
    web = out / "web"
    if web.exists():
        shutil.rmtree(web)

    conditions = {"baseline": (1.0, False), "injection": (0.45, True)}
    with lw.WebStore(web) as store:
        mons = []
        for name, (drift, inject) in conditions.items():
            for rep_i in range(2):  # two replicates per condition: a mean +- s.d. band each
                mon = lw.CollapseMonitor(store, run_id=f"{name}-{rep_i}", alarm_fraction=0.5,
                                         baseline_steps=2)
                simulate(mon, steps=8, L=6, drift=drift, inject=inject,
                         rng=np.random.default_rng(rep_i))
                mon.flush()
                mons.append(mon)
        rep = DiversityReport.from_monitor(
            mons, settings={"agents": "synthetic (template answers)", "L": 6, "T": 8},
            groups={name: [f"{name}-0", f"{name}-1"] for name in conditions},
            title="Synthetic web: baseline vs. external injection (2 replicates each)")
        for mon in mons:
            mon.close()

    html, md, js = out / "report.html", out / "report.md", out / "report.json"
    rep.to_html(html)
    rep.to_markdown(md)
    data = rep.to_json(js)
    for run in data["runs"]:
        norms = [s["norm"] for s in run["per_step"]]
        print(f"{run['run_id']:>12}: ||D(t)||_F {norms[0]:.3f} -> {norms[-1]:.3f}, "
              f"alarms at steps {[a['step'] for a in run['alarms']]}")
    print(f"wrote {html}, {md} (+ {md.stem}_files/), {js}")

    chromium = shutil.which("chromium") or ("/usr/bin/chromium"
                                            if Path("/usr/bin/chromium").exists() else None)
    if chromium:
        shot = out / "report.png"
        with tempfile.TemporaryDirectory(prefix="llmweb-chromium-") as profile:
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 f"--screenshot={shot}", "--window-size=1280,2000", html.resolve().as_uri()],
                check=True, capture_output=True, timeout=180)
        print(f"screenshot: {shot}")
    else:
        print("chromium not found: no screenshot (apt-get install -y chromium)")


if __name__ == "__main__":
    main()
