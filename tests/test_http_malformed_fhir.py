"""Malformed FHIR inside a well-formed hook request, through the real pipeline: never a 500.

A resource whose members have the wrong JSON types is reported and skipped (issue #4); a draft
order too malformed to rewrite still gets its card, without the suggestion (issue #2)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.demo import demo_request, load_demo_resources
from app.http.app import create_app
from app.settings import Settings

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Path(tmp_path_factory.mktemp("db")) / "cards.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", log_level="WARNING", embedded_fhir=False))
    with TestClient(app) as c:
        yield c


def _prefetched(name: str) -> dict[str, Any]:
    """The demo request for `name` with every key prefetched (no fhirServer)."""
    body = demo_request(name, NOW, "http://127.0.0.1:8080")
    body.pop("fhirServer", None)
    pid = body["context"]["patientId"]
    mine = [copy.deepcopy(r) for r in load_demo_resources(NOW)
            if r.get("subject", {}).get("reference") == f"Patient/{pid}"
            or (r["resourceType"] == "Patient" and r["id"] == pid)]

    def bundle(rt: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in mine if r["resourceType"] == rt]}

    body["prefetch"] = {"patient": next(r for r in mine if r["resourceType"] == "Patient"),
                        "labs": bundle("Observation"), "cbc": None, "vitals": None,
                        "medicationAdministrations": bundle("MedicationAdministration"),
                        "conditions": bundle("Condition")}
    return body


def _decisions(response: Any) -> list[str]:
    assert response.status_code == 200, response.text[:300]
    return [c["extension"]["besponsa-cds"]["decision"] for c in response.json()["cards"]]


@pytest.mark.parametrize("field,value", [("status", {"x": 1}), ("status", [1]), ("id", {"x": 1}),
                                         ("subject", 7), ("code", "1975-2"), ("valueQuantity", [])])
def test_an_observation_with_members_of_the_wrong_type_is_skipped(client: Any, field: str, value: Any) -> None:
    body = _prefetched("hepatic")
    entries = body["prefetch"]["labs"]["entry"]
    clean = _decisions(client.post("/cds-services/besponsa-order-sign", json=_prefetched("hepatic")))
    # Break one result that is not decisive (an older one), keep the rest.
    entries[0]["resource"][field] = value
    response = client.post("/cds-services/besponsa-order-sign", json=body)
    decisions = _decisions(response)
    assert set(clean) <= set(decisions) and "proceed" not in decisions  # the hold still stands
    if decisions != clean:  # the skipped resource is reported, never passed silently
        assert "obtain-data" in decisions


def test_a_draft_order_too_malformed_to_rewrite_still_gets_its_card(client: Any) -> None:
    body = _prefetched("wrong-dose")
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"][0]["timing"] = 5  # junk: the dose can be read, the order not rewritten
    clean = client.post("/cds-services/besponsa-order-sign", json=_prefetched("wrong-dose")).json()["cards"]
    cards = client.post("/cds-services/besponsa-order-sign", json=body).json()["cards"]
    decisions = [c["extension"]["besponsa-cds"]["decision"] for c in cards]
    assert decisions == [c["extension"]["besponsa-cds"]["decision"] for c in clean]
    assert decisions[0] == "correct-dose" and clean[0].get("suggestions")
    if not cards[0].get("suggestions"):  # the card still goes out, and says why it cannot act
        assert "No suggestion could be built" in cards[0]["detail"]
