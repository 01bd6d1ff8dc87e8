"""FHIR date, dateTime, instant and Period -> timezone-aware datetime (UTC when no zone is given).

A date-only value ("2026-11-20") is taken as midnight UTC of that day; partial dates ("2026-11",
"2026") as the first day. FHIR requires a zone on dateTime values with a time; lenient servers omit
it, and UTC is then assumed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_mappings.bounded import BoundedCache


def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_datetime_text(value)


# A chart repeats its timestamps (every result of a panel, every page of a query): the parsed,
# immutable datetime of a text is kept. Bounded, per process: at most _CACHE_MAX texts, none
# longer than _CACHED_CHARS (a FHIR instant is at most 35 characters).
_CACHED_CHARS = 64
_CACHE_MAX = 4096
_parsed = BoundedCache(_CACHE_MAX)
_MISSING = object()


def parse_datetime_text(value: str) -> datetime | None:
    """parse_datetime of a value already known to be a non-empty str."""
    known = _parsed.get(value, _MISSING)
    if known is not _MISSING:
        return known  # type: ignore[return-value]
    dt = _parse(value)
    if len(value) <= _CACHED_CHARS:
        _parsed.keep(value, dt)
    return dt


def _parse(value: str) -> datetime | None:
    v = value.strip()
    try:
        if len(v) == 4:
            return datetime(int(v), 1, 1, tzinfo=UTC)
        if len(v) == 7:
            return datetime(int(v[:4]), int(v[5:7]), 1, tzinfo=UTC)
        if v.endswith("Z"):
            v = v[:-1] + "+00:00"
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def period_start(period: Any) -> datetime | None:
    if isinstance(period, dict):
        return parse_datetime(period.get("start")) or parse_datetime(period.get("end"))
    return None


def effective(resource: dict[str, Any], prefix: str = "effective") -> datetime | None:
    """effective[x] (dateTime, instant, Period start) of an Observation-like resource; falls back to
    `issued` for Observations."""
    v = resource.get(prefix + "DateTime")
    if v is not None:
        dt = parse_datetime(v)
        if dt:
            return dt
    for suffix in ("Instant",):
        dt = parse_datetime(resource.get(prefix + suffix))
        if dt:
            return dt
    dt = period_start(resource.get(prefix + "Period"))
    if dt:
        return dt
    if prefix == "effective":
        return parse_datetime(resource.get("issued"))
    return None
