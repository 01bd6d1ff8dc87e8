"""Cards link the SMART timeline (CDS Hooks link type "smart"); `GET /` is the landing page (#10)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.demo import demo_patient_ids, demo_request
from app.demo.fhir_server import set_store
from app.http.app import create_app
from app.http.landing import demo_cases
from app.settings import Settings
from app.smart import launch_url

BASE = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("db")) / "cards.db"
    set_store(None)
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}", log_level="WARNING"))) as c:
        yield c


def test_launch_url_names_the_patient_only_for_the_embedded_demo_server() -> None:
    assert launch_url(BASE, fhir_server=f"{BASE}/fhir/", patient_id="demo-vod", embedded_fhir=True) == (
        f"{BASE}/smart/launch.html?patientId=demo-vod")
    # A real EHR's FHIR server: the launch context carries the patient, the URL does not.
    assert launch_url(BASE, fhir_server="https://ehr.example/fhir", patient_id="123",
                      embedded_fhir=True) == f"{BASE}/smart/launch.html"
    assert launch_url(BASE + "/", fhir_server=f"{BASE}/fhir", patient_id="demo-vod",
                      embedded_fhir=False) == f"{BASE}/smart/launch.html"


def test_every_card_carries_the_smart_timeline_link(client: TestClient) -> None:
    body = demo_request("hepatic", datetime.now(UTC), BASE)
    cards = client.post("/cds-services/besponsa-order-sign", json=body).json()["cards"]
    assert cards
    for card in cards:
        smart = [link for link in card["links"] if link.get("type") == "smart"]
        assert smart == [{"label": "Treatment timeline (SMART app)",
                          "url": f"{BASE}/smart/launch.html?patientId=demo-hepatic", "type": "smart"}]
        assert card["links"][0]["type"] == "absolute"  # the label link stays first


def test_card_link_for_another_fhir_server_has_no_patient_in_the_url(client: TestClient) -> None:
    from app.demo import load_patient

    resources = load_patient("demo-vod", datetime.now(UTC))
    body = {"hook": "patient-view", "hookInstance": "0b6f2c1e-8a55-4c3e-9d1e-2f4f7f1c9a01",
            "fhirServer": "https://ehr.example/fhir",
            "context": {"userId": "Practitioner/u1", "patientId": "demo-vod"}}
    # All data as prefetch: every key holds the patient's whole record (the service re-filters).
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    config = client.get("/smart/config.json").json()
    body["prefetch"] = {k: bundle for k in config["queries"] if k != "patient"}
    body["prefetch"]["patient"] = next(r for r in resources if r["resourceType"] == "Patient")
    cards = client.post("/cds-services/besponsa-patient-view", json=body).json()["cards"]
    assert cards and all({"label": "Treatment timeline (SMART app)", "url": f"{BASE}/smart/launch.html",
                          "type": "smart"} in c["links"] for c in cards)


def test_landing_page_lists_services_demo_patients_sandbox_urls_timeline_and_openapi(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for sid in ("besponsa-order-sign", "besponsa-order-select", "besponsa-patient-view"):
        assert sid in html
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
    sandbox = [urlsplit(h) for h in hrefs if h.startswith("https://sandbox.cds-hooks.org/")]
    patients = []
    for u in sandbox:
        q = parse_qs(u.query)
        assert q["serviceDiscoveryURL"] == [f"{BASE}/cds-services"]
        assert q["fhirServiceUrl"] == [f"{BASE}/fhir"]
        patients += q["patientId"]
    assert patients == demo_patient_ids() and len(patients) == 13
    timeline = [h for h in hrefs if h.startswith(f"{BASE}/smart/launch.html?")]
    assert len(timeline) == 13 and f"{BASE}/smart/launch.html" in hrefs
    assert f"{BASE}/openapi.json" in hrefs and f"{BASE}/cds-services" in hrefs
    assert client.get("/openapi.json").status_code == 200


def test_every_demo_patient_has_its_case_on_the_landing_page() -> None:
    cases = demo_cases()
    assert sorted(cases) == demo_patient_ids()
    assert all(len(case) > 10 for case in cases.values()), cases


def test_landing_page_without_the_demo_server(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", embedded_fhir=False,
                              log_level="WARNING"))
    with TestClient(app) as c:
        html = c.get("/").text
    assert "sandbox.cds-hooks.org" not in html and "BESPONSA_EMBEDDED_FHIR=false" in html


def test_the_demo_server_gives_the_sandbox_a_launch_id(client: TestClient) -> None:
    """The sandbox asks {fhirServer}/_services/smart/Launch before opening a smart link."""
    body = {"launchUrl": f"{BASE}/smart/launch.html?patientId=demo-vod",
            "parameters": {"patient": "demo-vod", "smart_messaging_origin": "https://sandbox.cds-hooks.org"}}
    a = client.post("/fhir/_services/smart/Launch", json=body, headers={"Origin": "https://sandbox.cds-hooks.org"})
    b = client.post("/fhir/_services/smart/Launch", json=body)
    assert a.status_code == b.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", a.json()["launch_id"]) and a.json() != b.json()
    assert a.headers["access-control-allow-origin"] in ("*", "https://sandbox.cds-hooks.org")
    for bad in ({}, {"launchUrl": ""}, {"launchUrl": 3}, []):
        assert client.post("/fhir/_services/smart/Launch", json=bad).status_code == 400


def test_no_launch_ids_without_the_demo_server(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", embedded_fhir=False,
                              log_level="WARNING"))
    with TestClient(app) as c:
        r = c.post("/fhir/_services/smart/Launch", json={"launchUrl": "x"})
    assert r.status_code == 404
