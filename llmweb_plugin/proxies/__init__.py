"""Proxies of the LLM web: the interacting Gaussian-mixture web and the companion silo model.

Modules, top-down (each imports only those below it):

* :mod:`.presets`: named configurations (``GMM_PRESETS``, :func:`gmm_preset`, ``FIG6_MEANS``);
* :mod:`.steps`: the public pieces of one step, for loops of one's own (the mitigation
  experiments); not exported here;
* :mod:`.gmm`: :class:`InteractingGMMWeb` (paper Algorithms 2-3): parameters, validation, engine
  choice; :class:`GMMInjection`;
* :mod:`._numpy_engine` and :mod:`._numba_engine` (loaded only when a run asks for it, extra
  ``[fast]``): the two engines; :mod:`._reference`: the paper's plain loop, a test baseline;
* :mod:`._shared`: what both engines share (draws, densities, the update's coefficients, the
  growth of ``A``, the result's assembly);
* :mod:`.gmm_result`: :class:`GMMWebResult`; :mod:`.theory`: :func:`weight_decay_check`;
* :mod:`.silo`: :class:`SiloGMM` (the companion paper's RAG sets and silos), :class:`SiloResult`.

``import llmweb_plugin.proxies`` needs numpy only.
"""

from __future__ import annotations

from .gmm import GMMInjection, InteractingGMMWeb
from .gmm_result import GMMWebResult
from .presets import GMM_PRESETS, gmm_preset
from .silo import SiloGMM, SiloResult
from .theory import WeightDecayCheck, weight_decay_check

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
