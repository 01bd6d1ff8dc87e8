"""POST /cds-services/{id}/feedback on a small app with the feedback router and a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.http.feedback import router as feedback_router
from app.storage import CardStore, open_store
from tests.test_storage_support import accepted, overridden, record

SERVICE = "besponsa-order-sign"
URL = f"/cds-services/{SERVICE}/feedback"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CardStore]:
    s = open_store(f"sqlite:///{tmp_path}/fb.db")
    yield s
    s.close()


@pytest.fixture
def client(store: CardStore) -> TestClient:
    app = FastAPI()
    app.state.store = store
    app.state.services = {SERVICE: object(), "besponsa-patient-view": object()}
    app.include_router(feedback_router)
    return TestClient(app, raise_server_exceptions=False)


def post(client: TestClient, *items: dict[str, Any], url: str = URL) -> Any:
    return client.post(url, json={"feedback": list(items)})


def test_accepted_and_overridden_round_trip(client: TestClient, store: CardStore) -> None:
    cards = record(store)
    r = post(client, accepted(cards[1]), overridden(cards[0]))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 2, "stored": 2, "duplicates": 0}
    (fb,) = store.feedback_for(cards[0].uuid)
    assert (fb["outcome"], fb["override_code"], fb["user_comment"]) == (
        "overridden", "gilbert-or-haemolysis", "Known Gilbert's")


def test_same_feedback_twice_is_stored_once(client: TestClient, store: CardStore) -> None:
    cards = record(store)
    assert post(client, accepted(cards[1])).json()["stored"] == 1
    again = post(client, accepted(cards[1]))
    assert again.status_code == 200 and again.json() == {"received": 1, "stored": 0, "duplicates": 1}
    assert store.counts()["feedback"] == 1


def test_overridden_without_reason_is_allowed(client: TestClient, store: CardStore) -> None:
    cards = record(store)
    assert post(client, overridden(cards[0], code=None)).status_code == 200
    assert store.feedback_for(cards[0].uuid)[0]["override_code"] is None


def _bad_cases(cards: list[Any]) -> list[tuple[str, dict[str, Any], str]]:
    ok = accepted(cards[1])
    return [
        ("unknown card uuid", {**overridden(cards[0]), "card": "00000000-0000-0000-0000-000000000000"},
         "feedback[1].card"),
        ("wrong outcome", {**ok, "outcome": "dismissed"}, "feedback[1].outcome"),
        ("missing card", {k: v for k, v in ok.items() if k != "card"}, "feedback[1].card"),
        ("missing outcome", {k: v for k, v in ok.items() if k != "outcome"}, "feedback[1].outcome"),
        ("missing timestamp", {k: v for k, v in ok.items() if k != "outcomeTimestamp"},
         "feedback[1].outcomeTimestamp"),
        ("bad timestamp", {**ok, "outcomeTimestamp": "yesterday"}, "feedback[1].outcomeTimestamp"),
        ("accepted without suggestions", {k: v for k, v in ok.items() if k != "acceptedSuggestions"},
         "feedback[1]"),
        ("unknown suggestion id", {**ok, "acceptedSuggestions": [{"id": "not-a-suggestion"}]},
         "feedback[1].acceptedSuggestions"),
        ("reason without code", {**overridden(cards[0]), "overrideReason": {"reason": {
            "system": "https://besponsa-cds.org/fhir/CodeSystem/override-reason", "display": "x"}}},
         "feedback[1].overrideReason.reason.code"),
        ("reason not offered on the card", overridden(cards[0], code="due-to-underlying-disease"),
         "feedback[1].overrideReason.reason.code"),
        ("override reason on accepted", {**ok, "overrideReason": overridden(cards[0])["overrideReason"]},
         "feedback[1]"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_feedback_is_400_with_field_and_stores_nothing(client: TestClient, store: CardStore, case: int) -> None:
    cards = record(store)
    name, bad, field = _bad_cases(cards)[case]
    r = post(client, accepted(cards[2]), bad)  # a valid item first: the request is atomic
    assert r.status_code == 400, name
    body = r.json()
    assert body["error"] == "invalid_request" and body["message"]
    assert field in [d["field"] for d in body["details"]], (name, body)
    assert store.counts()["feedback"] == 0, name


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"feedback": []}', b'{"feedback": {}}', b"null"])
def test_malformed_bodies_are_400(client: TestClient, store: CardStore, payload: bytes) -> None:
    r = client.post(URL, content=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request" and r.json()["details"]


def test_unknown_service_is_404(client: TestClient, store: CardStore) -> None:
    cards = record(store)
    r = post(client, accepted(cards[1]), url="/cds-services/no-such-service/feedback")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert store.counts()["feedback"] == 0


def test_card_shown_by_another_service_is_400(client: TestClient, store: CardStore) -> None:
    cards = record(store, service_id="besponsa-patient-view")
    r = post(client, overridden(cards[0]))
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "feedback[0].card"


def test_user_comment_is_never_logged(client: TestClient, store: CardStore, caplog: pytest.LogCaptureFixture) -> None:
    cards = record(store)
    caplog.set_level("DEBUG")
    post(client, overridden(cards[0], comment="SECRET-COMMENT patient said"))
    post(client, overridden(cards[0], code="due-to-underlying-disease", comment="SECRET-COMMENT 2"))
    assert "SECRET-COMMENT" not in caplog.text
