"""A planned inotuzumab ozogamicin course: an active or draft MedicationRequest for the drug on
the patient's record (facts.medications, concept "inotuzumab-ozogamicin"), before or during
treatment. Used by patient-view (the first dose is due) and by the rules that concern a patient
"on or about to start" the drug (Q-1, P-2 for other drugs' orders)."""

from __future__ import annotations

from app.engine.facts import ClinicalFacts, MedicationFact

DRUG_CONCEPT = "inotuzumab-ozogamicin"  # = app.terminology.DRUG (the engine does not import it)
PLANNED_STATUSES = frozenset({"active", "draft"})  # a MedicationRequest that will be given


def planned_orders(facts: ClinicalFacts) -> list[MedicationFact]:
    """Active/draft inotuzumab ozogamicin MedicationRequests on the record, earliest first."""
    found = [m for m in facts.medications
             if DRUG_CONCEPT in m.concepts and m.resource_type == "MedicationRequest"
             and m.status in PLANNED_STATUSES]
    return sorted(found, key=lambda m: (m.start is None, m.start))
