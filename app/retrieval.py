"""Prefetch resolution and FHIR server queries (stub: implemented by the retrieval work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.facts import DataProblem


class RequiredDataUnavailable(Exception):
    """Required prefetch data is absent and there is no fhirServer to fetch it from (-> HTTP 412)."""

    def __init__(self, keys: list[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = keys
        self.reason = reason


@dataclass
class Retrieved:
    resources: list[dict[str, Any]] = field(default_factory=list)  # raw FHIR JSON, deduplicated
    problems: list[DataProblem] = field(default_factory=list)
    unavailable: set[str] = field(default_factory=set)  # prefetch keys / resource types not read


async def collect(
    prefetch: dict[str, Any] | None,
    queries: dict[str, str],
    *,
    fhir_server: str | None,
    access_token: str | None,
    required: frozenset[str],
    timeout_seconds: float,
    max_pages: int,
) -> Retrieved:
    raise NotImplementedError
