"""Q-1 (SmPC 4.4, 4.5; USPI 5.5, 7): QT drugs, QTc > 500 / +60 ms, electrolytes, pre-cycle-1 data."""

from datetime import timedelta

from engine_factories import (
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    measurement,
    medication,
    other_order,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.facts import Analyte
from app.engine.rules.qt import check_qt

A = Analyte
PRE = [measurement(A.QTC, 430, day(-2), method="QTcF"), measurement(A.POTASSIUM, 4.0, day(0)),
       measurement(A.MAGNESIUM, 0.9, day(0))]


def first(*ms, **kw):
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=[*PRE, *ms], **kw)
    return check_qt(context(f, course=make_course(1, 1)))


def test_clean_first_dose_no_q1():
    assert first() == []


def test_active_qt_drug_caution():
    ds = first(medications=[medication(["qt-prolonging"], display="ondansetron")])
    assert [(d.code, d.rules) for d in ds] == [(C.CAUTION, ("Q-1",))]
    assert "ondansetron" in ds[0].summary


def test_qtc_over_500_caution_500_not():
    assert first(measurement(A.QTC, 500, day(0)))  == []
    ds = first(measurement(A.QTC, 501, day(0)))
    assert ds and "501 ms" in ds[0].summary


def test_low_potassium_by_reference_range_or_default():
    ds = first(measurement(A.POTASSIUM, 3.4, day(0, hours=1)))
    assert ds and "potassium" in ds[0].summary
    assert first(measurement(A.POTASSIUM, 3.5, day(0, hours=1))) == []
    ds2 = first(measurement(A.MAGNESIUM, 0.75, day(0, hours=1), lln=0.8))
    assert ds2 and "magnesium" in ds2[0].summary


def test_ecg_and_electrolytes_missing_before_cycle_1_obtain_data():
    f = facts(draft=draft(day(1), mg_per_m2=0.8))
    ds = check_qt(context(f, course=make_course(1, 1)))
    assert [(d.code, d.needed_data) for d in ds] == [(C.OBTAIN_DATA, ("ecg", "electrolytes"))]
    old_ecg = measurement(A.QTC, 420, day(1) - timedelta(days=29))
    f2 = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=[old_ecg, *PRE[1:]])
    ds2 = check_qt(context(f2, course=make_course(1, 1)))
    assert ds2[0].needed_data == ("ecg",)


def _on_treatment(qtc_value, qtc_day):
    d1, d8 = dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5)
    course = make_course(1, 15, previous_dose=d8, cycles=[CycleHistory(1, day(1), (d1, d8))])
    f = facts(draft=draft(day(15), mg_per_m2=0.5), doses=[d1, d8],
              measurements=[*PRE, measurement(A.QTC, qtc_value, day(qtc_day))])
    return check_qt(context(f, course=course))


def test_on_treatment_qtc_60_ms_over_baseline_caution_59_not():
    # QTc of day 5 is before the previous dose (day 8): not fresh, so L-3 does not grade it
    ds = _on_treatment(490, 5)
    assert ds and "+60 ms over baseline" in ds[0].summary
    assert _on_treatment(489, 5) == []


def test_fresh_grade_2_qtc_is_left_to_l3_hold_not_repeated():
    assert _on_treatment(490, 14) == []  # L-3 holds for it (tests/test_engine_hepatic.py)


def test_order_sign_of_qt_drug_for_patient_on_inotuzumab():
    d1 = dose(day(1), mg_per_m2=0.8)
    f = facts(doses=[d1], other_orders=[other_order(["qt-prolonging"], "levofloxacin")])
    ds = check_qt(context(f, course=make_course(None, None), now=day(10)))
    assert [(d.code, d.rules) for d in ds] == [(C.CAUTION, ("Q-1",))]
    assert "levofloxacin" in ds[0].summary and "2026-01-05" in ds[0].summary
    us = check_qt(context(f, course=make_course(None, None), now=day(10), label=Label.US))
    assert "alternative" in us[0].detail and us[0].citations == ("USPI 5.5", "USPI 7")


def test_order_sign_qt_drug_long_after_treatment_or_never_treated_no_card():
    d1 = dose(day(1), mg_per_m2=0.8)
    order = [other_order(["qt-prolonging"], "levofloxacin")]
    f = facts(doses=[d1], other_orders=order)
    assert check_qt(context(f, course=make_course(None, None), now=day(30))) == []
    assert check_qt(context(facts(other_orders=order), course=make_course(None, None))) == []


def test_order_sign_of_other_non_qt_drug_no_card():
    d1 = dose(day(1), mg_per_m2=0.8)
    f = facts(doses=[d1], other_orders=[other_order(["antipyretic"], "paracetamol")])
    assert check_qt(context(f, course=make_course(None, None), now=day(10))) == []
