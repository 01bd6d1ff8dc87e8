"""A lone surrogate from the FHIR server (#9): a page with `"\\ud800"` is malformed JSON for the
service (as it is for a request body), reported in a card, never a 500; nothing unsendable stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
FHIR = "https://fhir.example.org/r4"


@pytest.fixture
def real_client(tmp_path: Path):
    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/cards.db", embedded_fhir=False, log_level="WARNING"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _answer(request: httpx.Request) -> httpx.Response:
    if "/Patient/" in request.url.path:
        body = b'{"resourceType": "Patient", "id": "demo-clean", "gender": "female", "birthDate": "1980-01-01"}'
    else:  # every search: one Observation whose id holds a lone surrogate
        body = (
            b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Observation",'
            b' "id": "obs\\ud800", "status": "final", "subject": {"reference": "Patient/demo-clean"},'
            b' "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}, "effectiveDateTime": "2026-01-01",'
            b' "valueQuantity": {"value": 175, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}}]}'
        )
    return httpx.Response(200, content=body, headers={"content-type": "application/fhir+json"})


def test_a_lone_surrogate_from_the_fhir_server_is_not_a_500(real_client: TestClient) -> None:
    request: dict[str, Any] = json.loads((ROOT / "app/demo/requests/clean-order-sign.json").read_text())
    request["fhirServer"] = FHIR
    request.pop("prefetch", None)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=FHIR).mock(side_effect=_answer)
        res = real_client.post("/cds-services/besponsa-order-sign", json=request)
    assert res.status_code == 200, res.text
    res.content.decode("utf-8")  # the response is valid UTF-8 throughout
    assert "\ud800" not in res.text
    summaries = [c["summary"] for c in res.json()["cards"]]
    # The page is unusable: the data it held is asked for, never read as if it were absent-but-fine
    # (issue #8: named on the card that says what could not be read, and on every card's extension).
    cards = res.json()["cards"]
    assert any("height and weight: could not be read (FHIR server answered malformed JSON)"
               in c.get("detail", "") for c in cards), summaries
    assert all(c["extension"]["besponsa-cds"]["notRead"]["height-weight"] == "unreadable" for c in cards)
