"""FHIR R4 resources the cards suggest: the corrected draft order, test orders, premedication.

Every resource references the patient (`subject`) and, where there is one, the encounter, and is
valid against `fhir.resources.R4B` (see tests/test_cards_orders.py). Draft orders arrive in
sandbox shapes that fail strict parsing (no `intent`, `category` as an object): `normalize_draft`
repairs them so that an `update` suggestion is always a valid whole resource.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from app.engine.decisions import DoseRecommendation

log = logging.getLogger(__name__)

UCUM = "http://unitsofmeasure.org"
_STATUS = frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                     "draft", "unknown"})
_INTENT = frozenset({"proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                     "instance-order", "option"})
_LIST_FIELDS = ("category", "dosageInstruction", "note", "reasonCode", "identifier", "basedOn")


# --------------------------------------------------------------------------- helpers


def fmt_number(x: float, places: int = 3) -> str:
    """0.8 -> "0.8", 1.3825 -> "1.383", 2.0 -> "2" (no float noise in card text)."""
    return f"{round(x, places):.{places}f}".rstrip("0").rstrip(".")


def prune(value: Any) -> Any:
    """Drop None, "", [] and {} members recursively (strict FHIR and CDS Hooks reject them)."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [prune(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def _ref(resource_type: str, rid: str) -> dict[str, str]:
    return {"reference": rid if "/" in rid else f"{resource_type}/{rid}"}


def _context_refs(res: dict[str, Any], patient_id: str, encounter_id: str | None) -> None:
    if not isinstance(res.get("subject"), dict) or not res["subject"].get("reference"):
        res["subject"] = _ref("Patient", patient_id)
    if encounter_id and not isinstance(res.get("encounter"), dict):
        res["encounter"] = _ref("Encounter", encounter_id)


def validate_r4(resource: dict[str, Any]) -> None:
    """Raise (pydantic ValidationError) unless `resource` is valid FHIR R4 (R4B models)."""
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _is_valid(resource: dict[str, Any]) -> bool:
    try:
        validate_r4(resource)
    except Exception:  # noqa: BLE001 - any validation failure means "not valid"
        return False
    return True


# --------------------------------------------------------------------------- the draft order


def draft_reference(draft: dict[str, Any] | None) -> str | None:
    """"MedicationRequest/<id>" of the draft order, or None when it has no id."""
    if not draft or not isinstance(draft.get("id"), str) or not draft["id"]:
        return None
    return f"{draft.get('resourceType') or 'MedicationRequest'}/{draft['id']}"


def normalize_draft(
    draft: dict[str, Any], *, patient_id: str, encounter_id: str | None = None
) -> dict[str, Any]:
    """A strictly valid copy of a draft MedicationRequest read tolerantly (sandbox shapes).

    Fills `intent` ("order") and `status` ("draft") when missing, turns single objects into lists
    where R4 has lists, moves an STU3-style `dosageInstruction[].doseQuantity` into `doseAndRate`,
    drops null/empty members. If the result is still invalid, keeps only the members the order
    needs (id, medication, subject, encounter, authoredOn, dosage) so the update stays valid.
    """
    res = copy.deepcopy(draft)
    res["resourceType"] = "MedicationRequest"
    # Required bindings (R4 codes.md section 7): anything else becomes draft / order.
    if res.get("status") not in _STATUS:
        res["status"] = "draft"
    if res.get("intent") not in _INTENT:
        res["intent"] = "order"
    for key in _LIST_FIELDS:
        if isinstance(res.get(key), dict):
            res[key] = [res[key]]
    for di in res.get("dosageInstruction") or []:
        if isinstance(di, dict) and "doseQuantity" in di:
            dq = di.pop("doseQuantity")
            di.setdefault("doseAndRate", [{"doseQuantity": dq}])
        if isinstance(di, dict) and isinstance(di.get("doseAndRate"), dict):
            di["doseAndRate"] = [di["doseAndRate"]]
    _context_refs(res, patient_id, encounter_id)
    res = prune(res)
    if _is_valid(res):
        return res
    log.info("draft order %s not valid after repair; keeping its essential members", res.get("id"))
    minimal: dict[str, Any] = {"resourceType": "MedicationRequest", "status": "draft",
                               "intent": "order", "subject": _ref("Patient", patient_id),
                               "medicationCodeableConcept": {"text": "inotuzumab ozogamicin"}}
    for key in ("medicationCodeableConcept", "medicationReference"):
        base = {k: v for k, v in minimal.items() if not k.startswith("medication")}
        if key in res and _is_valid({**base, key: res[key]}):
            minimal = {**base, key: res[key]}
            break
    for key in ("id", "status", "intent", "subject", "encounter", "authoredOn", "requester"):
        if key in res and _is_valid({**minimal, key: res[key]}):
            minimal[key] = res[key]
    # Keep the timing of the first dosage when it is valid on its own (the dose date, C-1).
    first = (res.get("dosageInstruction") or [{}])[0]
    timing = first.get("timing") if isinstance(first, dict) else None
    if timing and _is_valid({**minimal, "dosageInstruction": [{"timing": timing}]}):
        minimal["dosageInstruction"] = [{"timing": timing}]
    return minimal


def dose_text(dose: DoseRecommendation) -> str:
    return (
        f"Inotuzumab ozogamicin {fmt_number(dose.mg_per_m2)} mg/m2 x BSA "
        f"{fmt_number(dose.bsa_m2, 2)} m2 = {fmt_number(dose.mg)} mg, IV infusion over 1 hour "
        f"(cycle {dose.cycle}, Day {dose.day})"
    )


def with_dose(
    draft: dict[str, Any], dose: DoseRecommendation, *, patient_id: str,
    encounter_id: str | None = None,
) -> dict[str, Any]:
    """The whole draft order (repaired) with the dose of `dose` in mg, stated in mg/m2 and BSA.

    `dosageInstruction[0].doseAndRate[0].doseQuantity` becomes `dose.mg` mg (UCUM), already
    rounded by the engine's policy (R-1); any rate in that entry is kept.
    """
    res = normalize_draft(draft, patient_id=patient_id, encounter_id=encounter_id)
    dosage = list(res.get("dosageInstruction") or [{}])
    first = dict(dosage[0])
    rates = [dict(r) for r in first.get("doseAndRate") or [{}]]
    rate0 = {k: v for k, v in rates[0].items() if k not in ("doseQuantity", "doseRange")}
    rate0["doseQuantity"] = {"value": dose.mg, "unit": "mg", "system": UCUM, "code": "mg"}
    first["doseAndRate"] = [rate0, *rates[1:]]
    first["text"] = dose_text(dose)
    res["dosageInstruction"] = [first, *dosage[1:]]
    return res


# --------------------------------------------------------------------------- obtain-data orders


@dataclass(frozen=True)
class Orderable:
    id: str
    label: str
    coding: tuple[dict[str, str], ...]
    text: str


@dataclass(frozen=True)
class OrderGroup:
    """What one obtain-data suggestion orders for one needed-data id."""

    needed: str
    label: str
    orderables: tuple[Orderable, ...]


def _load_json(name: str, path: str | None) -> dict[str, Any]:
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    return json.loads(resources.files("app.data").joinpath(name).read_text(encoding="utf-8"))


@lru_cache
def load_catalogue(path: str | None = None) -> dict[str, Any]:
    return _load_json("order_catalogue.json", path)


@lru_cache
def load_premedication(path: str | None = None) -> dict[str, Any]:
    return _load_json("premedication.json", path)


def order_groups(needed: tuple[str, ...] | list[str], catalogue: dict[str, Any] | None = None
                 ) -> tuple[list[OrderGroup], list[str]]:
    """Needed-data ids -> the orders to suggest (deduplicated), and the ids with no orderable."""
    cat = catalogue or load_catalogue()
    orderables, groups, aliases = cat["orderables"], cat.get("groups", {}), cat.get("aliases", {})
    seen: set[str] = set()
    out: list[OrderGroup] = []
    unknown: list[str] = []
    for need in needed:
        key = aliases.get(need, need)
        ids = groups.get(key, [key])
        if not all(i in orderables for i in ids):
            unknown.append(need)
            continue
        fresh = [i for i in ids if i not in seen]
        seen.update(fresh)
        if not fresh:
            continue
        items = tuple(
            Orderable(i, orderables[i]["label"], tuple(orderables[i]["coding"]), orderables[i]["text"])
            for i in fresh
        )
        label = items[0].label if len(items) == 1 else f"{key.replace('-', ' ')} ({', '.join(o.label for o in items)})"
        out.append(OrderGroup(need, label, items))
    return out, unknown


def service_request(
    item: Orderable, *, patient_id: str, encounter_id: str | None, now: datetime, reason: str
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [dict(c) for c in item.coding], "text": item.text},
        "authoredOn": now.isoformat(),
        "reasonCode": [{"text": reason}],
    }
    _context_refs(res, patient_id, encounter_id)
    return prune(res)


# --------------------------------------------------------------------------- premedication


def premedication_requests(
    *, patient_id: str, encounter_id: str | None, now: datetime, template: dict[str, Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(role, MedicationRequest) per template item (SmPC 4.2/4.4, USPI 2.2: corticosteroid,
    antipyretic, antihistamine before each dose). Optional item members: "dose" {value, unit,
    code}, "route" (CodeableConcept)."""
    tpl = template or load_premedication()
    reason = f"Premedication before inotuzumab ozogamicin ({tpl.get('citation', 'SmPC 4.2')})"
    out: list[tuple[str, dict[str, Any]]] = []
    for item in tpl["items"]:
        dosage: dict[str, Any] = {"text": item.get("dosage_text"), "route": item.get("route")}
        if item.get("dose"):
            d = item["dose"]
            dosage["doseAndRate"] = [{"doseQuantity": {
                "value": d["value"], "unit": d.get("unit"), "system": UCUM, "code": d.get("code", d.get("unit"))}}]
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": item["medication"],
            "authoredOn": now.isoformat(),
            "dosageInstruction": [dosage],
            "reasonCode": [{"text": reason}],
        }
        _context_refs(res, patient_id, encounter_id)
        out.append((item["role"], prune(res)))
    return out
