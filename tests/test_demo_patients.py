"""Demo patients and example requests (app/demo): relative dates, label numbers, valid FHIR R4."""

from __future__ import annotations

import importlib
import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.demo import DATA_DIR, REQUESTS_DIR, _generate, demo_patient_ids, demo_request, load_patient

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FAMILIES = [
    "demo-clean", "demo-hepatic", "demo-wrong-dose", "demo-no-response", "demo-neutropenia", "demo-vod",
    "demo-infusion-reaction", "demo-interruption", "demo-stale-labs", "demo-qt", "demo-hsct-cycle3",
    "demo-pregnancy", "demo-live-vaccine",
]  # fmt: skip


def by_id(pid: str, now: datetime = NOW) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in load_patient(pid, now)}


def mosteller(height_cm: float, weight_kg: float) -> float:
    return math.sqrt(height_cm * weight_kg / 3600)


def draft_dose_mg(name: str) -> float:
    request = demo_request(name, NOW, "http://127.0.0.1:8080")
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    quantity = order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert quantity["unit"] == "mg" and quantity["code"] == "mg" and quantity["system"] == "http://unitsofmeasure.org"
    return quantity["value"]


def test_every_rule_family_has_a_patient_and_a_request() -> None:
    assert sorted(FAMILIES) == demo_patient_ids()
    for pid in FAMILIES:
        assert (REQUESTS_DIR / f"{pid.removeprefix('demo-')}-order-sign.json").exists()
    assert (REQUESTS_DIR / "hepatic-patient-view.json").exists()


def test_files_are_in_sync_with_the_generator() -> None:
    for builder, _request in _generate.patients():
        shipped = json.loads((DATA_DIR / f"{builder.pid}.json").read_text())
        assert [e["resource"] for e in shipped["entry"]] == builder.resources, builder.pid


def test_dates_are_relative_to_load_time() -> None:
    a = by_id("demo-hepatic", NOW)["demo-hepatic-ino-c1d1"]
    b = by_id("demo-hepatic", NOW + timedelta(days=30))["demo-hepatic-ino-c1d1"]
    assert a["effectivePeriod"]["start"] == "2026-11-16T00:00:00Z"  # day -7
    assert b["effectivePeriod"]["start"] == "2026-12-16T00:00:00Z"
    assert "${" not in json.dumps(load_patient("demo-hepatic", NOW))


def test_requests_point_at_embedded_server_without_prefetch() -> None:
    for path in REQUESTS_DIR.glob("*.json"):
        request = json.loads(path.read_text())
        assert request["fhirServer"] == "http://127.0.0.1:8080/fhir", path.name
        assert "prefetch" not in request
        assert request["context"]["patientId"] in FAMILIES
        if request["hook"] == "order-sign":
            order = request["context"]["draftOrders"]["entry"][0]["resource"]
            assert order["medicationCodeableConcept"]["coding"][0] == {
                "system": RXNORM, "code": "1942950", "display": "inotuzumab ozogamicin",
            }  # fmt: skip
            assert order["status"] == "draft" and order["subject"]["reference"] == f"Patient/{request['context']['patientId']}"


def test_demo_request_uses_the_given_base_url() -> None:
    request = demo_request("demo-wrong-dose", NOW, "http://cds.example.org:9000/")
    assert request["fhirServer"] == "http://cds.example.org:9000/fhir"
    with pytest.raises(KeyError):
        demo_request("nobody", NOW, "http://x")


def test_clean_order_is_the_cycle_1_day_1_dose() -> None:
    # SmPC 4.2 Table 1: cycle 1 Day 1 0.8 mg/m2; 175 cm, 68 kg -> BSA 1.818 m2 -> 1.45 mg
    data = by_id("demo-clean")
    bsa = mosteller(data["demo-clean-height-base"]["valueQuantity"]["value"], data["demo-clean-weight-now"]["valueQuantity"]["value"])
    assert bsa == pytest.approx(1.818, abs=0.001)
    assert draft_dose_mg("clean") == pytest.approx(0.8 * bsa, abs=0.005)
    assert not [r for r in data.values() if r["resourceType"] == "MedicationAdministration"]


def test_hepatic_patient_has_the_l2_numbers() -> None:
    data = by_id("demo-hepatic")
    bili, ast = data["demo-hepatic-bili-now"], data["demo-hepatic-ast-now"]
    assert bili["valueQuantity"]["value"] == 2.1 and bili["referenceRange"][0]["high"]["value"] == 1.2
    assert bili["valueQuantity"]["value"] / bili["referenceRange"][0]["high"]["value"] > 1.5  # L-2 bilirubin > 1.5 x ULN
    assert ast["valueQuantity"]["value"] / ast["referenceRange"][0]["high"]["value"] == pytest.approx(3.2)  # > 2.5 x ULN
    bsa = mosteller(162, 64)
    assert draft_dose_mg("hepatic") == pytest.approx(0.5 * bsa, abs=0.005)  # Day 8 dose itself is right


def test_wrong_dose_is_0_8_mg_per_m2_on_day_8() -> None:
    bsa = mosteller(165, 60)
    ordered = draft_dose_mg("wrong-dose")
    assert ordered / bsa == pytest.approx(0.8, abs=0.005)  # the label expects 0.5 mg/m2 on Day 8
    given = by_id("demo-wrong-dose")["demo-wrong-dose-ino-c1d1"]
    assert given["effectivePeriod"]["start"].startswith((NOW.date() - timedelta(days=7)).isoformat())


def test_no_response_patient_had_three_full_cycles() -> None:
    starts = sorted(
        date.fromisoformat(r["effectivePeriod"]["start"][:10])
        for r in load_patient("demo-no-response", NOW)
        if r["resourceType"] == "MedicationAdministration"
    )
    offsets = [(s - NOW.date()).days for s in starts]
    # cycle 1 of 21 days, cycles 2-3 of 28 days (SmPC 4.2 Table 1); today is cycle 4 Day 1
    assert offsets == [-77, -70, -63, -56, -49, -42, -28, -21, -14]


def test_interruption_patient_is_14_days_late_for_cycle_2() -> None:
    starts = sorted(
        date.fromisoformat(r["effectivePeriod"]["start"][:10])
        for r in load_patient("demo-interruption", NOW)
        if r["resourceType"] == "MedicationAdministration"
    )
    planned_c2d1 = starts[0] + timedelta(days=21)  # Day 22 of a 21-day cycle 1
    assert (NOW.date() - planned_c2d1).days == 14  # T-3: >= 14 days -> reduce-dose


def test_stale_labs_predate_the_last_dose() -> None:
    data = load_patient("demo-stale-labs", NOW)
    last_dose = max(r["effectivePeriod"]["start"] for r in data if r["resourceType"] == "MedicationAdministration")
    labs = [r["effectiveDateTime"] for r in data if r["resourceType"] == "Observation" and r["category"][0]["coding"][0]["code"] == "laboratory"]
    assert labs and max(labs) < last_dose


def test_live_vaccine_order_is_in_the_draft_orders() -> None:
    request = demo_request("live-vaccine", NOW, "http://127.0.0.1:8080")
    codings = [e["resource"]["medicationCodeableConcept"]["coding"][0] for e in request["context"]["draftOrders"]["entry"]]
    assert {"system": "http://hl7.org/fhir/sid/cvx", "code": "21", "display": "varicella"} in codings


@pytest.mark.parametrize("pid", FAMILIES)
def test_resources_are_valid_fhir_r4(pid: str) -> None:
    for resource in load_patient(pid, NOW):
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
    bundle = demo_request(pid, NOW, "http://127.0.0.1:8080")["context"]["draftOrders"]
    importlib.import_module("fhir.resources.R4B.bundle").Bundle.model_validate(bundle)
