"""Prefetch templates: what the engine needs, as FHIR queries common R4 servers answer.

Initial version; the FHIR mappings work refines the code lists from the value sets.
"""

from __future__ import annotations

_LABS = ",".join(
    "http://loinc.org|" + c
    for c in ["1975-2", "14631-6", "1920-8", "1742-6", "6768-6", "2324-2", "751-8", "26499-4", "777-3", "26515-7"]
)

PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "labs": "Observation?patient={{context.patientId}}&code=" + _LABS + "&_sort=-date&_count=200",
    "vitals": "Observation?patient={{context.patientId}}&code=http://loinc.org|8302-2,http://loinc.org|29463-7&_sort=-date&_count=50",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
}

# Keys without which no decision can be made: absent with no fhirServer -> HTTP 412.
REQUIRED_KEYS: frozenset[str] = frozenset(PREFETCH_TEMPLATES)
