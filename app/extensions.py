"""FHIR extensions this service defines (documented in the README).

TREATMENT_CYCLE_DAY (rule C-1): on a MedicationRequest or MedicationAdministration of inotuzumab
ozogamicin, states the cycle and day explicitly; it wins over inference from dates.

    {"url": TREATMENT_CYCLE_DAY, "extension": [
        {"url": "cycle", "valuePositiveInt": 2}, {"url": "day", "valuePositiveInt": 8}]}
"""

BASE = "https://besponsa-cds.org/fhir"
TREATMENT_CYCLE_DAY = f"{BASE}/StructureDefinition/treatment-cycle-day"
OVERRIDE_REASON_SYSTEM = f"{BASE}/CodeSystem/override-reason"
