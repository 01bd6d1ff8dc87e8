"""Metrics (Prometheus, `GET /metrics`), traces (OpenTelemetry, off by default) and the log context.

No patient data in either: labels and span attributes are service ids, hooks, decisions, phases,
FHIR resource types, HTTP statuses and error kinds; the only identifier is the random
`hookInstance` (a span attribute and a log field, never a metric label). FHIR URLs are never
recorded (their query strings name the patient).

Tracing is on only when the standard OpenTelemetry variables ask for it: `OTEL_TRACES_EXPORTER`
(`otlp` or `console`) or `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
`OTEL_SDK_DISABLED=true` turns it off. The SDK reads the rest itself (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`).

Metrics are per process: run one worker per container and scale with replicas (README, Production).
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------- metrics

PHASES = ("relevance", "retrieval", "facts", "engine", "cards", "store")  # app/service.py _Stopwatch
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HOOK_CALLS = Counter(
    "besponsa_hook_calls", "Hook calls answered, by service, hook, most severe decision and HTTP status.",
    ["service", "hook", "decision", "status"],
)
CARDS = Counter("besponsa_cards", "Cards returned, by service and decision.", ["service", "decision"])
HOOK_SECONDS = Histogram(
    "besponsa_hook_call_seconds", "Hook call duration inside the service.", ["service"], buckets=_LATENCY_BUCKETS,
)
PHASE_SECONDS = Histogram(
    "besponsa_hook_phase_seconds", "Hook call duration per phase (" + ", ".join(PHASES) + ").",
    ["service", "phase"], buckets=_LATENCY_BUCKETS,
)
FHIR_REQUESTS = Counter("besponsa_fhir_requests", "FHIR server requests attempted, by resource type.", ["resource_type"])
FHIR_ERRORS = Counter(
    "besponsa_fhir_errors",
    "FHIR server requests without a usable answer, by kind (timeout, unreachable, transport, "
    "http_401, http_403, http_404, http_4xx, http_5xx, unsupported, malformed_json, malformed_body, too_large, "
    "budget_exhausted, other).",
    ["kind"],
)
FEEDBACK = Counter(
    "besponsa_feedback_items",
    "Feedback items by service, outcome (accepted, overridden) and result (stored, duplicate, rejected).",
    ["service", "outcome", "result"],
)
STORE_QUEUE = Gauge("besponsa_card_store_queue_depth", "Hook responses waiting for the card writer.")
STORE_DROPPED = Counter("besponsa_card_store_dropped", "Cards answered but not recorded (writer queue full or closed).")
STORE_WRITE_ERRORS = Counter("besponsa_card_store_write_errors", "Failed card writer commits (retried).")
STORE_COMMIT_SECONDS = Histogram(
    "besponsa_card_store_commit_seconds", "Card writer commit duration (one batch).", buckets=_LATENCY_BUCKETS,
)
STORE_COMMITTED = Counter("besponsa_card_store_committed_cards", "Card rows committed by the card writer.")
PURGED = Counter("besponsa_purged_rows", "Rows deleted by the retention purge.", ["table"])
EVENT_LOOP_LAG = Gauge("besponsa_event_loop_lag_seconds",
                       "How late the event loop last woke for its 10 ms timer (hook work leaves the loop past BESPONSA_INLINE_MAX_LOOP_LAG_MS).")
REQUESTS_IN_FLIGHT = Gauge("besponsa_http_requests_in_flight", "HTTP requests being answered by this process.")
HOOK_WORK = Counter("besponsa_hook_decisions", "Hook calls decided, by where their CPU-bound work ran (loop or thread).", ["place"])
HTTP_REQUESTS = Counter(
    "besponsa_http_requests", "HTTP requests by route template, method and status.", ["route", "method", "status"],
)


def metrics_payload() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process's metrics, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def watch_store_queue(depth: Callable[[], int]) -> None:
    STORE_QUEUE.set_function(depth)


def watch_event_loop(lag_seconds: Callable[[], float], in_flight: Callable[[], int]) -> None:
    EVENT_LOOP_LAG.set_function(lag_seconds)
    REQUESTS_IN_FLIGHT.set_function(in_flight)


def hook_decided(on_loop: bool) -> None:
    HOOK_WORK.labels("loop" if on_loop else "thread").inc()


def card_store_dropped(cards: int) -> None:
    STORE_DROPPED.inc(cards)


def card_store_write_error() -> None:
    STORE_WRITE_ERRORS.inc()


def card_store_batch(responses: int, rows: int, seconds: float) -> None:
    STORE_COMMIT_SECONDS.observe(seconds)
    STORE_COMMITTED.inc(rows)


def feedback_counted(service: str, outcomes: list[str], result: str) -> None:
    for outcome in outcomes:
        FEEDBACK.labels(service, outcome if outcome in ("accepted", "overridden") else "other", result).inc()


def purged(cards: int, feedback: int) -> None:
    PURGED.labels("cards").inc(cards)
    PURGED.labels("feedback").inc(feedback)


def route_of(path: str) -> str:
    """A bounded route label for a request path (ids never become label values)."""
    if path.startswith("/fhir"):
        return "/fhir"
    if path.startswith("/cds-services/"):
        return "/cds-services/{id}/feedback" if path.endswith("/feedback") else "/cds-services/{id}"
    if path in ("/cds-services", "/healthz", "/readyz", "/metrics", "/governance/report", "/docs",
                "/openapi.json"):
        return path
    return "other"


def http_request(path: str, method: str, status: int) -> None:
    HTTP_REQUESTS.labels(route_of(path), method if method in ("GET", "POST", "OPTIONS", "HEAD") else "other",
                         str(status)).inc()


# ---------------------------------------------------------------------------------------- tracing

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _exporter_from_env() -> Any:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: supported are otlp, console, none")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        log.warning("OTLP protocol %s is not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*


def configure_tracing(exporter: Any = None) -> bool:
    """Turn tracing on with `exporter` (tests: an in-memory exporter, spans exported at once), or
    from the OTEL_* environment when it asks for tracing; otherwise leave it off. True if on."""
    global _tracer, _provider
    shutdown_tracing()
    if exporter is None and not tracing_requested():
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from app import __version__

    try:
        processor = SimpleSpanProcessor(exporter) if exporter is not None else BatchSpanProcessor(_exporter_from_env())
    except Exception as exc:  # noqa: BLE001 - a bad tracing setup must not stop the service
        log.error("tracing not started: %s", exc)
        return False
    resource = Resource.create({"service.version": __version__})  # + OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "besponsa-cds"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("besponsa-cds", __version__)
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and turn tracing off (lifespan shutdown)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, trace.NoOpTracer()


@contextmanager
def http_span(method: str, path: str, raw_headers: Any) -> Iterator[Any]:
    """A server span for one request (ASGI headers), continuing the caller's W3C trace context."""
    if _provider is None:
        yield None
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers or ()}
    with _tracer.start_as_current_span(f"{method} {route_of(path)}", context=extract(headers),
                                       kind=trace.SpanKind.SERVER, record_exception=False,
                                       set_status_on_exception=False) as span:  # messages may hold data
        span.set_attribute("http.request.method", method)
        span.set_attribute("http.route", route_of(path))
        yield span


# ---------------------------------------------------------------------------------------- one hook call

_hook_instance: contextvars.ContextVar[str | None] = contextvars.ContextVar("hookInstance", default=None)


class HookCall:
    """What the hook call's context manager records when the call ends."""

    def __init__(self, service: str, hook: str, span: Any) -> None:
        self.service, self.hook, self.span = service, hook, span
        self.status = 500
        self.decisions: list[str] = []
        self.timings_ms: dict[str, float] = {}

    def answered(self, cards: list[dict[str, Any]], timings_ms: dict[str, float]) -> None:
        self.status = 200
        self.timings_ms = timings_ms
        self.decisions = [
            str(((card.get("extension") or {}).get("besponsa-cds") or {}).get("decision") or "unknown")
            for card in cards
        ]

    def failed(self, status: int, error: str) -> None:
        self.status = status
        if self.span is not None:
            self.span.set_attribute("besponsa.error", error)


@contextmanager
def hook_call(service: str, hook: str, hook_instance: str) -> Iterator[HookCall]:
    """Around one hook call: sets the log context (every log line, retrieval's included, carries
    the hookInstance), a span, and on exit the call, card and per-phase metrics."""
    token = _hook_instance.set(hook_instance)
    started = time.perf_counter()
    with _tracer.start_as_current_span("hook call", kind=trace.SpanKind.INTERNAL, record_exception=False,
                                       set_status_on_exception=False) as span:  # messages may hold data
        recording = span.is_recording()
        if recording:
            span.set_attribute("besponsa.service", service)
            span.set_attribute("besponsa.hook", hook)
            span.set_attribute("besponsa.hook_instance", hook_instance)
        call = HookCall(service, hook, span if recording else None)
        try:
            yield call
        finally:
            _hook_instance.reset(token)
            decision = call.decisions[0] if call.decisions else ("none" if call.status == 200 else "error")
            HOOK_CALLS.labels(service, hook, decision, str(call.status)).inc()
            HOOK_SECONDS.labels(service).observe(time.perf_counter() - started)
            for d in call.decisions:
                CARDS.labels(service, d).inc()
            for phase, ms in call.timings_ms.items():
                if phase in PHASES:
                    PHASE_SECONDS.labels(service, phase).observe(ms / 1000)
            if recording:
                span.set_attribute("besponsa.status", call.status)
                if call.status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, f"status {call.status}"))
                span.set_attribute("besponsa.cards", len(call.decisions))
                if call.decisions:
                    span.set_attribute("besponsa.decisions", call.decisions)
                for phase, ms in call.timings_ms.items():
                    span.set_attribute(f"besponsa.phase_ms.{phase}", ms)


class FhirQuery:
    def __init__(self, span: Any) -> None:
        self.span = span

    def answered(self, status: int) -> None:
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)

    def failed(self, kind: str, status: int | None = None) -> None:
        """`kind` "http" (or "other") with a status becomes http_401/403/404/4xx/5xx."""
        if status is not None:
            self.answered(status)
        if kind in ("http", "other") and status is not None and status != 200:
            kind = _status_kind(status)
        FHIR_ERRORS.labels(kind).inc()
        if self.span is not None:
            self.span.set_attribute("besponsa.fhir_error", kind)
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, kind))


def _status_kind(status: int) -> str:
    if status in (401, 403, 404):
        return f"http_{status}"
    return "http_5xx" if status >= 500 else "http_4xx"


@contextmanager
def fhir_query(resource_type: str) -> Iterator[FhirQuery]:
    """Around one FHIR GET: a client span (resource type and status, never the URL) and the
    request and error counters. Call `answered(status)` or `failed(kind, status)`."""
    rtype = resource_type if resource_type[:1].isupper() and resource_type.isalnum() else "other"
    FHIR_REQUESTS.labels(rtype).inc()
    with _tracer.start_as_current_span(f"FHIR GET {rtype}", kind=trace.SpanKind.CLIENT, record_exception=False,
                                       set_status_on_exception=False) as span:
        recording = span.is_recording()
        if recording:
            span.set_attribute("fhir.resource_type", rtype)
        yield FhirQuery(span if recording else None)


# ---------------------------------------------------------------------------------------- log context


class _HookInstanceFilter(logging.Filter):
    """Adds the current hook call's hookInstance to records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "hookInstance", None) is None:
            current = _hook_instance.get()
            if current is not None:
                record.hookInstance = current
        return True


_FILTER = _HookInstanceFilter()


def install_log_context() -> None:
    """Put the hookInstance filter on the root logger's handlers (after configure_logging)."""
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def current_hook_instance() -> str | None:
    return _hook_instance.get()
