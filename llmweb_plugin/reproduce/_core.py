"""The shapes every reproduction target shares: a published claim, our number for it, the verdict.

A *target* (``lwd-fig4``, ``companion-silo``, ...) is a module in this package with a function
``run(*, replicates: int | None, quick: bool, rng: numpy.random.Generator, **options) -> Outcome``.
It computes our numbers, compares each published claim (read from ``published/<target>.json``,
shipped as package data, with its source) against them, and returns an :class:`Outcome`. The
public entry :func:`llmweb_plugin.reproduce.reproduce` writes ``figure.png``, ``comparison.md`` and
``result.json`` from it.

Rules every target keeps:
- ``agrees`` is decided from the numbers the target computed in this call (never a constant),
  and ``None`` means the claim could not be tested here (say why in ``detail``).
- Intervals are over replicates (percentile band or bootstrap interval, ``interval_kind`` says which).
- ``settings`` holds every knob that changes the numbers, JSON-ready, so a result can be re-run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = ["Claim", "Outcome", "PublishedClaim", "load_published"]


@dataclass(frozen=True, kw_only=True)
class PublishedClaim:
    """One published result, as data.

    Attributes:
        id: short stable key, e.g. ``"below_0.3_by_t25"``.
        text: the claim in words, as the source states it.
        value: the published number or range as text (``"< 0.3 at t = 25"``, ``"13.3 / 8.9 / 8.4"``).
        source: where it is published: paper, arXiv id, figure or table, page.
    """

    id: str
    text: str
    value: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One row of a comparison table: a published claim beside our number.

    Attributes:
        published: the claim as published.
        ours: our estimate in words with its unit, e.g. ``"0.21"`` or ``"collapsing, -41%"``.
        interval: our interval as ``(low, high)`` when there is one.
        interval_kind: what the interval is, e.g. ``"5-95% band over 200 replicates"``.
        agrees: ``True``/``False`` from the numbers computed in this call; ``None`` = not testable.
        detail: how ``agrees`` was decided (the rule, in one sentence), or why it could not be.
        measured: the numbers the decision used (JSON-ready), so a test can re-check it.
    """

    published: PublishedClaim
    ours: str
    agrees: bool | None
    detail: str
    interval: tuple[float, float] | None = None
    interval_kind: str = ""
    measured: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a target's ``run`` returns.

    Attributes:
        target: the target name.
        claims: one :class:`Claim` per published claim, in the published file's order.
        settings: every knob that changes the numbers (JSON-ready), including ``replicates``,
            ``quick`` and the seed.
        series: the curves behind the figure (JSON-ready: lists of floats), e.g. ``{"t": [...],
            "median": [...], "p05": [...], "p95": [...]}``.
        draw: ``draw(path)`` writes the figure as PNG to ``path`` (matplotlib, imported lazily).
        notes: plain sentences for ``comparison.md`` (what differs from the paper's set-up, what
            is a reading where the paper is silent).
    """

    target: str
    claims: tuple[Claim, ...]
    settings: Mapping[str, Any]
    series: Mapping[str, Any]
    draw: Callable[[str], None]
    notes: tuple[str, ...] = ()


def load_published(target: str) -> tuple[PublishedClaim, ...]:
    """The published claims of ``target`` from ``published/<target>.json`` (package data).

    The file is a JSON list of objects with the keys of :class:`PublishedClaim`.

    Raises:
        ValueError: when the target has no published file or the file is malformed.
    """
    name = f"{target}.json"
    folder = resources.files(__package__).joinpath("published")
    path = folder.joinpath(name)
    if not path.is_file():
        raise ValueError(f"no published claims for target {target!r} (expected "
                         f"llmweb_plugin/reproduce/published/{name})")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return tuple(PublishedClaim(**{k: str(row[k]) for k in ("id", "text", "value", "source")})
                     for row in rows)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"published/{name} is malformed: {exc}") from exc
