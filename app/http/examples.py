"""Request and response examples for the OpenAPI document (realistic, label numbers)."""

from __future__ import annotations

from typing import Any

from app.http.errors import INTERNAL_ERROR
from app.http.limits import too_large_body
from app.settings import Settings

_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# Demo patient demo-clean: 175 cm, 68 kg -> BSA (Mosteller) sqrt(175 x 68 / 3600) = 1.82 m2.
# Cycle 1 Day 1: 0.8 mg/m2 (SmPC 4.2 Table 1) x 1.818 m2 = 1.45 mg; 2 x 1 mg vials (EU) at 0.25 mg/mL.
_DRAFT_ORDER: dict[str, Any] = {
    "resourceType": "MedicationRequest",
    "id": "demo-clean-draft",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {"system": _RXNORM, "code": "1942950", "display": "inotuzumab ozogamicin"}
        ],
        "text": "BESPONSA (inotuzumab ozogamicin)",
    },
    "subject": {"reference": "Patient/demo-clean"},
    "authoredOn": "2026-11-23",
    "dosageInstruction": [
        {
            "text": "0.8 mg/m2 IV over 1 hour, cycle 1 day 1",
            "timing": {"event": ["2026-11-23"]},
            "route": {"text": "intravenous"},
            "doseAndRate": [
                {"doseQuantity": {"value": 1.45, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
            ],
        }
    ],
}

_DRAFT_BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _DRAFT_ORDER}]}

_BASE = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://127.0.0.1:8080/fhir",
}

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "order-sign": {
        "summary": "order-sign: a draft BESPONSA order; data fetched from fhirServer",
        "value": {
            **_BASE,
            "hook": "order-sign",
            "context": {
                "userId": "Practitioner/demo-haematologist",
                "patientId": "demo-clean",
                "draftOrders": _DRAFT_BUNDLE,
            },
        },
    },
    "order-select": {
        "summary": "order-select: the selected draft order, with a prefetched Patient",
        "value": {
            **_BASE,
            "hook": "order-select",
            "context": {
                "userId": "Practitioner/demo-haematologist",
                "patientId": "demo-clean",
                "selections": ["MedicationRequest/demo-clean-draft"],
                "draftOrders": _DRAFT_BUNDLE,
            },
            "prefetch": {
                "patient": {
                    "resourceType": "Patient",
                    "id": "demo-clean",
                    "gender": "female",
                    "birthDate": "1979-04-02",
                },
                "procedures": None,
            },
        },
    },
    "patient-view": {
        "summary": "patient-view: what the next dose requires",
        "value": {
            **_BASE,
            "hook": "patient-view",
            "fhirAuthorization": {
                "access_token": "eyJhbGciOi...",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/Patient.read patient/Observation.read patient/MedicationRequest.read",
                "subject": "besponsa-cds",
            },
            "context": {"userId": "Practitioner/demo-haematologist", "patientId": "demo-clean"},
        },
    },
}

_SOURCE = {"label": "BESPONSA SmPC (EU) via besponsa-cds"}

RESPONSE_EXAMPLES: dict[str, dict[str, Any]] = {
    "proceed": {
        "summary": "order-sign, demo-clean: the proceed card with dose, BSA and preparation",
        "value": {
            "cards": [
                {
                    "uuid": "5f0c2a0e-3f7b-4c8e-9a55-1c2b7f6f9b10",
                    "summary": "Proceed: 0.8 mg/m2 x BSA 1.82 m2 = 1.45 mg, Cycle 1 Day 1; 2 x 1 mg vials, 5.8 mL",
                    "indicator": "info",
                    "detail": (
                        "Cycle 1 Day 1: **0.8 mg/m2** (SmPC 4.2 Table 1). BSA 1.82 m2 (Mosteller, "
                        "height 175 cm, weight 68 kg). Dose **1.45 mg**: 2 vials of 1 mg, "
                        "reconstituted to 0.25 mg/mL, withdraw 5.8 mL; dilute to 50 mL (SmPC 6.6)."
                    ),
                    "source": _SOURCE,
                    "extension": {
                        "besponsa-cds": {
                            "decision": "proceed",
                            "rules": ["D-1", "D-4", "D-5", "R-1"],
                            "citations": ["SmPC 4.2 Table 1", "SmPC 6.6"],
                            "label": "EU",
                            "evidence": [
                                {"concept": "height", "reference": "Observation/demo-clean-height", "value": 175, "unit": "cm", "date": "2026-11-20"},
                                {"concept": "weight", "reference": "Observation/demo-clean-weight", "value": 68, "unit": "kg", "date": "2026-11-20"},
                            ],
                        }
                    },
                }
            ]
        },
    },
    "hepatic-hold": {
        "summary": "order-sign, demo-hepatic: hold for bilirubin > 1.5 x ULN with AST > 2.5 x ULN (L-2)",
        "value": {
            "cards": [
                {
                    "uuid": "0b9e1f4c-8d2a-4d7e-b1f3-6a2c9e4d7f21",
                    "summary": "Hold dose: bilirubin 2.1 mg/dL (1.8x ULN) with AST 3.2x ULN",
                    "indicator": "warning",
                    "detail": (
                        "| lab | value | ULN | x ULN | date |\n|---|---|---|---|---|\n"
                        "| total bilirubin | 2.1 mg/dL | 1.2 | 1.75 | 2026-11-22 |\n"
                        "| AST | 128 U/L | 40 | 3.20 | 2026-11-22 |\n\n"
                        "Interrupt dosing until bilirubin <= 1.5 x ULN and AST/ALT <= 2.5 x ULN; "
                        "discontinue if they do not recover (SmPC 4.2 Table 3, 4.4)."
                    ),
                    "source": _SOURCE,
                    "selectionBehavior": "at-most-one",
                    "suggestions": [
                        {
                            "uuid": "a3c4d5e6-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
                            "label": "Remove the draft BESPONSA order",
                            "actions": [
                                {
                                    "type": "delete",
                                    "description": "Remove the draft order until the liver tests recover",
                                    "resourceId": ["MedicationRequest/demo-hepatic-draft"],
                                }
                            ],
                        }
                    ],
                    "overrideReasons": [
                        {
                            "system": "https://besponsa-cds.org/fhir/CodeSystem/override-reason",
                            "code": "gilbert-or-haemolysis",
                            "display": "Bilirubin rise due to Gilbert's syndrome or haemolysis",
                        }
                    ],
                    "extension": {
                        "besponsa-cds": {
                            "decision": "hold",
                            "rules": ["L-2"],
                            "citations": ["SmPC 4.2 Table 3", "SmPC 4.4"],
                            "label": "EU",
                            "evidence": [
                                {"concept": "bilirubin-total", "reference": "Observation/demo-hepatic-bili-now", "code": "http://loinc.org|1975-2", "value": 2.1, "unit": "mg/dL", "uln": 1.2, "ratio": 1.75, "grade": 2, "date": "2026-11-22"},
                                {"concept": "ast", "reference": "Observation/demo-hepatic-ast-now", "code": "http://loinc.org|1920-8", "value": 128, "unit": "U/L", "uln": 40, "ratio": 3.2, "grade": 2, "date": "2026-11-22"},
                            ],
                        }
                    },
                }
            ]
        },
    },
    "not-relevant": {
        "summary": "an order for another drug: no cards",
        "value": {"cards": []},
    },
}

ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "error": "invalid_request",
        "message": "The context does not follow the order-sign hook.",
        "details": [{"field": "context.patientId", "message": "Field required"}],
    },
    404: {"error": "not_found", "message": "No CDS service 'unknown'. See GET /cds-services."},
    412: {
        "error": "required_data_unavailable",
        "message": "Prefetch 'labs' was not sent and the request has no fhirServer to fetch it from.",
        "keys": ["labs"],
        "details": [{"field": "prefetch.labs", "message": "absent, and no fhirServer"}],
    },
    413: too_large_body(Settings.model_fields["max_body_bytes"].default),
    500: INTERNAL_ERROR,
}
