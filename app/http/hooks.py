"""CDS Hooks routes: discovery, service calls, health."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from app import __version__
from app.http.auth import authenticate_client, check_fhir_server
from app.http.errors import INTERNAL_ERROR, ErrorBody, error_response, invalid_request
from app.http.examples import ERROR_EXAMPLES, REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from app.http.json_body import decode_json, inline_max_bytes, off_the_loop, read_body
from app.service import HookCallError, run_hook
from app.settings import Settings
from cds_hooks.cards import CDSResponse
from cds_hooks.discovery import DiscoveryResponse, ServiceDefinition
from cds_hooks.request import CDSRequest, PatientViewContext, RequestProblem, parse_request, validate_context
from cds_hooks.security import AuthenticatedClient

log = logging.getLogger("besponsa_cds.hooks")

# Any id may be called (an unknown one is 404); `POST /cds-services/<id>` documents each service.
ServiceId = Annotated[str, Path(description="A service id from discovery (GET /cds-services).")]
router = APIRouter()


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


def _parse_call(raw: bytes, service: ServiceDefinition, settings: Settings) -> tuple[CDSRequest, PatientViewContext]:
    """Decode and validate one hook call (CPU-bound for large bodies: run off the loop)."""
    body = decode_json(raw, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth)
    hook_request = parse_request(body)
    if hook_request.hook != service.hook:
        raise RequestProblem(
            f"Service '{service.id}' answers the '{service.hook}' hook.",
            [{"field": "hook", "message": f"expected '{service.hook}', got '{hook_request.hook}'"}],
        )
    return hook_request, validate_context(service.hook, hook_request.context)


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
        413: _error_doc(413, "Body larger than BESPONSA_MAX_BODY_BYTES (refused before it is read)."),
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
    service_id: ServiceId, request: Request, caller: AuthenticatedClient | None = Depends(authenticate_client)
) -> Response:
    started = time.perf_counter()
    now = datetime.now(UTC)  # the request time: the only clock read of a hook call
    fields: dict[str, Any] = {"service": service_id}
    status = 500
    try:
        service = request.app.state.services.get(service_id)
        if service is None:
            raise HookCallError(404, "not_found", f"No CDS service '{service_id}'. See GET /cds-services.")
        settings = request.app.state.settings
        try:
            raw = await read_body(request)
            inline_max = inline_max_bytes(request)
            hook_request, context = await off_the_loop(len(raw) > inline_max, _parse_call, raw, service, settings)
        except RequestProblem as exc:
            raise invalid_request(exc.message, exc.details) from exc
        fields["hookInstance"] = str(hook_request.hookInstance)
        check_fhir_server(request, caller, hook_request.fhirServer)  # before anything is fetched
        fields["patient"] = context.patientId
        result = await run_hook(
            service,
            hook_request,
            context,
            settings=settings,
            policy=request.app.state.policy,
            store=request.app.state.store,
            now=now,
            body_bytes=len(raw),
            inline_max_bytes=inline_max,
        )
        status = 200
        fields.update(timings_ms=result.timings_ms, cards=len(result.cards))
        return Response(result.body, media_type="application/json")  # serialized before the cards were stored
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
