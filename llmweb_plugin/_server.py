"""Talking to a Qdrant server or cluster: retries with backoff, a breaker, the payload indexes.

:class:`~llmweb_plugin.store.WebStore` sends every write to a server (``url=``, or a given
remote client) through a :class:`_Writer`:

* **Transient errors are retried**: connection refused or reset, timeouts, HTTP 5xx, 429 and 408
  (and gRPC's UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED). The delay doubles from
  ``backoff`` up to ``max_backoff`` with jitter (half fixed, half random, so clients that failed
  together do not retry together), a server's ``Retry-After`` is honoured, and one write gives up
  after ``retries`` retries or ``deadline`` seconds, whichever comes first. Point ids are derived
  from each record's provenance, so writing a batch again after a timeout that the server did in
  fact apply stores nothing twice.
* **Other errors are not retried**: a 4xx such as a wrong vector size is the same on every try.
  It raises :class:`StoreWriteError` at once, naming the HTTP status and the server's own message.
* **A breaker**: once a write has given up, the server is taken as down and later writes get one
  attempt each (no backoff) until one succeeds, so a long outage fails batches in milliseconds
  instead of holding each for ``deadline`` seconds (the monitor keeps the failed records for
  ``retry_failed()``). The first success closes it again; both changes are logged as warnings.

Counters are kept in :class:`WriteStats` (``WebStore.write_stats``). The API key never reaches a
message: errors name the URL, status and server message only.

The payload indexes a server needs for the store's filters (:func:`ensure_payload_indexes`):
``metadata.run_id`` (keyword, ``is_tenant=True``: Qdrant co-locates each run's points),
``metadata.agent`` and ``metadata.kind`` (keyword), ``metadata.step`` (integer). They are created
with a new collection and added, when missing, to an existing one the store opens to write.
Local mode ignores payload indexes, so none are made there.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

# part of the store's log, which users filter on
logger = logging.getLogger("llmweb_plugin.store")

T = TypeVar("T")

#: HTTP statuses worth another try: rate limits, request timeouts and server-side failures.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
#: The ways an HTTP exchange fails in transit (connect, read, write, pool, a dropped connection).
_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_MAX_MESSAGE = 300


class StoreWriteError(RuntimeError):
    """A write to a Qdrant server failed: refused (4xx) or still failing after the retries.

    Attributes:
        status: the HTTP status when the server answered, else ``None``.
        transient: ``True`` when the failure was of a kind that was retried (and gave up).
        server_message: the server's own error text (or the transport error).
    """

    def __init__(self, message: str, *, status: int | None, transient: bool,
                 server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.server_message = server_message


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a write to a server is retried (``WebStore(url=..., retries=, retry_backoff=,
    retry_deadline=)``).

    Attributes:
        retries: retries after the first attempt (0: none).
        backoff: seconds before the first retry; doubles each time, with jitter.
        max_backoff: the longest single delay (a server's ``Retry-After`` may ask for more).
        deadline: seconds one write may take in all, retries and delays included.
    """

    retries: int = 8
    backoff: float = 0.25
    max_backoff: float = 8.0
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0 (retries after the first attempt); "
                             f"got {self.retries!r}")
        for name in ("backoff", "max_backoff", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                label = {"backoff": "retry_backoff", "deadline": "retry_deadline"}.get(name, name)
                raise ValueError(f"{label} must be a number of seconds >= 0; got {value!r}")


@dataclass(frozen=True, kw_only=True)
class WriteStats:
    """What a store's calls to its server came to.

    Attributes:
        calls: calls made through the writer (writes and collection set-up).
        attempts: requests tried, first attempts and retries together.
        retries: attempts after a transient error.
        failed: calls that raised :class:`StoreWriteError`.
        rejected: of those, refused by the server without retrying (4xx).
        gave_up: of those, still failing on transient errors after the retries or the deadline.
        server_down: the breaker is open (the last call gave up; the next gets one attempt).
        last_error: the last failure's message ("" if none).
        summary_failures: summary writes into the side collection that failed after their
            records landed (not raised; retried with the next batch; any backend).
    """

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    failed: int = 0
    rejected: int = 0
    gave_up: int = 0
    server_down: bool = False
    last_error: str = ""
    summary_failures: int = 0


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code
    if isinstance(exc, ResourceExhaustedResponse):
        return 429
    return None


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` a failure that another try may not meet (network, timeout, 5xx, 429)?"""
    status = _status(exc)
    if status is not None:
        return status in _RETRY_STATUS
    if isinstance(exc, ResponseHandlingException):
        return isinstance(exc.source, _TRANSPORT)
    if isinstance(exc, (_TRANSPORT, ConnectionError, TimeoutError)):
        return True
    code = getattr(exc, "code", None)  # grpc.RpcError, without importing grpc
    if callable(code):
        try:
            return getattr(code(), "name", "") in _RETRY_GRPC
        except Exception:  # noqa: BLE001 - not an RpcError after all
            return False
    return False


def _is_api_error(exc: BaseException) -> bool:
    """An error of the exchange with the server (as opposed to a bug or a bad argument here)."""
    if isinstance(exc, (UnexpectedResponse, ResourceExhaustedResponse)):
        return True
    if isinstance(exc, ResponseHandlingException):
        return isinstance(exc.source, httpx.HTTPError)
    return is_transient(exc)


def server_message(exc: BaseException) -> str:
    """The server's own words for ``exc`` (Qdrant's ``status.error``), or the transport error."""
    if isinstance(exc, UnexpectedResponse):
        text = ""
        try:
            body = json.loads(exc.content)
            status = body.get("status") if isinstance(body, dict) else None
            text = str(status.get("error", "")) if isinstance(status, dict) else ""
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        if not text:
            text = exc.content[:_MAX_MESSAGE].decode("utf-8", "replace").strip()
        head = f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
        return f"{head}: {text}" if text else head
    if isinstance(exc, ResourceExhaustedResponse):
        return f"HTTP 429: {exc.message} (Retry-After {exc.retry_after_s} s)"
    if isinstance(exc, ResponseHandlingException):
        exc = exc.source
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text[:_MAX_MESSAGE]}"


def _retry_after(exc: BaseException) -> float:
    if isinstance(exc, ResourceExhaustedResponse):
        return float(exc.retry_after_s)
    if isinstance(exc, UnexpectedResponse):
        try:
            return max(0.0, float(exc.headers.get("retry-after", 0)))
        except (TypeError, ValueError):  # an HTTP date: fall back on the backoff
            return 0.0
    return 0.0


class _Writer:
    """Runs a store's calls to its server with :class:`RetryPolicy`; ``policy=None`` runs them
    once as they are (local mode, where an error is never transient)."""

    def __init__(self, policy: RetryPolicy | None, where: str) -> None:
        self.policy = policy
        self.where = where
        self._lock = threading.Lock()
        self._rng = random.Random()  # jitter only; no result depends on it
        self._sleep: Callable[[float], None] = time.sleep
        self._stats = WriteStats()

    @property
    def stats(self) -> WriteStats:
        with self._lock:
            return self._stats

    def _count(self, **delta: Any) -> None:
        with self._lock:
            s = self._stats
            values = {k: getattr(s, k) + v if isinstance(v, int) and not isinstance(v, bool)
                      else v for k, v in delta.items()}
            self._stats = WriteStats(**{**s.__dict__, **values})

    def _delay(self, retry: int, exc: BaseException) -> float:
        assert self.policy is not None
        step = min(self.policy.max_backoff, self.policy.backoff * 2 ** (retry - 1))
        return max(step / 2 + self._rng.uniform(0, step / 2), _retry_after(exc))

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """``fn()``, retried on transient errors; raises :class:`StoreWriteError` when it fails.

        Errors that are not the server's (a ``ValueError`` from a check here) pass unchanged.
        """
        if self.policy is None:
            return fn()
        self._count(calls=1)
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._count(attempts=1)
            try:
                result = fn()
            except Exception as exc:
                if not _is_api_error(exc):
                    raise
                transient = is_transient(exc)
                msg = server_message(exc)
                elapsed = time.monotonic() - start
                delay = self._delay(attempt, exc) if transient else 0.0
                if transient and not self.stats.server_down and attempt <= self.policy.retries \
                        and elapsed + delay <= self.policy.deadline:
                    self._count(retries=1)
                    logger.info("llmweb: %s on %s failed (%s); retry %d of %d in %.2f s", what,
                                self.where, msg, attempt, self.policy.retries, delay)
                    self._sleep(delay)
                    continue
                raise self._failed(exc, what, msg, transient, attempt, elapsed) from exc
            if self.stats.server_down:
                self._count(server_down=False)
                logger.warning("llmweb: %s answers again; writes are retried as usual",
                               self.where)
            return result

    def _failed(self, exc: BaseException, what: str, msg: str, transient: bool, attempt: int,
                elapsed: float) -> StoreWriteError:
        status = _status(exc)
        if transient:
            was_down = self.stats.server_down
            text = (f"{what} on {self.where} failed after {attempt} attempt(s) in "
                    f"{elapsed:.1f} s: {msg}")
            if was_down:
                text += " (the server was already down: one attempt only)"
            self._count(failed=1, gave_up=1, server_down=True, last_error=text)
            if not was_down:
                logger.warning("llmweb: %s. Taking the server as down: later writes get one "
                               "attempt each until one succeeds; the monitor keeps what fails "
                               "(retry_failed()).", text)
        else:
            text = (f"{what} on {self.where} was refused ({msg}); not retried, since the same "
                    "request would be refused again")
            self._count(failed=1, rejected=1, last_error=text)
        return StoreWriteError(text, status=status, transient=transient, server_message=msg)


# ---------------------------------------------------------------------------- payload indexes
def _tenant_keyword() -> Any:
    """A keyword index for the tenant field, with ``is_tenant=True`` where the client has it."""
    if "is_tenant" in getattr(models.KeywordIndexParams, "model_fields", {}):
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    return models.PayloadSchemaType.KEYWORD


#: field -> schema of the payload indexes a server needs for the store's filters
PAYLOAD_INDEXES: tuple[tuple[str, Any], ...] = (
    ("metadata.run_id", _tenant_keyword()),
    ("metadata.agent", models.PayloadSchemaType.KEYWORD),
    ("metadata.step", models.PayloadSchemaType.INTEGER),
    ("metadata.kind", models.PayloadSchemaType.KEYWORD),
)


def ensure_payload_indexes(client: QdrantClient, collection: str, writer: _Writer, *,
                           created: bool) -> list[str]:
    """Create the store's payload indexes that ``collection`` lacks; returns the fields made.

    On a new collection (``created``) a failure raises; on an existing one it is a warning
    (the store still works, its filters are only slower; e.g. a read-only API key).
    """
    made: list[str] = []
    try:
        have = set() if created else set(
            writer.call(lambda: client.get_collection(collection), what="reading the collection")
            .payload_schema or {})
        for key, schema in PAYLOAD_INDEXES:
            if key in have:
                continue
            try:
                writer.call(lambda k=key, s=schema: client.create_payload_index(  # type: ignore
                    collection, k, s, wait=True), what=f"creating the payload index {key!r}")
            except StoreWriteError as exc:
                if exc.transient or schema is models.PayloadSchemaType.KEYWORD or \
                        not isinstance(schema, models.KeywordIndexParams):
                    raise
                # a server older than is_tenant (Qdrant < 1.11) refuses it: a plain keyword index
                logger.warning("llmweb: %s refused a tenant index on %r (%s); made a plain "
                               "keyword index instead", writer.where, key, exc.server_message)
                writer.call(lambda k=key: client.create_payload_index(  # type: ignore
                    collection, k, models.PayloadSchemaType.KEYWORD, wait=True),
                    what=f"creating the payload index {key!r}")
            made.append(key)
    except StoreWriteError as exc:
        if created:
            raise
        logger.warning("llmweb: could not add the payload indexes of collection %r on %s (%s); "
                       "the store works, but its filters scan every point", collection,
                       writer.where, exc)
    return made
