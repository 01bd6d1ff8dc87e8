"""The facts builder's fast paths (issue #11) give exactly the facts of the general path.

`app.facts_builder.FAST_PATHS = False` reads every Observation through `_measurement` and every
draft order through the strict parse and dump; the facts must be equal field for field, on every
fixture we have and on results and orders shaped to leave the fast path.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app import facts_builder
from app.demo import demo_patient_ids, demo_request, demo_request_names, load_patient
from app.engine.facts import ClinicalFacts
from tests.fixtures.mappings.large_patient import make_patient

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def both(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> tuple[ClinicalFacts, ClinicalFacts]:
    monkeypatch.setattr(facts_builder, "FAST_PATHS", True)
    fast = facts_builder.build_facts(*copy.deepcopy(args), **kwargs)
    monkeypatch.setattr(facts_builder, "FAST_PATHS", False)
    general = facts_builder.build_facts(*copy.deepcopy(args), **kwargs)
    return fast, general


def assert_same(fast: ClinicalFacts, general: ClinicalFacts) -> None:
    assert fast.measurements == general.measurements
    assert fast.problems == general.problems
    assert fast.draft == general.draft
    assert fast == general


@pytest.mark.parametrize("vendor", ["epic", "cerner", "hapi", "smart"])
def test_vendor_fixtures(monkeypatch, vendor):
    d = json.loads((FIXTURES / "vendors" / f"{vendor}.json").read_text())
    now = datetime.fromisoformat(d["now"].replace("Z", "+00:00"))
    fast, general = both(monkeypatch, d["patient_id"], d["resources"], d["draftOrders"], now)
    assert fast.measurements  # the fixture does go through the builder
    assert_same(fast, general)


@pytest.mark.parametrize("name", demo_request_names())
def test_demo_patients_and_requests(monkeypatch, name):
    request = demo_request(name, NOW, "http://127.0.0.1:1")
    pid = request["context"]["patientId"]
    assert pid in demo_patient_ids()
    resources = load_patient(pid, NOW)
    draft = request["context"].get("draftOrders")
    assert_same(*both(monkeypatch, pid, resources, draft, NOW))


def test_a_year_of_daily_labs(monkeypatch):
    resources, draft_orders, now = make_patient(days=120)
    assert_same(*both(monkeypatch, "bench-1", resources, draft_orders, now))


def test_benchmark_charts(monkeypatch):
    from bench.charts import bodies

    for name, (_, body) in bodies(NOW, "http://127.0.0.1:1/fhir").items():
        resources = [e["resource"] for b in (body.get("prefetch") or {}).values()
                     if b and b.get("resourceType") == "Bundle" for e in b["entry"]]
        resources += [b for b in (body.get("prefetch") or {}).values() if b and b.get("resourceType") == "Patient"]
        fast, general = both(monkeypatch, body["context"]["patientId"], resources,
                             body["context"].get("draftOrders"), NOW)
        assert_same(fast, general)
        assert name == "fetch-mode" or fast.measurements


@pytest.mark.parametrize("path", sorted((FIXTURES / "retrieval").glob("*.json")), ids=lambda p: p.stem)
def test_retrieval_fixtures(monkeypatch, path):
    bundle = json.loads(path.read_text())
    pids = {(r.get("subject") or {}).get("reference", "").removeprefix("Patient/")
            for r in (e.get("resource") or {} for e in bundle.get("entry") or [])
            if isinstance(r, dict)} or {"x"}
    for pid in pids:
        assert_same(*both(monkeypatch, pid, [bundle], None, NOW))


def _obs(i: int, **changes) -> dict:
    obs = {
        "resourceType": "Observation", "id": f"o{i}", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": (NOW - timedelta(days=i % 30, hours=i)).isoformat(),
        "valueQuantity": {"value": 0.9, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        "referenceRange": [{"low": {"value": 0.2, "unit": "mg/dL"}, "high": {"value": 1.2, "unit": "mg/dL"}}],
    }
    for key, value in changes.items():
        if value is ...:
            obs.pop(key, None)
        else:
            obs[key] = value
    return obs


UCUM = "http://unitsofmeasure.org"
ODD_RESULTS = [
    {"valueQuantity": {"value": True, "unit": "mg/dL"}},
    {"valueQuantity": {"value": "0.9", "unit": "mg/dL"}},
    {"valueQuantity": {"value": 0.9, "unit": "mg/dL", "comparator": "<"}},
    {"valueQuantity": {"value": 0.9, "unit": "mg/dL", "comparator": ""}},
    {"valueQuantity": {"value": 10**20, "unit": "mg/dL"}},
    {"valueQuantity": {"value": 10**400, "unit": "mg/dL"}},
    {"valueQuantity": {"value": -1, "unit": "mg/dL"}},
    {"valueQuantity": {"value": 2000, "unit": "mg/dL"}},
    {"valueQuantity": {"value": 15, "unit": "umol/L"}},
    {"valueQuantity": {"value": 15, "code": "umol/L", "system": UCUM}},
    {"valueQuantity": {"value": 15, "unit": "µmol/l"}},
    {"valueQuantity": {"value": 1.1, "unit": "furlongs"}},
    {"valueQuantity": {"value": 1.1, "unit": "U/L"}},
    {"valueQuantity": {"value": 1.1}},
    {"valueQuantity": {"value": 1.1, "unit": ""}},
    {"valueQuantity": {"value": 1.1, "unit": ["mg/dL"]}},
    {"valueQuantity": {"value": 1.1, "unit": {"x": 1}}},
    {"valueQuantity": {"value": 1, "unit": "mg/dL"}},
    {"valueQuantity": "0.9 mg/dL"},
    {"valueQuantity": ..., "valueString": "<0.2 mg/dL"},
    {"valueQuantity": ..., "valueInteger": 1},
    {"valueQuantity": ..., "dataAbsentReason": {"coding": [{"code": "error"}]}},
    {"effectiveDateTime": ..., "issued": NOW.isoformat()},
    {"effectiveDateTime": ...},
    {"effectiveDateTime": "not a date"},
    {"referenceRange": ...},
    {"referenceRange": []},
    {"referenceRange": {"high": {"value": 1.2}}},
    {"referenceRange": "1.2"},
    {"referenceRange": [{"high": {"value": 1.2}}]},
    {"referenceRange": [{"high": {"value": True, "unit": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 1, "unit": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 20, "unit": "umol/L"}}]},
    {"referenceRange": [{"high": {"value": 1.2, "unit": "furlongs"}}]},
    {"referenceRange": [{"high": {"value": 1.2, "unit": ["x"]}}]},
    {"referenceRange": [{"high": "1.2"}]},
    {"referenceRange": [{"high": {}}]},
    {"referenceRange": [{"type": {"coding": [{"code": "treatment"}]}, "high": {"value": 3}},
                        {"high": {"value": 1.2}}]},
    {"referenceRange": [{"appliesTo": [{"text": "women"}], "high": {"value": 1.0}},
                        {"high": {"value": 1.3}}]},
    {"referenceRange": [{"age": {"low": {"value": 18}}, "high": {"value": 1.0}}]},
    {"referenceRange": [{"type": {"coding": [{"code": "normal"}]}, "high": {"value": 1.1}}]},
    {"status": "preliminary"},
    {"status": "amended"},
    {"status": "entered-in-error"},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "76634-5"}]},
     "valueQuantity": {"value": 430, "unit": "ms"}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
     "valueQuantity": {"value": 67, "unit": "[in_i]", "system": UCUM, "code": "[in_i]"}},
    {"component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
                    "valueQuantity": {"value": 35, "unit": "U/L"}}]},
    # the exits of the one-function reader of a plain result (_plain_result)
    {"status": ["final"]},
    {"status": None},
    {"status": "cancelled"},
    {"code": None},
    {"code": {"coding": []}},
    {"code": {"coding": "1975-2"}},
    {"code": {"coding": ["junk", {"system": "http://loinc.org", "code": "1975-2"}]}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"},
                         {"system": "http://loinc.org", "code": "1975-2"}]}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
     "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "97509-4"},
                         {"system": "http://loinc.org", "code": "1975-2"}]},
     "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "103338009"}]}},
    {"code": {"text": "bilirubin"}},
    {"effectiveDateTime": ""},
    {"effectiveDateTime": 20261120},
    {"effectiveDateTime": ..., "effectivePeriod": {"start": NOW.isoformat()}},
    {"effectiveDateTime": "2026", "issued": NOW.isoformat()},
    {"effectiveDateTime": "2025-06-01T08:00:00Z"},  # long before the horizon
    {"valueQuantity": {"value": 0.9, "unit": "mg/dL", "code": ["mg/dL"]}},
    {"valueQuantity": {"value": float("nan"), "unit": "mg/dL"}},
    {"component": []},
    # reference limits in the value's unit members, in none, in others, and ones the fast reader
    # cannot convert (an int too large for a float: the general way reports it, dated)
    {"referenceRange": [{"low": {"value": 0.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                         "high": {"value": 1.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"valueQuantity": {"value": 0.9, "unit": "mg/dL"},
     "referenceRange": [{"low": {"value": 0, "unit": "mg/dL"}, "high": {"value": 1, "unit": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 1.2, "system": UCUM}}]},
    {"referenceRange": [{"high": {"value": 1.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dl"}}]},
    {"referenceRange": [{"high": {"value": 1.2, "unit": "mg/dL", "system": "http://example.org", "code": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 20, "unit": "umol/L", "system": UCUM, "code": "umol/L"}}]},
    {"referenceRange": [{"high": {"value": float("inf"), "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 10**400, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": 2**60, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": -0.0, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"referenceRange": [{"high": {"value": False, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}]},
    {"valueQuantity": {"value": 15, "unit": "umol/L", "system": UCUM, "code": "umol/L"},
     "referenceRange": [{"high": {"value": 20, "unit": "umol/L", "system": UCUM, "code": "umol/L"}}]},
]


def test_results_shaped_to_leave_the_fast_path(monkeypatch):
    resources = [_obs(i, **changes) for i, changes in enumerate(ODD_RESULTS)]
    fast, general = both(monkeypatch, "p", resources, None, NOW)
    assert_same(fast, general)
    assert len(fast.problems) >= 10  # the odd ones were reported the same way


@pytest.mark.parametrize("i", range(len(ODD_RESULTS)))
def test_each_odd_result_alone(monkeypatch, i):
    assert_same(*both(monkeypatch, "p", [_obs(i, **ODD_RESULTS[i])], None, NOW))


DRUG = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1942950"}]}


def _order(**dosage) -> dict:
    di = {
        "timing": {"event": ["2026-11-23T08:00:00Z"]},
        "extension": [{"url": "https://besponsa-cds.org/fhir/StructureDefinition/treatment-cycle-day",
                       "extension": [{"url": "cycle", "valuePositiveInt": 1},
                                     {"url": "day", "valuePositiveInt": 8}]}],
        "doseAndRate": [{"doseQuantity": {"value": 0.9, "unit": "mg", "system": UCUM, "code": "mg"}}],
    }
    di.update(dosage)
    return {"resourceType": "MedicationRequest", "id": "d", "status": "draft", "intent": "order",
            "medicationCodeableConcept": DRUG, "subject": {"reference": "Patient/p"},
            "dosageInstruction": [di]}


def _with(order: dict, path: tuple, value) -> dict:
    order = copy.deepcopy(order)
    target = order
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return order


DOSE = ("dosageInstruction", 0, "doseAndRate", 0, "doseQuantity")
CYCLE = ("dosageInstruction", 0, "extension", 0, "extension", 0, "valuePositiveInt")
ODD_ORDERS = [
    _order(),
    _with(_order(), (*DOSE, "value"), "0.9"),
    _with(_order(), (*DOSE, "value"), 1),
    _with(_order(), (*DOSE, "value"), 12345678901234567890.5),
    _with(_order(), (*DOSE, "value"), True),
    _with(_order(), (*DOSE, "unit"), " mg "),
    _with(_order(), (*DOSE, "code"), "mg/m2"),
    _with(_order(), CYCLE, "2"),
    _with(_order(), CYCLE, 2.0),
    _with(_order(), CYCLE, 0),
    _with(_order(), ("dosageInstruction", 0, "timing", "event"), ["2026-11-23T08:00:00.1234567+01:00"]),
    _with(_order(), ("dosageInstruction", 0, "timing", "event"), ["2026-11-23T08:00:00.123Z"]),
    _with(_order(), ("dosageInstruction", 0, "timing", "event"), ["2026-11-23T08:00:00"]),
    _with(_order(), ("dosageInstruction", 0, "timing", "event"), ["2026-11-23"]),
    _with(_order(), ("dosageInstruction", 0, "timing", "event"), ["2026-11"]),
    _with(_order(), ("dosageInstruction", 0, "timing"), {"repeat": {"boundsPeriod": {"start": "2026-11-24T10:00:00+02:00"}}}),
    _with(_order(), ("dosageInstruction", 0, "timing"), {"repeat": {"boundsPeriod": {"start": "2026-11-24T10:00:00"}}}),
    _with(_order(), ("authoredOn",), "2026-11-22T10:00:00Z"),
    _with(_order(), ("authoredOn",), "2026-11-22T10:00"),
    _with(_order(), ("status",), " draft"),
    _with(_order(), ("intent",), None),
    _with(_order(), ("dosageInstruction", 0, "doseAndRate"), [{"doseRange": {"low": {"value": 0.5, "unit": "mg"}}}]),
    _with(_order(), ("dosageInstruction", 0, "doseAndRate"), []),
    _with(_order(), ("madeUpField",), 1),
    {**_order(), "category": {"text": "inpatient"}},
    {**_order(), "extension": [{"url": "https://besponsa-cds.org/fhir/StructureDefinition/treatment-cycle-day",
                                "extension": [{"url": "cycle", "valueInteger": "3"}, {"url": "day", "valueInteger": 1}]}]},
]


@pytest.mark.parametrize("i", range(len(ODD_ORDERS)))
def test_draft_orders_shaped_to_leave_the_fast_path(monkeypatch, i):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ODD_ORDERS[i]}]}
    fast, general = both(monkeypatch, "p", [], bundle, NOW)
    assert fast.draft is not None
    assert fast.draft == general.draft
    assert_same(fast, general)


@pytest.mark.parametrize("path", sorted((FIXTURES / "cards").glob("*.json")), ids=lambda p: p.stem)
def test_card_fixture_orders(monkeypatch, path):
    order = json.loads(path.read_text())
    bundle = {"resourceType": "Bundle", "entry": [{"resource": order}]}
    assert_same(*both(monkeypatch, "p", [], bundle, NOW))


def test_the_fast_path_is_taken(monkeypatch):
    """Not a test of speed: the fast paths really are the ones in use by default."""
    assert facts_builder.FAST_PATHS is True
    calls = []
    monkeypatch.setattr(facts_builder, "_measurement", lambda *a: calls.append(a))
    monkeypatch.setattr(facts_builder, "_measurement_fast", lambda *a: calls.append(a))
    facts = facts_builder.build_facts("p", [_obs(1)], None, NOW)
    assert not calls and len(facts.measurements) == 1  # read whole by _plain_result
    facts_builder.build_facts("p", [_obs(1, effectiveDateTime=..., issued=NOW.isoformat())], None, NOW)
    assert len(calls) == 1  # not the plain shape: the next reader
    order = _order()
    assert facts_builder._strict_valid(order) is order  # valid and plain: no dump
    assert facts_builder._strict_valid(ODD_ORDERS[1]) is not ODD_ORDERS[1]  # "0.9": dumped


def test_matching_list_is_matching_elements():
    from fhir_mappings.observations import matching_elements, matching_list

    wanted = {"http://loinc.org|1975-2", "http://loinc.org|1742-6", "http://loinc.org|76634-5"}
    shapes = [_obs(i, **changes) for i, changes in enumerate(ODD_RESULTS)]
    shapes += [_obs(0, component=[{"code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]}},
                                  "junk", {"code": "x"}]),
               _obs(0, code={"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}, component=[]),
               _obs(0, code=None, component=None)]
    for obs in shapes:
        assert matching_list(obs, wanted) == list(matching_elements(obs, wanted))
    with pytest.raises(TypeError):
        list(matching_elements(_obs(0, component=5), wanted))
    with pytest.raises(TypeError):
        matching_list(_obs(0, component=5), wanted)


def test_the_strict_verdict_is_kept_per_order_content(monkeypatch, caplog):
    """One validation per draft content: the same order again (another hook call of the same
    ordering session) is not validated again; any change of content is."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    facts_builder._strict_verdict.cache_clear()
    calls = []
    real = MedicationRequest.model_validate.__func__

    def counting(cls, obj, *a, **k):
        calls.append(obj.get("id"))
        return real(cls, obj, *a, **k)

    monkeypatch.setattr(MedicationRequest, "model_validate", classmethod(counting))
    order = _order()
    assert facts_builder._strict_valid(copy.deepcopy(order)) == order
    assert facts_builder._strict_valid(copy.deepcopy(order)) == order
    assert len(calls) == 1
    changed = _with(order, (*DOSE, "value"), 0.8)
    assert facts_builder._strict_valid(changed) is changed
    assert len(calls) == 2
    as_text = _with(order, (*DOSE, "value"), "0.9")  # same number, another JSON form: dumped
    assert facts_builder._strict_valid(as_text)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 0.9
    assert len(calls) == 3
    invalid = _with(order, ("status",), 5)
    with caplog.at_level("INFO", logger="app.facts_builder"):
        assert facts_builder._strict_valid(invalid) is None
        assert facts_builder._strict_valid(copy.deepcopy(invalid)) is None
    assert len(calls) == 4
    assert sum("failed strict R4 parsing" in r.getMessage() for r in caplog.records) == 2  # logged each time
    not_json = {**order, "authoredOn": datetime(2026, 11, 23, tzinfo=UTC)}  # a caller's Python value
    facts_builder._strict_valid(not_json)
    facts_builder._strict_valid(not_json)
    assert len(calls) == 6  # not cached
