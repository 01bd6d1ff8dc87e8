"""Writes the demo patients (app/demo/data/*.json) and example requests (app/demo/requests/).

Run `python -m app.demo._generate` after editing a patient here; the JSON files are what ships.
Dates in the data are tokens: "${date-7}" is the UTC date 7 days before the moment the embedded
server loads the data (see app.demo.load_demo_resources). The draft orders carry no date, so their
dose date is the request time (clinical-rules section 0) and the request files work on any day.

All names are fake; all patients are synthetic. Doses: mg = mg/m2 x BSA (Mosteller,
sqrt(height cm x weight kg / 3600)), rounded to 0.01 mg.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
FHIR_SERVER = "http://127.0.0.1:8080/fhir"

DRUG = {
    "coding": [{"system": RXNORM, "code": "1942950", "display": "inotuzumab ozogamicin"}],
    "text": "BESPONSA (inotuzumab ozogamicin)",
}

# analyte -> (LOINC, display, UCUM unit, low, high, category)
LABS: dict[str, tuple[str, str, str, float | None, float | None, str]] = {
    "bili": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.2, 1.2, "laboratory"),
    "ast": ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 10, 40, "laboratory"),
    "alt": ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 7, 40, "laboratory"),
    "alp": ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 40, 120, "laboratory"),
    "anc": ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*9/L", 1.5, 7.0, "laboratory"),
    "plt": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*9/L", 150, 400, "laboratory"),
    "k": ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, "laboratory"),
    "mg": ("2601-3", "Magnesium [Moles/volume] in Serum or Plasma", "mmol/L", 0.70, 1.05, "laboratory"),
    "ca": ("2000-8", "Calcium [Moles/volume] in Serum or Plasma", "mmol/L", 2.15, 2.55, "laboratory"),
    "cd22": ("14017-8", "CD22 cells/100 cells in Blood", "%", None, None, "laboratory"),
    "pblasts": ("30376-8", "Blasts [#/volume] in Blood", "10*9/L", None, None, "laboratory"),
    "mblasts": ("11150-0", "Blasts/100 cells in Bone marrow", "%", None, None, "laboratory"),
    "qtcf": ("76634-5", "Q-T interval corrected by Fridericia formula", "ms", None, 450, "procedure"),
    "height": ("8302-2", "Body height", "cm", None, None, "vital-signs"),
    "weight": ("29463-7", "Body weight", "kg", None, None, "vital-signs"),
}

NORMAL_PANEL = {"bili": 0.6, "ast": 24, "alt": 21, "alp": 82, "anc": 2.6, "plt": 165}


def at(day: int, time: str = "07:30:00Z") -> str:
    return f"${{date{day:+d}}}T{time}"


def bsa(height: float, weight: float) -> float:
    return math.sqrt(height * weight / 3600)


class PatientBuilder:
    def __init__(self, pid: str, family: str, given: str, gender: str, birth: str, height: float, weight: float):
        self.pid, self.height, self.weight = pid, height, weight
        self.bsa = bsa(height, weight)
        self.resources: list[dict[str, Any]] = [
            {
                "resourceType": "Patient",
                "id": pid,
                "meta": {"tag": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST", "display": "test health data"}]},
                "identifier": [{"system": "https://besponsa-cds.org/demo/mrn", "value": pid.upper()}],
                "name": [{"use": "official", "family": family, "given": [given]}],
                "gender": gender,
                "birthDate": birth,
            }
        ]
        self.obs("height", height, -60, "base")
        self.obs("weight", weight, -1, "now")
        self.condition("b-all", [(SNOMED, "277571004", "B-cell acute lymphoblastic leukemia (disorder)"), (ICD10, "C91.02", "Acute lymphoblastic leukemia, in relapse")], -150)

    @property
    def ref(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def mg(self, mg_per_m2: float) -> float:
        return round(mg_per_m2 * self.bsa, 2)

    def obs(self, analyte: str, value: float, day: int, tag: str, *, time: str = "07:30:00Z", value_code: tuple[str, str, str] | None = None) -> None:
        code, display, unit, low, high, category = LABS.get(analyte, ("", "", "", None, None, ""))
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"{self.pid}-{analyte}-{tag}",
            "status": "final",
            "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": self.ref,
            "effectiveDateTime": at(day, time),
            "issued": at(day, "09:00:00Z"),
        }
        if value_code:
            resource["valueCodeableConcept"] = {"coding": [{"system": value_code[0], "code": value_code[1], "display": value_code[2]}]}
        else:
            resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        if low is not None or high is not None:
            rr: dict[str, Any] = {}
            if low is not None:
                rr["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
            if high is not None:
                rr["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
            resource["referenceRange"] = [rr]
        self.resources.append(resource)

    def panel(self, day: int, tag: str, **values: float) -> None:
        """Liver tests and CBC (E-5): bilirubin, AST, ALT, ALP, ANC, platelets."""
        for analyte, default in NORMAL_PANEL.items():
            self.obs(analyte, values.get(analyte, default), day, tag)

    def workup(self, day: int = -8) -> None:
        """Pre-cycle-1 work-up: CD22 (E-2), ECG and electrolytes (Q-1), blasts (E-3), marrow."""
        self.obs("cd22", 94, day - 6, "base")
        self.obs("mblasts", 46, day - 6, "base")
        self.obs("pblasts", 1.2, day, "base")
        self.obs("qtcf", 418, day, "base")
        self.obs("k", 4.1, day, "base")
        self.obs("mg", 0.85, day, "base")
        self.obs("ca", 2.34, day, "base")

    def premedication(self, day: int = -1) -> None:
        """E-4: corticosteroid, antipyretic and antihistamine ordered for the dose."""
        for code, name in (("3264", "dexamethasone"), ("161", "acetaminophen"), ("3498", "diphenhydramine")):
            self.medication_request(f"premed-{name}", (RXNORM, code, name), day, f"{name} before each inotuzumab ozogamicin infusion")

    def medication_request(self, tag: str, coding: tuple[str, str, str], day: int, text: str, status: str = "active") -> None:
        self.resources.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{self.pid}-{tag}",
                "status": status,
                "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": coding[0], "code": coding[1], "display": coding[2]}], "text": coding[2]},
                "subject": self.ref,
                "authoredOn": f"${{date{day:+d}}}",
                "dosageInstruction": [{"text": text}],
            }
        )

    def planned_first_dose(self) -> None:
        """An active inotuzumab ozogamicin order with no administration yet (patient-view: the
        first dose is due)."""
        self.medication_request("ino-plan", (RXNORM, "1942950", "inotuzumab ozogamicin"), -1,
                                f"{self.mg(0.8)} mg (0.8 mg/m2) IV over 1 hour, cycle 1 day 1")

    def dose(self, tag: str, day: int, mg_per_m2: float) -> None:
        """A completed inotuzumab ozogamicin infusion (midnight UTC, so day arithmetic is exact)."""
        mg = self.mg(mg_per_m2)
        self.resources.append(
            {
                "resourceType": "MedicationAdministration",
                "id": f"{self.pid}-ino-{tag}",
                "status": "completed",
                "medicationCodeableConcept": DRUG,
                "subject": self.ref,
                "effectivePeriod": {"start": at(day, "00:00:00Z"), "end": at(day, "01:00:00Z")},
                "dosage": {
                    "text": f"{mg_per_m2} mg/m2 x {self.bsa:.2f} m2 IV over 1 hour",
                    "route": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]},
                    "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"},
                },
            }
        )

    def condition(self, tag: str, codes: list[tuple[str, str, str]], day: int, clinical: str = "active") -> None:
        self.resources.append(
            {
                "resourceType": "Condition",
                "id": f"{self.pid}-{tag}",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codes], "text": codes[0][2]},
                "subject": self.ref,
                "onsetDateTime": at(day, "12:00:00Z"),
                "recordedDate": at(day, "12:00:00Z"),
            }
        )

    def set_condition_status(self, tag: str, clinical: str, codes: list[tuple[str, str, str]]) -> None:
        for r in self.resources:
            if r["id"] == f"{self.pid}-{tag}":
                r["clinicalStatus"]["coding"][0]["code"] = clinical
                r["code"] = {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codes], "text": codes[0][2]}

    def draft(self, mg_per_m2: float, label: str, extra_orders: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The order-sign request: a draft inotuzumab ozogamicin order with no date (dose date = now)."""
        mg = self.mg(mg_per_m2)
        order = {
            "resourceType": "MedicationRequest",
            "id": f"{self.pid}-draft",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": DRUG,
            "subject": self.ref,
            "dosageInstruction": [
                {
                    "text": f"{mg} mg ({mg_per_m2} mg/m2 x {self.bsa:.2f} m2) IV over 1 hour, {label}",
                    "route": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]},
                    "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}],
                }
            ],
        }
        entries = [{"resource": order}] + [{"resource": o} for o in extra_orders or []]
        return {
            "hookInstance": "",
            "hook": "order-sign",
            "fhirServer": FHIR_SERVER,
            "context": {
                "userId": "Practitioner/demo-haematologist",
                "patientId": self.pid,
                "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": entries},
            },
        }


def patients() -> list[tuple[PatientBuilder, dict[str, Any]]]:
    out: list[tuple[PatientBuilder, dict[str, Any]]] = []

    # 1. Clean cycle 1 Day 1: everything in order -> proceed (D-1 0.8 mg/m2).
    p = PatientBuilder("demo-clean", "Testperson", "Clara", "female", "1964-05-02", 175, 68)
    p.workup(-8)
    p.panel(-8, "base")
    p.panel(-1, "now")
    p.premedication()
    p.planned_first_dose()
    out.append((p, p.draft(0.8, "cycle 1 day 1")))

    # 2. Hepatic hold before Day 8: bilirubin 2.1 mg/dL (ULN 1.2, 1.75x), AST 128 U/L (ULN 40, 3.2x) -> L-2 hold.
    p = PatientBuilder("demo-hepatic", "Testperson", "Hedda", "female", "1968-09-17", 162, 64)
    p.workup(-9)
    p.panel(-8, "base")
    p.dose("c1d1", -7, 0.8)
    p.panel(-1, "now", bili=2.1, ast=128, alt=88, alp=110, anc=1.2, plt=80)
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 1 day 8")))

    # 3. Wrong dose on Day 8: 0.8 mg/m2 ordered where D-1 says 0.5 mg/m2 -> correct-dose (D-4).
    p = PatientBuilder("demo-wrong-dose", "Testperson", "Walter", "male", "1981-02-11", 165, 60)
    p.workup(-9)
    p.panel(-8, "base")
    p.dose("c1d1", -7, 0.8)
    p.panel(-1, "now", anc=1.9, plt=140)
    p.premedication()
    out.append((p, p.draft(0.8, "cycle 1 day 8")))

    # 4. Course: three full cycles without CR/CRi, cycle 4 Day 1 ordered -> discontinue (D-8).
    p = PatientBuilder("demo-no-response", "Testperson", "Norbert", "male", "1963-07-30", 180, 80)
    p.workup(-79)
    p.panel(-78, "base")
    for cycle, start in ((1, -77), (2, -56), (3, -28)):
        p.dose(f"c{cycle}d1", start, 0.8)
        p.dose(f"c{cycle}d8", start + 7, 0.5)
        p.dose(f"c{cycle}d15", start + 14, 0.5)
        if cycle > 1:
            p.panel(start - 1, f"c{cycle}d1")
    p.obs("mblasts", 35, -30, "c2")
    p.obs("mblasts", 41, -3, "c3")
    p.panel(-1, "now", anc=1.6, plt=110)
    p.premedication()
    out.append((p, p.draft(0.8, "cycle 4 day 1")))

    # 5. Haematological, cycle 2 Day 1: baseline ANC 1.8 -> now 0.6 x10^9/L -> hold (H-2).
    p = PatientBuilder("demo-neutropenia", "Testperson", "Nils", "male", "1988-03-08", 170, 72)
    p.workup(-23)
    p.panel(-22, "base", anc=1.8, plt=120)
    p.dose("c1d1", -21, 0.8)
    p.dose("c1d8", -14, 0.5)
    p.dose("c1d15", -7, 0.5)
    p.obs("mblasts", 22, -3, "c1end")
    p.panel(-1, "now", anc=0.6, plt=95)
    p.premedication()
    out.append((p, p.draft(0.8, "cycle 2 day 1")))

    # 6. Hepatic VOD/SOS diagnosed after Day 8 -> discontinue (L-1), critical.
    p = PatientBuilder("demo-vod", "Testperson", "Vera", "female", "1977-12-01", 168, 58)
    p.workup(-16)
    p.panel(-15, "base")
    p.dose("c1d1", -14, 0.8)
    p.dose("c1d8", -7, 0.5)
    p.condition("vod", [(SNOMED, "65617004", "Veno-occlusive disease of the liver"), (ICD10, "K76.5", "Hepatic veno-occlusive disease")], -2)
    p.panel(-1, "now", bili=2.8, ast=65, alt=70, alp=150, anc=1.4, plt=60)
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 1 day 15")))

    # 7. Infusion-related reaction (moderate) at cycle 1 Day 1 -> caution before Day 8 (I-1).
    p = PatientBuilder("demo-infusion-reaction", "Testperson", "Ingo", "male", "1971-06-19", 178, 85)
    p.workup(-9)
    p.panel(-8, "base")
    p.dose("c1d1", -7, 0.8)
    p.resources.append(
        {
            "resourceType": "AdverseEvent",
            "id": f"{p.pid}-irr-c1d1",
            "actuality": "actual",
            "event": {"coding": [{"system": ICD10, "code": "T80.89XA", "display": "Other complications following infusion, transfusion and therapeutic injection, initial encounter"}], "text": "Infusion-related reaction (chills, fever) during inotuzumab ozogamicin"},
            "subject": p.ref,
            "date": at(-7, "00:40:00Z"),
            "seriousness": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", "code": "non-serious"}]},
            "severity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "code": "moderate", "display": "Moderate"}]},
            "suspectEntity": [{"instance": {"reference": f"MedicationAdministration/{p.pid}-ino-c1d1"}}],
        }
    )
    p.panel(-1, "now", anc=1.7, plt=130)
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 1 day 8")))

    # 8. Interruption: cycle 2 Day 1 planned 14 days ago (Day 22), delayed by neutropenia -> reduce-dose (T-3).
    p = PatientBuilder("demo-interruption", "Testperson", "Ida", "female", "1960-04-25", 160, 55)
    p.workup(-37)
    p.panel(-36, "base", anc=1.9, plt=140)
    p.dose("c1d1", -35, 0.8)
    p.dose("c1d8", -28, 0.5)
    p.dose("c1d15", -21, 0.5)
    p.panel(-15, "delay", anc=0.5, plt=90)
    p.obs("mblasts", 12, -15, "c1end")
    p.panel(-1, "now", anc=1.6, plt=110)
    p.premedication()
    out.append((p, p.draft(0.8, "cycle 2 day 1")))

    # 9. Eligibility: newest liver tests and CBC predate the cycle 1 Day 1 dose -> obtain-data (E-5).
    p = PatientBuilder("demo-stale-labs", "Testperson", "Stefan", "male", "1985-10-14", 172, 70)
    p.workup(-10)
    p.panel(-10, "base")
    p.dose("c1d1", -7, 0.8)
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 1 day 8")))

    # 10. QT: active ondansetron (QT-prolonging) beside the Day 8 dose -> caution.
    p = PatientBuilder("demo-qt", "Testperson", "Quentin", "male", "1966-01-09", 176, 74)
    p.workup(-9)
    p.panel(-8, "base")
    p.dose("c1d1", -7, 0.8)
    # coded as an EHR sends it: the clinical drug (SCD 198052), not the ingredient (26225)
    p.medication_request("ondansetron", (RXNORM, "198052", "ondansetron 4 MG Oral Tablet"), -7, "8 mg orally every 8 hours as needed for nausea")
    p.obs("qtcf", 446, -1, "now")
    p.panel(-1, "now")
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 1 day 8")))

    # 11. HSCT planned, CR after cycle 1, age 67, cycle 3 Day 1 ordered -> caution (D-7, V-1: VOD risk).
    p = PatientBuilder("demo-hsct-cycle3", "Testperson", "Hanna", "female", "1959-08-03", 158, 62)
    p.workup(-58)
    p.panel(-57, "base")
    p.dose("c1d1", -56, 0.8)
    p.dose("c1d8", -49, 0.5)
    p.dose("c1d15", -42, 0.5)
    p.obs("mblasts", 2, -31, "c1end")
    p.obs("pblasts", 0, -31, "c1end")  # C-5 (c): no peripheral blasts; ANC 1.5, platelets 120 -> CR
    p.panel(-29, "c2d1", anc=1.5, plt=120)
    p.dose("c2d1", -28, 0.5)
    p.dose("c2d8", -21, 0.5)
    p.dose("c2d15", -14, 0.5)
    p.set_condition_status("b-all", "remission", [(SNOMED, "277571004", "B-cell acute lymphoblastic leukemia (disorder)"), (ICD10, "C91.01", "Acute lymphoblastic leukemia, in remission")])
    p.condition("awaiting-hsct", [(SNOMED, "698303004", "Awaiting transplantation of bone marrow (situation)")], -30)
    p.resources.append(
        {
            "resourceType": "Procedure",
            "id": f"{p.pid}-hsct-planned",
            "status": "preparation",
            "code": {"coding": [{"system": SNOMED, "code": "234336002", "display": "Hemopoietic stem cell transplant (procedure)"}], "text": "Allogeneic HSCT (planned)"},
            "subject": p.ref,
            "performedDateTime": at(30, "08:00:00Z"),
        }
    )
    p.panel(-1, "now", anc=1.8, plt=135)
    p.premedication()
    out.append((p, p.draft(0.5, "cycle 3 day 1")))

    # 12. Pregnancy recorded before cycle 1 Day 1 -> caution, critical (P-1).
    p = PatientBuilder("demo-pregnancy", "Testperson", "Paula", "female", "1997-03-21", 165, 58)
    p.workup(-8)
    p.panel(-8, "base")
    p.condition("pregnancy", [(SNOMED, "77386006", "Pregnancy (finding)"), (ICD10, "Z33.1", "Pregnant state, incidental")], -3)
    p.obs("pregnancy-status", 0, -3, "now", value_code=(SNOMED, "77386006", "Pregnant"))
    p.panel(-1, "now")
    p.premedication()
    p.planned_first_dose()
    out.append((p, p.draft(0.8, "cycle 1 day 1")))

    # 13. Live vaccine (varicella) ordered with the Day 8 dose -> caution (P-2).
    p = PatientBuilder("demo-live-vaccine", "Testperson", "Lars", "male", "1992-11-30", 182, 77)
    p.workup(-9)
    p.panel(-8, "base")
    p.dose("c1d1", -7, 0.8)
    p.panel(-1, "now")
    p.premedication()
    vaccine = {
        "resourceType": "MedicationRequest",
        "id": f"{p.pid}-draft-varicella",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": CVX, "code": "21", "display": "varicella"}], "text": "Varicella vaccine, live"},
        "subject": p.ref,
        "dosageInstruction": [{"text": "0.5 mL subcutaneously once"}],
    }
    # On the chart (patient-view): the same vaccine already ordered at the travel clinic.
    p.medication_request("varicella", (CVX, "21", "varicella"), -1, "Varicella vaccine, live: 0.5 mL subcutaneously once")
    out.append((p, p.draft(0.5, "cycle 1 day 8", [vaccine])))
    return out


# Pregnancy status observation: LABS entry added here to keep the table above to numeric results.
LABS["pregnancy-status"] = ("82810-3", "Pregnancy status", "", None, None, "social-history")


def main() -> None:
    data_dir, req_dir = HERE / "data", HERE / "requests"
    data_dir.mkdir(exist_ok=True)
    req_dir.mkdir(exist_ok=True)
    for i, (p, request) in enumerate(patients(), start=1):
        (data_dir / f"{p.pid}.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in p.resources]}, indent=1) + "\n")
        request["hookInstance"] = f"d1577c69-dfbe-44ad-ba6d-{i:012d}"
        name = p.pid.removeprefix("demo-")
        (req_dir / f"{name}-order-sign.json").write_text(json.dumps(request, indent=2) + "\n")
        view = {  # patient-view: the next due dose (app.engine.next_dose)
            "hookInstance": f"d1577c69-dfbe-44ad-ba6d-{100000000000 + i:012d}",
            "hook": "patient-view",
            "fhirServer": FHIR_SERVER,
            "context": {"userId": "Practitioner/demo-haematologist", "patientId": p.pid},
        }
        (req_dir / f"{name}-patient-view.json").write_text(json.dumps(view, indent=2) + "\n")
        print(f"{p.pid}: {len(p.resources)} resources, BSA {p.bsa:.3f} m2")


if __name__ == "__main__":
    main()
