"""Embedded FHIR server (app.demo.fhir_server): read, search by code/date/status, paging, POST _search."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.demo import load_demo_resources
from app.demo.fhir_server import DemoStore, router, set_store

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
BASE = "http://testserver/fhir"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    set_store(DemoStore(load_demo_resources(NOW)))
    app = FastAPI()
    app.include_router(router, prefix="/fhir")
    with TestClient(app) as c:
        yield c
    set_store(None)


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_metadata_is_an_r4_capability_statement(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    types = {res["type"] for res in body["rest"][0]["resource"]}
    assert {"Patient", "Observation", "MedicationAdministration", "Condition", "Procedure"} <= types


def test_read_patient(client: TestClient) -> None:
    r = client.get("/fhir/Patient/demo-hepatic")
    assert r.status_code == 200
    assert r.json()["id"] == "demo-hepatic" and r.json()["gender"] == "female"


def test_read_unknown_id_and_unknown_type_are_404_operation_outcomes(client: TestClient) -> None:
    r = client.get("/fhir/Patient/nobody")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"
    r = client.get("/fhir/Spaceship?patient=demo-clean")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_search_by_patient_and_code_token_list(client: TestClient) -> None:
    r = client.get("/fhir/Observation", params={"patient": "demo-hepatic", "code": "http://loinc.org|1975-2,http://loinc.org|1920-8"})
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    values = {(e["resource"]["id"], e["resource"]["valueQuantity"]["value"]) for e in body["entry"]}
    # baseline (day -8) and pre-Day-8 (day -1): bilirubin 0.6 -> 2.1 mg/dL, AST 24 -> 128 U/L
    assert values == {
        ("demo-hepatic-bili-base", 0.6),
        ("demo-hepatic-ast-base", 24),
        ("demo-hepatic-bili-now", 2.1),
        ("demo-hepatic-ast-now", 128),
    }
    assert body["total"] == 4
    assert body["entry"][0]["fullUrl"].startswith(f"{BASE}/Observation/")
    assert body["link"][0]["relation"] == "self"


def test_code_without_system_and_subject_reference(client: TestClient) -> None:
    r = client.get("/fhir/Observation", params={"subject": "Patient/demo-hepatic", "code": "1975-2"})
    assert sorted(ids(r.json())) == ["demo-hepatic-bili-base", "demo-hepatic-bili-now"]
    r = client.get("/fhir/Observation", params={"subject": "Patient/demo-hepatic", "code": "http://snomed.info/sct|1975-2"})
    assert r.json()["total"] == 0 and "entry" not in r.json()


def test_search_never_leaks_other_patients(client: TestClient) -> None:
    r = client.get("/fhir/Observation", params={"patient": "demo-clean", "_count": "1000"})
    subjects = {e["resource"]["subject"]["reference"] for e in r.json()["entry"]}
    assert subjects == {"Patient/demo-clean"}


def test_date_prefixes(client: TestClient) -> None:
    day_minus_1 = (NOW.date() - timedelta(days=1)).isoformat()
    day_minus_5 = (NOW.date() - timedelta(days=5)).isoformat()
    q = {"patient": "demo-hepatic", "code": "http://loinc.org|1975-2"}
    assert ids(client.get("/fhir/Observation", params={**q, "date": f"ge{day_minus_5}"}).json()) == ["demo-hepatic-bili-now"]
    assert ids(client.get("/fhir/Observation", params={**q, "date": f"lt{day_minus_5}"}).json()) == ["demo-hepatic-bili-base"]
    assert ids(client.get("/fhir/Observation", params={**q, "date": day_minus_1}).json()) == ["demo-hepatic-bili-now"]
    assert ids(client.get("/fhir/Observation", params={**q, "date": f"eq{day_minus_1}"}).json()) == ["demo-hepatic-bili-now"]
    assert ids(client.get("/fhir/Observation", params={**q, "date": f"le{day_minus_1}"}).json()) == [
        "demo-hepatic-bili-base",
        "demo-hepatic-bili-now",
    ]
    assert ids(client.get("/fhir/Observation", params={**q, "date": f"gt{day_minus_1}"}).json()) == []
    # two date parameters are ANDed
    both = client.get(f"/fhir/Observation?patient=demo-hepatic&code=1975-2&date=ge{day_minus_5}&date=lt{day_minus_1}")
    assert ids(both.json()) == []


def test_sort_and_count_paging_with_next_links(client: TestClient) -> None:
    first = client.get("/fhir/Observation", params={"patient": "demo-no-response", "code": "http://loinc.org|1975-2", "_sort": "-date", "_count": "2"}).json()
    assert first["total"] == 4  # baseline + before cycles 2, 3 and 4
    assert ids(first) == ["demo-no-response-bili-now", "demo-no-response-bili-c3d1"]
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert next_url.startswith(f"{BASE}/Observation?")
    second = client.get(next_url.removeprefix("http://testserver")).json()
    assert ids(second) == ["demo-no-response-bili-c2d1", "demo-no-response-bili-base"]
    assert all(link["relation"] != "next" for link in second["link"])
    ascending = client.get("/fhir/Observation", params={"patient": "demo-no-response", "code": "1975-2", "_sort": "date"}).json()
    assert ids(ascending)[0] == "demo-no-response-bili-base"


def test_post_search_form_body(client: TestClient) -> None:
    r = client.post(
        "/fhir/MedicationAdministration/_search",
        data={"patient": "demo-hepatic", "status": "completed"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    body = r.json()
    assert ids(body) == ["demo-hepatic-ino-c1d1"]
    dose = body["entry"][0]["resource"]["dosage"]["dose"]
    assert dose == {"value": 1.36, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}  # 0.8 mg/m2 x 1.697 m2
    assert body["entry"][0]["fullUrl"] == f"{BASE}/MedicationAdministration/demo-hepatic-ino-c1d1"


def test_status_and_id_filters(client: TestClient) -> None:
    r = client.get("/fhir/MedicationRequest", params={"patient": "demo-qt", "status": "active"})
    names = sorted(e["resource"]["medicationCodeableConcept"]["text"] for e in r.json()["entry"])
    assert names == ["acetaminophen", "dexamethasone", "diphenhydramine", "ondansetron 4 MG Oral Tablet"]  # SCD 198052 (#10)
    r = client.get("/fhir/Condition", params={"_id": "demo-vod-vod,demo-vod-b-all"})
    assert sorted(ids(r.json())) == ["demo-vod-b-all", "demo-vod-vod"]


@pytest.mark.parametrize(
    "query",
    [
        "patient=demo-clean&_count=ten",
        "patient=demo-clean&date=yesterday",
        "patient=demo-clean&_sort=value",
        "patient=demo-clean&flavour=vanilla",
        "patient=demo-clean&code=",
    ],
)
def test_bad_parameters_are_400_operation_outcomes(client: TestClient, query: str) -> None:
    r = client.get(f"/fhir/Observation?{query}")
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["code"] == "invalid"
