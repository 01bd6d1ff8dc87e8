"""Units read within bounds: a body of junk where units belong costs milliseconds, not seconds, and
the card does not repeat it.

Parsing a unit the caches have not seen costs milliseconds with the UCUM grammar, hundreds of them
for a long made-up one ("m.m.m..." of 4,000 characters: ~0.6 s; 100 distinct made-up units in one
order-sign body: ~3 s on the event loop before this bound). `fhir_mappings.units` parses only units
of at most MAX_UCUM_CHARS, at most `parse_budget(n)` of them per block (the facts builder: per hook
call), cuts units and values in messages and evidence to SHOWN_CHARS, and keeps long unit members
out of its caches.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app import facts_builder
from app.engine.facts import Analyte
from fhir_mappings import units
from fhir_mappings.observations import read_value
from fhir_mappings.units import MAX_UCUM_CHARS, SHOWN_CHARS, UnitError, parse_budget, to_ucum

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MB = 1_000_000


@pytest.fixture
def counted_parses(monkeypatch):
    """Every unit the UCUM grammar is asked to parse (the expensive step)."""
    calls: list[str] = []
    registry = units._ureg()
    real = registry.from_ucum

    def counting(code, *args, **kwargs):
        calls.append(code)
        return real(code, *args, **kwargs)

    monkeypatch.setattr(registry, "from_ucum", counting)
    caches = (units._is_ucum, units._pint_factor, units.factor, units._to_ucum_cached,
              facts_builder._unit_plan)

    def clear() -> None:
        for cache in caches:
            cache.cache_clear()
        facts_builder._value_plans.clear()
        facts_builder._plain_limits.clear()

    clear()
    yield calls
    clear()  # nothing read under the counter stays behind for other tests


def test_a_unit_longer_than_any_ucum_code_is_not_parsed(counted_parses):
    for junk in ("m." * 2000 + "g", "(" * 500 + "m" + ")" * 500, "x" * MB):
        with pytest.raises(UnitError) as err:
            to_ucum(junk)
        assert len(str(err.value)) < 3 * SHOWN_CHARS  # the message does not repeat it
    assert counted_parses == []
    assert to_ucum("mL/min/{1.73_m2}") == "mL/min/{1.73_m2}"  # real ones are far shorter
    assert len("mL/min/{1.73_m2}") < MAX_UCUM_CHARS


def test_at_most_the_budget_of_new_units_is_parsed_in_a_block(counted_parses):
    made_up = [f"m.g{i}" for i in range(10)]
    read, refused = [], []
    with parse_budget(4):
        for u in made_up:
            try:
                read.append(to_ucum(u))
            except UnitError as exc:
                refused.append(str(exc))
    assert len(counted_parses) == 4  # one grammar parse per new unit here
    assert len(refused) >= 6 and all("too many different units" in r for r in refused[-6:])
    to_ucum("m.g9")  # outside a block: no bound; a refusal was not cached as an answer
    assert counted_parses[-1] == "m.g9"


def _obs(i: int, unit: str) -> dict:
    return {"resourceType": "Observation", "id": f"junk{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": (NOW - timedelta(hours=i + 1)).isoformat(),
            "valueQuantity": {"value": 1.0, "unit": unit}}


def test_one_hook_calls_facts_parse_at_most_the_per_call_budget(counted_parses):
    resources = [_obs(i, f"m.m.m.g{i}") for i in range(100)]
    facts = facts_builder.build_facts("p", resources, None, NOW)
    # a budget unit is one unit checked or one conversion (the grammar then reads both sides)
    assert len(counted_parses) <= 2 * facts_builder.MAX_UNIT_PARSES_PER_CALL
    bilirubin = [p for p in facts.problems if p.concept == Analyte.BILIRUBIN.value]
    assert len(bilirubin) == 100 and not facts.measurements  # each one said unusable, none used
    past = [p for p in bilirubin if "too many different units" in p.reason]
    assert len(past) >= 100 - facts_builder.MAX_UNIT_PARSES_PER_CALL  # in those words, every one


def test_long_unit_members_stay_out_of_the_caches(counted_parses, monkeypatch):
    asked: list[tuple] = []
    for module, name in ((units, "_to_ucum_cached"), (facts_builder, "_unit_plan")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real: asked.append(a) or _real(*a))
    long_unit = "u" * (units.CACHED_CHARS + 1)
    q = {"value": 1.0, "unit": long_unit, "code": "mg/dL", "system": units.UCUM_SYSTEM}
    obs = _obs(0, "mg/dL") | {"valueQuantity": q,
                              "referenceRange": [{"high": {"value": 1.2, "unit": long_unit}}]}
    short = _obs(1, "mg/dL")
    facts = facts_builder.build_facts("p", [obs, short], None, NOW)
    assert sorted(m.value for m in facts.measurements) == [1.0, 1.0]  # the UCUM code is read as before
    assert all(len(m.original) <= SHOWN_CHARS + 10 for m in facts.measurements)
    assert asked  # the short one went through the caches ...
    assert not [a for a in asked if any(isinstance(x, str) and len(x) > units.CACHED_CHARS for x in a)]
    for key in (*facts_builder._value_plans, *facts_builder._plain_limits):  # ... the long one never
        assert not any(isinstance(k, str) and len(k) > units.CACHED_CHARS for k in key)
    assert facts_builder._value_plans


def test_values_and_units_in_evidence_are_cut():
    v = read_value({"valueQuantity": {"value": 2, "unit": "x" * MB}})
    assert len(v.text) <= SHOWN_CHARS + 4
    v = read_value({"valueString": "y" * MB})
    assert len(v.text) <= SHOWN_CHARS + 1 and len(v.problem) < 3 * SHOWN_CHARS


def test_an_order_sign_call_with_junk_units_is_answered_small_and_never_proceed(tmp_path):
    from app.http.app import create_app
    from app.settings import Settings
    from bench.charts import bodies

    settings = Settings(database_url=f"sqlite:///{tmp_path}/junk.db", embedded_fhir=False, log_level="WARNING")
    service, body = bodies(datetime.now(UTC), "http://127.0.0.1:1/fhir")["order-sign"]
    pid = body["context"]["patientId"]
    with TestClient(create_app(settings)) as client:
        url = f"/cds-services/{service}"
        plain = client.post(url, json=body)
        assert plain.status_code == 200
        assert [c["extension"]["besponsa-cds"]["decision"] for c in plain.json()["cards"]] == ["proceed"]
        for junk in ("x" * MB, "m." * 2000 + "g"):
            latest = _obs(0, junk) | {"subject": {"reference": f"Patient/{pid}"},
                                      "effectiveDateTime": datetime.now(UTC).isoformat()}
            sent = copy.deepcopy(body)
            sent["prefetch"]["labs"]["entry"].append({"resource": latest})
            res = client.post(url, json=sent)
            assert res.status_code == 200
            assert len(res.content) < 20_000  # was 2 MB: the unit twice
            decisions = [c["extension"]["besponsa-cds"]["decision"] for c in res.json()["cards"]]
            assert "proceed" not in decisions and "obtain-data" in decisions  # the newest bilirubin is unusable


def test_long_texts_stay_out_of_the_text_caches():
    from app import terminology
    from fhir_mappings import codes, dates

    dates._parsed.clear()
    codes._coding_keys.clear()
    terminology._names_drug_cached.cache_clear()
    assert dates.parse_datetime("2" * MB) is None
    assert dates.parse_datetime(" " * 100 + "2026-11-23") is not None  # same answer, uncached
    assert codes.coding_key_fast("http://loinc.org", "9" * MB) == "http://loinc.org|" + "9" * MB
    assert codes.coding_key_fast("x" * MB, "1975-2") is not None
    assert terminology.named_as_drug({"text": "x" * MB + " inotuzumab"})
    idx = terminology.terminology()
    idx.value_sets_of({"coding": [{"system": "http://loinc.org", "code": "9" * MB}]})
    assert all(len(k) <= 512 for k in idx._sets_of_key)
    assert not dates._parsed and not codes._coding_keys
    assert terminology._names_drug_cached.cache_info().currsize == 0
    assert dates.parse_datetime("2026-11-23") is not None and len(dates._parsed) == 1
    assert codes.coding_key_fast("http://loinc.org", "1975-2") and len(codes._coding_keys) == 1


def test_ids_and_texts_as_sent_are_not_repeated_whole_in_cards(tmp_path):
    """Evidence cells and members are cut to EVIDENCE_CHARS: an Observation id of a megabyte (not a
    FHIR id, at most 64 characters) came back twice in a 2 MB response."""
    from app.engine.text import EVIDENCE_CHARS
    from app.http.app import create_app
    from app.settings import Settings
    from bench.charts import bodies

    settings = Settings(database_url=f"sqlite:///{tmp_path}/ids.db", embedded_fhir=False, log_level="WARNING")
    service, body = bodies(datetime.now(UTC), "http://127.0.0.1:1/fhir")["order-sign"]
    pid = body["context"]["patientId"]
    high = _obs(0, "mg/dL") | {"id": "Z" * MB, "subject": {"reference": f"Patient/{pid}"},
                               "effectiveDateTime": datetime.now(UTC).isoformat(),
                               "valueQuantity": {"value": 5.0, "unit": "mg/dL"}}
    sent = copy.deepcopy(body)
    sent["prefetch"]["labs"]["entry"].append({"resource": high})
    with TestClient(create_app(settings)) as client:
        res = client.post(f"/cds-services/{service}", json=sent)
    assert res.status_code == 200 and len(res.content) < 20_000
    cards = res.json()["cards"]
    assert cards[0]["extension"]["besponsa-cds"]["decision"] == "hold"  # the result is still read
    shown = [e.get("reference", "") for c in cards for e in c["extension"]["besponsa-cds"].get("evidence", [])]
    assert any(r.startswith("Observation/ZZZ") and len(r) == EVIDENCE_CHARS + 1 for r in shown)


@pytest.mark.parametrize("fast_paths", [True, False])
def test_a_draft_order_too_large_for_strict_validation_is_read_tolerantly(monkeypatch, fast_paths):
    """Strict R4 validation costs ~40 us per element: a 1 MB draft (40,000 notes) took 1.5 s."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    validated = []
    real = MedicationRequest.model_validate.__func__
    monkeypatch.setattr(MedicationRequest, "model_validate",
                        classmethod(lambda cls, obj, *a, **k: validated.append(1) or real(cls, obj, *a, **k)))
    monkeypatch.setattr(facts_builder, "FAST_PATHS", fast_paths)
    facts_builder._strict_verdict.cache_clear()  # the verdict on the small one is not kept from before
    order = {"resourceType": "MedicationRequest", "id": "big", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "1942950"}]},
             "subject": {"reference": "Patient/p"},
             "dosageInstruction": [{"timing": {"event": ["2026-11-23T08:00:00Z"]},
                                    "doseAndRate": [{"doseQuantity": {"value": 0.9, "unit": "mg",
                                                                      "system": units.UCUM_SYSTEM, "code": "mg"}}]}],
             "note": [{"text": "n"}] * 40_000}
    bundle = {"resourceType": "Bundle", "entry": [{"resource": order}]}
    draft = facts_builder.build_facts("p", [], bundle, NOW).draft
    assert not validated
    assert draft.read_tolerantly and draft.dose_mg == 0.9 and draft.reference == "MedicationRequest/big"
    small = {**order, "note": [{"text": "n"}]}
    assert facts_builder.build_facts("p", [], {"resourceType": "Bundle", "entry": [{"resource": small}]},
                                     NOW).draft.read_tolerantly is False
    assert validated  # a draft of the usual size is validated as before


def _administration(i: int, when: datetime) -> dict:
    return {"resourceType": "MedicationAdministration", "id": f"a{i}", "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1942950"}]},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": when.isoformat(),
            "dosage": {"dose": {"value": 1.5, "unit": "mg", "system": units.UCUM_SYSTEM, "code": "mg"}}}


def test_more_administrations_than_any_course_are_not_read(monkeypatch):
    """Reconstructing a course compares each dose with those before it (5,000 took 2 s): more than
    MAX_ADMINISTRATIONS_READ is no course history, and the cards say the history was not read."""
    from app.engine import course as course_module
    from app.engine import evaluate_next_dose
    from app.engine.facts import Domain
    from app.engine.policy import Policy

    placed = []
    real = course_module.place_doses
    monkeypatch.setattr(course_module, "place_doses", lambda given, policy: placed.append(len(given)) or real(given, policy))
    many = [_administration(i, NOW - timedelta(hours=5000 - i)) for i in range(5000)]
    facts = facts_builder.build_facts("p", many, None, NOW)
    assert facts.doses_given == ()
    status = facts.status(Domain.ADMINISTRATIONS)
    assert not status.read_whole and "5,000 administrations on record" in status.text()
    decisions = evaluate_next_dose(facts, NOW, Policy())
    assert decisions and all(d.code.value != "proceed" for d in decisions)
    assert not any(n > facts_builder.MAX_ADMINISTRATIONS_READ for n in placed)
    course = [_administration(i, NOW - timedelta(days=7 * (3 - i))) for i in range(3)]
    assert len(facts_builder.build_facts("p", course, None, NOW).doses_given) == 3  # a course is read


def test_transfused_at_is_the_earliest_transfusion_within_the_window():
    """Found by bisection (one count against every transfusion made 3,000 of each take 2.6 s); the
    same answer as the definition on generated charts."""
    from types import SimpleNamespace

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from app.engine.facts import Measurement, ProcedureFact
    from app.engine.labs import PLATELET_TRANSFUSION, transfused_at

    hours = st.integers(min_value=-200, max_value=200)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(hours, max_size=12), hours, st.integers(min_value=0, max_value=72))
    def check(transfusions, count_at, window):
        procedures = tuple(ProcedureFact(PLATELET_TRANSFUSION, f"Procedure/{i}", "completed",
                                         performed=NOW + timedelta(hours=h)) for i, h in enumerate(transfusions))
        ctx = SimpleNamespace(facts=SimpleNamespace(procedures=procedures),
                              policy=SimpleNamespace(transfusion_window_hours=window))
        m = Measurement(Analyte.PLATELETS, 100.0, NOW + timedelta(hours=count_at), "Observation/p")
        w = timedelta(hours=window)
        expected = next((t for t in sorted(p.performed for p in procedures) if t <= m.effective <= t + w), None)
        assert transfused_at(ctx, m) == expected

    check()


def test_units_past_the_budget_say_so_even_through_a_molar_conversion(counted_parses):
    """Bilirubin in umol/L needs the mass <-> substance path: a unit refused there for the budget is
    reported as not read, never as unconvertible."""
    with parse_budget(1), pytest.raises(UnitError) as refused:
        units.factor("umol/L{q}", "mg/dL", "bilirubin")  # the budget runs out on the molar step
    assert "too many different units" in str(refused.value)
    assert units.factor("umol/L{q}", "mg/dL", "bilirubin") > 0  # read outside the block
