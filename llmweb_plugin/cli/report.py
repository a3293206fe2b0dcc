"""``llmweb runs`` and ``llmweb report``: list the runs of a collection, report on some of them.

Both open an existing Qdrant collection read-only in spirit: a missing folder or collection is an
error, never created. No embedder is loaded (the vectors are read from Qdrant).

Examples::

    llmweb runs --path ./llmweb-out            # the folder `llmweb run` wrote: reads ./llmweb-out/store
    llmweb runs --path ./web
    llmweb report --path ./web --run r1 --format html --out r1.html
    llmweb report --url http://localhost:6333 --collection llmweb__all-MiniLM-L6-v2 \\
        --run base-0 --run base-1 --run inject-0 --run inject-1 \\
        --group base=base-0,base-1 --group inject=inject-0,inject-1 --format md --out cmp.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._options import add_api_key_option

if TYPE_CHECKING:  # pragma: no cover
    from ..store import WebStore

__all__ = ["add_parser", "find_store_folder", "list_runs", "open_existing_store",
           "save_run_settings", "stored_run_settings"]

logger = logging.getLogger(__name__)

#: metadata key of a run's first seed record that holds the run's settings
SETTINGS_KEY = "llmweb_settings"  # the same key as report.build.SETTINGS_KEY (a test holds them equal)


def _add_location(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", metavar="DIR",
                       help="a local Qdrant folder, or the --out folder of `llmweb run` (its "
                       "store/ is read) (default: none, give --path or --url)")
    where.add_argument("--url", metavar="URL",
                       help="a Qdrant server, e.g. http://localhost:6333 (default: none)")
    add_api_key_option(p)
    p.add_argument("--collection", metavar="NAME", default=None,
                   help="the collection (default: the only llmweb__* collection there)")


def add_parser(subparsers: Any) -> None:
    """Register ``runs`` and ``report`` on the ``llmweb`` subparsers."""
    p = subparsers.add_parser("runs", help="list the runs in a collection",
                              description="List the runs in a collection: id, agents, steps, "
                              "records, and the collapse norm at the first and last step.")
    _add_location(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_runs)

    p = subparsers.add_parser(
        "report", help="write a diversity report (HTML, Markdown or JSON) of one or more runs",
        description="Diversity report of runs stored in Qdrant: ||D(t)||_F over steps, spread, "
        "cosine distance, Vendi score, distinct-n, MDS of first/last step, examples, settings. "
        "Opens with the collapse verdict, also printed as a line beginning 'verdict:'.")
    _add_location(p)
    p.add_argument("--run", dest="runs", action="append", required=True, metavar="RUN_ID",
                   help="a run to report; repeat to compare runs")
    p.add_argument("--group", action="append", default=None, metavar="NAME=RUN,RUN",
                   help="runs that are replicates of one condition (a band each); repeatable "
                   "(default: one band over all runs)")
    p.add_argument("--format", choices=("html", "md", "json"), default=None,
                   help="output format (default: from --out's suffix, else html)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="output file (default: llmweb-report.html / .md; JSON goes to stdout)")
    p.add_argument("--title", default=None, help="the report's title (default: generated)")
    p.add_argument("--settings", metavar="FILE.json", default=None,
                   help="a JSON object of run settings to show (e.g. models, beta, "
                   "temperature), over those kept with each run (default: each run's own: "
                   "<out>/RUN/settings.json of `llmweb run`, else the copy in the store)")
    p.add_argument("--examples", type=int, default=2, metavar="N",
                   help="example texts per agent at the first and last step "
                   "(default: %(default)s)")
    p.set_defaults(func=_cmd_report)


# ---------------------------------------------------------------------- store opening
def find_store_folder(path: str | os.PathLike[str]) -> Path:
    """The local Qdrant folder at ``path``, or in ``path/store`` (an ``llmweb run --out``).

    Only looks: nothing is created, so a folder that is only read stays as it was.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or neither it nor ``path/store`` holds a
            Qdrant store (its ``meta.json``).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no Qdrant folder at {os.fspath(path)!r} (not a folder); give "
                                "the Qdrant folder (for `llmweb run`: its --out folder or "
                                "<out>/store)")
    for candidate in (folder, folder / "store"):
        if (candidate / "meta.json").is_file() or (candidate / "llmweb-edge.json").is_file():
            return candidate  # a local folder, or an edge one (WebStore(backend="edge"))
    raise FileNotFoundError(
        f"no Qdrant store in {os.fspath(path)!r}: neither {folder / 'meta.json'} nor "
        f"{folder / 'store' / 'meta.json'} exists. Give the folder a WebStore was opened with "
        "(`llmweb run` writes <out>/store), or --url for a server")


@contextmanager
def open_existing_store(
    *, path: str | None = None, url: str | None = None, api_key: str | None = None,
    collection: str | None = None,
) -> Iterator[WebStore]:
    """A :class:`~llmweb_plugin.store.WebStore` over an *existing* collection, without embedder.

    A context manager: the client (and a local folder's lock) is released on exit.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        LookupError: the collection does not exist (or none/several llmweb collections exist
            and ``collection`` is not given).
        StoreLockedError: the folder is open in another process.
    """
    from qdrant_client import QdrantClient

    from ..store import StoreLockedError, WebStore

    if (path is None) == (url is None):
        raise ValueError("give exactly one of --path DIR or --url URL")
    if path is not None:
        path = os.fspath(find_store_folder(path))
        if (Path(path) / "llmweb-edge.json").is_file():  # an edge folder opens through WebStore
            with WebStore(path, embedder=None, collection=collection) as store:
                yield store
            return
        try:
            client = QdrantClient(path=os.fspath(path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(
                    f"the local Qdrant folder {path!r} is open in another process; close it "
                    "first, or use a Qdrant server (--url)") from exc
            raise
        where = f"folder {path!r}"
    else:
        client = QdrantClient(url=url, api_key=api_key or os.environ.get("QDRANT_API_KEY"))
        where = f"server {url!r}"
    try:
        names = sorted(c.name for c in client.get_collections().collections)
        if collection is None:
            ours = [n for n in names  # not the summaries' side collections
                    if n.startswith("llmweb__") and not n.endswith("__llmweb_summaries")]
            if len(ours) != 1:
                raise LookupError(
                    f"{'no' if not ours else 'several'} llmweb collections in {where} "
                    f"(collections: {names or 'none'}); pass --collection NAME")
            collection = ours[0]
        elif collection not in names:
            raise LookupError(f"collection {collection!r} not found in {where} "
                              f"(collections: {names or 'none'})")
        vectors = client.get_collection(collection).config.params.vectors
        if isinstance(vectors, dict):
            if "" not in vectors:
                raise ValueError(f"collection {collection!r} uses named vectors {sorted(vectors)}; "
                                 "it was not written by llmweb")
            vectors = vectors[""]
        if vectors is None:
            raise ValueError(f"collection {collection!r} has no vector configuration")
        store = WebStore(client=client, collection=collection, embedder=None,
                         dim=int(vectors.size), distance=vectors.distance)
        try:
            yield store
        finally:
            store.close()
    finally:
        client.close()


# ---------------------------------------------------------------------- run settings
def _seed_zero_filter(run_id: str) -> Any:
    from qdrant_client import models

    return models.Filter(must=[
        models.FieldCondition(key=f"metadata.{k}", match=models.MatchValue(value=v))
        for k, v in (("run_id", run_id), ("kind", "seed"), ("index", 0))])


def save_run_settings(store: WebStore, run_id: str, settings: Mapping[str, Any]) -> int:
    """Keep a run's settings in the store, beside its records, so a report needs no file.

    They go into the metadata (key ``llmweb_settings``) of the run's seed records with index 0
    (the web's first seed post); a run without seeds keeps none. Returns how many records were
    updated.
    """
    from qdrant_client import models

    from ..report import jsonable

    flt = _seed_zero_filter(run_id)
    n = store.client.count(store.collection, count_filter=flt, exact=True).count
    if n:
        store.client.set_payload(store.collection, payload={SETTINGS_KEY: jsonable(settings)},
                                 points=models.FilterSelector(filter=flt), key="metadata")
    return int(n)


def stored_run_settings(store: WebStore, run_id: str) -> dict[str, Any]:
    """The settings :func:`save_run_settings` kept for ``run_id`` (``{}`` when there are none)."""
    points, _ = store.client.scroll(store.collection, scroll_filter=_seed_zero_filter(run_id),
                                    limit=16, with_payload=True, with_vectors=False)
    for pt in points:
        value = ((pt.payload or {}).get("metadata") or {}).get(SETTINGS_KEY)
        if isinstance(value, dict):
            return dict(value)
    return {}


def _settings_file(path: str | None, folder: Path | None, run_id: str) -> Path | None:
    """``<out>/<run>/settings.json`` of `llmweb run` beside the store folder, if it is there."""
    if path is None or folder is None:
        return None
    for out in dict.fromkeys((Path(path), folder.parent)):
        f = out / run_id / "settings.json"
        if f.is_file():
            return f
    return None


# ---------------------------------------------------------------------- runs
def list_runs(store: WebStore) -> list[dict[str, Any]]:
    """One summary per run: id, agents, steps, record counts, norm at first and last step."""
    import numpy as np

    from ..metrics import step_metrics

    fast = _runs_from_summaries(store)  # O(runs x steps x agents) when they account for all
    if fast is not None:
        return fast
    recs = store.records()  # payloads only: one scroll over the collection
    by_run: dict[str, list[Any]] = defaultdict(list)
    for r in recs:
        by_run[r.run_id].append(r)
    out = []
    for rid in sorted(by_run):
        rs = by_run[rid]
        resp = [r for r in rs if r.kind == "response"]
        steps = sorted({r.step for r in resp})
        row: dict[str, Any] = {
            "run_id": rid, "agents": sorted({r.agent for r in resp}),
            "steps": len(steps), "first_step": steps[0] if steps else None,
            "last_step": steps[-1] if steps else None, "records": len(rs),
            "responses": len(resp), "first_norm": None, "last_norm": None,
        }
        for key, s in (("first_norm", row["first_step"]), ("last_norm", row["last_step"])):
            if s is None:
                continue
            vs = store.records(rid, kind="response", step=s, with_vectors=True)
            V = np.stack([np.asarray(v.vector, dtype=np.float64) for v in vs])
            m = step_metrics(s, V, [v.agent for v in vs])
            row[key] = m.norm if math.isfinite(m.norm) else None
        out.append(row)
    return out


def _runs_from_summaries(store: WebStore) -> list[dict[str, Any]] | None:
    """:func:`list_runs` from the runs' summaries, or ``None`` when they do not account for every
    point of the collection (then every record is read, as before)."""
    from .. import _summaries as S

    cat = S.catalog(store)
    if cat is None or not cat["complete"]:
        S.warn_fallback("no summaries account for every point of the collection", "llmweb runs")
        return None
    out = []
    for rid in sorted(r for r, n in cat["runs"].items() if n > 0):
        summ, why = S.load_run(store, rid)
        if summ is None:
            S.warn_fallback(why, "llmweb runs")
            return None
        resp = S.per_step(summ, ["response"])
        steps = sorted(resp)
        row: dict[str, Any] = {
            "run_id": rid, "agents": sorted({a for ag in resp.values() for a in ag}),
            "steps": len(steps), "first_step": steps[0] if steps else None,
            "last_step": steps[-1] if steps else None, "records": summ.n_records,
            "responses": sum(st.n for ag in resp.values() for st in ag.values()),
            "first_norm": None, "last_norm": None}
        for key, s in (("first_norm", row["first_step"]), ("last_norm", row["last_step"])):
            if s is not None:
                norm = S.step_accumulator(s, resp[s]).metrics().norm
                row[key] = norm if math.isfinite(norm) else None
        out.append(row)
    return out


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _cmd_runs(args: argparse.Namespace) -> int:
    from ..store import StoreLockedError

    folder = _resolve(args, "runs")
    try:
        with open_existing_store(path=folder, url=args.url, api_key=args.api_key,
                                 collection=args.collection) as store:
            rows = list_runs(store)
            collection = store.collection
    except StoreLockedError as exc:
        print(f"llmweb runs: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"collection": collection, "runs": rows}, indent=1))
        return 0
    print(f"collection {collection}: {len(rows)} run(s)")
    if rows:
        head = ["run", "agents", "steps", "records", "responses", "first norm", "last norm"]
        table = [[r["run_id"],
                  (f"{len(r['agents'])} ({', '.join(r['agents'][:4])}"
                   f"{', ...' if len(r['agents']) > 4 else ''})"),
                  "-" if r["first_step"] is None
                  else f"{r['first_step']}-{r['last_step']} ({r['steps']})",
                  str(r["records"]), str(r["responses"]), _fmt(r["first_norm"]),
                  _fmt(r["last_norm"])] for r in rows]
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
        for t in table:
            print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    return 0


def _resolve(args: argparse.Namespace, command: str) -> str | None:
    """``--path`` resolved to the Qdrant folder (say so when it is ``<path>/store``)."""
    if args.path is None:
        return None
    folder = find_store_folder(args.path)
    if folder != Path(args.path):
        print(f"llmweb {command}: reading the store in {folder}", file=sys.stderr)
    return os.fspath(folder)


# ---------------------------------------------------------------------- report
def _run_settings(store: WebStore, path: str | None, folder: str | None, run_id: str,
                  given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's settings: kept in the store, then its settings.json, then ``--settings`` on top."""
    out: dict[str, Any] = {}
    try:
        out.update(stored_run_settings(store, run_id))
    except Exception as exc:  # noqa: BLE001 - a report without settings beats no report
        logger.warning("could not read the settings of run %r from the store: %s", run_id, exc)
    f = _settings_file(path, Path(folder) if folder else None, run_id)
    if f is not None:
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{f} must hold a JSON object of settings")
        out.update(data)
    out.update(given or {})
    return {k: v for k, v in out.items() if v is not None}


def _parse_groups(specs: list[str]) -> dict[str, list[str]] | None:
    if not specs:
        return None
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        runs = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name.strip() or not runs:
            raise ValueError(f"--group {spec!r}: write NAME=RUN1,RUN2")
        groups[name.strip()] = runs
    return groups


def _cmd_report(args: argparse.Namespace) -> int:
    from ..report import DiversityReport
    from ..store import StoreLockedError

    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower() if args.out else ""
        fmt = {".md": "md", ".markdown": "md", ".json": "json"}.get(suffix, "html")
    settings = None
    if args.settings:
        settings = json.loads(Path(args.settings).read_text(encoding="utf-8"))
        if not isinstance(settings, dict):
            raise ValueError(f"--settings {args.settings!r} must hold a JSON object")
    groups = _parse_groups(args.group or [])
    if args.examples < 0:
        raise ValueError(f"--examples must be >= 0; got {args.examples}")
    folder = _resolve(args, "report")
    runs = list(dict.fromkeys(args.runs))
    try:
        with open_existing_store(path=folder, url=args.url, api_key=args.api_key,
                                 collection=args.collection) as store:
            run_settings = {rid: _run_settings(store, args.path, folder, rid, settings)
                            for rid in runs}
            rep = DiversityReport.from_store(store, run_ids=runs, run_settings=run_settings,
                                             groups=groups, n_examples=args.examples,
                                             title=args.title)
    except StoreLockedError as exc:
        print(f"llmweb report: error: {exc}", file=sys.stderr)
        return 2
    for w in rep.warnings:
        print(f"llmweb report: warning: {w}", file=sys.stderr)
    verdict_line = f"verdict: {_one_line(rep.verdict().get('sentence', ''))}"
    if fmt == "json":
        data = rep.to_json()
        text = json.dumps(data, indent=1, allow_nan=False)
        if args.out in (None, "-"):
            print(text)
        else:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"wrote {args.out}", file=sys.stderr)
        print(verdict_line, file=sys.stderr)  # with --format json, stdout is for JSON only
        return 0
    out = Path(args.out or f"llmweb-report.{fmt}")
    if fmt == "html":
        rep.to_html(out)
    else:
        rep.to_markdown(out)
    print(f"wrote {out}", file=sys.stderr)
    print(verdict_line)
    return 0


def _one_line(text: str) -> str:
    """A sentence for one terminal line: newlines and control characters become spaces."""
    return "".join(c if c.isprintable() else " " for c in str(text))
