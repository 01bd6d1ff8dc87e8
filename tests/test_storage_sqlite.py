"""The card and feedback store on SQLite: migrations, round trip, restart, idempotency, atomicity."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.storage import FeedbackRejected, open_store
from app.storage.models import metadata
from tests.test_storage_support import DECISIONS, NOW, accepted, items, make_cards, overridden, record


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/var/besponsa-cds.db"  # the directory does not exist yet


def test_open_creates_directory_and_schema_at_head(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    assert (tmp_path / "var" / "besponsa-cds.db").exists()
    tables = set(inspect(store.engine).get_table_names())
    assert {"cards", "feedback", "alembic_version"} <= tables
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
        # the migration builds exactly the tables the code uses (no drift)
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    store.close()
    open_store(db_url).close()  # re-opening an up-to-date store is a no-op


def test_cards_and_feedback_survive_a_restart(db_url: str) -> None:
    store = open_store(db_url)
    cards = record(store)
    result = store.record_feedback("besponsa-order-sign",
                                   items(accepted(cards[1]), overridden(cards[0])), NOW)
    assert (result.stored, result.duplicates) == (2, 0)
    store.close()  # dispose the engine: nothing may live only in memory

    reopened = open_store(db_url)
    card = reopened.get_card(cards[1].uuid)
    assert card is not None
    assert card["decision"] == "correct-dose" and card["rules"] == ["D-4", "D-5"]
    assert card["hook_instance"] == "hi-1" and card["patient_id"] == "p1" and card["label"] == "EU"
    assert card["suggestion_uuids"] == [cards[1].suggestions[0].uuid]
    assert card["created_at"] == NOW
    (fb,) = reopened.feedback_for(cards[1].uuid)
    assert fb["outcome"] == "accepted" and fb["accepted_suggestions"] == [cards[1].suggestions[0].uuid]
    assert fb["outcome_timestamp"] == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    (ov,) = reopened.feedback_for(cards[0].uuid)
    assert (ov["override_code"], ov["override_display"], ov["user_comment"]) == (
        "gilbert-or-haemolysis", "Bilirubin due to Gilbert's syndrome or haemolysis", "Known Gilbert's")
    assert reopened.counts() == {"cards": 3, "feedback": 2}
    reopened.close()


def test_feedback_is_idempotent(db_url: str) -> None:
    store = open_store(db_url)
    cards = record(store)
    first = store.record_feedback("besponsa-order-sign", items(overridden(cards[0])), NOW)
    again = store.record_feedback("besponsa-order-sign", items(overridden(cards[0]), overridden(cards[0])), NOW)
    assert (first.stored, again.stored, again.duplicates) == (1, 0, 2)
    assert len(store.feedback_for(cards[0].uuid)) == 1
    # recording the same cards again (a retried response) adds nothing
    cards_again = store.record_cards(service_id="besponsa-order-sign", hook_instance="hi-1", patient_id="p1",
                                     cards=cards, decisions=DECISIONS, now=NOW)
    assert cards_again == 0


@pytest.mark.parametrize("bad, field", [
    ({"card": "no-such-card", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z"},
     "feedback[1].card"),
    ("wrong-suggestion", "feedback[1].acceptedSuggestions"),
    ("reason-not-offered", "feedback[1].overrideReason.reason.code"),
])
def test_rejected_feedback_stores_nothing(db_url: str, bad: object, field: str) -> None:
    store = open_store(db_url)
    cards = record(store)
    if bad == "wrong-suggestion":
        bad = accepted(cards[1]) | {"acceptedSuggestions": [{"id": cards[0].suggestions[0].uuid}]}
    elif bad == "reason-not-offered":  # L-2's card does not offer "due-to-underlying-disease" (an H-rule reason)
        bad = overridden(cards[0], code="due-to-underlying-disease")
    with pytest.raises(FeedbackRejected) as exc:
        store.record_feedback("besponsa-order-sign", items(accepted(cards[1]), bad), NOW)
    assert [d["field"] for d in exc.value.details] == [field]
    assert store.counts()["feedback"] == 0  # the valid first item was not stored either


def test_card_of_another_service_is_unknown(db_url: str) -> None:
    store = open_store(db_url)
    cards = record(store, service_id="besponsa-order-sign")
    with pytest.raises(FeedbackRejected):
        store.record_feedback("besponsa-patient-view", items(overridden(cards[0])), NOW)


def test_record_cards_needs_one_decision_per_card(db_url: str) -> None:
    store = open_store(db_url)
    cards, decisions = make_cards()
    with pytest.raises(ValueError):
        store.record_cards(service_id="s", hook_instance="h", patient_id="p1", cards=cards,
                           decisions=decisions[:1], now=NOW)


def test_in_memory_sqlite_works(tmp_path: Path) -> None:
    store = open_store("sqlite://")
    cards = record(store)
    assert store.record_feedback("besponsa-order-sign", items(accepted(cards[2])), NOW).stored == 1
