"""Decisions: the engine's output, one per card (clinical-rules.md section 6).

A Decision says what to do and why, with the evidence, and carries what the card layer needs to
build actionable suggestions (the dose to order, what to re-check, which tests to order). It knows
nothing of CDS Hooks JSON: `app.cards` turns it into a card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class DecisionCode(StrEnum):
    DISCONTINUE = "discontinue"
    CONTRAINDICATED = "contraindicated"
    HOLD = "hold"
    OMIT_DOSE = "omit-dose"
    REDUCE_DOSE = "reduce-dose"
    CORRECT_DOSE = "correct-dose"
    CONSIDER_DISCONTINUE = "consider-discontinue"
    OBTAIN_DATA = "obtain-data"
    CAUTION = "caution"
    PROCEED = "proceed"


# Most severe first: the order of cards in a response (issue #3).
SEVERITY_ORDER: tuple[DecisionCode, ...] = tuple(DecisionCode)


class Label(StrEnum):
    EU = "EU"  # EU SmPC (default)
    US = "US"  # US Prescribing Information


@dataclass(frozen=True)
class Evidence:
    """A fact a decision used. Every lab evidence shows value, unit, ULN, ratio, grade and date."""

    concept: str  # Analyte value or concept id ("vod-sos", "dose-history", ...)
    reference: str | None = None  # "Observation/123"
    code: str | None = None  # "http://loinc.org|1975-2"
    value: float | str | None = None
    unit: str | None = None
    uln: float | None = None
    ratio: float | None = None  # value / ULN
    grade: int | None = None  # CTCAE v3.0
    date: datetime | date | None = None
    note: str | None = None  # "ULN from configured default", "preliminary", ...
    # value and unit as the EHR sent them ("36 umol/L") when they differ from the canonical
    # value/unit above (which the rules, ULN and ratio use); `code` is the code as sent
    sent: str | None = None


@dataclass(frozen=True)
class DoseRecommendation:
    """The dose the engine computed for the ordered administration (rules D-1..D-5, R-1)."""

    mg_per_m2: float
    mg: float  # mg_per_m2 x BSA, rounded per policy
    bsa_m2: float
    cycle: int
    day: int
    reduction_level: int = 0  # C-3: 0 label, 1 = -25 %, 2 = two doses per cycle
    vials: int | None = None
    reconstituted_volume_ml: float | None = None  # R-1, at 0.25 mg/mL
    preparation: str | None = None  # Markdown lines for the pharmacist


@dataclass(frozen=True)
class Decision:
    code: DecisionCode
    rules: tuple[str, ...]  # rule ids, e.g. ("L-2",)
    citations: tuple[str, ...]  # e.g. ("SmPC 4.2 Table 3", "SmPC 4.4")
    summary: str  # <= 140 characters, what to do and why, with the number
    detail: str  # Markdown: evidence table, recovery criteria, citation
    label: Label = Label.EU
    critical: bool = False
    evidence: tuple[Evidence, ...] = ()
    # For actionable suggestions (app.cards):
    dose: DoseRecommendation | None = None  # correct-dose / reduce-dose / proceed
    hold_until: date | None = None  # hold: earliest date to re-order (D-6, T-1)
    recovery_criteria: str | None = None  # hold: "bilirubin <= 1.5 x ULN and AST/ALT <= 2.5 x ULN"
    needed_data: tuple[str, ...] = ()  # obtain-data: "hepatic-panel", "cbc-differential", "ecg",
    # "electrolytes", "cd22", "height", "weight", "disease-response", "pregnancy-test"
    override_reasons: tuple[str, ...] = ()  # codes of app.cards override-reason code system
    suggest_premedication: bool = False  # E-4 / I-1 caution: offer premedication orders
    inferred: bool = False  # built on an inferred interruption (C-4)
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def indicator(self) -> str:
        if self.critical or self.code in (DecisionCode.DISCONTINUE, DecisionCode.CONTRAINDICATED):
            return "critical"
        if self.code is DecisionCode.PROCEED:
            return "info"
        return "warning"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self.code)
