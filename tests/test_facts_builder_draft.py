"""Draft inotuzumab ozogamicin orders: strict and tolerant reading, dose units, dose date, C-1."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from app.extensions import TREATMENT_CYCLE_DAY
from app.facts_builder import build_facts, summarize_draft_orders

NOW = datetime(2026, 11, 23, 8, tzinfo=UTC)
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


def order(dose=None, *, rid="mr1", timing=None, authored="2026-11-22T16:00:00Z", **extra):
    r = {
        "resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "authoredOn": authored,
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1942954"}]},
        "dosageInstruction": [{
            "timing": timing if timing is not None else {"event": ["2026-11-24T09:00:00Z"]},
            "doseAndRate": [{"doseQuantity": dose if dose is not None else
                             {"value": 0.5, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}}],
        }],
    }
    if authored is None:
        del r["authoredOn"]
    r.update(extra)
    return r


def bundle(*resources, type_="collection"):
    b = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    if type_:
        b["type"] = type_
    return b


def draft_of(*resources, **kw):
    return build_facts("p1", [], bundle(*resources), NOW, **kw).draft


def test_strict_order_mg_per_m2():
    d = draft_of(order())
    assert (d.reference, d.dose_mg_per_m2, d.dose_mg, d.status) == ("MedicationRequest/mr1", 0.5, None, "draft")
    assert d.read_tolerantly is False
    assert d.dose_date == datetime(2026, 11, 24, 9, tzinfo=UTC)
    assert d.problems == ()


def test_dose_in_mg():
    d = draft_of(order({"value": 1.36, "unit": "mg", "system": UCUM, "code": "mg"}))
    assert (d.dose_mg, d.dose_mg_per_m2) == (1.36, None)


def test_dose_in_micrograms_is_converted():
    d = draft_of(order({"value": 850, "unit": "mcg", "system": UCUM, "code": "ug"}))
    assert d.dose_mg == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("dose", "problem"),
    [
        ({"value": 0.5}, "dose has no unit"),
        ({"value": 2, "unit": "mL", "system": UCUM, "code": "mL"}, "dose unit 'mL' is neither mg nor mg/m2"),
        ({"unit": "mg"}, "dose has no numeric value"),
    ],
)
def test_unusable_dose_is_a_problem_not_a_guess(dose, problem):
    d = draft_of(order(dose))
    assert d.dose_mg is None and d.dose_mg_per_m2 is None
    assert d.problems == (problem,)


def test_sandbox_shaped_order_is_read_tolerantly():
    # CDS Hooks sandbox: no intent (Rx View), category as an object (Rx Sign), Bundle without type.
    o = order(category={"coding": [{"code": "outpatient"}]})
    del o["intent"]
    facts = build_facts("p1", [], bundle(o, type_=None), NOW)
    d = facts.draft
    assert d.read_tolerantly is True
    assert d.dose_mg_per_m2 == 0.5
    assert d.dose_date == datetime(2026, 11, 24, 9, tzinfo=UTC)


def test_unknown_keys_fail_strict_but_still_checked():
    d = draft_of(order(vendorSpecificThing={"x": 1}))
    assert d.read_tolerantly is True and d.dose_mg_per_m2 == 0.5


@pytest.mark.parametrize(
    ("timing", "authored", "expected"),
    [
        ({"event": ["2026-11-24T09:00:00Z"]}, "2026-11-22T16:00:00Z", datetime(2026, 11, 24, 9, tzinfo=UTC)),
        ({"repeat": {"boundsPeriod": {"start": "2026-11-25T10:00:00Z"}}}, "2026-11-22T16:00:00Z",
         datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ({}, "2026-11-22T16:00:00Z", datetime(2026, 11, 22, 16, tzinfo=UTC)),
        ({}, None, NOW),
    ],
)
def test_dose_date_order_of_precedence(timing, authored, expected):
    # clinical-rules section 0: timing.event[0], boundsPeriod.start, authoredOn, now.
    assert draft_of(order(timing=timing, authored=authored)).dose_date == expected


def test_cycle_day_extension_c1():
    ext = {"url": TREATMENT_CYCLE_DAY, "extension": [
        {"url": "cycle", "valuePositiveInt": 2}, {"url": "day", "valuePositiveInt": 8}]}
    d = draft_of(order(extension=[ext]))
    assert (d.explicit.cycle, d.explicit.day) == (2, 8)
    assert d.read_tolerantly is False


def test_broken_cycle_day_extension_is_a_problem():
    ext = {"url": TREATMENT_CYCLE_DAY, "extension": [{"url": "cycle", "valuePositiveInt": 2}]}
    d = draft_of(order(extension=[ext]))
    assert d.explicit is None
    assert d.problems == ("treatment-cycle-day extension without a positive cycle and day",)


def test_selection_picks_the_order_and_others_become_other_orders():
    a, b = order(rid="a"), order(rid="b")
    ondansetron = {"resourceType": "MedicationRequest", "id": "q1", "status": "draft", "intent": "order",
                   "subject": {"reference": "Patient/p1"},
                   "medicationCodeableConcept": {"coding": [{"system": RX, "code": "26225"}], "text": "ondansetron"}}
    facts = build_facts("p1", [], bundle(a, b, ondansetron), NOW, selections=["MedicationRequest/b"])
    assert facts.draft.reference == "MedicationRequest/b"
    assert [(o.reference, set(o.concepts)) for o in facts.other_orders] == [
        ("MedicationRequest/q1", {"qt-prolonging"})]
    assert any("2 inotuzumab ozogamicin orders" in p.reason for p in facts.problems)


def test_medication_reference_to_bundle_entry():
    med = {"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RX, "code": "1942959"}]}}
    o = order()
    del o["medicationCodeableConcept"]
    o["medicationReference"] = {"reference": "Medication/m1"}
    assert draft_of(o, med).dose_mg_per_m2 == 0.5


def test_summary_is_cheap_and_finds_the_drug_and_classes():
    live = {"resourceType": "Immunization", "id": "i1", "status": "not-done",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03"}]}}
    s = summarize_draft_orders(bundle(order(), live))
    assert s.inotuzumab_orders == ("MedicationRequest/mr1",)
    assert s.other_concepts == {"live-vaccine"}
    assert s.relevant
    other = copy.deepcopy(order())
    other["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": "3264"}]}
    s2 = summarize_draft_orders(bundle(other))
    assert s2.inotuzumab_orders == () and s2.other_concepts == {"corticosteroid"} and not s2.relevant
    bad = summarize_draft_orders({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]})
    assert bad.problems == ("draftOrders.entry[0] has no resource",) and not bad.relevant
    assert summarize_draft_orders(None).relevant is False
