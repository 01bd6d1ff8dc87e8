"""The service's override-reason code system (CDS Hooks `overrideReasons`).

Published at `app.extensions.OVERRIDE_REASON_SYSTEM`. The specific reasons are the label's own
exceptions to its dose-modification rules; the generic ones apply to every card. Engine decisions
name reasons by code (`Decision.override_reasons`); `reasons_for` adds the defaults of the rules
that produced the decision, then the generic reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.extensions import OVERRIDE_REASON_SYSTEM


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str
    definition: str
    source: str  # the label section the exception comes from, or "service" for generic reasons


_REASONS: tuple[OverrideReason, ...] = (
    OverrideReason(
        "not-besponsa-related",
        "Toxicity not BESPONSA-related",
        "The toxicity is judged not related to inotuzumab ozogamicin; dose modification for "
        "BESPONSA-related Grade >= 2 non-haematological toxicity does not apply.",
        "SmPC 4.2 Table 3; USPI 2.3 Table 3",
    ),
    OverrideReason(
        "due-to-underlying-disease",
        "Count decrease due to underlying disease",
        "Stable or improved disease (most recent bone marrow assessment) and the ANC/platelet "
        "decrease is considered due to the underlying disease, not BESPONSA-related toxicity.",
        "SmPC 4.2 Table 2; USPI 2.3 Table 2",
    ),
    OverrideReason(
        "interruption-not-due-to-toxicity",
        "Interruption not due to toxicity",
        "The dosing interruption was not due to toxicity (e.g. scheduling); the interruption-"
        "duration rules apply only to interruptions due to toxicity.",
        "SmPC 4.2 Table 4; USPI 2.3 Table 4",
    ),
    OverrideReason(
        "gilbert-or-haemolysis",
        "Bilirubin due to Gilbert's syndrome or haemolysis",
        "Raised total bilirubin is due to Gilbert's syndrome or haemolysis; the bilirubin "
        "criterion for interrupting dosing does not apply.",
        "SmPC 4.2 Table 3 and Hepatic impairment; USPI 2.3 Table 3",
    ),
    OverrideReason(
        "transfusion-independent-count",
        "Platelet count is independent of transfusion",
        "The platelet count used for dosing was not influenced by a platelet transfusion.",
        "SmPC 4.2 Table 2 note a; USPI 2.3 Table 2",
    ),
    OverrideReason(
        "data-verified-elsewhere",
        "Result available outside the record",
        "The missing or stale result exists (e.g. outside laboratory, paper record) and was reviewed.",
        "service",
    ),
    OverrideReason(
        "data-incorrect",
        "Patient data in the record is incorrect",
        "The card relies on a result or entry that is wrong in the record (to be corrected).",
        "service",
    ),
    OverrideReason(
        "clinical-judgement-documented",
        "Clinical judgement documented",
        "The prescriber has documented the clinical reasoning for proceeding differently.",
        "service",
    ),
)

REASONS: dict[str, OverrideReason] = {r.code: r for r in _REASONS}

# Offered on every non-informational card, after the decision's own reasons.
GENERIC: tuple[str, ...] = ("clinical-judgement-documented", "data-incorrect")

# Defaults per rule id, so that a card offers the label's exception even if the decision omits it.
RULE_DEFAULTS: dict[str, tuple[str, ...]] = {
    "H-2": ("due-to-underlying-disease",),
    "H-3": ("due-to-underlying-disease", "transfusion-independent-count"),
    "H-4": ("due-to-underlying-disease", "transfusion-independent-count"),
    "H-5": ("due-to-underlying-disease",),
    "L-2": ("gilbert-or-haemolysis",),
    "L-3": ("not-besponsa-related",),
    "T-1": ("interruption-not-due-to-toxicity",),
    "T-2": ("interruption-not-due-to-toxicity",),
    "T-3": ("interruption-not-due-to-toxicity", "not-besponsa-related"),
    "T-4": ("interruption-not-due-to-toxicity",),
    "E-5": ("data-verified-elsewhere",),
}


def reason_codes(
    decision_codes: Iterable[str], rules: Iterable[str], *, inferred: bool = False,
    obtain_data: bool = False,
) -> list[str]:
    """Codes to offer, in order: the decision's, the rules' defaults, then the generic ones.

    Unknown codes are dropped (a Coding needs a display); duplicates are removed.
    """
    ordered: list[str] = list(decision_codes)
    for rule in rules:
        ordered.extend(RULE_DEFAULTS.get(rule, ()))
    if inferred:  # C-4: cards built on an inferred interruption offer this reason
        ordered.append("interruption-not-due-to-toxicity")
    if obtain_data:
        ordered.append("data-verified-elsewhere")
    ordered.extend(GENERIC)
    seen: set[str] = set()
    out: list[str] = []
    for code in ordered:
        if code in REASONS and code not in seen:
            seen.add(code)
            out.append(code)
    return out


def coding(code: str) -> dict[str, str]:
    """A CDS Hooks Coding (system, code, display) for a known reason code."""
    reason = REASONS[code]
    return {"system": OVERRIDE_REASON_SYSTEM, "code": reason.code, "display": reason.display}


def is_known(system: str | None, code: str | None) -> bool:
    return system == OVERRIDE_REASON_SYSTEM and code in REASONS


def code_system_resource() -> dict[str, Any]:
    """The code system as a FHIR R4 CodeSystem resource (for publishing / documentation)."""
    return {
        "resourceType": "CodeSystem",
        "id": "override-reason",
        "url": OVERRIDE_REASON_SYSTEM,
        "name": "BesponsaCdsOverrideReason",
        "title": "besponsa-cds override reasons",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "description": "Reasons a clinician may give for not following a besponsa-cds card; the "
        "specific reasons are the exceptions the BESPONSA label itself allows.",
        "count": len(_REASONS),
        "concept": [
            {"code": r.code, "display": r.display, "definition": f"{r.definition} ({r.source})"}
            for r in _REASONS
        ],
    }
