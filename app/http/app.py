"""The FastAPI application: `create_app(settings)`; uvicorn runs `app.http.app:create_app --factory`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from app import __version__, facts_builder, fhir_client
from app.discovery import SERVICES
from app.engine.policy import load_policy
from app.http import feedback, landing, report, smart
from app.http.auth import configure_security, openapi_security_responses, own_fhir_base
from app.http.errors import install_error_handlers
from app.http.hooks import router as hooks_router
from app.http.limits import BodyLimit
from app.http.openapi_services import add_service_operations
from app.logging_setup import configure_logging
from app.settings import Settings, get_settings
from cds_hooks.request import request_json_schemas


DESCRIPTION = """CDS Hooks 2.0 service checking inotuzumab ozogamicin (BESPONSA) orders against the
label's regimen and dose-modification rules (EU SmPC by default, US PI selectable).

Services: `besponsa-order-sign`, `besponsa-order-select`, `besponsa-patient-view`. Every card
carries `extension["besponsa-cds"]` with its decision, rules, citations, evidence and label."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    facts_builder.warm()  # terminology, UCUM, FHIR models: ~1 s once, not on the first hook call
    if getattr(app.state, "policy", None) is None:
        app.state.policy = load_policy(settings.policy_file)
    opened = getattr(app.state, "store", None) is None
    if opened:
        from app.storage import open_store

        app.state.store = open_store(settings.database_url)
    own_fhir = own_fhir_base(settings)
    if own_fhir:  # a hook whose fhirServer is this service's demo server is answered in process
        fhir_client.route_to_asgi(own_fhir, app)
    try:
        yield
    finally:
        if own_fhir:
            fhir_client.unroute(own_fhir)
        await fhir_client.aclose()
        close = getattr(app.state.store, "close", None) if opened else None
        if callable(close):
            close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the request models (the body is validated by hand, see hooks.py)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(request_json_schemas("#/components/schemas/{model}"))  # CDSRequest: one per hook
    add_service_operations(doc, SERVICES.values())  # POST /cds-services/<id>, that hook's request
    # Validation errors are answered 400 (errors.py), never FastAPI's 422.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    openapi_security_responses(doc)
    app.openapi_schema = doc
    return doc


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="besponsa-cds",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.services = SERVICES
    configure_security(app, settings)  # trusted clients, profile checks (StartupRefused)
    install_error_handlers(app)
    # Innermost of the middlewares, so that its 413 carries the CORS headers and is access-logged.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # 413 before a body is held

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Accept"],
        max_age=600,
    )
    app.add_middleware(_AccessLog)

    app.include_router(hooks_router)
    app.include_router(feedback.router)  # POST /cds-services/{id}/feedback
    app.include_router(landing.router)  # GET /
    app.include_router(smart.router)  # /smart/: the SMART treatment-timeline app
    if settings.report_endpoint:
        app.include_router(report.router)  # GET /governance/report
    if settings.embedded_fhir:
        from app.demo.fhir_server import router as fhir_router  # only loaded when served

        app.include_router(fhir_router, prefix="/fhir", include_in_schema=False)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class _AccessLog:
    """One log line per request: method, path (no query string), status, duration."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log = logging.getLogger("besponsa_cds.access")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def _send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
