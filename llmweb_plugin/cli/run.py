"""``llmweb run``: the paper's LLM-web experiment on local models, as one command.

Defaults: three local SmolLM2-135M agents with distinct personas and temperatures
(:func:`llmweb_plugin.web.models.local_agents`), the 20 shipped crypto seed posts, the paper's query
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

from ._options import Default, add_api_key_option, add_common_options, check_common

__all__ = ["DEFAULT_RESPONSES", "DEFAULT_STEPS", "add_parser", "load_agent", "run_command"]

logger = logging.getLogger(__name__)

DEFAULT_RESPONSES = 4
DEFAULT_STEPS = 8
PAPER_RESPONSES = 40
PAPER_STEPS = 60
SETTINGS_FILE = "settings.json"
#: defaults of the options that make a run's settings (a resumed run keeps its own)
_DEFAULTS: dict[str, Any] = {"n_agents": 3, "beta": 0.5, "seed": 0, "topology": "full",
                             "retrieval": "uniform", "max_new_tokens": 40}


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
                   help="an agent by import path (repeat, or comma-separate; at least two): ATTR "
                   "is a chat model / runnable / graph / callable, or a zero-argument factory of "
                   "one (default: local SmolLM2 agents)")
    p.add_argument("--fake", action="store_true",
                   help="instant deterministic fake agents (EchoAgent), for smoke tests")
    add_common_options(
        p, n_agents=Default(value=_DEFAULTS["n_agents"], note="local or fake agents"),
        responses=Default(value=None, shown=f"{DEFAULT_RESPONSES}; paper {PAPER_RESPONSES}"),
        steps=Default(value=None, shown=f"{DEFAULT_STEPS}; paper {PAPER_STEPS}"),
        beta=_DEFAULTS["beta"], seed=_DEFAULTS["seed"])
    p.add_argument("--paper", action="store_true",
                   help=f"the paper's scale: L={PAPER_RESPONSES}, T={PAPER_STEPS}")
    p.add_argument("--query", default=None, help="the query (default: the paper's)")
    p.add_argument("--topology", default=_DEFAULTS["topology"],
                   choices=["full", "ring", "small_world"],
                   help="who reads whose posts (default: %(default)s, the paper)")
    p.add_argument("--retrieval", default=_DEFAULTS["retrieval"],
                   choices=["uniform", "similarity"],
                   help="uniform sampling (the paper) or top-k by similarity to the query "
                   "(default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=_DEFAULTS["max_new_tokens"],
                   metavar="N",
                   help="token budget per answer of the local models (default: %(default)s)")
    p.add_argument("--out", default="./llmweb-out", metavar="DIR",
                   help="folder for results and reports (default: %(default)s)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", default=None, metavar="DIR",
                       help="the Qdrant folder (default: <out>/store)")
    where.add_argument("--url", default=None, metavar="URL",
                       help="a Qdrant server instead of a folder, e.g. http://localhost:6333 "
                       "(default: a folder, see --store)")
    add_api_key_option(p)
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="the SQLite checkpoint file (default: <out>/checkpoints.sqlite)")
    p.add_argument("--run-id", default=None, help="id of the new run (default: generated)")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="continue an interrupted run from its checkpoint (same --out; its "
                   "settings come from <out>/RUN_ID/settings.json) (default: a new run)")
    p.add_argument("--max-concurrency", type=int, default=None, metavar="N",
                   help="agents run in parallel at most (default: all)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads for the local models and the embedder (default: "
                   "%(default)s: measured 2-4x faster than torch's one per core on a shared "
                   "2-core CPU; more may pay on a quiet machine with more cores)")
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
        from ..web import EchoAgent

        return {f"echo-{i + 1}": EchoAgent(f"echo-{i + 1}", seed=int(settings["seed"]))
                for i in range(n)}
    from ..web.models import local_agents

    return dict(local_agents(n, seed=int(settings["seed"]),
                             max_new_tokens=int(settings["max_new_tokens"])))


# ---------------------------------------------------------------------- output
def _fmt(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


# Markdown table cells must not hold a bare "|": the norm column is "norm" (||D(t)||_F,
# explained under the table), the normalised one "normalised" (norm / sqrt(n(n-1))).
_COLUMNS = (("step", "step"), ("norm", "norm"), ("normalized_norm", "normalised"),
            ("within_spread", "within"), ("between_spread", "between"),
            ("mean_cosine_distance", "mean cos dist"))
TABLE_LEGEND = ("norm: the collapse metric \\|\\|D(t)\\|\\|_F (Frobenius norm of the distance "
                "matrix between the agents' mean answers); normalised: norm / sqrt(n(n-1)); "
                "within / between: spread within and between agents.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metric_table(history: Sequence[Mapping[str, Any]]) -> str:
    """The per-step metric table as Markdown (no cell holds an unescaped ``|``)."""
    head = "| " + " | ".join(_cell(h) for _, h in _COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in _COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(_fmt(h.get(k))) for k, _ in _COLUMNS) + " |"
            for h in history]
    return "\n".join([head, sep, *rows])


def _summary(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """First-vs-last norm summary by the report's own rule (:func:`first_last_ratio`)."""
    from ..report import RATIO_RULE, first_last_ratio

    r = first_last_ratio([h.get("norm") for h in history])
    return {"window": r.window, "first_mean_norm": r.first_mean, "last_mean_norm": r.last_mean,
            "ratio_last_first": r.ratio, "rule": RATIO_RULE, "text": r.describe()}


def _write_results(out_dir: Path, run_id: str, settings: Mapping[str, Any],
                   final: Mapping[str, Any], store: Any, *,
                   report: bool) -> tuple[Path, dict[str, Any]]:
    """Write results.json, metrics.md and (unless ``report`` is false) report.html/.json.

    Returns the main file written and the run's verdict. The verdict comes from the same report
    data that report.html/report.json show, so the terminal's ``verdict:`` line and the report
    can never disagree; it is computed with or without ``--no-report``.
    """
    from ..report import DiversityReport

    out_dir.mkdir(parents=True, exist_ok=True)
    history = list(final.get("history") or [])
    posts = list(final.get("posts") or [])
    summary = _summary(history)
    try:  # the settings travel with the run, so a report from the store alone shows them
        from .report import save_run_settings

        if not save_run_settings(store, run_id, settings):
            logger.warning("run %s has no seed record to keep its settings on", run_id)
    except Exception as exc:  # noqa: BLE001 - results are written; this copy is a convenience
        logger.warning("could not keep the settings of run %s in the store: %s", run_id, exc)
    rep = DiversityReport.from_store(
        store, run_id=run_id, settings={k: v for k, v in settings.items() if v is not None})
    verdict = rep.verdict()
    (out_dir / "results.json").write_text(json.dumps(
        {"run_id": run_id, "settings": dict(settings), "summary": summary, "verdict": verdict,
         "history": history, "posts": posts}, indent=1, default=str), encoding="utf-8")
    md = [f"# llmweb run {run_id}", "", "Settings: " + ", ".join(
        f"{k}={v}" for k, v in settings.items() if k not in ("agent_specs",)), "",
        metric_table(history), ""]
    md += [TABLE_LEGEND, "", f"First vs last: {summary['text']} ({summary['rule']}).", "",
           *verdict_lines(verdict)]
    (out_dir / "metrics.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    target = out_dir / "metrics.md"
    if report:
        try:
            path = out_dir / "report.html"
            rep.to_html(path)
            rep.to_json(out_dir / "report.json")
            target = path
        except ImportError as exc:  # matplotlib missing: keep the Markdown
            print(f"note: no HTML report ({exc})", file=sys.stderr)
    return target, verdict


def verdict_lines(verdict: Mapping[str, Any]) -> list[str]:
    """The terminal's closing lines: ``verdict: ...`` and, when there is text evidence, what
    the agents' posts share at the first and last step."""
    lines = [f"verdict: {verdict.get('sentence') or verdict.get('verdict', 'unavailable')}"]
    evidence = next(iter((verdict.get("evidence") or {}).values()), None)
    for when in ("first", "last"):
        ev = (evidence or {}).get(when) if isinstance(evidence, Mapping) else None
        if not isinstance(ev, Mapping):
            continue
        near = ev.get("near_duplicates") or {}
        grams = [g.get("ngram") if isinstance(g, Mapping) else g
                 for g in (ev.get("shared") or [])[:3]]
        share = near.get("share")
        share_txt = "n/a" if share is None else f"{100 * float(share):.0f}%"
        lines.append(f"  {when} step {ev.get('step')}: {share_txt} of answers near-duplicate "
                     f"another agent's; shared phrases: "
                     + (", ".join(repr(str(g)) for g in grams if g) or "none"))
    return lines


# ---------------------------------------------------------------------- the command
def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from ..web import PAPER_QUERY

    L = args.responses if args.responses is not None else (
        PAPER_RESPONSES if args.paper else DEFAULT_RESPONSES)
    T = args.steps if args.steps is not None else (PAPER_STEPS if args.paper else DEFAULT_STEPS)
    if args.agents and args.fake:
        raise ValueError("--agents and --fake exclude each other")
    return {
        "agents": ("import paths" if args.agents else "fake EchoAgent" if args.fake
                   else "local SmolLM2-135M (llmweb_plugin.web.models.local_agents)"),
        "agent_specs": list(args.agents) if args.agents else None,
        "fake": bool(args.fake), "n_agents": int(args.n_agents),
        "responses_per_step": int(L), "n_steps": int(T), "beta": float(args.beta),
        "query": args.query or PAPER_QUERY, "seed": int(args.seed),
        "topology": args.topology, "retrieval": args.retrieval,
        "max_new_tokens": int(args.max_new_tokens), "seeds": "CRYPTO_SEEDS (20: 7+, 7=, 6-)",
    }


def _specs(items: Sequence[str] | None) -> list[str]:
    """The ``--agents`` values, comma-separated ones split."""
    return [s.strip() for item in items or () for s in item.split(",") if s.strip()]


def _check_id(value: str | None, flag: str) -> None:
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{flag} holds a character that cannot be written (a lone "
                         "surrogate); use plain text") from None
    if not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ValueError(f"{flag} {value!r} is not a usable run id: it names a folder under "
                         "--out, so it must be non-empty, without / or \\")


def _check_args(args: argparse.Namespace) -> None:
    """Refuse every bad argument before anything is built or written, naming the flag."""
    check_common(args)
    for flag, dest in (("--max-new-tokens", "max_new_tokens"),
                       ("--max-concurrency", "max_concurrency"), ("--threads", "threads")):
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}")
    if args.query is not None and not args.query.strip():
        raise ValueError("--query is empty; leave it out for the paper's query")
    _check_id(args.run_id, "--run-id")
    _check_id(args.resume, "--resume")
    if args.resume and args.run_id and args.run_id != args.resume:
        raise ValueError("--run-id and --resume name different runs; give only --resume RUN_ID")
    if args.agents and args.fake:
        raise ValueError("--agents and --fake exclude each other")
    if args.agents:
        specs = _specs(args.agents)
        for spec in specs:
            name, sep, path = spec.partition("=")
            mod_name, sep2, attr = path.partition(":")
            if not sep or not sep2 or not name.strip() or not mod_name or not attr:
                raise ValueError(f"--agents {spec!r}: expected NAME=MODULE:ATTR, e.g. "
                                 "a=langchain_openai:ChatOpenAI")
        names = [sp.partition("=")[0].strip() for sp in specs]
        if len(set(names)) != len(names):
            raise ValueError("--agents names must be unique")
        if len(names) < 2:
            raise ValueError(f"--agents: give at least two agents (got {len(names)}); the "
                             "collapse metric compares agents")
        if args.n_agents != _DEFAULTS["n_agents"]:
            raise ValueError("--n-agents counts local or fake agents; with --agents the agents "
                             "are the ones listed: leave --n-agents out")
    url = getattr(args, "url", None)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError("--url must be a Qdrant server address starting with http:// or "
                         "https://, e.g. http://localhost:6333")
    if getattr(args, "api_key", None) and not url and not args.resume:
        raise ValueError("--api-key needs --url (a local --store folder has no key)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} is a file; give a folder")


#: options that make a run's settings: dest -> (flag, settings keys, parser default)
_SETTING_FLAGS: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "agents": ("--agents", ("agent_specs",), None), "fake": ("--fake", ("fake",), False),
    "n_agents": ("--n-agents", ("n_agents",), _DEFAULTS["n_agents"]),
    "responses": ("--responses", ("responses_per_step",), None),
    "steps": ("--steps", ("n_steps",), None),
    "paper": ("--paper", ("responses_per_step", "n_steps"), False),
    "beta": ("--beta", ("beta",), _DEFAULTS["beta"]), "query": ("--query", ("query",), None),
    "seed": ("--seed", ("seed",), _DEFAULTS["seed"]),
    "topology": ("--topology", ("topology",), _DEFAULTS["topology"]),
    "retrieval": ("--retrieval", ("retrieval",), _DEFAULTS["retrieval"]),
    "max_new_tokens": ("--max-new-tokens", ("max_new_tokens",), _DEFAULTS["max_new_tokens"]),
}


def _check_resume_flags(args: argparse.Namespace, settings: Mapping[str, Any],
                        run_id: str) -> None:
    """A resumed run keeps its settings: a flag that asks for another value is refused."""
    wanted = _settings_from_args(args)
    for dest, (flag, keys, default) in _SETTING_FLAGS.items():
        if getattr(args, dest, default) == default:
            continue
        for key in keys:
            if key in settings and wanted[key] != settings[key]:
                raise ValueError(
                    f"{flag} asks for {key}={wanted[key]!r}, but run {run_id!r} was started "
                    f"with {key}={settings[key]!r}; a resumed run keeps its settings (from its "
                    f"{SETTINGS_FILE}): leave {flag} out, or start a new run")


def _public_url(url: str) -> str:
    """``url`` without user:password or query string (those may hold credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))


def _check_store_free(store_dir: Path) -> None:
    """Refuse early when another process holds the local Qdrant folder (nothing is written)."""
    from ..store import StoreLockedError

    lock = store_dir / ".lock"
    if not lock.is_file():
        return
    import portalocker  # qdrant-client's own lock library

    try:
        with open(lock, "r+", encoding="utf-8") as fh:
            portalocker.lock(fh, portalocker.LockFlags.EXCLUSIVE
                             | portalocker.LockFlags.NON_BLOCKING)
            portalocker.unlock(fh)
    except portalocker.exceptions.LockException:
        raise StoreLockedError(
            f"the Qdrant folder {store_dir} is in use by another process (another `llmweb run` "
            "or `llmweb report` on it?). Wait for it to finish, give this run another --out or "
            "--store, or use a Qdrant server: --url URL [--api-key KEY]") from None


def run_command(args: argparse.Namespace) -> int:
    """Run (or resume) the experiment; print the table and where the report is."""
    from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: F401  (fail early, clearly)

    from ..monitor import new_run_id

    _check_args(args)
    out_root = Path(args.out)
    if args.resume:
        run_id = args.resume
        sfile = out_root / run_id / SETTINGS_FILE
        if not sfile.is_file():
            raise FileNotFoundError(f"no settings of run {run_id!r} at {sfile}; resume with the "
                                    "--out folder the run was started with")
        settings = json.loads(sfile.read_text(encoding="utf-8"))
        _check_resume_flags(args, settings, run_id)
    else:
        settings = _settings_from_args(args)
        if args.url:
            settings["store_url"] = _public_url(args.url)  # never the key
        run_id = args.run_id or new_run_id("web")
    store_url = args.url or settings.get("store_url")
    api_key = args.api_key or os.environ.get("QDRANT_API_KEY")
    store_dir = Path(args.store) if args.store else out_root / "store"
    if not store_url:
        _check_store_free(store_dir)
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
                               report=not args.no_report, store_url=store_url, api_key=api_key)
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
    print(f"\n{s['text']}  [norm = ||D(t)||_F; {s['rule']}]")
    print(f"run {run_id}: {len(final['posts'])} posts, {len(hist)} steps in {seconds:.1f} s")
    where = _public_url(store_url) if store_url else store_dir
    print(f"store: {where}   checkpoint: {ckpt}")
    print(f"report: {final['report_path']}")
    if final.get("verdict"):
        print("\n".join(verdict_lines(final["verdict"])))
    return 0


def run_experiment(settings: Mapping[str, Any], *, run_id: str, store_dir: Path,
                   checkpoint: Path, agents: Mapping[str, Any] | None = None,
                   resume: bool = False, progress: bool = True,
                   max_concurrency: int | None = None, report_dir: Path | None = None,
                   report: bool = True, store_url: str | None = None,
                   api_key: str | None = None) -> dict[str, Any]:
    """Build and run (or resume) the web graph; returns the final state plus ``report_path``.

    ``agents`` are the already built agents (default: built from ``settings``). With
    ``store_url`` the web lives on that Qdrant server (``api_key`` is never logged), else in the
    local folder ``store_dir``.
    """
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from llmweb_langgraph import create_web_graph

    from ..store import WebStore

    if agents is None:
        agents = _build_agents(settings)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    store = (WebStore(url=store_url, api_key=api_key) if store_url
             else WebStore(os.fspath(store_dir)))
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
        final["verdict"] = None
        if report_dir is not None:
            path, final["verdict"] = _write_results(report_dir, run_id, settings, final, store,
                                                    report=report)
            final["report_path"] = str(path)
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
