"""POST /smart/timeline and GET /smart/...: the SMART treatment timeline's data and files (issue #10).

The timeline must show what the cards say: its decisions are compared with the patient-view
service's cards for the same demo patient, and its course with the engine's reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.demo import load_patient
from app.demo.fhir_server import set_store
from app.engine.decisions import Decision, DecisionCode
from app.engine.facts import Analyte, ClinicalFacts, DoseGiven, Measurement, PatientInfo
from app.engine.policy import Policy
from app.http.app import create_app
from app.settings import Settings
from app.smart.timeline import build_timeline

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("db")) / "cards.db"
    set_store(None)
    app = create_app(Settings(database_url=f"sqlite:///{db}", log_level="WARNING"))
    with TestClient(app) as c:
        yield c


def _hook(patient: str) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": "5b0a4e8e-33a4-4d52-9b1e-0c6f4a8e1f10",
            "fhirServer": "http://127.0.0.1:8080/fhir",
            "context": {"userId": "Practitioner/u1", "patientId": patient}}


def _card_decisions(client: TestClient, patient: str) -> list[tuple[str, list[str]]]:
    r = client.post("/cds-services/besponsa-patient-view", json=_hook(patient))
    assert r.status_code == 200, r.text
    return [(c["extension"]["besponsa-cds"]["decision"], c["extension"]["besponsa-cds"]["rules"])
            for c in r.json()["cards"]]


def _timeline(client: TestClient, patient: str) -> dict[str, Any]:
    r = client.post("/smart/timeline", json={"patientId": patient,
                                             "resources": load_patient(patient, datetime.now(UTC))})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("patient", ["demo-vod", "demo-hepatic", "demo-neutropenia", "demo-interruption"])
def test_timeline_decisions_are_the_patient_view_cards(client: TestClient, patient: str) -> None:
    tl = _timeline(client, patient)
    assert [(d["code"], d["rules"]) for d in tl["decisions"]] == _card_decisions(client, patient)
    if tl["decisions"]:
        assert tl["todaysDecision"] == tl["decisions"][0]


def test_vod_timeline_shows_doses_thresholds_and_the_discontinue(client: TestClient) -> None:
    tl = _timeline(client, "demo-vod")
    assert [(d["cycle"], d["day"], d["mg"]) for d in tl["doses"]] == [(1, 1, 1.32), (1, 8, 0.82)]
    assert {(t["panel"], t["value"]) for t in tl["thresholds"]} == {
        ("anc", 1.0), ("platelets", 50.0), ("liver", 1.5), ("liver", 2.5)}
    assert tl["todaysDecision"]["code"] == "discontinue" and "L-1" in tl["todaysDecision"]["rules"]
    bilirubin = [lab for lab in tl["labs"] if lab["analyte"] == "bilirubin-total"]
    assert bilirubin and all(lab["ratio"] == round(lab["value"] / lab["uln"], 2) for lab in bilirubin)
    assert {lab["panel"] for lab in tl["labs"]} == {"anc", "platelets", "liver"}
    hold = [s for s in tl["spans"] if s["kind"] == "hold"]
    assert len(hold) == 1 and hold[0]["start"] == tl["today"] and "L-3" in hold[0]["rules"]


def test_prefetch_read_by_the_app_gives_the_same_timeline(client: TestClient) -> None:
    """The app runs config.json's queries (the patient-view prefetch) against the FHIR server."""
    config = client.get("/smart/config.json").json()
    patient = "demo-hepatic"
    prefetch = {}
    for key, template in config["queries"].items():
        r = client.get("/fhir/" + template.replace(config["patientToken"], patient))
        assert r.status_code == 200, (key, r.text)
        prefetch[key] = r.json()
    from_prefetch = client.post("/smart/timeline", json={"patientId": patient, "prefetch": prefetch})
    assert from_prefetch.status_code == 200, from_prefetch.text
    a, b = from_prefetch.json(), _timeline(client, patient)
    for key in ("doses", "decisions", "spans", "thresholds", "nextDose"):
        assert a[key] == b[key], key
    assert sorted(lab["reference"] for lab in a["labs"]) == sorted(lab["reference"] for lab in b["labs"])


def test_a_query_the_app_could_not_read_is_reported_not_ignored(client: TestClient) -> None:
    config = client.get("/smart/config.json").json()
    prefetch = {k: client.get("/fhir/" + q.replace(config["patientToken"], "demo-hepatic")).json()
                for k, q in config["queries"].items() if k != "ecg"}
    tl = client.post("/smart/timeline", json={"patientId": "demo-hepatic", "prefetch": prefetch}).json()
    assert [p["reason"] for p in tl["problems"]] == [
        "Observation (ecg): not in prefetch and no fhirServer to query"]
    # Without the liver tests no decision is possible: 412, as for a hook call.
    del prefetch["labs"]
    r = client.post("/smart/timeline", json={"patientId": "demo-hepatic", "prefetch": prefetch})
    assert r.status_code == 412 and r.json()["keys"] == ["labs"]


@pytest.mark.parametrize("body", [
    {"patientId": "demo-vod"},  # neither prefetch nor resources
    {"patientId": "demo-vod", "resources": [], "prefetch": {}},  # both
    {"patientId": "../etc", "resources": []},  # not a FHIR id
    {"patientId": "demo-vod", "resources": "not a list"},
    {"patientId": "demo-vod", "resources": [], "extra": 1},
    [],
])
def test_malformed_timeline_requests_are_400(client: TestClient, body: Any) -> None:
    r = client.post("/smart/timeline", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


def test_non_json_body_is_400(client: TestClient) -> None:
    r = client.post("/smart/timeline", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_junk_resources_are_reported_not_a_500(client: TestClient) -> None:
    r = client.post("/smart/timeline", json={"patientId": "p1", "resources": [{"resourceType": 3}, {"x": 1}]})
    assert r.status_code == 200
    tl = r.json()
    assert tl["doses"] == [] and tl["decisions"] == [] and tl["todaysDecision"] is None
    assert len(tl["problems"]) == 2


def test_config_scopes_cover_exactly_what_the_app_reads(client: TestClient) -> None:
    config = client.get("/smart/config.json").json()
    scopes = config["scope"].split()
    types = {q.split("?")[0].split("/")[0] for q in config["queries"].values()}
    assert {f"patient/{t}.rs" for t in types} <= set(scopes)
    assert not any("*" in s or s.startswith(("user/", "system/")) or s.endswith((".write", ".cud"))
                   for s in scopes)


def test_static_files_are_served_and_sources_are_not(client: TestClient) -> None:
    for path, media in [("launch.html", "text/html"), ("index.html", "text/html"),
                        ("timeline.js", "text/javascript"), ("vendor/fhir-client.pure.min.js", "text/javascript"),
                        ("vendor/vega.min.js", "text/javascript"), ("vendor/vega-lite.min.js", "text/javascript"),
                        ("vendor/vega-embed.min.js", "text/javascript")]:
        r = client.get(f"/smart/{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), path
    for path in ("timeline.py", "__init__.py", "..%2F..%2Fapp%2Fcards.py", "nope.html", "vendor"):
        assert client.get(f"/smart/{path}").status_code == 404, path
    assert client.get("/smart/", follow_redirects=False).headers["location"] == "/smart/launch.html"


def test_pages_load_only_vendored_scripts(client: TestClient) -> None:
    """No CDN: the app works with no internet."""
    for page in ("launch.html", "index.html"):
        html = client.get(f"/smart/{page}").text
        assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


# --------------------------------------------------------------------------- build_timeline alone


def _dose(ref: str, when: datetime, mg_m2: float) -> DoseGiven:
    return DoseGiven(reference=f"MedicationAdministration/{ref}", given_at=when, dose_mg=None,
                     dose_mg_per_m2=mg_m2)


def test_interruptions_omitted_doses_and_hold_become_spans() -> None:
    c1 = NOW - timedelta(days=80)
    c2 = c1 + timedelta(days=21 + 14)  # Cycle 2 Day 1 two weeks late (C-4)
    c3 = c2 + timedelta(days=28)
    doses = (
        _dose("a", c1, 0.8), _dose("b", c1 + timedelta(days=7), 0.5), _dose("c", c1 + timedelta(days=14), 0.5),
        _dose("d", c2, 0.375), _dose("e", c2 + timedelta(days=7), 0.375),  # Day 15 never given
        _dose("f", c3, 0.375),
    )
    facts = ClinicalFacts(patient=PatientInfo("p1"), doses_given=doses, measurements=(
        Measurement(Analyte.AST, 150.0, NOW - timedelta(days=1), "Observation/ast", uln=40.0),
        Measurement(Analyte.ALT, 30.0, NOW - timedelta(days=1), "Observation/alt"),  # no ULN, default used
        Measurement(Analyte.ANC, 0.6, NOW - timedelta(days=1), "Observation/anc"),
    ))
    hold = Decision(code=DecisionCode.HOLD, rules=("L-2",), citations=("SmPC 4.2 Table 3",),
                    summary="Hold: AST 3.8 x ULN", detail="", recovery_criteria="AST/ALT <= 2.5 x ULN")
    tl = build_timeline(facts, [hold], NOW, Policy(), "EU")

    assert [(d["cycle"], d["day"]) for d in tl["doses"]] == [(1, 1), (1, 8), (1, 15), (2, 1), (2, 8), (3, 1)]
    assert [d["reductionLevel"] for d in tl["doses"]] == [0, 0, 0, 1, 1, 1]
    kinds = {s["kind"]: s for s in tl["spans"]}
    assert kinds["interruption"]["cycle"] == 2 and kinds["interruption"]["days"] == 14
    assert kinds["interruption"]["start"] == (c1 + timedelta(days=21)).date().isoformat()
    assert kinds["interruption"]["end"] == c2.date().isoformat()
    assert kinds["omitted"]["cycle"] == 2  # Cycle 2 had 2 doses and Cycle 3 began
    assert kinds["hold"]["end"] is None and "AST/ALT <= 2.5 x ULN" in kinds["hold"]["label"]
    assert len([s for s in tl["spans"] if s["kind"] == "omitted"]) == 1
    ast = next(lab for lab in tl["labs"] if lab["analyte"] == "ast")
    assert ast["ratio"] == 3.75 and ast["ulnSource"] == "reported"
    alt = next(lab for lab in tl["labs"] if lab["analyte"] == "alt")
    assert alt["ulnSource"] == "default" and alt["ratio"] == round(30.0 / alt["uln"], 2)
    assert tl["course"]["reductionLevel"] >= 1 and tl["todaysDecision"]["code"] == "hold"
    assert tl["nextDose"] is None  # the hold carries no dose


def test_next_dose_is_the_engine_decision_dose() -> None:
    from app.engine.decisions import DoseRecommendation

    dose = DoseRecommendation(mg_per_m2=0.5, mg=0.91, bsa_m2=1.82, cycle=1, day=8, vials=1)
    d = Decision(code=DecisionCode.PROCEED, rules=("D-1", "R-1"), citations=("SmPC 4.2",),
                 summary="Proceed", detail="", dose=dose, extras={"due_date": NOW.date()})
    tl = build_timeline(ClinicalFacts(patient=PatientInfo("p1")), [d], NOW, Policy(), "EU")
    assert tl["nextDose"] == {"cycle": 1, "day": 8, "mg": 0.91, "mgPerM2": 0.5, "bsaM2": 1.82,
                              "reductionLevel": 0, "vials": 1, "decision": "proceed",
                              "rules": ["D-1", "R-1"], "date": NOW.date().isoformat()}


@dataclass(frozen=True)
class _NextDoseLike:
    """The shape of the next due dose patient-view attaches to its decisions (extras["next_dose"])."""

    due: date
    dose_date: datetime
    cycle: int = 2
    day: int = 1

    def as_json(self) -> dict[str, Any]:
        return {"cycle": self.cycle, "day": self.day, "doseNumber": 1, "due": self.due.isoformat(),
                "reductionLevel": 0, "mgPerM2": 0.8, "mg": 1.48, "bsaM2": 1.85}


def test_an_overdue_next_dose_is_drawn_with_its_interruption_and_decisions() -> None:
    c1 = NOW - timedelta(days=35)
    doses = (_dose("a", c1, 0.8), _dose("b", c1 + timedelta(days=7), 0.5), _dose("c", c1 + timedelta(days=14), 0.5))
    due = (c1 + timedelta(days=21)).date()  # Cycle 2 Day 1 was due 14 days ago
    nd = _NextDoseLike(due=due, dose_date=NOW)
    hold = Decision(code=DecisionCode.HOLD, rules=("H-2",), citations=("SmPC 4.2 Table 2",),
                    summary="Next dose, Cycle 2 Day 1: hold", detail="", extras={"next_dose": nd})
    tl = build_timeline(ClinicalFacts(patient=PatientInfo("p1"), doses_given=doses), [hold], NOW,
                        Policy(), "EU")
    assert tl["nextDose"] == {"cycle": 2, "day": 1, "date": due.isoformat(), "mg": 1.48, "mgPerM2": 0.8,
                              "bsaM2": 1.85, "reductionLevel": 0, "decision": "hold", "rules": ["H-2"],
                              "decisions": [{"code": "hold", "rules": ["H-2"]}]}
    gap = [s for s in tl["spans"] if s["kind"] == "interruption"]
    assert len(gap) == 1 and gap[0]["start"] == due.isoformat() and gap[0]["end"] == NOW.date().isoformat()
    assert len(tl["doses"]) == 3  # the next dose is not a dose given


def test_a_course_that_cannot_be_read_is_reported_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.smart.timeline as timeline

    def broken(*_: Any) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(timeline, "reconstruct_course", broken)
    facts = ClinicalFacts(patient=PatientInfo("p1"), doses_given=(_dose("a", NOW - timedelta(days=3), 0.8),))
    tl = timeline.build_timeline(facts, [], NOW, Policy(), "EU")
    assert tl["doses"] == [] and tl["course"]["cycles"] == []
    assert tl["problems"][-1]["reason"] == "the treatment course could not be reconstructed from the doses given"


@pytest.mark.parametrize("raw", [b'{"patientId": "p1", "resources": [{"resourceType": "Patient", "id": "\\ud800"}]}',
                                 b'{"patientId": "p1", "resources": [], "x": NaN}', b"", b"[" * 5000])
def test_bodies_that_are_not_strict_json_are_400(client: TestClient, raw: bytes) -> None:
    r = client.post("/smart/timeline", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_a_non_json_content_type_is_400(client: TestClient) -> None:
    r = client.post("/smart/timeline", content=b"patientId=p1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
