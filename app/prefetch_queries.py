"""Prefetch templates: what the engine needs, as FHIR queries common R4 servers answer.

Code lists come from the value sets (app/terminology/value_sets.csv), so a code added there is
also queried. Queries use only what the CDS Hooks spec recommends and HAPI, Epic, Oracle Health
(Cerner) and SMART servers answer: `patient=` reference, `code=` token lists (system|code,
comma-separated = OR), `_sort=-date`, `_count`. No date filter is possible in a template (tokens
cannot compute dates): results come newest first and retrieval follows `next` links up to a bound.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.engine.facts import Analyte, Domain, DomainStatus, worst
from app.terminology import terminology
from fhir_mappings.codes import LOINC

_P = "{{context.patientId}}"

_GROUPS: dict[str, tuple[str, ...]] = {
    # Liver, renal, pancreas, electrolytes (L-2, L-3, Q-1, V-1).
    "labs": tuple(a.value for a in (
        Analyte.BILIRUBIN, Analyte.BILIRUBIN_INDIRECT, Analyte.AST, Analyte.ALT, Analyte.ALP,
        Analyte.GGT, Analyte.AMYLASE, Analyte.LIPASE, Analyte.CREATININE, Analyte.POTASSIUM,
        Analyte.MAGNESIUM, Analyte.CALCIUM)),
    # Blood counts (H-1..H-4, C-5 c, E-3).
    "cbc": tuple(a.value for a in (
        Analyte.ANC, Analyte.PLATELETS, Analyte.WBC, Analyte.PERIPHERAL_BLASTS)),
    # Height and weight for BSA (D-5).
    "vitals": (Analyte.HEIGHT.value, Analyte.WEIGHT.value),
    # ECG.
    "ecg": (Analyte.QTC.value,),
    # Disease assessment and status (C-5, E-2, P-1).
    "disease": (Analyte.MARROW_BLASTS.value, Analyte.CD22.value, Analyte.MRD.value,
                "disease-response", "pregnancy-status", "breastfeeding-status"),
}
_COUNTS = {"labs": 200, "cbc": 100, "vitals": 20, "ecg": 20, "disease": 50}


def _codes(value_sets: tuple[str, ...]) -> str:
    idx = terminology()
    seen: list[str] = []
    for vs in value_sets:
        for system, code in idx.codes(vs, LOINC):
            token = f"{system}|{code}"
            if token not in seen:
                seen.append(token)
    return ",".join(seen)


def _observation_query(group: str) -> str:
    return f"Observation?patient={_P}&code={_codes(_GROUPS[group])}&_sort=-date&_count={_COUNTS[group]}"


PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": f"Patient/{_P}",
    "labs": _observation_query("labs"),
    "cbc": _observation_query("cbc"),
    "vitals": _observation_query("vitals"),
    "ecg": _observation_query("ecg"),
    "disease": _observation_query("disease"),
    "medicationRequests": f"MedicationRequest?patient={_P}&_count=100",
    "medicationAdministrations": f"MedicationAdministration?patient={_P}&_count=100",
    "conditions": f"Condition?patient={_P}&_count=100",
    "procedures": f"Procedure?patient={_P}&_count=100",
    "serviceRequests": f"ServiceRequest?patient={_P}&_count=100",
    "adverseEvents": f"AdverseEvent?subject={_P}&_count=50",
    "allergies": f"AllergyIntolerance?patient={_P}&_count=50",
    "immunizations": f"Immunization?patient={_P}&_count=50",
}

# The resource type each key reads (for `ClinicalFacts.unavailable` and local re-filtering).
PREFETCH_RESOURCE_TYPES: dict[str, str] = {
    k: v.split("?")[0].split("/")[0] for k, v in PREFETCH_TEMPLATES.items()
}

# Keys without which no dose decision can be made (absent with no fhirServer -> HTTP 412): the
# patient, liver tests (L-2), counts (H-2..H-4), height/weight (BSA, D-5), the doses given (course,
# C-2/C-3) and conditions (VOD L-1, contraindications E-1). The others degrade to obtain-data for
# the rules that need them.
REQUIRED_KEYS: frozenset[str] = frozenset(
    {"patient", "labs", "cbc", "vitals", "medicationAdministrations", "conditions"}
)

# The data domain(s) each key feeds (issue #8): the ONE place a key's read status becomes a
# domain's status (`ClinicalFacts.availability`). A domain fed by several keys takes the worst.
KEY_DOMAINS: dict[str, tuple[Domain, ...]] = {
    "patient": (Domain.PATIENT,),
    "labs": (Domain.LIVER_LABS,),
    "cbc": (Domain.BLOOD_COUNTS,),
    "vitals": (Domain.HEIGHT_WEIGHT,),
    "ecg": (Domain.ECG,),
    "disease": (Domain.DISEASE,),
    "medicationRequests": (Domain.OTHER_MEDICATIONS,),
    "medicationAdministrations": (Domain.ADMINISTRATIONS,),
    "conditions": (Domain.CONDITIONS,),
    "procedures": (Domain.PROCEDURES,),
    "serviceRequests": (Domain.SERVICE_REQUESTS,),
    "adverseEvents": (Domain.REACTIONS,),
    "allergies": (Domain.REACTIONS,),
    "immunizations": (Domain.IMMUNIZATIONS,),
}


def domain_availability(key_status: Mapping[str, DomainStatus]) -> dict[Domain, DomainStatus]:
    """Per-key read status (retrieval) -> per-domain status (facts); unknown keys are ignored."""
    by_domain: dict[Domain, list[tuple[str, DomainStatus]]] = {}
    for key, status in key_status.items():
        for domain in KEY_DOMAINS.get(key, ()):
            by_domain.setdefault(domain, []).append((key, status))
    out = {}
    for domain, pairs in by_domain.items():
        if len(pairs) > 1:  # say which part was not read: "AdverseEvent: FHIR server answered 404"
            pairs = [(k, DomainStatus(s.availability, f"{PREFETCH_RESOURCE_TYPES.get(k, k)}: {s.reason}"
                                      if s.reason else "")) for k, s in pairs]
        out[domain] = worst([s for _, s in pairs])
    return out
