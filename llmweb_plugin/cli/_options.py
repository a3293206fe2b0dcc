"""The options every ``llmweb`` subcommand shares, defined once so the subcommands cannot drift.

One vocabulary: ``--steps/-T`` (steps), ``--responses/-L`` (answers per agent per step),
``--n-agents`` (how many agents), ``--replicates`` (independent repetitions), ``--seed`` and
``--beta``. Old spellings (``--n-steps``, ``--samples-per-step``, ``--seeds``, experiment's
count ``--agents``) keep working as hidden aliases that print a one-line deprecation note.

Values are checked by :func:`check_common` in the command, before it does anything, with a
``ValueError`` naming the flag (``llmweb`` prints it as one line and exits 2).

Example::

    p = subparsers.add_parser("gmm")
    add_common_options(p, steps=Default(None, "the preset's"), seed=0,
                       deprecated={"--n-steps": "steps"})
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Default", "add_api_key_option", "add_common_options", "check_common"]


@dataclass(frozen=True, kw_only=True)
class Default:
    """An option's default and how its help shows it (for ``None`` defaults chosen later).

    Attributes:
        value: the parser default.
        shown: the text after ``default:`` in the help (default: the value itself).
        note: a sentence added to the shared help text (e.g. which proxy uses the option).
    """

    value: Any = None
    shown: str | None = None
    note: str = ""


_OMIT: Any = object()

#: dest -> (option strings, type, metavar, help, smallest allowed value)
_COMMON: dict[str, tuple[tuple[str, ...], type, str, str, float]] = {
    "steps": (("--steps", "-T"), int, "T", "number of steps T", 1),
    "responses": (("--responses", "-L"), int, "L", "answers (GMM: samples) per agent per step L", 1),
    "n_agents": (("--n-agents",), int, "N",
                 "number of agents n (at least 2: the collapse metric compares agents)", 2),
    "replicates": (("--replicates",), int, "R", "number of independent replicates", 1),
    "seed": (("--seed",), int, "SEED", "random seed (an integer >= 0)", 0),
    "beta": (("--beta",), float, "BETA",
             "retrieval fraction beta in (0, 1]: each agent reads floor(beta |A|) documents", 0),
}
_FLAG = {dest: spec[0][0] for dest, spec in _COMMON.items()}


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a shared option: hidden from help, prints one deprecation line."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_common_options(
    parser: argparse.ArgumentParser,
    *,
    steps: Any = _OMIT,
    responses: Any = _OMIT,
    n_agents: Any = _OMIT,
    replicates: Any = _OMIT,
    seed: Any = _OMIT,
    beta: Any = _OMIT,
    deprecated: Mapping[str, str] | None = None,
) -> None:
    """Add the shared options a subcommand uses, each with the shared name, help and check.

    Args:
        parser: the subcommand's parser.
        steps, responses, n_agents, replicates, seed, beta: the option's default (a value, or a
            :class:`Default` to word the help), or left out when the subcommand has no such
            option. The parsed values land in ``args.steps``, ``args.responses``, ... .
        deprecated: old option strings -> the dest they stand for, e.g.
            ``{"--n-steps": "steps"}``; hidden from help, they print a deprecation note.
    """
    given = {"steps": steps, "responses": responses, "n_agents": n_agents,
             "replicates": replicates, "seed": seed, "beta": beta}
    for dest, spec in given.items():
        if spec is _OMIT:
            continue
        d = spec if isinstance(spec, Default) else Default(value=spec)
        strings, typ, metavar, text, _ = _COMMON[dest]
        shown = d.shown if d.shown is not None else "%(default)s"
        note = f"; {d.note}" if d.note else ""
        parser.add_argument(*strings, dest=dest, type=typ, metavar=metavar, default=d.value,
                            help=f"{text}{note} (default: {shown})")
    for old, dest in (deprecated or {}).items():
        if given.get(dest, _OMIT) is _OMIT:
            raise ValueError(f"deprecated alias {old} maps to {dest!r}, which is not added")
        strings, typ, metavar, _, _ = _COMMON[dest]
        parser.add_argument(old, dest=dest, type=typ, metavar=metavar, action=_DeprecatedAlias,
                            new=strings[0], default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_api_key_option(parser: argparse.ArgumentParser) -> None:
    """``--api-key`` for a Qdrant server (read from ``$QDRANT_API_KEY`` when not given)."""
    parser.add_argument("--api-key", metavar="KEY", default=None,
                        help="the Qdrant server's API key; never printed or stored "
                        "(default: $QDRANT_API_KEY)")


def check_common(args: argparse.Namespace) -> None:
    """Check the shared options present in ``args``; a ``ValueError`` names the flag.

    Raises:
        ValueError: a count below its minimum, a negative seed, ``--beta`` outside ``(0, 1]``.
    """
    for dest, (_, _, _, _, low) in _COMMON.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "beta":
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"--beta must lie in (0, 1]; got {value}")
        elif value < low:
            why = " (the collapse metric compares agents)" if dest == "n_agents" else ""
            raise ValueError(f"{_FLAG[dest]} must be >= {int(low)}{why}; got {value}")
