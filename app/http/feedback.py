"""`POST /cds-services/{service_id}/feedback` (CDS Hooks 2.0 feedback), stored in the CardStore.

400 (`invalid_request`, with `details: [{field, message}]`) for malformed JSON, a body that breaks
the spec, a card uuid this service never showed, or an accepted suggestion not on that card: the
whole request is then rejected and nothing is stored. 404 for an unknown service. Re-sent feedback
is stored once (idempotent). User comments are stored, never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.discovery import SERVICES
from app.http.auth import authenticate_client
from app.http.examples import ERROR_EXAMPLES
from app.http.json_body import read_json
from app.storage import FeedbackRejected
from cds_hooks.feedback import FeedbackRequest, error_details
from cds_hooks.request import RequestProblem

log = logging.getLogger("besponsa_cds.feedback")

# The service ids in the document (any other id is answered 404, as documented).
ServiceId = Annotated[str, Path(description="A service id from discovery.", json_schema_extra={"enum": list(SERVICES)})]
router = APIRouter(tags=["CDS Hooks"])


def _inline_schema(model: type[FeedbackRequest]) -> dict[str, Any]:
    """The model's JSON schema with `$defs` inlined (the OpenAPI document has no such defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_EXAMPLE = {
    "feedback": [
        {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "accepted",
         "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
         "outcomeTimestamp": "2026-11-23T10:00:00Z"},
        {"card": "5f4ddf81-ec73-4a39-8a48-bd4ab7bd7a41", "outcome": "overridden",
         "overrideReason": {"reason": {"system": "https://besponsa-cds.org/fhir/CodeSystem/override-reason",
                                       "code": "gilbert-or-haemolysis",
                                       "display": "Bilirubin due to Gilbert's syndrome or haemolysis"},
                            "userComment": "Known Gilbert's syndrome"},
         "outcomeTimestamp": "2026-11-23T10:01:00Z"},
    ]
}

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


_RESULT_SCHEMA = {
    "type": "object",
    "required": ["received", "stored", "duplicates"],
    "properties": {name: {"type": "integer", "minimum": 0} for name in ("received", "stored", "duplicates")},
}


def _error(status: int, error: str, message: str, details: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(status_code=status, content=body)


def _service_known(services: Any, service_id: str) -> bool:
    if services is None:
        return False
    if isinstance(services, Mapping):
        return service_id in services
    for s in services:
        sid = s.get("id") if isinstance(s, Mapping) else getattr(s, "id", None)
        if sid == service_id:
            return True
    return False


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="CDS Hooks 2.0 feedback: accepted suggestions and override reasons for shown cards",
    dependencies=[Depends(authenticate_client)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(FeedbackRequest),
                                              "example": _EXAMPLE}},
        }
    },
    responses={
        200: {"description": "Stored (re-sent feedback is counted as a duplicate, stored once)",
              "content": {"application/json": {"schema": _RESULT_SCHEMA,
                                               "example": {"received": 2, "stored": 2, "duplicates": 0}}}},
        400: {"description": "Invalid feedback; nothing stored",
              "content": {"application/json": {"schema": _ERROR_SCHEMA, "example": {
                  "error": "invalid_request", "message": "The feedback was not stored.",
                  "details": [{"field": "feedback[0].card", "message": "unknown card uuid for service 'x'"}]}}}},
        404: {"description": "Unknown service", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
        413: {"description": "Body larger than BESPONSA_MAX_BODY_BYTES (refused before it is read)",
              "content": {"application/json": {"schema": _ERROR_SCHEMA, "example": ERROR_EXAMPLES[413]}}},
        503: {"description": "The database is unavailable; nothing stored (retry)",
              "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
    },
)
async def post_feedback(service_id: ServiceId, request: Request) -> JSONResponse:
    if not _service_known(getattr(request.app.state, "services", None), service_id):
        return _error(404, "not_found", f"Unknown CDS service '{service_id}'.")
    try:
        body = await read_json(request)
    except RequestProblem as exc:
        return _error(400, "invalid_request", exc.message, exc.details)
    try:
        parsed = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        return _error(400, "invalid_request", "The feedback does not follow CDS Hooks 2.0.",
                      error_details(exc))
    store = getattr(request.app.state, "store", None)
    if store is None:
        return _error(503, "store_unavailable", "The feedback store is not available.")
    try:
        result = await run_in_threadpool(
            store.record_feedback, service_id, parsed.feedback, datetime.now(UTC)
        )
    except FeedbackRejected as exc:
        log.info("feedback rejected", extra={"service": service_id, "errors": len(exc.details)})
        return _error(400, "invalid_request", "The feedback was not stored.", exc.details)
    except SQLAlchemyError as exc:  # database down or pool exhausted: not stored, the EHR may retry
        log.error("feedback not stored: database unavailable", extra={"service": service_id,
                                                                       "error_type": type(exc).__name__})
        return _error(503, "store_unavailable", "The feedback store is not available; nothing was stored.")
    return JSONResponse(
        {"received": result.received, "stored": result.stored, "duplicates": result.duplicates}
    )
