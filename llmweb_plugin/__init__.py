"""llmweb: LLM Web Dynamics for the frameworks you already use.

Several LLM agents that read and write one shared retrieval store drift toward one consensus
(network-level model collapse; Wang, Horiguchi, Pang, Priebe, arXiv 2506.15690). llmweb stores
every output with its provenance in a shared Qdrant collection, tracks the paper's collapse metric
``||D(t)||_F`` over time, simulates the paper's interacting Gaussian-mixture proxy, and reports.

``import llmweb_plugin`` pulls in numpy and qdrant-client only; frameworks and models load where
they are used. ``llmweb_plugin.reproduce`` (the published results, reproduced) loads on first use;
the package is callable: ``lw.reproduce("lwd-fig4")`` is ``lw.reproduce.reproduce("lwd-fig4")``.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .embeddings import Embedder, SentenceTransformerEmbedder, default_embedder
from .evidence import (
    NearDuplicates,
    SharedNgram,
    TextEvidence,
    near_duplicate_share,
    shared_ngrams,
    text_evidence,
)
from .metrics import (
    Spread,
    StepMetrics,
    collapse_norm,
    distance_matrix,
    distinct_n,
    mean_cosine_distance,
    normalized_collapse_norm,
    spread,
    step_metrics,
    vendi_score,
)
from .monitor import AlarmEvent, CollapseMonitor, MonitorError, MonitorStats, new_run_id
from .proxies import (
    GMM_PRESETS,
    GMMInjection,
    GMMWebResult,
    InteractingGMMWeb,
    SiloGMM,
    SiloResult,
    gmm_preset,
)
from .report import DiversityReport
from .store import KINDS, WEB_KINDS, Record, StoreLockedError, WebStore
from .trend import (
    CollapseTrend,
    CollapseVerdict,
    PooledTrend,
    collapse_trend,
    collapse_trends,
    collapse_verdict,
    pooled_trend,
    window_means,
)

__all__ = [
    "GMM_PRESETS",
    "KINDS",
    "WEB_KINDS",
    "AlarmEvent",
    "CollapseMonitor",
    "CollapseTrend",
    "CollapseVerdict",
    "DiversityReport",
    "Embedder",
    "GMMInjection",
    "GMMWebResult",
    "InteractingGMMWeb",
    "MonitorError",
    "MonitorStats",
    "NearDuplicates",
    "PooledTrend",
    "Record",
    "SentenceTransformerEmbedder",
    "SharedNgram",
    "SiloGMM",
    "SiloResult",
    "Spread",
    "StepMetrics",
    "StoreLockedError",
    "TextEvidence",
    "WebStore",
    "__version__",
    "collapse_norm",
    "collapse_trend",
    "collapse_trends",
    "collapse_verdict",
    "default_embedder",
    "distance_matrix",
    "distinct_n",
    "gmm_preset",
    "mean_cosine_distance",
    "near_duplicate_share",
    "new_run_id",
    "normalized_collapse_norm",
    "pooled_trend",
    "reproduce",
    "shared_ngrams",
    "spread",
    "step_metrics",
    "text_evidence",
    "vendi_score",
    "window_means",
]


def __getattr__(name: str) -> Any:
    """``lw.reproduce``: the subpackage, imported on first use (it is callable)."""
    if name == "reproduce":
        import importlib

        return importlib.import_module(f"{__name__}.reproduce")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
