"""Mitigations of network-level collapse, as agent-web hooks whose effect is measured."""

from __future__ import annotations

from .injection import (
    ExternalInjection,
    HumanSampling,
    JsonlSink,
    PromptVariation,
    QdrantReviewSink,
    QdrantSource,
    ReviewItem,
    ReviewQueue,
    ReviewSink,
    Variation,
    inject_on_alarm,
)

__all__ = [
    "ExternalInjection",
    "HumanSampling",
    "JsonlSink",
    "PromptVariation",
    "QdrantReviewSink",
    "QdrantSource",
    "ReviewItem",
    "ReviewQueue",
    "ReviewSink",
    "Variation",
    "inject_on_alarm",
]
