"""H-1..H-5 (SmPC 4.2 Table 2; USPI 2.3 Table 2): ANC 1 and platelets 50 x10^9/L, both sides."""

from engine_factories import (
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    measurement,
    procedure,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.facts import Analyte
from app.engine.rules.haematological import check_haematological

A = Analyte
C1 = (dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5))
C2 = (dose(day(22), mg_per_m2=0.5), dose(day(29), mg_per_m2=0.5), dose(day(36), mg_per_m2=0.5))


def counts(anc, plt, when):
    return [measurement(A.ANC, anc, when), measurement(A.PLATELETS, plt, when)]


def cycle2_day1(base_anc, base_plt, anc, plt, *extra, label=Label.EU, when=day(22),
                procedures=()):
    ms = [*counts(base_anc, base_plt, day(0)), *counts(anc, plt, when - (day(2) - day(1))), *extra]
    f = facts(draft=draft(when, mg_per_m2=0.5), doses=list(C1), measurements=ms,
              procedures=list(procedures))
    course = make_course(2, 1, cycle_start=when, previous_dose=C1[-1],
                         cycles=[CycleHistory(1, day(1), C1)])
    return check_haematological(context(f, course=course, label=label, now=when))


def test_h2_anc_below_1_holds_at_0_99_not_at_1():
    ds = cycle2_day1(2.0, 150, 0.99, 150)
    assert [(d.code, d.rules) for d in ds] == [(C.HOLD, ("H-2",))]
    assert "ANC >= 1" in ds[0].recovery_criteria
    assert "0.99" in ds[0].summary
    assert cycle2_day1(2.0, 150, 1.0, 150) == []


def test_h3_platelets_below_50_holds_at_49_not_at_50():
    ds = cycle2_day1(2.0, 150, 2.0, 49)
    assert [(d.code, d.rules) for d in ds] == [(C.HOLD, ("H-3",))]
    assert "Platelets >= 50" in ds[0].recovery_criteria
    assert cycle2_day1(2.0, 150, 2.0, 50) == []


def test_h1_day_8_low_anc_gives_no_hold():
    d1 = C1[0]
    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[d1],
              measurements=[*counts(2.0, 150, day(0)), *counts(0.2, 10, day(7))])
    course = make_course(1, 8, previous_dose=d1, cycles=[CycleHistory(1, day(1), (d1,))])
    assert check_haematological(context(f, course=course)) == []


def test_h1_day_15_of_cycle_2_gives_no_hold():
    f = facts(draft=draft(day(36), mg_per_m2=0.5), doses=[*C1, *C2[:2]],
              measurements=[*counts(2.0, 150, day(0)), *counts(0.2, 10, day(35))])
    course = make_course(2, 15, previous_dose=C2[1],
                         cycles=[CycleHistory(1, day(1), C1), CycleHistory(2, day(22), C2[:2])])
    assert check_haematological(context(f, course=course)) == []


def test_h1_cycle_1_day_1_is_not_gated_by_counts():
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=counts(0.3, 20, day(0)))
    assert check_haematological(context(f, course=make_course(1, 1))) == []


def test_h4_low_baseline_decrease_holds_with_disease_override():
    ds = cycle2_day1(0.5, 30, 0.4, 35)
    assert [(d.code, d.rules) for d in ds] == [(C.HOLD, ("H-4",))]
    assert "due-to-underlying-disease" in ds[0].override_reasons
    assert "ANC >= 1 and platelets >= 50" in ds[0].recovery_criteria


def test_h4_low_baseline_no_decrease_no_hold():
    assert cycle2_day1(0.5, 30, 0.5, 30) == []
    assert cycle2_day1(0.5, 30, 0.6, 35) == []


def test_h4_recovered_to_1_and_50_is_no_hold_even_below_prior_baseline():
    # pre-treatment ANC 0.5 (low) but platelets 120 (normal): platelets now 60 (< 120, >= 50)
    assert cycle2_day1(0.5, 120, 1.0, 60) == []


def test_h3_and_h4_together_on_one_card():
    ds = cycle2_day1(0.5, 100, 1.2, 40)
    assert len(ds) == 1 and set(ds[0].rules) == {"H-3", "H-4"}


def test_h4_cycle_3_compares_with_baseline_before_cycle_2():
    ms = [*counts(0.5, 30, day(0)), *counts(0.8, 45, day(21)), *counts(0.7, 40, day(49))]
    f = facts(draft=draft(day(50), mg_per_m2=0.5), doses=[*C1, *C2], measurements=ms)
    course = make_course(3, 1, cycle_start=day(50), previous_dose=C2[-1],
                         cycles=[CycleHistory(1, day(1), C1), CycleHistory(2, day(22), C2)])
    ds = check_haematological(context(f, course=course))
    assert ds[0].rules == ("H-4",)
    assert "0.8" in ds[0].summary  # the cycle 2 baseline, not the pre-treatment 0.5
    # at the cycle 2 baseline exactly: no decrease
    ms[-2:] = counts(0.8, 45, day(49))
    f2 = facts(draft=draft(day(50), mg_per_m2=0.5), doses=[*C1, *C2], measurements=ms)
    assert check_haematological(context(f2, course=course)) == []


def test_platelets_after_transfusion_ignored_and_card_says_so():
    tx = procedure("platelet-transfusion", "completed", performed=day(21, hours=1))
    ds = cycle2_day1(2.0, 150, 2.0, 40, measurement(A.PLATELETS, 90, day(21, hours=10)),
                     procedures=[tx])
    assert ds[0].code is C.HOLD and ds[0].rules == ("H-3",)
    assert "transfusion" in ds[0].detail


def test_unknown_pre_treatment_count_with_low_count_is_obtain_data():
    f = facts(draft=draft(day(22), mg_per_m2=0.5), doses=list(C1),
              measurements=counts(0.6, 150, day(21)))
    course = make_course(2, 1, cycle_start=day(22), previous_dose=C1[-1],
                         cycles=[CycleHistory(1, day(1), C1)])
    ds = check_haematological(context(f, course=course))
    assert [d.code for d in ds] == [C.OBTAIN_DATA]


def _persist(label, low_from):
    when = day(50)
    ms = [*counts(2.0, 150, day(0)), measurement(A.ANC, 1.5, day(low_from - 3)),
          measurement(A.ANC, 0.8, day(low_from)), measurement(A.ANC, 0.7, day(49)),
          measurement(A.PLATELETS, 150, day(49))]
    f = facts(draft=draft(when, mg_per_m2=0.5), doses=list(C1), measurements=ms)
    course = make_course(2, 1, cycle_start=when, previous_dose=C1[-1],
                         cycles=[CycleHistory(1, day(1), C1)])
    return check_haematological(context(f, course=course, label=label, now=when))


def test_h5_us_low_anc_persisting_over_28_days_discontinues():
    ds = _persist(Label.US, 21)  # day 21 -> day 50: 29 days
    assert ds[0].code is C.DISCONTINUE and ds[0].rules[0] == "H-5"
    assert ds[0].citations == ("USPI 2.3 Table 2",)
    assert "suspected" in ds[0].detail


def test_h5_us_28_days_is_still_a_hold():
    ds = _persist(Label.US, 22)  # 28 days
    assert [d.code for d in ds] == [C.HOLD]


def test_h5_does_not_apply_under_the_eu_label():
    ds = _persist(Label.EU, 16)
    assert [d.code for d in ds] == [C.HOLD]
