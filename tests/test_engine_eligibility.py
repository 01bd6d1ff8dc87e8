"""E-1..E-5: contraindications (EU vs US), age, CD22, blasts 10,000/mm3, premedication, fresh labs."""

from datetime import date, timedelta

from engine_factories import (
    condition,
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    measurement,
    medication,
    other_order,
    problem,
    reaction,
)

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.facts import Analyte, PatientInfo
from app.engine.rules import eligibility as E

A = Analyte
PREMEDS = [other_order(["corticosteroid"]), other_order(["antipyretic"]),
           other_order(["antihistamine"])]
FRESH = [measurement(a, v, day(0), uln=u) for a, v, u in
         ((A.ALT, 20, 40), (A.AST, 20, 40), (A.BILIRUBIN, 0.5, 1.2), (A.ALP, 80, 120),
          (A.ANC, 2.0, None), (A.PLATELETS, 150, None))] + [measurement(A.CD22, 85, day(-10))]


def first(*extra_ms, label=Label.EU, birth=date(1970, 1, 1), gender="female", **kw):
    kw.setdefault("other_orders", PREMEDS)
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=[*FRESH, *extra_ms],
              patient=PatientInfo(id="p1", birth_date=birth, gender=gender), **kw)
    return E.check_eligibility(context(f, course=make_course(1, 1), label=label))


def by_rule(ds, rid):
    return [d for d in ds if rid in d.rules]


def test_clean_first_dose_has_no_eligibility_cards():
    assert first() == []


# --- E-1 ---------------------------------------------------------------------------------------


def test_e1_eu_hypersensitivity_contraindicated_critical():
    ds = by_rule(first(reactions=[reaction("hypersensitivity", "moderate")]), "E-1")
    assert [(d.code, d.indicator) for d in ds] == [(C.CONTRAINDICATED, "critical")]
    assert ds[0].citations == ("SmPC 4.3",)


def test_e1_us_same_finding_is_caution():
    ds = by_rule(first(reactions=[reaction("hypersensitivity")], label=Label.US), "E-1")
    assert [d.code for d in ds] == [C.CAUTION]
    assert "USPI 4" in ds[0].citations and ds[0].label is Label.US


def test_e1_ongoing_vod_and_serious_hepatic_disease():
    for c in (condition("vod-sos"), condition("cirrhosis"),
              condition("nodular-regenerative-hyperplasia"), condition("active-hepatitis")):
        ds = by_rule(first(conditions=[c]), "E-1")
        assert [d.code for d in ds] == [C.CONTRAINDICATED], c.concept


def test_e1_resolved_cirrhosis_record_is_not_ongoing():
    assert by_rule(first(conditions=[condition("cirrhosis", clinical_status="resolved")]),
                   "E-1") == []


def test_e1_prior_confirmed_severe_vod_contraindicated_mild_only_caution():
    severe = condition("vod-sos", clinical_status="resolved", severity="severe",
                       verification_status="confirmed", onset=day(-200))
    assert by_rule(first(conditions=[severe]), "E-1")[0].code is C.CONTRAINDICATED
    mild = condition("vod-sos", clinical_status="resolved", severity="mild", onset=day(-200))
    assert by_rule(first(conditions=[mild]), "E-1")[0].code is C.CAUTION


# --- E-2 ---------------------------------------------------------------------------------------


def test_e2_age_17_caution_18_not():
    ds = by_rule(first(birth=date(2008, 6, 1)), "E-2")  # 17 on 2026-01-05
    assert [d.code for d in ds] == [C.CAUTION] and "17" in ds[0].summary
    assert by_rule(first(birth=date(2008, 1, 5)), "E-2") == []  # 18 on the day


def test_e2_cd22_missing_obtain_data_before_cycle_1():
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=FRESH[:-1], other_orders=PREMEDS)
    ds = by_rule(E.check_eligibility(context(f, course=make_course(1, 1))), "E-2")
    assert [d.code for d in ds] == [C.OBTAIN_DATA] and ds[0].needed_data == ("cd22",)


def test_e2_cd22_zero_percent_holds_the_first_dose():
    # Issue #8: a documented 0 % is never beside `proceed` (SmPC 4.2: > 0 % required).
    ds = by_rule(first(measurement(A.CD22, 0, day(-1))), "E-2")
    assert ds[0].code is C.HOLD and ds[0].critical


def test_e2_cd22_not_rechecked_after_cycle_1():
    d1 = dose(day(1), mg_per_m2=0.8)
    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[d1], other_orders=PREMEDS,
              measurements=[m for m in FRESH if m.analyte != A.CD22])
    course = make_course(1, 8, previous_dose=d1, cycles=[CycleHistory(1, day(1), (d1,))])
    assert by_rule(E.check_eligibility(context(f, course=course)), "E-2") == []


# --- E-3 ---------------------------------------------------------------------------------------


def test_e3_blasts_over_10000_per_mm3_caution_10000_not():
    ds = by_rule(first(measurement(A.PERIPHERAL_BLASTS, 10.5, day(0))), "E-3")
    assert [d.code for d in ds] == [C.CAUTION]
    assert "10,500/mm3" in ds[0].summary and "hydroxyurea" in ds[0].detail
    assert by_rule(first(measurement(A.PERIPHERAL_BLASTS, 10.0, day(0))), "E-3") == []


# --- E-4 ---------------------------------------------------------------------------------------


def test_e4_missing_antihistamine_caution_with_premedication_suggestion():
    ds = by_rule(first(other_orders=PREMEDS[:2]), "E-4")
    assert [d.code for d in ds] == [C.CAUTION]
    assert ds[0].suggest_premedication and "antihistamine" in ds[0].summary


def test_e4_active_medications_count_stopped_do_not():
    meds = [medication(["corticosteroid"]), medication(["antipyretic"]),
            medication(["antihistamine"], status="stopped")]
    ds = by_rule(first(other_orders=[], medications=meds), "E-4")
    assert "antihistamine" in ds[0].summary and "corticosteroid" not in ds[0].summary


def test_e4_high_tumour_burden_asks_for_uric_acid_lowering():
    ds = by_rule(first(measurement(A.PERIPHERAL_BLASTS, 30, day(0))), "E-4")
    assert "uric-acid" in ds[0].summary
    ok = first(measurement(A.PERIPHERAL_BLASTS, 30, day(0)),
               other_orders=[*PREMEDS, other_order(["uric-acid-lowering"])])
    assert by_rule(ok, "E-4") == []


# --- E-5 ---------------------------------------------------------------------------------------


def test_e5_stale_labs_obtain_data_with_both_panels():
    d1 = dose(day(1), mg_per_m2=0.8)
    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[d1], measurements=FRESH,
              other_orders=PREMEDS)
    course = make_course(1, 8, previous_dose=d1, cycles=[CycleHistory(1, day(1), (d1,))])
    ds = by_rule(E.check_eligibility(context(f, course=course)), "E-5")
    assert [d.code for d in ds] == [C.OBTAIN_DATA]
    assert ds[0].needed_data == ("hepatic-panel", "cbc-differential")
    assert "L-2" in ds[0].rules
    assert "2026-01-05" in ds[0].summary


def test_e5_only_cbc_missing():
    fresh_liver = [m for m in FRESH if m.analyte not in (A.ANC, A.PLATELETS)]
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=fresh_liver, other_orders=PREMEDS)
    ds = by_rule(E.check_eligibility(context(f, course=make_course(1, 1))), "E-5")
    assert ds[0].needed_data == ("cbc-differential",)


def test_e5_unusable_result_is_obtain_data_not_a_pass():
    bad = problem("alt", "unknown unit 'mg/ml/h'", effective=day(0, hours=1))
    ds = by_rule(first(problems=[bad]), "E-5")
    assert ds and ds[0].needed_data == ("hepatic-panel",) and "mg/ml/h" in ds[0].detail


def test_e5_labs_8_days_before_first_dose_are_stale():
    old = [measurement(m.analyte, m.value, day(1) - timedelta(days=8), uln=m.uln)
           for m in FRESH]
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=old, other_orders=PREMEDS)
    ds = by_rule(E.check_eligibility(context(f, course=make_course(1, 1))), "E-5")
    assert ds and ds[0].code is C.OBTAIN_DATA


def test_no_draft_no_eligibility_cards():
    f = facts(reactions=[reaction("hypersensitivity")])
    assert E.check_eligibility(context(f, course=make_course(None, None))) == []


def test_summaries_fit_140():
    ds = first(measurement(A.PERIPHERAL_BLASTS, 30, day(0)), other_orders=[],
               reactions=[reaction("hypersensitivity")], conditions=[condition("cirrhosis")],
               birth=date(2010, 1, 1))
    assert len(ds) >= 4 and all(len(d.summary) <= 140 for d in ds)
