"""Course and dose defects of issue #8, with the label's numbers (SmPC 4.2 Tables 1-4, 4.9).

- C-3 reduction level when no weight is dated before the past doses (never assume level 0);
- the SmPC 4.9 ceiling on an mg order computed on a rounded BSA (0.8, not 0.802 mg/m2);
- one reading of "which dose is this" after an omitted within-cycle dose (T-2);
- a documented CD22 of 0 % never beside `proceed` (E-2);
- nothing proposes the next dose of a treatment a `discontinue` stops.
"""

from __future__ import annotations

from datetime import timedelta

from engine_factories import (
    BSA_M2,
    body,
    clean_facts,
    context,
    cycle_day,
    cycle_start_date,
    day,
    dose,
    draft,
    facts,
    height,
    measurement,
    normal_labs,
    premedication_orders,
    response,
    weight,
)

from app.engine.course import reconstruct_course
from app.engine.decisions import DecisionCode as C
from app.engine.evaluate import evaluate
from app.engine.facts import Analyte
from app.engine.policy import Policy
from app.engine.regimen import mg_per_m2_of_mg
from app.engine.rules.regimen import check_regimen, dose_plan


def _mg(m2: float, bsa: float = BSA_M2) -> float:
    return round(m2 * bsa, 2)


def _mg_only_history(c2_level: int = 1) -> list:
    """Cycle 1 at the label dose and Cycle 2 (no CR) at `c2_level`, every dose recorded in mg only."""
    f = 0.75 if c2_level else 1.0
    c2 = cycle_start_date(2)
    return [dose(day(1), mg=_mg(0.8)), dose(day(8), mg=_mg(0.5)), dose(day(15), mg=_mg(0.5)),
            dose(c2, mg=_mg(0.8 * f)), dose(c2 + timedelta(days=7), mg=_mg(0.5 * f)),
            dose(c2 + timedelta(days=14), mg=_mg(0.5 * f))]


def _late_body_facts(draft_, doses, **kw):
    """Normal fresh labs and premedication; height and weight only on the day before the draft
    (no weight dated before any past dose)."""
    when = draft_.dose_date
    ms = (normal_labs(day(0)) + normal_labs(when - timedelta(hours=20))
          + body(when=when - timedelta(hours=20)))
    kw.setdefault("other_orders", premedication_orders())
    kw.setdefault("responses", [response("PR", day(40))])  # assessed: no CR/CRi (0.8 regimen)
    return facts(draft=draft_, doses=doses, measurements=ms, **kw)


# --- C-3: reduction level without a weight at dose time -----------------------------------------


def test_level_1_inferred_from_the_nearest_weight_when_no_weight_precedes_the_doses():
    c3 = cycle_start_date(3)
    f = _late_body_facts(draft(c3, mg_per_m2=0.8), _mg_only_history(1))
    course = reconstruct_course(f, c3, Policy())
    assert course.reduction_level == 1
    notes = " ".join(course.notes)
    assert "dose amount unknown" not in notes
    assert "assum" in notes and "weight" in notes  # the assumption is stated
    ds = evaluate(f, c3)
    assert C.PROCEED not in [d.code for d in ds]  # no re-escalation to 0.8 mg/m2 (SmPC 4.2)
    fix = [d for d in ds if d.code is C.CORRECT_DOSE]
    assert fix and fix[0].dose.mg_per_m2 == 0.6 and fix[0].dose.reduction_level == 1


def test_level_1_inferred_from_mg_ratios_when_no_weight_is_near_the_doses():
    c3 = cycle_start_date(3)
    f = _late_body_facts(draft(c3, mg_per_m2=0.8), _mg_only_history(1))
    policy = Policy(weight_max_age_days=10)  # every past dose is > 10 days from the only weight
    course = reconstruct_course(f, c3, policy)
    assert course.reduction_level == 1
    assert any("ratio" in n and "Cycle 1 Day 1" in n for n in course.notes)
    assert C.PROCEED not in [d.code for d in evaluate(f, c3, policy)]


def test_level_0_history_in_mg_only_still_proceeds_at_the_label_dose():
    c3 = cycle_start_date(3)
    f = _late_body_facts(draft(c3, mg_per_m2=0.8), _mg_only_history(0))
    course = reconstruct_course(f, c3, Policy())
    assert course.reduction_level == 0 and not course.reduction_level_unknown
    ds = evaluate(f, c3)
    assert [d.code for d in ds] == [C.PROCEED] and ds[0].dose.mg_per_m2 == 0.8


def test_unknown_level_is_said_and_no_dose_is_suggested():
    # Cycle 2 administrations carry no dose amount at all: its level cannot be known.
    c2, c3 = cycle_start_date(2), cycle_start_date(3)
    hist = _mg_only_history(1)[:3] + [dose(c2), dose(c2 + timedelta(days=7)),
                                      dose(c2 + timedelta(days=14))]
    f = _late_body_facts(draft(c3, mg_per_m2=0.8), hist)
    course = reconstruct_course(f, c3, Policy())
    assert course.reduction_level_unknown
    ds = evaluate(f, c3)
    assert C.PROCEED not in [d.code for d in ds]
    assert all(d.dose is None for d in ds)
    od = [d for d in ds if d.code is C.OBTAIN_DATA and "C-3" in d.rules]
    assert od and "reduction level" in od[0].summary.lower() and od[0].evidence


def test_unknown_level_with_a_t3_interruption_suggests_no_reduced_dose():
    c2 = cycle_start_date(2)
    when = cycle_start_date(3) + timedelta(days=14)
    hist = _mg_only_history(1)[:3] + [dose(c2), dose(c2 + timedelta(days=7)),
                                      dose(c2 + timedelta(days=14))]
    ds = evaluate(_late_body_facts(draft(when, mg_per_m2=0.8), hist), when)
    assert C.REDUCE_DOSE in [d.code for d in ds] and all(d.dose is None for d in ds)


def test_no_false_dose_amount_unknown_line_for_mg_doses():
    # demo-wrong-dose: Day 1 given in mg, the only weight is from yesterday (after the dose).
    f = _late_body_facts(draft(day(8), mg=1.33), [dose(day(1), mg=_mg(0.8))])
    ds = evaluate(f, day(8))
    assert ds and all("amount unknown" not in d.detail and "no recorded amount" not in d.detail
                      for d in ds), [d.detail for d in ds]
    assert dose_plan(context(f)).given_in_cycle_mg_per_m2 == 0.8  # the Day 1 dose is counted


# --- SmPC 4.9 ceiling with the same rounding as D-4 ----------------------------------------------


def _rounded_bsa_body(when):
    # Mosteller 172 cm x 71.3 kg = 1.8457 m2 (1.85 rounded): 0.8 x 1.85 = 1.48 mg = "0.802 mg/m2"
    return [height(172, when), weight(71.3, when)]


def test_mg_per_m2_of_mg_takes_the_precision_the_dose_has():
    assert mg_per_m2_of_mg(1.48, 1.8457, 0.01) == 0.8
    assert mg_per_m2_of_mg(1.33, 1.66, 0.01) == 0.8
    assert mg_per_m2_of_mg(0.68, BSA_M2, 0.01) == 0.375
    assert mg_per_m2_of_mg(1.5, 1.8457, 0.01) == 0.81  # really above 0.8 (1.48 is the maximum)


def test_standard_dose_on_rounded_bsa_is_not_above_the_maximum():
    c2 = cycle_start_date(2)
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5),
             dose(day(15), mg_per_m2=0.5)]
    f = clean_facts(draft(c2, mg=1.48), doses,
                    extra_measurements=_rounded_bsa_body(c2 - timedelta(hours=2)))
    ds = check_regimen(context(f))  # response unknown at Cycle 2 Day 1: only the maxima apply
    assert not [d for d in ds if d.critical], [d.summary for d in ds]
    assert dose_plan(context(f)).ordered_mg_per_m2 == 0.8
    text = " ".join(d.summary + d.detail for d in evaluate(f, c2))
    assert "0.802" not in text


def test_dose_just_above_the_maximum_stays_critical():
    c2 = cycle_start_date(2)
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5),
             dose(day(15), mg_per_m2=0.5)]
    f = clean_facts(draft(c2, mg=1.5), doses,
                    extra_measurements=_rounded_bsa_body(c2 - timedelta(hours=2)))
    ds = check_regimen(context(f))
    assert [d.code for d in ds if d.critical] == [C.CORRECT_DOSE]
    assert "0.81 mg/m2" in ds[-1].summary


def test_mg_order_correct_dose_text_shows_0_8_not_0_802():
    f = clean_facts(draft(day(8), mg=1.48), [dose(day(1), mg_per_m2=0.8)],
                    extra_measurements=_rounded_bsa_body(day(8) - timedelta(hours=2)))
    ds = [d for d in evaluate(f, day(8)) if d.code is C.CORRECT_DOSE]
    assert ds and "0.8 mg/m2 (1.48 mg)" in ds[0].summary, ds[0].summary


# --- E-2: a documented CD22 of 0 % never sits beside proceed (SmPC 4.2) --------------------------


def _first_dose_with_cd22(value, comparator=None):
    f = clean_facts(draft(day(1), mg_per_m2=0.8))
    ms = [m for m in f.measurements if m.analyte is not Analyte.CD22]
    ms.append(measurement(Analyte.CD22, value, day(-2), comparator=comparator))
    return facts(draft=f.draft, measurements=ms, other_orders=f.other_orders)


def test_cd22_zero_percent_holds_and_never_sits_beside_proceed():
    ds = evaluate(_first_dose_with_cd22(0.0), day(1))
    assert C.PROCEED not in [d.code for d in ds]
    e2 = [d for d in ds if "E-2" in d.rules]
    assert [d.code for d in e2] == [C.HOLD] and e2[0].critical
    assert "> 0 %" in e2[0].recovery_criteria and e2[0].evidence


def test_cd22_below_a_detection_limit_is_not_positivity():
    ds = evaluate(_first_dose_with_cd22(1.0, "<"), day(1))
    assert C.PROCEED not in [d.code for d in ds]
    e2 = [d for d in ds if "E-2" in d.rules]
    assert [d.code for d in e2] == [C.OBTAIN_DATA] and e2[0].needed_data == ("cd22",)


def test_cd22_positive_proceeds():
    ds = evaluate(_first_dose_with_cd22(1.0), day(1))
    assert [d.code for d in ds if "P-1" not in d.rules] == [C.PROCEED]


# --- a discontinue stops the treatment: nothing proposes its next dose ---------------------------

C1_DOSES = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5), dose(day(15), mg_per_m2=0.5)]


def _charted(draft_, doses, extra, *, skip=(), responses=None):
    """Pre-treatment and fresh normal labs (minus `skip`), height and weight, premedication and a
    no-CR response, plus `extra` measurements."""
    when = draft_.dose_date
    ms = (normal_labs(day(0)) + body(when=day(0)) + normal_labs(when - timedelta(hours=20), skip)
          + body(when=when - timedelta(hours=20)) + list(extra))
    return facts(draft=draft_, doses=doses, measurements=ms, other_orders=premedication_orders(),
                 responses=responses if responses is not None else [response("PR", day(20))])


def _h5_chart(low_from: int):
    # US: ANC 2.0 before treatment; below 1 x10^9/L since day `low_from`; Cycle 2 Day 1 on day 50
    # (planned day 22: a 28-day interruption, so T-3 asks for a reduced Cycle 2).
    extra = [measurement(Analyte.ANC, 1.5, day(low_from - 3)),
             measurement(Analyte.ANC, 0.8, day(low_from)), measurement(Analyte.ANC, 0.7, day(49))]
    return _charted(draft(day(50), mg_per_m2=0.8), C1_DOSES, extra, skip=(Analyte.ANC,))


def test_h5_discontinue_leaves_no_reduced_dose_on_the_t3_card():
    ds = evaluate(_h5_chart(21), day(50), label="US")  # 29 days low (> 28)
    by = {d.code: d for d in ds}
    assert by[C.DISCONTINUE].rules[0] == "H-5"
    assert C.REDUCE_DOSE in by and by[C.REDUCE_DOSE].dose is None
    assert "discontinue" in by[C.REDUCE_DOSE].detail.lower()
    assert all(d.dose is None for d in ds)


def test_h5_28_days_low_holds_and_the_reduced_dose_is_still_proposed():
    ds = evaluate(_h5_chart(22), day(50), label="US")  # 28 days: not > 28
    assert C.DISCONTINUE not in [d.code for d in ds]
    red = [d for d in ds if d.code is C.REDUCE_DOSE]
    assert [d.code for d in ds if d.code is C.HOLD] and red[0].dose.mg_per_m2 == 0.6


def test_h5_is_us_only():
    ds = evaluate(_h5_chart(16), day(50), label="EU")
    assert C.DISCONTINUE not in [d.code for d in ds]


def _l2_chart(draft_day: int):
    # Bilirubin 2.0 mg/dL (1.67 x ULN 1.2) and AST 120 U/L (3 x ULN 40) since day 10, after the
    # Day 8 dose; the order is Cycle 2 Day 1 (planned day 22: T-3 once >= 14 days late).
    def liver(bili, ast, when):
        return [measurement(Analyte.BILIRUBIN, bili, when, uln=1.2),
                measurement(Analyte.AST, ast, when, uln=40.0)]
    extra = liver(2.0, 120, day(10)) + liver(2.2, 130, day(draft_day - 1))
    return _charted(draft(day(draft_day), mg_per_m2=0.8), C1_DOSES[:2], extra,
                    skip=(Analyte.BILIRUBIN, Analyte.AST))


def test_l2_not_recovered_after_more_than_28_days_discontinues_and_proposes_no_dose():
    ds = evaluate(_l2_chart(39), day(39))  # day 10 -> 39: 29 days held
    stop = [d for d in ds if d.code is C.DISCONTINUE]
    assert stop and "L-2" in stop[0].rules and "29 days" in stop[0].summary
    assert all(d.dose is None for d in ds), [(d.code, d.dose) for d in ds]


def test_l2_hold_of_28_days_is_still_a_hold():
    ds = evaluate(_l2_chart(38), day(38))
    assert C.DISCONTINUE not in [d.code for d in ds]
    assert [d for d in ds if d.code is C.HOLD and "L-2" in d.rules]


# --- T-3 from a reconstructed course: level 1 already, level 2 already ---------------------------


def _t3_chart(level: int, late: int):
    """Cycle 1 at the label dose, Cycle 2 (no CR) at `level`, Cycle 3 Day 1 `late` days late."""
    c2 = cycle_start_date(2)
    f = 0.75
    c2_doses = [dose(c2, mg_per_m2=0.8 * f), dose(c2 + timedelta(days=7), mg_per_m2=0.5 * f)]
    if level == 1:
        c2_doses.append(dose(c2 + timedelta(days=14), mg_per_m2=0.5 * f))
    when = cycle_start_date(3) + timedelta(days=late)
    return _charted(draft(when, mg_per_m2=0.6), C1_DOSES + c2_doses, []), when


def test_t3_at_level_1_goes_to_two_doses_per_cycle():
    f, when = _t3_chart(1, 14)
    ds = evaluate(f, when)
    red = [d for d in ds if d.code is C.REDUCE_DOSE]
    assert red and red[0].dose.reduction_level == 2 and "2 doses per cycle" in red[0].summary
    f, when = _t3_chart(1, 13)  # 13 days: no reduction
    assert C.REDUCE_DOSE not in [d.code for d in evaluate(f, when)]


def test_t3_at_level_2_discontinues_and_proposes_no_dose():
    f, when = _t3_chart(2, 14)
    assert reconstruct_course(f, when, Policy()).reduction_level == 2
    ds = evaluate(f, when)
    stop = [d for d in ds if d.code is C.DISCONTINUE]
    assert stop and stop[0].rules == ("T-3",) and stop[0].critical
    assert all(d.dose is None for d in ds)
    f, when = _t3_chart(2, 13)
    assert C.DISCONTINUE not in [d.code for d in evaluate(f, when)]


# --- D-5: weight change >= 10 % since the cycle's Day 1 (institutional policy) -------------------


def test_d5_weight_change_caution_at_10_percent_not_below():
    # Day 1 weight 70 kg (the day before the dose); -10 % = 63.0 kg, +10 % = 77.0 kg
    for kg, fires in ((63.1, False), (63.0, True), (77.0, True), (76.9, False)):
        f = _charted(draft(day(8), mg_per_m2=0.5), C1_DOSES[:1],
                     [weight(kg, day(8) - timedelta(hours=2))])
        ds = [d for d in evaluate(f, day(8)) if d.code is C.CAUTION and "D-5" in d.rules]
        assert bool(ds) is fires, kg
        if fires:
            assert "institutional policy" in ds[0].detail


# --- one reading of "which dose is this" (SmPC 4.2 Table 4, T-2) ---------------------------------


def _missed_day8(draft_day: int):
    f = clean_facts(draft(day(draft_day), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)])
    return f, day(draft_day)


def test_order_8_days_after_a_missed_day_8_is_the_day_15_dose_on_every_card():
    f, when = _missed_day8(16)  # Day 8 planned on day 8, not given; order on day 16
    course = reconstruct_course(f, when, Policy())
    assert (course.cycle, course.day, course.dose_number, course.omitted_dose) == (1, 16, 3, 2)
    assert "Day 8 dose is omitted" in " ".join(course.notes)
    ds = evaluate(f, when)
    assert [d.code for d in ds] == [C.CAUTION, C.PROCEED]
    t2, proceed = ds
    assert t2.rules == ("T-2",) and "Day 15 dose" in t2.summary
    assert "dose 3 of the cycle (planned Day 15)" in proceed.detail
    for d in ds:  # no card calls this order the Day 8 dose
        assert "dose 2 of the cycle" not in d.detail and "(planned Day 8)" not in d.detail


def test_day_8_six_days_late_is_still_the_day_8_dose():
    f, when = _missed_day8(14)
    course = reconstruct_course(f, when, Policy())
    assert (course.dose_number, course.omitted_dose) == (2, None)
    assert "T-2" not in {r for d in evaluate(f, when) for r in d.rules}


def _late_day15(draft_day: int):
    # Cycle 1: Day 1 on day 1, Day 8 given on day 7; the Day 15 dose is due on day 14 (+7 days).
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(7), mg_per_m2=0.5)]
    return clean_facts(draft(day(draft_day), mg_per_m2=0.5), doses), day(draft_day)


def test_day_15_dose_omitted_and_order_in_the_next_cycle_window_is_cycle_2_day_1():
    f, when = _late_day15(21)  # 7 days late; Cycle 2 Day 1 due on day 22 (+/- 2)
    course = reconstruct_course(f, when, Policy())
    assert (course.cycle, course.day, course.dose_number, course.omitted_dose) == (2, 1, 1, 3)
    ds = evaluate(f, when)
    t2 = [d for d in ds if "T-2" in d.rules]
    assert t2 and "Cycle 2 Day 1" in t2[0].summary
    for d in ds:
        if d.dose is not None:
            assert (d.dose.cycle, d.dose.day) == (2, 1)


def test_day_15_dose_omitted_before_the_next_cycle_window_is_an_omit_dose():
    # The order states Cycle 2 Day 15 but is dated Day 22 of Cycle 2 (7 days late; Cycle 3
    # Day 1 is due on Day 29, +/- 2): the late dose is omitted, the next dose is Cycle 3 Day 1.
    c2 = cycle_start_date(2)
    doses = C1_DOSES + [dose(c2, mg_per_m2=0.8), dose(c2 + timedelta(days=7), mg_per_m2=0.5)]
    when = c2 + timedelta(days=21)
    f = clean_facts(draft(when, mg_per_m2=0.5, explicit=cycle_day(2, 15)), doses,
                    responses=[response("PR", day(20))])
    course = reconstruct_course(f, when, Policy())
    assert (course.cycle, course.dose_number, course.omitted_dose) == (2, 3, 3)
    ds = evaluate(f, when)
    assert ds[0].code is C.OMIT_DOSE and ds[0].rules == ("T-2",)
    assert ds[0].hold_until == (c2 + timedelta(days=28)).date()
    assert "cycle 3 Day 1" in ds[0].summary
    assert C.PROCEED not in [d.code for d in ds]


def test_stated_day_8_dated_in_the_day_15_window_reads_as_the_day_15_dose_everywhere():
    # The case: the order states Cycle 1 Day 8 but is dated day 16 (Day 8 missed).
    f = clean_facts(draft(day(16), mg_per_m2=0.5, explicit=cycle_day(1, 8)),
                    [dose(day(1), mg_per_m2=0.8)])
    course = reconstruct_course(f, day(16), Policy())
    assert (course.cycle, course.day, course.dose_number, course.omitted_dose) == (1, 16, 3, 2)
    ds = evaluate(f, day(16))
    assert [d.code for d in ds] == [C.CAUTION, C.PROCEED]
    assert "Cycle 1 Day 16" in ds[1].summary and "Day 15 dose" in ds[0].summary
    for d in ds:
        assert "Day 8;" not in d.summary and "(planned Day 8)" not in d.detail


# --- the mg/m2 stated in the administration's dosage text ----------------------------------------


def _administration(oid, when, mg, text):
    return {"resourceType": "MedicationAdministration", "id": oid, "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1942950"}]},
            "effectiveDateTime": when.isoformat(),
            "dosage": {"text": text, "dose": {"value": mg, "unit": "mg",
                                              "system": "http://unitsofmeasure.org", "code": "mg"}}}


def test_mg_per_m2_stated_in_the_dosage_text_is_used_for_the_level():
    from app.facts_builder import build_facts

    c2 = cycle_start_date(2)
    f = build_facts("p1", [
        _administration("a1", day(1), 1.45, "0.8 mg/m2 x 1.82 m2 IV over 1 hour"),
        _administration("a2", c2, 1.09, "0.6 mg/m2 x 1.82 m2 IV over 1 hour"),
        _administration("a3", c2 + timedelta(days=7), 0.68, "reduced from 0.5 mg/m2 to 0.375 mg/m2"),
    ], None, c2 + timedelta(days=8))
    by_ref = {d.reference: d for d in f.doses_given}
    assert by_ref["MedicationAdministration/a1"].dose_mg_per_m2 == 0.8
    assert by_ref["MedicationAdministration/a2"].dose_mg_per_m2 == 0.6
    assert by_ref["MedicationAdministration/a3"].dose_mg_per_m2 is None  # two values: not read
    assert all(d.dose_mg for d in f.doses_given)
    course = reconstruct_course(f, c2 + timedelta(days=14), Policy())  # no weight at all
    assert course.reduction_level == 1 and not course.reduction_level_unknown


def test_demo_patients_dosed_in_mg_have_no_false_unknown_amount_line():
    from datetime import UTC, datetime

    from app.demo import demo_request, load_patient
    from app.facts_builder import build_facts

    now = datetime.now(UTC)
    for name in ("wrong-dose", "hepatic", "infusion-reaction", "interruption"):
        req = demo_request(name, now, "http://127.0.0.1:8080")
        f = build_facts(req["context"]["patientId"], load_patient(f"demo-{name}", now),
                        req["context"]["draftOrders"], now)
        assert f.doses_given and all(d.dose_mg for d in f.doses_given)
        for d in evaluate(f, now):
            assert "amount unknown" not in d.detail and "no recorded amount" not in d.detail, name
