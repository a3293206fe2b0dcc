"""``llmweb reproduce``: reproduce a published result and say how close it came.

Usage::

    llmweb reproduce --list
    llmweb reproduce lwd-fig4                       # 200 replicates, ./llmweb-reproduce/lwd-fig4/
    llmweb reproduce companion-silo --quick --out repro --seed 3
    llmweb reproduce lwd-fig2 --agents a=my_agents:a --agents b=my_agents:b --agents c=my_agents:c --paper

Prints the comparison table (claim | published (source) | ours with interval | agrees?), names
every claim our numbers contradict, and writes ``OUT/TARGET/figure.png``, ``comparison.md`` and
``result.json``. Exits 0 when the reproduction ran (whether or not it agreed), 2 on bad
arguments (checked before anything runs or is written).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._options import Default, add_common_options, check_common

__all__ = ["add_parser", "run_reproduce"]


def add_parser(subparsers: Any) -> None:
    """Register the ``reproduce`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce a published result (LWD figures, companion paper) with bands",
        description="Run one target over many replicates, compare our numbers (with intervals) "
        "against the published claims, and write figure.png, comparison.md and result.json.",
    )
    p.add_argument("target", nargs="?", metavar="TARGET",
                   help="what to reproduce (default: none; llmweb reproduce --list shows the "
                        "targets)")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    add_common_options(p, replicates=Default(shown="the target's"), seed=0)
    p.add_argument("--out", default="llmweb-reproduce",
                   help="output folder; files go to OUT/TARGET/ (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="the target's small scale (for CI; under a minute)")
    web = p.add_argument_group("LLM-web targets (lwd-fig2, mas-topology)")
    web.add_argument("--agents", action="append", metavar="NAME=MODULE:ATTR",
                     help="an agent by import path, as in llmweb run --agents (repeat, or "
                          "comma-separate; lwd-fig2) (default: local SmolLM2 agents)")
    web.add_argument("--paper", action="store_true",
                     help="the paper's scale L=40, T=60 (lwd-fig2; hours on local models)")
    web.add_argument("--steps", "-T", type=int, metavar="T",
                     help="steps T (default: the target's)")
    web.add_argument("--responses", "-L", type=int, metavar="L",
                     help="answers per agent per step L (default: the target's)")
    p.set_defaults(func=run_reproduce)


def _target_options(args: argparse.Namespace) -> dict[str, Any]:
    """The target-specific flags that were given, as ``reproduce(**options)``; a target that
    does not take one refuses it by name."""
    opts: dict[str, Any] = {}
    if args.agents:
        specs = [s.strip() for a in args.agents for s in a.split(",") if s.strip()]
        opts["agents"] = specs
    if args.paper:
        opts["paper"] = True
    for flag in ("steps", "responses"):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{flag} must be at least 1 (got {value})")
            opts[flag] = value
    return opts


def _list() -> int:
    from llmweb_plugin.reproduce import TARGETS, available_targets

    avail = available_targets()
    width = max(len(t) for t in TARGETS)
    for name, text in avail.items():
        print(f"{name:<{width}}  {text}")
    missing = [t for t in TARGETS if t not in avail]
    if missing:
        print(f"(registered but not part of this build: {', '.join(missing)})")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    """Run ``llmweb reproduce``; return a process exit code."""
    if args.list:
        return _list()
    from llmweb_plugin.reproduce import reproduce

    try:
        check_common(args)
        if not args.target:
            raise ValueError("give a TARGET (llmweb reproduce --list shows them)")
        result = reproduce(args.target, replicates=args.replicates, out=args.out,
                           quick=args.quick, rng=args.seed, **_target_options(args))
    except (ValueError, TypeError) as exc:
        print(f"llmweb reproduce: error: {exc}", file=sys.stderr)
        return 2
    s = result.settings
    print(f"{result.summary()} ({s.get('replicates')} replicates, seed {args.seed}"
          f"{', quick' if args.quick else ''}; {result.elapsed_s:.1f} s)")
    print()
    print(result.table())
    print()
    for c in result.disagreements:
        print(f"DISAGREES: {c.published.text} (published {c.published.value}); ours: {c.ours}. "
              f"{c.detail}")
    untested = [c for c in result.claims if c.agrees is None]
    for c in untested:
        print(f"not testable here: {c.published.text}: {c.detail}")
    verdict = {True: "every testable claim agrees", False: "the reproduction DISAGREES with "
               f"{len(result.disagreements)} published claim(s)",
               None: "no claim could be tested"}[result.agrees]
    print(f"{args.target}: {verdict}")
    print("wrote " + ", ".join(result.paths.values()))
    return 0
