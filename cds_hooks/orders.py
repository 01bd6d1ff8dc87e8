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


def narrow_to_selections(bundle: dict[str, Any], selections: list[str]) -> dict[str, Any]:
    """The Bundle with only the selected entries (order-select `selections`)."""
    kept = [e for e in _entries(bundle) if any(_matches(e, s) for s in selections)]
    return {**bundle, "entry": kept}


def find_resource(bundle: dict[str, Any] | None, reference: str) -> dict[str, Any] | None:
    """The draft resource a reference ("MedicationRequest/123" or a fullUrl) points to."""
    for entry in _entries(bundle):
        if _matches(entry, reference) and isinstance(entry.get("resource"), dict):
            return entry["resource"]
    return None
