"""References: resource keys, the patient filter, and medication resolution."""

from __future__ import annotations

from typing import Any


def ref_of(resource: dict[str, Any]) -> str:
    """'Type/id' of a resource (the id may be missing in draft orders: 'Type/?')."""
    return f"{resource.get('resourceType', '?')}/{resource.get('id') or '?'}"


def reference_id(reference: Any) -> str | None:
    """The trailing 'Type/id' of a Reference (absolute URLs, /_history/ versions tolerated)."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or not reference:
        return None
    r = reference.split("/_history/")[0].rstrip("/")
    if r.startswith("urn:uuid:") or r.startswith("#"):
        return r
    parts = r.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else r


def subject_matches(resource: dict[str, Any], patient_id: str) -> bool:
    """True when the resource's subject/patient is the patient (lenient servers return supersets).

    A resource with no subject at all is kept (contained or draft resources often omit it)."""
    ref = resource.get("subject") or resource.get("patient")
    if ref is None:
        return True
    if isinstance(ref, dict) and ref.get("reference") == f"Patient/{patient_id}":
        return True  # the common case, without parsing
    rid = reference_id(ref)
    if rid is None:
        return True  # identifier-only or display-only reference: cannot disprove
    return rid == f"Patient/{patient_id}" or rid == patient_id or rid.endswith(f"/{patient_id}")


class ResourceIndex:
    """Lookup by 'Type/id' and fullUrl for medicationReference resolution."""

    def __init__(self, resources: list[dict[str, Any]], full_urls: dict[str, dict] | None = None):
        self._resources = resources
        self._by_ref: dict[str, dict[str, Any]] | None = None  # built on first lookup
        self._by_url = dict(full_urls or {})

    def _refs(self) -> dict[str, dict[str, Any]]:
        if self._by_ref is None:
            self._by_ref = {
                ref_of(r): r for r in self._resources
                if isinstance(r, dict) and r.get("id") and r.get("resourceType")
            }
        return self._by_ref

    def get(self, reference: Any, container: dict[str, Any] | None = None) -> dict[str, Any] | None:
        raw = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(raw, str):
            return None
        if raw.startswith("#") and container is not None:
            for c in container.get("contained") or ():
                if isinstance(c, dict) and c.get("id") == raw[1:]:
                    return c
            return None
        if raw in self._by_url:
            return self._by_url[raw]
        rid = reference_id(raw)
        return self._refs().get(rid) if rid else None


def medication_concept(
    resource: dict[str, Any], index: ResourceIndex | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(CodeableConcept, problem) of a MedicationRequest/Administration/Statement medication[x].

    medicationReference is resolved from `contained`, the bundle (fullUrl) or the resources; an
    unresolved reference gives its display as text and a problem string."""
    cc = resource.get("medicationCodeableConcept")
    if isinstance(cc, dict):
        return cc, None
    ref = resource.get("medicationReference")
    if isinstance(ref, dict):
        med = index.get(ref, resource) if index else None
        if med is None and isinstance(ref.get("reference"), str) and ref["reference"].startswith("#"):
            med = ResourceIndex([]).get(ref, resource)
        concept = medication_resource_concept(med, index) if med is not None else None
        if concept is not None:
            return concept, None
        display = ref.get("display")
        return (
            {"text": display} if isinstance(display, str) else None,
            f"medicationReference {ref.get('reference')!r} not found",
        )
    # R5-style CodeableReference (some servers): medication.concept / medication.reference
    med = resource.get("medication")
    if isinstance(med, dict) and isinstance(med.get("concept"), dict):
        return med["concept"], None
    return None, "no medication[x]"


def _ingredient_items(med: dict[str, Any], index: ResourceIndex | None) -> list[Any]:
    """The ingredient concepts of a Medication: itemCodeableConcept (R4), item.concept (R5), or
    itemReference to another Medication/Substance (contained or in the index), one level deep."""
    out: list[Any] = []
    for ing in med.get("ingredient") or ():
        if not isinstance(ing, dict):
            continue
        item = ing.get("item") if isinstance(ing.get("item"), dict) else {}
        cc = ing.get("itemCodeableConcept") or item.get("concept")
        if isinstance(cc, dict):
            out.append(cc)
            continue
        ref = ing.get("itemReference") or item.get("reference")
        target = (index or ResourceIndex([])).get(ref, med) if isinstance(ref, dict) else None
        if isinstance(target, dict) and isinstance(target.get("code"), dict):
            out.append(target["code"])
    return out


def medication_resource_concept(
    med: dict[str, Any], index: ResourceIndex | None = None
) -> dict[str, Any] | None:
    """One CodeableConcept for a Medication resource: its code's codings followed by those of its
    ingredients, so a product coded only by its ingredients (or a compound) still matches a value
    set. Text: the code's text/display, else the first ingredient's. None when neither is coded."""
    code = med.get("code") if isinstance(med.get("code"), dict) else None
    items = _ingredient_items(med, index)
    if not items:
        return code
    coding: list[Any] = []
    for c in ([code] if code else []) + items:
        cod = c.get("coding")
        if isinstance(cod, list):
            coding.extend(x for x in cod if isinstance(x, dict))
    text = next((t for t in (_text(c) for c in ([code] if code else []) + items) if t), None)
    out: dict[str, Any] = {"coding": coding}
    if text:
        out["text"] = text
    return out


def _text(cc: dict[str, Any]) -> str | None:
    if isinstance(cc.get("text"), str) and cc["text"]:
        return cc["text"]
    for c in cc.get("coding") or ():
        if isinstance(c, dict) and isinstance(c.get("display"), str) and c["display"]:
            return c["display"]
    return None
