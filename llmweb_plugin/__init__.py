"""llmweb: LLM Web Dynamics for the frameworks you already use.

Several LLM agents that read and write one shared retrieval store drift toward one consensus
(network-level model collapse; Wang, Horiguchi, Pang, Priebe, arXiv 2506.15690). llmweb stores
every output with its provenance in a shared Qdrant collection, tracks the paper's collapse metric
``||D(t)||_F`` over time, simulates the paper's interacting Gaussian-mixture proxy, and reports.

``import llmweb_plugin`` pulls in numpy and qdrant-client only; frameworks and models load where
they are used.
"""

from __future__ import annotations

from .embeddings import Embedder, SentenceTransformerEmbedder, default_embedder
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

__version__ = "0.1.0"

__all__ = [
    "GMM_PRESETS",
    "KINDS",
    "WEB_KINDS",
    "AlarmEvent",
    "CollapseMonitor",
    "DiversityReport",
    "Embedder",
    "GMMInjection",
    "GMMWebResult",
    "InteractingGMMWeb",
    "MonitorError",
    "MonitorStats",
    "Record",
    "SentenceTransformerEmbedder",
    "SiloGMM",
    "SiloResult",
    "Spread",
    "StepMetrics",
    "StoreLockedError",
    "WebStore",
    "__version__",
    "collapse_norm",
    "default_embedder",
    "distance_matrix",
    "distinct_n",
    "gmm_preset",
    "mean_cosine_distance",
    "new_run_id",
    "normalized_collapse_norm",
    "spread",
    "step_metrics",
    "vendi_score",
]
