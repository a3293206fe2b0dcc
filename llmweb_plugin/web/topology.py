"""Who reads whom: the topology of an agent web.

With the paper's ``"full"`` topology every agent reads every post; with another one an agent reads
its own posts and those of the agents it is connected to (seeds and injected documents always).

Example:
    >>> from llmweb_plugin.web import neighbours
    >>> {a: sorted(n) for a, n in neighbours(["a", "b", "c", "d"], "ring").items()}
    {'a': ['b', 'd'], 'b': ['a', 'c'], 'c': ['b', 'd'], 'd': ['a', 'c']}
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["TOPOLOGIES", "Neighbours", "check_agents", "neighbours", "ring", "small_world"]

TOPOLOGIES: tuple[str, ...] = ("full", "ring", "small_world")

Neighbours = dict[str, frozenset[str]]


def check_agents(agents: Sequence[str]) -> list[str]:
    """The agent names as a list; ``ValueError`` if empty, not strings or repeated."""
    names = list(agents)
    if not names:
        raise ValueError("agents is empty; an LLM web needs at least one agent")
    for a in names:
        if not isinstance(a, str) or not a:
            raise ValueError(f"agent names must be non-empty strings; got {a!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"agent names must be unique; got {names}")
    return names


def ring(agents: Sequence[str]) -> Neighbours:
    """Each agent connected to the one before and after it (in the given order, wrapping)."""
    names = check_agents(agents)
    n = len(names)
    return {a: frozenset({names[(i - 1) % n], names[(i + 1) % n]} - {a})
            for i, a in enumerate(names)}


def small_world(agents: Sequence[str], *, k: int = 2, p: float = 0.25,
                rng: np.random.Generator | int | None = None) -> Neighbours:
    """A Watts-Strogatz small-world graph (undirected).

    Start from a ring lattice where each agent is connected to its ``k`` nearest agents
    (``k / 2`` on each side), then rewire each lattice edge's far end with probability ``p`` to an
    agent chosen uniformly among those it is not yet connected to.

    Args:
        agents: the agent names, in ring order.
        k: even number of lattice neighbours, ``2 <= k < len(agents)``.
        p: rewiring probability in ``[0, 1]``.
        rng: seed or generator.
    """
    names = check_agents(agents)
    n = len(names)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2 or k % 2:
        raise ValueError(f"small_world k must be an even integer >= 2; got {k!r}")
    if k >= n:
        raise ValueError(f"small_world needs k < number of agents; got k={k} with {n} agents "
                         "(use topology='full' for a complete graph)")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"small_world p must be in [0, 1]; got {p}")
    gen = np.random.default_rng(rng)
    adj: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for j in range(1, k // 2 + 1):
            adj[i].add((i + j) % n)
            adj[(i + j) % n].add(i)
    for j in range(1, k // 2 + 1):
        for i in range(n):
            u, v = i, (i + j) % n
            if v not in adj[u] or gen.random() >= p:
                continue
            choices = [w for w in range(n) if w != u and w not in adj[u]]
            if not choices:
                continue
            w = choices[int(gen.integers(len(choices)))]
            adj[u].discard(v)
            adj[v].discard(u)
            adj[u].add(w)
            adj[w].add(u)
    return {names[i]: frozenset(names[j] for j in adj[i]) for i in range(n)}


def neighbours(agents: Sequence[str], topology: Any = "full", *,
               rng: np.random.Generator | int | None = None) -> Neighbours:
    """Whose posts each agent reads, besides its own: ``{agent: frozenset(other agents)}``.

    Args:
        agents: the agent names.
        topology: ``"full"`` (everyone reads everyone, the paper), ``"ring"``,
            ``"small_world"`` (Watts-Strogatz, ``k=2, p=0.25``; call :func:`small_world` for
            other parameters and pass its result), a mapping ``{agent: agents it reads}``
            (directed; agents left out read no other agent), or an ``(n, n)`` 0/1 matrix in the
            order of ``agents`` where entry ``[i, j]`` says agent i reads agent j.
        rng: seed or generator for ``small_world``.

    Raises:
        ValueError: an unknown topology name, unknown agent names, or a matrix of the wrong shape.
    """
    names = check_agents(agents)
    if isinstance(topology, str):
        if topology == "full":
            return {a: frozenset(names) - {a} for a in names}
        if topology == "ring":
            return ring(names)
        if topology == "small_world":
            return small_world(names, rng=rng)
        raise ValueError(f"unknown topology {topology!r}; use one of {TOPOLOGIES}, a mapping "
                         "{agent: [agents it reads]}, or an (n, n) adjacency matrix")
    if isinstance(topology, Mapping):
        known = set(names)
        unknown = {str(a) for a in topology} - known
        out: Neighbours = {a: frozenset() for a in names}
        for a, reads in topology.items():
            if isinstance(reads, str):
                reads = [reads]
            reads = set(reads)
            unknown |= {str(b) for b in reads} - known
            if a in known:
                out[a] = frozenset(reads & known) - {a}
        if unknown:
            raise ValueError(f"topology names unknown agents {sorted(unknown)}; the agents are "
                             f"{names}")
        return out
    try:
        M = np.asarray(topology, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"topology must be a name, a mapping or an adjacency matrix; got "
                         f"{type(topology).__name__}") from None
    n = len(names)
    if M.shape != (n, n):
        raise ValueError(f"adjacency matrix has shape {M.shape}; expected ({n}, {n}) for the "
                         f"agents {names}")
    if not np.all(np.isfinite(M)):
        raise ValueError("adjacency matrix has non-finite entries")
    return {a: frozenset(names[j] for j in range(n) if j != i and M[i, j] != 0)
            for i, a in enumerate(names)}
