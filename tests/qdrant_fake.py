"""A small Qdrant REST endpoint on 127.0.0.1 for tests, which fails on purpose when told to.

It speaks the part of Qdrant's HTTP API a :class:`~llmweb_plugin.store.WebStore` uses (server
version, collection exists / create / info / list, payload index, upsert, scroll, count,
delete) over a
real socket, and keeps what it was sent, so a test can check what reached "the server" against
what was recorded. It is a test double of the server only: the client is the real qdrant-client.

Faults (each consumed by one matching request, in order):
    ``fail(n, status)``  answer ``status`` (e.g. 503, 429, 400) with a Qdrant error body;
    ``reset(n)``         close the connection without an answer (TCP reset);
    ``hang(n, seconds)`` wait, then apply and answer (a client with a shorter timeout gave up);
    ``down()`` / ``up()`` stop listening (connection refused) and listen again on the same port;
    ``hold()`` / ``release()`` keep every upsert waiting (a slow server) until released.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from typing_extensions import Self

VERSION = "1.20.0"


def _get(payload: dict[str, Any], key: str) -> Any:
    cur: Any = payload
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _matches(payload: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """Qdrant's filter for what the store sends: must / must_not / should of match and range."""
    if not flt:
        return True

    def cond(c: dict[str, Any]) -> bool:
        if "key" not in c:  # a nested filter
            return _matches(payload, c)
        v = _get(payload, c["key"])
        m, r = c.get("match"), c.get("range")
        if m is not None:
            return v in m["any"] if "any" in m else v == m.get("value")
        if r is not None:
            ops = {"lt": v is not None and "lt" in r and v < r["lt"],
                   "lte": v is not None and "lte" in r and v <= r["lte"],
                   "gt": v is not None and "gt" in r and v > r["gt"],
                   "gte": v is not None and "gte" in r and v >= r["gte"]}
            return all(ops[k] for k in ("lt", "lte", "gt", "gte") if r.get(k) is not None)
        raise ValueError(f"fake Qdrant: unsupported condition {c}")

    def as_list(x: Any) -> list[Any]:
        return [] if x is None else x if isinstance(x, list) else [x]

    return (all(cond(c) for c in as_list(flt.get("must")))
            and not any(cond(c) for c in as_list(flt.get("must_not")))
            and (not flt.get("should") or any(cond(c) for c in as_list(flt.get("should")))))


class FakeQdrant:
    """The endpoint; ``with FakeQdrant() as fake: WebStore(url=fake.url, ...)``."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.collections: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.faults: list[tuple[str, str, Any]] = []  # (method, path part, action)
        self.log: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.writes: dict[str, int] = {}  # point id -> upserts of it that the fake applied
        self.port = 0
        self.gate = threading.Event()  # upserts wait while it is clear
        self.gate.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-qdrant-{self.port}", daemon=True)
        self._thread.start()

    def down(self) -> None:
        self.gate.set()  # let held requests finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------------ faults
    def fail(self, n: int, status: int, *, method: str = "PUT", path: str = "/points",
             message: str = "Service Unavailable: try again", retry_after: int | None = None
             ) -> None:
        with self.lock:
            self.faults += [(method, path, ("status", status, message, retry_after))] * n

    def reset(self, n: int, *, method: str = "PUT", path: str = "/points") -> None:
        with self.lock:
            self.faults += [(method, path, ("reset",))] * n

    def hang(self, n: int, seconds: float, *, method: str = "PUT", path: str = "/points") -> None:
        with self.lock:
            self.faults += [(method, path, ("hang", seconds))] * n

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def _take_fault(self, method: str, path: str) -> Any:
        with self.lock:
            for i, (m, part, action) in enumerate(self.faults):
                if m == method and path.endswith(part):
                    del self.faults[i]
                    return action
        return None

    # ------------------------------------------------------------------ reads for tests
    def points(self, collection: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.collections[collection]["points"])

    def requests(self, method: str, path_end: str) -> list[int]:
        """The statuses answered to ``method`` requests whose path ends with ``path_end``."""
        with self.lock:
            return [s for m, p, s in self.log if m == method and p.endswith(path_end)]

    # ------------------------------------------------------------------ the API
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and not parts:
            return 200, {"title": "qdrant - vector search engine (fake)", "version": VERSION}
        if parts[:1] != ["collections"]:
            return 404, "Not found"
        with self.lock:
            if len(parts) == 1:
                names = [{"name": n} for n in sorted(self.collections)]
                return 200, {"collections": names}
            name, rest = parts[1], parts[2:]
            col = self.collections.get(name)
            if rest == ["exists"]:
                return 200, {"exists": col is not None}
            if not rest and method == "PUT":
                if col is not None:
                    return 409, f"Wrong input: Collection `{name}` already exists!"
                self.collections[name] = {"create": body, "points": {}, "indexes": {}}
                return 200, True
            if col is None:
                return 404, f"Not found: Collection `{name}` doesn't exist!"
            if not rest and method == "GET":
                return 200, self._info(col)
            if rest == ["index"]:
                col["indexes"][body["field_name"]] = body["field_schema"]
                return 200, {"operation_id": 1, "status": "completed"}
            if rest == ["points"] and method == "PUT":
                size = col["create"]["vectors"]["size"]
                for p in body["points"]:
                    if len(p["vector"]) != size:
                        return 400, (f"Wrong input: Vector dimension error: expected dim: {size}, "
                                     f"got {len(p['vector'])}")
                for p in body["points"]:
                    col["points"][str(p["id"])] = p
                    self.writes[str(p["id"])] = self.writes.get(str(p["id"]), 0) + 1
                return 200, {"operation_id": 1, "status": "completed"}
            if rest == ["points"] and method == "POST":  # retrieve by id
                vec = body.get("with_vector")
                return 200, [{"id": p["id"], "payload": p["payload"],
                              **({"vector": p["vector"]} if vec else {})}
                             for i in body.get("ids", []) if (p := col["points"].get(str(i)))]
            if rest == ["points", "delete"] and method == "POST":
                gone = [pid for pid, p in col["points"].items()
                        if (pid in {str(i) for i in body["points"]} if "points" in body
                            else _matches(p["payload"], body.get("filter")))]
                for pid in gone:
                    del col["points"][pid]
                return 200, {"operation_id": 1, "status": "completed"}
            if rest == ["points", "count"]:
                hits = [p for p in col["points"].values() if _matches(p["payload"], body.get("filter"))]
                return 200, {"count": len(hits)}
            if rest == ["points", "scroll"]:
                hits = sorted((p for p in col["points"].values()
                               if _matches(p["payload"], body.get("filter"))), key=lambda p: p["id"])
                if body.get("offset") is not None:
                    hits = [p for p in hits if p["id"] >= body["offset"]]
                limit = int(body.get("limit") or 10)
                page, more = hits[:limit], hits[limit:limit + 1]
                vec = body.get("with_vector")
                out = [{"id": p["id"], "payload": p["payload"],
                        **({"vector": p["vector"]} if vec else {})} for p in page]
                return 200, {"points": out, "next_page_offset": more[0]["id"] if more else None}
        return 404, f"fake Qdrant: no route for {method} {path}"

    @staticmethod
    def _info(col: dict[str, Any]) -> dict[str, Any]:
        create = col["create"]
        return {
            "status": "green", "optimizer_status": "ok", "segments_count": 1,
            "points_count": len(col["points"]), "indexed_vectors_count": 0,
            "config": {
                "params": {"vectors": create["vectors"],
                           "shard_number": create.get("shard_number") or 1,
                           "replication_factor": create.get("replication_factor") or 1,
                           "write_consistency_factor": create.get("write_consistency_factor") or 1,
                           "on_disk_payload": True},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "flush_interval_sec": 5},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            },
            "payload_schema": {k: {"data_type": v if isinstance(v, str) else v["type"],
                                   "points": 0} for k, v in col["indexes"].items()},
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeQdrant

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if fake.api_key is not None and self.headers.get("api-key") != fake.api_key:
            return self._answer(method, path, 401, "Unauthorized: invalid API key")
        action = fake._take_fault(method, path)
        if action is not None and action[0] == "reset":
            with fake.lock:
                fake.log.append((method, path, 0))
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return None
        if action is not None and action[0] == "status":
            _, status, message, retry_after = action
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            return self._answer(method, path, status, message, headers)
        if method == "PUT" and path.endswith("/points"):
            fake.gate.wait(timeout=30)
        if action is not None and action[0] == "hang":
            time.sleep(action[1])
        try:
            body = json.loads(raw) if raw else {}
            status, result = fake.handle(method, path, body)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake answers 500, loudly
            status, result = 500, f"fake Qdrant failed: {exc!r}"
        return self._answer(method, path, status, result)

    def _answer(self, method: str, path: str, status: int, result: Any,
                headers: dict[str, str] | None = None) -> None:
        fake = self.server_fake
        with fake.lock:
            fake.log.append((method, path, status))
        if status == 200 and path == "/":
            doc: Any = result
        elif status == 200:
            doc = {"result": result, "status": "ok", "time": 0.0001}
        else:
            doc = {"status": {"error": result}, "time": 0.0001}
        data = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting (a hang past its timeout)
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
