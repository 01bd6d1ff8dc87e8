"""Decisions -> CDS Hooks cards (stub: implemented by the cards work, issue #5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.engine.decisions import Decision, Label
from cds_hooks.cards import Card


@dataclass(frozen=True)
class CardContext:
    patient_id: str
    now: datetime
    label: Label = Label.EU
    encounter_id: str | None = None
    draft_order: dict[str, Any] | None = None  # the raw draft inotuzumab MedicationRequest JSON


def build_cards(decisions: list[Decision], ctx: CardContext) -> list[Card]:
    raise NotImplementedError
