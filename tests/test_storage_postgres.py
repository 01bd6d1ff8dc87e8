"""The same store on PostgreSQL. Runs when BESPONSA_TEST_POSTGRES_URL is set (`.ci/run` sets it when
a server answers on 127.0.0.1:5432); each run uses its own schema, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from app.storage import CardStore, FeedbackRejected, open_store
from app.storage.report import render_report
from tests.test_storage_support import NOW, accepted, items, overridden, record

PG_URL = os.environ.get("BESPONSA_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not PG_URL,
    reason="BESPONSA_TEST_POSTGRES_URL is not set (no PostgreSQL server found; `.ci/run` sets it "
    "when one answers on 127.0.0.1:5432)",
)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"test_besponsa_{uuid.uuid4().hex[:12]}"
    yield name
    engine = create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def _open(schema: str) -> CardStore:
    return open_store(PG_URL, schema=schema)  # type: ignore[arg-type]


def test_postgres_round_trip_restart_idempotency_and_report(schema: str) -> None:
    store = _open(schema)
    cards = record(store)
    assert store.record_feedback("besponsa-order-sign", items(accepted(cards[1]), overridden(cards[0])),
                                 NOW).stored == 2
    store.close()

    again = _open(schema)  # a new store object and engine on the same database: nothing lost
    assert again.counts() == {"cards": 3, "feedback": 2}
    dup = again.record_feedback("besponsa-order-sign", items(overridden(cards[0])), NOW)
    assert (dup.stored, dup.duplicates) == (0, 1)
    with pytest.raises(FeedbackRejected):
        again.record_feedback("besponsa-order-sign",
                              items(accepted(cards[2]), {"card": "nope", "outcome": "overridden",
                                                         "outcomeTimestamp": "2026-11-23T11:00:00Z"}), NOW)
    assert again.counts()["feedback"] == 2
    (fb,) = again.feedback_for(cards[0].uuid)
    assert fb["outcome_timestamp"].isoformat() == "2026-11-23T10:05:00+00:00"
    rules = {r["rule"]: r for r in again.report()["rules"]}
    assert (rules["L-2"]["overridden"], rules["D-4"]["accepted"], rules["E-5"]["noFeedback"]) == (1, 1, 1)
    assert "L-2" in render_report(again)
    with again.engine.connect() as conn:  # the tables really are in the run's own schema
        where = conn.execute(text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'cards' "
                                  "AND table_schema = :s"), {"s": schema}).scalar()
    assert where == schema
    again.close()
