"""CDS Hooks routes: discovery, service calls, health."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app import __version__
from app.http.auth import authenticate_client, check_fhir_server
from app.http.errors import INTERNAL_ERROR, ErrorBody, error_response, invalid_request
from app.http.examples import ERROR_EXAMPLES, REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from app.service import HookCallError, run_hook
from cds_hooks.security import AuthenticatedClient
from cds_hooks.cards import CDSResponse
from cds_hooks.discovery import DiscoveryResponse
from cds_hooks.request import RequestProblem, parse_request, validate_context

log = logging.getLogger("besponsa_cds.hooks")
router = APIRouter()

_JSON_TYPES = ("application/json", "application/fhir+json")


def _error_doc(status: int, description: str) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": ERROR_EXAMPLES[status]}},
    }


@router.get(
    "/cds-services",
    response_model=DiscoveryResponse,
    response_model_exclude_none=True,
    tags=["CDS Hooks"],
    summary="Discovery: the services this server offers",
    dependencies=[Depends(authenticate_client)],
)
async def discovery(request: Request) -> dict[str, Any]:
    return {"services": [s.to_json() for s in request.app.state.services.values()]}


@router.get("/healthz", tags=["Operations"], summary="Liveness check")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


async def _read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise invalid_request(
                "The request body must be JSON.",
                [{"field": "Content-Type", "message": f"expected application/json, got '{media}'"}],
            )
    raw = await request.body()
    if not raw.strip():
        raise invalid_request("The request body is empty.", [{"field": "body", "message": "expected a JSON object"}])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid_request(
            "The request body is not valid JSON.",
            [{"field": "body", "message": f"{exc.msg} at line {exc.lineno} column {exc.colno}"}],
        ) from exc
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise invalid_request(
            "The request body is not valid JSON.", [{"field": "body", "message": type(exc).__name__}]
        ) from exc


@router.post(
    "/cds-services/{service_id}",
    tags=["CDS Hooks"],
    summary="Call a service with a hook request",
    description=(
        "CDS Hooks 2.0 service call. Prefetch keys may hold a resource or Bundle (used), `null` "
        "(the EHR has no such data) or be absent / an OperationOutcome (fetched from `fhirServer`). "
        "Orders for other drugs get `{\"cards\": []}`."
    ),
    response_model=None,
    responses={
        200: {
            "model": CDSResponse,
            "description": "Cards, most severe first (possibly none).",
            "content": {"application/json": {"examples": RESPONSE_EXAMPLES}},
        },
        400: _error_doc(400, "Malformed JSON, a request that breaks CDS Hooks 2.0, or a fhirServer not trusted for the caller."),
        404: _error_doc(404, "No service with this id."),
        412: _error_doc(412, "Required prefetch data absent and no fhirServer to fetch it from."),
        500: _error_doc(500, "Unexpected failure (never for bad input)."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CDSRequest"},
                    "examples": REQUEST_EXAMPLES,
                }
            },
        }
    },
)
async def call_service(
    service_id: str, request: Request, caller: AuthenticatedClient | None = Depends(authenticate_client)
) -> JSONResponse:
    started = time.perf_counter()
    now = datetime.now(UTC)  # the request time: the only clock read of a hook call
    fields: dict[str, Any] = {"service": service_id}
    status = 500
    try:
        service = request.app.state.services.get(service_id)
        if service is None:
            raise HookCallError(404, "not_found", f"No CDS service '{service_id}'. See GET /cds-services.")
        body = await _read_json(request)
        try:
            hook_request = parse_request(body)
            fields["hookInstance"] = str(hook_request.hookInstance)
            if hook_request.hook != service.hook:
                raise RequestProblem(
                    f"Service '{service.id}' answers the '{service.hook}' hook.",
                    [{"field": "hook", "message": f"expected '{service.hook}', got '{hook_request.hook}'"}],
                )
            context = validate_context(service.hook, hook_request.context)
        except RequestProblem as exc:
            raise invalid_request(exc.message, exc.details) from exc
        check_fhir_server(request, caller, hook_request.fhirServer)  # before anything is fetched
        fields["patient"] = context.patientId
        result = await run_hook(
            service,
            hook_request,
            context,
            settings=request.app.state.settings,
            policy=request.app.state.policy,
            store=request.app.state.store,
            now=now,
        )
        status = 200
        fields.update(timings_ms=result.timings_ms, cards=len(result.cards))
        return JSONResponse({"cards": result.cards})
    except HookCallError as exc:
        status = exc.status
        fields["error"] = exc.body["error"]
        return error_response(exc.status, exc.body)
    except Exception as exc:  # noqa: BLE001 - answer JSON, never a stack trace
        fields["error_type"] = type(exc).__name__
        log.error("hook call failed", extra=fields)
        return error_response(500, INTERNAL_ERROR)
    finally:
        duration = round((time.perf_counter() - started) * 1000, 1)
        log.info("hook call", extra={**fields, "status": status, "duration_ms": duration})
