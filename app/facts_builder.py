"""FHIR R4 JSON -> ClinicalFacts (issue #4, mapping side).

Speed choice (issue #4 "Speed"): the patient's resources are read as raw JSON dicts. Observations
are filtered by status, subject and code (a set lookup per coding) before anything is converted, and
only matching values are converted; none is validated with fhir.resources (~0.3 ms each, too slow
for a year of daily labs). The fields read are type-checked by hand instead. Strict R4 validation
(fhir.resources.R4B) is applied where it matters: the draft inotuzumab ozogamicin order. When that
fails (the CDS Hooks sandbox sends no `intent`, `category` as an object, Bundles without `type`), the
same fields are read tolerantly (`DraftDose.read_tolerantly=True`): a draft order is never left
unchecked. One unreadable resource gives a DataProblem and is skipped, never fatal.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import orjson

from app.engine.facts import (
    CANONICAL_UNITS,
    Analyte,
    ClinicalFacts,
    ConditionFact,
    CycleDay,
    DataProblem,
    DoseGiven,
    DraftDose,
    Measurement,
    MedicationFact,
    OtherOrder,
    PatientInfo,
    ProcedureFact,
    ReactionFact,
    ResponseFinding,
)
from app.engine.facts import Availability, Domain, DomainStatus  # per data domain (issue #8)
from app.extensions import TREATMENT_CYCLE_DAY
from app.terminology import (
    CONDITION_CONCEPTS,
    DRUG,
    MEDICATION_CONCEPTS,
    PROCEDURE_CONCEPTS,
    QTC_METHODS,
    SUBSTANCE,
    analyte_keys,
    is_drug,
    medication_concepts,
    named_as_drug,
    terminology,
)
from fhir_mappings.bounded import BoundedCache
from fhir_mappings.codes import ValueSetIndex, coding_key_fast, codings, concept_text
from fhir_mappings.conditions import condition_statuses, condition_usable
from fhir_mappings.dates import effective, parse_datetime, parse_datetime_text, period_start
from fhir_mappings.observations import (
    KEPT_STATUSES,
    matching_list,
    read_value,
    reference_limits,
)
from fhir_mappings.references import ResourceIndex, medication_concept, ref_of, subject_matches
from fhir_mappings.units import CACHED_CHARS, UnitError, convert, factor, parse_budget, quantity_ucum, shown

log = logging.getLogger(__name__)

# Values outside these bounds (canonical units) are unit mix-ups, not results: codes.md 10.7 shows
# ANC sent as cells/uL under a 10*3/uL unit (x1000). Reported as unusable, never used.
PLAUSIBLE_MAX: dict[Analyte, float] = {
    Analyte.ANC: 100.0,
    Analyte.WBC: 1000.0,
    Analyte.PLATELETS: 5000.0,
    Analyte.PERIPHERAL_BLASTS: 1000.0,
    Analyte.BILIRUBIN: 100.0,
    Analyte.BILIRUBIN_INDIRECT: 100.0,
    Analyte.CREATININE: 50.0,
    Analyte.MARROW_BLASTS: 100.0,
    Analyte.CD22: 100.0,
    Analyte.MRD: 1.0,
    Analyte.POTASSIUM: 15.0,
    Analyte.MAGNESIUM: 10.0,
    Analyte.CALCIUM: 10.0,
    Analyte.QTC: 1000.0,
    Analyte.HEIGHT: 272.0,
    Analyte.WEIGHT: 650.0,
}

NO_LONGER_VALID = frozenset({"entered-in-error"})
# Condition.severity (FHIR condition-severity value set, SNOMED CT).
_SEVERITY_SNOMED = {"24484000": "severe", "6736007": "moderate", "255604002": "mild"}
# CTCAE grades as NCIt codes (codes.md section 8).
_CTCAE_NCIT = {
    "C41338": "mild", "C41339": "moderate", "C41340": "severe",
    "C41337": "life-threatening", "C48275": "life-threatening",
}
_SEVERITY_RANK = {"mild": 1, "moderate": 2, "severe": 3, "life-threatening": 4}


# ----------------------------------------------------------------------------------------------
# Draft orders


def _bundle_resources(bundle: Any) -> tuple[list[dict[str, Any]], dict[str, dict], list[str]]:
    """(resources, fullUrl -> resource, problems) of a draftOrders Bundle, read tolerantly."""
    if bundle is None:
        return [], {}, []
    if isinstance(bundle, list):
        entries = [{"resource": r} for r in bundle]
    elif isinstance(bundle, dict) and bundle.get("resourceType") not in (None, "Bundle"):
        entries = [{"resource": bundle}]  # a bare resource where a Bundle was expected
    elif isinstance(bundle, dict):
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            return [], {}, ["draftOrders.entry is not a list"]
    else:
        return [], {}, ["draftOrders is not a Bundle"]
    out: list[dict[str, Any]] = []
    urls: dict[str, dict] = {}
    problems: list[str] = []
    for i, e in enumerate(entries):
        r = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(r, dict) or not isinstance(r.get("resourceType"), str):
            problems.append(f"draftOrders.entry[{i}] has no resource")
            continue
        out.append(r)
        if isinstance(e.get("fullUrl"), str):
            urls[e["fullUrl"]] = r
    return out, urls, problems


def _order_concept(resource: dict[str, Any], index: ResourceIndex) -> dict[str, Any] | None:
    rt = resource.get("resourceType")
    if rt in ("MedicationRequest", "MedicationAdministration", "MedicationStatement",
              "MedicationDispense"):
        return medication_concept(resource, index)[0]
    if rt == "Immunization":
        return resource.get("vaccineCode")
    return resource.get("code") if isinstance(resource.get("code"), dict) else None


@dataclass(frozen=True)
class DraftOrderSummary:
    """What the draft orders hold, to decide cheaply whether the hook concerns this service."""

    inotuzumab_orders: tuple[str, ...]  # references of inotuzumab ozogamicin orders
    other_concepts: frozenset[str]  # value-set concepts of other orders ("qt-prolonging", ...)
    problems: tuple[str, ...] = ()  # entries that could not be read at all

    @property
    def relevant(self) -> bool:
        return bool(self.inotuzumab_orders) or bool(
            self.other_concepts & {"qt-prolonging", "live-vaccine"}
        )


def summarize_draft_orders(draft_orders: dict[str, Any] | None) -> DraftOrderSummary:
    """Cheap look at draftOrders (no fhir.resources parsing): which orders are inotuzumab
    ozogamicin, and which medication classes the other orders belong to."""
    resources, urls, problems = _bundle_resources(draft_orders)
    index = ResourceIndex(resources, urls)
    drug_refs: list[str] = []
    concepts: set[str] = set()
    for r in resources:
        cc = _order_concept(r, index)
        if cc is None:
            continue
        if is_drug(cc):
            drug_refs.append(ref_of(r))
        else:
            concepts |= medication_concepts(cc)
    return DraftOrderSummary(tuple(drug_refs), frozenset(concepts), tuple(problems))


def _cycle_day(resource: dict[str, Any]) -> tuple[CycleDay | None, str | None]:
    """Rule C-1 extension (app/extensions.py) on the resource or its first dosage."""
    candidates = list(resource.get("extension") or [])
    for d in (resource.get("dosageInstruction") or [])[:1] + [resource.get("dosage")]:
        if isinstance(d, dict):
            candidates += d.get("extension") or []
    for ext in candidates:
        if not isinstance(ext, dict) or ext.get("url") != TREATMENT_CYCLE_DAY:
            continue
        parts = {
            sub.get("url"): sub.get("valuePositiveInt", sub.get("valueInteger"))
            for sub in ext.get("extension") or ()
            if isinstance(sub, dict)
        }
        cycle, day = parts.get("cycle"), parts.get("day")
        if isinstance(cycle, int) and isinstance(day, int) and cycle >= 1 and day >= 1:
            return CycleDay(cycle, day), None
        return None, "treatment-cycle-day extension without a positive cycle and day"
    return None, None


def _dose(quantity: Any) -> tuple[float | None, float | None, str | None]:
    """(mg, mg/m2, problem) from a dose Quantity."""
    if not isinstance(quantity, dict):
        return None, None, "no dose quantity"
    v = quantity.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None, None, "dose has no numeric value"
    if not any(quantity.get(k) for k in ("unit", "code")):
        return None, None, "dose has no unit"
    try:
        ucum = quantity_ucum(quantity)
    except UnitError as exc:
        return None, None, f"dose unit: {exc}"
    for target in ("mg/m2", "mg"):
        try:
            return (
                (None, convert(v, ucum, target), None) if target == "mg/m2"
                else (convert(v, ucum, target), None, None)
            )
        except UnitError:
            continue
    return None, None, f"dose unit {ucum!r} is neither mg nor mg/m2"


def dose_date(order: dict[str, Any], now: datetime) -> datetime:
    """clinical-rules section 0: timing.event[0], else timing.repeat.boundsPeriod.start, else
    authoredOn, else now."""
    di = (order.get("dosageInstruction") or [None])[0]
    timing = di.get("timing") if isinstance(di, dict) else None
    if isinstance(timing, dict):
        events = timing.get("event") or []
        if events:
            dt = parse_datetime(events[0])
            if dt:
                return dt
        rep = timing.get("repeat")
        if isinstance(rep, dict):
            dt = period_start(rep.get("boundsPeriod"))
            if dt:
                return dt
    return parse_datetime(order.get("authoredOn")) or now


# Strict R4 validation costs ~40 us per element of the order: a draft of a megabyte (40,000 notes)
# took 1.5 s. Real drafts are 1-3 KB; a larger one than this is read tolerantly, and says so.
STRICT_MAX_BYTES = 64 * 1024


def _too_large_for_strict(order: dict[str, Any], size: int | None = None) -> bool:
    if size is None:
        try:
            size = len(orjson.dumps(order))
        except (TypeError, orjson.JSONEncodeError):
            return False  # a caller's Python values: validated (small by construction)
    if size <= STRICT_MAX_BYTES:
        return False
    log.info("draft order %s too large for strict R4 parsing (%d bytes), read tolerantly", ref_of(order), size)
    return True


def _strict_json(order: dict[str, Any]) -> dict[str, Any] | None:
    """The order validated by fhir.resources R4B and dumped back to JSON; None if invalid."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    if _too_large_for_strict(order):
        return None
    try:
        model = MedicationRequest.model_validate(order)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError and fhir_core errors
        log.info("draft order %s failed strict R4 parsing, read tolerantly: %s",
                 ref_of(order), type(exc).__name__)
        return None
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


# FHIR dateTime / date with a zone when a time is given, at most microseconds: the forms the R4B
# model dumps back as the same instant.
_PLAIN_DATETIME = re.compile(
    r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}))?)?)?")


def _strict_valid(order: dict[str, Any]) -> dict[str, Any] | None:
    """`_strict_json` without the dump when the order is valid and every member read_draft reads
    is already in the JSON form the dump would give (numbers as numbers, plain dateTimes): the
    order itself is then returned (issue #11: the dump was most of the strict parse's cost).

    The verdict is kept per order content (its canonical JSON: sorted keys, numbers as sent), so
    that the calls of one ordering session (order-select, then order-sign, of the same draft)
    validate it once; an order that is not plain JSON is validated every time."""
    try:
        canonical = orjson.dumps(order, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # a caller's Python values orjson cannot write
        canonical = None
    if canonical is not None and _too_large_for_strict(order, len(canonical)):
        return None
    plain_json = (canonical is not None and len(canonical) <= _STRICT_CACHED_BYTES  # small entries
                  and orjson.loads(canonical) == order)  # False for a caller's datetime, tuple...
    verdict = _strict_verdict(canonical) if plain_json else _strict_verdict_of(order)
    if isinstance(verdict, str):
        log.info("draft order %s failed strict R4 parsing, read tolerantly: %s", ref_of(order), verdict)
        return None
    return order if verdict is None else orjson.loads(verdict)


_STRICT_CACHED_BYTES = 16 * 1024  # a draft order is ~1.5 KB


@lru_cache(maxsize=256)
def _strict_verdict(canonical: bytes) -> str | bytes | None:
    return _strict_verdict_of(orjson.loads(canonical))


def _strict_verdict_of(order: dict[str, Any]) -> str | bytes | None:
    """None: valid and read as it is; bytes: valid, its dump (JSON) is to be read; str: invalid,
    the name of the error."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    try:
        model = MedicationRequest.model_validate(order)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError and fhir_core errors
        return type(exc).__name__
    if _reads_as_dumped(order):
        return None
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True, by_alias=True))


def _reads_as_dumped(order: dict[str, Any]) -> bool:
    """True when the members read_draft reads need no coercion (a valid order may carry "0.5" for
    a decimal, "2" for a positiveInt or a dateTime the model re-formats)."""
    def number(v: Any) -> bool:
        return v is None or (type(v) in (int, float) and math.isfinite(v))

    def plain(v: Any) -> bool:
        return v is None or (type(v) is str and _PLAIN_DATETIME.fullmatch(v) is not None)

    if not plain(order.get("authoredOn")):
        return False
    extensions = list(order.get("extension") or ())
    for di in order.get("dosageInstruction") or ():
        extensions += di.get("extension") or ()
        timing = di.get("timing") or {}
        period = (timing.get("repeat") or {}).get("boundsPeriod") or {}
        if not all(plain(v) for v in [*(timing.get("event") or ()), period.get("start"), period.get("end")]):
            return False
        for dr in di.get("doseAndRate") or ():
            if not number((dr.get("doseQuantity") or {}).get("value")):
                return False
    for ext in extensions:
        for sub in ext.get("extension") or ():
            if any(sub.get(k) is not None and type(sub.get(k)) is not int
                   for k in ("valuePositiveInt", "valueInteger")):  # 2.0 is dumped as 2
                return False
    return True


def read_draft(order: dict[str, Any], now: datetime) -> DraftDose:
    """An inotuzumab ozogamicin MedicationRequest -> DraftDose (strict first, else tolerant)."""
    strict = _strict_valid(order) if FAST_PATHS else _strict_json(order)
    data = strict if strict is not None else order
    problems: list[str] = []
    di = (data.get("dosageInstruction") or [None])[0]
    dq = None
    if isinstance(di, dict):
        dr = (di.get("doseAndRate") or [None])[0]
        if isinstance(dr, dict):
            dq = dr.get("doseQuantity")
            if dq is None and dr.get("doseRange"):
                problems.append("dose given as a range, not a single dose")
    mg, mg_m2, problem = _dose(dq)
    if problem and not problems:
        problems.append(problem)
    explicit, ext_problem = _cycle_day(data)
    if ext_problem:
        problems.append(ext_problem)
    status = data.get("status") if isinstance(data.get("status"), str) else None
    return DraftDose(
        reference=ref_of(order),
        dose_date=dose_date(data, now),
        dose_mg=mg,
        dose_mg_per_m2=mg_m2,
        explicit=explicit,
        status=status,
        read_tolerantly=strict is None,
        problems=tuple(problems),
    )


# ----------------------------------------------------------------------------------------------
# Observations


# Results older than this before the first dose (or the dose date when none was given) cannot
# change a rule: the baseline is the latest result before the first dose, every other rule reads
# results after it, and the freshness windows before a first dose (labs 7 days, weight 30 days by
# default) are shorter. Of the older results only the latest few per analyte are converted, so the
# latest value before any date at or after the horizon is always there.
HISTORY_LOOKBACK_DAYS = 45
KEEP_BEFORE_HORIZON = 3


@lru_cache(maxsize=8)  # per loaded terminology index (hashed by identity), like analyte_keys
def _observation_codes(idx: ValueSetIndex) -> tuple[dict[str, Analyte], dict[str, str], frozenset[str]]:
    """(code -> analyte, code -> status/response value set, every code read) of an index."""
    akeys = analyte_keys(idx)
    special = {
        k: vs for k, sets in idx.exact.items()
        for vs in sets & {"pregnancy-status", "breastfeeding-status", "disease-response"}
    }
    return akeys, special, frozenset(akeys.keys() | special.keys())


def _measurements(
    observations: list[dict[str, Any]],
    patient_id: str,
    idx: ValueSetIndex,
    problems: list[DataProblem],
    conditions: list[ConditionFact],
    responses: list[ResponseFinding],
    horizon: datetime | None = None,
) -> list[Measurement]:
    """Observations (already filtered by subject) -> Measurements: filter raw dicts by status and
    code first; convert
    what is at or after `horizon`, and before it only the latest KEEP_BEFORE_HORIZON per analyte."""
    akeys, special, wanted = _observation_codes(idx)
    out: list[Measurement] = []
    older: dict[Analyte, list[tuple[datetime, str, dict, dict]]] = {}
    read_one = _measurement_fast if FAST_PATHS else _measurement
    plain = _plain_result if FAST_PATHS else None

    def convert_one(analyte: Analyte, key: str, obs: dict, el: dict, eff: datetime | None) -> None:
        try:
            m = read_one(analyte, key, obs, el, eff, problems)
        except Exception as exc:  # noqa: BLE001 - one malformed result never breaks the rest
            problems.append(DataProblem(analyte.value, f"unreadable result skipped ({type(exc).__name__})",
                                        ref_of(obs), eff))
            return
        if m is not None:
            out.append(m)

    def classify(obs: dict) -> None:
        if plain is not None:
            m = plain(obs, akeys, wanted, horizon)
            if m is not _GENERAL:
                if type(m) is tuple:  # before the horizon: what the general way below does
                    eff, key = m
                    older.setdefault(akeys[key], []).append((eff, key, obs, obs))
                elif m is not None:
                    out.append(m)
                return
        if obs.get("status") not in KEPT_STATUSES:
            return  # entered-in-error, cancelled, registered, unknown: ignored
        for key, el in matching_list(obs, wanted):
            if key in special:
                _status_observation(special[key], obs, el, idx, conditions, responses)
                continue
            analyte = akeys[key]
            eff = effective(obs)
            if horizon is not None and eff is not None and eff < horizon:
                older.setdefault(analyte, []).append((eff, key, obs, el))
                continue
            convert_one(analyte, key, obs, el, eff)

    for obs in observations:
        try:
            classify(obs)
        except Exception as exc:  # noqa: BLE001 - members of the wrong JSON type: skip, say so
            problems.append(DataProblem("fhir-server",
                                        f"unreadable Observation skipped ({type(exc).__name__})",
                                        ref_of(obs)))
    for analyte, items in older.items():
        items.sort(key=lambda t: t[0], reverse=True)
        for eff, key, obs, el in items[:KEEP_BEFORE_HORIZON]:
            convert_one(analyte, key, obs, el, eff)
    return out


def _measurement(
    analyte: Analyte, key: str, obs: dict, el: dict, eff: datetime | None, problems: list[DataProblem]
) -> Measurement | None:
    ref = ref_of(obs)
    vr = read_value(el)

    def problem(reason: str) -> None:
        problems.append(DataProblem(analyte.value, reason, ref, eff))

    if vr.problem or vr.value is None:
        problem(vr.problem or "coded value where a quantity is expected")
        return None
    if eff is None:
        problem("no effective date")
        return None
    canonical = CANONICAL_UNITS[analyte]
    substance = SUBSTANCE.get(analyte)
    q = vr.quantity or {}
    if not (q.get("unit") or q.get("code")):
        problem(f"value {shown(vr.text)} has no unit")
        return None
    try:
        ucum = quantity_ucum(q)
        value = convert(vr.value, ucum, canonical, substance)
    except UnitError as exc:
        problem(f"{exc} (value {shown(vr.text)})")
        return None
    if value < 0 or value > PLAUSIBLE_MAX.get(analyte, float("inf")):
        problem(f"implausible value {shown(vr.text)} = {value:g} {canonical}: check the unit")
        return None
    low, high = reference_limits(el)
    return Measurement(
        analyte=analyte,
        value=value,
        effective=eff,
        reference=ref,
        uln=_limit(high, ucum, canonical, substance) if high else None,
        lln=_limit(low, ucum, canonical, substance) if low else None,
        comparator=vr.comparator,
        status=obs.get("status", "final"),
        code=key,
        original=vr.text,
        method=QTC_METHODS.get(key) if analyte == Analyte.QTC else None,
    )


# Issue #11: the common shape of a result (a numeric valueQuantity with a unit, at most one plain
# reference range) is read without the general path's intermediate objects, and its unit factor
# and reference limits are cached (they repeat across every result of an analyte). Everything else
# goes through `_measurement`. Same Measurement either way (tests/test_facts_builder_fast_paths.py
# compares both on every fixture); FAST_PATHS = False reads everything the general way.
FAST_PATHS = True
_MAX_EXACT_INT = 2**53


def _measurement_fast(
    analyte: Analyte, key: str, obs: dict, el: dict, eff: datetime | None, problems: list[DataProblem]
) -> Measurement | None:
    q = el.get("valueQuantity")
    if eff is None or type(q) is not dict or q.get("comparator"):
        return _measurement(analyte, key, obs, el, eff, problems)
    v = q.get("value")
    if not ((type(v) is float and math.isfinite(v)) or (type(v) is int and -_MAX_EXACT_INT < v < _MAX_EXACT_INT)):
        return _measurement(analyte, key, obs, el, eff, problems)
    unit, code, system = q.get("unit"), q.get("code"), q.get("system")
    canonical, substance, plausible_max = _ANALYTE_CONSTANTS[analyte]
    try:
        plan = (_unit_plan(unit, code, system, canonical, substance)
                if (unit or code) and not _long((unit, code, system)) else None)
    except TypeError:  # unhashable unit members
        plan = None
    if plan is None:  # no unit, unknown or unconvertible unit, junk: the general path says why
        return _measurement(analyte, key, obs, el, eff, problems)
    ucum, scale = plan
    value = float(v) if scale == 1.0 else float(f"{float(v) * scale:.9g}")  # as units.convert
    if value < 0 or value > plausible_max:
        return _measurement(analyte, key, obs, el, eff, problems)
    low, high = _range_limits(el)
    return _new_measurement(
        analyte, value, eff, ref_of(obs),
        canonical,  # what Measurement.__post_init__ sets
        _plain_limit(high, ucum, canonical, substance) if high else None,
        _plain_limit(low, ucum, canonical, substance) if low else None,
        obs.get("status", "final"),
        key,
        f"{v:g} {unit or code or ''}".strip(),  # as read_value's text
        QTC_METHODS.get(key) if analyte == Analyte.QTC else None,
    )


_GENERAL = object()  # _plain_result: "not the plain shape, read this result the general way"


def _long(members: tuple[Any, ...]) -> bool:
    """True when a str among `members` is too long to be a cache key (units.CACHED_CHARS)."""
    return any(type(m) is str and len(m) > CACHED_CHARS for m in members)
_PLAN_CACHE_MAX = 4096
_value_plans = BoundedCache(_PLAN_CACHE_MAX)


def _plain_result(obs: dict, akeys: dict[str, Analyte], wanted: frozenset[str],
                  horizon: datetime | None) -> Any:
    """The common shape of a result read in one function (issue #11: a fifth of a typical
    order-sign call is reading its 200 results): a kept status, an analyte code among the first
    codings, no components, an effectiveDateTime at or after `horizon`, and what
    `_measurement_fast` reads fast. Returns its Measurement, None when the result is not one the
    rules read (its status or its codes), (effective, code) when it is one of an analyte dated
    before `horizon` (`classify` sets it aside as the general way does, without reading it again),
    or _GENERAL for anything else, which `classify` then reads the general way (a same-facts test
    compares both on every fixture)."""
    status = obs.get("status")
    code = obs.get("code")
    if type(status) is not str or type(code) is not dict or obs.get("component"):
        return _GENERAL
    if status not in KEPT_STATUSES:
        return None
    codes = code.get("coding")
    if type(codes) is not list:
        return _GENERAL
    key = None
    for c in codes:
        if type(c) is not dict:
            return _GENERAL
        key = coding_key_fast(c.get("system"), c.get("code"))
        if key is not None:
            if key in akeys:
                break
            if key in wanted:  # a status or response code first: `classify` reads that one
                return _GENERAL
            key = None
    if key is None:  # no analyte code: a status or response Observation, or none the rules read
        return _GENERAL if codes else None
    when = obs.get("effectiveDateTime")
    if type(when) is not str or not when:
        return _GENERAL
    eff = parse_datetime_text(when)
    if eff is None:
        return _GENERAL
    if horizon is not None and eff < horizon:  # as the general way: set aside, maybe read later
        return eff, key
    q = obs.get("valueQuantity")
    if type(q) is not dict or q.get("comparator"):
        return _GENERAL
    v = q.get("value")
    if not ((type(v) is float and math.isfinite(v)) or (type(v) is int and -_MAX_EXACT_INT < v < _MAX_EXACT_INT)):
        return _GENERAL
    unit, ucode = q.get("unit"), q.get("code")
    plan_key = (key, unit, ucode, q.get("system"))
    try:
        plan = _value_plans.get(plan_key, _GENERAL)
    except TypeError:  # unhashable unit members
        return _GENERAL
    if plan is _GENERAL:
        if _long(plan_key):  # every cache entry kept small: such units are read the general way
            return _GENERAL
        plan = _value_plans.keep(plan_key, _value_plan(akeys[key], key, *plan_key[1:]))
    if plan is None:
        return _GENERAL
    analyte, ucum, scale, canonical, substance, plausible_max, method, text_unit = plan
    value = float(v) if scale == 1.0 else float(f"{float(v) * scale:.9g}")  # as units.convert
    if value < 0 or value > plausible_max:
        return _GENERAL
    low, high = _range_limits(obs)
    try:
        uln = _plain_limit(high, ucum, canonical, substance) if high else None
        lln = _plain_limit(low, ucum, canonical, substance) if low else None
    except Exception:  # noqa: BLE001 - e.g. an int limit too large for a float: the general way
        return _GENERAL  # reports it as this analyte's unusable result, dated (convert_one)
    m = object.__new__(Measurement)
    object.__setattr__(m, "__dict__", {
        "analyte": analyte, "value": value, "effective": eff, "reference": ref_of(obs),
        "unit": canonical, "uln": uln, "lln": lln,
        "comparator": None, "status": status, "code": key,
        "original": f"{v:g} {text_unit}".strip(),  # as read_value's text
        "method": method, "specimen": None,
    })
    return m


def _range_limits(element: dict) -> tuple[dict | None, dict | None]:
    """reference_limits, with its common case (one plain range, or none) read inline."""
    ranges = element.get("referenceRange")
    if not ranges:
        return None, None
    r = ranges[0] if type(ranges) is list and len(ranges) == 1 else None
    if type(r) is dict and not r.get("appliesTo") and not r.get("age") and not r.get("type"):
        low, high = r.get("low"), r.get("high")
        return (low if isinstance(low, dict) else None), (high if isinstance(high, dict) else None)
    return reference_limits(element)


_plain_limits = BoundedCache(_PLAN_CACHE_MAX)


def _plain_limit(q: dict, value_ucum: str, canonical: str, substance: str | None) -> float | None:
    """`_limit` of a numeric range limit, kept per value and unit (limits repeat across every result
    of an analyte); anything else (a bool, text, unhashable or long members) is converted each time."""
    v = q.get("value")
    if type(v) is not float and type(v) is not int:  # bools, text: `_limit` says no
        return _limit(q, value_ucum, canonical, substance)
    key = (v, q.get("unit"), q.get("code"), q.get("system"), value_ucum, canonical, substance)
    try:
        return _plain_limits[key]
    except KeyError:
        pass
    except TypeError:  # unhashable unit members
        return _limit(q, value_ucum, canonical, substance)
    if _long(key):  # every cache entry kept small
        return _limit(q, value_ucum, canonical, substance)
    return _plain_limits.keep(key, _limit(q, value_ucum, canonical, substance))


def _value_plan(analyte: Analyte, key: str, unit: Any, code: Any, system: Any) -> tuple[Any, ...] | None:
    """What every result of `analyte` with these unit members shares, None when the general path
    must read them (no unit, an unknown or unconvertible one)."""
    if not _DICT_MEASUREMENT or not (unit or code):
        return None
    canonical, substance, plausible_max = _ANALYTE_CONSTANTS[analyte]
    plan = _unit_plan(unit, code, system, canonical, substance)
    if plan is None:
        return None
    ucum, scale = plan
    method = QTC_METHODS.get(key) if analyte == Analyte.QTC else None
    return analyte, ucum, scale, canonical, substance, plausible_max, method, unit or code or ""


# A frozen dataclass sets each field through object.__setattr__: a third of a result's cost. The
# same instance is made by giving it its whole __dict__ at once, as long as these are exactly its
# fields (else, or with __slots__, the ordinary constructor is used).
_MEASUREMENT_FIELDS = frozenset({"analyte", "value", "effective", "reference", "unit", "uln", "lln",
                                 "comparator", "status", "code", "original", "method", "specimen"})
_DICT_MEASUREMENT = not hasattr(Measurement, "__slots__") and {
    f.name for f in dataclasses.fields(Measurement)} == _MEASUREMENT_FIELDS


def _new_measurement(analyte: Analyte, value: float, effective: datetime, reference: str, unit: str,
                     uln: float | None, lln: float | None, status: str, code: str, original: str,
                     method: str | None) -> Measurement:
    """Measurement(...) of a plain result (no comparator, no specimen)."""
    if not _DICT_MEASUREMENT:
        return Measurement(analyte=analyte, value=value, effective=effective, reference=reference, unit=unit,
                           uln=uln, lln=lln, status=status, code=code, original=original, method=method)
    m = object.__new__(Measurement)
    object.__setattr__(m, "__dict__", {
        "analyte": analyte, "value": value, "effective": effective, "reference": reference, "unit": unit,
        "uln": uln, "lln": lln, "comparator": None, "status": status, "code": code, "original": original,
        "method": method, "specimen": None,
    })
    return m


_ANALYTE_CONSTANTS = {
    a: (CANONICAL_UNITS[a], SUBSTANCE.get(a), PLAUSIBLE_MAX.get(a, float("inf"))) for a in Analyte
}


@lru_cache(maxsize=4096)
def _unit_plan(unit: Any, code: Any, system: Any, canonical: str, substance: str | None
               ) -> tuple[str, float] | None:
    """(UCUM code, factor to the canonical unit) of a Quantity's unit fields, None when unusable."""
    try:
        ucum = quantity_ucum({"unit": unit, "code": code, "system": system})
        return ucum, factor(ucum, canonical, substance)
    except UnitError:
        return None


def _limit(q: dict | None, value_ucum: str, canonical: str, substance: str | None) -> float | None:
    """A referenceRange low/high in the canonical unit. A limit without a unit is taken in the
    value's unit (the range describes that value); one that cannot be converted is dropped (the
    engine then uses its documented default ULN)."""
    if not q or not isinstance(q.get("value"), (int, float)) or isinstance(q.get("value"), bool):
        return None
    try:
        ucum = quantity_ucum(q) if (q.get("unit") or q.get("code")) else value_ucum
        return convert(q["value"], ucum, canonical, substance)
    except UnitError:
        return None


def _status_observation(
    kind: str, obs: dict, el: dict, idx: ValueSetIndex,
    conditions: list[ConditionFact], responses: list[ResponseFinding],
) -> None:
    """Pregnancy/breastfeeding status and disease-response Observations (coded values)."""
    value = el.get("valueCodeableConcept")
    if not isinstance(value, dict):
        return
    sets = idx.value_sets_of(value)
    eff = effective(obs)
    ref = ref_of(obs)
    if kind == "pregnancy-status" and "pregnancy" in sets:
        conditions.append(ConditionFact("pregnancy", ref, "active", "confirmed", recorded=eff,
                                        display=concept_text(value)))
    elif kind == "breastfeeding-status" and "breastfeeding" in sets and "not-breastfeeding" not in sets:
        conditions.append(ConditionFact("breastfeeding", ref, "active", "confirmed", recorded=eff,
                                        display=concept_text(value)))
    elif kind == "disease-response":
        for vs in sorted(sets):
            if vs.startswith("response-"):
                responses.append(ResponseFinding(vs.removeprefix("response-"), eff, ref))
                break


# ----------------------------------------------------------------------------------------------
# Conditions, procedures, reactions, medications


def _condition_facts(
    c: dict, idx: ValueSetIndex, responses: list[ResponseFinding]
) -> list[ConditionFact]:
    if not condition_usable(c):
        return []
    concepts = idx.value_sets_of(c.get("code")) & CONDITION_CONCEPTS
    if not concepts:
        return []
    clinical, verification = condition_statuses(c)
    ref = ref_of(c)
    onset = parse_datetime(c.get("onsetDateTime")) or period_start(c.get("onsetPeriod"))
    recorded = parse_datetime(c.get("recordedDate"))
    abatement = parse_datetime(c.get("abatementDateTime")) or period_start(c.get("abatementPeriod"))
    severity = None
    sev = c.get("severity")
    for cod in codings(sev):
        severity = _SEVERITY_SNOMED.get(cod.get("code", "")) or severity
    if severity is None and isinstance(sev, dict) and isinstance(sev.get("text"), str):
        t = sev["text"].lower()
        severity = next((s for s in ("severe", "moderate", "mild") if s in t), None)
    display = concept_text(c.get("code"))
    facts = [
        ConditionFact(k, ref, clinical, verification, onset, recorded, abatement, severity, display)
        for k in sorted(concepts)
    ]
    # Rule C-5 (b): the ALL Condition in remission.
    if "b-all" in concepts and (clinical == "remission" or "all-in-remission" in concepts):
        responses.append(ResponseFinding("remission", recorded or onset, ref))
    return facts


def _procedure_facts(r: dict, idx: ValueSetIndex) -> list[ProcedureFact]:
    rt = r.get("resourceType")
    status = r.get("status") if isinstance(r.get("status"), str) else "unknown"
    if status in NO_LONGER_VALID:
        return []
    if rt == "CarePlan":
        cc_list = [a.get("detail", {}).get("code") for a in r.get("activity") or ()
                   if isinstance(a, dict) and isinstance(a.get("detail"), dict)]
        cc_list += list(r.get("category") or [])
        when = period_start(r.get("period"))
    elif rt == "ServiceRequest":
        cc_list = [r.get("code")]
        when = (parse_datetime(r.get("occurrenceDateTime")) or period_start(r.get("occurrencePeriod"))
                or parse_datetime(r.get("authoredOn")))
    else:
        cc_list = [r.get("code")]
        when = parse_datetime(r.get("performedDateTime")) or period_start(r.get("performedPeriod"))
    concepts: set[str] = set()
    display = ""
    for cc in cc_list:
        found = idx.value_sets_of(cc) & PROCEDURE_CONCEPTS
        if found and not display:
            display = concept_text(cc)
        concepts |= found
    return [ProcedureFact(k, ref_of(r), status, rt, when, display) for k in sorted(concepts)]


def _reaction_fact(r: dict, index: ResourceIndex) -> ReactionFact | None:
    rt = r.get("resourceType")
    if rt == "AllergyIntolerance":
        if not condition_usable(r):  # same verificationStatus semantics (refuted, entered-in-error)
            return None
        substances = [r.get("code")] + [x.get("substance") for x in r.get("reaction") or ()
                                         if isinstance(x, dict)]
        if not any(is_drug(s) for s in substances if s):
            return None
        sevs = [x.get("severity") for x in r.get("reaction") or () if isinstance(x, dict)]
        sev = max((s for s in sevs if s in _SEVERITY_RANK), key=_SEVERITY_RANK.get, default=None)
        return ReactionFact(ref_of(r), "hypersensitivity", sev,
                            parse_datetime(r.get("recordedDate")), concept_text(r.get("code")))
    # AdverseEvent (R4): suspectEntity.instance -> Medication / MedicationAdministration / ...
    if r.get("actuality") == "potential":
        return None
    suspect = False
    for se in r.get("suspectEntity") or ():
        if not isinstance(se, dict):
            continue
        inst = se.get("instance")
        cc = se.get("instanceCodeableConcept")
        if isinstance(inst, dict):
            target = index.get(inst, r)
            if target is not None:
                cc = target.get("code") if target.get("resourceType") == "Medication" else (
                    _order_concept(target, index))
            elif isinstance(inst.get("display"), str):
                cc = {"text": inst["display"]}
        if cc is not None and is_drug(cc):
            suspect = True
    if not suspect:
        return None
    sev = None
    for cc in [r.get("severity")] + [e.get("valueCodeableConcept") for e in r.get("extension") or ()
                                     if isinstance(e, dict)]:
        for cod in codings(cc):
            s = _CTCAE_NCIT.get(cod.get("code", "")) or (
                cod.get("code") if cod.get("code") in _SEVERITY_RANK else None)
            if s and (sev is None or _SEVERITY_RANK[s] > _SEVERITY_RANK[sev]):
                sev = s
    text = concept_text(r.get("event")).lower()
    kind = "hypersensitivity" if ("hypersens" in text or "anaphyla" in text) else "infusion-reaction"
    when = parse_datetime(r.get("date")) or parse_datetime(r.get("recordedDate"))
    return ReactionFact(ref_of(r), kind, sev, when, concept_text(r.get("event")))


def _med_period(r: dict) -> tuple[datetime | None, datetime | None]:
    rt = r.get("resourceType")
    if rt == "Immunization":
        return parse_datetime(r.get("occurrenceDateTime")), None
    if rt == "MedicationRequest":
        di = (r.get("dosageInstruction") or [None])[0]
        timing = di.get("timing") if isinstance(di, dict) else None
        rep = timing.get("repeat") if isinstance(timing, dict) else None
        period = rep.get("boundsPeriod") if isinstance(rep, dict) else None
        start = period_start(period) or parse_datetime(r.get("authoredOn"))
    else:
        period = r.get("effectivePeriod")
        start = parse_datetime(r.get("effectiveDateTime")) or period_start(period)
    end = parse_datetime(period.get("end")) if isinstance(period, dict) else None
    return start, end


_STATED_MG_M2 = re.compile(r"(\d+(?:[.,]\d+)?)\s*mg\s*/\s*m(?:2|²|\^2)(?![0-9])", re.I)


def _stated_mg_per_m2(text: Any) -> float | None:
    """The one mg/m2 amount a dosage text states ("0.6 mg/m2 x 1.82 m2 IV"); None when it states
    none or several (a text naming two amounts is not read)."""
    if not isinstance(text, str):
        return None
    found = {float(m.group(1).replace(",", ".")) for m in _STATED_MG_M2.finditer(text)}
    return found.pop() if len(found) == 1 and 0 < min(found) <= 10 else None


def _dose_given(r: dict, problems: list[DataProblem]) -> DoseGiven | None:
    """A completed inotuzumab MedicationAdministration (dosage.dose in mg or mg/m2; rateQuantity is
    a rate, never a dose)."""
    if r.get("status") != "completed":
        return None
    ref = ref_of(r)
    given = effective(r, "effective")
    if given is None:
        problems.append(DataProblem("medication-history", "administration has no time", ref))
        return None
    dosage = r.get("dosage") if isinstance(r.get("dosage"), dict) else {}
    mg, mg_m2, problem = _dose(dosage.get("dose"))
    if problem:
        problems.append(DataProblem("medication-history", f"dose not usable: {problem}", ref, given))
    if mg_m2 is None:  # a dose in mg whose text states its mg/m2 ("0.6 mg/m2 x 1.82 m2"): C-3
        mg_m2 = _stated_mg_per_m2(dosage.get("text"))
    explicit, ext_problem = _cycle_day(r)
    if ext_problem:
        problems.append(DataProblem("medication-history", ext_problem, ref, given))
    return DoseGiven(ref, given, mg, mg_m2, explicit)


# ----------------------------------------------------------------------------------------------
# The builder

_MED_TYPES = ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Immunization")
_PROC_TYPES = ("Procedure", "ServiceRequest", "CarePlan")
_PROBLEM_CONCEPT = {
    "Patient": "patient", "Condition": "conditions", "Procedure": "procedures",
    "ServiceRequest": "procedures", "CarePlan": "procedures", "AdverseEvent": "reactions",
    "AllergyIntolerance": "reactions", "MedicationAdministration": "medication-history",
    "MedicationRequest": "medications", "MedicationStatement": "medications",
    "Immunization": "medications", "Observation": "fhir-server",
}


def _patient(resources: list[dict], patient_id: str) -> PatientInfo:
    for r in resources:
        if r.get("id") == patient_id:
            bd = r.get("birthDate")
            birth: date | None = None
            if isinstance(bd, str) and len(bd) >= 10:
                try:
                    birth = date.fromisoformat(bd[:10])
                except ValueError:
                    birth = None
            gender = r.get("gender") if isinstance(r.get("gender"), str) else None
            return PatientInfo(patient_id, birth, gender)
    return PatientInfo(patient_id)


# A course is at most 6 cycles of 3 doses (SmPC 4.2). Reconstructing it compares every dose with
# the ones before it: 5,000 administrations took 2 s. More than this many is not a course history.
MAX_COURSE_DOSES = 18
MAX_ADMINISTRATIONS_READ = 100

# Units the caches have not seen are parsed at a few milliseconds each (app.fhir_mappings.units):
# a chart needs a handful; a body of made-up units would otherwise keep the worker for seconds.
MAX_UNIT_PARSES_PER_CALL = 32


def build_facts(
    patient_id: str,
    resources: list[dict[str, Any]],
    draft_orders: dict[str, Any] | None,
    now: datetime,
    *,
    selections: list[str] | None = None,
    problems: list[DataProblem] | None = None,
    unavailable: frozenset[str] = frozenset(),
    availability: Mapping[Domain, DomainStatus] | None = None,
) -> ClinicalFacts:
    """Raw FHIR JSON (a flat list of any resource types, and the draftOrders Bundle) -> facts.

    `selections` (order-select) picks which inotuzumab draft order is checked; `problems`,
    `unavailable` and `availability` (per data domain, issue #8) from retrieval are carried into
    the facts. At most MAX_UNIT_PARSES_PER_CALL new units are parsed; results in further ones are
    reported unusable."""
    with parse_budget(MAX_UNIT_PARSES_PER_CALL):
        return _build_facts(patient_id, resources, draft_orders, now, selections=selections,
                            problems=problems, unavailable=unavailable, availability=availability)


def _build_facts(
    patient_id: str,
    resources: list[dict[str, Any]],
    draft_orders: dict[str, Any] | None,
    now: datetime,
    *,
    selections: list[str] | None,
    problems: list[DataProblem] | None,
    unavailable: frozenset[str],
    availability: Mapping[Domain, DomainStatus] | None,
) -> ClinicalFacts:
    idx = terminology()
    probs: list[DataProblem] = list(problems or [])
    drafts, urls, draft_problems = _bundle_resources(draft_orders)
    probs += [DataProblem("draft-order", p) for p in draft_problems]

    # Sort the patient's resources by type (deduplicated by Type/id; wrong subject dropped).
    patient_ref = f"Patient/{patient_id}"
    by_type: dict[str, list[dict]] = {}
    seen: set[tuple[str, str]] = set()
    queue = list(resources)
    i = 0
    while i < len(queue):
        r = queue[i]
        i += 1
        if not isinstance(r, dict) or not isinstance(r.get("resourceType"), str):
            probs.append(DataProblem("fhir-server", "invalid resource skipped (not a FHIR resource)"))
            continue
        rt = r["resourceType"]
        if rt == "Bundle":  # a searchset that was not flattened: read its entries
            queue.extend(_bundle_resources(r)[0])
            continue
        rid = r.get("id")
        try:
            if rid is not None and not isinstance(rid, str):
                raise TypeError("id is not a string")
            if rid:
                if (rt, rid) in seen:
                    continue
                seen.add((rt, rid))
            subject = r.get("subject")
            if (rt not in ("Patient", "Medication")
                    and not (type(subject) is dict and subject.get("reference") == patient_ref)
                    and not subject_matches(r, patient_id)):  # the common case without a call
                continue
        except Exception as exc:  # noqa: BLE001 - an id or subject of the wrong JSON type
            probs.append(DataProblem("fhir-server",
                                     f"unreadable {rt} skipped ({type(exc).__name__})", ref_of(r)))
            continue
        by_type.setdefault(rt, []).append(r)
    resources = queue
    index = ResourceIndex(resources + drafts, urls)

    conditions: list[ConditionFact] = []
    responses: list[ResponseFinding] = []
    procedures: list[ProcedureFact] = []
    reactions: list[ReactionFact] = []
    medications: list[MedicationFact] = []
    doses: list[DoseGiven] = []

    def guarded(r: dict, fn) -> None:  # noqa: ANN001 - one bad resource never breaks the rest
        try:
            fn(r)
        except Exception as exc:  # noqa: BLE001
            log.warning("skipped unreadable %s: %s", ref_of(r), type(exc).__name__)
            probs.append(DataProblem(_PROBLEM_CONCEPT.get(r.get("resourceType", ""), "fhir-server"),
                                     f"unreadable resource skipped ({type(exc).__name__})", ref_of(r)))

    def medication(r: dict) -> None:
        if r.get("status") in NO_LONGER_VALID:
            return
        rt = r["resourceType"]
        if rt == "Immunization":
            cc, problem = r.get("vaccineCode"), None
        else:
            cc, problem = medication_concept(r, index)
        if cc is None:
            if rt == "MedicationAdministration":
                probs.append(DataProblem("medication-history", problem or "no medication", ref_of(r)))
            return
        sets = idx.value_sets_of(cc)  # once for both questions: is_drug, medication_concepts
        if DRUG in sets or named_as_drug(cc):
            if rt == "MedicationAdministration":
                d = _dose_given(r, probs)
                if d:
                    doses.append(d)
                return
            concepts = frozenset({DRUG})
        else:
            concepts = sets & MEDICATION_CONCEPTS
            if not concepts:
                return
        start, end = _med_period(r)
        medications.append(MedicationFact(ref_of(r), concepts, r.get("status") or "unknown",
                                          start, end, concept_text(cc), rt))

    for rt in _MED_TYPES:
        for r in by_type.get(rt, []):
            guarded(r, medication)
    draft, others = _drafts(drafts, index, idx, now, selections, probs)

    # Observations last: the first dose given bounds how far back results are converted.
    availability = dict(availability or {})
    if len(doses) > MAX_ADMINISTRATIONS_READ:  # not a course: say so, read none of them
        reason = (f"{len(doses):,} administrations on record, more than any course has (at most "
                  f"{MAX_COURSE_DOSES} doses): not read")
        probs.append(DataProblem("medication-history", reason))
        availability[Domain.ADMINISTRATIONS] = DomainStatus(Availability.UNREADABLE, reason)
        doses = []
    anchor = min([d.given_at for d in doses] + [draft.dose_date if draft else now])
    measurements = _measurements(by_type.get("Observation", []), patient_id, idx, probs,
                                 conditions, responses,
                                 horizon=anchor - timedelta(days=HISTORY_LOOKBACK_DAYS))
    for r in by_type.get("Condition", []):
        guarded(r, lambda c: conditions.extend(_condition_facts(c, idx, responses)))
    for rt in _PROC_TYPES:
        for r in by_type.get(rt, []):
            guarded(r, lambda p: procedures.extend(_procedure_facts(p, idx)))
    for rt in ("AdverseEvent", "AllergyIntolerance"):
        for r in by_type.get(rt, []):
            guarded(r, lambda a: (f := _reaction_fact(a, index)) and reactions.append(f))

    return ClinicalFacts(
        patient=_patient(by_type.get("Patient", []), patient_id),
        draft=draft,
        other_orders=tuple(others),
        doses_given=tuple(sorted(doses, key=lambda d: d.given_at)),
        measurements=tuple(sorted(measurements, key=lambda m: m.effective)),
        conditions=tuple(conditions),
        procedures=tuple(procedures),
        reactions=tuple(reactions),
        medications=tuple(medications),
        responses=tuple(responses),
        problems=tuple(probs),
        unavailable=frozenset(unavailable),
        availability=MappingProxyType(availability),
    )


def _drafts(
    drafts: list[dict], index: ResourceIndex, idx: ValueSetIndex, now: datetime,
    selections: list[str] | None, probs: list[DataProblem],
) -> tuple[DraftDose | None, list[OtherOrder]]:
    drug_orders: list[dict] = []
    others: list[OtherOrder] = []
    for r in drafts:
        try:
            cc = _order_concept(r, index)
            if cc is not None and is_drug(cc, idx):
                if r.get("resourceType") == "MedicationRequest":
                    drug_orders.append(r)
                continue
            concepts = (idx.value_sets_of(cc) & (MEDICATION_CONCEPTS | PROCEDURE_CONCEPTS)
                        if cc is not None else frozenset())
            others.append(OtherOrder(ref_of(r), frozenset(concepts), concept_text(cc),
                                     r.get("resourceType", "")))
        except Exception as exc:  # noqa: BLE001
            probs.append(DataProblem("draft-order", f"unreadable draft order ({type(exc).__name__})",
                                     ref_of(r)))
    if not drug_orders:
        return None, others
    chosen_refs = set(selections or ())
    selected = [o for o in drug_orders if ref_of(o) in chosen_refs]
    chosen = (selected or drug_orders)[0]
    if len(drug_orders) > 1:
        probs.append(DataProblem(
            "draft-order", f"{len(drug_orders)} inotuzumab ozogamicin orders; checked {ref_of(chosen)}",
            ref_of(chosen)))
    try:
        return read_draft(chosen, now), others
    except Exception as exc:  # noqa: BLE001 - never leave the order unchecked: say it is unreadable
        probs.append(DataProblem("draft-order", f"draft order unreadable ({type(exc).__name__})",
                                 ref_of(chosen)))
        return DraftDose(ref_of(chosen), now, read_tolerantly=True,
                         problems=("draft order could not be read",)), others


def warm() -> None:
    """Load terminology, the UCUM registry and the R4B MedicationRequest model (startup, ~1.5 s)."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest  # noqa: F401

    from fhir_mappings.units import warm as warm_units

    analyte_keys(terminology())
    warm_units()
