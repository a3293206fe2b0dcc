"""05: mitigations as measured experiments, on the GMM proxy and on an LLM web graph.

Part 1 runs the interacting Gaussian-mixture proxy with and without each mitigation over several
replicates (external data injected into A, and the analogues of prompt variation and human sampling)
and prints the effect sizes on ||D(t)||_F at the last steps, including the arms that do not
help. Part 2 puts the three mitigation hooks into a checkpointed ``create_web_graph`` web (fake
``EchoAgent`` agents by default, ``--local`` for SmolLM2) and shows what they wrote: external
documents, varied prompts, sampled posts and their human replacements, and the synthetic
fraction of the web per step.

For the full comparison with plots, use the CLI: ``llmweb experiment --proxy gmm --replicates 20``
and ``llmweb experiment --proxy web --fake``.

Run: HF_HUB_OFFLINE=1 python examples/05_mitigation_experiment.py [--local] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import tempfile
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from llmweb_langgraph import create_web_graph

import llmweb_plugin as lw
from llmweb_plugin.experiments import (
    DEMO_EXTERNAL_POSTS,
    DEMO_HUMAN_POSTS,
    DEMO_PERSONAS,
    default_gmm_arms,
    run_gmm_experiment,
)
from llmweb_plugin.proxies import InteractingGMMWeb
from llmweb_plugin.web import EchoAgent
from llmweb_plugin.web.mitigations import (
    ExternalInjection,
    HumanSampling,
    JsonlSink,
    PromptVariation,
)


def gmm_part(out: Path) -> None:
    web = InteractingGMMWeb(n_steps=60)  # the paper's Fig. 4 setting, shortened
    fig6 = dataclasses.replace(web, means=tuple((float(x),) for x in range(-5, 6)))
    for name, setting in (("fig4", web), ("fig6", fig6)):
        res = run_gmm_experiment(default_gmm_arms(), web=setting, seeds=range(8), window=6)
        paths = res.save(out / f"gmm-{name}", plot=True)
        print(f"\n== GMM proxy, {name} setting, 8 seeds, T = 60 ({paths['plot']})")
        for arm, e in res.effects.items():
            d = "n/a" if e.cohens_d is None else f"{e.cohens_d:+.2f}"
            print(f"  {arm:10s} ||D|| {e.mean_arm:.4f} vs {e.mean_baseline:.4f}: diff "
                  f"{e.diff:+.4f} [{e.ci_low:+.4f}, {e.ci_high:+.4f}], d = {d} ({e.verdict})")


def web_part(out: Path, local: bool) -> None:
    if local:
        from llmweb_plugin.web.models import local_agents

        agents = local_agents(3, seed=0, max_new_tokens=40)
        L, T = 2, 3
    else:
        agents = {f"agent{i}": EchoAgent(f"agent{i}") for i in range(3)}
        L, T = 3, 4
    store = lw.WebStore(":memory:")
    review, ckpt = out / "review.jsonl", out / "checkpoints.sqlite"
    for old in (review, ckpt):  # a fresh run each time the example is run
        if old.exists():
            old.unlink()
    hooks = [
        PromptVariation(personas=DEMO_PERSONAS, temperature_schedule=[0.6, 0.9, 1.2]),
        ExternalInjection(DEMO_EXTERNAL_POSTS, max_synthetic_fraction=0.2),
        HumanSampling(1 / 3, sink=JsonlSink(review),
                      reviewer=lambda item: DEMO_HUMAN_POSTS[item.seq % len(DEMO_HUMAN_POSTS)]),
    ]
    conn = sqlite3.connect(ckpt, check_same_thread=False)
    graph = create_web_graph(agents, store=store, responses_per_step=L, n_steps=T, rng=0,
                             run_id="mitigated", mitigations=hooks)
    app = graph.compile(checkpointer=SqliteSaver(conn))
    final = app.invoke({}, {"configurable": {"thread_id": "mitigated"}})
    print(f"\n== LLM web with the three hooks ({'SmolLM2' if local else 'EchoAgent'} agents)")
    for h in final["history"]:
        ex = h["extras"]
        print(f"  step {h['step']}: ||D|| {h['norm']:.3f}  web {ex['web_size']:3d}  synthetic "
              f"{ex['synthetic_fraction']:.3f}  injected {ex.get('injected')}  sampled "
              f"{ex.get('sampled')}  human {ex.get('n_human')}")
    rec = store.records("mitigated", kind="response")[0]
    print(f"  a response's metadata: persona={rec.metadata['persona']!r}, "
          f"temperature={rec.metadata['temperature']}")
    human = store.records("mitigated", kind="human")
    if human:
        print(f"  a human replacement: {human[0].text!r} (review_of {human[0].metadata['review_of']})")
    print(f"  review queue: {review}")
    conn.close()
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local", action="store_true", help="real local SmolLM2 agents")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="llmweb-ex05-"))
    out.mkdir(parents=True, exist_ok=True)
    gmm_part(out)
    web_part(out, args.local)


if __name__ == "__main__":
    main()
