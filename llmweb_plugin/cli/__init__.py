"""The ``llmweb`` command line: the one place that composes core and adapters, lazily.

Each subcommand lives in its own module (``run``, ``gmm``, ``experiment``; ``report`` holds both
``report`` and ``runs``; ``store`` its ``copy`` action), each with ``add_parser(subparsers)``; they
share one argument vocabulary (:mod:`._options`) and import heavy dependencies only when run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

_SUBCOMMAND_MODULES = (
    "llmweb_plugin.cli.run",
    "llmweb_plugin.cli.gmm",
    "llmweb_plugin.cli.report",
    "llmweb_plugin.cli.experiment",
    "llmweb_plugin.cli.store",
    "llmweb_plugin.cli.reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``llmweb`` argument parser with every available subcommand."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="llmweb",
        description="LLM Web Dynamics: shared-store agent webs, collapse metrics, GMM proxies, "
        "diversity reports.",
    )
    parser.add_argument("--version", action="version", version=f"llmweb {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that feature is not part of this build
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmweb`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError, LookupError) as exc:
        print(f"llmweb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from ..store import StoreLockedError

        if not isinstance(exc, StoreLockedError):
            raise
        # a local Qdrant folder held by another process: one line, no traceback
        print(f"llmweb {args.command}: error: {exc}", file=sys.stderr)
        return 2
