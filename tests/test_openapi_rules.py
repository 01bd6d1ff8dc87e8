"""The OpenAPI document states what the service refuses (#9): per-hook context, feedback outcomes,
fhirAuthorization only with fhirServer, 413. Checked by validating bodies against the document with
a JSON Schema validator, next to what the service's own validation says."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from app.cli import openapi_document
from app.discovery import SERVICES
from cds_hooks.feedback import FeedbackRequest
from cds_hooks.request import RequestProblem, parse_request, validate_context
from conftest import hook_body

DOC = openapi_document()


def _valid(schema_name: str, instance: Any) -> bool:
    schema = {"components": DOC["components"], "$ref": f"#/components/schemas/{schema_name}"}
    return jsonschema_rs.validator_for(schema).is_valid(instance)


def _service_accepts(body: dict[str, Any]) -> bool:
    try:
        validate_context(body["hook"], parse_request(body).context)
    except RequestProblem:
        return False
    return True


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    del out["context"][key]
    return out


AUTH = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"}
HOOK_CASES = [
    ("patient-view", hook_body("patient-view")),
    ("order-sign", hook_body("order-sign")),
    ("order-select", hook_body("order-select")),
    ("order-sign without draftOrders", _without(hook_body("order-sign"), "draftOrders")),
    ("order-select without selections", _without(hook_body("order-select"), "selections")),
    ("order-select without draftOrders", _without(hook_body("order-select"), "draftOrders")),
    ("order-select with no selection", {**hook_body("order-select"), "context": {**hook_body("order-select")["context"], "selections": []}}),
    ("draftOrders not a Bundle", {**hook_body("order-sign"), "context": {**hook_body("order-sign")["context"], "draftOrders": {"resourceType": "Patient"}}}),
    ("patientId not a FHIR id", {**hook_body("patient-view"), "context": {"userId": "u", "patientId": "a/b"}}),
    ("fhirAuthorization without fhirServer", hook_body("patient-view", fhirAuthorization=AUTH)),
    ("fhirAuthorization with fhirServer", hook_body("patient-view", fhirAuthorization=AUTH, fhirServer="https://ehr.example/fhir")),
    ("fhirServer not http(s)", hook_body("patient-view", fhirServer="ftp://ehr.example/fhir")),
]


@pytest.mark.parametrize("name,body", HOOK_CASES, ids=[c[0] for c in HOOK_CASES])
def test_the_document_and_the_service_agree_on_hook_requests(name: str, body: dict[str, Any]) -> None:
    model = {"patient-view": "PatientViewRequest", "order-sign": "OrderSignRequest", "order-select": "OrderSelectRequest"}
    assert _valid(model[body["hook"]], body) == _service_accepts(body), name
    assert _valid("CDSRequest", body) == _service_accepts(body), name


def test_each_service_has_an_operation_with_its_hooks_request_schema() -> None:
    for service_id, service in SERVICES.items():
        operation = DOC["paths"][f"/cds-services/{service_id}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].endswith(f"/{''.join(p.title() for p in service.hook.split('-'))}Request")
        assert set(body["examples"]) == {service.hook}
        assert {"200", "400", "412", "413"} <= set(operation["responses"])
    required = {name: DOC["components"]["schemas"][name]["required"] for name in ("PatientViewContext", "OrderSignContext", "OrderSelectContext")}
    assert "draftOrders" not in required["PatientViewContext"] and "selections" not in required["PatientViewContext"]
    assert "draftOrders" in required["OrderSignContext"]
    assert {"draftOrders", "selections"} <= set(required["OrderSelectContext"])


CARD = "9368d37b-283f-44a0-93ea-547cebab93ed"
REASON = {"reason": {"system": "https://example.org/override-reason", "code": "other"}}
FEEDBACK_CASES = [
    ("accepted", {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}]}),
    ("accepted without suggestions", {"card": CARD, "outcome": "accepted"}),
    ("accepted with empty suggestions", {"card": CARD, "outcome": "accepted", "acceptedSuggestions": []}),
    ("accepted with an override reason", {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "overrideReason": REASON}),
    ("overridden", {"card": CARD, "outcome": "overridden", "overrideReason": REASON}),
    ("overridden without a reason", {"card": CARD, "outcome": "overridden"}),
    ("overridden with suggestions", {"card": CARD, "outcome": "overridden", "acceptedSuggestions": [{"id": "s1"}]}),
    ("unknown outcome", {"card": CARD, "outcome": "ignored"}),
]


@pytest.mark.parametrize("name,item", FEEDBACK_CASES, ids=[c[0] for c in FEEDBACK_CASES])
def test_the_document_and_the_service_agree_on_feedback(name: str, item: dict[str, Any]) -> None:
    body = {"feedback": [{**item, "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}
    schema = DOC["paths"]["/cds-services/{service_id}/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    try:
        FeedbackRequest.model_validate(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert jsonschema_rs.validator_for(schema).is_valid(body) == accepted, name


def test_413_is_documented_on_every_body_taking_operation() -> None:
    for path, operations in DOC["paths"].items():
        for method, operation in operations.items():
            if method == "post":
                assert "413" in operation["responses"], path
