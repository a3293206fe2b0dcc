"""``llmweb gmm`` and ``llmweb silo``: run the GMM proxies from the command line.

Registered on the main parser by ``llmweb_plugin.cli``::

    from llmweb_plugin.cli import gmm
    gmm.add_parser(sub)          # sub = parser.add_subparsers(...)
    args = parser.parse_args()
    return args.func(args)

Usage::

    llmweb gmm --preset lwd-fig4                      # paper Fig. 4, 5 replicates
    llmweb gmm --preset lwd-fig6 --steps 300 --seed 3
    llmweb gmm --n-agents 10 --means=-5,0,5 --cov 1 --beta 0.3 --replicates 4
    llmweb gmm --preset lwd-fig4 --inject-points 3 --inject-weights 0.5,0.5
    llmweb gmm --preset lwd-fig4-n1000 --engine numba  # compiled engine (extra [fast])
    llmweb silo --n-neighbors 1,2,5,10,20,29 --replicates 20 --steps 100

Each writes ``<out>/<name>.csv``, ``<out>/<name>.json`` and ``<out>/<name>.png`` (the PNG needs
matplotlib: ``pip install 'llmweb-plugin[report]'``; ``--no-plot`` skips it).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from llmweb_plugin.proxies import (
    GMM_PRESETS,
    GMMInjection,
    GMMWebResult,
    InteractingGMMWeb,
    SiloGMM,
    SiloResult,
    gmm_preset,
)

from ._options import Default, add_common_options, check_common

__all__ = ["add_parser", "run_gmm", "run_silo"]

_DEFAULT_OUT = "llmweb-out"


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or an ImportError naming the extra."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "the PNG plot needs matplotlib: pip install 'llmweb-plugin[report]' "
            "(or pass --no-plot)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _array(text: str) -> Any:
    """A JSON array/number, or comma-separated floats."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    vals = _floats(text)
    return vals[0] if len(vals) == 1 else vals


def add_parser(subparsers: Any) -> None:
    """Register the ``gmm`` and ``silo`` subcommands on an argparse subparsers object."""
    g = subparsers.add_parser(
        "gmm",
        help="interacting GMM proxy of the LLM web (paper Algorithms 2-3)",
        description="Simulate n GMMs reading from and posting to a shared growing set A; "
        "print ||D(t)||_F and write CSV/JSON/PNG.",
    )
    names = sorted(k for k, v in GMM_PRESETS.items() if isinstance(v, InteractingGMMWeb))
    preset = "the preset's"
    g.add_argument("--preset", default="lwd-fig4",
                   help=f"one of {names} (default: %(default)s)")
    add_common_options(g, n_agents=Default(shown=preset), beta=Default(shown=preset),
                       responses=Default(shown=preset), steps=Default(shown=preset),
                       replicates=Default(shown=preset), seed=0,
                       deprecated={"--n-steps": "steps", "--samples-per-step": "responses"})
    g.add_argument("--means", type=_array,
                   help="component means: '-5,5' (d=1) or JSON '[[0,0],[3,3]]' "
                   "(default: the preset's)")
    g.add_argument("--cov", type=_array,
                   help="variance (scalar), diagonal '1,2' or JSON matrix (default: the preset's)")
    g.add_argument("--dirichlet-alpha", type=float,
                   help="Dirichlet concentration of the agents' initial weights "
                   "(default: the preset's)")
    g.add_argument("--eps", type=float,
                   help="the weights' floor in the online update (default: the preset's)")
    g.add_argument("--inject-points", type=int,
                   help="external points added to A per step (default: none)")
    g.add_argument("--inject-weights", type=_floats,
                   help="external mixture weights (default: uniform)")
    g.add_argument("--engine", choices=("auto", "numpy", "numba"), default="auto",
                   help="simulation engine: numba is compiled and parallel (pip install "
                   "'llmweb-plugin[fast]'); auto uses it for large runs when installed "
                   "(default: %(default)s)")
    _add_run_args(g, "gmm")
    g.set_defaults(func=run_gmm)

    s = subparsers.add_parser(
        "silo",
        help="companion-paper interacting GMMs: silos and polarisation",
        description="Agents with private RAG sets answer each other; count silos over time. "
        "Comma-separated --n-neighbors / --mirror-prob run a sweep.",
    )
    snames = sorted(k for k, v in GMM_PRESETS.items() if isinstance(v, SiloGMM))
    s.add_argument("--preset", default="companion-silo",
                   help=f"one of {snames} (default: %(default)s)")
    add_common_options(s, n_agents=Default(shown=preset), steps=Default(shown=preset),
                       replicates=Default(shown=preset), seed=0,
                       deprecated={"--n-steps": "steps"})
    s.add_argument("--n-components", type=int,
                   help="number of mixture components K (default: the preset's)")
    s.add_argument("--mirror-prob", type=_floats,
                   help="p, or a comma-separated list (default: the preset's)")
    s.add_argument("--n-neighbors", type=_ints,
                   help="k, or a comma-separated list (default: the preset's)")
    s.add_argument("--rag-size", type=int,
                   help="documents in each agent's private RAG set (default: the preset's)")
    s.add_argument("--sigma", type=float,
                   help="standard deviation of the components (default: the preset's)")
    _add_run_args(s, "silo")
    s.set_defaults(func=run_silo)


def _add_run_args(p: argparse.ArgumentParser, command: str) -> None:
    """The options ``gmm`` and ``silo`` share besides the common ones: output files."""
    p.add_argument("--out", default=_DEFAULT_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--name", help=f"file stem (default: {command}-<preset>)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")


def _output(args: argparse.Namespace, command: str) -> tuple[Path, str]:
    """The output folder (created) and the file stem (``--name``, or ``<command>-<preset>``)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, args.name or f"{command}-{args.preset}"


def _write_files(
    out: Path,
    name: str,
    *,
    write_csv: Callable[[IO[str]], None],
    doc: dict[str, Any],
    draw: Callable[[Any], None] | None,
) -> None:
    """Write ``<name>.csv``, ``<name>.json`` and (when ``draw``) ``<name>.png``; print their paths.

    Args:
        out: the output folder.
        name: the file stem.
        write_csv: writes the CSV into the open text file.
        doc: the JSON document.
        draw: draws the plot on a matplotlib Axes; ``None`` for ``--no-plot``.
    """
    csv_path = out / f"{name}.csv"
    with csv_path.open("w", newline="") as fh:
        write_csv(fh)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    written = [csv_path, json_path]
    if draw is not None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        draw(ax)
        fig.tight_layout()
        png_path = out / f"{name}.png"
        fig.savefig(png_path, dpi=120)
        plt.close(fig)
        written.append(png_path)
    print("wrote " + ", ".join(str(p) for p in written))


#: simulator field -> the dest of the shared option that sets it
_SHARED = {"n_steps": "steps", "samples_per_step": "responses", "n_replicates": "replicates"}


def _overrides(args: argparse.Namespace, fields: tuple[str, ...]) -> dict[str, Any]:
    """The simulator fields given on the command line (options left out are ``None``)."""
    return {f: v for f in fields if (v := getattr(args, _SHARED.get(f, f), None)) is not None}


# ---------------------------------------------------------------------- gmm
def _gmm_from_args(args: argparse.Namespace) -> InteractingGMMWeb:
    base = gmm_preset(args.preset)
    if not isinstance(base, InteractingGMMWeb):
        raise ValueError(  # noqa: TRY004 - reported as a CLI usage error
            f"preset {args.preset!r} is a silo model: use `llmweb silo --preset ...`"
        )
    over = _overrides(args, ("n_agents", "means", "cov", "dirichlet_alpha", "beta",
                             "samples_per_step", "n_steps", "n_replicates", "eps"))
    if args.inject_points is not None or args.inject_weights is not None:
        means = np.asarray(over.get("means", base.means), dtype=float)
        n_comp = means.shape[0]
        weights = args.inject_weights or [1.0 / n_comp] * n_comp
        over["injection"] = GMMInjection(weights=weights, n_points=args.inject_points or 0)
    return dataclasses.replace(base, **over) if over else base


def _fmt(x: float) -> str:
    return f"{x:8.4f}" if math.isfinite(x) else "     nan"


def _gmm_table(res: GMMWebResult) -> str:
    T = res.n_steps
    cols = [t for t in (0, 1, 10, 25, 50) if t <= T] + [T]
    cols = sorted(set(cols))
    head = "replicate " + " ".join(f"{'t=' + str(t):>8}" for t in cols) + "  mean t>50"
    lines = [head, "-" * len(head)]
    rows = [(str(r), res.norms[:, r]) for r in range(res.n_replicates)]
    rows.append(("mean", res.mean_norms))
    for label, series in rows:
        tail = float(series[51:].mean()) if T > 50 else float("nan")
        lines.append(f"{label:<9} " + " ".join(_fmt(float(series[t])) for t in cols)
                     + "  " + _fmt(tail))
    return "\n".join(lines)


def run_gmm(args: argparse.Namespace) -> int:
    """Run ``llmweb gmm``; return a process exit code."""
    try:
        check_common(args)
        sim = _gmm_from_args(args)
        t0 = time.perf_counter()
        res = sim.run(rng=args.seed, engine=getattr(args, "engine", "auto"))
        elapsed = time.perf_counter() - t0
    except (ValueError, ImportError) as exc:
        print(f"llmweb gmm: error: {exc}", file=sys.stderr)
        return 2
    out, name = _output(args, "gmm")

    print(f"InteractingGMMWeb ({args.preset}): n={sim.n_agents} B={np.shape(sim.means)[0]} "
          f"beta={sim.beta} L={sim.samples_per_step} T={res.n_steps} "
          f"replicates={res.n_replicates} seed={args.seed} engine={res.engine}: {elapsed:.2f} s")
    print(f"|A| {int(res.a_sizes[0])} -> {int(res.a_sizes[-1])}; synthetic fraction at T "
          f"{float(res.synthetic_fraction[-1]):.3f}")
    print("||D(t)||_F")
    print(_gmm_table(res))

    def write_csv(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow(["t", "a_size", "k", "synthetic_fraction"]
                   + [f"norm_rep{r}" for r in range(res.n_replicates)] + ["norm_mean"])
        for t in range(res.n_steps + 1):
            k = int(res.k[t]) if t < res.n_steps else ""
            w.writerow([t, int(res.a_sizes[t]), k, f"{res.synthetic_fraction[t]:.6g}"]
                       + [f"{v:.10g}" for v in res.norms[t]] + [f"{res.mean_norms[t]:.10g}"])

    def draw(ax: Any) -> None:
        steps = np.arange(res.n_steps + 1)
        for r in range(res.n_replicates):
            ax.plot(steps, res.norms[:, r], lw=1, alpha=0.8, label=f"replicate {r}")
        if res.n_replicates > 1:
            ax.plot(steps, res.mean_norms, color="black", lw=2, label="mean")
        ax.set_xlabel("step t")
        ax.set_ylabel(r"$\|D(t)\|_F$")
        ax.set_title(f"Interacting GMMs ({args.preset})")
        if res.n_replicates <= 10:
            ax.legend(fontsize=8)

    params = {f.name: getattr(sim, f.name) for f in dataclasses.fields(sim)}
    params = json.loads(json.dumps(params, default=_jsonable))
    _write_files(out, name, write_csv=write_csv,
                 doc={"model": "InteractingGMMWeb", "preset": args.preset, "seed": args.seed,
                      "engine": res.engine, "seconds": elapsed, "params": params,
                      "result": res.as_dict()},
                 draw=None if args.no_plot else draw)
    return 0


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


# ---------------------------------------------------------------------- silo
def run_silo(args: argparse.Namespace) -> int:
    """Run ``llmweb silo`` (a sweep over the listed ``p`` and ``k``); return an exit code."""
    try:
        check_common(args)
        base = gmm_preset(args.preset)
        if not isinstance(base, SiloGMM):
            raise ValueError(  # noqa: TRY004 - reported as a CLI usage error
                f"preset {args.preset!r} is not a silo model: use `llmweb gmm`"
            )
        over = _overrides(args, ("n_agents", "n_components", "rag_size", "sigma", "n_steps",
                                 "n_replicates"))
        base = dataclasses.replace(base, **over) if over else base
        ps = args.mirror_prob or [base.mirror_prob]
        ks = args.n_neighbors or [base.n_neighbors]
        runs: list[tuple[float, int, SiloResult]] = []
        t0 = time.perf_counter()
        for p in ps:
            for k in ks:
                sim = dataclasses.replace(base, mirror_prob=p, n_neighbors=k)
                runs.append((p, k, sim.run(rng=args.seed)))
        elapsed = time.perf_counter() - t0
    except ValueError as exc:
        print(f"llmweb silo: error: {exc}", file=sys.stderr)
        return 2
    out, name = _output(args, "silo")
    print(f"SiloGMM ({args.preset}): n={base.n_agents} K={base.n_components} r={base.rag_size} "
          f"sigma={base.sigma} T={base.n_steps} replicates={base.n_replicates} "
          f"seed={args.seed}: {elapsed:.2f} s")
    head = f"{'p':>5} {'k':>4} {'silos at T':>16} {'mean t*':>8} {'converged':>9}"
    print(head)
    print("-" * len(head))
    rows = []
    for p, k, res in runs:
        s = res.summary()
        rows.append({"mirror_prob": p, "n_neighbors": k, **s})
        print(f"{p:5.2f} {k:4d} {s['silos_mean']:8.2f} +- {s['silos_se']:4.2f} "
              f"{s['t_star_mean']:8.1f} {s['converged_fraction']:9.2f}")
    def write_csv(fh: IO[str]) -> None:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def draw(ax: Any) -> None:
        for p, k, res in runs:
            ax.plot(res.n_silos.mean(axis=1), label=f"p={p:g}, k={k}")
        ax.set_xlabel("step t")
        ax.set_ylabel("silos (mean over replicates)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)

    _write_files(out, name, write_csv=write_csv, doc={
        "model": "SiloGMM", "preset": args.preset, "seed": args.seed, "seconds": elapsed,
        "params": json.loads(json.dumps(dataclasses.asdict(base), default=_jsonable)),
        "runs": [{"mirror_prob": p, "n_neighbors": k, **res.as_dict()} for p, k, res in runs],
    }, draw=None if args.no_plot else draw)
    return 0
