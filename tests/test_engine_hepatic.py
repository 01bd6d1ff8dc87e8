"""L-1, L-2, L-3 (SmPC 4.2 Table 3) from the label's own thresholds: 1.5 x ULN, 2.5 x ULN, Grade 2/3."""

from engine_factories import (
    condition,
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    measurement,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.facts import Analyte
from app.engine.rules.hepatic import check_hepatic

A = Analyte
D1 = dose(day(1), mg_per_m2=0.8)
BASE = [measurement(A.BILIRUBIN, 0.6, day(0), uln=1.0), measurement(A.AST, 25, day(0), uln=40),
        measurement(A.ALT, 25, day(0), uln=40), measurement(A.LIPASE, 30, day(0), uln=60),
        measurement(A.QTC, 430, day(0))]


def day8(*ms, conditions=(), label=Label.EU, draft_=True):
    f = facts(draft=draft(day(8), mg_per_m2=0.5) if draft_ else None, doses=[D1],
              measurements=[*BASE, *ms], conditions=list(conditions))
    course = make_course(1, 8, previous_dose=D1, cycles=[CycleHistory(1, day(1), (D1,))])
    return check_hepatic(context(f, course=course, label=label, now=day(8)))


def liver(bili, ast, alt=30.0, when=day(7)):
    return [measurement(A.BILIRUBIN, bili, when, uln=1.0), measurement(A.AST, ast, when, uln=40),
            measurement(A.ALT, alt, when, uln=40)]


def codes(ds):
    return [(d.code, d.rules) for d in ds]


# --- L-2 ---------------------------------------------------------------------------------------


def test_l2_hold_above_both_thresholds():
    ds = day8(*liver(1.51, 101))
    assert [d.code for d in ds] == [C.HOLD]
    assert ds[0].rules[0] == "L-2"
    assert "bilirubin <= 1.5 x ULN" in ds[0].recovery_criteria
    assert ds[0].label is Label.EU and ds[0].citations == ("SmPC 4.2 Table 3",)


def test_l2_bilirubin_exactly_1_5_x_uln_does_not_hold():
    assert [d for d in day8(*liver(1.5, 120)) if "L-2" in d.rules] == []


def test_l2_ast_exactly_2_5_x_uln_does_not_hold():
    assert [d for d in day8(*liver(2.0, 100)) if "L-2" in d.rules] == []


def test_l2_alt_alone_above_2_5_with_bilirubin_holds():
    ds = day8(*liver(2.0, 30, alt=101))
    assert ds[0].code is C.HOLD and "ALT" in ds[0].summary


def test_l2_summary_matches_the_issue_example():
    ms = [measurement(A.BILIRUBIN, 2.1, day(7), uln=1.2), measurement(A.AST, 128, day(7), uln=40),
          measurement(A.ALT, 30, day(7), uln=40)]
    ds = day8(*ms)
    assert ds[0].summary == "Hold dose: bilirubin 2.1 mg/dL (1.8x ULN) with AST 3.2x ULN"
    table = ds[0].detail
    assert "| Total bilirubin | 2.1 | mg/dL | 1.2 | 1.75 | 2 |" in table
    assert "SmPC 4.2 Table 3" in table


def test_l2_applies_before_the_first_dose_too():
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=liver(2.0, 120, when=day(0)))
    ds = check_hepatic(context(f, course=make_course(1, 1)))
    assert [d.code for d in ds] == [C.HOLD]


def test_l2_waived_for_gilberts_syndrome_and_the_card_says_so():
    ds = day8(*liver(2.0, 120), conditions=[condition("gilbert-syndrome", clinical_status=None)])
    l2 = [d for d in ds if "L-2" in d.rules]
    assert [d.code for d in l2] == [C.CAUTION]
    assert "Gilbert" in l2[0].summary
    # AST 3x ULN (Grade 2, pre-treatment Grade 0) is still graded under L-3
    l3 = [d for d in ds if d.rules == ("L-3",)]
    assert l3 and "AST" in l3[0].summary and l3[0].code is C.HOLD


def test_l2_waived_for_active_haemolysis_not_resolved():
    assert any(d.code is C.CAUTION for d in day8(*liver(2.0, 120),
                                                  conditions=[condition("haemolysis")]))
    ds = day8(*liver(2.0, 120), conditions=[condition("haemolysis", clinical_status="resolved")])
    assert ds[0].code is C.HOLD and ds[0].rules[0] == "L-2"


def _persisting(draft_day: int):
    d8 = dose(day(8), mg_per_m2=0.5)
    ms = [*BASE, *liver(2.0, 120, when=day(10)), *liver(2.2, 130, when=day(draft_day - 1))]
    f = facts(draft=draft(day(draft_day), mg_per_m2=0.5), doses=[D1, d8], measurements=ms)
    course = make_course(1, 15, previous_dose=d8,
                         cycles=[CycleHistory(1, day(1), (D1, d8))])
    return check_hepatic(context(f, course=course))


def test_l2_not_recovered_after_more_than_28_days_discontinues():
    ds = _persisting(39)  # day 10 -> day 39: 29 days
    assert ds[0].code is C.DISCONTINUE and ds[0].critical
    assert "29 days" in ds[0].summary


def test_l2_28_days_exactly_is_still_a_hold():
    ds = _persisting(38)  # 28 days
    assert ds[0].code is C.HOLD


# --- L-3 ---------------------------------------------------------------------------------------


def test_l3_grade_3_liver_test_is_critical_with_discontinue_line():
    ds = day8(measurement(A.AST, 201, day(7), uln=40), measurement(A.ALT, 30, day(7), uln=40),
              measurement(A.BILIRUBIN, 0.8, day(7), uln=1.0))
    assert [(d.code, d.rules) for d in ds] == [(C.HOLD, ("L-3",))]
    assert ds[0].critical
    assert "permanently discontinue" in ds[0].detail
    assert "Grade 3" in ds[0].summary


def test_l3_grade_2_liver_test_not_critical():
    ds = day8(measurement(A.AST, 101, day(7), uln=40))
    assert ds[0].code is C.HOLD and not ds[0].critical
    assert "Grade <= 1" in ds[0].recovery_criteria


def test_l3_grade_1_does_not_hold():
    assert day8(measurement(A.AST, 100, day(7), uln=40)) == []


def test_l3_lipase_grade_3_holds_not_critical():
    ds = day8(measurement(A.LIPASE, 121, day(7), uln=60))
    assert ds[0].rules == ("L-3",) and not ds[0].critical
    assert "not-besponsa-related" in ds[0].override_reasons


def test_l3_not_above_pre_treatment_grade_does_not_hold():
    base_high = measurement(A.LIPASE, 100, day(0, hours=1), uln=60)  # Grade 2 before treatment
    assert day8(base_high, measurement(A.LIPASE, 110, day(7), uln=60)) == []
    ds = day8(base_high, measurement(A.LIPASE, 121, day(7), uln=60))  # Grade 3 > 2: holds
    assert ds and "Grade <= 2" in ds[0].recovery_criteria


def test_l3_qtc_grade_2_over_baseline_holds():
    ds = day8(measurement(A.QTC, 480, day(7)))
    assert ds and ds[0].rules == ("L-3",) and "QTc" in ds[0].summary


def test_l3_does_not_apply_before_the_first_dose():
    f = facts(draft=draft(day(1), mg_per_m2=0.8),
              measurements=[measurement(A.LIPASE, 200, day(0), uln=60)])
    assert check_hepatic(context(f, course=make_course(1, 1))) == []


def test_l2_and_l3_fold_into_one_card_with_grade_3_critical():
    ds = day8(*liver(2.0, 240))  # bilirubin Grade 2, AST 6x = Grade 3
    assert len(ds) == 1 and ds[0].rules == ("L-2", "L-3") and ds[0].critical


# --- L-1 ---------------------------------------------------------------------------------------


def test_l1_vod_after_first_dose_discontinues_critical():
    ds = day8(conditions=[condition("vod-sos", onset=day(6), verification_status="confirmed")])
    l1 = [d for d in ds if d.rules == ("L-1",)]
    assert l1[0].code is C.DISCONTINUE and l1[0].indicator == "critical"


def test_l1_severe_liver_toxicity_discontinues():
    ds = day8(conditions=[condition("severe-liver-toxicity", onset=day(5))])
    assert ds[0].code is C.DISCONTINUE


def test_l1_vod_before_treatment_is_not_l1():
    assert day8(conditions=[condition("vod-sos", onset=day(-60))]) == []


def test_l1_suspected_vod_holds_critical():
    ds = day8(conditions=[condition("vod-sos", onset=day(6), verification_status="provisional")])
    assert ds[0].code is C.HOLD and ds[0].critical


def test_l1_shows_in_patient_view_without_draft():
    ds = day8(conditions=[condition("vod-sos", onset=day(6))], draft_=False)
    assert [d.code for d in ds] == [C.DISCONTINUE]


def test_us_label_cites_uspi():
    ds = day8(*liver(1.51, 101), label=Label.US)
    assert ds[0].citations == ("USPI 2.3 Table 3",) and ds[0].label is Label.US


def test_summaries_fit_140():
    for ds in (day8(*liver(2.0, 240)), _persisting(39),
               day8(measurement(A.LIPASE, 121, day(7), uln=60),
                    measurement(A.AST, 201, day(7), uln=40),
                    measurement(A.QTC, 520, day(7)))):
        assert all(len(d.summary) <= 140 for d in ds)


def test_l2_long_standing_before_first_dose_is_a_hold_not_discontinue():
    ms = [*liver(2.0, 120, when=day(-60)), *liver(2.1, 125, when=day(0))]
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=ms)
    ds = check_hepatic(context(f, course=make_course(1, 1)))
    assert [d.code for d in ds] == [C.HOLD]


def test_patient_view_on_treatment_shows_the_hold_for_the_next_dose():
    ds = day8(*liver(2.1, 128), draft_=False)
    assert [d.code for d in ds] == [C.HOLD]
    assert ds[0].summary.startswith("Hold next dose: bilirubin 2.1 mg/dL")


def test_patient_view_long_after_treatment_only_l1():
    f = facts(doses=[D1], measurements=[*BASE, *liver(2.1, 128, when=day(90))])
    ds = check_hepatic(context(f, course=make_course(None, None, previous_dose=D1,
                                                     cycles=[CycleHistory(1, day(1), (D1,))]),
                               now=day(91)))
    assert ds == []
