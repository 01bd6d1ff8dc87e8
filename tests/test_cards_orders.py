"""Suggestions act: every suggested resource is valid FHIR R4 (fhir.resources R4B) and an accepted
dose suggestion, applied to the draft order (update = take the resource), gives the engine's dose."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from app import orders
from app.cards import CardContext, build_cards
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation, Label

FIXTURES = Path(__file__).parent / "fixtures" / "cards"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def mosteller(height_cm: float, weight_kg: float) -> float:
    return math.sqrt(height_cm * weight_kg / 3600)


# Label numbers: SmPC 4.2 Table 1 (cycle 1 Day 1 0.8 mg/m2; Days 8/15 0.5 mg/m2), Table 4
# (>= 14 days interruption: total dose -25 %). 175 cm / 68 kg -> Mosteller BSA 1.8181 m2.
BSA = mosteller(175, 68)
C1D1 = DoseRecommendation(mg_per_m2=0.8, mg=round(0.8 * BSA, 2), bsa_m2=BSA, cycle=1, day=1)
C2D8_REDUCED = DoseRecommendation(
    mg_per_m2=0.375, mg=round(0.5 * 0.75 * BSA, 2), bsa_m2=BSA, cycle=2, day=8, reduction_level=1
)


def decision(code: DecisionCode, **kw: Any) -> Decision:
    base: dict[str, Any] = dict(rules=("D-4",), citations=("SmPC 4.2 Table 1",), summary=f"{code} test",
                                detail="Detail.")
    base.update(kw)
    return Decision(code=code, **base)


def ctx(draft: dict[str, Any] | None, encounter: str | None = "enc-1") -> CardContext:
    return CardContext(patient_id="p1", now=NOW, encounter_id=encounter, draft_order=draft)


def actions(card_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for s in card_json.get("suggestions", []) for a in s["actions"]]


def validate(resource: dict[str, Any]) -> None:
    {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}[
        resource["resourceType"]
    ].model_validate(resource)


def applied_dose(resource: dict[str, Any]) -> tuple[float, str]:
    q = resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    return q["value"], q["code"]


ALL_CODES_DECISIONS = [
    decision(DecisionCode.CORRECT_DOSE, dose=C1D1),
    decision(DecisionCode.REDUCE_DOSE, rules=("T-3",), dose=C2D8_REDUCED),
    decision(DecisionCode.HOLD, rules=("L-2",), hold_until=date(2026, 11, 30),
             recovery_criteria="bilirubin <= 1.5 x ULN and AST/ALT <= 2.5 x ULN"),
    decision(DecisionCode.OMIT_DOSE, rules=("T-2",)),
    decision(DecisionCode.DISCONTINUE, rules=("L-1",)),
    decision(DecisionCode.CONTRAINDICATED, rules=("E-1",)),
    decision(DecisionCode.CONSIDER_DISCONTINUE, rules=("T-4",)),
    decision(DecisionCode.OBTAIN_DATA, rules=("E-5", "Q-1", "D-5", "E-2"),
             needed_data=("hepatic-panel", "cbc-differential", "ecg", "electrolytes", "cd22",
                          "height", "weight", "disease-response", "pregnancy-test")),
    decision(DecisionCode.CAUTION, rules=("E-4",), suggest_premedication=True),
]


@pytest.mark.parametrize("draft_name", ["sandbox_rx_sign", "sandbox_rx_view", "stu3_shape", "broken_members"])
def test_every_suggested_resource_is_valid_r4_and_references_patient_and_encounter(draft_name: str) -> None:
    cards = [c.to_json() for c in build_cards(ALL_CODES_DECISIONS, ctx(fixture(draft_name)))]
    assert len(cards) == len(ALL_CODES_DECISIONS)
    for card, d in zip(cards, ALL_CODES_DECISIONS):
        assert card.get("suggestions"), f"{d.code} has no suggestion"
        for s in card["suggestions"]:
            assert s["label"] and s["uuid"]
        for action in actions(card):
            if action["type"] == "delete":
                continue
            res = action["resource"]
            validate(res)
            assert res["subject"] == {"reference": "Patient/p1"}
            assert res["encounter"] == {"reference": "Encounter/enc-1"}


@pytest.mark.parametrize("draft_name", ["sandbox_rx_sign", "sandbox_rx_view", "stu3_shape", "broken_members"])
@pytest.mark.parametrize("dose", [C1D1, C2D8_REDUCED], ids=["C1D1-0.8", "C2D8-level1-0.375"])
def test_dose_update_applied_gives_the_engine_dose(draft_name: str, dose: DoseRecommendation) -> None:
    draft = fixture(draft_name)
    code = DecisionCode.CORRECT_DOSE if dose.reduction_level == 0 else DecisionCode.REDUCE_DOSE
    card = build_cards([decision(code, dose=dose)], ctx(draft))[0].to_json()
    assert card["selectionBehavior"] == "at-most-one"
    (update,) = actions(card)
    assert update["type"] == "update"
    new_order = update["resource"]  # applying an update = taking the whole resource
    validate(new_order)
    assert new_order["id"] == draft["id"]
    assert applied_dose(new_order) == (dose.mg, "mg")
    assert new_order["status"] in ("draft", "active") and new_order["intent"] == "order"
    assert isinstance(new_order.get("category", []), list)
    text = new_order["dosageInstruction"][0]["text"]
    assert f"{orders.fmt_number(dose.mg_per_m2)} mg/m2" in text and "BSA 1.82 m2" in text
    assert f"= {orders.fmt_number(dose.mg)} mg" in text


def test_label_numbers_of_the_dose_fixtures() -> None:
    # Guard the expected values themselves: 0.8 x 1.8181 = 1.45 mg; 0.375 x 1.8181 = 0.68 mg.
    assert round(BSA, 4) == 1.8181
    assert C1D1.mg == 1.45
    assert C2D8_REDUCED.mg == 0.68


def test_update_keeps_timing_and_fixes_sandbox_shapes() -> None:
    draft = fixture("sandbox_rx_sign")
    card = build_cards([decision(DecisionCode.CORRECT_DOSE, dose=C1D1)], ctx(draft))[0].to_json()
    res = actions(card)[0]["resource"]
    assert res["category"][0]["coding"][0]["code"] == "outpatient"  # object -> list
    assert res["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] == "2026-11-24"
    view = orders.normalize_draft(fixture("sandbox_rx_view"), patient_id="p1")
    assert view["intent"] == "order" and view["status"] == "draft"
    assert isinstance(view["dosageInstruction"][0]["doseAndRate"], list)
    broken = orders.normalize_draft(fixture("broken_members"), patient_id="p1")
    assert broken["status"] == "draft"  # "pending-review" is not an R4 status
    assert broken["id"] == "request-999" and "madeUpField" not in broken


def test_input_draft_is_not_mutated() -> None:
    draft = fixture("sandbox_rx_view")
    before = json.dumps(draft, sort_keys=True)
    build_cards([decision(DecisionCode.CORRECT_DOSE, dose=C1D1)], ctx(draft))
    assert json.dumps(draft, sort_keys=True) == before


@pytest.mark.parametrize("code", [DecisionCode.HOLD, DecisionCode.OMIT_DOSE, DecisionCode.DISCONTINUE,
                                  DecisionCode.CONTRAINDICATED])
def test_cancelling_decisions_delete_the_draft_order(code: DecisionCode) -> None:
    d = decision(code, rules=("L-2",), hold_until=date(2026, 11, 30) if code is DecisionCode.HOLD else None)
    card = build_cards([d], ctx(fixture("sandbox_rx_sign")))[0].to_json()
    (action,) = actions(card)
    assert action == {"type": "delete", "description": action["description"],
                      "resourceId": ["MedicationRequest/request-123"]}
    assert card["selectionBehavior"] == "at-most-one"
    if code is DecisionCode.HOLD:
        assert "2026-11-30" in action["description"] and "2026-11-30" in card["suggestions"][0]["label"]


def test_hold_states_recovery_criteria_when_no_date() -> None:
    d = decision(DecisionCode.HOLD, rules=("H-2",), recovery_criteria="ANC >= 1 x 10^9/L")
    card = build_cards([d], ctx(fixture("sandbox_rx_sign")))[0].to_json()
    assert "ANC >= 1 x 10^9/L" in actions(card)[0]["description"]
    # #10: the detail's first line says what to do, re-order condition included (said once)
    assert card["detail"].splitlines()[0] == (
        "**What to do: do not give this dose now; re-order when ANC >= 1 x 10^9/L.**")
    assert card["detail"].count("ANC >= 1 x 10^9/L") == 1


def test_obtain_data_creates_coded_service_requests() -> None:
    d = ALL_CODES_DECISIONS[7]
    card = build_cards([d], ctx(None, encounter=None))[0].to_json()
    assert card["selectionBehavior"] == "any"
    codes = [(a["resource"]["code"]["coding"][0]["system"], a["resource"]["code"]["coding"][0]["code"])
             for a in actions(card)]
    loinc = "http://loinc.org"
    assert codes == [(loinc, "24325-3"), (loinc, "57021-8"), (loinc, "8636-3"), (loinc, "2823-3"),
                     (loinc, "2601-3"), (loinc, "17861-6"), (loinc, "101119-6"), (loinc, "8302-2"),
                     (loinc, "29463-7"), (loinc, "11150-0"), (loinc, "2118-8")]
    for a in actions(card):
        res = a["resource"]
        assert a["type"] == "create"
        assert (res["status"], res["intent"]) == ("draft", "order")
        assert "encounter" not in res  # no encounter in context -> none referenced
        validate(res)
    # electrolytes is one suggestion with three orders
    electrolytes = [s for s in card["suggestions"] if "electrolytes" in s["label"]]
    assert len(electrolytes) == 1 and len(electrolytes[0]["actions"]) == 3


def test_analyte_aliases_are_deduplicated_and_unknown_data_is_said() -> None:
    d = decision(DecisionCode.OBTAIN_DATA, rules=("E-5",),
                 needed_data=("bilirubin-total", "ast", "alt", "anc", "platelets", "mystery-test"))
    card = build_cards([d], ctx(None))[0].to_json()
    assert [s["label"] for s in card["suggestions"]] == [
        "Order hepatic function panel (bilirubin, AST, ALT, ALP)", "Order CBC with differential"]
    assert "mystery-test" in card["detail"]


def test_premedication_orders_from_template() -> None:
    card = build_cards([ALL_CODES_DECISIONS[8]], ctx(fixture("sandbox_rx_sign")))[0].to_json()
    (s,) = card["suggestions"]
    meds = [a["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for a in s["actions"]]
    assert meds == ["3264", "161", "3498"]  # dexamethasone, acetaminophen, diphenhydramine (RxNorm)
    assert card["selectionBehavior"] == "any"


def test_custom_premedication_template(tmp_path: Path) -> None:
    tpl = {"citation": "local protocol", "items": [{
        "role": "corticosteroid",
        "medication": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3264",
                                   "display": "dexamethasone"}]},
        "dosage_text": "dexamethasone 8 mg IV 30 min before", "dose": {"value": 8, "unit": "mg"}}]}
    path = tmp_path / "premed.json"
    path.write_text(json.dumps(tpl))
    c = CardContext(patient_id="p1", now=NOW, draft_order=None, premedication_file=str(path))
    card = build_cards([ALL_CODES_DECISIONS[8]], c)[0].to_json()
    (action,) = actions(card)
    validate(action["resource"])
    assert applied_dose(action["resource"]) == (8, "mg")


def test_no_draft_id_means_no_order_suggestion() -> None:
    draft = fixture("sandbox_rx_sign")
    del draft["id"]
    cards = build_cards([decision(DecisionCode.CORRECT_DOSE, dose=C1D1), decision(DecisionCode.HOLD)], ctx(draft))
    assert all(c.suggestions is None and c.selectionBehavior is None for c in cards)


def test_with_real_engine_if_available() -> None:
    """End to end with the engine (issue #3): a wrong dose -> correct-dose -> update = engine's mg."""
    from app.engine import evaluate
    from app.engine.facts import Analyte, ClinicalFacts, DraftDose, Measurement, PatientInfo

    facts = ClinicalFacts(
        patient=PatientInfo(id="p1", birth_date=date(1980, 1, 1), gender="male"),
        draft=DraftDose(reference="MedicationRequest/request-123", dose_date=NOW, dose_mg=3.0),
        measurements=(
            Measurement(Analyte.HEIGHT, 175, datetime(2026, 11, 20, tzinfo=UTC), "Observation/h"),
            Measurement(Analyte.WEIGHT, 68, datetime(2026, 11, 20, tzinfo=UTC), "Observation/w"),
        ),
    )
    try:
        decisions = evaluate(facts, NOW, None, Label.EU)
    except NotImplementedError:
        pytest.skip("engine (issue #3) not implemented yet in this tree")
    dose_decisions = [d for d in decisions if d.code is DecisionCode.CORRECT_DOSE and d.dose]
    assert dose_decisions, [d.code for d in decisions]
    d = dose_decisions[0]
    card = build_cards([d], ctx(fixture("sandbox_rx_sign")))[0].to_json()
    (update,) = [a for a in actions(card) if a["type"] == "update"]
    validate(update["resource"])
    assert applied_dose(update["resource"]) == (d.dose.mg, "mg")
    assert d.dose.mg == pytest.approx(0.8 * BSA, abs=0.01)  # cycle 1 Day 1 0.8 mg/m2


def test_every_engine_decision_becomes_a_valid_card() -> None:
    """Real engine output (L-2 hold, D-4, obtain-data, E-4 premedication...) -> valid cards."""
    from app.engine import evaluate
    from app.engine.facts import Analyte, ClinicalFacts, DraftDose, Measurement, PatientInfo
    from tests.conftest import assert_no_empty_members

    day = datetime(2026, 11, 22, tzinfo=UTC)
    facts = ClinicalFacts(
        patient=PatientInfo(id="p1", birth_date=date(1980, 1, 1), gender="female"),
        draft=DraftDose(reference="MedicationRequest/request-123", dose_date=NOW, dose_mg=3.0),
        measurements=(
            Measurement(Analyte.HEIGHT, 175, day, "Observation/h"),
            Measurement(Analyte.WEIGHT, 68, day, "Observation/w"),
            # SmPC 4.2 Table 3: bilirubin 1.75 x ULN and ALT 3.25 x ULN -> interrupt dosing (L-2)
            Measurement(Analyte.BILIRUBIN, 2.1, day, "Observation/b", uln=1.2),
            Measurement(Analyte.ALT, 130, day, "Observation/a", uln=40),
        ),
    )
    try:
        decisions = evaluate(facts, NOW, None, Label.EU)
    except NotImplementedError:
        pytest.skip("engine (issue #3) not implemented yet in this tree")
    cards = [c.to_json() for c in build_cards(decisions, ctx(fixture("sandbox_rx_sign")))]
    assert [c["extension"]["besponsa-cds"]["decision"] for c in cards] == [d.code.value for d in decisions]
    assert "hold" in [d.code.value for d in decisions]
    for card in cards:
        assert_no_empty_members(card)
        for a in actions(card):
            if a["type"] != "delete":
                validate(a["resource"])
        if card["extension"]["besponsa-cds"]["decision"] == "hold":
            assert card["overrideReasons"][0]["code"] == "gilbert-or-haemolysis"
            assert actions(card)[0]["resourceId"] == ["MedicationRequest/request-123"]
