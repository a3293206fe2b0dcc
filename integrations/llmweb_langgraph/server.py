"""The web graph on LangGraph's own server: the factory ``langgraph.json`` names.

``langgraph dev`` (the in-memory server of ``langgraph-cli[inmem]``) and a LangGraph server
deployment load :func:`make_web_graph` as the graph ``llmweb_web``. The server calls it for each
run (and each state read) with the run's config, compiles what it returns with its own
checkpointer and store, and runs it on its task queue; so a web served this way gets the server's
persistence, its queue and its horizontal scaling, and resumes like any checkpointed graph.

Settings come from the run's ``config["configurable"]`` (keys ``llmweb_*``) over the server's
environment (``LLMWEB_*``, e.g. from ``langgraph.json``'s ``env``):

======================  =======================  ===========================================
configurable            environment              meaning
======================  =======================  ===========================================
``llmweb_agents``       ``LLMWEB_AGENTS``        agents as ``llmweb run --agents`` specs,
                                                 ``NAME=MODULE:ATTR`` (a list, or comma-
                                                 separated); at least two
``llmweb_store``        ``LLMWEB_STORE``         a Qdrant URL (``http(s)://...``; key in
                                                 ``QDRANT_API_KEY``), a folder or ``:memory:``
``llmweb_embedder``     ``LLMWEB_EMBEDDER``      ``MODULE:ATTR`` of an embedder (a class or a
                                                 zero-argument factory); default MiniLM
``llmweb_responses``    ``LLMWEB_RESPONSES``     ``L``, answers per agent per step (default 4)
``llmweb_steps``        ``LLMWEB_STEPS``         ``T``, steps (default 8)
``llmweb_beta``         ``LLMWEB_BETA``          retrieval fraction (default 0.5)
``llmweb_seed``         ``LLMWEB_SEED``          integer seed (default: a fresh one per run)
``llmweb_run_id``       ``LLMWEB_RUN_ID``        fixed run id (default: a fresh one per run)
``llmweb_query``        ``LLMWEB_QUERY``         the query (default: the paper's)
``llmweb_topology``     ``LLMWEB_TOPOLOGY``      ``full``, ``ring`` or ``small_world``
``llmweb_retrieval``    ``LLMWEB_RETRIEVAL``     ``uniform`` or ``similarity``
======================  =======================  ===========================================

Agents, embedder and store name code to import and where data goes, and anyone who can call the
server's API sets a run's configurable (which the server also stores and returns). So those three
are read from the configurable only when the server's operator allows it with
``LLMWEB_CONFIGURABLE_IMPORTS=1``; otherwise a run that sets them is refused with a
``ValueError``. Secrets never go in the configurable: the Qdrant key is read from
``QDRANT_API_KEY`` in the server's environment only.

One process keeps one :class:`~llmweb_plugin.store.WebStore` per store and embedder (an embedded
Qdrant folder is single-process: serve it from one server process, or use a Qdrant server when
the deployment has several) and one graph per settings, built off the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import inspect
import logging
import numbers
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from llmweb_langgraph.web import WebGraph, create_web_graph
from llmweb_plugin.store import WebStore
from llmweb_plugin.web import PAPER_QUERY

__all__ = ["ServerSettings", "make_web_graph", "server_settings", "web_graph_for"]

logger = logging.getLogger(__name__)

GRAPH_ID = "llmweb_web"
DEFAULT_RESPONSES = 4
DEFAULT_STEPS = 8
#: setting -> (configurable key, environment variable)
KEYS: dict[str, tuple[str, str]] = {
    name: (f"llmweb_{name}", f"LLMWEB_{name.upper()}")
    for name in ("agents", "store", "embedder", "responses", "steps", "beta", "seed", "run_id",
                 "query", "topology", "retrieval")
}
#: settings that import code or choose where data goes: from the configurable only if allowed
GUARDED = ("agents", "store", "embedder")
ALLOW_ENV = "LLMWEB_CONFIGURABLE_IMPORTS"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """One web's settings, as read from a run's config and the server's environment.

    Attributes:
        agents: the agent specs ``NAME=MODULE:ATTR``, in order.
        store: a Qdrant URL, a folder or ``":memory:"``.
        embedder: ``MODULE:ATTR`` of the embedder, or ``None`` for the default (MiniLM).
        responses_per_step: ``L``.
        n_steps: ``T``.
        beta: the retrieval fraction.
        seed: the integer seed, or ``None`` for a fresh one per run.
        run_id: a fixed run id, or ``None`` for a fresh one per run.
        query: the query, or ``None`` for the paper's.
        topology: ``full``, ``ring`` or ``small_world``.
        retrieval: ``uniform`` or ``similarity``.
    """

    agents: tuple[str, ...]
    store: str
    embedder: str | None = None
    responses_per_step: int = DEFAULT_RESPONSES
    n_steps: int = DEFAULT_STEPS
    beta: float = 0.5
    seed: int | None = None
    run_id: str | None = None
    query: str | None = None
    topology: str = "full"
    retrieval: str = "uniform"


def _where(name: str) -> str:
    key, env = KEYS[name]
    return f"configurable {key!r} / environment {env}"


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{_where(name)} must be an integer; got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_where(name)} must be an integer; got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{_where(name)} must be >= {minimum}; got {value!r}")
    return int(value)


def _specs(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(s, str) for s in items):
        raise TypeError(f"{_where('agents')} must be agent specs NAME=MODULE:ATTR (a list of "
                         f"strings or one comma-separated string); got {value!r}")
    specs = tuple(s.strip() for item in items for s in item.split(",") if s.strip())
    for spec in specs:
        name, sep, path = spec.partition("=")
        mod, sep2, attr = path.partition(":")
        if not sep or not sep2 or not name.strip() or not mod.strip() or not attr.strip():
            raise ValueError(f"{_where('agents')}: {spec!r} is not NAME=MODULE:ATTR, e.g. "
                             "a=langchain_openai:ChatOpenAI")
    names = [s.partition("=")[0].strip() for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{_where('agents')}: agent names must be unique; got {names}")
    if len(names) < 2:
        raise ValueError(f"{_where('agents')}: give at least two agents (got {len(names)}); the "
                         "collapse metric compares agents")
    return specs


def server_settings(configurable: Mapping[str, Any] | None = None,
                    environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Read and check one web's settings: the configurable's ``llmweb_*`` keys over ``LLMWEB_*``.

    Args:
        configurable: the run's ``config["configurable"]``.
        environ: the environment (default ``os.environ``).

    Returns:
        The checked :class:`ServerSettings`.

    Raises:
        ValueError: a missing agent list or store, a malformed or out-of-range value (the
            message names the configurable key and the environment variable), or agents, store
            or embedder in the configurable without ``LLMWEB_CONFIGURABLE_IMPORTS=1`` in the
            environment.
        TypeError: a value of the wrong type (e.g. ``True`` for a number of steps).
    """
    conf = dict(configurable or {})
    env = os.environ if environ is None else environ
    allow = env.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")
    raw: dict[str, Any] = {}
    for name, (key, var) in KEYS.items():
        if conf.get(key) is not None:
            if name in GUARDED and not allow:
                raise ValueError(
                    f"configurable {key!r} names code to import or where data goes, and any API "
                    f"client can set it; set {var} in the server's environment instead, or let "
                    f"clients choose with {ALLOW_ENV}=1 in the server's environment")
            raw[name] = conf[key]
        elif env.get(var, "").strip():
            raw[name] = env[var].strip()
    if "agents" not in raw:
        raise ValueError(f"no agents: set {KEYS['agents'][1]}=NAME=MODULE:ATTR,... (the specs "
                         "of `llmweb run --agents`) in the server's environment")
    if "store" not in raw:
        raise ValueError(f"no store: set {KEYS['store'][1]} to a Qdrant URL (a server or cluster) "
                         "or a folder in the server's environment")
    for name in ("store", "embedder", "run_id", "query", "topology", "retrieval"):
        if name in raw and not isinstance(raw[name], str):
            raise TypeError(f"{_where(name)} must be a string; got {raw[name]!r}")
        if name in raw and not raw[name].strip():
            raise ValueError(f"{_where(name)} must not be empty")
    beta = raw.get("beta", 0.5)
    if isinstance(beta, str):
        try:
            beta = float(beta)
        except ValueError:
            raise ValueError(f"{_where('beta')} must be a number in (0, 1]; got "
                             f"{raw['beta']!r}") from None
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"{_where('beta')} must be a number in (0, 1]; got {beta!r}")
    if not 0 < float(beta) <= 1:
        raise ValueError(f"{_where('beta')} must be a number in (0, 1]; got {beta!r}")
    return ServerSettings(
        agents=_specs(raw["agents"]), store=raw["store"].strip(), embedder=raw.get("embedder"),
        responses_per_step=_int("responses", raw.get("responses", DEFAULT_RESPONSES), 1),
        n_steps=_int("steps", raw.get("steps", DEFAULT_STEPS), 1), beta=float(beta),
        seed=None if raw.get("seed") is None else _int("seed", raw["seed"], 0),
        run_id=raw.get("run_id"), query=raw.get("query"),
        topology=raw.get("topology", "full"), retrieval=raw.get("retrieval", "uniform"))


def _load_embedder(path: str) -> Any:
    mod, sep, attr = path.partition(":")
    if not sep or not mod.strip() or not attr.strip():
        raise ValueError(f"{_where('embedder')}: {path!r} is not MODULE:ATTR, e.g. "
                         "llmweb_plugin.testing:SeededEmbedder")
    obj: Any = importlib.import_module(mod.strip())
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise LookupError(f"{_where('embedder')}: {mod} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type) or inspect.isfunction(obj):
        obj = obj()
    return obj


_lock = threading.Lock()
_stores: dict[tuple[str, str | None], WebStore] = {}
_graphs: dict[ServerSettings, WebGraph] = {}


def _store_for(settings: ServerSettings) -> WebStore:
    key = (settings.store, settings.embedder)
    store = _stores.get(key)
    if store is None:
        embedder = "default" if settings.embedder is None else _load_embedder(settings.embedder)
        where = settings.store
        if where.startswith(("http://", "https://")):
            store = WebStore(url=where, api_key=os.environ.get("QDRANT_API_KEY") or None,
                             embedder=embedder)
        else:
            store = WebStore(where, embedder=embedder)
        _stores[key] = store
    return store


def web_graph_for(settings: ServerSettings) -> WebGraph:
    """The uncompiled web graph of ``settings``: built once per process and settings, reused.

    Reusing it keeps one monitor per run across the server's calls (a run's every step; the
    graph closes it after the run's last step or a failed node, so runs leave no threads behind)
    and one store per folder (an embedded Qdrant folder can be opened once per process). Blocking
    (imports, opening the store, loading models): call it off the event loop.
    """
    from llmweb_plugin.cli.run import load_agent

    with _lock:
        graph = _graphs.get(settings)
        if graph is None:
            agents = dict(load_agent(spec) for spec in settings.agents)
            store = _store_for(settings)
            graph = create_web_graph(
                agents, store=store, query=settings.query or PAPER_QUERY, beta=settings.beta,
                responses_per_step=settings.responses_per_step, n_steps=settings.n_steps,
                retrieval=settings.retrieval, topology=settings.topology,
                run_id=settings.run_id, rng=settings.seed)
            _graphs[settings] = graph
            logger.info("llmweb web graph: %d agents, L=%d, T=%d, store in collection %s",
                        len(agents), settings.responses_per_step, settings.n_steps,
                        store.collection)
        return graph


async def make_web_graph(config: RunnableConfig) -> WebGraph:
    """The graph factory of ``langgraph.json``: the web graph for one run's config.

    The server calls it with the run's config and compiles the returned (uncompiled) graph with
    its own checkpointer. It is a coroutine so that the blocking part (importing agents, opening
    the store, loading the embedder) runs in a worker thread, never on the server's event loop
    (``langgraph dev`` raises on blocking calls there).

    Args:
        config: the run's config; settings in ``config["configurable"]`` (see the module).

    Returns:
        The uncompiled :class:`~llmweb_langgraph.WebGraph`.

    Raises:
        ValueError: bad or missing settings (see :func:`server_settings`).
    """
    settings = server_settings((config or {}).get("configurable"))
    return await asyncio.to_thread(web_graph_for, settings)


@atexit.register
def _close_stores() -> None:
    with _lock:
        for graph in _graphs.values():  # runs paused mid-way: flush their monitors first
            graph.monitors.close()
        for store in _stores.values():
            try:
                store.close()
            except Exception:  # closing at exit must not hide the real exit status
                logger.exception("closing the llmweb store at exit failed")
        _stores.clear()
        _graphs.clear()
