"""T-1..T-4 (SmPC 4.2 Table 4): 7, 14 and 28 days, both sides."""

from datetime import date

import pytest
from engine_factories import (
    BSA_M2,
    body,
    context,
    day,
    dose,
    draft,
    facts,
    interruption,
    make_course,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.rules.interruption import check_interruption

D1 = dose(day(1), mg_per_m2=0.8)
C1 = (D1, dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5))


# --- T-1 ---------------------------------------------------------------------------------------


def _t1(draft_day):
    d8 = dose(day(11), mg_per_m2=0.5)  # Day 8 dose 3 days late
    f = facts(draft=draft(day(draft_day), mg_per_m2=0.5), doses=[D1, d8])
    course = make_course(1, draft_day, dose_number=3, previous_dose=d8,
                         cycles=[CycleHistory(1, day(1), (D1, d8))],
                         interruptions=[interruption(day(8), 3, cycle=1)])
    return check_interruption(context(f, course=course))


def test_t1_short_interruption_keeps_6_days_between_doses():
    ds = _t1(15)  # 4 days after the delayed dose
    assert [(d.code, d.rules) for d in ds] == [(C.HOLD, ("T-1",))]
    assert ds[0].hold_until == date(2026, 1, 21)  # day 17 = 11 + 6
    assert ds[0].inferred and "interruption-not-due-to-toxicity" in ds[0].override_reasons


def test_t1_six_days_after_is_fine():
    assert _t1(17) == []


# --- T-2 ---------------------------------------------------------------------------------------


def _t2(draft_day, late, dose_number=2, cycle=1, start_day=1, prev_day=1):
    prev = dose(day(prev_day), mg_per_m2=0.5)
    f = facts(draft=draft(day(draft_day), mg_per_m2=0.5), doses=[prev])
    own = interruption(day(draft_day - late), late, cycle=cycle)
    course = make_course(cycle, draft_day - start_day + 1, dose_number=dose_number,
                         cycle_start=day(start_day), previous_dose=prev,
                         cycles=[CycleHistory(cycle, day(start_day), (prev,))],
                         interruptions=[own])
    return check_interruption(context(f, course=course))


def test_t2_day8_dose_7_days_late_counts_as_day_15_dose():
    ds = _t2(15, 7)
    assert [(d.code, d.rules) for d in ds] == [(C.CAUTION, ("T-2",))]
    assert "Day 15" in ds[0].summary and "no further dose" in ds[0].summary


def test_t2_six_days_late_is_not_t2():
    assert _t2(14, 6) == []


def test_t2_day15_dose_7_days_late_is_omitted_until_next_cycle():
    # cycle 2 started day 22; Day 8 dose on day 29; Day 15 dose planned day 36, ordered day 43
    ds = _t2(43, 7, dose_number=3, cycle=2, start_day=22, prev_day=29)
    assert [(d.code, d.rules) for d in ds] == [(C.OMIT_DOSE, ("T-2",))]
    assert ds[0].hold_until == date(2026, 2, 23)  # day 50 = cycle 3 Day 1
    assert "cycle 3 Day 1" in ds[0].summary


# --- T-3 / T-4 ---------------------------------------------------------------------------------


def _next_cycle(late, level=0, ordered=0.8, response="no-CR", label=Label.EU):
    when = day(22 + late)
    f = facts(draft=draft(when, mg_per_m2=ordered), doses=list(C1), measurements=body(when=day(21)))
    course = make_course(2, 1, cycle_start=when, previous_dose=C1[-1], reduction_level=level,
                         cycles=[CycleHistory(1, day(1), C1)], response=response,
                         interruptions=[interruption(day(22), late, within_cycle=False, cycle=2)])
    return check_interruption(context(f, course=course, label=label))


def test_t3_14_days_reduces_next_cycle_by_25_percent():
    ds = _next_cycle(14)
    assert [(d.code, d.rules) for d in ds] == [(C.REDUCE_DOSE, ("T-3",))]
    dr = ds[0].dose
    assert dr.mg_per_m2 == 0.6 and dr.reduction_level == 1 and dr.day == 1 and dr.cycle == 2
    assert dr.mg == pytest.approx(round(0.6 * BSA_M2, 2))
    assert "once adequate recovery" in ds[0].detail


def test_t3_with_cr_reduces_0_5_to_0_375():
    ds = _next_cycle(14, ordered=0.5, response="CR")
    assert ds[0].dose.mg_per_m2 == 0.375


def test_t3_13_days_no_reduction():
    assert _next_cycle(13) == []


def test_t3_level_1_goes_to_two_doses_per_cycle():
    ds = _next_cycle(14, level=1, ordered=0.6)
    assert ds[0].code is C.REDUCE_DOSE and ds[0].dose.reduction_level == 2
    assert "2 doses per cycle" in ds[0].summary
    assert "clinician's choice" in ds[0].detail


def test_t3_level_2_already_discontinues():
    ds = _next_cycle(14, level=2, ordered=0.6)
    assert [(d.code, d.critical) for d in ds] == [(C.DISCONTINUE, True)]


def test_t3_already_ordered_at_the_reduced_dose_is_silent():
    assert _next_cycle(14, ordered=0.6) == []


def test_t3_never_suggests_above_the_level_in_force():
    for level in (0, 1):
        for resp in ("CR", "no-CR"):
            ds = _next_cycle(20, level=level, ordered=0.8, response=resp)
            dr = ds[0].dose
            assert dr.mg_per_m2 <= 0.8 * 0.75 + 1e-9 and dr.reduction_level == level + 1


def test_t4_over_28_days_consider_discontinue():
    ds = _next_cycle(29)
    assert [d.code for d in ds] == [C.REDUCE_DOSE, C.CONSIDER_DISCONTINUE]
    t4 = ds[1]
    assert t4.rules == ("T-4",) and "29 days" in t4.summary and not t4.critical
    assert "clinician" in t4.detail


def test_t4_28_days_exactly_only_reduces():
    assert [d.code for d in _next_cycle(28)] == [C.REDUCE_DOSE]


def test_previous_cycle_within_cycle_interruption_counts_for_t3():
    f = facts(draft=draft(day(36), mg_per_m2=0.8), doses=list(C1), measurements=body(when=day(35)))
    course = make_course(2, 1, cycle_start=day(36), previous_dose=C1[-1],
                         cycles=[CycleHistory(1, day(1), C1)],
                         interruptions=[interruption(day(8), 14, cycle=1)])
    ds = check_interruption(context(f, course=course))
    assert ds[0].code is C.REDUCE_DOSE


def test_missing_body_size_still_reduces_without_mg():
    when = day(36)
    f = facts(draft=draft(when, mg_per_m2=0.8), doses=list(C1))
    course = make_course(2, 1, cycle_start=when, previous_dose=C1[-1],
                         cycles=[CycleHistory(1, day(1), C1)],
                         interruptions=[interruption(day(22), 14, within_cycle=False, cycle=2)])
    ds = check_interruption(context(f, course=course))
    assert ds[0].code is C.REDUCE_DOSE and ds[0].dose is None
    assert "0.6 mg/m2" in ds[0].summary


def test_summaries_fit_140():
    for ds in (_next_cycle(29), _next_cycle(14, level=1, ordered=0.6), _t1(15), _t2(15, 7)):
        assert all(len(d.summary) <= 140 for d in ds)


def test_required_reduction_level_helper_for_the_regimen_rules():
    from app.engine.rules.interruption import required_reduction_level

    def level(late, lvl):
        when = day(22 + late)
        f = facts(draft=draft(when, mg_per_m2=0.8), doses=list(C1))
        course = make_course(2, 1, cycle_start=when, previous_dose=C1[-1], reduction_level=lvl,
                             cycles=[CycleHistory(1, day(1), C1)],
                             interruptions=[interruption(day(22), late, within_cycle=False,
                                                         cycle=2)])
        return required_reduction_level(context(f, course=course))

    assert level(13, 0) == 0
    assert level(14, 0) == 1
    assert level(14, 1) == 2
    assert level(14, 2) is None
