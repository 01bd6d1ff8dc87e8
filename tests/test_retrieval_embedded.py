"""collect() against the embedded FHIR server through the in-process ASGI route (app.fhir_client)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from app import fhir_client
from app.demo import demo_request, load_demo_resources
from app.demo.fhir_server import DemoStore, router, set_store
from app.prefetch_queries import PREFETCH_TEMPLATES
from app.retrieval import collect

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
SERVICE = "http://127.0.0.1:8080"


@pytest.fixture(autouse=True)
def embedded() -> Iterator[None]:
    set_store(DemoStore(load_demo_resources(NOW)))
    app = FastAPI()
    app.include_router(router, prefix="/fhir")
    fhir_client.route_to_asgi(f"{SERVICE}/fhir", app)
    yield
    fhir_client.unroute(f"{SERVICE}/fhir")
    set_store(None)


def queries_for(patient_id: str) -> dict[str, str]:
    return {k: v.replace("{{context.patientId}}", patient_id) for k, v in PREFETCH_TEMPLATES.items()}


def test_route_matching_is_by_base_prefix() -> None:
    async def check() -> None:
        routed = fhir_client.client_for(f"{SERVICE}/fhir/Patient/x")
        assert isinstance(routed._transport, httpx.ASGITransport)
        assert routed is fhir_client.client_for(f"{SERVICE}/fhir?x=1")  # one client per route and loop
        other = fhir_client.client_for(f"{SERVICE}/fhirx/Patient/x")
        assert other is not routed and not isinstance(other._transport, httpx.ASGITransport)
        await fhir_client.aclose()
        assert routed.is_closed and other.is_closed

    asyncio.run(check())


def test_demo_request_fetches_everything_from_the_embedded_server() -> None:
    request = demo_request("hepatic", NOW, SERVICE)
    assert request["fhirServer"] == f"{SERVICE}/fhir" and "prefetch" not in request
    result = asyncio.run(
        collect(
            request.get("prefetch"),
            queries_for(request["context"]["patientId"]),
            fhir_server=request["fhirServer"],
            access_token=None,
            required=frozenset(PREFETCH_TEMPLATES),
            timeout_seconds=5,
            max_pages=5,
        )
    )
    assert result.problems == [] and result.unavailable == set()
    by_id = {r["id"]: r for r in result.resources}
    assert by_id["demo-hepatic"]["resourceType"] == "Patient"
    assert by_id["demo-hepatic-bili-now"]["valueQuantity"]["value"] == 2.1
    assert by_id["demo-hepatic-bili-now"]["referenceRange"][0]["high"]["value"] == 1.2
    assert by_id["demo-hepatic-ast-now"]["valueQuantity"]["value"] == 128  # 3.2 x ULN 40
    assert by_id["demo-hepatic-height-base"]["valueQuantity"]["value"] == 162
    assert by_id["demo-hepatic-ino-c1d1"]["status"] == "completed"
    assert {r["resourceType"] for r in result.resources} >= {
        "Patient", "Observation", "MedicationAdministration", "MedicationRequest", "Condition",
    }  # fmt: skip
    assert all(r.get("subject", r.get("patient", {"reference": "Patient/demo-hepatic"}))["reference"] == "Patient/demo-hepatic"
               for r in result.resources if r["resourceType"] != "Patient")


def test_small_pages_are_followed_to_the_end() -> None:
    queries = {"labs": "Observation?patient=demo-no-response&code=http://loinc.org|1975-2&_sort=-date&_count=1"}
    result = asyncio.run(
        collect({}, queries, fhir_server=f"{SERVICE}/fhir", access_token="t", required=frozenset(), timeout_seconds=5, max_pages=10)
    )
    assert [r["id"] for r in result.resources] == [
        "demo-no-response-bili-now",
        "demo-no-response-bili-c3d1",
        "demo-no-response-bili-c2d1",
        "demo-no-response-bili-base",
    ]
    assert result.problems == []


def test_unknown_patient_read_is_reported_not_raised() -> None:
    result = asyncio.run(
        collect({}, queries_for("nobody"), fhir_server=f"{SERVICE}/fhir", access_token=None, required=frozenset(PREFETCH_TEMPLATES), timeout_seconds=5, max_pages=5)
    )
    assert "patient" in result.unavailable
    assert any(p.reason.startswith("Patient (patient): FHIR server answered 404") for p in result.problems)
    # the searches simply find nothing
    assert result.resources == []
