"""Engine entry point (stub: implemented by the engine work, issue #3)."""

from __future__ import annotations

from datetime import datetime

from app.engine.decisions import Decision, Label
from app.engine.facts import ClinicalFacts
from app.engine.policy import Policy


def evaluate(
    facts: ClinicalFacts, now: datetime, policy: Policy | None = None, label: Label = Label.EU
) -> list[Decision]:
    """All decisions for the draft order (or the patient, for patient-view), most severe first."""
    raise NotImplementedError
