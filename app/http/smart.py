"""SMART treatment-timeline routes (issue #10).

- `GET /smart/config.json`: what the app reads (the patient-view service's own prefetch queries,
  so the timeline sees the same data as the cards) and the SMART scopes that covers.
- `POST /smart/timeline`: the FHIR data the app read -> the timeline document, built by the same
  `facts_builder` + engine as the patient-view cards (`app.smart.timeline`).
- `GET /smart/{file}`: the app's static files (HTML, JS, CSS and the vendored libraries).
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from app import facts_builder, retrieval
from app.engine.decisions import Decision, Label
from app.engine.facts import ClinicalFacts
from app.engine.policy import Policy
from app.http.errors import ErrorBody, error_response
from app.http.json_body import read_json
from app.prefetch_queries import PREFETCH_RESOURCE_TYPES, REQUIRED_KEYS, domain_availability
from app.service import evaluate_for_hook
from app.settings import Settings
from app.smart import STATIC_DIR
from app.smart.timeline import build_timeline
from cds_hooks.prefetch import fill_templates
from cds_hooks.request import RequestProblem, error_details

log = logging.getLogger("besponsa_cds.smart")
router = APIRouter()

PATIENT_VIEW_SERVICE = "besponsa-patient-view"
CLIENT_ID = "besponsa-cds-timeline"  # a registered client id may be passed as ?clientId= instead
MAX_RESOURCES = 20_000
_STATIC_SUFFIXES = {".html", ".js", ".css", ".png", ".svg", ".txt", ".md"}
_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"


class TimelineRequest(BaseModel):
    """The FHIR data the SMART app read for one patient.

    Either `prefetch` (the patient-view service's prefetch keys from `GET /smart/config.json`,
    each a Bundle, a resource or null; a key absent means that query failed or was not allowed),
    or `resources` (a Bundle or a list of resources, taken as complete)."""

    model_config = ConfigDict(extra="forbid")

    patientId: str = Field(pattern=_FHIR_ID, description="FHIR id of the patient in context.")
    prefetch: dict[str, dict[str, Any] | None] | None = None
    resources: list[dict[str, Any]] | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TimelineRequest:
        if (self.prefetch is None) == (self.resources is None):
            raise ValueError("send exactly one of 'prefetch' or 'resources'")
        return self


def patient_view_decisions(facts: ClinicalFacts, now: datetime, policy: Policy, label: Label,
                           settings: Settings) -> list[Decision]:
    """Exactly what the patient-view service evaluates for these facts (app.service.run_hook)."""
    return evaluate_for_hook("patient-view", facts, now, policy, label, settings)


def _scopes(queries: dict[str, str]) -> str:
    """SMART App Launch 2.0 scopes for exactly the resource types the queries read."""
    types = sorted({PREFETCH_RESOURCE_TYPES.get(k) or q.split("?")[0].split("/")[0]
                    for k, q in queries.items()} | {"Medication"})  # medicationReference targets
    return " ".join(["openid", "fhirUser", *(f"patient/{t}.rs" for t in types)])


def _patient_view_queries(request: Request) -> dict[str, str]:
    service = request.app.state.services[PATIENT_VIEW_SERVICE]
    return dict(service.prefetch or {})


@router.get("/smart/config.json", tags=["SMART timeline"], summary="What the timeline app reads")
async def smart_config(request: Request) -> dict[str, Any]:
    queries = _patient_view_queries(request)
    return {"clientId": CLIENT_ID, "scope": _scopes(queries), "queries": queries,
            "patientToken": "{{context.patientId}}"}


_TIMELINE_SCHEMA = TimelineRequest.model_json_schema()


@router.post(
    "/smart/timeline",
    tags=["SMART timeline"],
    summary="The treatment timeline of one patient, from the FHIR data the app read",
    description=(
        "Builds the course (C-1..C-6), labs against the label's thresholds and the decisions "
        "with the same facts builder and engine as the `besponsa-patient-view` cards."
    ),
    response_model=None,
    responses={
        200: {"description": "The timeline document (doses, spans, labs, thresholds, decisions, next dose)",
              "content": {"application/json": {"schema": {"type": "object"}}}},
        400: {"model": ErrorBody, "description": "Not JSON, or not a timeline request."},
        412: {"model": ErrorBody, "description": "Data without which no decision can be made was not read."},
        413: {"model": ErrorBody, "description": "Body larger than BESPONSA_MAX_BODY_BYTES (refused before it is read)."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _TIMELINE_SCHEMA}}}},
)
async def timeline(request: Request) -> JSONResponse:
    now = datetime.now(UTC)  # the request time: the only clock read
    settings = request.app.state.settings
    policy = request.app.state.policy
    try:
        body = TimelineRequest.model_validate(await read_json(request))  # strict JSON, bounded
    except RequestProblem as exc:
        return error_response(400, {"error": "invalid_request", "message": exc.message, "details": exc.details})
    except ValidationError as exc:
        return error_response(400, {"error": "invalid_request", "message": "The timeline request is invalid.",
                                    "details": error_details(exc)})
    if body.resources is not None:
        resources = body.resources if isinstance(body.resources, list) else [body.resources]
        problems, unavailable, availability = [], set(), None  # taken as complete
    else:
        queries = fill_templates(_patient_view_queries(request), {"patientId": body.patientId}).queries
        try:
            got = await retrieval.collect(
                body.prefetch, queries, fhir_server=None, access_token=None,
                required=REQUIRED_KEYS & queries.keys(),
                timeout_seconds=settings.fhir_timeout_seconds, max_pages=settings.fhir_max_pages,
            )
        except retrieval.RequiredDataUnavailable as exc:
            return error_response(412, {"error": "required_data_unavailable",
                                        "message": exc.reason, "keys": sorted(exc.keys)})
        resources, problems, unavailable = got.resources, got.problems, got.unavailable
        availability = domain_availability(dict(got.status))  # what was read, as for a hook call
    if len(resources) > MAX_RESOURCES:
        return error_response(400, {"error": "invalid_request",
                                    "message": f"At most {MAX_RESOURCES} resources per request.",
                                    "details": [{"field": "resources", "message": "too many"}]})
    doc, decided = await run_in_threadpool(  # CPU-bound, off the event loop (as a hook call)
        _timeline_document, body.patientId, resources, problems, unavailable, availability, now, policy,
        settings)
    log.info("timeline", extra={"patient": body.patientId, "decisions": decided})
    return JSONResponse(doc)


def _timeline_document(patient_id: str, resources: list[dict[str, Any]], problems: list[Any],
                       unavailable: set[str], availability: Any, now: datetime, policy: Policy,
                       settings: Settings) -> tuple[dict[str, Any], int]:
    extra = {"availability": availability} if availability is not None else {}
    facts = facts_builder.build_facts(patient_id, resources, None, now, problems=problems,
                                      unavailable=frozenset(unavailable), **extra)
    label = Label(settings.label)
    decisions = patient_view_decisions(facts, now, policy, label, settings)
    return build_timeline(facts, decisions, now, policy, label.value), len(decisions)


class LaunchContextRequest(BaseModel):
    """What the CDS Hooks sandbox posts before opening a smart link (its
    src/retrieve-data-helpers/launch-context-retrieval.js): the app's URL and the context."""

    launchUrl: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


@router.post("/fhir/_services/smart/Launch", include_in_schema=False)
async def demo_launch_context(body: LaunchContextRequest, request: Request) -> JSONResponse:
    """A launch id for the embedded demo FHIR server, as the sandbox's SMART servers give one.

    The demo server has no authorization server, so the id is opaque and never looked up: the
    card's link names the (synthetic) demo patient and fhirclient opens the server as an open one.
    Without it the sandbox will not open a smart link at all."""
    if not request.app.state.settings.embedded_fhir:
        return error_response(404, {"error": "not_found", "message": "No embedded FHIR server."})
    return JSONResponse({"launch_id": uuid.uuid4().hex})


@router.get("/smart", include_in_schema=False)
@router.get("/smart/", include_in_schema=False)
async def smart_root() -> RedirectResponse:
    return RedirectResponse("/smart/launch.html")


@router.get("/smart/{path:path}", include_in_schema=False, response_model=None)
async def smart_static(path: str) -> Response:
    """The app's files; Python sources and anything outside app/smart/ are never served."""
    target = (STATIC_DIR / path).resolve()
    inside = target.is_relative_to(STATIC_DIR.resolve())
    if not inside or target.suffix not in _STATIC_SUFFIXES or not target.is_file():
        return error_response(404, {"error": "not_found", "message": f"No file /smart/{path}."})
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        media = "text/javascript"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "no-cache"})
