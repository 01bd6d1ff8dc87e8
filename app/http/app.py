"""The FastAPI application: `create_app(settings)`; uvicorn runs `app.http.app:create_app --factory`."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app import __version__, facts_builder, fhir_client, observability
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


log = logging.getLogger("besponsa_cds.app")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    facts_builder.warm()  # terminology, UCUM, FHIR models: ~1 s once, not on the first hook call
    if getattr(app.state, "policy", None) is None:
        app.state.policy = load_policy(settings.policy_file)
    opened = getattr(app.state, "store", None) is None
    purge_task = None
    if opened:  # the configured database, cards recorded by the background writer
        from app.storage.store import open_configured_store
        from app.storage.writer import BufferedCardStore, CardWriter

        store = open_configured_store(settings)
        writer = CardWriter(store, max_queue=settings.store_queue_size, batch_size=settings.store_batch_size,
                            flush_interval=settings.store_flush_interval_seconds)
        writer.start()
        app.state.store = BufferedCardStore(store, writer, card_wait=settings.feedback_card_wait_seconds)
        if settings.purge_interval_hours > 0:
            purge_task = asyncio.create_task(_periodic_purge(app.state.store, settings))
    tracing = observability.tracing_requested() and observability.configure_tracing()
    own_fhir = own_fhir_base(settings)
    if own_fhir:  # a hook whose fhirServer is this service's demo server is answered in process
        fhir_client.route_to_asgi(own_fhir, app)
    thresholds = _tune_gc()
    lag_task = asyncio.create_task(_watch_loop_lag(app.state))
    observability.watch_event_loop(lambda: app.state.loop_lag_seconds, lambda: app.state.requests_in_flight)
    try:
        yield
    finally:
        # uvicorn runs this after SIGTERM once in-flight requests have finished (or after
        # BESPONSA_GRACEFUL_SHUTDOWN_SECONDS): then the writer commits what is queued.
        lag_task.cancel()
        if purge_task is not None:
            purge_task.cancel()
        if own_fhir:
            fhir_client.unroute(own_fhir)
        await fhir_client.aclose()
        close = getattr(app.state.store, "close", None) if opened else None
        if callable(close):
            await run_in_threadpool(close)
        if tracing:
            observability.shutdown_tracing()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


LAG_TICK_SECONDS = 0.01


async def _watch_loop_lag(state: Any) -> None:
    """`state.loop_lag_seconds`: how late the event loop woke for a 10 ms timer, last time. Hook
    calls run their CPU-bound work on the loop only while it keeps up (app/http/json_body.py)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_TICK_SECONDS
        await asyncio.sleep(LAG_TICK_SECONDS)
        state.loop_lag_seconds = loop.time() - due


async def _periodic_purge(store: object, settings: Settings) -> None:
    """Retention in `serve`: purge every BESPONSA_PURGE_INTERVAL_HOURS (first run after at most
    5 minutes, jittered so that replicas do not purge in step). Failures are logged and retried."""
    interval = settings.purge_interval_hours * 3600
    await asyncio.sleep(min(interval, 300) * random.uniform(0.5, 1.0))
    while True:
        try:
            cards, feedback = await run_in_threadpool(
                store.purge_retention, now=datetime.now(UTC), retention_days=settings.retention_days)  # type: ignore[attr-defined]
            observability.purged(cards, feedback)
        except Exception as exc:  # noqa: BLE001 - retention must never stop the service
            log.error("periodic purge failed", extra={"error_type": type(exc).__name__})
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))


# A full collection at most every FULL_COLLECTION_EVERY collections of the middle generation
# (CPython's default: 10).
FULL_COLLECTION_EVERY = 1000


def _tune_gc() -> tuple[int, ...]:
    """Issue #11: start-up leaves ~150,000 long-lived objects (FHIR models, terminology, the UCUM
    registry) that every full collection traversed again; frozen, the collector only looks at
    what hook calls allocate. Hook calls make almost no reference cycles (decoded JSON is freed by
    reference counting) but a large body is hundreds of thousands of young containers: with the
    default thresholds, eight 4 MB bodies in flight meant a full collection over all of them every
    70,000 allocations, most of the CPU of such a call. Young generations are still collected as
    usual. Returns the previous thresholds (restored on shutdown)."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(previous[0], previous[1], FULL_COLLECTION_EVERY)
    return previous


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
    observability.install_log_context()  # hookInstance on every line of a hook call
    app = FastAPI(
        title="besponsa-cds",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.services = SERVICES
    app.state.requests_in_flight = 0  # counted by _AccessLog; app/http/json_body.py reads it
    app.state.loop_lag_seconds = 0.0  # measured by _watch_loop_lag; app/http/json_body.py reads it
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
    app.add_api_route("/readyz", _readyz, methods=["GET"], tags=["Operations"],
                      summary="Readiness: 503 while the database is unreachable or not migrated",
                      responses={503: {"description": "Not ready: the database does not answer"}})
    app.add_api_route("/metrics", _metrics, methods=["GET"], tags=["Operations"],
                      summary="Prometheus metrics of this process", response_class=Response)
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


async def _readyz(request: Request) -> JSONResponse:
    """Ready when the card store's database answers within the pool timeout and holds the migrated
    schema. Liveness (/healthz) does not look at the database: an outage must not make the
    orchestrator restart replicas."""
    store = request.app.state.store
    ping = getattr(store, "ping", None)
    if callable(ping):
        try:
            await asyncio.wait_for(run_in_threadpool(ping), request.app.state.settings.db_pool_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("not ready: database unreachable or not migrated", extra={"error_type": type(exc).__name__})
            return JSONResponse(status_code=503, content={
                "status": "unavailable", "reason": "the card store's database does not answer or is not migrated"})
    writer = getattr(store, "writer", None)
    body: dict[str, Any] = {"status": "ready", "version": __version__}
    if writer is not None:
        body["cardStoreQueue"] = writer.depth()
    return JSONResponse(body)


async def _metrics() -> Response:
    payload, content_type = observability.metrics_payload()
    return Response(payload, media_type=content_type)


_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")


class _AccessLog:
    """One log line per request: method, path (no query string), status, duration. Probes,
    scrapes and the embedded FHIR server's requests log at DEBUG (noise at INFO). Also the
    request metric and, when tracing is on, the server span."""

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

        path = scope.get("path") or ""
        method = scope.get("method") or ""
        state = scope["app"].state  # Starlette sets scope["app"] before its middleware runs
        state.requests_in_flight += 1
        try:
            with observability.http_span(method, path, scope.get("headers")) as span:
                await self.app(scope, receive, _send)
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
        finally:
            state.requests_in_flight -= 1
            observability.http_request(path, method, status)
            quiet = path in _QUIET_PATHS or path == "/fhir" or path.startswith("/fhir/")
            self.log.log(
                logging.DEBUG if quiet else logging.INFO,
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
