"""Condition status reading: clinicalStatus and verificationStatus (R4 CodeableConcepts; R4
pre-release and DSTU2/STU3-era servers sometimes send plain strings)."""

from __future__ import annotations

from typing import Any

IGNORED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


def status_code(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        for c in value.get("coding") or ():
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                return c["code"]
        if isinstance(value.get("text"), str):
            return value["text"].strip().lower() or None
    return None


def condition_statuses(condition: dict[str, Any]) -> tuple[str | None, str | None]:
    return status_code(condition.get("clinicalStatus")), status_code(
        condition.get("verificationStatus")
    )


def condition_usable(condition: dict[str, Any]) -> bool:
    """False for refuted and entered-in-error Conditions (they are ignored)."""
    _, ver = condition_statuses(condition)
    return ver not in IGNORED_VERIFICATION
