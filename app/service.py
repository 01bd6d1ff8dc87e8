"""One hook call, end to end: relevance, prefetch, retrieval, facts, engine, cards, storage.

`now` is the request time, taken once by the HTTP layer; nothing below reads the clock. The other
modules are called through their modules (`facts_builder.build_facts`, ...) so tests can replace them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from app import cards as cards_module
from app import engine, facts_builder, observability, retrieval, smart
from app.engine.decisions import Label
from app.engine.facts import Availability, DataProblem, Domain, DomainStatus
from app.engine.policy import Policy
from app.prefetch_queries import REQUIRED_KEYS, domain_availability
from app.settings import Settings
from cds_hooks.discovery import ServiceDefinition
from cds_hooks.orders import find_resource, narrow_to_selections
from cds_hooks.prefetch import fill_templates
from cds_hooks.request import CDSRequest, PatientViewContext

log = logging.getLogger("besponsa_cds.service")

ORDER_HOOKS = frozenset({"order-sign", "order-select"})


class HookCallError(Exception):
    """A hook call answered with an error status and a JSON body (400, 404, 412)."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **extra}


@dataclass
class HookResult:
    cards: list[dict[str, Any]]
    body: bytes  # the response, serialized before the cards were stored
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round((now - self._last) * 1000, 1)
        self._last = now


async def run_hook(
    service: ServiceDefinition,
    request: CDSRequest,
    context: PatientViewContext,
    *,
    settings: Settings,
    policy: Policy,
    store: Any,
    now: datetime,
    body_bytes: int = 0,
    inline_max_bytes: int | None = None,
) -> HookResult:
    """One hook call, with its metrics, trace span and log context (app/observability.py).
    `body_bytes` (the request body) plus what is fetched sizes the work, which runs on the event
    loop up to `inline_max_bytes` (default: the setting), else in a worker thread."""
    with observability.hook_call(service.id, service.hook, str(request.hookInstance)) as call:
        try:
            result = await _run_hook(service, request, context, settings=settings, policy=policy,
                                     store=store, now=now, body_bytes=body_bytes,
                                     inline_max_bytes=inline_max_bytes)
        except HookCallError as exc:
            call.failed(exc.status, exc.body["error"])
            raise
        call.answered(result.cards, result.timings_ms)
        return result


async def _run_hook(
    service: ServiceDefinition,
    request: CDSRequest,
    context: PatientViewContext,
    *,
    settings: Settings,
    policy: Policy,
    store: Any,
    now: datetime,
    body_bytes: int = 0,
    inline_max_bytes: int | None = None,
) -> HookResult:
    watch = _Stopwatch()
    draft_orders: dict[str, Any] | None = getattr(context, "draftOrders", None)
    selections: list[str] | None = getattr(context, "selections", None)

    # (a) Orders for other drugs: no cards and no fetching, never in the way of the order.
    if service.hook in ORDER_HOOKS:
        considered = narrow_to_selections(draft_orders, selections) if selections else draft_orders
        if not considered.get("entry"):  # selections matching no entry: check every draft order
            considered = draft_orders
        summary = facts_builder.summarize_draft_orders(considered)
        watch.lap("relevance")
        if not summary.relevant:
            return HookResult(cards=[], body=response_body([]), timings_ms=watch.timings)

    # (b) Prefetch templates; a template whose token cannot be filled is reported, not sent.
    templates = service.prefetch or {}
    filled = fill_templates(templates, context.model_dump(exclude_none=True))
    prefetch = {k: v for k, v in (request.prefetch or {}).items() if k in templates}
    unreachable = {k for k in filled.unfilled if k not in prefetch}
    extra_problems = [
        DataProblem(
            concept="fhir-server",
            reason=f"prefetch '{k}' was not sent and its query needs {', '.join(filled.unfilled[k])}",
        )
        for k in sorted(unreachable)
    ]

    # (c) Prefetch as sent, the rest from fhirServer; required data with neither way -> 412.
    try:
        retrieved = await retrieval.collect(
            prefetch,
            filled.queries,
            fhir_server=request.fhirServer,
            access_token=request.access_token,
            required=(REQUIRED_KEYS & templates.keys()) - unreachable,
            timeout_seconds=settings.fhir_timeout_seconds,
            max_pages=settings.fhir_max_pages,
            max_response_bytes=settings.fhir_max_response_bytes,
        )
    except retrieval.RequiredDataUnavailable as exc:
        raise HookCallError(
            412,
            "required_data_unavailable",
            exc.reason,
            keys=sorted(exc.keys),
            details=[{"field": f"prefetch.{k}", "message": exc.reason} for k in sorted(exc.keys)],
        ) from exc
    watch.lap("retrieval")

    # What was read of each data domain (issue #8), for the facts.
    key_status = dict(retrieved.status)
    for k in unreachable:
        key_status[k] = DomainStatus(Availability.NOT_PROVIDED,
                                     f"not sent and its query needs {', '.join(filled.unfilled[k])}")

    # (d) FHIR -> facts, (e) the engine, (f) cards, (g) the response body: CPU-bound, so in a
    # worker thread when the call's data is large (a /healthz never waits for it), else inline:
    # a few milliseconds, no longer than a worker thread may hold the GIL, without the hand-off.
    inline_max = settings.inline_max_bytes if inline_max_bytes is None else inline_max_bytes
    offload = body_bytes + retrieved.fetched_bytes > inline_max
    decide = partial(
        _decide, context, retrieved, draft_orders, selections, extra_problems, unreachable,
        domain_availability(key_status),
        hook=service.hook, settings=settings, policy=policy, now=now, watch=watch,
        smart_launch_url=smart.launch_url(settings.public_base_url, fhir_server=request.fhirServer,
                                          patient_id=context.patientId,
                                          embedded_fhir=settings.embedded_fhir),
    )
    observability.hook_decided(not offload)
    decided = await run_in_threadpool(decide) if offload else decide()

    # (h) Storage for feedback and governance, only once the response body exists (a card that
    # cannot be sent is never counted as shown). A failure is logged, the cards still go out.
    # With the background writer (app/storage/writer.py) the cards are queued, never waited for.
    record = {"service_id": service.id, "hook_instance": str(request.hookInstance),
              "patient_id": context.patientId, "cards": decided.cards, "decisions": decided.decisions,
              "now": now}
    try:
        enqueue = getattr(store, "enqueue_cards", None)
        if enqueue is not None:
            enqueue(**record)  # a full queue is counted and logged by the writer
        else:
            await run_in_threadpool(store.record_cards, **record)  # database I/O off the event loop
    except Exception as exc:  # noqa: BLE001 - storage must never fail the hook
        log.error(
            "card storage failed",
            extra={
                "hookInstance": str(request.hookInstance),
                "service": service.id,
                "error_type": type(exc).__name__,
            },
        )
    watch.lap("store")
    return HookResult(cards=decided.card_json, body=decided.body, timings_ms=watch.timings)


@dataclass
class _Decided:
    decisions: list[Any]
    cards: list[Any]
    card_json: list[dict[str, Any]]
    body: bytes


def response_body(card_json: list[dict[str, Any]]) -> bytes:
    """The CDS Hooks response as sent; raises (before anything is stored) if it cannot be encoded."""
    return orjson.dumps({"cards": card_json})


def evaluate_for_hook(hook: str, facts: Any, now: datetime, policy: Policy, label: Label,
                      settings: Settings) -> list[Any]:
    """The engine's decisions for one hook: patient-view evaluates the next due dose as an order
    for it would be (#10); order hooks evaluate the draft. The SMART timeline uses the same."""
    if hook == "patient-view":
        return engine.evaluate_next_dose(facts, now, policy, label, plan_card=settings.patient_view_plan_card)
    return engine.evaluate(facts, now, policy, label)


def _decide(
    context: PatientViewContext,
    retrieved: retrieval.Retrieved,
    draft_orders: dict[str, Any] | None,
    selections: list[str] | None,
    extra_problems: list[DataProblem],
    unreachable: set[str],
    availability: dict[Domain, DomainStatus],
    *,
    hook: str,
    settings: Settings,
    policy: Policy,
    now: datetime,
    watch: _Stopwatch,
    smart_launch_url: str | None = None,
) -> _Decided:
    label = Label(settings.label)
    facts = facts_builder.build_facts(
        context.patientId,
        retrieved.resources,
        draft_orders,
        now,
        selections=selections,
        problems=[*retrieved.problems, *extra_problems],
        unavailable=frozenset(retrieved.unavailable | unreachable),
        availability=availability,
    )
    watch.lap("facts")
    decisions = evaluate_for_hook(hook, facts, now, policy, label, settings)
    watch.lap("engine")

    draft = find_resource(draft_orders, facts.draft.reference) if facts.draft else None
    card_context = cards_module.CardContext(
        patient_id=context.patientId,
        now=now,
        label=label,
        encounter_id=context.encounterId,
        draft_order=draft,
        premedication_file=settings.premedication_file,
        smart_launch_url=smart_launch_url,
    )
    cards = cards_module.build_cards(decisions, card_context)
    card_json = [card.to_json() for card in cards]
    body = response_body(card_json)
    watch.lap("cards")
    return _Decided(decisions=decisions, cards=cards, card_json=card_json, body=body)
