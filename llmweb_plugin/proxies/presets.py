"""Named configurations of the proxies: the paper's figures and the companion paper's silos."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .gmm import GMMInjection, InteractingGMMWeb
from .silo import SiloGMM

__all__ = ["FIG6_MEANS", "GMM_PRESETS", "gmm_preset"]

#: Fig. 6 means (our choice; the paper does not report them): 11 unit-variance components in
#: d = 1 at -5, -4, ..., 5 (spacing one standard deviation, so neighbours overlap strongly).
FIG6_MEANS = tuple((float(x),) for x in range(-5, 6))

_FIG4 = InteractingGMMWeb(
    n_agents=3, means=((-5.0,), (5.0,)), cov=((1.0,),), dirichlet_alpha=1.0, beta=0.5,
    samples_per_step=3, n_steps=200, n_replicates=5,
)

#: Named configurations (read-only): ``lwd-*`` are :class:`InteractingGMMWeb`, ``companion-*``
#: are :class:`~llmweb_plugin.proxies.SiloGMM`.
GMM_PRESETS: Mapping[str, InteractingGMMWeb | SiloGMM] = MappingProxyType({
    # Paper Fig. 4: n=3, d=1, B=2, means +-5, unit variance, a=1, beta=0.5, L=3, T=200, 5 reps.
    "lwd-fig4": _FIG4,
    # Paper Fig. 6: B=11 (means our choice: -5..5, unit variance), other settings as Fig. 4.
    "lwd-fig6": dataclasses.replace(_FIG4, means=FIG6_MEANS),
    # Performance target: Fig. 4 with n=1000 agents, one replicate.
    "lwd-fig4-n1000": dataclasses.replace(_FIG4, n_agents=1000, n_replicates=1),
    # Fig. 4 with 3 external points per step from a balanced mixture (mitigation demo).
    "lwd-fig4-inject": dataclasses.replace(
        _FIG4, injection=GMMInjection(weights=(0.5, 0.5), n_points=3)
    ),
    # Companion paper (silos): n=30, K=30 means 0..29, sigma 0.2, r=5, no mirroring.
    "companion-silo": SiloGMM(
        n_agents=30, n_components=30, mirror_prob=0.0, n_neighbors=5, rag_size=5,
        n_steps=200, n_replicates=10,
    ),
    # Companion paper: mirroring with probability p = 0.4 slows consensus.
    "companion-mirror": SiloGMM(
        n_agents=30, n_components=30, mirror_prob=0.4, n_neighbors=5, rag_size=5,
        n_steps=200, n_replicates=10,
    ),
})


def gmm_preset(name: str, **overrides: Any) -> InteractingGMMWeb | SiloGMM:
    """The simulator configured as preset ``name``, with optional field overrides.

    Args:
        name: a key of :data:`GMM_PRESETS` (``lwd-fig4``, ``lwd-fig6``, ``lwd-fig4-n1000``,
            ``lwd-fig4-inject``, ``companion-silo``, ``companion-mirror``).
        **overrides: fields to replace, e.g. ``n_replicates=2``.

    Example:
        >>> gmm_preset("lwd-fig4", n_steps=10).n_replicates
        5
    """
    try:
        base = GMM_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(GMM_PRESETS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base
