"""Mitigations as measured experiments: the same web with and without each, over seeds."""

from __future__ import annotations

from .gmm import (
    DEMO_EXTERNAL_POSTS,
    DEMO_HUMAN_POSTS,
    DEMO_PERSONAS,
    DEMO_QUERY_TEMPLATES,
    Effect,
    ExperimentResult,
    GMMArm,
    default_gmm_arms,
    default_web_arms,
    effect_size,
    run_gmm_experiment,
    run_web_experiment,
    simulate_gmm_arm,
)

__all__ = [
    "DEMO_EXTERNAL_POSTS",
    "DEMO_HUMAN_POSTS",
    "DEMO_PERSONAS",
    "DEMO_QUERY_TEMPLATES",
    "Effect",
    "ExperimentResult",
    "GMMArm",
    "default_gmm_arms",
    "default_web_arms",
    "effect_size",
    "run_gmm_experiment",
    "run_web_experiment",
    "simulate_gmm_arm",
]
