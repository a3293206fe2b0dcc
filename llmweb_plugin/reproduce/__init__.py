"""Reproduce the published results llmweb builds on, with bands and an explicit comparison.

Filled in by the reproduce issue: targets, :func:`reproduce`, the ``llmweb reproduce`` command.
"""

from __future__ import annotations

from ._core import Claim, Outcome, PublishedClaim, load_published

__all__ = ["Claim", "Outcome", "PublishedClaim", "load_published"]
