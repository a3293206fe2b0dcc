"""``llmweb store copy``: move a run or a whole collection between two Qdrant stores.

Usage::

    llmweb store copy big-run/ small-run/ --run r1               # edge folder -> local folder
    llmweb store copy llmweb-out/store http://qdrant:6333 --run r1   # a folder -> a cluster
    llmweb store copy http://qdrant:6333 edge-copy/ --to-backend edge

SRC and DST are each a folder (its backend, ``local`` or ``edge``, is read from its files; an
``llmweb run --out`` folder holds its store in ``store/``) or an ``http(s)://`` URL. A new DST
folder gets ``--to-backend`` (default ``local``: what langchain-qdrant and LlamaIndex open). Ids,
vectors and payloads are copied as stored; copying again gives no duplicates
(:meth:`~llmweb_plugin.store.WebStore.copy_to`). Every argument is checked before anything is
opened or created; a bad one is named in a one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._options import add_api_key_option

__all__ = ["add_parser", "copy_store"]


def add_parser(subparsers: Any) -> None:
    """Register ``llmweb store`` (with its ``copy`` action) on the main parser."""
    p = subparsers.add_parser("store", help="manage Qdrant stores: copy a run between them",
                              description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True,
                               help="what to do with the store (copy)")
    c = actions.add_parser("copy", help="copy a run (or a collection) from SRC to DST",
                           description="Copy a run or a whole collection between two stores "
                           "(folders or URLs), keeping ids, vectors and payloads.")
    c.add_argument("src", metavar="SRC", help="source: a store folder or an http(s) URL")
    c.add_argument("dst", metavar="DST", help="target: a store folder or an http(s) URL")
    c.add_argument("--run", default=None, metavar="RUN",
                   help="the run to copy (default: the whole collection)")
    c.add_argument("--collection", default=None, metavar="NAME",
                   help="the source collection (default: the only llmweb__* one)")
    c.add_argument("--to-collection", default=None, metavar="NAME",
                   help="the target collection (default: the source's name)")
    c.add_argument("--to-backend", default=None, choices=("local", "edge"),
                   help="backend of a new DST folder (default: local; an existing folder "
                   "keeps its own)")
    c.add_argument("--batch", type=int, default=1024, metavar="N",
                   help="points per write (default: %(default)s)")
    add_api_key_option(c)
    c.set_defaults(func=_cmd_copy)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _is_url(where: str) -> bool:
    return where.startswith(("http://", "https://"))


def _source_folder(src: str) -> Path:
    """The store folder SRC names (``SRC`` or ``SRC/store``), or FileNotFoundError."""
    from .._edge import folder_backend

    for cand in (Path(src), Path(src) / "store"):
        if cand.is_dir() and folder_backend(cand) is not None:
            return cand
    raise FileNotFoundError(
        f"SRC {src!r} is not a store: no llmweb-edge.json (edge) or meta.json (local) in it "
        "or in its store/ folder. Give the folder a WebStore was opened with, or a URL")


def _check(args: argparse.Namespace) -> tuple[str, str]:
    """Check every argument before anything is opened; returns (src, dst) as given/resolved."""
    from .._edge import folder_backend

    if isinstance(args.batch, bool) or args.batch < 1:
        raise ValueError(f"--batch must be >= 1; got {args.batch}")
    if args.run is not None and not args.run.strip():
        raise ValueError("--run must name a run (got an empty string)")
    for flag in ("collection", "to_collection"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise ValueError(f"--{flag.replace('_', '-')} must be a collection name (got '')")
    src = args.src if _is_url(args.src) else os.fspath(_source_folder(args.src))
    dst = args.dst
    if _is_url(dst):
        if args.to_backend is not None:
            raise ValueError("--to-backend is for a DST folder; DST is a URL (a server)")
    else:
        if Path(dst).exists() and not Path(dst).is_dir():
            raise ValueError(f"DST {dst!r} is a file, not a folder")
        found = folder_backend(dst) if Path(dst).is_dir() else None
        if found is not None and args.to_backend not in (None, found):
            raise ValueError(f"--to-backend {args.to_backend}: DST {dst!r} already holds a "
                             f"{found!r} store; leave --to-backend out or give a new folder")
        if not _is_url(src) and Path(dst).resolve() == Path(src).resolve():
            raise ValueError(f"SRC and DST are the same folder {src!r}")
    return src, dst


def _open(where: str, api_key: str | None, **kwargs: Any) -> Any:
    from ..store import WebStore

    if _is_url(where):
        return WebStore(url=where, api_key=api_key or os.environ.get("QDRANT_API_KEY"),
                        **kwargs)
    return WebStore(where, **kwargs)


def copy_store(args: argparse.Namespace) -> Any:
    """Run ``llmweb store copy`` with parsed ``args``; returns the :class:`CopyResult`."""
    src_where, dst_where = _check(args)
    with _open(src_where, args.api_key, embedder=None, collection=args.collection) as src:
        if args.run is not None and src.count(args.run) == 0:
            runs = src.runs()
            raise ValueError(f"--run {args.run!r} is not in {src_where!r} (collection "
                             f"{src.collection!r}; runs: {', '.join(runs[:10]) or 'none'})")
        total = src.count(args.run)
        tty = sys.stderr.isatty()

        def progress(n: int) -> None:
            if tty:
                print(f"\rcopied {n}/{total} points", end="", file=sys.stderr, flush=True)

        with _open(dst_where, args.api_key, embedder=None, dim=src.dim,
                   distance=src.distance.value.lower(),
                   collection=args.to_collection or src.collection,
                   **({} if _is_url(dst_where) else {"backend": args.to_backend})) as dst:
            res = src.copy_to(dst, run_id=args.run, batch=args.batch, progress=progress)
            if tty:
                print(file=sys.stderr)
            print(f"copied {res.copied} points ({'run ' + args.run if args.run else 'all runs'}) "
                  f"from {src_where} ({src.backend}, collection {res.source}) to {dst_where} "
                  f"({dst.backend}, collection {res.target}); the target now holds "
                  f"{res.target_count} of them")
    return res


def _cmd_copy(args: argparse.Namespace) -> int:
    copy_store(args)
    return 0
