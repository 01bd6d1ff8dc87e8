"""Observation picking on raw JSON: statuses, value[x], comparators, effective[x], ranges, components."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_mappings.conditions import condition_statuses, condition_usable
from fhir_mappings.dates import effective, parse_datetime
from fhir_mappings.observations import (
    matching_elements,
    parse_value_string,
    read_value,
    reference_limits,
    status_kept,
)
from fhir_mappings.references import ResourceIndex, medication_concept, subject_matches


@pytest.mark.parametrize(
    ("status", "kept"),
    [("final", True), ("amended", True), ("corrected", True), ("preliminary", True),
     ("entered-in-error", False), ("cancelled", False), ("registered", False), ("unknown", False),
     (None, False)],
)
def test_status(status, kept):
    assert status_kept({"status": status}) is kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [("<0.2", ("<", 0.2, "")), ("< 0.2 mg/dL", ("<", 0.2, "mg/dL")), (">=500", (">=", 500.0, "")),
     ("≤5", ("<=", 5.0, "")), ("36 umol/L", (None, 36.0, "umol/L")), ("1,5", (None, 1.5, "")),
     ("positive", None), ("", None)],
)
def test_parse_value_string(text, expected):
    assert parse_value_string(text) == expected


def test_value_quantity_with_comparator():
    v = read_value({"valueQuantity": {"value": 0.2, "comparator": "<", "unit": "mg/dL"}})
    assert (v.value, v.comparator, v.quantity["unit"], v.text) == (0.2, "<", "mg/dL", "<0.2 mg/dL")


def test_value_string_and_absent_value():
    v = read_value({"valueString": "<0.2"})
    assert (v.value, v.comparator, v.quantity) == (0.2, "<", {})
    assert read_value({"valueString": "hemolysed"}).problem == "value 'hemolysed' is not a number"
    dar = read_value({"dataAbsentReason": {"coding": [{"code": "error"}]}})
    assert dar.problem == "no value (dataAbsentReason error)"
    assert read_value({}).problem == "no value"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"effectiveDateTime": "2026-11-22T07:30:00+01:00"}, datetime(2026, 11, 22, 6, 30, tzinfo=UTC)),
        ({"effectiveInstant": "2026-11-22T07:30:00.123Z"}, datetime(2026, 11, 22, 7, 30, 0, 123000, tzinfo=UTC)),
        ({"effectivePeriod": {"start": "2026-11-22T07:00:00Z", "end": "2026-11-22T08:00:00Z"}},
         datetime(2026, 11, 22, 7, tzinfo=UTC)),
        ({"effectiveDateTime": "2026-11-22"}, datetime(2026, 11, 22, tzinfo=UTC)),
        ({"issued": "2026-11-22T09:00:00Z"}, datetime(2026, 11, 22, 9, tzinfo=UTC)),  # fallback
        ({}, None),
    ],
)
def test_effective(resource, expected):
    assert effective(resource) == expected


def test_naive_datetime_is_taken_as_utc():
    assert parse_datetime("2026-11-22T07:30:00") == datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
    assert parse_datetime("not a date") is None


def test_reference_range_prefers_unrestricted_normal_range():
    el = {"referenceRange": [
        {"appliesTo": [{"text": "female"}], "high": {"value": 25}},
        {"type": {"coding": [{"code": "treatment"}]}, "high": {"value": 99}},
        {"low": {"value": 0}, "high": {"value": 40, "unit": "U/L"}},
    ]}
    low, high = reference_limits(el)
    assert (low["value"], high["value"]) == (0, 40)
    assert reference_limits({}) == (None, None)


def test_components_of_a_panel_are_found():
    obs = {"code": {"coding": [{"system": "http://loinc.org", "code": "24325-3"}]},
           "component": [
               {"code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]}, "valueQuantity": {"value": 1}},
               {"code": {"coding": [{"system": "http://loinc.org", "code": "2951-2"}]}, "valueQuantity": {"value": 140}},
           ]}
    found = list(matching_elements(obs, {"http://loinc.org|1975-2"}))
    assert [(k, e["valueQuantity"]["value"]) for k, e in found] == [("http://loinc.org|1975-2", 1)]


@pytest.mark.parametrize(
    ("ref", "ok"),
    [("Patient/p1", True), ("https://ehr.example/fhir/Patient/p1", True),
     ("Patient/p1/_history/3", True), ("Patient/p2", False), (None, True)],
)
def test_subject_filter(ref, ok):
    r = {"resourceType": "Observation"}
    if ref:
        r["subject"] = {"reference": ref}
    assert subject_matches(r, "p1") is ok


def test_medication_reference_resolution():
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "from bundle"}}
    contained = {"resourceType": "MedicationRequest", "contained": [
        {"resourceType": "Medication", "id": "c1", "code": {"text": "contained"}}],
        "medicationReference": {"reference": "#c1"}}
    index = ResourceIndex([med], {"urn:uuid:abc": {"resourceType": "Medication", "code": {"text": "by fullUrl"}}})
    assert medication_concept(contained, index)[0] == {"text": "contained"}
    assert medication_concept({"medicationReference": {"reference": "Medication/m1"}}, index)[0] == {"text": "from bundle"}
    assert medication_concept({"medicationReference": {"reference": "urn:uuid:abc"}}, index)[0] == {"text": "by fullUrl"}
    cc, problem = medication_concept({"medicationReference": {"reference": "Medication/zz", "display": "X"}}, index)
    assert cc == {"text": "X"} and "not found" in problem


@pytest.mark.parametrize(
    ("ver", "usable"),
    [("confirmed", True), ("provisional", True), ("refuted", False), ("entered-in-error", False), (None, True)],
)
def test_condition_verification(ver, usable):
    c = {"clinicalStatus": {"coding": [{"code": "active"}]}}
    if ver:
        c["verificationStatus"] = {"coding": [{"code": ver}]}
    assert condition_usable(c) is usable
    assert condition_statuses(c)[0] == "active"
