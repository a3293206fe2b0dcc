"""``llmweb run``: the paper's LLM-web experiment on local models, as one command.

Defaults: three local SmolLM2-135M agents with distinct personas and temperatures
(:func:`llmweb_plugin.models.local_agents`), the 20 shipped crypto seed posts, the paper's query
and ``beta = 0.5``, and a small ``L`` and ``T`` so it finishes in a few minutes on a laptop CPU
(``--paper`` for the paper's ``L = 40, T = 60``). The web runs as the LangGraph graph of
``llmweb_langgraph.create_web_graph`` with a SQLite checkpointer, into a Qdrant folder; at the end
it prints the metric table and writes a report.

Examples::

    llmweb run                                  # ~3-5 minutes on 2 CPU cores
    llmweb run --fake --steps 5                 # instant deterministic fake agents (smoke test)
    llmweb run --paper --agents a=langchain_openai:ChatOpenAI --agents b=my_pkg.models:claude
    llmweb run --resume web-20261201-101500-1a2b3c   # continue an interrupted run
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_RESPONSES", "DEFAULT_STEPS", "add_parser", "load_agent", "run_command"]

logger = logging.getLogger(__name__)

DEFAULT_RESPONSES = 4
DEFAULT_STEPS = 8
PAPER_RESPONSES = 40
PAPER_STEPS = 60
SETTINGS_FILE = "settings.json"


def add_parser(subparsers: Any) -> None:
    """Register ``run`` on the ``llmweb`` subparsers."""
    p = subparsers.add_parser(
        "run", help="run the paper's LLM-web experiment (local models by default)",
        description="Run the LLM web of Wang et al. (arXiv 2506.15690): n agents read a shared "
        "Qdrant web, answer the query L times per step, post their first answer back; the "
        "collapse metric ||D(t)||_F is tracked per step. Defaults: 3 local SmolLM2 agents, the "
        "20 shipped crypto posts, the paper's query and beta, small L and T.",
    )
    p.add_argument("--agents", action="append", metavar="NAME=MODULE:ATTR", default=None,
                   help="an agent by import path (repeat, or comma-separate): ATTR is a chat "
                   "model / runnable / graph / callable, or a zero-argument factory of one")
    p.add_argument("--fake", action="store_true",
                   help="instant deterministic fake agents (EchoAgent), for smoke tests")
    p.add_argument("--n-agents", type=int, default=3, metavar="N",
                   help="number of local (or fake) agents (default 3)")
    p.add_argument("--responses", "-L", type=int, default=None, metavar="L",
                   help=f"answers per agent per step (default {DEFAULT_RESPONSES}; paper 40)")
    p.add_argument("--steps", "-T", type=int, default=None, metavar="T",
                   help=f"number of steps (default {DEFAULT_STEPS}; paper 60)")
    p.add_argument("--paper", action="store_true",
                   help=f"the paper's scale: L={PAPER_RESPONSES}, T={PAPER_STEPS}")
    p.add_argument("--beta", type=float, default=0.5, help="retrieval fraction (default 0.5)")
    p.add_argument("--query", default=None, help="the query (default: the paper's)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    p.add_argument("--topology", default="full", choices=["full", "ring", "small_world"],
                   help="who reads whose posts (default full, the paper)")
    p.add_argument("--retrieval", default="uniform", choices=["uniform", "similarity"],
                   help="uniform sampling (the paper) or top-k by similarity to the query")
    p.add_argument("--max-new-tokens", type=int, default=48, metavar="N",
                   help="token budget per answer of the local models (default 48)")
    p.add_argument("--out", default="./llmweb-out", metavar="DIR",
                   help="folder for results and reports (default ./llmweb-out)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="the Qdrant folder (default <out>/store)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="the SQLite checkpoint file (default <out>/checkpoints.sqlite)")
    p.add_argument("--run-id", default=None, help="id of the new run (default: generated)")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="continue an interrupted run from its checkpoint (same --out)")
    p.add_argument("--max-concurrency", type=int, default=None, metavar="N",
                   help="agents run in parallel at most (default: all)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for the local models and the embedder (default: "
                   "torch's choice; 1 is much faster on a busy or oversubscribed CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(func=run_command)


# ---------------------------------------------------------------------- agents
def load_agent(spec: str) -> tuple[str, Any]:
    """``"name=module:attr"`` -> ``(name, object)``; a class or function attr is called once.

    Raises:
        ValueError: a malformed spec.
        ImportError: the module cannot be imported.
        LookupError: the module has no such attribute.
    """
    name, sep, path = spec.partition("=")
    mod_name, sep2, attr = path.partition(":")
    if not sep or not sep2 or not name.strip() or not mod_name or not attr:
        raise ValueError(f"--agents {spec!r}: expected NAME=MODULE:ATTR, e.g. "
                         "a=langchain_openai:ChatOpenAI")
    module = importlib.import_module(mod_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LookupError(f"--agents {spec!r}: {mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and _is_factory(obj)):
        obj = obj()
    return name.strip(), obj


def _is_factory(obj: Any) -> bool:
    """A plain function taking no required argument is a factory; a model object is not."""
    import inspect

    if not inspect.isfunction(obj):
        return False
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in sig.parameters.values())


def _build_agents(settings: Mapping[str, Any]) -> dict[str, Any]:
    if settings.get("agent_specs"):
        specs = [s for item in settings["agent_specs"] for s in item.split(",") if s.strip()]
        agents = dict(load_agent(s) for s in specs)
        if len(agents) != len(specs):
            raise ValueError("--agents names must be unique")
        return agents
    n = int(settings["n_agents"])
    if settings.get("fake"):
        from .agents import EchoAgent

        return {f"echo-{i + 1}": EchoAgent(f"echo-{i + 1}", seed=int(settings["seed"]))
                for i in range(n)}
    from .models import local_agents

    return dict(local_agents(n, seed=int(settings["seed"]),
                             max_new_tokens=int(settings["max_new_tokens"])))


# ---------------------------------------------------------------------- output
def _fmt(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


_COLUMNS = (("step", "step"), ("norm", "||D||_F"), ("normalized_norm", "norm/sqrt(n(n-1))"),
            ("within_spread", "within"), ("between_spread", "between"),
            ("mean_cosine_distance", "mean cos dist"))


def metric_table(history: Sequence[Mapping[str, Any]]) -> str:
    """The per-step metric table as Markdown."""
    head = "| " + " | ".join(h for _, h in _COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in _COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(h.get(k)) for k, _ in _COLUMNS) + " |" for h in history]
    return "\n".join([head, sep, *rows])


def _summary(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    raw = [h.get("norm") for h in history]
    norms = [float(x) for x in raw if x is not None and not math.isnan(float(x))]
    w = min(5, len(norms) // 2) or len(norms)
    first: float | None = sum(norms[:w]) / w if norms else None
    last: float | None = sum(norms[-w:]) / w if norms else None
    return {"window": w, "first_mean_norm": first, "last_mean_norm": last,
            "ratio_last_first": (last / first) if first and last is not None else None}


def _write_results(out_dir: Path, run_id: str, settings: Mapping[str, Any],
                   final: Mapping[str, Any], store: Any, *, report: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    history = list(final.get("history") or [])
    posts = list(final.get("posts") or [])
    summary = _summary(history)
    (out_dir / "results.json").write_text(json.dumps(
        {"run_id": run_id, "settings": dict(settings), "summary": summary, "history": history,
         "posts": posts}, indent=1, default=str), encoding="utf-8")
    md = [f"# llmweb run {run_id}", "", "Settings: " + ", ".join(
        f"{k}={v}" for k, v in settings.items() if k not in ("agent_specs",)), "",
        metric_table(history), ""]
    if summary["first_mean_norm"] is not None:
        md.append(f"Mean ||D||_F over the first {summary['window']} steps: "
                  f"{summary['first_mean_norm']:.4f}; last {summary['window']}: "
                  f"{summary['last_mean_norm']:.4f}.")
    (out_dir / "metrics.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    target = out_dir / "metrics.md"
    if report:
        try:
            from .report import DiversityReport
        except ImportError:
            logger.info("llmweb_plugin.report is not available; wrote the Markdown table only")
            return target
        try:
            rep = DiversityReport.from_store(
                store, run_id=run_id,
                settings={k: v for k, v in settings.items() if v is not None})
            path = out_dir / "report.html"
            rep.to_html(path)
            rep.to_json(out_dir / "report.json")
            target = path
        except ImportError as exc:  # matplotlib missing: keep the Markdown
            print(f"note: no HTML report ({exc})", file=sys.stderr)
    return target


# ---------------------------------------------------------------------- the command
def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from .dynamics import PAPER_QUERY

    L = args.responses if args.responses is not None else (
        PAPER_RESPONSES if args.paper else DEFAULT_RESPONSES)
    T = args.steps if args.steps is not None else (PAPER_STEPS if args.paper else DEFAULT_STEPS)
    if args.agents and args.fake:
        raise ValueError("--agents and --fake exclude each other")
    return {
        "agents": ("import paths" if args.agents else "fake EchoAgent" if args.fake
                   else "local SmolLM2-135M (llmweb_plugin.models.local_agents)"),
        "agent_specs": list(args.agents) if args.agents else None,
        "fake": bool(args.fake), "n_agents": int(args.n_agents),
        "responses_per_step": int(L), "n_steps": int(T), "beta": float(args.beta),
        "query": args.query or PAPER_QUERY, "seed": int(args.seed),
        "topology": args.topology, "retrieval": args.retrieval,
        "max_new_tokens": int(args.max_new_tokens), "seeds": "CRYPTO_SEEDS (20: 7+, 7=, 6-)",
    }


def run_command(args: argparse.Namespace) -> int:
    """Run (or resume) the experiment; print the table and where the report is."""
    from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: F401  (fail early, clearly)

    from .monitor import new_run_id

    out_root = Path(args.out)
    if args.resume:
        run_id = args.resume
        sfile = out_root / run_id / SETTINGS_FILE
        if not sfile.is_file():
            raise FileNotFoundError(f"no settings of run {run_id!r} at {sfile}; resume with the "
                                    "--out folder the run was started with")
        settings = json.loads(sfile.read_text(encoding="utf-8"))
    else:
        settings = _settings_from_args(args)
        if settings["n_agents"] < 1:
            raise ValueError("--n-agents must be >= 1")
        run_id = args.run_id or new_run_id("web")
    store_dir = Path(args.store) if args.store else out_root / "store"
    ckpt = Path(args.checkpoint) if args.checkpoint else out_root / "checkpoints.sqlite"
    run_dir = out_root / run_id
    if not args.resume and (run_dir / SETTINGS_FILE).exists():
        raise ValueError(f"run {run_id!r} already exists in {out_root}; use --resume "
                         f"{run_id} or another --run-id")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError("--threads must be >= 1")
    # Everything that can refuse the run happens before its settings are written, so a refused
    # run does not leave a folder that blocks its own run id.
    agents = _build_agents(settings)
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    if not args.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=1), encoding="utf-8")
    start = time.perf_counter()
    try:
        final = run_experiment(settings, run_id=run_id, store_dir=store_dir, checkpoint=ckpt,
                               agents=agents, resume=bool(args.resume),
                               progress=not args.no_progress,
                               max_concurrency=args.max_concurrency, report_dir=run_dir,
                               report=not args.no_report)
    except IncompleteRunError as exc:  # never a silent "success" with fewer steps
        print(f"llmweb run: error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    hist = final["history"]
    print()
    if final.get("resume_note"):
        print(final["resume_note"])
    print(metric_table(hist))
    s = _summary(hist)
    if s["first_mean_norm"] is not None:
        print(f"\nmean ||D||_F, first {s['window']} steps: {s['first_mean_norm']:.4f}; "
              f"last {s['window']}: {s['last_mean_norm']:.4f} "
              f"(ratio {s['ratio_last_first']:.3f})")
    print(f"run {run_id}: {len(final['posts'])} posts, {len(hist)} steps in {seconds:.1f} s")
    print(f"store: {store_dir}   checkpoint: {ckpt}")
    print(f"report: {final['report_path']}")
    return 0


def run_experiment(settings: Mapping[str, Any], *, run_id: str, store_dir: Path,
                   checkpoint: Path, agents: Mapping[str, Any] | None = None,
                   resume: bool = False, progress: bool = True,
                   max_concurrency: int | None = None, report_dir: Path | None = None,
                   report: bool = True) -> dict[str, Any]:
    """Build and run (or resume) the web graph; returns the final state plus ``report_path``.

    ``agents`` are the already built agents (default: built from ``settings``).
    """
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from llmweb_langgraph import create_web_graph

    from .store import WebStore

    if agents is None:
        agents = _build_agents(settings)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    store = WebStore(os.fspath(store_dir))
    conn = sqlite3.connect(os.fspath(checkpoint), check_same_thread=False)
    bar = None
    try:
        n_steps = int(settings["n_steps"])
        if progress:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_steps, initial=0, desc=f"llmweb {run_id}", unit="step",
                           file=sys.stderr)
            except ImportError:  # pragma: no cover - tqdm is in the [all] extra
                bar = None

        def on_step(m: Any) -> None:
            if bar is not None:
                bar.n = m.step
                bar.set_postfix(norm=f"{m.norm:.4f}")
                bar.refresh()

        graph = create_web_graph(
            agents, store=store, query=settings["query"], beta=settings["beta"],
            responses_per_step=int(settings["responses_per_step"]), n_steps=n_steps,
            retrieval=settings["retrieval"], topology=settings["topology"],
            run_id=run_id, rng=int(settings["seed"]), on_step=on_step,
        ).compile(checkpointer=SqliteSaver(conn))
        config: dict[str, Any] = {"configurable": {"thread_id": run_id},
                                  "recursion_limit": 3 * n_steps + 50}
        if max_concurrency:
            config["max_concurrency"] = int(max_concurrency)
        final, note = _start_or_resume(graph, config, store, run_id=run_id, n_steps=n_steps,
                                       checkpoint=checkpoint, resume=resume, bar=bar)
        final["resume_note"] = note
        final["report_path"] = None
        if report_dir is not None:
            final["report_path"] = str(_write_results(report_dir, run_id, settings, final, store,
                                                      report=report))
        return final
    finally:
        if bar is not None:
            bar.close()
        conn.close()
        store.close()


class IncompleteRunError(RuntimeError):
    """A run ended, or was resumed, with another number of finished steps than its ``n_steps``.

    ``llmweb run`` prints it as one line and exits 1; the run's results are not written.
    """


def _start_or_resume(graph: Any, config: dict[str, Any], store: Any, *, run_id: str,
                     n_steps: int, checkpoint: Path, resume: bool,
                     bar: Any = None) -> tuple[dict[str, Any], str | None]:
    """Run the web graph to the end of its run; returns ``(final state, what a resume did)``.

    "Finished" is the run's own count of finished steps (its ``history``) against ``n_steps``,
    never the checkpoint's ``next``: a kill between a task's saved writes and the next
    checkpoint leaves ``next`` empty although steps remain, and ``graph.invoke(None, config)``
    on that checkpoint applies the saved writes and runs the rest. A run killed before its
    first checkpoint holds no run state: it starts afresh (its seeds are rewritten under the
    same deterministic ids). A finished run is left as it is.

    Raises:
        LookupError: the checkpoint file holds nothing of the run but the store holds its
            posts or responses (a wrong ``--checkpoint``?).
        IncompleteRunError: the run ended with another number of steps than ``n_steps``.
    """
    note: str | None = None
    if not resume:
        final = graph.invoke({}, config)
    else:
        snap = graph.get_state(config)
        state = dict(snap.values or {})
        if not state.get("run_id"):
            n_old = store.count(run_id, kind=["post", "response"])
            if n_old and snap.metadata is None:
                raise LookupError(
                    f"no checkpoint of run {run_id!r} in {checkpoint}, yet the store holds "
                    f"{n_old} of its posts/responses; resume with the --checkpoint file the "
                    "run was started with")
            if n_old:
                # Checkpoints are saved in the background: the first step's agents can have
                # written before the run's first checkpoint landed. The fresh start rewrites
                # them; drop them so that start_run's guard against mixed runs holds.
                logger.warning("run %s: no checkpointed state but %d posts/responses in the "
                               "store; starting it afresh", run_id, n_old)
                store.delete_run(run_id)
            note = (f"run {run_id} had no saved state yet (stopped before its first "
                    "checkpoint): started it afresh with its saved settings")
            final = graph.invoke({}, config)
        else:
            done = len(state.get("history") or [])
            if bar is not None:
                bar.n = min(done, n_steps)
                bar.refresh()
            if done >= n_steps:
                note = f"run {run_id} had already finished its {done} steps: nothing to do"
                final = state
            else:
                note = f"resumed run {run_id} after {done} of {n_steps} finished steps"
                final = graph.invoke(None, config)
        logger.info("%s", note)
    final = dict(final)
    done = len(final.get("history") or [])
    if done != n_steps:
        n_posts = len(final.get("posts") or [])
        raise IncompleteRunError(
            f"run {run_id!r} ended after {done} of {n_steps} steps ({n_posts} posts) and its "
            f"checkpoint in {checkpoint} has nothing left to run, so it cannot finish; were its "
            "settings changed after it started? Its results were not written."
            if done < n_steps else
            f"run {run_id!r} holds {done} finished steps in its checkpoint {checkpoint} but its "
            f"settings ask for {n_steps}; were its settings changed after it started? Its "
            "results were not written.")
    return final, note
