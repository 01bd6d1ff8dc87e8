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


def test_serve_purges_periodically(tmp_path) -> None:
    import time as clock

    from fastapi.testclient import TestClient

    from app.http.app import create_app
    from app.settings import Settings

    url = f"sqlite:///{tmp_path}/periodic.db"
    seed = open_store(url)
    now = datetime.now(UTC)
    old = _shown(seed, now - timedelta(days=30), "old")
    new = _shown(seed, now - timedelta(days=1), "new")
    seed.close()
    # A 7-day window, purged every 0.36 s (the first run comes after half to all of one interval).
    settings = Settings(database_url=url, embedded_fhir=False, log_level="WARNING", retention_days=7,
                        purge_interval_hours=0.0001)
    app = create_app(settings)
    with TestClient(app):
        deadline = clock.monotonic() + 10
        while app.state.store.known_cards([old[0].uuid]) and clock.monotonic() < deadline:
            clock.sleep(0.05)
        assert app.state.store.known_cards([c.uuid for c in old + new]) == {c.uuid for c in new}


def test_no_periodic_purge_when_the_interval_is_zero(tmp_path) -> None:
    import time as clock

    from fastapi.testclient import TestClient

    from app.http.app import create_app
    from app.settings import Settings

    url = f"sqlite:///{tmp_path}/off.db"
    seed = open_store(url)
    old = _shown(seed, datetime.now(UTC) - timedelta(days=30), "old")
    seed.close()
    app = create_app(Settings(database_url=url, embedded_fhir=False, log_level="WARNING", retention_days=7,
                              purge_interval_hours=0))
    with TestClient(app):
        clock.sleep(0.5)
        assert app.state.store.known_cards([old[0].uuid]) == {old[0].uuid}
