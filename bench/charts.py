"""The charts and hook bodies of issue #11, built with the demo generator (app/demo/_generate.py).

- typical: cycle 3 Day 1 after two full cycles (6 inotuzumab ozogamicin doses, each with its three
  premedication administrations: 24 MedicationAdministrations) and 200 Observations (work-up,
  liver tests and counts every other day, electrolytes), ~200 KB of prefetch;
- large: the same patient with 5,000 Observations (a daily panel going back years), ~4.3 MB.

`bodies(now, fhir_url)` returns every body the side-by-side benchmark sends; prefetch is what an
EHR filling every template completely sends (bench_service.full_prefetch, no paging).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from app.demo import fill_dates
from app.demo._generate import RXNORM, PatientBuilder, at
from app.demo.fhir_server import DemoStore

TYPICAL_ID = "bench-typical"
LARGE_ID = "bench-large"
PREMEDS = (("3264", "dexamethasone"), ("161", "acetaminophen"), ("3498", "diphenhydramine"))
DOSE_DAYS = ((1, -56), (2, -28))  # cycle, Day 1 (days from today); Day 8 and 15 follow


def _premed_given(p: PatientBuilder, tag: str, day: int) -> None:
    for code, name in PREMEDS:
        p.resources.append({
            "resourceType": "MedicationAdministration",
            "id": f"{p.pid}-{name}-{tag}",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": name}], "text": name},
            "subject": p.ref,
            "effectiveDateTime": at(day, "23:00:00Z"),
            "dosage": {"text": f"{name} before inotuzumab ozogamicin"},
        })


def _chart(pid: str, observations: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(resources with date tokens, the order-sign request for cycle 3 Day 1)."""
    p = PatientBuilder(pid, "Testperson", "Bea", "female", "1970-03-12", 168, 63)
    p.workup(-58)
    for cycle, start in DOSE_DAYS:
        for day, mg_m2 in ((1, 0.8 if cycle == 1 else 0.5), (8, 0.5), (15, 0.5)):
            tag = f"c{cycle}d{day}"
            p.dose(tag, start + day - 1, mg_m2)
            _premed_given(p, tag, start + day - 2)
    p.obs("mblasts", 3, -31, "c1end")  # CR after cycle 1 (C-5): cycle 3 at 0.5 mg/m2 (D-7)
    p.obs("pblasts", 0, -31, "c1end")
    day, n = -1, 0
    while sum(r["resourceType"] == "Observation" for r in p.resources) + 6 <= observations:
        p.panel(day, f"d{-day}", anc=1.6 + 0.1 * (n % 5), plt=120 + 5 * (n % 7))
        day, n = day - 2 if observations <= 1000 else day - 1, n + 1
    for analyte, value in (("k", 4.2), ("mg", 0.82), ("ca", 2.3), ("qtcf", 421)):
        if sum(r["resourceType"] == "Observation" for r in p.resources) < observations:
            p.obs(analyte, value, -2, "now")
    p.premedication()
    return p.resources, p.draft(0.5, "cycle 3 day 1")


def charts(now: datetime) -> tuple[DemoStore, dict[str, dict[str, Any]]]:
    """(a store holding both patients, {chart name: order-sign request without prefetch})."""
    resources: list[dict[str, Any]] = []
    requests: dict[str, dict[str, Any]] = {}
    for name, pid, n in (("typical", TYPICAL_ID, 200), ("large", LARGE_ID, 5000)):
        rs, request = _chart(pid, n)
        request["hookInstance"] = f"d1577c69-dfbe-44ad-ba6d-{len(requests) + 900000000001:012d}"
        text = fill_dates(json.dumps({"resources": rs, "request": request}), now)
        loaded = json.loads(text)
        resources += loaded["resources"]
        requests[name] = loaded["request"]
    return DemoStore(resources), requests


def full_prefetch(store: DemoStore, patient_id: str) -> dict[str, Any]:
    """Every template filled completely (bench_service.full_prefetch without the server's page cap)."""
    import sys
    from pathlib import Path

    from app.demo import fhir_server
    from app.prefetch_queries import PREFETCH_TEMPLATES

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_service import full_prefetch as fill

    cap, fhir_server.MAX_COUNT = fhir_server.MAX_COUNT, 100_000
    try:
        return fill(store, patient_id, PREFETCH_TEMPLATES)
    finally:
        fhir_server.MAX_COUNT = cap


def bodies(now: datetime, fhir_url: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every hook body of the issue, by name: (service id, body). `fhir_url` serves the charts."""

    store, requests = charts(now)
    typical = requests["typical"]
    prefetch = full_prefetch(store, TYPICAL_ID)
    order_sign = {**typical, "fhirServer": fhir_url, "prefetch": prefetch}
    patient_view = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-900000000011",
        "hook": "patient-view",
        "fhirServer": fhir_url,
        "context": {"userId": typical["context"]["userId"], "patientId": TYPICAL_ID},
        "prefetch": prefetch,
    }
    other = copy.deepcopy(order_sign)
    other["hookInstance"] = "d1577c69-dfbe-44ad-ba6d-900000000012"
    order = other["context"]["draftOrders"]["entry"][0]["resource"]
    order["id"] = f"{TYPICAL_ID}-draft-acetaminophen"
    order["medicationCodeableConcept"] = {
        "coding": [{"system": RXNORM, "code": "161", "display": "acetaminophen"}], "text": "acetaminophen"}
    order["dosageInstruction"] = [{"text": "1 g orally every 6 hours as needed"}]
    large = {**requests["large"], "fhirServer": fhir_url,
             "prefetch": full_prefetch(store, LARGE_ID)}
    fetch = {k: v for k, v in typical.items() if k != "prefetch"}
    fetch["fhirServer"] = fhir_url
    fetch["hookInstance"] = "d1577c69-dfbe-44ad-ba6d-900000000013"
    return {
        "order-sign": ("besponsa-order-sign", order_sign),
        "patient-view": ("besponsa-patient-view", patient_view),
        "other-drug": ("besponsa-order-sign", other),
        "5000-obs": ("besponsa-order-sign", large),
        "fetch-mode": ("besponsa-order-sign", fetch),
    }
