"""The agent web: the paper's dynamics (arXiv 2506.15690, Algorithm 1), framework-free.

Modules, top-down (each imports only those below it):

* :mod:`.loop`: :func:`run_web`, the web as a plain sequential loop, and :class:`WebResult`;
* :mod:`.step`: one step's pieces, which ``llmweb_langgraph.create_web_graph`` runs as graph
  nodes: :func:`start_run`, :func:`begin_step`, :func:`run_agent`, :func:`end_step`;
* :mod:`.retrieval`: what an agent reads (:func:`visible_web`, :func:`draw_context`,
  :class:`WebCache`);
* :mod:`.config`: :class:`WebConfig`, :func:`make_config`, the paper's query, ``k_for``;
* :mod:`.topology`: who reads whom (:func:`neighbours`, :func:`ring`, :func:`small_world`);
* :mod:`.rng`: one seed per run, one generator per draw (:func:`derive_rng`);
* :mod:`.agents`: whatever a user has (chat model, runnable, graph, callable) as a
  :class:`Responder`; :class:`EchoAgent`, an instant fake;
* :mod:`.hooks`: :class:`AgentRequest` and :class:`WebHook`, where mitigations plug in;
* :mod:`.seeds`: the 20 seed posts ``A(0)`` (:data:`CRYPTO_SEEDS`);
* :mod:`llmweb_plugin.web.mitigations`: external injection, prompt variation, human review.

``import llmweb_plugin.web`` needs numpy and qdrant-client only; frameworks load where used.

Example (a whole run: ``examples/01_agent_web.py``):
    >>> from llmweb_plugin.web import make_config
    >>> cfg = make_config(["a", "b", "c", "d"], topology="ring", n_steps=2, responses_per_step=2)
    >>> len(cfg.seeds), sorted(cfg.resolve_topology(seed=0)["a"]), cfg.post_agents(
    ...     cfg.resolve_topology(seed=0), "a")
    (20, ['b', 'd'], ['a', 'b', 'd'])
"""

from __future__ import annotations

from .agents import (
    AgentAnswer,
    AgentError,
    CallableResponder,
    ChatModelResponder,
    EchoAgent,
    GraphResponder,
    Responder,
    RunnableResponder,
    as_responder,
    message_text,
)
from .config import (
    DEFAULT_PROMPT_TEMPLATE,
    PAPER_QUERY,
    RETRIEVAL_MODES,
    WebConfig,
    k_for,
    make_config,
)
from .hooks import AgentRequest, WebHook, check_hooks
from .loop import WebResult, run_web
from .retrieval import ContextDraw, WebCache, draw_context, query_vector_for, visible_web
from .rng import derive_rng, resolve_seed
from .seeds import CRYPTO_SEEDS, SeedPost, seed_texts
from .step import begin_step, end_step, metrics_from_store, notify_step, run_agent, start_run
from .topology import TOPOLOGIES, neighbours, ring, small_world

__all__ = [
    "CRYPTO_SEEDS",
    "DEFAULT_PROMPT_TEMPLATE",
    "PAPER_QUERY",
    "RETRIEVAL_MODES",
    "TOPOLOGIES",
    "AgentAnswer",
    "AgentError",
    "AgentRequest",
    "CallableResponder",
    "ChatModelResponder",
    "ContextDraw",
    "EchoAgent",
    "GraphResponder",
    "Responder",
    "RunnableResponder",
    "SeedPost",
    "WebCache",
    "WebConfig",
    "WebHook",
    "WebResult",
    "as_responder",
    "begin_step",
    "check_hooks",
    "derive_rng",
    "draw_context",
    "end_step",
    "k_for",
    "make_config",
    "message_text",
    "metrics_from_store",
    "neighbours",
    "notify_step",
    "query_vector_for",
    "resolve_seed",
    "ring",
    "run_agent",
    "run_web",
    "seed_texts",
    "small_world",
    "start_run",
    "visible_web",
]
