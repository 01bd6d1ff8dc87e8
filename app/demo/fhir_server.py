"""Embedded read-only FHIR R4 server over the demo patients (mounted at /fhir by create_app).

Supports what CDS Hooks prefetch queries use: read `GET /{type}/{id}`, search `GET /{type}?...`
and `POST /{type}/_search` (form body; the CDS Hooks sandbox POSTs first), `GET /metadata`.
Search parameters: patient / subject, code / category / status / clinical-status /
verification-status / intent / vaccine-code (token lists `system|code`, comma = OR), date
(eq/ge/gt/le/lt/ne-free prefixes; repeat for AND), _id, _count, _sort (date, -date), _offset (paging).
Unknown type or id -> 404 OperationOutcome; unknown or malformed parameter -> 400 OperationOutcome.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse as _StarletteJSON

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 100
MAX_COUNT = 1000

SUPPORTED_TYPES = frozenset(
    {
        "Patient", "Observation", "MedicationRequest", "MedicationAdministration", "MedicationStatement",
        "Medication", "Condition", "Procedure", "ServiceRequest", "CarePlan", "AllergyIntolerance",
        "AdverseEvent", "Immunization", "Encounter", "Practitioner",
    }
)  # fmt: skip

IGNORED_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements", "_total"})

# --- the store ---------------------------------------------------------------------------------


class DemoStore:
    """In-memory resources, indexed by type and id and by (type, patient id)."""

    def __init__(self, resources: Iterable[dict[str, Any]] = ()) -> None:
        self.by_id: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_patient: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dates: dict[tuple[str, str], datetime | None] = {}  # the date `date=` and `_sort` use
        self.searches: dict[tuple[Any, ...], list[dict[str, Any]]] = {}  # matches, for paging
        self.add(resources)

    def add(self, resources: Iterable[dict[str, Any]]) -> None:
        for r in resources:
            key = (r["resourceType"], r["id"])
            if key in self.by_id:
                raise ValueError(f"duplicate resource {key}")
            self.by_id[key] = r
            self.dates[key] = _resource_date(r)
            self.by_type[r["resourceType"]].append(r)
            pid = _patient_of(r)
            if pid:
                self.by_patient[(r["resourceType"], pid)].append(r)
        self.searches.clear()

    def date_of(self, r: dict[str, Any]) -> datetime | None:
        return self.dates.get((r["resourceType"], r["id"]))


_lock = threading.Lock()
_store: DemoStore | None = None
_loaded_on: date | None = None  # set when the demo patients were loaded (not for set_store)


def get_store() -> DemoStore:
    """The store: the demo patients, loaded with dates relative to the moment of loading and
    reloaded when the UTC date changes, so "7 days ago" stays 7 days ago on a long-running server."""
    global _store, _loaded_on
    with _lock:
        today = datetime.now(UTC).date()
        if _store is None or (_loaded_on is not None and _loaded_on != today):
            from app.demo import load_demo_resources

            _store = DemoStore(load_demo_resources(datetime.now(UTC)))
            _loaded_on = today
        return _store


def set_store(store: DemoStore | None) -> None:
    """Replace the store (tests, benchmark); None reloads the demo patients on next use."""
    global _store, _loaded_on
    with _lock:
        _store, _loaded_on = store, None


# --- field access ------------------------------------------------------------------------------


def _patient_of(r: dict[str, Any]) -> str | None:
    if r["resourceType"] == "Patient":
        return r.get("id")
    for field in ("subject", "patient"):
        ref = (r.get(field) or {}).get("reference") if isinstance(r.get(field), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def _codings(*fields: str) -> Callable[[dict[str, Any]], list[tuple[str | None, str | None]]]:
    def get(r: dict[str, Any]) -> list[tuple[str | None, str | None]]:
        out: list[tuple[str | None, str | None]] = []
        for f in fields:
            value = r.get(f)
            concepts = value if isinstance(value, list) else [value]
            for c in concepts:
                if isinstance(c, dict):
                    out.extend((cd.get("system"), cd.get("code")) for cd in c.get("coding") or [])
                elif isinstance(c, str):  # plain code (status, intent)
                    out.append((None, c))
        return out

    return get


_CODE = {
    "Observation": _codings("code"),
    "Condition": _codings("code"),
    "Procedure": _codings("code"),
    "ServiceRequest": _codings("code"),
    "AllergyIntolerance": _codings("code"),
    "MedicationRequest": _codings("medicationCodeableConcept"),
    "MedicationAdministration": _codings("medicationCodeableConcept"),
    "MedicationStatement": _codings("medicationCodeableConcept"),
    "Medication": _codings("code"),
    "AdverseEvent": _codings("event"),
}
TOKEN_PARAMS: dict[str, Callable[[dict[str, Any]], list[tuple[str | None, str | None]]]] = {
    "category": _codings("category"),
    "status": _codings("status"),
    "clinical-status": _codings("clinicalStatus"),
    "verification-status": _codings("verificationStatus"),
    "intent": _codings("intent"),
    "vaccine-code": _codings("vaccineCode"),
}

_DATE_FIELDS = {
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "Condition": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "ServiceRequest": ("occurrenceDateTime", "occurrencePeriod", "authoredOn"),
    "Immunization": ("occurrenceDateTime",),
    "AllergyIntolerance": ("recordedDate", "onsetDateTime"),
    "AdverseEvent": ("date",),
    "CarePlan": ("period",),
    "Encounter": ("period",),
}


def _resource_date(r: dict[str, Any]) -> datetime | None:
    for f in _DATE_FIELDS.get(r["resourceType"], ()):
        value = r.get(f)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        if isinstance(value, str):
            try:
                return _parse_range(value)[0]
            except ValueError:
                return None
    return None


_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T.+)?)?)?$")


def _parse_range(text: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime as the [start, end) range its precision covers (UTC when no zone)."""
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(text)
    year, month, day, time = m.groups()
    if time:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt, dt + timedelta(seconds=1)
    start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
    if day:
        return start, start + timedelta(days=1)
    if month:
        nxt = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
        return start, nxt
    return start, datetime(start.year + 1, 1, 1, tzinfo=UTC)


# --- search ---------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


def _token_filter(values: str, get: Callable[[dict[str, Any]], list[tuple[str | None, str | None]]]) -> Callable[[dict[str, Any]], bool]:
    wanted: list[tuple[str | None, str | None]] = []
    for token in values.split(","):
        if not token:
            raise BadRequest("empty token in a token parameter")
        if "|" in token:
            system, code = token.split("|", 1)
            wanted.append((system or None, code or None))
        else:
            wanted.append((None, token))

    def match(r: dict[str, Any]) -> bool:
        have = get(r)
        for system, code in wanted:
            for s, c in have:
                if (system is None or s == system) and (code is None or c == code):
                    return True
        return False

    return match


def _date_filter(value: str, date_of: Callable[[dict[str, Any]], datetime | None]) -> Callable[[dict[str, Any]], bool]:
    prefix, text = (value[:2], value[2:]) if value[:2] in ("eq", "ge", "gt", "le", "lt") else ("eq", value)
    try:
        lo, hi = _parse_range(text)
    except ValueError as exc:
        raise BadRequest(f"date parameter '{value}' is not a FHIR date") from exc

    def match(r: dict[str, Any]) -> bool:
        t = date_of(r)
        if t is None:
            return False
        return {
            "eq": lo <= t < hi,
            "ge": t >= lo,
            "gt": t >= hi,
            "le": t < hi,
            "lt": t < lo,
        }[prefix]

    return match


def search(store: DemoStore, rtype: str, params: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], int, int]:
    """(page, total, offset) for a search; raises BadRequest on an unusable parameter."""
    filters: list[Callable[[dict[str, Any]], bool]] = []
    patient: str | None = None
    count, offset, sort = DEFAULT_COUNT, 0, None
    for name, value in params:
        if name in IGNORED_PARAMS:
            continue
        if name in ("patient", "subject", "patient:Patient", "subject:Patient"):
            pid = value.split("/")[-1] if value.startswith("Patient/") or "/" not in value else None
            if not pid:
                raise BadRequest(f"{name} must reference a Patient")
            if patient is not None and patient != pid:
                return [], 0, 0
            patient = pid
        elif name == "_id":
            wanted = set(value.split(","))
            filters.append(lambda r, w=wanted: r.get("id") in w)
        elif name == "code" and rtype in _CODE:
            filters.append(_token_filter(value, _CODE[rtype]))
        elif name in TOKEN_PARAMS:
            filters.append(_token_filter(value, TOKEN_PARAMS[name]))
        elif name == "date" and rtype in _DATE_FIELDS:
            filters.append(_date_filter(value, store.date_of))
        elif name == "_count":
            if not value.isdigit():
                raise BadRequest("_count must be a non-negative integer")
            count = min(int(value), MAX_COUNT)
        elif name == "_offset":
            if not value.isdigit():
                raise BadRequest("_offset must be a non-negative integer")
            offset = int(value)
        elif name == "_sort":
            if value not in ("date", "-date"):
                raise BadRequest("_sort supports only 'date' and '-date'")
            sort = value
        else:
            raise BadRequest(f"unsupported search parameter '{name}' for {rtype}")
    cache_key = (rtype, tuple(sorted((k, v) for k, v in params if k not in ("_offset", "_count"))))
    matches = store.searches.get(cache_key)
    if matches is None:  # paging re-runs the same search: keep the last few result lists
        pool = store.by_patient.get((rtype, patient), []) if patient is not None else store.by_type.get(rtype, [])
        matches = [r for r in pool if all(f(r) for f in filters)]
        if sort:
            floor = datetime(1, 1, 1, tzinfo=UTC)
            matches.sort(key=lambda r: store.date_of(r) or floor, reverse=sort == "-date")
        if len(store.searches) >= 64:
            store.searches.pop(next(iter(store.searches)))
        store.searches[cache_key] = matches
    return matches[offset : offset + count], len(matches), offset


# --- HTTP -----------------------------------------------------------------------------------------


class JSONResponse(_StarletteJSON):
    """FHIR JSON, serialised by pydantic-core (about 3x faster than json.dumps for big Bundles)."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


router = APIRouter(tags=["embedded FHIR server"])


def _outcome(status: int, code: str, text: str) -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _base(request: Request, suffix: str) -> str:
    path = request.url.path
    root = path[: len(path) - len(suffix)] if path.endswith(suffix) else path.rsplit("/", 1)[0]
    return f"{request.url.scheme}://{request.url.netloc}{root}"


# Handlers are async: the work is short and CPU-bound, and a thread hop per page costs more.


@router.get("/metadata")
async def metadata() -> JSONResponse:
    resources = [
        {
            "type": t,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": n, "type": k}
                for n, k in (("patient", "reference"), ("code", "token"), ("date", "date"), ("status", "token"), ("_id", "token"))
            ],
        }
        for t in sorted(SUPPORTED_TYPES)
    ]
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "besponsa-cds embedded demo FHIR server"},
        "implementation": {"description": "Read-only synthetic demo patients (not real people)"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    }
    return JSONResponse(body, media_type=FHIR_JSON)


def _search_response(request: Request, rtype: str, params: list[tuple[str, str]], suffix: str) -> JSONResponse:
    if rtype not in SUPPORTED_TYPES:
        return _outcome(404, "not-supported", f"resource type '{rtype}' is not served here")
    try:
        page, total, offset = search(get_store(), rtype, params)
    except BadRequest as exc:
        return _outcome(400, "invalid", str(exc))
    base = _base(request, suffix)
    kept = [(k, v) for k, v in params if k != "_offset"]
    links = [{"relation": "self", "url": f"{base}/{rtype}?{urlencode(params)}"}]
    if offset + len(page) < total and page:
        links.append({"relation": "next", "url": f"{base}/{rtype}?{urlencode([*kept, ('_offset', str(offset + len(page)))])}"})
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page
        ],
    }
    if not body["entry"]:
        del body["entry"]
    return JSONResponse(body, media_type=FHIR_JSON)


@router.get("/{rtype}")
async def search_get(rtype: str, request: Request) -> JSONResponse:
    return _search_response(request, rtype, parse_qsl(request.url.query, keep_blank_values=True), f"/{rtype}")


@router.post("/{rtype}/_search")
async def search_post(rtype: str, request: Request) -> JSONResponse:
    raw = (await request.body()).decode("utf-8", errors="replace")
    params = parse_qsl(request.url.query, keep_blank_values=True) + parse_qsl(raw, keep_blank_values=True)
    return _search_response(request, rtype, params, f"/{rtype}/_search")


@router.get("/{rtype}/{rid}")
async def read(rtype: str, rid: str) -> JSONResponse:
    if rtype not in SUPPORTED_TYPES:
        return _outcome(404, "not-supported", f"resource type '{rtype}' is not served here")
    resource = get_store().by_id.get((rtype, rid))
    if resource is None:
        return _outcome(404, "not-found", f"{rtype}/{rid} is not known")
    return JSONResponse(resource, media_type=FHIR_JSON)
