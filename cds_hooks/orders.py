"""Tolerant access to a hook's `draftOrders` Bundle (entries are read as plain JSON)."""

from __future__ import annotations

from typing import Any


def _matches(entry: dict[str, Any], reference: str) -> bool:
    resource = entry.get("resource")
    if isinstance(resource, dict) and f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
        return True
    full_url = entry.get("fullUrl")
    return isinstance(full_url, str) and (full_url == reference or full_url.endswith("/" + reference))


def _entries(bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    entries = (bundle or {}).get("entry") or []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


# A selection is a "Type/id" reference or a fullUrl; a suffix longer than this is not looked for
# in a fullUrl (a FHIR type and id together are well under it).
MAX_SUFFIX_CHARS = 256


def narrow_to_selections(bundle: dict[str, Any], selections: list[str]) -> dict[str, Any]:
    """The Bundle with only the selected entries (order-select `selections`): an entry whose
    "Type/id" or fullUrl is a selection, or whose fullUrl ends with "/" + a selection (`_matches`).
    Looked up in a set, so that the cost grows with entries plus selections, not their product
    (2,000 entries and 20,000 selections, a 1 MB body, took 17 s compared pairwise)."""
    wanted = {s for s in selections if isinstance(s, str)}
    longest = min(max(map(len, wanted), default=0), MAX_SUFFIX_CHARS)
    kept = [e for e in _entries(bundle) if _selected(e, wanted, longest)]
    return {**bundle, "entry": kept}


def _selected(entry: dict[str, Any], wanted: set[str], longest: int) -> bool:
    resource = entry.get("resource")
    if isinstance(resource, dict) and f"{resource.get('resourceType')}/{resource.get('id')}" in wanted:
        return True
    full_url = entry.get("fullUrl")
    if not isinstance(full_url, str):
        return False
    if full_url in wanted:
        return True
    i = full_url.find("/", max(len(full_url) - longest - 1, 0))  # the suffixes after a "/" ...
    while i != -1:
        if full_url[i + 1:] in wanted:  # ... no longer than the longest selection
            return True
        i = full_url.find("/", i + 1)
    return False


def find_resource(bundle: dict[str, Any] | None, reference: str) -> dict[str, Any] | None:
    """The draft resource a reference ("MedicationRequest/123" or a fullUrl) points to."""
    for entry in _entries(bundle):
        if _matches(entry, reference) and isinstance(entry.get("resource"), dict):
            return entry["resource"]
    return None
