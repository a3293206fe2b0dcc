"""Reproduce the published results llmweb builds on, with bands and an explicit comparison.

``reproduce("lwd-fig4")`` (or ``llmweb reproduce lwd-fig4``) runs one target over many
replicates, compares our numbers (with intervals) against the published claims stored as package
data (``published/<target>.json``, each with its source), and writes ``figure.png``,
``comparison.md`` and ``result.json`` under ``./llmweb-reproduce/<target>/``.
:func:`available_targets` lists the targets of this build.

Modules: :mod:`._core` (the shapes every target shares), :mod:`._framework` (the registry and
:func:`reproduce`), :mod:`._result` (:class:`ReproduceResult` and the files), one module per
target (``lwd_fig4``, ``companion_silo``, ...), imported only when asked for.

The package itself is callable, so the top-level name works as the function whatever was
imported first: ``import llmweb_plugin as lw; lw.reproduce("lwd-fig4", quick=True)``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ._core import Claim, Outcome, PublishedClaim, load_published
from ._framework import DEFAULT_OUT, TARGETS, available_targets, reproduce
from ._result import ReproduceResult

__all__ = [
    "DEFAULT_OUT",
    "TARGETS",
    "Claim",
    "Outcome",
    "PublishedClaim",
    "ReproduceResult",
    "available_targets",
    "load_published",
    "reproduce",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`reproduce` (``lw.reproduce(...)``)."""

    def __call__(self, target: str, **kwargs: Any) -> ReproduceResult:
        return reproduce(target, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
