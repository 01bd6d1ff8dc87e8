"""Prefetch templates are built from the value sets and stay within what R4 servers answer."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.prefetch_queries import PREFETCH_RESOURCE_TYPES, PREFETCH_TEMPLATES, REQUIRED_KEYS
from app.terminology import analyte_keys, terminology


def params(template):
    return parse_qs(urlsplit(template).query)


def test_every_observation_query_code_is_in_a_value_set():
    keys = analyte_keys(terminology())
    special = {k for k, sets in terminology().exact.items()
               if sets & {"pregnancy-status", "breastfeeding-status", "disease-response"}}
    for key, template in PREFETCH_TEMPLATES.items():
        if template.startswith("Observation?"):
            p = params(template)
            assert p["patient"] == ["{{context.patientId}}"]
            assert p["_sort"] == ["-date"] and int(p["_count"][0]) > 0
            for token in p["code"][0].split(","):
                assert token in keys or token in special, (key, token)


def test_each_analyte_code_is_queried_once():
    queried = [t for tpl in PREFETCH_TEMPLATES.values() if tpl.startswith("Observation?")
               for t in params(tpl)["code"][0].split(",")]
    assert len(queried) == len(set(queried))
    assert set(analyte_keys(terminology())) <= set(queried)


def test_labs_include_si_and_mass_bilirubin_and_counts():
    labs = params(PREFETCH_TEMPLATES["labs"])["code"][0].split(",")
    assert "http://loinc.org|1975-2" in labs and "http://loinc.org|14631-6" in labs
    cbc = params(PREFETCH_TEMPLATES["cbc"])["code"][0].split(",")
    assert {"http://loinc.org|751-8", "http://loinc.org|777-3"} <= set(cbc)


def test_only_recommended_parameters_are_used():
    allowed = {"patient", "subject", "code", "_sort", "_count"}
    for template in PREFETCH_TEMPLATES.values():
        assert set(params(template)) <= allowed, template


def test_required_keys():
    assert REQUIRED_KEYS <= PREFETCH_TEMPLATES.keys()
    assert {"patient", "labs", "cbc", "vitals", "medicationAdministrations"} <= REQUIRED_KEYS
    assert PREFETCH_TEMPLATES["patient"] == "Patient/{{context.patientId}}"
    assert PREFETCH_RESOURCE_TYPES["labs"] == "Observation"
    assert PREFETCH_RESOURCE_TYPES["patient"] == "Patient"
