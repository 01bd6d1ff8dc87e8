"""Retention (#12): purge deletes cards older than the window with their feedback, and nothing newer;
the governance report over the cards inside the window is unchanged. SQLite, and PostgreSQL when
BESPONSA_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from app.storage import CardStore, open_store
from tests.test_storage_support import accepted, items, make_cards, overridden

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PG_URL = os.environ.get("BESPONSA_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[CardStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/r.db")
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip("BESPONSA_TEST_POSTGRES_URL is not set (no PostgreSQL server found)")
    schema = f"test_retention_{uuid.uuid4().hex[:10]}"
    s = open_store(PG_URL, schema=schema)
    yield s
    s.close()
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _shown(store: CardStore, at: datetime, hook: str) -> list:
    cards, decisions = make_cards()
    store.record_cards(service_id="besponsa-order-sign", hook_instance=hook, patient_id="p1", cards=cards,
                       decisions=decisions, now=at)
    return cards


def test_purge_removes_what_is_older_than_the_window_and_nothing_newer(store: CardStore, tmp_path) -> None:
    window = 400
    cutoff = NOW - timedelta(days=window)
    old = _shown(store, cutoff - timedelta(days=30), "old")
    just_outside = _shown(store, cutoff - timedelta(seconds=1), "edge-out")
    at_edge = _shown(store, cutoff, "edge-in")  # exactly `window` days old: kept
    recent = _shown(store, NOW - timedelta(days=3), "recent")
    fb = store.record_feedback
    fb("besponsa-order-sign", items(overridden(old[0]), accepted(old[1])), NOW - timedelta(days=420))
    fb("besponsa-order-sign", items(overridden(just_outside[0])), NOW - timedelta(days=300))  # answered late
    fb("besponsa-order-sign", items(overridden(at_edge[0]), accepted(recent[1])), NOW - timedelta(days=1))

    assert store.report()["totals"]["cards"] == 12
    # The report of a store that only ever held the cards inside the window, and their feedback.
    inside = open_store(f"sqlite:///{tmp_path}/inside.db")
    for cards, hook, at in ((at_edge, "edge-in", cutoff), (recent, "recent", NOW - timedelta(days=3))):
        _, decisions = make_cards()
        inside.record_cards(service_id="besponsa-order-sign", hook_instance=hook, patient_id="p1", cards=cards,
                            decisions=decisions, now=at)
    inside.record_feedback("besponsa-order-sign", items(overridden(at_edge[0]), accepted(recent[1])),
                           NOW - timedelta(days=1))
    expected = inside.report()
    inside.close()

    assert store.purge_retention(now=NOW, retention_days=window) == (6, 3)
    assert store.counts() == {"cards": 6, "feedback": 2}
    kept = {c.uuid for c in at_edge + recent}
    assert store.known_cards([c.uuid for c in old + just_outside + at_edge + recent]) == kept
    after = store.report()
    assert after == expected  # the report inside the window is unaffected
    assert after["totals"] == {"cards": 6, "accepted": 1, "overridden": 1, "noFeedback": 4, "feedbackReceived": 2}
    rules = {r["rule"]: r for r in after["rules"]}
    assert (rules["L-2"]["overridden"], rules["D-4"]["accepted"], rules["E-5"]["noFeedback"]) == (1, 1, 2)
    assert store.purge_retention(now=NOW, retention_days=window) == (0, 0)  # idempotent


def test_purge_of_a_large_backlog_runs_in_batches(store: CardStore) -> None:
    for n in range(7):
        _shown(store, NOW - timedelta(days=500 + n), f"old-{n}")
    _shown(store, NOW, "new")
    assert store.purge(older_than=NOW - timedelta(days=400), batch=4) == (21, 0)
    assert store.counts()["cards"] == 3
