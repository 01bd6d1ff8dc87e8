"""Shared fixtures. HTTP tests: an app whose pipeline pieces (facts builder, retrieval, engine,
cards, storage) are replaced by small recording fakes, so the protocol layer is tested alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

INOTUZUMAB_RXNORM = "1942950"  # codes.md 4a, VERIFIED


def medication_request(rid: str, rxnorm: str = INOTUZUMAB_RXNORM, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]
        },
        **extra,
    }


def draft_bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    # No Bundle.type, as the hook library's examples and the sandbox send it.
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def hook_body(hook: str, *, patient: str = "p1", drafts: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/u1", "patientId": patient}
    if hook in ("order-sign", "order-select"):
        context["draftOrders"] = drafts if drafts is not None else draft_bundle(medication_request("mr1"))
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/mr1"]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    body.update(extra)
    return body


@dataclass
class FakeStore:
    recorded: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def record_cards(self, **kwargs: Any) -> None:
        if self.fail:
            raise RuntimeError("database is down")
        self.recorded.append(kwargs)


@dataclass
class FakePipeline:
    """Records what the service layer passed to each piece."""

    summaries: list[Any] = field(default_factory=list)
    collects: list[dict[str, Any]] = field(default_factory=list)
    facts_calls: list[dict[str, Any]] = field(default_factory=list)
    card_contexts: list[Any] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=lambda: [{"resourceType": "Patient", "id": "p1"}])
    evaluate_error: Exception | None = None


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    from app import cards, engine, facts_builder, retrieval
    from app.engine.decisions import Decision, DecisionCode
    from app.engine.facts import ClinicalFacts, DraftDose, PatientInfo
    from cds_hooks.cards import Card, Source

    fake = FakePipeline()

    def summarize(draft_orders: dict[str, Any] | None) -> facts_builder.DraftOrderSummary:
        fake.summaries.append(draft_orders)
        refs = []
        for entry in (draft_orders or {}).get("entry", []):
            res = entry.get("resource", {})
            codes = [c.get("code") for c in res.get("medicationCodeableConcept", {}).get("coding", [])]
            if INOTUZUMAB_RXNORM in codes:
                refs.append(f"MedicationRequest/{res.get('id')}")
        return facts_builder.DraftOrderSummary(inotuzumab_orders=tuple(refs), other_concepts=frozenset())

    async def collect(prefetch, queries, *, fhir_server, access_token, required, timeout_seconds, max_pages,
                      max_response_bytes=None):
        fake.collects.append(
            dict(prefetch=prefetch, queries=queries, fhir_server=fhir_server, access_token=access_token,
                 required=required, timeout_seconds=timeout_seconds, max_pages=max_pages,
                 max_response_bytes=max_response_bytes)
        )
        missing = sorted(k for k in required if k not in prefetch)
        if missing and not fhir_server:
            raise retrieval.RequiredDataUnavailable(missing, f"absent and no fhirServer: {', '.join(missing)}")
        resources = [v for v in prefetch.values() if v] + list(fake.resources)
        unavailable = {k for k, v in prefetch.items() if v is None}
        return retrieval.Retrieved(resources=resources, unavailable=unavailable)

    def build_facts(patient_id, resources, draft_orders, now, *, selections=None, problems=None, unavailable=frozenset(),
                    availability=None):
        fake.facts_calls.append(
            dict(patient_id=patient_id, resources=resources, draft_orders=draft_orders, now=now,
                 selections=selections, problems=problems, unavailable=unavailable,
                 availability=availability)
        )
        draft = None
        if draft_orders and draft_orders.get("entry"):
            rid = draft_orders["entry"][0]["resource"].get("id")
            draft = DraftDose(reference=f"MedicationRequest/{rid}", dose_date=now, dose_mg=1.6)
        return ClinicalFacts(patient=PatientInfo(id=patient_id), draft=draft)

    def evaluate(facts, now, policy=None, label=None):
        if fake.evaluate_error:
            raise fake.evaluate_error
        return [
            Decision(
                code=DecisionCode.PROCEED,
                rules=("D-1",),
                citations=("SmPC 4.2 Table 1",),
                summary="Proceed: 0.8 mg/m2 x BSA 2.00 m2 = 1.6 mg",
                detail="Cycle 1 Day 1.",
                label=label,
            )
        ]

    def build_cards(decisions: list[Decision], ctx: Any) -> list[Card]:
        fake.card_contexts.append(ctx)
        return [
            Card(
                summary=d.summary,
                indicator=d.indicator,
                source=Source(label="besponsa-cds"),
                extension={"besponsa-cds": {"decision": str(d.code), "rules": list(d.rules), "label": str(d.label)}},
            )
            for d in decisions
        ]

    monkeypatch.setattr(facts_builder, "summarize_draft_orders", summarize)
    monkeypatch.setattr(facts_builder, "build_facts", build_facts)
    monkeypatch.setattr(retrieval, "collect", collect)
    monkeypatch.setattr(engine, "evaluate", evaluate)
    # patient-view goes through the next-dose wrapper (app.engine.next_dose): the same fake
    monkeypatch.setattr(engine, "evaluate_next_dose",
                        lambda facts, now, policy=None, label=None, **_: evaluate(facts, now, policy, label))
    monkeypatch.setattr(cards, "build_cards", build_cards)
    return fake


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def http_settings():
    from app.settings import Settings

    return Settings(embedded_fhir=False, report_endpoint=False, database_url="sqlite://", log_level="WARNING")


@pytest.fixture
def client(fake_pipeline: FakePipeline, fake_store: FakeStore, http_settings) -> TestClient:
    """A client on the app with the fake pipeline and store (lifespan runs; nothing real opened)."""
    from app.engine.policy import Policy
    from app.http.app import create_app

    app = create_app(http_settings)
    app.state.store = fake_store
    app.state.policy = Policy()
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_no_empty_members(value: Any, path: str = "$") -> None:
    """CDS Hooks: no null or empty ("", [], {}) members anywhere (the top-level cards may be [])."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert item is not None and item != "" and item != {} and (item != [] or path == "$"), f"{path}.{key}"
            assert_no_empty_members(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_no_empty_members(item, f"{path}[{i}]")

