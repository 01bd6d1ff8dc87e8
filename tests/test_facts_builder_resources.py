"""Patient data -> facts: results, conditions, procedures, reactions, medications, doses given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine.facts import Analyte
from app.extensions import TREATMENT_CYCLE_DAY
from app.facts_builder import HISTORY_LOOKBACK_DAYS, build_facts

NOW = datetime(2026, 11, 23, 8, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"


def lab(oid, loinc, value=None, unit=None, t="2026-11-22T07:00:00Z", status="final", high=None,
        patient="p1", **extra):
    r = {"resourceType": "Observation", "id": oid, "status": status,
         "subject": {"reference": f"Patient/{patient}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, "effectiveDateTime": t}
    if value is not None:
        r["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if high is not None:
        r["referenceRange"] = [{"high": high}]
    r.update(extra)
    return r


def facts(*resources, draft=None):
    return build_facts("p1", list(resources), draft, NOW)


def test_umol_bilirubin_and_uln_converted():
    f = facts(lab("b", "14631-6", 36, "umol/L", high={"value": 21, "unit": "umol/L"}))
    (m,) = f.measurements
    assert (m.analyte, m.unit, m.original, m.code) == (
        Analyte.BILIRUBIN, "mg/dL", "36 umol/L", "http://loinc.org|14631-6")
    assert m.value == pytest.approx(36 / 17.104, rel=1e-4)
    assert m.uln == pytest.approx(21 / 17.104, rel=1e-4)
    assert m.value / m.uln == pytest.approx(36 / 21)  # the ratio is unit-free


def test_uln_without_unit_takes_the_value_unit():
    (m,) = facts(lab("a", "1920-8", 2.5, "ukat/L", high={"value": 0.6667})).measurements
    assert (m.value, round(m.uln, 1)) == (150.0, 40.0)


def test_counts_in_k_per_ul_and_cells_per_ul():
    f = facts(lab("n", "751-8", 1.2, "10*3/uL"),
              {**lab("p", "777-3"), "valueQuantity": {"value": 45000, "unit": "cells/uL"}})
    assert {m.analyte: m.value for m in f.measurements} == {Analyte.ANC: 1.2, Analyte.PLATELETS: 45.0}


def test_preliminary_kept_but_flagged_entered_in_error_ignored():
    f = facts(lab("f", "1975-2", 1.0, "mg/dL", t="2026-11-20T07:00:00Z"),
              lab("p", "1975-2", 3.0, "mg/dL", t="2026-11-22T07:00:00Z", status="preliminary"),
              lab("e", "1975-2", 9.0, "mg/dL", t="2026-11-22T08:00:00Z", status="entered-in-error"),
              lab("c", "1975-2", 9.0, "mg/dL", t="2026-11-22T08:00:00Z", status="cancelled"))
    assert [(m.reference, m.status) for m in f.series(Analyte.BILIRUBIN)] == [
        ("Observation/f", "final"), ("Observation/p", "preliminary")]
    assert f.latest(Analyte.BILIRUBIN, NOW).value == 1.0  # preliminary never decisive
    assert f.latest(Analyte.BILIRUBIN, NOW, include_preliminary=True).value == 3.0


def test_comparator_value_string_and_quantity():
    f = facts({**lab("s", "1975-2"), "valueString": "<0.2 mg/dL"},
              lab("q", "1920-8", None, None, valueQuantity={"value": 5, "comparator": "<", "unit": "U/L"}))
    by = {m.analyte: m for m in f.measurements}
    assert (by[Analyte.BILIRUBIN].value, by[Analyte.BILIRUBIN].comparator) == (0.2, "<")
    assert (by[Analyte.AST].value, by[Analyte.AST].comparator) == (5.0, "<")


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ({**lab("x", "1975-2"), "valueString": "<0.2"}, "value '<0.2' has no unit"),
        (lab("x", "1975-2", 2, "mg/ml/h/q"), "unknown unit"),
        (lab("x", "1975-2", 2, "U/L"), "cannot convert 'U/L' to 'mg/dL'"),
        (lab("x", "751-8", 500, "10*3/uL"), "implausible value"),  # codes.md 10.7: cells/uL as 10*3/uL
        ({**lab("x", "1975-2"), "dataAbsentReason": {"coding": [{"code": "error"}]}}, "dataAbsentReason error"),
        ({**lab("x", "1975-2", 1, "mg/dL"), "effectiveDateTime": None}, "no effective date"),
    ],
)
def test_unusable_results_are_problems_never_guesses(resource, reason):
    f = facts(resource)
    assert f.measurements == ()
    (p,) = f.problems
    assert p.reference == "Observation/x" and reason in p.reason


def test_component_values_and_other_patients():
    panel = {"resourceType": "Observation", "id": "ecg", "status": "final",
             "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-22T07:00:00Z",
             "code": {"coding": [{"system": "http://loinc.org", "code": "34534-8"}]},
             "component": [
                 {"code": {"coding": [{"system": "http://loinc.org", "code": "76635-2"}]},
                  "valueQuantity": {"value": 470, "unit": "ms", "system": UCUM, "code": "ms"}},
                 {"code": {"coding": [{"system": "http://loinc.org", "code": "76634-5"}]},
                  "valueQuantity": {"value": 455, "unit": "msec"}}]}
    f = facts(panel, lab("other", "1975-2", 5, "mg/dL", patient="p2"))
    assert sorted((m.method, m.value) for m in f.measurements) == [("QTcB", 470.0), ("QTcF", 455.0)]


def test_old_results_before_the_horizon_keep_only_the_latest_few():
    first_dose = datetime(2026, 10, 1, 9, tzinfo=UTC)
    admin = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
             "subject": {"reference": "Patient/p1"}, "effectiveDateTime": first_dose.isoformat(),
             "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1942950"}]},
             "dosage": {"dose": {"value": 1.36, "unit": "mg"}}}
    days = [(first_dose - timedelta(days=d)) for d in range(0, 400, 10)]
    labs = [lab(f"o{i}", "1975-2", 1.0 + i / 100, "mg/dL", t=t.isoformat()) for i, t in enumerate(days)]
    f = facts(admin, *labs)
    horizon = first_dose - timedelta(days=HISTORY_LOOKBACK_DAYS)
    kept = f.series(Analyte.BILIRUBIN)
    recent = [m for m in kept if m.effective >= horizon]
    older = [m for m in kept if m.effective < horizon]
    assert len(recent) == sum(1 for t in days if t >= horizon)
    assert len(older) == 3
    assert max(m.effective for m in older) == max(t for t in days if t < horizon)


def test_conditions_statuses_and_remission():
    def cond(cid, system, code, clinical="active", ver="confirmed", severity=None):
        c = {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
             "code": {"coding": [{"system": system, "code": code}]},
             "clinicalStatus": {"coding": [{"code": clinical}]},
             "verificationStatus": {"coding": [{"code": ver}]}, "recordedDate": "2026-11-01"}
        if severity:
            c["severity"] = {"coding": [{"system": SCT, "code": severity}]}
        return c

    f = facts(
        cond("vod", SCT, "65617004", severity="24484000"),
        cond("gil", "http://hl7.org/fhir/sid/icd-10-cm", "E80.4", ver="refuted"),
        cond("hep", SCT, "128302006", ver="entered-in-error"),
        cond("all", "http://hl7.org/fhir/sid/icd-10-cm", "C91.00", clinical="remission"),
        cond("flu", SCT, "6142004"),  # influenza: not a concept the rules use
    )
    got = {(c.concept, c.reference, c.severity) for c in f.conditions}
    assert got == {("vod-sos", "Condition/vod", "severe"), ("liver-disease", "Condition/vod", "severe"),
                   ("b-all", "Condition/all", None)}
    assert [(r.response, r.reference) for r in f.responses] == [("remission", "Condition/all")]


def test_pregnancy_status_observation_is_a_pregnancy_fact():
    o = {**lab("preg", "82810-3"), "valueCodeableConcept": {"coding": [{"system": SCT, "code": "77386006"}]}}
    (c,) = facts(o).conditions
    assert (c.concept, c.reference, c.active) == ("pregnancy", "Observation/preg", True)


def test_procedures_service_requests_careplans():
    proc = {"resourceType": "Procedure", "id": "tx", "status": "completed", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": SCT, "code": "12719002"}]}, "performedDateTime": "2026-11-21T10:00:00Z"}
    sr = {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/p1"},
          "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "38240"}]}}
    cp = {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
          "activity": [{"detail": {"status": "scheduled", "code": {"coding": [{"system": SCT, "code": "234336002"}]}}}]}
    eie = {**proc, "id": "eie", "status": "entered-in-error"}
    f = facts(proc, sr, cp, eie)
    assert {(p.concept, p.reference, p.status, p.resource_type) for p in f.procedures} == {
        ("platelet-transfusion", "Procedure/tx", "completed", "Procedure"),
        ("hsct", "ServiceRequest/sr", "active", "ServiceRequest"),
        ("hsct", "CarePlan/cp", "active", "CarePlan"),
    }
    assert next(p for p in f.procedures if p.reference == "Procedure/tx").performed == datetime(
        2026, 11, 21, 10, tzinfo=UTC)


def test_reactions_to_inotuzumab_only():
    ai = {"resourceType": "AllergyIntolerance", "id": "al", "patient": {"reference": "Patient/p1"},
          "code": {"coding": [{"system": RX, "code": "1942950"}]},
          "reaction": [{"severity": "moderate"}, {"severity": "severe"}]}
    ai_other = {**ai, "id": "al2", "code": {"coding": [{"system": RX, "code": "7980"}]}}
    med = {"resourceType": "MedicationAdministration", "id": "ma", "status": "completed",
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-02T09:00:00Z",
           "medicationCodeableConcept": {"text": "Besponsa"}, "dosage": {"dose": {"value": 1.36, "unit": "mg"}}}
    ae = {"resourceType": "AdverseEvent", "id": "ae", "actuality": "actual", "subject": {"reference": "Patient/p1"},
          "event": {"text": "Infusion related reaction"}, "date": "2026-11-02T09:30:00Z",
          "severity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "code": "moderate"}]},
          "extension": [{"url": "http://hl7.org/fhir/us/ae-research/StructureDefinition/ae-grade",
                         "valueCodeableConcept": {"coding": [{"system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "code": "C41337"}]}}],
          "suspectEntity": [{"instance": {"reference": "MedicationAdministration/ma"}}]}
    f = facts(ai, ai_other, med, ae)
    assert {(r.reference, r.kind, r.severity) for r in f.reactions} == {
        ("AllergyIntolerance/al", "hypersensitivity", "severe"),
        ("AdverseEvent/ae", "infusion-reaction", "life-threatening"),  # CTCAE grade 4 wins
    }


def test_doses_given_and_other_medications():
    ext = {"url": TREATMENT_CYCLE_DAY, "extension": [
        {"url": "cycle", "valuePositiveInt": 1}, {"url": "day", "valuePositiveInt": 8}]}

    def admin(aid, status, t, dose, **kw):
        return {"resourceType": "MedicationAdministration", "id": aid, "status": status,
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": t,
                "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1942954"}]},
                "dosage": {"dose": dose, "rateQuantity": {"value": 50, "unit": "mL/h"}}, **kw}

    f = facts(
        admin("d2", "completed", "2026-11-09T09:00:00Z", {"value": 0.5, "unit": "mg/m2"}, extension=[ext]),
        admin("d1", "completed", "2026-11-02T09:00:00Z", {"value": 1.36, "unit": "mg", "system": UCUM, "code": "mg"}),
        admin("nd", "not-done", "2026-11-16T09:00:00Z", {"value": 0.85, "unit": "mg"}),
        admin("ip", "in-progress", "2026-11-16T09:00:00Z", {"value": 0.85, "unit": "mg"}),
        {"resourceType": "MedicationRequest", "id": "dex", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-20T08:00:00Z",
         "medicationCodeableConcept": {"coding": [{"system": RX, "code": "3264"}], "text": "dexamethasone"}},
        {"resourceType": "Immunization", "id": "mmr", "status": "completed", "patient": {"reference": "Patient/p1"},
         "occurrenceDateTime": "2026-11-10", "vaccineCode": {"coding": [{"system": "urn:oid:2.16.840.1.113883.12.292", "code": "03"}]}},
        {"resourceType": "MedicationRequest", "id": "eie", "status": "entered-in-error", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"coding": [{"system": RX, "code": "3264"}]}},
    )
    assert [(d.reference, d.dose_mg, d.dose_mg_per_m2, d.explicit) for d in f.doses_given] == [
        ("MedicationAdministration/d1", 1.36, None, None),
        ("MedicationAdministration/d2", None, 0.5, f.doses_given[1].explicit),
    ]
    assert (f.doses_given[1].explicit.cycle, f.doses_given[1].explicit.day) == (1, 8)
    assert {(m.reference, tuple(m.concepts), m.resource_type) for m in f.medications} == {
        ("MedicationRequest/dex", ("corticosteroid",), "MedicationRequest"),
        ("Immunization/mmr", ("live-vaccine",), "Immunization"),
    }


def test_invalid_resources_are_reported_and_skipped():
    good = lab("g", "1975-2", 1.0, "mg/dL")
    broken_condition = {"resourceType": "Condition", "id": "bad", "subject": {"reference": "Patient/p1"},
                        "code": {"coding": [{"system": SCT, "code": "65617004"}]},
                        "clinicalStatus": {"coding": [{"code": "active"}]}, "severity": 42}
    f = build_facts("p1", [good, "not a resource", {"no": "type"}, broken_condition], None, NOW,
                    unavailable=frozenset({"Procedure"}))
    assert [m.reference for m in f.measurements] == ["Observation/g"]
    assert sum(1 for p in f.problems if p.reason.startswith("invalid resource")) == 2
    assert f.unavailable == {"Procedure"}
    assert {c.concept for c in f.conditions} == {"vod-sos", "liver-disease"}  # bad severity tolerated


def test_problems_from_retrieval_are_carried():
    from app.engine.facts import DataProblem

    p = DataProblem("fhir-server", "FHIR server answered 401")
    f = build_facts("p1", [], None, NOW, problems=[p])
    assert f.problems == (p,)
    assert f.patient.id == "p1" and f.draft is None


def test_disease_response_observation():
    o = {**lab("resp", "97509-4", t="2026-11-20T10:00:00Z"),
         "valueCodeableConcept": {"coding": [{"system": SCT, "code": "103338009"}]}}
    (r,) = facts(o).responses
    assert (r.response, r.reference, r.effective) == (
        "CR", "Observation/resp", datetime(2026, 11, 20, 10, tzinfo=UTC))


def test_marrow_blasts_and_mrd_from_local_value_set(tmp_path, monkeypatch):
    from app.terminology import terminology as load

    extra = tmp_path / "local.csv"
    extra.write_text("value_set,system,code,display,match,status,note\n"
                     "mrd,urn:local:lab,MRD-FLOW,MRD by flow,exact,UNVERIFIED,local code\n")
    idx = load(extra_file=str(extra))
    assert idx.value_sets_of({"coding": [{"system": "urn:local:lab", "code": "MRD-FLOW"}]}) == {"mrd"}
    import app.facts_builder as fb

    monkeypatch.setattr(fb, "terminology", lambda: idx)
    mrd = {**lab("mrd", "0"), "code": {"coding": [{"system": "urn:local:lab", "code": "MRD-FLOW"}]},
           "valueQuantity": {"value": 0.01, "unit": "%"}}
    f = facts(lab("bm", "11150-0", 3, "%"), mrd)
    assert sorted((m.analyte.value, m.value, m.unit) for m in f.measurements) == [
        ("marrow-blasts", 3.0, "%"), ("mrd", 1e-4, "1")]  # MRD 0.01 % = 1e-4 (C-5 threshold)


@pytest.mark.parametrize(
    "junk",
    [
        {"valueQuantity": {"value": 1, "unit": {"not": "a string"}}},
        {"valueQuantity": {"value": 1, "unit": "mg/dL"}, "referenceRange": [{"high": {"value": 1.2, "unit": ["x"]}}]},
        {"effectiveDateTime": 20261122},
    ],
)
def test_malformed_observation_fields_never_break_the_build(junk):
    bad = {**lab("bad", "1975-2", 2, "mg/dL"), **junk}
    f = facts(bad, lab("good", "1920-8", 30, "U/L"))
    assert [m.reference for m in f.measurements if m.analyte == Analyte.AST] == ["Observation/good"]
    # The bad one is either used (its bad part dropped) or reported; never silently lost.
    assert any(m.reference == "Observation/bad" for m in f.measurements) or any(
        p.reference == "Observation/bad" for p in f.problems)


def test_malformed_range_unit_drops_only_the_uln():
    bad = {**lab("b", "1975-2", 2, "mg/dL"), "referenceRange": [{"high": {"value": 1.2, "unit": ["x"]}}]}
    (m,) = facts(bad).measurements
    assert (m.value, m.uln) == (2.0, None)


def test_unreadable_code_is_not_one_of_our_results():
    bad = {**lab("bad", "1975-2", 2, "mg/dL"),
           "code": {"coding": [{"system": "http://loinc.org", "code": ["1975-2"]}, "junk"]}}
    f = facts(bad, lab("good", "1920-8", 30, "U/L"))
    assert [m.reference for m in f.measurements] == ["Observation/good"]
