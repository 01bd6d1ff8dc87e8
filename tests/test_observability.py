"""Metrics (/metrics), traces (OpenTelemetry, in-memory exporter), readiness and the log context."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import pytest
import respx
from conftest import hook_body
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import observability, retrieval

SERVER = "http://fhir.test/r4"


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_scrape_shows_the_counters_move_for_a_hook_call(client, fake_store):
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    calls = dict(service="besponsa-order-sign", hook="order-sign", decision="proceed", status="200")
    phase = dict(service="besponsa-order-sign", phase="engine")
    res = client.post("/cds-services/besponsa-order-sign", json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 200
    after = client.get("/metrics").text
    assert _sample(after, "besponsa_hook_calls_total", **calls) == _sample(before.text, "besponsa_hook_calls_total", **calls) + 1
    assert _sample(after, "besponsa_cards_total", service="besponsa-order-sign", decision="proceed") >= 1
    for name in observability.PHASES:  # one observation per phase of the call
        assert _sample(after, "besponsa_hook_phase_seconds_count", service="besponsa-order-sign", phase=name) >= 1
    assert _sample(after, "besponsa_hook_phase_seconds_count", **phase) == \
        _sample(before.text, "besponsa_hook_phase_seconds_count", **phase) + 1
    assert "besponsa_card_store_queue_depth" in after
    # where the call's work ran (a small call on a quiet loop: on it), how late the loop is
    assert _sample(after, "besponsa_hook_decisions_total", place="loop") == \
        _sample(before.text, "besponsa_hook_decisions_total", place="loop") + 1
    assert 0 <= _sample(after, "besponsa_event_loop_lag_seconds") < 1
    assert _sample(after, "besponsa_http_requests_in_flight") == 1  # the /metrics request itself
    # 412 (required data, no fhirServer) is counted as a hook call with its status, no decision
    body = hook_body("order-sign")
    assert client.post("/cds-services/besponsa-order-sign", json=body).status_code == 412
    text = client.get("/metrics").text
    assert _sample(text, "besponsa_hook_calls_total", service="besponsa-order-sign", decision="error", status="412") >= 1
    assert "p1" not in text and body["hookInstance"] not in text  # no patient or call ids in metrics


def test_feedback_outcomes_are_counted(tmp_path):
    from app.http.app import create_app
    from app.settings import Settings
    from tests.test_storage_support import make_cards, overridden

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/m.db", embedded_fhir=False, log_level="WARNING"))
    with TestClient(app) as client:
        cards, decisions = make_cards()
        from tests.test_storage_support import NOW

        app.state.store.enqueue_cards(service_id="besponsa-order-sign", hook_instance="h", patient_id="p1",
                                      cards=cards, decisions=decisions, now=NOW)
        labels = dict(service="besponsa-order-sign", outcome="overridden")
        before = client.get("/metrics").text
        fb = {"feedback": [overridden(cards[0])]}
        assert client.post("/cds-services/besponsa-order-sign/feedback", json=fb).status_code == 200
        assert client.post("/cds-services/besponsa-order-sign/feedback", json=fb).status_code == 200
        after = client.get("/metrics").text
    assert _sample(after, "besponsa_feedback_items_total", result="stored", **labels) == \
        _sample(before, "besponsa_feedback_items_total", result="stored", **labels) + 1
    assert _sample(after, "besponsa_feedback_items_total", result="duplicate", **labels) == \
        _sample(before, "besponsa_feedback_items_total", result="duplicate", **labels) + 1


@respx.mock
def test_a_hook_call_and_its_fhir_queries_are_traced_without_patient_data(caplog):
    exporter = InMemorySpanExporter()
    assert observability.configure_tracing(exporter)
    respx.get(f"{SERVER}/Observation").mock(return_value=httpx.Response(
        200, json={"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}]}))
    respx.get(f"{SERVER}/MedicationAdministration").mock(return_value=httpx.Response(503))
    errors_before = observability.FHIR_ERRORS.labels("http_5xx")._value.get()
    caplog.set_level(logging.DEBUG)
    observability.install_log_context()  # caplog's handler gets the hookInstance filter too

    async def one_call() -> retrieval.Retrieved:
        with observability.hook_call("besponsa-order-sign", "order-sign", "hi-trace-1") as call:
            got = await retrieval.collect(
                {}, {"obs": "Observation?patient=secret-patient-7", "adm": "MedicationAdministration?patient=secret-patient-7"},
                fhir_server=SERVER, access_token="tok-123", required=frozenset(), timeout_seconds=5, max_pages=2)
            call.answered([{"extension": {"besponsa-cds": {"decision": "obtain-data"}}}], {"retrieval": 3.0})
            return got

    try:
        got = asyncio.run(one_call())
    finally:
        observability.shutdown_tracing()
    assert "adm" in got.unavailable
    spans = {s.name: s for s in exporter.get_finished_spans()}
    hook, obs, adm = spans["hook call"], spans["FHIR GET Observation"], spans["FHIR GET MedicationAdministration"]
    assert obs.parent.span_id == hook.context.span_id and adm.parent.span_id == hook.context.span_id
    assert obs.context.trace_id == hook.context.trace_id
    assert hook.attributes["besponsa.hook_instance"] == "hi-trace-1"
    assert hook.attributes["besponsa.decisions"] == ("obtain-data",)
    assert adm.attributes["http.response.status_code"] == 503 and adm.attributes["besponsa.fhir_error"] == "http_5xx"
    exported = json.dumps([s.to_json() for s in exporter.get_finished_spans()])
    assert "secret-patient-7" not in exported and "tok-123" not in exported  # no URL, no token
    assert observability.FHIR_ERRORS.labels("http_5xx")._value.get() == errors_before + 1
    # Every retrieval line carries the hookInstance; the failure line its HTTP status.
    lines = [r for r in caplog.records if r.name == "besponsa_cds.retrieval"]
    assert lines and all(getattr(r, "hookInstance", None) == "hi-trace-1" for r in lines)
    (failed,) = [r for r in lines if r.getMessage().startswith("FHIR query failed")]
    assert failed.status == 503 and failed.levelno == logging.WARNING
    assert all(r.levelno == logging.DEBUG for r in lines if r.getMessage().startswith("FHIR query read"))


def test_tracing_is_off_unless_the_otel_environment_asks():
    assert not observability.tracing_requested({})
    assert observability.tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert observability.tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not observability.tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not observability.tracing_requested({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})


def test_readiness_fails_while_the_database_is_unreachable_liveness_does_not():
    from app.http.app import create_app
    from app.settings import Settings
    from app.storage import open_store

    # Nothing listens on port 1: the database is "down".
    settings = Settings(embedded_fhir=False, log_level="WARNING", db_pool_timeout_seconds=2)
    app = create_app(settings)
    app.state.store = open_store("postgresql+psycopg://postgres@127.0.0.1:1/none", migrate=False, pool_timeout=1)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        res = client.get("/readyz")
        assert res.status_code == 503 and res.json()["status"] == "unavailable"
    app.state.store.close()


def test_readiness_fails_until_the_schema_is_migrated(tmp_path):
    from app.http.app import create_app
    from app.settings import Settings

    url = f"sqlite:///{tmp_path}/unmigrated.db"
    app = create_app(Settings(database_url=url, embedded_fhir=False, log_level="WARNING", migrate_on_start=False))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503  # a replica waiting for `besponsa-cds migrate`
        app.state.store.migrate()
        assert client.get("/readyz").status_code == 200


def test_readiness_ok_with_a_database_that_answers(tmp_path):
    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/r.db", embedded_fhir=False, log_level="WARNING"))
    with TestClient(app) as client:
        res = client.get("/readyz")
    assert res.status_code == 200 and res.json()["cardStoreQueue"] == 0


def test_embedded_fhir_and_probe_requests_log_at_debug(client, caplog):
    caplog.set_level(logging.DEBUG, logger="besponsa_cds.access")
    client.get("/healthz")
    client.get("/cds-services")
    levels = {r.path: r.levelno for r in caplog.records if r.name == "besponsa_cds.access"}
    assert levels == {"/healthz": logging.DEBUG, "/cds-services": logging.INFO}


@pytest.mark.parametrize("path,route", [("/fhir/Observation", "/fhir"), ("/cds-services/x/feedback", "/cds-services/{id}/feedback"),
                                        ("/cds-services/besponsa-order-sign", "/cds-services/{id}"), ("/etc/passwd", "other")])
def test_route_labels_are_bounded(path, route):
    assert observability.route_of(path) == route


def test_the_http_span_continues_the_callers_trace_and_holds_the_hook_call(client):
    exporter = InMemorySpanExporter()
    assert observability.configure_tracing(exporter)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        res = client.post("/cds-services/besponsa-order-sign", json=hook_body("order-sign", fhirServer=SERVER),
                          headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    finally:
        observability.shutdown_tracing()
    assert res.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, hook = spans["POST /cds-services/{id}"], spans["hook call"]
    assert format(server.context.trace_id, "032x") == trace_id
    assert hook.parent.span_id == server.context.span_id
    assert server.attributes["http.response.status_code"] == 200
    assert hook.attributes["besponsa.phase_ms.engine"] >= 0 and "p1" not in json.dumps(dict(hook.attributes))


def test_feedback_while_the_database_is_down_is_503_not_acknowledged():
    from app.http.app import create_app
    from app.settings import Settings
    from app.storage import open_store

    app = create_app(Settings(embedded_fhir=False, log_level="WARNING", db_pool_timeout_seconds=1))
    app.state.store = open_store("postgresql+psycopg://postgres@127.0.0.1:1/none", migrate=False, pool_timeout=1)
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}
    with TestClient(app) as client:
        res = client.post("/cds-services/besponsa-order-sign/feedback", json=body)
    assert res.status_code == 503 and res.json()["error"] == "store_unavailable"
    app.state.store.close()


def test_the_in_process_fhir_route_follows_the_bound_port_not_8080(tmp_path):
    from app import fhir_client
    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/p.db", embedded_fhir=True, log_level="WARNING",
                              port=9123, host="0.0.0.0"))
    with TestClient(app):
        assert fhir_client._clients.route_for("http://127.0.0.1:9123/fhir/Patient/x") == "http://127.0.0.1:9123/fhir"
        assert fhir_client._clients.route_for("http://127.0.0.1:8080/fhir/Patient/x") is None  # a real server there
    assert fhir_client._clients.route_for("http://127.0.0.1:9123/fhir/Patient/x") is None  # unrouted at shutdown


@pytest.mark.parametrize("env,name", [({}, "besponsa-cds"), ({"OTEL_SERVICE_NAME": "cds-hospital-a"}, "cds-hospital-a")])
def test_spans_name_the_service_as_otel_service_name_says(monkeypatch, env, name):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    exporter = InMemorySpanExporter()
    assert observability.configure_tracing(exporter)
    try:
        with observability.hook_call("besponsa-patient-view", "patient-view", "hi"):
            pass
    finally:
        observability.shutdown_tracing()
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == name
