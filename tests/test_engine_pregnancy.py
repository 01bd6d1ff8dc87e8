"""P-1 (SmPC 4.6: 8 months women, 5 months men, 2 months breastfeeding) and P-2 (live vaccines)."""

from datetime import date

from engine_factories import (
    condition,
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    medication,
    other_order,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.facts import PatientInfo
from app.engine.rules.pregnancy import check_pregnancy

D1 = dose(day(1), mg_per_m2=0.8)


def first(gender="female", birth=date(1990, 1, 1), **kw):
    f = facts(draft=draft(day(1), mg_per_m2=0.8),
              patient=PatientInfo(id="p", birth_date=birth, gender=gender), **kw)
    return check_pregnancy(context(f, course=make_course(1, 1)))


def later(**kw):
    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[D1],
              patient=PatientInfo(id="p", birth_date=date(1990, 1, 1), gender="female"), **kw)
    course = make_course(1, 8, previous_dose=D1, cycles=[CycleHistory(1, day(1), (D1,))])
    return check_pregnancy(context(f, course=course, now=day(8)))


def test_pregnancy_is_critical_caution_at_any_dose():
    ds = later(conditions=[condition("pregnancy")])
    assert [(d.code, d.critical, d.rules) for d in ds] == [(C.CAUTION, True, ("P-1",))]


def test_female_reproductive_potential_first_dose_8_months_and_pregnancy_test():
    ds = first()
    assert [d.code for d in ds] == [C.CAUTION]
    assert "8 months" in ds[0].summary and ds[0].needed_data == ("pregnancy-test",)


def test_male_first_dose_5_months():
    ds = first(gender="male")
    assert "5 months" in ds[0].summary


def test_counselling_only_before_the_first_dose_and_not_for_age_60():
    assert later() == []
    assert first(birth=date(1965, 1, 1)) == []


def test_breastfeeding_2_months():
    ds = later(conditions=[condition("breastfeeding")])
    assert ds[0].code is C.CAUTION and "2 months" in ds[0].summary


def test_p2_live_vaccine_ordered_with_the_drug():
    ds = later(other_orders=[other_order(["live-vaccine"], "MMR vaccine")])
    assert [(d.code, d.rules) for d in ds] == [(C.CAUTION, ("P-2",))]
    assert "MMR" in ds[0].summary


def test_p2_live_vaccine_order_for_patient_treated_before_no_draft():
    f = facts(doses=[D1], other_orders=[other_order(["live-vaccine"], "varicella vaccine")])
    ds = check_pregnancy(context(f, course=make_course(None, None), now=day(200)))
    assert ds and ds[0].rules == ("P-2",) and "B lymphocytes" in ds[0].detail


def test_p2_live_vaccine_given_14_days_before_start_counts_15_not():
    at14 = medication(["live-vaccine"], status="completed", start=day(1 - 14), display="MMR")
    assert [d.rules for d in first(birth=date(1960, 1, 1), medications=[at14])] == [("P-2",)]
    at15 = medication(["live-vaccine"], status="completed", start=day(1 - 15), display="MMR")
    assert first(birth=date(1960, 1, 1), medications=[at15]) == []


def test_p2_never_treated_no_draft_no_card():
    f = facts(other_orders=[other_order(["live-vaccine"], "MMR")])
    assert check_pregnancy(context(f, course=make_course(None, None))) == []
