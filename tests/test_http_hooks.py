"""HTTP protocol layer with a fake pipeline: discovery, hook calls, prefetch, errors, CORS, logs."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from pydantic import BaseModel
from conftest import assert_no_empty_members, draft_bundle, hook_body, medication_request

from app.prefetch_queries import PREFETCH_TEMPLATES, REQUIRED_KEYS

SERVER = "http://127.0.0.1:8080/fhir"
IDS = {"order-sign": "besponsa-order-sign", "order-select": "besponsa-order-select", "patient-view": "besponsa-patient-view"}


def _call(client, hook, **kw):
    return client.post(f"/cds-services/{IDS[hook]}", json=hook_body(hook, **kw))


# --- discovery ------------------------------------------------------------------------------


def test_discovery_lists_three_services_with_prefetch(client):
    res = client.get("/cds-services")
    assert res.status_code == 200
    services = res.json()["services"]
    assert {s["hook"]: s["id"] for s in services} == IDS
    for s in services:
        assert s["prefetch"] == PREFETCH_TEMPLATES
        assert s["title"] and s["description"]
    assert_no_empty_members(res.json())


def test_healthz(client):
    res = client.get("/healthz")
    assert res.status_code == 200 and res.json()["status"] == "ok"


# --- happy paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["order-sign", "order-select", "patient-view"])
def test_each_hook_returns_cards_from_the_pipeline(client, fake_pipeline, fake_store, hook):
    body = hook_body(hook, fhirServer=SERVER)
    res = client.post(f"/cds-services/{IDS[hook]}", json=body)
    assert res.status_code == 200, res.text
    cards = res.json()["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "info"
    assert card["extension"]["besponsa-cds"] == {"decision": "proceed", "rules": ["D-1"], "label": "EU"}
    uuid.UUID(card["uuid"])
    assert_no_empty_members(res.json())
    # the pipeline saw the request's data, and the cards were stored under the hook instance
    facts_call = fake_pipeline.facts_calls[0]
    assert facts_call["patient_id"] == "p1"
    assert facts_call["now"].tzinfo is not None
    assert fake_store.recorded[0]["service_id"] == IDS[hook]
    assert fake_store.recorded[0]["hook_instance"] == body["hookInstance"]
    assert fake_store.recorded[0]["patient_id"] == "p1"
    assert fake_store.recorded[0]["now"] == facts_call["now"]


def test_order_sign_passes_draft_order_to_cards_and_server_settings_to_retrieval(client, fake_pipeline, http_settings):
    auth = {"access_token": "secret", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
    res = _call(client, "order-sign", fhirServer=SERVER, fhirAuthorization=auth)
    assert res.status_code == 200
    collect = fake_pipeline.collects[0]
    assert collect["fhir_server"] == SERVER and collect["access_token"] == "secret"
    assert collect["queries"]["patient"] == "Patient/p1"
    assert collect["timeout_seconds"] == http_settings.fhir_timeout_seconds
    assert collect["max_pages"] == http_settings.fhir_max_pages
    ctx = fake_pipeline.card_contexts[0]
    assert ctx.patient_id == "p1" and ctx.draft_order["id"] == "mr1"
    assert fake_pipeline.facts_calls[0]["draft_orders"]["entry"][0]["resource"]["id"] == "mr1"


def test_label_setting_reaches_engine_and_cards(fake_pipeline, fake_store):
    from fastapi.testclient import TestClient

    from app.engine.policy import Policy
    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(label="US", embedded_fhir=False, log_level="WARNING"))
    app.state.store, app.state.policy = fake_store, Policy()
    with TestClient(app) as c:
        res = _call(c, "patient-view", fhirServer=SERVER)
    assert res.json()["cards"][0]["extension"]["besponsa-cds"]["label"] == "US"
    assert str(fake_pipeline.card_contexts[0].label) == "US"


def test_other_drug_order_gets_no_cards_and_no_fetch(client, fake_pipeline, fake_store):
    drafts = draft_bundle(medication_request("mr1", rxnorm="197361"))  # amlodipine
    res = _call(client, "order-sign", drafts=drafts, fhirServer=SERVER)
    assert res.status_code == 200 and res.json() == {"cards": []}
    assert fake_pipeline.collects == [] and fake_pipeline.facts_calls == [] and fake_store.recorded == []


def test_order_select_considers_only_selected_orders(client, fake_pipeline):
    drafts = draft_bundle(medication_request("mr1", rxnorm="197361"), medication_request("mr2"))
    res = _call(client, "order-select", drafts=drafts, fhirServer=SERVER)  # selections: mr1 only
    assert res.json() == {"cards": []}
    assert [e["resource"]["id"] for e in fake_pipeline.summaries[0]["entry"]] == ["mr1"]

    body = hook_body("order-select", drafts=drafts, fhirServer=SERVER)
    body["context"]["selections"] = ["MedicationRequest/mr2"]
    res = client.post("/cds-services/besponsa-order-select", json=body)
    assert len(res.json()["cards"]) == 1
    assert fake_pipeline.facts_calls[0]["selections"] == ["MedicationRequest/mr2"]


def test_storage_failure_still_returns_cards(client, fake_store, caplog):
    fake_store.fail = True
    with caplog.at_level(logging.ERROR):
        res = _call(client, "order-sign", fhirServer=SERVER)
    assert res.status_code == 200 and len(res.json()["cards"]) == 1
    assert any(r.levelno == logging.ERROR and r.getMessage() == "card storage failed" for r in caplog.records)


# --- prefetch present / null / absent ----------------------------------------------------------


def _all_prefetch(**override):
    prefetch = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in PREFETCH_TEMPLATES}
    prefetch["patient"] = {"resourceType": "Patient", "id": "p1"}
    prefetch.update(override)
    return prefetch


def test_prefetch_present_without_fhir_server(client, fake_pipeline):
    res = _call(client, "order-sign", prefetch=_all_prefetch())
    assert res.status_code == 200
    assert fake_pipeline.collects[0]["prefetch"]["patient"] == {"resourceType": "Patient", "id": "p1"}
    assert fake_pipeline.collects[0]["fhir_server"] is None


def test_prefetch_null_means_no_data_not_an_error(client, fake_pipeline):
    res = _call(client, "order-sign", prefetch=_all_prefetch(procedures=None))
    assert res.status_code == 200
    assert fake_pipeline.collects[0]["prefetch"]["procedures"] is None
    assert "procedures" in fake_pipeline.facts_calls[0]["unavailable"]


def test_prefetch_keys_not_advertised_are_ignored(client, fake_pipeline):
    res = _call(client, "order-sign", prefetch=_all_prefetch(unasked={"resourceType": "Bundle"}))
    assert res.status_code == 200
    assert "unasked" not in fake_pipeline.collects[0]["prefetch"]


def test_prefetch_absent_without_fhir_server_is_412(client):
    prefetch = _all_prefetch()
    key = sorted(REQUIRED_KEYS)[0]
    del prefetch[key]
    res = _call(client, "order-sign", prefetch=prefetch)
    assert res.status_code == 412
    body = res.json()
    assert body["error"] == "required_data_unavailable"
    assert body["keys"] == [key]
    assert body["details"][0]["field"] == f"prefetch.{key}"


def test_prefetch_absent_with_fhir_server_is_fetched(client, fake_pipeline):
    res = _call(client, "patient-view", fhirServer=SERVER)
    assert res.status_code == 200
    assert set(fake_pipeline.collects[0]["queries"]) == set(PREFETCH_TEMPLATES)
    assert fake_pipeline.collects[0]["required"] == REQUIRED_KEYS


# --- errors -----------------------------------------------------------------------------------


def _error(res, status):
    assert res.status_code == status, res.text
    body = res.json()
    assert body["error"] and body["message"]
    assert_no_empty_members(body)
    return body


def _fields(body):
    return [d["field"] for d in body["details"]]


def test_unknown_service_is_404(client):
    body = _error(client.post("/cds-services/nope", json=hook_body("order-sign")), 404)
    assert body["error"] == "not_found" and "nope" in body["message"]


def test_malformed_json_is_400(client):
    res = client.post("/cds-services/besponsa-order-sign", content=b'{"hook": "order-sign",', headers={"content-type": "application/json"})
    body = _error(res, 400)
    assert body["error"] == "invalid_request" and _fields(body) == ["body"]


def test_wrong_content_type_is_400(client):
    res = client.post("/cds-services/besponsa-order-sign", content=b"hook=order-sign", headers={"content-type": "application/x-www-form-urlencoded"})
    assert _fields(_error(res, 400)) == ["Content-Type"]


def test_missing_hook_instance_is_400(client):
    body = hook_body("order-sign")
    del body["hookInstance"]
    assert _fields(_error(client.post("/cds-services/besponsa-order-sign", json=body), 400)) == ["hookInstance"]


def test_wrong_hook_for_service_is_400(client):
    res = client.post("/cds-services/besponsa-order-sign", json=hook_body("patient-view"))
    body = _error(res, 400)
    assert body["details"] == [{"field": "hook", "message": "expected 'order-sign', got 'patient-view'"}]


def test_missing_patient_id_is_400(client):
    body = hook_body("order-sign")
    del body["context"]["patientId"]
    assert _fields(_error(client.post("/cds-services/besponsa-order-sign", json=body), 400)) == ["context.patientId"]


def test_draft_orders_not_an_object_is_400(client):
    body = hook_body("order-sign", drafts=["MedicationRequest/1"])
    assert _fields(_error(client.post("/cds-services/besponsa-order-sign", json=body), 400)) == ["context.draftOrders"]


def test_authorization_without_fhir_server_is_400(client):
    auth = {"access_token": "x", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"}
    body = hook_body("patient-view", fhirAuthorization=auth)
    res = client.post("/cds-services/besponsa-patient-view", json=body)
    assert _fields(_error(res, 400)) == ["fhirAuthorization"]
    assert "x" not in json.dumps(res.json()["details"][0]["message"])  # the token is never echoed


GARBAGE = [
    b"",
    b"null",
    b"[]",
    b"42",
    b'"order-sign"',
    b"\xff\xfe\x00",
    b"[" * 100_000,
    b'{"hook": null, "hookInstance": null, "context": null}',
    b'{"hook": "order-sign", "hookInstance": "6a1e64d2-8a8e-4d13-9f4e-2f0c3b7b6b0e", "context": {"userId": 1, "patientId": [], "draftOrders": {"resourceType": "Bundle", "entry": [1]}}}',
    b'{"hook": "order-sign", "hookInstance": "6a1e64d2-8a8e-4d13-9f4e-2f0c3b7b6b0e", "context": {}, "prefetch": {"a": [1]}, "fhirServer": 5}',
    b'{"hook": ["order-sign"], "hookInstance": {}, "context": "x"}',
    b'{"hook": "order-sign", "hookInstance": "6a1e64d2-8a8e-4d13-9f4e-2f0c3b7b6b0e", "context": {"userId": "u", "patientId": "' + b"a" * 5000 + b'", "draftOrders": {"resourceType": "Bundle"}}}',
]


@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_400_never_500(client, raw):
    res = client.post("/cds-services/besponsa-order-sign", content=raw, headers={"content-type": "application/json"})
    body = _error(res, 400)
    assert body["error"] == "invalid_request" and body["details"]


def test_unexpected_failure_is_500_json_without_trace(client, fake_pipeline):
    fake_pipeline.evaluate_error = ZeroDivisionError("secret value 42")
    res = client.post("/cds-services/besponsa-patient-view", json=hook_body("patient-view", fhirServer=SERVER))
    body = _error(res, 500)
    assert body == {"error": "internal_error", "message": body["message"]}
    assert "secret" not in res.text and "Traceback" not in res.text


# --- CORS, logs ----------------------------------------------------------------------------------


def test_cors_preflight_allows_sandbox(client):
    res = client.options(
        "/cds-services/besponsa-order-sign",
        headers={
            "Origin": "http://localhost:8080",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert res.status_code == 200
    assert res.headers["access-control-allow-origin"] == "*"
    allowed = res.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in res.headers["access-control-allow-methods"]


def test_cors_restricted_origins(fake_pipeline, fake_store):
    from fastapi.testclient import TestClient

    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(cors_origins="https://ehr.example.org", embedded_fhir=False, log_level="WARNING"))
    app.state.store = fake_store
    with TestClient(app) as c:
        ok = c.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
        other = c.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers


def test_hook_log_line_has_ids_and_no_token(client, caplog):
    auth = {"access_token": "tok-SECRET", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"}
    body = hook_body("patient-view", fhirServer=SERVER, fhirAuthorization=auth)
    with caplog.at_level(logging.INFO):
        client.post("/cds-services/besponsa-patient-view", json=body)
    [line] = [r for r in caplog.records if r.getMessage() == "hook call"]
    assert line.hookInstance == body["hookInstance"]
    assert (line.service, line.patient, line.status, line.cards) == ("besponsa-patient-view", "p1", 200, 1)
    assert line.duration_ms >= 0 and "retrieval" in line.timings_ms

    from app.logging_setup import JsonFormatter

    rendered = JsonFormatter().format(line)
    assert json.loads(rendered)["hookInstance"] == body["hookInstance"]
    assert all("SECRET" not in r.getMessage() and "SECRET" not in JsonFormatter().format(r) for r in caplog.records)


class Probe(BaseModel):
    count: int


def test_fastapi_body_validation_becomes_400_with_fields(client):
    @client.app.post("/probe")
    async def probe(body: Probe) -> dict[str, int]:
        return {"count": body.count}

    body = _error(client.post("/probe", json={"count": "many"}), 400)
    assert body["error"] == "invalid_request" and _fields(body) == ["count"]


def test_unknown_path_and_wrong_method_are_json(client):
    assert _error(client.get("/nowhere"), 404)["error"] == "not_found"
    assert _error(client.get("/cds-services/besponsa-order-sign"), 405)["error"] == "method_not_allowed"
