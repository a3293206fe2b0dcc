"""Mitigations as measured experiments: the same web with and without each, over seeds.

Two proxies, one result type (:class:`ExperimentResult`): :func:`run_gmm_experiment` runs the
interacting Gaussian-mixture proxy with the mitigations' analogues (:class:`GMMArm`: external
injection, and prompt variation and human sampling as analogues); :func:`run_web_experiment`
runs the LLM web itself with the mitigations' hooks. Effect sizes compare each arm with a
baseline arm over the last ``window`` steps, paired by seed (:class:`Effect`).

Modules, top-down (each imports only those below it):

* :mod:`.defaults`: the demo arms (:func:`default_gmm_arms`, :func:`default_web_arms`) and the
  hand-written demo texts;
* :mod:`.gmm`: :class:`GMMArm`, :func:`simulate_gmm_arm`, :func:`run_gmm_experiment` (built
  on :mod:`llmweb_plugin.proxies.steps`);
* :mod:`.web`: :func:`run_web_experiment` (loads :mod:`llmweb_plugin.web` when it runs);
* :mod:`.result`: :class:`ExperimentResult` (JSON, Markdown, plot);
* :mod:`.effects`: :class:`Effect`, :func:`effect_size`; :mod:`.checks`: shared argument checks.

Example:
    >>> from llmweb_plugin.proxies import InteractingGMMWeb
    >>> web = InteractingGMMWeb(n_agents=3, n_steps=6)
    >>> res = run_gmm_experiment({"none": GMMArm(), "inject": GMMArm(injection=9)}, web=web,
    ...                          seeds=range(3), window=2)
    >>> res.norms["none"].shape, sorted(res.effects)
    ((3, 7), ['inject'])
"""

from __future__ import annotations

from .defaults import (
    DEMO_EXTERNAL_POSTS,
    DEMO_HUMAN_POSTS,
    DEMO_PERSONAS,
    DEMO_QUERY_TEMPLATES,
    default_gmm_arms,
    default_web_arms,
)
from .effects import Effect, effect_size
from .gmm import GMMArm, GMMArmRun, run_gmm_experiment, simulate_gmm_arm
from .result import ExperimentResult
from .web import HooksFactory, run_web_experiment

__all__ = [
    "DEMO_EXTERNAL_POSTS",
    "DEMO_HUMAN_POSTS",
    "DEMO_PERSONAS",
    "DEMO_QUERY_TEMPLATES",
    "Effect",
    "ExperimentResult",
    "GMMArm",
    "GMMArmRun",
    "HooksFactory",
    "default_gmm_arms",
    "default_web_arms",
    "effect_size",
    "run_gmm_experiment",
    "run_web_experiment",
    "simulate_gmm_arm",
]
