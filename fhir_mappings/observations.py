"""Observation picking on raw JSON (no fhir.resources validation: thousands of labs must be fast).

- status: final/amended/corrected usable; preliminary kept and flagged; entered-in-error,
  cancelled, registered and unknown ignored.
- value[x]: valueQuantity (with comparator), valueString such as "<0.2" or "36 umol/L",
  valueInteger; valueCodeableConcept for coded results; dataAbsentReason -> a problem.
- effective[x]: dateTime, instant, Period.start; fallback `issued` (see `dates.effective`).
- referenceRange: low/high Quantities of the normal range (ranges restricted by `appliesTo` or
  `age` are used only if no unrestricted range exists).
- components: a panel's component whose code is wanted gives its own value.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

from fhir_mappings.codes import coding_key_fast
from fhir_mappings.units import SHOWN_CHARS, shown

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})
FLAGGED_STATUSES = frozenset({"preliminary"})
KEPT_STATUSES = USABLE_STATUSES | FLAGGED_STATUSES
# Everything else (entered-in-error, cancelled, registered, unknown, missing) is ignored.

COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">=", "=<": "<=", "=>": ">="}
_NUMBER_RE = re.compile(
    r"^\s*(<=|>=|=<|=>|<|>|≤|≥)?\s*([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$"
)


def status_kept(obs: dict[str, Any]) -> bool:
    return obs.get("status") in KEPT_STATUSES


@dataclass(frozen=True)
class ValueRead:
    """A value as read from value[x]; `quantity` holds the unit fields as sent."""

    value: float | None = None
    comparator: str | None = None
    quantity: dict[str, Any] | None = None  # {"unit", "code", "system"} as sent (may be empty)
    concept: dict[str, Any] | None = None  # valueCodeableConcept
    text: str = ""  # the value as sent, for evidence ("36 umol/L", "<0.2 mg/dL")
    problem: str | None = None


def parse_value_string(text: str) -> tuple[str | None, float, str] | None:
    """'<0.2' -> ('<', 0.2, ''); '36 umol/L' -> (None, 36.0, 'umol/L'); non-numbers -> None."""
    m = _NUMBER_RE.match(text or "")
    if not m:
        return None
    comp, num, rest = m.groups()
    try:
        value = float(num.replace(",", "."))
    except ValueError:
        return None
    return (COMPARATORS.get(comp) if comp else None), value, rest


def _cut(text: Any) -> str:
    """A value or unit as sent, for evidence, cut to SHOWN_CHARS characters (a body may hold
    megabytes where a unit belongs: the card does not repeat them)."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def read_value(element: dict[str, Any]) -> ValueRead:
    q = element.get("valueQuantity")
    if isinstance(q, dict):
        v = q.get("value")
        unit_text = _cut(q.get("unit") or q.get("code") or "")
        if isinstance(v, str):  # some servers send decimals as strings
            parsed = parse_value_string(v)
            v = parsed[1] if parsed else None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return ValueRead(problem="valueQuantity without a numeric value", text=_cut(q.get("value")))
        comp = q.get("comparator")
        comp = COMPARATORS.get(comp) if comp else None
        text = f"{comp or ''}{v:g} {unit_text}".strip()
        return ValueRead(float(v), comp, {k: q.get(k) for k in ("unit", "code", "system")}, text=text)
    s = element.get("valueString")
    if isinstance(s, str):
        parsed = parse_value_string(s)
        if parsed is None:
            return ValueRead(problem=f"value {shown(s)} is not a number", text=_cut(s))
        comp, v, rest = parsed
        return ValueRead(v, comp, {"unit": rest} if rest else {}, text=_cut(s))
    for key in ("valueInteger", "valueDecimal"):
        v = element.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return ValueRead(float(v), None, {}, text=f"{v}")
    cc = element.get("valueCodeableConcept")
    if isinstance(cc, dict):
        return ValueRead(concept=cc, text=_cut(cc.get("text") or ""))
    dar = element.get("dataAbsentReason")
    if isinstance(dar, dict):
        why = next((c.get("code") for c in dar.get("coding") or () if isinstance(c, dict)), None)
        return ValueRead(problem=f"no value (dataAbsentReason {why or dar.get('text') or '?'})")
    return ValueRead(problem="no value")


def _first_wanted(concept: Any, wanted: Container[str]) -> str | None:
    if not isinstance(concept, dict):
        return None
    for c in concept.get("coding") or ():
        if isinstance(c, dict):
            key = coding_key_fast(c.get("system"), c.get("code"))
            if key is not None and key in wanted:
                return key
    return None


def matching_elements(
    obs: dict[str, Any], wanted: Container[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(system|code, element) for the Observation itself and each component whose code is wanted.

    The element is the Observation or the component (each carries value[x] and referenceRange)."""
    key = _first_wanted(obs.get("code"), wanted)
    if key is not None:
        yield key, obs
    for comp in obs.get("component") or ():
        if isinstance(comp, dict):
            key = _first_wanted(comp.get("code"), wanted)
            if key is not None:
                yield key, comp


def matching_list(obs: dict[str, Any], wanted: Container[str]) -> list[tuple[str, dict[str, Any]]]:
    """list(matching_elements(obs, wanted)) without the generator (called once per result)."""
    key = _first_wanted(obs.get("code"), wanted)
    out = [(key, obs)] if key is not None else []
    components = obs.get("component")
    if components:
        for comp in components:
            if isinstance(comp, dict):
                key = _first_wanted(comp.get("code"), wanted)
                if key is not None:
                    out.append((key, comp))
    return out


def reference_limits(element: dict[str, Any]) -> tuple[dict | None, dict | None]:
    """(low, high) Quantities of the normal reference range, preferring an unrestricted range."""
    ranges = [r for r in element.get("referenceRange") or () if isinstance(r, dict)]
    if not ranges:
        return None, None
    unrestricted = [r for r in ranges if not r.get("appliesTo") and not r.get("age")]
    typed_normal = [
        r for r in (unrestricted or ranges)
        if not r.get("type") or any(c.get("code") == "normal" for c in (r["type"].get("coding") or ()))
    ]
    r = (typed_normal or unrestricted or ranges)[0]
    low, high = r.get("low"), r.get("high")
    return (low if isinstance(low, dict) else None), (high if isinstance(high, dict) else None)


def reference_range_text(element: dict[str, Any]) -> str | None:
    for r in element.get("referenceRange") or ():
        if isinstance(r, dict) and isinstance(r.get("text"), str):
            return r["text"]
    return None
