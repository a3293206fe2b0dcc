"""The layout of llmweb_plugin (issue 11): no import cycle, no module over 700 lines.

The import graph is read from the source with ``ast`` (nothing is imported). An edge ``a -> b``
means module ``a`` names project module ``b`` in an import statement: ``from .x import y`` points
to ``x`` (or to ``x.y`` when that is a module); the parent packages Python also initialises are
not counted. Imports run when the module loads (module or class level, ``try``/``if`` blocks) are
*eager* edges and are what a cycle is made of; imports inside functions are *lazy* edges, reported
separately; imports under ``if TYPE_CHECKING:`` never run and are ignored.

Each subpackage of ``llmweb_plugin`` is one room of the layout. Every room, and the package as a
whole, is held to both rules strictly (a new room is checked the moment it exists).
"""

from __future__ import annotations

import ast
import fnmatch
import logging
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "llmweb_plugin"
PACKAGE = "llmweb_plugin"
MAX_LINES = 700
#: The rooms of the layout (every subpackage is held strictly; this pins that none went missing).
FINISHED = frozenset({"cli", "experiments", "proxies", "report", "reproduce", "telemetry", "trend",
                      "web"})


# ---------------------------------------------------------------------------- the graph
def _module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (``__init__`` is the
    package itself)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind: ``"eager"``, ``"lazy"`` or ``"typing"``."""
    found: list[tuple[ast.Import | ast.ImportFrom, str]] = []

    def visit(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, kind))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            kind = "lazy" if kind == "eager" else kind
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, "typing")
            for child in node.orelse:
                visit(child, kind)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, kind)

    visit(tree, "eager")
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: set[str]) -> set[str]:
    """The project modules one import statement names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base_parts = module.split(".") if is_package else module.split(".")[:-1]
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    out = set()
    for name in names:
        parts = name.split(".")
        while parts and ".".join(parts) not in known:  # import a.b.f where f is no module
            parts.pop()
        if parts:
            out.add(".".join(parts))
    return out - {module}


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, set[str]]]:
    """``{"eager": {module: targets}, "lazy": {module: targets}}`` among the package's modules."""
    files = _module_files(root, package)
    known = set(files)
    graph: dict[str, dict[str, set[str]]] = {"eager": {}, "lazy": {}}
    for module, path in files.items():
        for edges in graph.values():
            edges[module] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, kind in _imports(tree):
            if kind == "typing":
                continue
            graph[kind][module] |= _targets(node, module, path.name == "__init__.py", known)
    return graph


def find_cycle(edges: dict[str, set[str]], scope: str) -> list[str] | None:
    """One import cycle among the modules under ``scope`` (``[a, b, ..., a]``), or ``None``."""
    inside = {m for m in edges if m == scope or m.startswith(scope + ".")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m] & inside):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := dfs(t)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(inside):
        if m not in state and (found := dfs(m)):
            return found
    return None


def _merged(graph: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    return {m: graph["eager"][m] | graph["lazy"][m] for m in graph["eager"]}


def _lazy_in(graph: dict[str, dict[str, set[str]]], scope: str) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph["lazy"].items() for t in ts
                  if m.startswith(scope) and t.startswith(scope))


# ---------------------------------------------------------------------------- the rooms
def _scopes() -> list:
    rooms = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert FINISHED <= set(rooms), f"a room of the layout is missing: {sorted(FINISHED - set(rooms))}"
    params = [pytest.param(f"{PACKAGE}.{room}", id=room) for room in rooms]
    return params + [pytest.param(PACKAGE, id="whole-package")]


@pytest.mark.parametrize("scope", _scopes())
def test_no_import_cycle(scope):
    graph = import_graph()
    cycle = find_cycle(graph["eager"], scope)
    assert cycle is None, (
        f"import cycle at load time: {' -> '.join(cycle or [])}; lazy imports in {scope}: "
        f"{_lazy_in(graph, scope)}")


@pytest.mark.parametrize("scope", _scopes())
def test_no_import_cycle_even_through_lazy_imports(scope):
    """A function-level import does not make a cycle safe to keep: neither module can then be
    read without the other (the GMM engines once imported each other this way)."""
    cycle = find_cycle(_merged(import_graph()), scope)
    assert cycle is None, f"import cycle through a lazy import: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize("scope", _scopes())
def test_no_module_over_700_lines(scope):
    long = {m: n for m, path in _module_files(ROOT, PACKAGE).items()
            if (m == scope or m.startswith(scope + "."))
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines (split by concept): {long}"


def test_proxies_engines_do_not_import_each_other_and_numba_stays_lazy():
    graph = import_graph()
    p = f"{PACKAGE}.proxies"
    both = _merged(graph)
    assert f"{p}._numba_engine" not in both[f"{p}._numpy_engine"]
    assert f"{p}._numpy_engine" not in both[f"{p}._numba_engine"]
    # the shared update lives below both engines
    assert f"{p}._shared" in graph["eager"][f"{p}._numpy_engine"]
    assert f"{p}._shared" in graph["eager"][f"{p}._numba_engine"]
    # the compiled engine is reached only from the engine choice, inside a function
    importers = {m for m, ts in both.items() if f"{p}._numba_engine" in ts}
    assert importers == {f"{p}.gmm"}
    assert f"{p}._numba_engine" in graph["lazy"][f"{p}.gmm"]


def test_proxies_public_names_are_pinned_and_reach_the_top_package():
    import llmweb_plugin as lw
    from llmweb_plugin import proxies

    assert proxies.__all__ == [
        "GMM_PRESETS", "GMMInjection", "GMMWebResult", "InteractingGMMWeb", "SiloGMM",
        "SiloResult", "WeightDecayCheck", "gmm_preset", "weight_decay_check"]
    for name in ("GMM_PRESETS", "GMMInjection", "GMMWebResult", "InteractingGMMWeb", "SiloGMM",
                 "SiloResult", "gmm_preset"):
        assert name in lw.__all__ and getattr(lw, name) is getattr(proxies, name), name
    assert sorted(proxies.GMM_PRESETS) == [
        "companion-mirror", "companion-silo", "lwd-fig4", "lwd-fig4-inject", "lwd-fig4-n1000",
        "lwd-fig6"]
    with pytest.raises(TypeError):
        proxies.GMM_PRESETS["mine"] = proxies.InteractingGMMWeb()  # type: ignore[index]


def _isort_order(names: list[str]) -> list[str]:
    """``__all__`` order of the project (ruff RUF022): CONSTANTS, then Classes, then functions."""
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def test_web_public_names_are_pinned_and_each_comes_from_its_module():
    from llmweb_plugin import web
    from llmweb_plugin.web import mitigations

    assert web.__all__ == [
        "CRYPTO_SEEDS", "DEFAULT_PROMPT_TEMPLATE", "PAPER_QUERY", "RETRIEVAL_MODES", "TOPOLOGIES",
        "AgentAnswer", "AgentError", "AgentRequest", "CallableResponder", "ChatModelResponder",
        "ContextDraw", "EchoAgent", "GraphResponder", "Responder", "RunnableResponder",
        "SeedPost", "WebCache", "WebConfig", "WebHook", "WebResult", "as_responder",
        "begin_step", "check_hooks", "derive_rng", "draw_context", "end_step", "k_for",
        "make_config", "message_text", "metrics_from_store", "neighbours", "notify_step",
        "query_vector_for", "resolve_seed", "ring", "run_agent", "run_web", "seed_texts",
        "small_world", "start_run", "visible_web"]
    assert mitigations.__all__ == [
        "ExternalInjection", "HumanSampling", "InjectionStats", "JsonlSink", "PromptVariation",
        "QdrantReviewSink", "QdrantSource", "ReviewItem", "ReviewQueue", "ReviewSink",
        "Variation", "inject_on_alarm"]
    for mod in (web, mitigations):
        assert mod.__all__ == _isort_order(mod.__all__), mod.__name__
        assert [n for n in mod.__all__ if not hasattr(mod, n)] == [], mod.__name__
    home = {name: getattr(getattr(web, name), "__module__", None) for name in web.__all__}
    assert {n: m for n, m in home.items() if m is not None and callable(getattr(web, n))} == {
        **{n: "llmweb_plugin.web.agents" for n in (
            "AgentAnswer", "AgentError", "CallableResponder", "ChatModelResponder", "EchoAgent",
            "GraphResponder", "Responder", "RunnableResponder", "as_responder", "message_text")},
        **{n: "llmweb_plugin.web.hooks" for n in ("AgentRequest", "WebHook", "check_hooks")},
        **{n: "llmweb_plugin.web.config" for n in ("WebConfig", "k_for", "make_config")},
        **{n: "llmweb_plugin.web.topology" for n in ("neighbours", "ring", "small_world")},
        **{n: "llmweb_plugin.web.rng" for n in ("derive_rng", "resolve_seed")},
        **{n: "llmweb_plugin.web.retrieval" for n in (
            "ContextDraw", "WebCache", "draw_context", "query_vector_for", "visible_web")},
        **{n: "llmweb_plugin.web.step" for n in (
            "begin_step", "end_step", "metrics_from_store", "notify_step", "run_agent",
            "start_run")},
        **{n: "llmweb_plugin.web.loop" for n in ("WebResult", "run_web")},
        **{n: "llmweb_plugin.web.seeds" for n in ("SeedPost", "seed_texts")},
    }
    assert len(web.CRYPTO_SEEDS) == 20 and web.PAPER_QUERY.endswith("prospects of Bitcoin.")


def test_web_imports_point_down_to_the_core_and_mitigations_build_on_hooks_only():
    graph = _merged(import_graph())
    w = f"{PACKAGE}.web"
    outside = {t for m, ts in graph.items() if m.startswith(w) for t in ts if not t.startswith(w)}
    assert outside == {f"{PACKAGE}.{m}" for m in ("metrics", "monitor", "store")}
    m = f"{w}.mitigations"
    uses = {t for src, ts in graph.items() if src.startswith(m) for t in ts
            if t.startswith(w) and not t.startswith(m)}
    assert uses == {f"{w}.hooks"}  # never the loop or a step
    for base in ("hooks", "rng", "seeds", "topology"):
        assert {t for t in graph[f"{w}.{base}"] if t.startswith(w)} == set(), base
    assert {t for t in graph[f"{w}.step"] if t.startswith(w)} == {
        f"{w}.{x}" for x in ("agents", "config", "hooks", "retrieval", "rng")}
    importers_of_loop = {src for src, ts in graph.items() if f"{w}.loop" in ts}
    assert importers_of_loop == {w}


def test_web_models_public_names_are_pinned_and_stay_out_of_the_package_import():
    """The local models are a room of their own inside ``web`` (like ``web.mitigations``): they
    build on nothing else of the web, and ``web`` (hence ``import llmweb_plugin``) never imports
    them, since they pull in langchain-core and, lazily, torch."""
    pytest.importorskip("langchain_core")
    from llmweb_plugin.web import models

    assert models.__all__ == [
        "DEFAULT_MODEL", "MIN_SENTENCE_CHARS", "MODELS", "PERSONAS", "LoadedModel",
        "LocalChatModel", "LocalModelSpec", "ModelNotInstalledError", "default_cache_root",
        "find_package_dir", "first_sentence_end", "load_local_model", "local_agents",
        "local_chat_model", "model_cache_folder", "unload_local_models"]
    assert models.__all__ == _isort_order(models.__all__)
    m = f"{PACKAGE}.web.models"
    home = {n: getattr(models, n).__module__.removeprefix(m + ".") for n in models.__all__
            if callable(getattr(models, n))}
    assert home == {
        "LoadedModel": "loading", "LocalChatModel": "chat", "LocalModelSpec": "specs",
        "ModelNotInstalledError": "specs", "default_cache_root": "weights",
        "find_package_dir": "weights", "first_sentence_end": "generation",
        "load_local_model": "loading", "local_agents": "factories",
        "local_chat_model": "factories", "model_cache_folder": "weights",
        "unload_local_models": "loading"}
    graph = _merged(import_graph())
    assert {t for src, ts in graph.items() if src.startswith(m) for t in ts
            if not t.startswith(m)} == set()
    assert {src for src, ts in graph.items() if not src.startswith(m)
            and any(t.startswith(m) for t in ts)} == {f"{PACKAGE}.cli.experiment",
                                                      f"{PACKAGE}.cli.run",
                                                      f"{PACKAGE}.reproduce._web_runs"}


def test_report_data_flows_one_way_and_renderers_never_import_the_report():
    graph = _merged(import_graph())
    r = f"{PACKAGE}.report"
    inside = {m: {t for t in ts if t.startswith(r + ".")} for m, ts in graph.items()
              if m.startswith(r + ".")}
    assert inside[f"{r}.data"] == set() and graph[f"{r}.data"] == set()  # numpy only
    for leaf in ("plots", "tables", "render_html", "render_markdown"):
        assert inside[f"{r}.{leaf}"] <= {f"{r}.data", f"{r}.tables"}, leaf
    assert {m for m, ts in graph.items() if f"{r}.diversity" in ts} == {r}
    # the summaries' report (issue 13) reuses build's helpers; both are reached from diversity
    assert {m for m, ts in graph.items() if f"{r}.build" in ts} == {f"{r}.diversity",
                                                                     f"{r}.summarised"}
    assert {m for m, ts in graph.items() if f"{r}.summarised" in ts} == {f"{r}.diversity"}
    # plots and renderers are reached only from the report's methods, inside functions
    graph_eager = import_graph()["eager"]
    for leaf in ("plots", "render_html", "render_markdown"):
        assert {m for m, ts in graph_eager.items() if f"{r}.{leaf}" in ts} == set(), leaf
    # the report does not import the package that imports it
    assert not {t for m, ts in graph.items() if m.startswith(r) for t in ts if t == PACKAGE}


def test_report_and_experiments_public_names_are_pinned():
    import llmweb_plugin as lw
    from llmweb_plugin import experiments, report

    assert report.__all__ == [
        "RATIO_RULE", "SCHEMA", "SERIES", "DiversityReport", "FirstLastRatio", "MDSResult",
        "ReportData", "RunReport", "classical_mds", "classical_mds_full", "first_last_ratio",
        "jsonable"]
    assert experiments.__all__ == [
        "DEMO_EXTERNAL_POSTS", "DEMO_HUMAN_POSTS", "DEMO_PERSONAS", "DEMO_QUERY_TEMPLATES",
        "Effect", "ExperimentResult", "GMMArm", "GMMArmRun", "HooksFactory", "default_gmm_arms",
        "default_web_arms", "effect_size", "run_gmm_experiment", "run_web_experiment",
        "simulate_gmm_arm"]
    for mod in (report, experiments):  # the pinned lists are in the project's RUF022 order
        assert [n for n in mod.__all__ if not hasattr(mod, n)] == [], mod.__name__
    assert lw.DiversityReport is report.DiversityReport and "DiversityReport" in lw.__all__
    assert report.first_last_ratio([2.0, 2.0, 0.5, 0.5]).ratio == 0.25  # w = max(2, m // 4)


def test_experiments_use_only_public_names_of_other_rooms():
    """No ``from ..proxies._shared import _draw...`` or ``web._validate()`` from outside a room:
    the GMM arm's loop uses :mod:`llmweb_plugin.proxies.steps`."""
    e = ROOT / "experiments"
    private = []
    for path in sorted(e.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level != 1 \
                    and node.module != "__future__":
                parts = (node.module or "").split(".")
                names = [a.name for a in node.names]
                private += [f"{path.name}: {node.module}.{n}" for n in names
                            if n.startswith("_") or any(p.startswith("_") for p in parts)]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                private.append(f"{path.name}: .{node.attr}")
    assert private == []


# ---------------------------------------------------------------------------- the core
#: Modules directly under ``llmweb_plugin/`` still waiting for their room (other moves of issue
#: 11); the core checks skip them. Drop a pattern when its modules have moved.
PENDING_CORE: tuple[str, ...] = ()
#: Rooms that belong to the framework-free core (public face: the room's ``__init__``).
CORE_ROOMS = ("trend",)


def _core_modules() -> set[str]:
    """The framework-free core: the modules directly under ``llmweb_plugin/`` (not the package's
    ``__init__``, which gathers every room) and the core rooms, minus the pending modules."""
    top = {f"{PACKAGE}.{p.stem}" for p in ROOT.glob("*.py") if p.name != "__init__.py"
           and not any(fnmatch.fnmatch(p.name, pat) for pat in PENDING_CORE)}
    rooms = {m for m in _module_files(ROOT, PACKAGE)
             if any(m == f"{PACKAGE}.{r}" or m.startswith(f"{PACKAGE}.{r}.") for r in CORE_ROOMS)}
    return top | rooms


def test_core_has_no_module_over_700_lines():
    files = _module_files(ROOT, PACKAGE)
    long = {m: n for m in sorted(_core_modules())
            if (n := len(files[m].read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"core modules over {MAX_LINES} lines (split by concept): {long}"


def test_core_has_no_import_cycle_and_imports_only_the_core():
    """Imports point down: the core never reaches a room above it (web and its local models,
    report, experiments, proxies, cli), not even lazily, and no two core modules need each
    other."""
    core = _core_modules()
    graph = import_graph()
    for kind in ("eager", "lazy"):
        above = {m: sorted(ts - core) for m, ts in graph[kind].items() if m in core and ts - core}
        assert above == {}, f"{kind} imports from the core to modules above it: {above}"
    within = {m: ts & core for m, ts in _merged(graph).items() if m in core}
    cycle = find_cycle(within, PACKAGE)
    assert cycle is None, f"import cycle in the core: {' -> '.join(cycle or [])}"


def test_core_private_modules_are_reached_only_through_their_public_face():
    """``store``, ``monitor`` and ``trend`` are the faces; their private parts are imported by
    nothing else in the package (tests may reach in)."""
    graph = _merged(import_graph())
    importers = {t: sorted(m for m, ts in graph.items() if t in ts)
                 for t in (f"{PACKAGE}._record", f"{PACKAGE}._local_folder",
                           f"{PACKAGE}._ingest", f"{PACKAGE}._validate")}
    assert importers == {
        f"{PACKAGE}._record": [f"{PACKAGE}.store"],
        f"{PACKAGE}._local_folder": [f"{PACKAGE}.store"],
        f"{PACKAGE}._ingest": [f"{PACKAGE}.monitor"],
        f"{PACKAGE}._validate": [f"{PACKAGE}.monitor"],
    }
    t = f"{PACKAGE}.trend"
    from_outside = {m: sorted(x for x in ts if x.startswith(t + "."))
                    for m, ts in graph.items() if not m.startswith(t) and any(
                        x.startswith(t + ".") for x in ts)}
    assert from_outside == {}, f"modules importing trend's private parts: {from_outside}"


def test_core_public_names_are_pinned_and_reach_the_top_package():
    import llmweb_plugin as lw
    from llmweb_plugin import monitor, store, trend

    assert store.__all__ == ["KINDS", "RESERVED_METADATA", "WEB_KINDS", "Record",
                             "StoreLockedError", "WebStore", "point_id"]
    assert monitor.__all__ == ["AlarmEvent", "CollapseMonitor", "MonitorError", "MonitorStats",
                               "new_run_id"]
    assert trend.__all__ == [
        "CONVERGENCE_METRICS", "DIVERSITY_METRICS", "HEADLINE_VERDICTS", "MIN_STEPS", "VERDICTS",
        "CollapseTrend", "CollapseVerdict", "PooledTrend", "collapse_trend", "collapse_trends",
        "collapse_verdict", "pooled_trend", "window_means"]
    for face in (store, monitor, trend):
        assert [n for n in face.__all__ if not hasattr(face, n)] == [], face.__name__
        shared = [n for n in face.__all__ if n in lw.__all__]
        assert [n for n in shared if getattr(lw, n) is not getattr(face, n)] == [], face.__name__
    # the worker is part of the monitor: one class, and the logger name users filter on
    from llmweb_plugin import _ingest

    assert monitor.CollapseMonitor._run.__module__ == f"{PACKAGE}._ingest"
    assert _ingest.logger is logging.getLogger(f"{PACKAGE}.monitor")
    # a stored record keeps its id wherever the code that computes it lives
    assert store.point_id("r", "a", 1, "response", 0) == "d39b4001-ba10-5d50-8c1d-778da7abe63a"


# ---------------------------------------------------------------------------- the checker itself
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_graph_sees_eager_lazy_and_typing_imports(tmp_path):
    _write(tmp_path / "pkg", {
        "__init__.py": "from .a import A\n",
        "a.py": """
            from typing import TYPE_CHECKING
            import pkg.sub.c
            from . import b
            if TYPE_CHECKING:
                from .sub import d
            else:
                import os
            A = 1
            """,
        "b.py": """
            from .sub.c import helper
            def f():
                from .a import A
                return A
            """,
        "sub/__init__.py": "",
        "sub/c.py": "from ..b import nothing_module\nfrom .. import a as _a\n",
        "sub/d.py": "from pkg import sub\nclass K:\n    from pkg.sub import c\n",
    })
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["eager"] == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.c", "pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b", "pkg.a"},
        "pkg.sub.d": {"pkg.sub", "pkg.sub.c"},
    }
    assert graph["lazy"]["pkg.b"] == {"pkg.a"}
    assert sum(len(t) for t in graph["lazy"].values()) == 1
    assert find_cycle(graph["eager"], "pkg") == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    assert find_cycle(graph["eager"], "pkg.sub") is None
    assert find_cycle(graph["eager"], "pkg.sub.d") is None


def test_lazy_only_cycle_is_reported_only_through_lazy_edges(tmp_path):
    _write(tmp_path / "pkg", {
        "__init__.py": "",
        "x.py": "from .y import Y\nX = 1\n",
        "y.py": "Y = 2\ndef f():\n    from .x import X\n    return X\n",
    })
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert find_cycle(graph["eager"], "pkg") is None
    assert find_cycle(_merged(graph), "pkg") == ["pkg.x", "pkg.y", "pkg.x"]
    assert _lazy_in(graph, "pkg") == ["pkg.y -> pkg.x"]
