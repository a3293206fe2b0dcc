"""Proxies of the LLM web: the interacting Gaussian-mixture web (paper Algorithms 2-3) and the
companion paper's silo model, with named presets.

``import llmweb_plugin.proxies`` needs numpy only; the compiled engine (numba, extra ``[fast]``)
loads when a run asks for it.
"""

from __future__ import annotations

from .gmm import (
    GMM_PRESETS,
    GMMInjection,
    GMMWebResult,
    InteractingGMMWeb,
    WeightDecayCheck,
    gmm_preset,
    weight_decay_check,
)
from .silo import SiloGMM, SiloResult

__all__ = [
    "GMM_PRESETS",
    "GMMInjection",
    "GMMWebResult",
    "InteractingGMMWeb",
    "SiloGMM",
    "SiloResult",
    "WeightDecayCheck",
    "gmm_preset",
    "weight_decay_check",
]
