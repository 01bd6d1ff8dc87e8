"""The next due dose for patient-view (app.engine.next_dose; SmPC 4.2 Table 1 / Table 4)."""

from __future__ import annotations

from datetime import timedelta

from app.engine.decisions import DecisionCode
from app.engine.facts import Analyte
from app.engine.next_dose import evaluate_next_dose, next_due_dose
from app.engine.policy import Policy
from tests.engine_factories import (
    T0,
    body,
    clean_facts,
    day,
    dose,
    facts,
    measurement,
    medication,
    normal_labs,
    response,
)


def _labs(when):
    return normal_labs(when) + body(when=when)


PREMEDS = [medication([c], display=c) for c in ("corticosteroid", "antipyretic", "antihistamine")]


def test_never_given_and_nothing_planned_gets_no_card() -> None:
    assert next_due_dose(facts(measurements=_labs(T0)), T0, Policy()) is None
    assert evaluate_next_dose(facts(measurements=_labs(T0)), T0) == []


def test_planned_order_makes_the_first_dose_due() -> None:
    plan = medication(["inotuzumab-ozogamicin"], reference="MedicationRequest/plan-1",
                      start=T0 + timedelta(days=2))
    f = clean_facts(None, now=T0, medications=[plan])
    nd = next_due_dose(f, T0, Policy())
    assert (nd.cycle, nd.day, nd.due, nd.mg_per_m2) == (1, 1, (T0 + timedelta(days=2)).date(), 0.8)
    assert nd.planned_order == "MedicationRequest/plan-1"
    # a cancelled plan is no plan
    stopped = medication(["inotuzumab-ozogamicin"], status="cancelled")
    assert next_due_dose(clean_facts(None, now=T0, medications=[stopped]), T0, Policy()) is None


def test_day_8_is_due_7_days_after_day_1() -> None:
    now = day(3)
    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(2)), medications=PREMEDS)
    nd = next_due_dose(f, now, Policy())
    assert (nd.cycle, nd.day, nd.dose_number, nd.due) == (1, 8, 2, day(8).date())
    assert nd.mg_per_m2 == 0.5 and nd.mg == 0.91  # 0.5 x 1.818 m2
    [card] = evaluate_next_dose(f, now)
    assert card.code is DecisionCode.PROCEED
    assert card.summary.startswith(f"Next dose, Cycle 1 Day 8 due {day(8).date()} (in 5 days): ")
    assert len(card.summary) < 140


def test_after_day_15_the_next_cycle_is_due_on_day_22() -> None:
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5)]
    nd = next_due_dose(facts(doses=doses, measurements=_labs(day(16))), day(17), Policy())
    assert (nd.cycle, nd.day, nd.due) == (2, 1, day(22).date())


def test_reduction_level_2_skips_the_third_dose() -> None:
    # Cycle 2 given at level 2 (2 doses of 0.375 mg/m2 after level 1): the next dose is Cycle 3.
    doses = [dose(day(1), mg_per_m2=0.6), dose(day(8), mg_per_m2=0.375),
             dose(day(15), mg_per_m2=0.375), dose(day(36), mg_per_m2=0.375),
             dose(day(43), mg_per_m2=0.375), dose(day(64), mg_per_m2=0.375)]
    nd = next_due_dose(facts(doses=doses, measurements=_labs(day(64))), day(65), Policy())
    assert nd.reduction_level == 2
    assert (nd.cycle, nd.day) == (3, 8)  # dose 2 of Cycle 3; a 3rd would not be due at level 2
    doses.append(dose(day(71), mg_per_m2=0.375))
    nd = next_due_dose(facts(doses=doses, measurements=_labs(day(71))), day(72), Policy())
    assert (nd.cycle, nd.day, nd.due) == (4, 1, day(92).date())


def test_neutropenia_holds_the_next_dose_in_chart_words() -> None:
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5)]
    labs = _labs(day(0)) + _labs(day(20)) + [measurement(Analyte.ANC, 0.6, day(21))]
    f = facts(doses=doses, measurements=labs, medications=PREMEDS, responses=[response("PR", day(20))])
    decisions = evaluate_next_dose(f, day(21, hours=2))
    hold = decisions[0]
    assert hold.code is DecisionCode.HOLD and "H-2" in hold.rules
    assert hold.summary.startswith(f"Next dose, Cycle 2 Day 1 due {day(22).date()} (tomorrow): hold")
    assert "ANC 0.6" in hold.summary
    assert hold.detail.startswith("**Hold the next dose (Cycle 2 Day 1, due ")
    assert all(d.code is not DecisionCode.PROCEED for d in decisions)


def test_plan_card_off_leaves_only_objections() -> None:
    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(2)), medications=PREMEDS)
    assert evaluate_next_dose(f, day(3), plan_card=False) == []


def test_course_long_over_has_no_next_dose() -> None:
    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(2)))
    later = day(1) + timedelta(days=Policy().next_dose_window_days + 1)
    assert next_due_dose(f, later, Policy()) is None


def test_a_wording_failure_never_hides_a_decision(monkeypatch) -> None:
    from app.engine import next_dose

    def broken(*_a, **_k):
        raise RuntimeError("wording bug")

    monkeypatch.setattr(next_dose, "for_chart", broken)
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5)]
    labs = _labs(day(0)) + _labs(day(20)) + [measurement(Analyte.ANC, 0.6, day(21))]
    f = facts(doses=doses, measurements=labs, medications=PREMEDS, responses=[response("PR", day(20))])
    decisions = evaluate_next_dose(f, day(21, hours=2))
    assert decisions[0].code is DecisionCode.HOLD and "H-2" in decisions[0].rules


def test_unreadable_administrations_give_no_next_dose() -> None:
    plan = medication(["inotuzumab-ozogamicin"])
    f = clean_facts(None, now=T0, medications=[plan], unavailable=frozenset({"MedicationAdministration"}))
    assert next_due_dose(f, T0, Policy()) is None  # cannot say where the patient is


def test_qt_drug_or_live_vaccine_ordered_for_a_patient_about_to_start() -> None:
    from app.engine import evaluate
    from tests.engine_factories import other_order

    plan = medication(["inotuzumab-ozogamicin"], start=T0 + timedelta(days=1))
    for concept, rule in (("qt-prolonging", "Q-1"), ("live-vaccine", "P-2")):
        order = other_order([concept], display="the other drug")
        decisions = evaluate(facts(medications=[plan], other_orders=[order],
                                   measurements=_labs(T0)), T0)
        assert [(d.code, d.rules) for d in decisions] == [(DecisionCode.CAUTION, (rule,))]
        # without the planned order the patient is not ours: no card
        assert evaluate(facts(other_orders=[order], measurements=_labs(T0)), T0) == []
    qt = evaluate(facts(medications=[plan], other_orders=[other_order(["qt-prolonging"],
                                                                      display="ondansetron")]), T0)
    assert "planned (not yet given)" in qt[0].summary


def test_plan_card_cites_the_label_in_force() -> None:
    from app.engine.decisions import Label

    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(2)), medications=PREMEDS)
    [eu] = evaluate_next_dose(f, day(3))
    [us] = evaluate_next_dose(f, day(3), label=Label.US)
    assert "SmPC 4.4: before each dose" in eu.detail
    assert "USPI 5.1, 5.3: before each dose" in us.detail and us.label is Label.US


def test_labs_not_drawn_yet_for_a_later_dose_are_the_plan_not_an_objection() -> None:
    # Day 1 given today; the labs are from before it: Day 8 is a week away.
    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(0)), medications=PREMEDS)
    [plan] = evaluate_next_dose(f, day(1, hours=3))
    assert plan.code is DecisionCode.PROCEED and plan.summary.startswith(
        f"Next dose, Cycle 1 Day 8 due {day(8).date()} (in 7 days): 0.5 mg/m2")
    assert "; measure CBC, LFTs first" in plan.summary  # not yet measured: "measure", not "check"
    assert set(plan.needed_data) == {"hepatic-panel", "cbc-differential"}  # ServiceRequests
    assert "Not measured since the last dose yet: ALT" in plan.detail
    # due today, the same missing labs are an objection (E-5 obtain-data), never a plan
    g = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=_labs(day(0)), medications=PREMEDS)
    today = evaluate_next_dose(g, day(8, hours=3))
    assert [d.code for d in today] == [DecisionCode.OBTAIN_DATA] and "E-5" in today[0].rules


def test_an_unusable_lab_is_never_folded_into_the_plan() -> None:
    from tests.engine_factories import problem

    labs = _labs(day(0)) + _labs(day(2))
    bad = problem("alt", "unknown unit 'mg/ml/h'", effective=day(2, hours=1))
    f = facts(doses=[dose(day(1), mg_per_m2=0.8)], measurements=labs, medications=PREMEDS,
              problems=[bad])
    decisions = evaluate_next_dose(f, day(3))
    assert decisions[0].code is DecisionCode.OBTAIN_DATA
    assert all(d.code is not DecisionCode.PROCEED for d in decisions)



def test_facts_with_another_draft_keep_their_results_grouped_and_nothing_else() -> None:
    import dataclasses

    import pytest

    from app.engine.facts import DraftDose

    f = facts(measurements=_labs(T0), doses=[dose(T0 - timedelta(days=7))])
    grouped = f.series(Analyte.PLATELETS)
    draft = DraftDose(reference="next-dose", dose_date=T0)
    other = f.with_draft(draft, other_orders=())
    assert other == dataclasses.replace(f, draft=draft, other_orders=())  # the same facts as replace
    assert other.series(Analyte.PLATELETS) is grouped  # not regrouped
    with pytest.raises(ValueError):
        f.with_draft(draft, measurements=())  # new results would need their own grouping
