"""``llmweb experiment``: run the same web with and without each mitigation, over replicates.

Examples::

    llmweb experiment --proxy gmm --replicates 20 --out out/exp-gmm
    llmweb experiment --proxy gmm --preset fig6 --steps 100 --out out/exp-gmm-fig6
    llmweb experiment --proxy web --fake --replicates 3 --steps 6 --out out/exp-web-fake
    llmweb experiment --proxy web --replicates 2 -T 3 --n-agents 3 -L 3 --out out/exp-web

Writes ``experiment.json``, ``experiment.md`` (effect-size tables) and ``experiment.png``
(trajectories with +-1 s.d. bands per arm); the web proxy also writes an HTML diversity report
of all runs (``report.html``) unless ``--no-report``. Arms: ``none``, ``injection``,
``variation``, ``human`` (``--arms`` picks some); on the GMM proxy variation and human sampling
are analogues (see :mod:`llmweb_plugin.experiments`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from ._options import Default, add_common_options, check_common

logger = logging.getLogger(__name__)

_ARMS = ("none", "injection", "variation", "human")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``experiment`` on the ``llmweb`` parser's subparsers."""
    p = subparsers.add_parser(
        "experiment",
        help="measure mitigations: the same web with and without each, over seeds",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--proxy", choices=("gmm", "web"), default="gmm",
                   help="gmm: the Gaussian-mixture proxy (fast, many replicates); web: the LLM "
                   "web (default: %(default)s)")
    p.add_argument("--fake", action="store_true",
                   help="web proxy: instant deterministic EchoAgents instead of the local model")
    add_common_options(
        p, replicates=Default(shown="gmm 20, web 3", note="replicate i runs with seed i"),
        steps=Default(shown="gmm 200, web 6"),
        n_agents=Default(value=3, note="web proxy"),
        responses=Default(value=4, note="web proxy"),
        beta=Default(value=0.5, note="web proxy"),
        deprecated={"--seeds": "replicates", "--agents": "n_agents"})
    p.add_argument("--out", default="llmweb-experiment",
                   help="output folder (default: %(default)s)")
    p.add_argument("--arms", default=",".join(_ARMS),
                   help=f"comma-separated arms among {', '.join(_ARMS)}; the first is the "
                   "baseline (default: %(default)s)")
    p.add_argument("--window", type=int, default=None,
                   help="last steps averaged for the effect sizes (default: gmm T/10, web T/3)")
    # GMM proxy
    p.add_argument("--preset", choices=("fig4", "fig6"), default="fig4",
                   help="gmm: Fig. 4 (B=2 at +-5) or Fig. 6 (B=11 overlapping) setting "
                   "(default: %(default)s)")
    p.add_argument("--injection", type=int, default=9,
                   help="gmm: external points per step (default: %(default)s = n L)")
    p.add_argument("--variation", type=float, default=0.5,
                   help="gmm: prompt-variation analogue strength in [0, 1] "
                   "(default: %(default)s)")
    p.add_argument("--human-rate", type=float, default=0.5,
                   help="human sampling rate in [0, 1] (both proxies) (default: %(default)s)")
    # web proxy
    p.add_argument("--max-new-tokens", type=int, default=40,
                   help="web (local model): token budget per answer (default: %(default)s)")
    p.add_argument("--external", default=None,
                   help="web: a UTF-8 file, one external document per line (default: the "
                   "built-in demo posts)")
    p.add_argument("--store", default=None,
                   help="web: a folder for the Qdrant store (default: in memory)")
    p.add_argument("--no-report", action="store_true", help="web: skip the HTML report")
    p.set_defaults(func=run)
    return p


def _arms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in _ARMS]
    if bad or not names:
        raise ValueError(f"--arms must be some of {', '.join(_ARMS)}; got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    """Run the experiment described by ``args``; prints the Markdown summary."""
    check_common(args)
    names = _arms(args.arms)
    if args.window is not None and args.window < 1:
        raise ValueError(f"--window must be >= 1; got {args.window}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1; got {args.max_new_tokens}")
    out = Path(args.out)
    if args.proxy == "gmm":
        res = _run_gmm(args, names)
    else:
        res = _run_web(args, names, out)
    paths = res.save(out)
    print(res.to_markdown())
    print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _run_gmm(args: argparse.Namespace, names: list[str]) -> Any:
    from ..experiments import default_gmm_arms, run_gmm_experiment
    from ..proxies import InteractingGMMWeb
    from ..proxies.presets import FIG6_MEANS

    seeds = 20 if args.replicates is None else args.replicates
    steps = 200 if args.steps is None else args.steps
    web = InteractingGMMWeb(n_steps=steps)  # the paper's Fig. 4 setting
    if args.preset == "fig6":
        web = dataclasses.replace(web, means=FIG6_MEANS)  # as the lwd-fig6 preset
    arms = default_gmm_arms(injection=args.injection, variation=args.variation,
                            human_rate=args.human_rate)
    return run_gmm_experiment({a: arms[a] for a in names}, web=web, seeds=range(seeds),
                              window=args.window)


def _run_web(args: argparse.Namespace, names: list[str], out: Path) -> Any:
    from ..experiments import default_web_arms, run_web_experiment
    from ..store import WebStore

    seeds = 3 if args.replicates is None else args.replicates
    steps = 6 if args.steps is None else args.steps
    if args.external is not None and not Path(args.external).is_file():
        raise FileNotFoundError(f"--external {args.external!r} is not a file")
    out.mkdir(parents=True, exist_ok=True)
    arms, notes = default_web_arms(args.n_agents, review_dir=out / "review",
                                   external=args.external, human_rate=args.human_rate)
    (out / "review").mkdir(parents=True, exist_ok=True)
    if args.fake:
        from ..web import EchoAgent

        def agents_factory(seed: int) -> dict[str, Any]:
            return {f"agent{i}": EchoAgent(f"agent{i}", seed=seed)
                    for i in range(args.n_agents)}
        model_note = "EchoAgent (fake, deterministic)"
    else:
        from ..web.models import local_agents

        def agents_factory(seed: int) -> dict[str, Any]:
            return local_agents(args.n_agents, seed=seed, max_new_tokens=args.max_new_tokens)
        model_note = "local SmolLM2 (llmweb_plugin.web.models.local_agents)"
    store = WebStore(args.store) if args.store else WebStore(":memory:")
    try:
        def progress(arm: str, seed: int, result: Any) -> None:
            print(f"  {arm} seed {seed}: done", file=sys.stderr, flush=True)

        res = run_web_experiment(
            agents_factory, {a: arms[a] for a in names}, store=store, seeds=range(seeds),
            n_steps=steps, responses_per_step=args.responses, beta=args.beta,
            window=args.window, overwrite=True, on_run=progress,
            arm_notes={a: notes[a] for a in names},
        )
        res = dataclasses.replace(res, settings={**res.settings, "agents": model_note})
        if not args.no_report:
            _web_report(store, res, out)
    finally:
        store.close()
    return res


def _web_report(store: Any, res: Any, out: Path) -> None:
    try:
        from ..report import DiversityReport

        rep = DiversityReport.from_store(
            store, run_ids=[r for a in res.arms for r in res.run_ids[a]],
            groups={a: list(res.run_ids[a]) for a in res.arms},
            title="llmweb mitigation experiment",
        )
        rep.to_html(out / "report.html")
        print(f"report: {out / 'report.html'}", file=sys.stderr)
    except ImportError as exc:
        logger.warning("llmweb experiment: no HTML report (%s)", exc)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience entry point
    parser = argparse.ArgumentParser(prog="llmweb-experiment")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["experiment", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))

