"""A store on a Qdrant server (``WebStore(url=...)``) under faults, and the monitor's bounded queue.

No Qdrant server can be installed here, so these tests run the real qdrant-client against
:class:`~qdrant_fake.FakeQdrant`: a threaded HTTP endpoint on 127.0.0.1 speaking the part of
Qdrant's REST API the store uses, over a real socket, which refuses connections, resets them,
answers 503/429/400, hangs past the client's timeout or holds requests when told to. Point ids
are deterministic, so the checks compare the endpoint's stored points with the records sent.
(Issue 13, item 3.)
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from qdrant_fake import FakeQdrant

import llmweb_plugin as lw
from llmweb_plugin._server import StoreWriteError

FAST = {"retry_backoff": 0.01, "retry_deadline": 10.0}
KEY = "sekret-api-key-0123456789"


def _records(n, *, run="r1", step=1, agent="a", dim=16, start=0):
    rng = np.random.default_rng(start)
    return [lw.Record(text=f"text {start + i}", run_id=run, agent=agent, step=step,
                      index=start + i, vector=rng.normal(size=dim)) for i in range(n)]


def _record_ids(fake, collection="c"):
    """Point ids of the records (not the summary points) the endpoint holds."""
    return {pid for pid, p in fake.points(collection).items()
            if p["payload"]["metadata"]["kind"] != "summary"}


def _wait(cond, what, seconds=20.0):
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture()
def fake():
    with FakeQdrant(api_key=KEY) as f:
        yield f


def _store(fake, **kw):
    opts = {"api_key": KEY, "embedder": None, "dim": 16, "collection": "c", **FAST, **kw}
    return lw.WebStore(url=fake.url, **opts)


# ------------------------------------------------------------------ payload indexes
def test_payload_indexes_are_made_on_a_new_collection_and_added_to_an_existing_one(fake):
    with _store(fake) as store:
        assert store.is_local is False
    want = {"metadata.run_id": {"type": "keyword", "is_tenant": True},
            "metadata.agent": "keyword", "metadata.step": "integer", "metadata.kind": "keyword"}
    assert fake.collections["c"]["indexes"] == want
    # a collection someone else made (no indexes) gets them when a store opens it to write
    fake.collections["other"] = {"create": {"vectors": {"size": 16, "distance": "Cosine"}},
                                 "points": {}, "indexes": {}}
    with _store(fake, collection="other"):
        pass
    assert fake.collections["other"]["indexes"] == want
    assert fake.requests("PUT", "/index") == [200] * 8
    with _store(fake, collection="other"):  # already there: none made again
        pass
    assert fake.requests("PUT", "/index") == [200] * 8


def test_a_server_refusing_a_tenant_index_gets_a_plain_keyword_index(fake, caplog):
    fake.fail(1, 400, path="/index", message="Wrong input: unknown field `is_tenant`")
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin"), _store(fake):
        pass
    assert fake.collections["c"]["indexes"]["metadata.run_id"] == "keyword"
    assert fake.requests("PUT", "/index") == [400] + [200] * 4
    assert "unknown field `is_tenant`" in caplog.text


def test_summaries_live_beside_the_records_and_delete_run_clears_both(fake):
    from llmweb_plugin import _summaries as S

    with _store(fake) as store:
        assert set(fake.collections) == {"c", "c__llmweb_summaries"}
        store.upsert(_records(5) + _records(3, run="r2"))
        assert _record_ids(fake) == set(fake.points("c"))  # only records in the main one
        assert len(fake.points("c")) == 8 and len(fake.points("c__llmweb_summaries")) == 5
        assert S.load_run(store, "r1")[0].n_records == 5
        store.delete_run("r1")
        assert store.count() == 3 and S.load_run(store, "r1")[0] is None
        assert S.catalog(store) == {"runs": {"r2": 3}, "complete": True}
        assert len(fake.points("c__llmweb_summaries")) == 3  # r2's key, manifest; the catalog


# ------------------------------------------------------------------ retries
@pytest.mark.parametrize("fault, n", [("503", 3), ("429", 2), ("reset", 2)])
def test_transient_errors_are_retried_and_every_record_lands_once(fake, fault, n):
    with _store(fake) as store:
        if fault == "reset":
            fake.reset(n)
        else:
            fake.fail(n, int(fault), retry_after=0 if fault == "429" else None)
        recs = _records(40)
        assert store.upsert(recs) == 40
        ws = store.write_stats
        assert (ws.retries, ws.failed, ws.server_down) == (n, 0, False)
        assert _record_ids(fake) == {r.point_id for r in recs}
        assert all(fake.writes[r.point_id] == 1 for r in recs)  # failed tries applied nothing
        assert [r.text for r in store.records("r1")] == [r.text for r in recs]
    statuses = fake.requests("PUT", "/c/points")  # the records; then their summaries beside
    assert statuses[:n] == ([int(fault)] * n if fault != "reset" else [0] * n)
    assert statuses[n:] == [200]
    assert fake.requests("PUT", "/c__llmweb_summaries/points") == [200]


def test_a_request_hanging_past_the_timeout_is_retried_and_stores_nothing_twice(fake):
    """The server applies the hung write late; the retry writes the same ids again."""
    with _store(fake, timeout=1) as store:
        fake.hang(1, 1.5)
        recs = _records(10)
        store.upsert(recs)
        assert store.write_stats.retries == 1
        _wait(lambda: fake.requests("PUT", "/c/points") == [200, 200], "the hung request to end")
        assert _record_ids(fake) == {r.point_id for r in recs}
        assert store.count("r1") == 10
        assert {fake.writes[r.point_id] for r in recs} == {2}  # written twice, stored once


def test_a_server_not_up_yet_is_waited_for_at_open(fake):
    fake.down()  # connection refused until it comes back
    timer = threading.Timer(0.4, fake.up)
    timer.start()
    try:
        with _store(fake, check_compatibility=False) as store:
            assert store.write_stats.retries >= 1
            store.upsert(_records(3))
        assert len(_record_ids(fake)) == 3
    finally:
        timer.cancel()
        timer.join()


def test_a_bad_request_is_not_retried_and_names_the_servers_message(fake):
    with _store(fake) as store:
        fake.collections["c"]["create"]["vectors"]["size"] = 8  # remade elsewhere, 8-d
        with pytest.raises(StoreWriteError, match=r"HTTP 400.*expected dim: 8, got 16") as ei:
            store.upsert(_records(5))
        assert (ei.value.status, ei.value.transient) == (400, False)
        ws = store.write_stats
        assert (ws.retries, ws.rejected, ws.failed, ws.server_down) == (0, 1, 1, False)
        assert fake.requests("PUT", "/points") == [400]
        assert _record_ids(fake) == set()


def test_a_long_outage_gives_up_then_fails_fast_until_the_server_answers(fake):
    with _store(fake, retries=3) as store:
        port = fake.port
        fake.down()
        with pytest.raises(StoreWriteError, match="failed after 4 attempt") as ei:
            store.upsert(_records(4))
        assert ei.value.transient is True
        ws = store.write_stats
        assert (ws.attempts - ws.calls, ws.gave_up, ws.server_down) == (3, 1, True)
        before = ws.attempts
        with pytest.raises(StoreWriteError, match="already down: one attempt only"):
            store.upsert(_records(4, start=4))
        assert store.write_stats.attempts - before <= 2  # the summaries' read, then nothing
        fake.up()
        assert fake.port == port
        store.upsert(_records(8))
        assert store.write_stats.server_down is False
        assert len(_record_ids(fake)) == 8


# ------------------------------------------------------------------ through the monitor
def test_the_server_going_down_mid_run_and_back_loses_nothing(fake, hash_embedder):
    store = _store(fake, retries=50)  # the 10 s deadline bounds the retries
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=8)
    timer = threading.Timer(0.5, fake.up)
    try:
        ids = [mon.record(f"first {i}", agent="ab"[i % 2], step=1) for i in range(20)]
        mon.flush()
        fake.down()
        timer.start()
        ids += [mon.record(f"second {i}", agent="ab"[i % 2], step=2) for i in range(20)]
        stats = mon.close()
        assert (stats.received, stats.stored, stats.failed, stats.pending) == (40, 40, 0, 0)
        assert store.write_stats.retries >= 1
        assert _record_ids(fake) == set(ids)
    finally:
        timer.cancel()
        timer.join()
        store.close()


def test_a_bad_request_through_the_monitor_is_a_counted_failure_naming_the_message(
        fake, hash_embedder, caplog):
    store = _store(fake)
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=4)
    fake.collections["c"]["create"]["vectors"]["size"] = 8
    with caplog.at_level(logging.ERROR, logger="llmweb_plugin"):
        for i in range(4):
            mon.record(f"text {i}", agent="a", step=1)
        stats = mon.close()
    store.close()
    assert (stats.received, stats.stored, stats.failed) == (4, 0, 4)
    assert all("expected dim: 8, got 16" in it.error for it in mon.failed_items)
    assert "expected dim: 8, got 16" in caplog.text
    assert store.write_stats.retries == 0


def test_close_drains_the_queue_through_retries(fake, hash_embedder):
    store = _store(fake)
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=4)
    fake.fail(3, 503)
    ids = [mon.record(f"text {i}", agent="ab"[i % 2], step=1) for i in range(30)]
    stats = mon.close()  # no flush before: close() writes what is queued
    store.close()
    assert (stats.stored, stats.failed, stats.pending) == (30, 0, 0)
    assert _record_ids(fake) == set(ids)
    assert store.write_stats.retries == 3


def test_close_with_a_timeout_keeps_what_it_could_not_write_for_retry_failed(
        fake, hash_embedder, caplog):
    store = _store(fake)
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=2,
                             linger=0.0)
    fake.hold()  # a server that does not answer in time
    try:
        with caplog.at_level(logging.ERROR, logger="llmweb_plugin"):
            ids = [mon.record(f"text {i}", agent="ab"[i % 2], step=1) for i in range(12)]
            stats = mon.close(timeout=0.3)
    finally:
        fake.release()
    assert (stats.received, stats.stored) == (12, 0)
    assert stats.failed >= 2 and stats.failed + stats.pending == 12
    assert f"{stats.failed} record(s) were still queued and failed" in caplog.text
    assert all("close(timeout=0.3)" in it.error for it in mon.failed_items)
    _wait(lambda: mon.stats.pending == 0, "the write in flight to end")
    assert mon.stats.stored == 12 - stats.failed  # what was in flight was written
    assert mon.retry_failed() == stats.failed
    after = mon.flush(timeout=20)
    assert (after.stored, after.failed, after.pending) == (12, 0, 0)
    assert _record_ids(fake) == set(ids)
    store.close()


def test_a_full_queue_blocks_record_until_the_server_catches_up(fake, hash_embedder):
    store = _store(fake)
    # batch_size=1: in flight are 1 upsert, 4 batches waiting for it, 1 being embedded, and
    # max_queue=2 queued, so the 9th record() must wait while the server holds the upserts
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=1,
                             linger=0.0, max_queue=2, on_full="block", block_timeout=60)
    done: list[str | None] = []
    fake.hold()
    producer = threading.Thread(
        target=lambda: done.extend(mon.record(f"text {i}", agent="ab"[i % 2], step=1)
                                   for i in range(12)))
    try:
        producer.start()
        _wait(lambda: len(done) == 8 and mon._queue.qsize() == 2 and mon._store_q.full(),
              "the pipeline to fill")
        time.sleep(0.2)
        assert producer.is_alive() and len(done) == 8  # the 9th record() waits for room
        assert fake.requests("PUT", "/points") == []  # while the server holds the first write
    finally:
        fake.release()
        producer.join(timeout=30)
    stats = mon.close()
    store.close()
    assert len(done) == 12 and None not in done
    assert (stats.received, stats.stored, stats.skipped, stats.failed) == (12, 12, 0, 0)
    assert _record_ids(fake) == set(done)


@pytest.mark.parametrize("on_full, block_timeout", [("drop", 10.0), ("block", 0.05)])
def test_overload_drops_are_counted_loudly_and_nothing_else_is_lost(
        fake, hash_embedder, caplog, on_full, block_timeout):
    store = _store(fake)
    mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=1,
                             linger=0.0, max_queue=2, on_full=on_full,
                             block_timeout=block_timeout)
    fake.hold()
    try:
        with caplog.at_level(logging.WARNING, logger="llmweb_plugin"):
            _wait(lambda: mon.record("warm", agent="a", step=0) is not None
                  and len(fake.requests("PUT", "/points")) == 0, "the first record")
            ids = [mon.record(f"text {i}", agent="ab"[i % 2], step=1) for i in range(40)]
    finally:
        fake.release()
    with caplog.at_level(logging.WARNING, logger="llmweb_plugin"):
        stats = mon.close()
    store.close()
    kept = [i for i in ids if i is not None]
    dropped = 40 - len(kept)
    assert dropped >= 20  # at most 1 + 4 + 1 + 2 of the 41 fit while the server held them
    assert stats.skip_reasons == {"queue_full": dropped}
    assert (stats.received, stats.skipped, stats.stored, stats.failed) == (
        41, dropped, 41 - dropped, 0)
    assert _record_ids(fake) == set(kept) | {lw.Record(text="", run_id="r1", agent="a",
                                                       step=0).point_id}
    assert "the monitor's queue is full" in caplog.text
    assert f"dropped {dropped} record(s) in all" in caplog.text
    assert any("dropped (queue full)" in e for e in stats.errors)


# ------------------------------------------------------------------ secrets and knobs
def test_the_api_key_is_sent_but_never_logged(fake, hash_embedder, caplog):
    with caplog.at_level(logging.DEBUG):
        store = _store(fake, retries=1)
        fake.fail(2, 503)
        fake.reset(1)
        mon = lw.CollapseMonitor(store, run_id="r1", embedder=hash_embedder, batch_size=4)
        for i in range(8):
            mon.record(f"text {i}", agent="a", step=1)
        stats = mon.close()
        fake.collections["c"]["create"]["vectors"]["size"] = 8
        with pytest.raises(StoreWriteError) as ei:
            store.upsert(_records(2))
        store.close()
    assert stats.failed > 0 and store.write_stats.retries > 0  # errors were logged
    assert "401" not in {str(s) for s in fake.requests("PUT", "/points")}
    assert KEY not in caplog.text
    assert KEY not in str(ei.value) and all(KEY not in e for e in stats.errors)
    assert all(KEY not in it.error for it in mon.failed_items)
    with pytest.raises(StoreWriteError, match="HTTP 401"):  # the key is what lets writes in
        lw.WebStore(url=fake.url, api_key="wrong", embedder=None, dim=16, collection="c", **FAST)


def test_knobs_are_checked_and_local_mode_does_not_retry(hash_embedder):
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        lw.WebStore(":memory:", embedder=hash_embedder, retries=-1)
    with pytest.raises(ValueError, match="retry_deadline must be a number of seconds"):
        lw.WebStore(":memory:", embedder=hash_embedder, retry_deadline=float("nan"))
    store = lw.WebStore(":memory:", embedder=hash_embedder)
    with pytest.raises(ValueError, match="on_full must be one of"):
        lw.CollapseMonitor(store, on_full="explode")
    with pytest.raises(ValueError, match="max_queue must be a positive int"):
        lw.CollapseMonitor(store, max_queue=0)
    with pytest.raises(ValueError, match="block_timeout must be"):
        lw.CollapseMonitor(store, block_timeout=-1)
    store.upsert(_records(3))
    assert store.write_stats == lw.store.WriteStats()  # local mode: no calls counted
    store.close()
