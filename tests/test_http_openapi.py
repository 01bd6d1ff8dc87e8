"""The committed OpenAPI document is the app's own (re-export on change)."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import openapi_document

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
FIX = "openapi/openapi.json is out of date: run `.venv/bin/besponsa-cds export-openapi` and commit it."


def test_committed_openapi_matches_the_app():
    assert COMMITTED.exists(), FIX
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == openapi_document(), FIX


def test_openapi_documents_hook_calls_with_examples():
    doc = openapi_document()
    call = doc["paths"]["/cds-services/{service_id}"]["post"]
    body = call["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/CDSRequest"}
    assert set(body["examples"]) == {"order-sign", "order-select", "patient-view"}
    assert {"200", "400", "404", "412", "500"} <= set(call["responses"])
    assert "422" not in call["responses"]
    assert set(call["responses"]["200"]["content"]["application/json"]["examples"]) >= {"proceed", "hepatic-hold"}
    schemas = doc["components"]["schemas"]
    assert {"CDSRequest", "FhirAuthorization", "OrderSignContext", "Card", "ErrorBody"} <= set(schemas)


def test_request_examples_are_valid_requests():
    from cds_hooks.request import parse_request, validate_context

    doc = openapi_document()
    examples = doc["paths"]["/cds-services/{service_id}"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for hook, example in examples.items():
        request = parse_request(example["value"])
        assert request.hook == hook
        validate_context(hook, request.context)


def test_response_examples_are_valid_cds_responses():
    from cds_hooks.cards import CDSResponse

    doc = openapi_document()
    examples = doc["paths"]["/cds-services/{service_id}"]["post"]["responses"]["200"]["content"]["application/json"]["examples"]
    for example in examples.values():
        parsed = CDSResponse.model_validate(example["value"])
        assert [c.to_json() for c in parsed.cards] == example["value"]["cards"]  # no nulls, nothing lost
