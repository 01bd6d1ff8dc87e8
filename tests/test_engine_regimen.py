"""D-1..D-8 with the label's own numbers (SmPC 4.2 Table 1, Table 4, 4.9)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from engine_factories import (
    BSA_M2,
    T0,
    body,
    context,
    cycle_day,
    cycle_start_date,
    day,
    dose,
    draft,
    facts,
    label_history,
    procedure,
    response,
    weight,
)

from app.engine.bsa import bsa, dubois, mosteller
from app.engine.decisions import DecisionCode, Label
from app.engine.policy import Policy
from app.engine.regimen import cycle_total_mg_per_m2, expected_mg_per_m2
from app.engine.rules.regimen import check_regimen, recommendation, round_mg


def recent_body(when):
    """Height and weight on the day before T0 and again the day before `when` (stay fresh)."""
    return body() + body(when=when - timedelta(days=1))


def codes(decisions):
    return [d.code for d in decisions]


def run(f, **kw):
    return check_regimen(context(f, **kw))


# --- Table 1, D-1..D-3 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cycle, cr, expected",
    [
        (1, False, (0.8, 0.5, 0.5)),  # Cycle 1, all patients
        (1, True, (0.8, 0.5, 0.5)),
        (2, True, (0.5, 0.5, 0.5)),  # subsequent cycles with CR/CRi
        (2, False, (0.8, 0.5, 0.5)),  # subsequent cycles without CR/CRi
        (5, True, (0.5, 0.5, 0.5)),
        (6, False, (0.8, 0.5, 0.5)),
    ],
)
def test_table_1_every_row(cycle, cr, expected):
    assert tuple(expected_mg_per_m2(cycle, n, cr, 0) for n in (1, 2, 3)) == expected


def test_cycle_totals_are_1_8_and_1_5():
    assert cycle_total_mg_per_m2(1, False) == 1.8
    assert cycle_total_mg_per_m2(2, True) == 1.5
    assert cycle_total_mg_per_m2(2, False) == 1.8


def test_reduction_level_1_is_minus_25_percent_and_level_2_two_doses():
    assert [expected_mg_per_m2(2, n, False, 1) for n in (1, 2, 3)] == [0.6, 0.375, 0.375]
    assert cycle_total_mg_per_m2(2, False, 1) == pytest.approx(1.8 * 0.75)
    assert [expected_mg_per_m2(2, n, True, 2) for n in (1, 2, 3)] == [0.375, 0.375, None]


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        expected_mg_per_m2(0, 1, False)
    with pytest.raises(ValueError):
        expected_mg_per_m2(1, 4, False)
    with pytest.raises(ValueError):
        expected_mg_per_m2(1, 1, False, 3)


# --- BSA --------------------------------------------------------------------------------------


def test_bsa_known_values():
    assert mosteller(180, 80) == pytest.approx(2.0)  # sqrt(180*80/3600) = sqrt(4)
    assert mosteller(170, 70) == pytest.approx(1.8181, abs=1e-4)
    assert mosteller(160, 90) == pytest.approx(2.0)  # sqrt(4)
    assert dubois(170, 70) == pytest.approx(1.8097, abs=1e-4)
    assert bsa(170, 70, "dubois") == dubois(170, 70)
    with pytest.raises(ValueError):
        bsa(170, 70, "haycock")
    with pytest.raises(ValueError):
        mosteller(0, 70)


def test_rounding_to_policy_step():
    assert round_mg(0.5 * BSA_M2, 0.01) == 0.91
    assert round_mg(0.8 * BSA_M2, 0.01) == 1.45
    assert round_mg(0.8 * BSA_M2, 0.1) == 1.5
    assert round_mg(1.005, 0.01) == 1.01  # half up, no float noise


def test_dubois_selectable_by_policy():
    f = facts(draft=draft(T0, mg_per_m2=0.8), measurements=body())
    rec = recommendation(context(f, policy=Policy(bsa_formula="dubois")))
    assert rec.bsa_m2 == 1.81 and rec.mg == 1.45  # DuBois 1.8097 m2; 0.8 x 1.8097 = 1.448


# --- D-4 ----------------------------------------------------------------------------------------


def c1d8(ordered_m2=None, ordered_mg=None):
    return facts(draft=draft(day(8), mg_per_m2=ordered_m2, mg=ordered_mg),
                 doses=[dose(day(1), mg_per_m2=0.8)], measurements=body())


def test_right_dose_gives_no_decision_and_recommendation():
    f = c1d8(0.5)
    assert run(f) == []
    rec = recommendation(context(f))
    assert (rec.mg_per_m2, rec.mg, rec.bsa_m2, rec.cycle, rec.day) == (0.5, 0.91, 1.82, 1, 8)


def test_wrong_dose_correct_dose_with_numbers():
    [d] = run(c1d8(0.8))
    assert d.code is DecisionCode.CORRECT_DOSE and not d.critical
    assert d.summary == "Correct dose: 0.5 mg/m2 (0.91 mg) is due on Cycle 1 Day 8, not 0.8 mg/m2 (1.45 mg)"
    assert len(d.summary) < 140
    assert d.dose.mg_per_m2 == 0.5 and d.dose.mg == 0.91 and d.dose.day == 8
    assert "D-4" in d.rules and "D-1" in d.rules
    assert "SmPC 4.2 Table 1" in d.citations and "SmPC 4.2 Table 1" in d.detail
    assert "| Height | 170 | cm" in d.detail


@pytest.mark.parametrize("ordered, flagged", [(0.5245, False), (0.5255, True),
                                              (0.4755, False), (0.4745, True)])
def test_tolerance_boundary_4_9_vs_5_1_percent(ordered, flagged):
    assert (codes(run(c1d8(ordered))) == [DecisionCode.CORRECT_DOSE]) is flagged


def test_tolerance_is_policy():
    assert codes(run(c1d8(0.51), policy=Policy(dose_tolerance=0.03))) == []
    assert codes(run(c1d8(0.51), policy=Policy(dose_tolerance=0.01))) == [DecisionCode.CORRECT_DOSE]


def test_mg_order_is_divided_by_bsa():
    assert run(c1d8(ordered_mg=0.91)) == []  # 0.91 / 1.818 = 0.5005
    [d] = run(c1d8(ordered_mg=1.0))  # 0.55 mg/m2: 10 % over
    assert d.code is DecisionCode.CORRECT_DOSE and d.dose.mg == 0.91


def test_mg_and_mg_per_m2_both_checked():
    [d] = run(c1d8(ordered_m2=0.5, ordered_mg=1.2))  # mg/m2 right, mg 32 % too much
    assert d.code is DecisionCode.CORRECT_DOSE


def test_single_dose_maximum_0_8_is_critical():
    f = facts(draft=draft(T0, mg_per_m2=0.8), measurements=body())
    assert run(f) == []
    f = facts(draft=draft(T0, mg_per_m2=0.81), measurements=body())  # within 5 % but > 0.8
    [d] = run(f)
    assert d.code is DecisionCode.CORRECT_DOSE and d.critical and d.indicator == "critical"
    assert "SmPC 4.9" in d.citations and d.dose.mg_per_m2 == 0.8
    assert d.summary.startswith("Above max 0.8 mg/m2")


def test_mg_order_at_rounded_maximum_is_not_critical():
    # 0.8 x 1.8181 = 1.4545 -> 1.45 mg; on the BSA rounded to 1.82 m2, 0.8 x 1.82 = 1.456 ->
    # 1.46 mg (issue #8: the same rounding as D-4). 1.47 mg is 0.81 mg/m2: above the maximum.
    assert run(facts(draft=draft(T0, mg=1.45), measurements=body())) == []
    assert run(facts(draft=draft(T0, mg=1.46), measurements=body())) == []
    [d] = run(facts(draft=draft(T0, mg=1.47), measurements=body()))
    assert d.critical and "0.81 mg/m2" in d.summary


def test_cycle_maximum_1_8():
    # 0.8 + 0.5 given, 0.5 ordered on Day 15: exactly 1.8, fine
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5)]
    assert run(facts(draft=draft(day(15), mg_per_m2=0.5), doses=doses, measurements=body())) == []
    # 0.6 ordered: 20 % wrong and the cycle would total 1.9 > 1.8 -> critical
    [d] = run(facts(draft=draft(day(15), mg_per_m2=0.6), doses=doses, measurements=body()))
    assert d.code is DecisionCode.CORRECT_DOSE and d.critical and d.dose.mg_per_m2 == 0.5
    assert "1.9 mg/m2 > 1.8 mg/m2" in d.summary


def test_cycle_maximum_reached_by_doses_given_omits():
    doses = [dose(day(1), mg_per_m2=1.0), dose(day(8), mg_per_m2=0.5)]  # 1.5 given
    [d] = run(facts(draft=draft(day(15), mg_per_m2=0.5), doses=doses, measurements=body()))
    assert d.code is DecisionCode.OMIT_DOSE and d.critical and d.dose is None
    assert recommendation(context(facts(draft=draft(day(15), mg_per_m2=0.5), doses=doses,
                                        measurements=body()))) is None


def test_later_cycle_day_1_depends_on_response():
    h = label_history(1)
    start2 = cycle_start_date(2)
    cr = [response("CR", day(20))]
    no_cr = [response("PR", day(20))]
    # with CR/CRi: 0.5; 0.8 ordered is corrected
    f = facts(draft=draft(start2, mg_per_m2=0.8), doses=h, measurements=body(), responses=cr)
    [d] = run(f)
    assert d.code is DecisionCode.CORRECT_DOSE and d.dose.mg_per_m2 == 0.5 and "D-2" in d.rules
    # without CR/CRi: 0.8
    f = facts(draft=draft(start2, mg_per_m2=0.8), doses=h, measurements=body(), responses=no_cr)
    assert run(f) == []


def test_level_1_expected_after_reduced_doses():
    h = label_history(2, level=1)  # cycles 1-2 at 75 %
    f = facts(draft=draft(cycle_start_date(3) + timedelta(days=7), mg_per_m2=0.5), doses=h,
              measurements=recent_body(cycle_start_date(3)), responses=[response("CR", day(20))])
    [d] = run(f)
    assert d.dose.mg_per_m2 == 0.375 and d.dose.reduction_level == 1 and "D-3" in d.rules


def test_level_2_third_dose_is_omitted():
    h = label_history(2, level=2)  # two cycles of 2 doses at level-1 amounts
    start3 = cycle_start_date(3)
    doses = h + [dose(start3, mg_per_m2=0.375), dose(start3 + timedelta(days=7), mg_per_m2=0.375)]
    f = facts(draft=draft(start3 + timedelta(days=14), mg_per_m2=0.375), doses=doses,
              measurements=recent_body(start3), responses=[response("CR", day(20))])
    [d] = run(f)
    assert d.code is DecisionCode.OMIT_DOSE and "D-3" in d.rules
    assert "does not say which dose" in d.detail


def test_order_without_dose_gets_the_dose():
    [d] = run(facts(draft=draft(T0), measurements=body()))
    assert d.code is DecisionCode.CORRECT_DOSE and d.dose.mg == 1.45
    assert d.summary.startswith("Order has no usable dose: 0.8 mg/m2 (1.45 mg)")


# --- D-5 ----------------------------------------------------------------------------------------


def test_missing_height_or_weight_obtain_data():
    f = facts(draft=draft(T0, mg=1.45), measurements=[weight()])
    [d] = run(f)
    assert d.code is DecisionCode.OBTAIN_DATA and d.needed_data == ("height",) and "D-5" in d.rules
    f = facts(draft=draft(T0, mg_per_m2=0.8))
    [d] = run(f)
    assert d.needed_data == ("height", "weight")


def test_stale_weight_30_days_boundary():
    ok = facts(draft=draft(T0, mg_per_m2=0.8),
               measurements=[*body(when=T0 - timedelta(days=30))])
    assert run(ok) == []
    stale = facts(draft=draft(T0, mg_per_m2=0.8),
                  measurements=[*body(when=T0 - timedelta(days=31))])
    [d] = run(stale)
    assert d.code is DecisionCode.OBTAIN_DATA and d.needed_data == ("weight",)
    assert "31 days old (limit 30)" in d.summary


def test_mg_per_m2_order_still_checked_without_bsa():
    f = facts(draft=draft(T0, mg_per_m2=0.5))
    ds = run(f)
    assert codes(ds) == [DecisionCode.OBTAIN_DATA, DecisionCode.CORRECT_DOSE]
    assert ds[1].dose is None and "0.8 mg/m2" in ds[1].summary


def test_weight_change_10_percent_caution_institutional():
    base = [*body(), ]
    doses = [dose(day(1), mg_per_m2=0.8)]
    for kg, fires in ((63.1, False), (63.0, True), (77.0, True), (76.9, False)):
        f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=doses,
                  measurements=base + [weight(kg, day(7))])
        ds = run(f)
        assert (DecisionCode.CAUTION in codes(ds)) is fires, kg
        if fires:
            d = ds[0]
            assert "D-5" in d.rules and "institutional policy" in d.detail and "not a label" in d.detail


# --- D-6 ----------------------------------------------------------------------------------------


def test_six_days_between_doses_boundary():
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5)]
    [d] = run(facts(draft=draft(day(13), mg_per_m2=0.5), doses=doses, measurements=body()))
    assert d.code is DecisionCode.HOLD and d.hold_until == day(14).date()
    assert d.summary.startswith("Hold: 5 days since the last dose")
    assert run(facts(draft=draft(day(14), mg_per_m2=0.5), doses=doses, measurements=body())) == []


def test_new_cycle_too_early_hold():
    h = label_history(2, cr_from_cycle=2)
    # cycle 2 started on Day 22 (Jan 26); its Day 1 + 28 = planned cycle 3 start; -2 days allowed
    planned3 = cycle_start_date(3)
    f = facts(draft=draft(planned3 - timedelta(days=3), mg_per_m2=0.5), doses=h,
              measurements=recent_body(planned3 - timedelta(days=3)), responses=[response("CR", day(20))])
    [d] = run(f)
    assert d.code is DecisionCode.HOLD and d.hold_until == (planned3 - timedelta(days=2)).date()
    f = facts(draft=draft(planned3 - timedelta(days=2), mg_per_m2=0.5), doses=h,
              measurements=recent_body(planned3 - timedelta(days=2)), responses=[response("CR", day(20))])
    assert run(f) == []


# --- D-7, D-8 -----------------------------------------------------------------------------------


def cycle_facts(n, responses=(), procedures=(), m2=0.8):
    return facts(draft=draft(cycle_start_date(n), mg_per_m2=m2),
                 doses=label_history(n - 1, cr_from_cycle=None if m2 == 0.8 else 2),
                 measurements=recent_body(cycle_start_date(n)), responses=list(responses), procedures=list(procedures))


def test_d8_no_cr_within_3_cycles_discontinue_at_cycle_4():
    no_cr = [response("PR", day(20)), response("SD", cycle_start_date(3) + timedelta(days=20))]
    [d] = run(cycle_facts(4, no_cr))
    assert d.code is DecisionCode.DISCONTINUE and d.rules == ("D-8",) and d.critical
    assert "no CR/CRi within 3 cycles" in d.summary
    assert run(cycle_facts(3, no_cr)) == []  # cycle 3 is still allowed


def test_d8_cr_within_3_cycles_continues():
    cr = [response("CRi", cycle_start_date(2) + timedelta(days=20))]
    assert run(cycle_facts(4, cr, m2=0.5)) == []


def test_d8_response_unknown_obtain_data():
    ds = run(cycle_facts(4))
    assert DecisionCode.OBTAIN_DATA in codes(ds)
    assert any(d.rules == ("D-8",) and d.needed_data == ("disease-response",) for d in ds)


def test_d7_max_6_cycles_without_hsct():
    cr = [response("CR", day(20))]
    assert run(cycle_facts(6, cr, m2=0.5)) == []
    [d] = run(cycle_facts(7, cr, m2=0.5))
    assert d.code is DecisionCode.DISCONTINUE and d.rules == ("D-7",)
    assert "maximum of 6 cycles" in d.summary


HSCT = [procedure("hsct", "active", resource_type="ServiceRequest")]


def test_d7_hsct_planned_third_cycle():
    cr_mrd_neg = [response("CR", day(20), mrd_negative=True)]
    [d] = run(cycle_facts(3, cr_mrd_neg, HSCT, m2=0.5))
    assert d.code is DecisionCode.CAUTION and d.rules == ("D-7",) and not d.critical
    # without CR/CRi a third cycle may be considered: no card
    assert run(cycle_facts(3, [response("PR", day(20))], HSCT)) == []
    # CR with MRD positive: may be considered
    assert run(cycle_facts(3, [response("CR", day(20), mrd_negative=False)], HSCT, m2=0.5)) == []
    # MRD not documented: say so
    [d] = run(cycle_facts(3, [response("CR", day(20))], HSCT, m2=0.5))
    assert d.code is DecisionCode.CAUTION and "MRD not documented" in d.summary


def test_d7_hsct_planned_fourth_cycle_critical_caution_and_no_6_cycle_limit():
    cr = [response("CR", day(20))]
    [d] = run(cycle_facts(4, cr, HSCT, m2=0.5))
    assert d.code is DecisionCode.CAUTION and d.critical and d.indicator == "critical"
    assert "Cycle 4 exceeds the recommended 2" in d.summary


def test_us_label_cites_uspi():
    [d] = run(c1d8(0.8), label=Label.US)
    assert d.label is Label.US and d.citations[0].startswith("USPI 2.1")


def test_patient_view_d8_on_latest_cycle():
    h = label_history(4, cr_from_cycle=None)
    f = facts(doses=h, measurements=body(), responses=[response("PR", day(20))])
    ds = check_regimen(context(f, now=cycle_start_date(4) + timedelta(days=3)))
    assert codes(ds) == [DecisionCode.DISCONTINUE]


def test_explicit_cycle_day_wins():
    # Stated Cycle 2 Day 8 on a draft that inference would call Cycle 1 Day 15
    f = facts(draft=draft(day(15), mg_per_m2=0.5, explicit=cycle_day(2, 8)),
              doses=[dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5)],
              measurements=body())
    ctx = context(f)
    assert (ctx.course.cycle, ctx.course.day, ctx.course.dose_number, ctx.course.explicit) == (2, 8, 2, True)
    assert check_regimen(ctx) == []
    assert date(2026, 1, 19) == ctx.dose_date.date()


# --- D-4 with T-3 (SmPC 4.2 Table 4): the reduction after a >= 14-day interruption ---------------


def t3_case(ordered):
    # cycle 1 on schedule, cycle 2 Day 1 on Day 36: 14 days after the planned Day 22 (no CR)
    when = day(36)
    return facts(draft=draft(when, mg_per_m2=ordered), doses=label_history(1),
                 measurements=recent_body(when), responses=[response("PR", day(20))])


def test_t3_reduced_order_accepted_and_recommended():
    ctx = context(t3_case(0.6))
    assert ctx.course.interruptions[-1].days == 14
    assert check_regimen(ctx) == []
    rec = recommendation(ctx)
    assert (rec.mg_per_m2, rec.reduction_level) == (0.6, 1)  # 0.75 x 0.8


def test_t3_full_order_left_to_the_reduce_dose_card():
    assert check_regimen(context(t3_case(0.8))) == []  # T-3 (reduce-dose) says it; no re-escalation


def test_t3_wrong_order_corrected_to_reduced_dose():
    [d] = check_regimen(context(t3_case(0.5)))
    assert d.code is DecisionCode.CORRECT_DOSE and d.dose.mg_per_m2 == 0.6
    assert d.dose.reduction_level == 1
