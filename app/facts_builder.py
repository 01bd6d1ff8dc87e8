"""FHIR R4 JSON -> ClinicalFacts (stub: implemented by the FHIR mappings work, issue #4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.engine.facts import ClinicalFacts, DataProblem


def build_facts(
    patient_id: str,
    resources: list[dict[str, Any]],
    draft_orders: dict[str, Any] | None,
    now: datetime,
    *,
    selections: list[str] | None = None,
    problems: list[DataProblem] | None = None,
    unavailable: frozenset[str] = frozenset(),
) -> ClinicalFacts:
    raise NotImplementedError


from dataclasses import dataclass  # noqa: E402


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
    raise NotImplementedError
