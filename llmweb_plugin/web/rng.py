"""Randomness of a web run: one integer seed, one generator per draw.

A run has one integer ``seed``; every draw uses its own generator
``np.random.default_rng([seed, stream, step, ...])`` (:func:`derive_rng`), so a run is
reproducible whatever the thread scheduling, and a step re-run after a crash draws the same
contexts. The second entry is one of the ``STREAM_*`` numbers below, so the draws of different
purposes (contexts, variations, hooks, topology, model seeds) never share a generator.

Example:
    >>> from llmweb_plugin.web import derive_rng, resolve_seed
    >>> seed = resolve_seed(7)  # an int is the seed itself
    >>> [int(derive_rng(seed, stream, 1, 2).integers(1000)) for stream in (0, 0, 1)]
    [100, 100, 796]
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["derive_rng", "resolve_seed"]

# Independent random streams of one run (the second entry of every derived seed).
STREAM_CONTEXT = 0
STREAM_VARY = 1
STREAM_BEFORE = 2
STREAM_AFTER = 3
STREAM_TOPOLOGY = 4
STREAM_MODEL = 5


def resolve_seed(rng: np.random.Generator | int | None) -> int:
    """The run's integer seed: ``rng`` itself if an int, else one drawn from ``rng``/entropy."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative int, a Generator or None; got {rng}")
        return int(rng)
    if rng is None or isinstance(rng, np.random.Generator):
        return int(np.random.default_rng(rng).integers(0, 2**63 - 1))
    raise TypeError(f"rng must be a numpy Generator, an int or None; got {type(rng).__name__}")


def derive_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of one random stream of a run, e.g. ``(seed, STREAM_CONTEXT, step, agent)``."""
    return np.random.default_rng([int(seed), int(stream), *(int(k) for k in keys)])
