"""The background card writer (app/storage/writer.py): batches, bounded queue, flush on close, and
feedback that finds a card the writer has not committed yet (here or in another replica)."""

from __future__ import annotations

import threading
import time

import pytest

from app import observability
from app.storage import FeedbackRejected, open_store
from app.storage.writer import BufferedCardStore, CardWriter
from tests.test_storage_support import NOW, items, make_cards, overridden

SERVICE = "besponsa-order-sign"


def _rows(hook: str = "hi-1") -> tuple[list, list[dict]]:
    cards, decisions = make_cards()
    from app.storage.store import CardStore

    return cards, CardStore.card_rows(service_id=SERVICE, hook_instance=hook, patient_id="p1", cards=cards,
                                      decisions=decisions, now=NOW)


def _counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get() if labels else metric._value.get()


def test_queued_cards_are_committed_in_batches_and_close_flushes(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    writer = CardWriter(store, batch_size=50, flush_interval=5.0)  # never flushed by time here
    writer.start()
    for n in range(20):
        assert writer.enqueue(_rows(f"h{n}")[1])
    assert writer.depth() >= 1  # queued, not waited for
    assert writer.close(timeout=10)  # shutdown commits everything queued
    assert store.counts()["cards"] == 60 and writer.depth() == 0
    assert not writer.enqueue(_rows("late")[1])  # closed: refused, counted
    store.close()


def test_flush_interval_bounds_how_long_a_card_waits(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    writer = CardWriter(store, flush_interval=0.05)
    writer.start()
    cards, rows = _rows()
    writer.enqueue(rows)
    deadline = time.monotonic() + 5
    while store.counts()["cards"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.known_cards([c.uuid for c in cards]) == {c.uuid for c in cards}
    writer.close()
    store.close()


def test_a_full_queue_never_blocks_the_hook_call_and_counts_the_drop(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    writer = CardWriter(store, max_queue=2)  # not started: nothing drains the queue
    before = _counter(observability.STORE_DROPPED)
    assert writer.enqueue(_rows("a")[1]) and writer.enqueue(_rows("b")[1])
    started = time.perf_counter()
    assert not writer.enqueue(_rows("c")[1])
    assert time.perf_counter() - started < 0.1
    assert _counter(observability.STORE_DROPPED) == before + 3
    writer.close()  # never started: committed inline
    assert store.counts()["cards"] == 6
    store.close()


def test_a_failing_database_is_retried_and_nothing_is_lost(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    real = store.insert_card_rows
    failures = {"left": 2}

    def flaky(rows):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is down")
        return real(rows)

    store.insert_card_rows = flaky  # type: ignore[method-assign]
    errors = _counter(observability.STORE_WRITE_ERRORS)
    writer = CardWriter(store, flush_interval=0.01)
    writer.start()
    writer.enqueue(_rows()[1])
    assert writer.flush(timeout=10)
    assert store.counts()["cards"] == 3
    assert _counter(observability.STORE_WRITE_ERRORS) == errors + 2
    writer.close()
    store.close()


def test_feedback_for_a_card_still_queued_here_flushes_first(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    writer = CardWriter(store, flush_interval=30.0, batch_size=1000)  # would wait 30 s on its own
    writer.start()
    buffered = BufferedCardStore(store, writer, card_wait=0)
    cards, decisions = make_cards()
    assert buffered.enqueue_cards(service_id=SERVICE, hook_instance="hi", patient_id="p1", cards=cards,
                                  decisions=decisions, now=NOW)
    assert store.known_cards([cards[0].uuid]) == set()
    started = time.perf_counter()
    result = buffered.record_feedback(SERVICE, items(overridden(cards[0])), NOW)
    assert result.stored == 1 and time.perf_counter() - started < 5
    buffered.close()


def test_feedback_waits_briefly_for_a_card_another_replica_is_committing(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    replica_a, replica_b = open_store(url), open_store(url)
    writer_a = CardWriter(replica_a, flush_interval=0.05)
    writer_b = CardWriter(replica_b)
    writer_b.start()
    b = BufferedCardStore(replica_b, writer_b, card_wait=3.0)
    cards, rows = _rows()
    writer_a.enqueue(rows)  # shown by A; A's writer commits 0.4 s later
    threading.Timer(0.4, writer_a.start).start()
    result = b.record_feedback(SERVICE, items(overridden(cards[0])), NOW)
    assert result.stored == 1
    # A card nobody showed is still refused, after the bounded wait.
    fast = BufferedCardStore(replica_b, writer_b, card_wait=0.2)
    started = time.perf_counter()
    with pytest.raises(FeedbackRejected):
        fast.record_feedback(SERVICE, items({"card": "never-shown", "outcome": "overridden",
                                             "outcomeTimestamp": "2026-11-23T10:00:00Z"}), NOW)
    assert 0.2 <= time.perf_counter() - started < 3
    writer_a.close()
    b.close()
    replica_a.close()


def test_flush_requests_never_crowd_cards_out_of_the_queue(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    writer = CardWriter(store, max_queue=3)  # not started: nothing drains, as while the database is down
    for _ in range(10):
        writer.flush(timeout=0)
    assert writer.enqueue(_rows("a")[1]) and writer.enqueue(_rows("b")[1])  # one marker holds one slot
    writer.close()
    assert store.counts()["cards"] == 6
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_batch_insert_counts_only_new_cards_and_keeps_stored_ones(tmp_path, backend) -> None:
    import os
    import uuid as uuid_module

    from sqlalchemy import create_engine, text

    pg_url = os.environ.get("BESPONSA_TEST_POSTGRES_URL")
    if backend == "postgresql" and not pg_url:
        pytest.skip("BESPONSA_TEST_POSTGRES_URL is not set")
    schema = f"test_ins_{uuid_module.uuid4().hex[:12]}" if backend == "postgresql" else None
    url = pg_url if schema else f"sqlite:///{tmp_path}/i.db"
    store = open_store(url, schema=schema)
    try:
        first = _rows("h-first")[1]
        assert store.insert_card_rows(first) == len(first)
        again = [{**first[0], "decision": "changed"}, *_rows("h-second")[1]]  # one stored uuid, the rest new
        assert store.insert_card_rows(again) == len(again) - 1
        many = [r for n in range(250) for r in _rows(f"h-many-{n}")[1]]  # past any one statement's rows
        assert store.insert_card_rows(many) == len(many)
        assert store.counts()["cards"] == len(first) + len(again) - 1 + len(many)
        assert store.insert_card_rows([]) == 0
    finally:
        store.close()
        if schema:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
