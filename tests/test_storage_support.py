"""Helpers shared by the storage, feedback and report tests (no tests here)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from app.cards import CardContext, build_cards
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation
from app.extensions import OVERRIDE_REASON_SYSTEM
from app.storage import CardStore
from cds_hooks.cards import Card
from cds_hooks.feedback import FeedbackItem

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DRAFT = {
    "resourceType": "MedicationRequest", "id": "mr-1", "status": "draft", "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                              "code": "1942950"}]},
    "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 3, "unit": "mg"}}]}],
}

DECISIONS = [
    Decision(code=DecisionCode.HOLD, rules=("L-2",), citations=("SmPC 4.2 Table 3",),
             summary="Hold: bilirubin 1.75 x ULN, ALT 3.25 x ULN", detail="d", hold_until=date(2026, 11, 30)),
    Decision(code=DecisionCode.CORRECT_DOSE, rules=("D-4", "D-5"), citations=("SmPC 4.2 Table 1",),
             summary="Correct dose: 0.8 mg/m2 x 1.82 m2 = 1.45 mg", detail="d",
             dose=DoseRecommendation(0.8, 1.45, 1.8181, 1, 1)),
    Decision(code=DecisionCode.OBTAIN_DATA, rules=("E-5",), citations=("SmPC 4.4",),
             summary="Obtain CBC", detail="d", needed_data=("cbc-differential",)),
]


def make_cards(decisions: list[Decision] | None = None) -> tuple[list[Card], list[Decision]]:
    decisions = decisions or DECISIONS
    return build_cards(decisions, CardContext(patient_id="p1", now=NOW, draft_order=DRAFT)), decisions


def record(store: CardStore, service_id: str = "besponsa-order-sign", hook_instance: str = "hi-1"
           ) -> list[Card]:
    cards, decisions = make_cards()
    store.record_cards(service_id=service_id, hook_instance=hook_instance, patient_id="p1", cards=cards,
                       decisions=decisions, now=NOW)
    return cards


def accepted(card: Card, when: str = "2026-11-23T10:00:00Z", n: int = 0) -> dict[str, Any]:
    return {"card": card.uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": card.suggestions[n].uuid}],
            "outcomeTimestamp": when}


def overridden(card: Card, code: str | None = "gilbert-or-haemolysis", comment: str | None = "Known Gilbert's",
               when: str = "2026-11-23T10:05:00Z") -> dict[str, Any]:
    item: dict[str, Any] = {"card": card.uuid, "outcome": "overridden", "outcomeTimestamp": when}
    if code:
        item["overrideReason"] = {"reason": {"system": OVERRIDE_REASON_SYSTEM, "code": code}, "userComment": comment}
    return item


def items(*raw: dict[str, Any]) -> list[FeedbackItem]:
    return [FeedbackItem.model_validate(r) for r in raw]
