"""Where the time of the main job (``llmweb run`` with local models) goes.

Runs the same code as ``llmweb run`` (``cli.run._build_agents`` + ``cli.run.run_experiment``) in
one process and times its phases with ``time.perf_counter``:

* imports: torch, transformers, sentence-transformers, LangGraph + the web graph;
* the local model's load: the one-time GGUF conversion (``--fresh-cache``: into a temporary
  cache folder) or the load of the de-quantised cache;
* the embedder's load (MiniLM) up to its first vector;
* the run itself, split into generation (``LocalChatModel._generate``), embedding
  (``SentenceTransformerEmbedder.embed``), Qdrant writes (``WebStore.upsert``), the report, and
  the rest (graph, checkpoints, metrics, retrieval).

Prints a table of seconds and shares of the total, the tokens generated, the ``||D(t)||_F``
series and, when :mod:`llmweb_plugin.trend` is there, its verdict. Run by hand (not in the test
suite); the machine is usually shared, so the load average is printed with the figures and the
shares matter more than the seconds:

    HF_HUB_OFFLINE=1 python benchmarks/bench_main_job.py [--fresh-cache] [--steps 8]
        [--responses 4] [--agents 3] [--max-new-tokens N] [--threads N] [--seed 0]
        [--overlap] [--report] [--profile FILE]

``--overlap`` starts the embedder's import and load in a background thread while the model loads
(compare the "startup" line with and without it). ``--profile FILE`` writes a cProfile of the run.
Phases run in a fixed order, so the imports are measured in a fresh process only once.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_T0 = time.perf_counter()


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


class _Timer:
    """Accumulates wall seconds (and calls) per phase name; thread-safe."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.extra: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds
            self.calls[name] += 1

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.add(name, time.perf_counter() - start)

        setattr(owner, attr, timed)


def main() -> None:  # noqa: PLR0915 - one linear script
    """Run the main job once with timers and print where its time went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=None, help="number of local agents")
    parser.add_argument("--responses", type=int, default=None, help="L (default: llmweb run's)")
    parser.add_argument("--steps", type=int, default=None, help="T (default: llmweb run's)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh-cache", action="store_true",
                        help="convert the GGUF into a temporary cache (the first run's cost)")
    parser.add_argument("--overlap", action="store_true",
                        help="load the embedder in a background thread while the model loads")
    parser.add_argument("--report", action="store_true", help="also write the HTML report")
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile the run")
    args = parser.parse_args()

    timer = _Timer()
    tmp = tempfile.TemporaryDirectory(prefix="bench-main-job-")
    if args.fresh_cache:
        os.environ["LLMWEB_CACHE_DIR"] = os.path.join(tmp.name, "cache")

    start = time.perf_counter()
    import torch

    timer.add("import torch", time.perf_counter() - start)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    import transformers  # noqa: F401

    timer.add("import transformers", time.perf_counter() - start)
    start = time.perf_counter()
    import langgraph.graph  # noqa: F401

    import llmweb_langgraph  # noqa: F401
    from llmweb_plugin.web import models
    from llmweb_plugin.cli import run as cli_run
    from llmweb_plugin.embeddings import SentenceTransformerEmbedder, default_embedder
    from llmweb_plugin.store import WebStore

    timer.add("import langgraph + llmweb", time.perf_counter() - start)

    def load_embedder() -> None:
        t = time.perf_counter()
        import sentence_transformers  # noqa: F401

        timer.add("import sentence-transformers", time.perf_counter() - t)
        t = time.perf_counter()
        default_embedder().embed(["warm-up"])
        timer.add("embedder load + first vector", time.perf_counter() - t)

    defaults = cli_run._DEFAULTS
    settings: dict[str, Any] = {
        "agents": "local", "agent_specs": None, "fake": False,
        "n_agents": args.agents or defaults["n_agents"],
        "responses_per_step": args.responses or cli_run.DEFAULT_RESPONSES,
        "n_steps": args.steps or cli_run.DEFAULT_STEPS, "beta": defaults["beta"],
        "query": __import__("llmweb_plugin.web", fromlist=["PAPER_QUERY"]).PAPER_QUERY,
        "seed": args.seed, "topology": defaults["topology"], "retrieval": defaults["retrieval"],
        "max_new_tokens": args.max_new_tokens or defaults["max_new_tokens"],
    }
    agents = cli_run._build_agents(settings)
    first = next(iter(agents.values()))

    startup = time.perf_counter()
    bg = None
    if args.overlap:
        bg = threading.Thread(target=load_embedder, name="embedder-load")
        bg.start()
    t = time.perf_counter()
    loaded = first.loaded()
    model_phase = ("GGUF conversion (one-time) + load" if not loaded.from_cache
                   else "model load from cache")
    timer.add(model_phase, time.perf_counter() - t)
    if bg is not None:
        bg.join()
    else:
        load_embedder()
    startup_seconds = time.perf_counter() - startup

    gen_tokens = {"out": 0, "calls": 0, "rows": 0}
    original_generate = models.LocalChatModel._generate

    def generate(self: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        res = original_generate(self, *a, **kw)
        # the model's own time inside the generation lock (the agents' tasks run in parallel
        # threads and queue on that lock, so wall time around the call would double count)
        timer.add("generation", float((res.llm_output or {}).get("generate_seconds",
                                                                  time.perf_counter() - t0)))
        usage = (res.llm_output or {}).get("token_usage", {})
        gen_tokens["out"] += int(usage.get("output_tokens", 0))
        gen_tokens["calls"] += 1
        gen_tokens["rows"] += len(res.generations)
        return res

    models.LocalChatModel._generate = generate  # type: ignore[method-assign]
    timer.wrap(SentenceTransformerEmbedder, "embed", "embedding (MiniLM)")
    timer.wrap(WebStore, "upsert", "Qdrant writes")
    timer.wrap(cli_run, "_write_results", "results + report")

    out = Path(tmp.name) / "out"
    prof = cProfile.Profile() if args.profile else None
    run_start = time.perf_counter()
    if prof is not None:
        prof.enable()
    final = cli_run.run_experiment(
        settings, run_id=f"bench-{args.seed}", store_dir=out / "store",
        checkpoint=out / "checkpoints.sqlite", agents=agents, progress=False,
        report_dir=out / "run", report=args.report)
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    run_seconds = time.perf_counter() - run_start
    total = time.perf_counter() - _T0

    # embedding runs inside the monitor's writer, before Qdrant writes: not nested in them
    inside = sum(timer.seconds[k] for k in ("generation", "embedding (MiniLM)", "Qdrant writes",
                                            "results + report"))
    timer.seconds["graph, checkpoints, metrics, retrieval (rest of run)"] = max(
        0.0, run_seconds - inside)
    timer.seconds["python start + argparse + agents"] = max(
        0.0, total - run_seconds - startup_seconds - sum(
            timer.seconds[k] for k in ("import torch", "import transformers",
                                       "import langgraph + llmweb")))
    print(f"main job: {settings['n_agents']} agents, L={settings['responses_per_step']}, "
          f"T={settings['n_steps']}, max_new_tokens={settings['max_new_tokens']}, "
          f"seed={args.seed}, torch threads={torch.get_num_threads()}, "
          f"overlap={'on' if args.overlap else 'off'}; load average {_load_average()}")
    print(f"{'phase':<54} {'seconds':>8} {'share':>7}")
    for name, sec in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{name:<54} {sec:8.2f} {sec / total:7.1%}")
    print(f"{'total (process wall time)':<54} {total:8.2f} {1:7.1%}")
    print(f"startup (model + embedder{', overlapped' if args.overlap else ''}): "
          f"{startup_seconds:.2f} s; run: {run_seconds:.2f} s")
    if gen_tokens["calls"]:
        per_call = timer.seconds["generation"] / gen_tokens["calls"]
        print(f"generation: {gen_tokens['calls']} calls, {gen_tokens['rows']} answers, "
              f"{gen_tokens['out']} new tokens ({gen_tokens['out'] / gen_tokens['rows']:.1f} per "
              f"answer), {per_call:.2f} s per call, "
              f"{gen_tokens['out'] / timer.seconds['generation']:.1f} tokens/s")
    norms = [h.get("norm") for h in final["history"]]
    print("||D(t)||_F:", ", ".join(f"{v:.3f}" for v in norms))
    try:
        from llmweb_plugin.trend import collapse_trend
    except ImportError:
        pass
    else:
        tr = collapse_trend(norms)
        print(f"trend: verdict={tr.verdict} slope={tr.slope:.4f} ci=({tr.ci[0]:.4f}, "
              f"{tr.ci[1]:.4f}) relative_change={tr.relative_change:+.3f}")
    last = [p["text"] for p in final["posts"] if p["step"] == settings["n_steps"]]
    for text in last:
        print("  last post:", text[:160].replace("\n", " "))
    sys.stdout.flush()
    tmp.cleanup()


if __name__ == "__main__":
    main()
