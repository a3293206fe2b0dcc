"""``reproduce(target, ...)``: run one target, compare, write the figure, table and JSON.

Targets are modules of this package, imported only when asked for (see :data:`TARGETS`); each has
a ``DESCRIPTION`` string and ``run(*, replicates, quick, rng, **options) -> Outcome``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from ._core import Claim, Outcome
from ._result import ReproduceResult, write_outputs

__all__ = ["DEFAULT_OUT", "TARGETS", "available_targets", "reproduce"]

logger = logging.getLogger(__name__)

#: Where :func:`reproduce` writes when ``out`` is not given (``DIR/TARGET/...``).
DEFAULT_OUT = "llmweb-reproduce"

#: Target name -> the module (in this package) that reproduces it.
TARGETS: Mapping[str, str] = MappingProxyType({
    "lwd-fig4": "lwd_fig4",
    "lwd-fig6": "lwd_fig6",
    "companion-silo": "companion_silo",
    "lwd-fig2": "lwd_fig2",
    "mas-topology": "mas_topology",
})

_RESERVED = ("replicates", "quick", "rng")


def _module(target: str) -> ModuleType:
    """The target's module, or a ValueError saying which targets exist / which is missing."""
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGETS)} "
                         "(llmweb reproduce --list)")
    name = f"{__package__}.{TARGETS[target]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise ValueError(f"target {target!r} is registered but not part of this build "
                         f"(module {name} is missing); available: "
                         f"{sorted(available_targets())}") from None


def available_targets() -> dict[str, str]:
    """Target name -> one-line description, for the targets present in this build.

    Example:
        >>> "lwd-fig4" in available_targets()
        True
    """
    out = {}
    for target, mod_name in TARGETS.items():
        name = f"{__package__}.{mod_name}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        out[target] = " ".join(str(getattr(mod, "DESCRIPTION", "")).split())
    return out


def _check_options(target: str, mod: ModuleType, options: Mapping[str, Any]) -> None:
    """TypeError naming the options ``mod.run`` does not take (before anything runs)."""
    params = inspect.signature(mod.run).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = sorted(n for n, p in params.items()
                      if n not in _RESERVED and p.kind is inspect.Parameter.KEYWORD_ONLY)
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise TypeError(f"reproduce({target!r}) got unknown option(s) {bad}; this target "
                        f"accepts {accepted or 'no options'}")


def _check_replicates(replicates: object) -> int | None:
    if replicates is None:
        return None
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)):
        raise ValueError(f"replicates must be a whole number >= 1 or None (the target's "  # noqa: TRY004
                         f"default); got {replicates!r}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1; got {replicates}")
    return int(replicates)


def _check_outcome(target: str, outcome: object) -> Outcome:
    if not isinstance(outcome, Outcome):
        raise TypeError(f"target {target!r} returned {type(outcome).__name__}, not an Outcome")
    if any(not isinstance(c, Claim) for c in outcome.claims):
        raise TypeError(f"target {target!r} returned claims that are not Claim objects")
    return outcome


def reproduce(target: str, *, replicates: int | None = None, out: str | Path | None = None,
              quick: bool = False, rng: np.random.Generator | int | None = 0,
              **options: Any) -> ReproduceResult:
    """Reproduce one published result: our numbers with intervals beside the published claims.

    Writes ``OUT/TARGET/figure.png``, ``comparison.md`` and ``result.json`` (the folder is
    created only after the run succeeded).

    Args:
        target: a key of :data:`TARGETS` (see :func:`available_targets`).
        replicates: independent replicates, or ``None`` for the target's default.
        out: the output folder (default ``./llmweb-reproduce``).
        quick: the target's small scale (for CI; still decides every claim it can).
        rng: seed or ``numpy.random.Generator`` (default 0, so a call is repeatable).
        **options: target-specific knobs (see each target's ``run``).

    Returns:
        A frozen :class:`ReproduceResult` (``.table()``, ``.agrees``, ``.to_json()``).

    Raises:
        ValueError: unknown target, target missing from this build, bad ``replicates``.
        TypeError: an option the target does not take (the message names it).

    Example:
        >>> import tempfile
        >>> r = reproduce("lwd-fig4", quick=True, replicates=8, out=tempfile.mkdtemp())
        >>> sorted(r.paths)[:2], r.claims[0].published.id
        (['comparison', 'figure'], 'start_1.1_to_2.3')
    """
    mod = _module(target)
    n_rep = _check_replicates(replicates)
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be True or False; got {quick!r}")  # noqa: TRY004
    _check_options(target, mod, options)
    folder = Path(DEFAULT_OUT if out is None else out) / target
    seed = rng if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None
    gen = np.random.default_rng(rng)
    t0 = time.perf_counter()
    outcome = _check_outcome(target, mod.run(replicates=n_rep, quick=quick, rng=gen, **options))
    elapsed = time.perf_counter() - t0
    settings = {"target": target, **dict(outcome.settings)}
    settings.setdefault("quick", quick)
    settings.setdefault("seed", None if seed is None else int(seed))
    result = ReproduceResult(target=target, claims=tuple(outcome.claims), settings=settings,
                             series=outcome.series, notes=tuple(outcome.notes),
                             out_dir=str(folder), paths={}, elapsed_s=elapsed)
    result = write_outputs(result, outcome.draw)
    logger.info("%s (%.1f s), wrote %s", result.summary(), elapsed, folder)
    return result
