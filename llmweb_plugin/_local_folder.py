"""The files of a local Qdrant folder, checked before qdrant-client opens it.

qdrant-client's embedded local mode keeps a folder's list of collections in ``meta.json`` and each
collection's points in ``collection/<name>/storage.sqlite``. A damaged ``meta.json`` or a missing
data file would otherwise open as an empty collection: :func:`_check_local_folder` refuses it with
a message that names the file and what to do. (The lock a local folder takes against a second
client is reported by :class:`~llmweb_plugin.store.WebStore` as a ``StoreLockedError``.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_META_FILE = "meta.json"  # qdrant-client's local mode: the list of the folder's collections
_DATA_FILE = "storage.sqlite"  # ... and each collection's points, in collection/<name>/
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_local_folder(folder: Path) -> None:
    """Refuse a damaged local Qdrant folder before qdrant-client opens it.

    qdrant-client reads ``meta.json`` with a bare ``json.load`` and, for every collection it
    lists, opens ``collection/<name>/storage.sqlite``, creating an empty one when the file is
    gone: the records would vanish without a word. Checks the files only (no lock is taken).

    Raises:
        ValueError: ``meta.json`` is unreadable, or a listed collection's data file is missing,
            empty or not an SQLite database; the message names the file and what to do.
    """
    meta_path = folder / _META_FILE
    if not meta_path.exists():
        return
    problem: str | None = None
    meta: Any = None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        problem = str(exc)
    if problem is None and (not isinstance(meta, dict)
                            or not isinstance(meta.get("collections"), dict)):
        problem = 'it has no "collections" mapping'
    if problem is not None:
        raise ValueError(
            f"the local Qdrant folder {os.fspath(folder)!r} is damaged: {os.fspath(meta_path)!r} "
            f"cannot be read as qdrant-client's list of collections ({problem}). Restore it from "
            f"a backup; or delete it and open the store again with the embedder (or dim=) it was "
            f"written with, which reads back the records kept in "
            f"{os.fspath(folder / 'collection')!r}/<collection>/{_DATA_FILE}."
        )
    for name in meta["collections"]:
        cdir = folder / "collection" / str(name)
        data = cdir / _DATA_FILE
        if not data.exists() and (cdir / "storage.dbm").exists():
            continue  # qdrant-client explains its legacy format itself
        try:
            size = data.stat().st_size if data.is_file() else -1
            head = b""
            if size > 0:
                with data.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            size, head = -2, repr(exc).encode()
        if size > 0 and head == _SQLITE_MAGIC:
            continue
        problem = {-1: "is missing", 0: "is empty"}.get(
            size, f"is not an SQLite database (it starts with {head[:16]!r})")
        raise ValueError(
            f"the local Qdrant folder {os.fspath(folder)!r} is damaged: "
            f"{os.fspath(meta_path)!r} lists collection {name!r}, but its data file "
            f"{os.fspath(data)!r} {problem}. Opened as is, the collection would look empty and "
            f"its records would be lost without a word. Restore that file from a backup; or, to "
            f"give those records up, delete the folder {os.fspath(cdir)!r} and the entry "
            f"{name!r} under \"collections\" in {os.fspath(meta_path)!r} (or use a new folder)."
        )


def _unlisted_collections(folder: Path, listed: Iterable[str]) -> list[str]:
    """Collection folders holding a data file that ``meta.json`` does not list."""
    base = folder / "collection"
    if not base.is_dir():
        return []
    known = set(listed)
    return sorted(p.name for p in base.iterdir()
                  if p.name not in known and (p / _DATA_FILE).is_file())
