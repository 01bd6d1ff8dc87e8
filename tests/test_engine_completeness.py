"""The engine's completeness gate (issue #8, app.engine.completeness) on facts built by hand."""

from __future__ import annotations

from types import MappingProxyType

from engine_factories import (
    T0,
    clean_facts,
    context,
    day,
    dose,
    draft,
    label_history,
    make_course,
)

from app import cards
from app.engine import completeness, labs
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation
from app.engine.evaluate import _cap_suggestions, evaluate
from app.engine.facts import Analyte, Availability, ClinicalFacts, Domain, DomainStatus

A = Availability


def with_status(f: ClinicalFacts, **statuses: tuple[Availability, str]) -> ClinicalFacts:
    from dataclasses import replace

    av = {Domain(k.replace("_", "-")): DomainStatus(a, why) for k, (a, why) in statuses.items()}
    return replace(f, availability=MappingProxyType(av))


def day8() -> ClinicalFacts:
    return clean_facts(draft(day(8), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)])


def test_whole_day8_chart_proceeds_as_day_8():
    ds = evaluate(day8(), day(8))
    assert ds[-1].code is DecisionCode.PROCEED and "Cycle 1 Day 8" in ds[-1].summary


def test_history_unreadable_course_unknown_no_dose_no_proceed():
    f = with_status(day8(), administrations=(A.UNREADABLE, "FHIR server answered 500"))
    ds = evaluate(f, day(8))
    assert DecisionCode.PROCEED not in {d.code for d in ds}
    assert all(d.dose is None for d in ds)
    assert not any("Cycle 1 Day" in d.summary for d in ds)
    (hist,) = [d for d in ds if d.rules == ("C-2",)]
    assert hist.summary == ("Obtain administration history: could not be read; cycle, day and "
                            "dose unknown")
    assert "FHIR server answered 500" in hist.detail and "Cycle and day unknown" in hist.detail


def test_history_read_whole_but_empty_is_a_first_dose_not_a_gap():
    f = with_status(clean_facts(draft(T0, mg_per_m2=0.8)), administrations=(A.EMPTY, ""))
    ds = evaluate(f, T0)
    assert ds[-1].code is DecisionCode.PROCEED and "Cycle 1 Day 1" in ds[-1].summary


def test_not_provided_reactions_listed_and_proceed_warns():
    f = with_status(day8(), infusion_reactions=(A.NOT_PROVIDED, "not in prefetch and no fhirServer to query"))
    ds = evaluate(f, day(8))
    proceed = ds[-1]
    assert proceed.code is DecisionCode.PROCEED
    assert proceed.extras[completeness.NOT_CHECKED] == {
        "infusion-reactions": "not provided by the EHR (not in prefetch and no fhirServer to query)"}
    assert proceed.detail.startswith("**Not checked**")
    card = cards.build_card(proceed, cards.CardContext(patient_id="pat-1", now=day(8)))
    assert card.indicator == "warning"
    assert card.extension["besponsa-cds"]["notRead"] == {"infusion-reactions": "not-provided"}


def test_unreadable_transfusions_block_with_honest_wording():
    f = with_status(day8(), procedures=(A.UNREADABLE, "FHIR server answered 403 (access to this data is forbidden)"))
    ds = evaluate(f, day(8))
    assert DecisionCode.PROCEED not in {d.code for d in ds}
    (gap,) = [d for d in ds if d.code is DecisionCode.OBTAIN_DATA]
    assert gap.summary == "Could not read procedures: a hold or warning may be missed"
    assert "could not be read (FHIR server answered 403" in gap.detail
    assert "does **not** mean none is on record" in gap.detail


def test_lab_lookup_says_could_not_be_read_not_none_on_record():
    f = with_status(clean_facts(draft(day(8), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)]),
                    blood_counts=(A.PARTIAL, "more results than the page limit allows"))
    from dataclasses import replace
    f = replace(f, measurements=tuple(m for m in f.measurements if m.analyte is not Analyte.ANC))
    lk = labs.current(context(f), Analyte.ANC)
    assert lk.status == "unavailable"
    assert lk.problem(context(f)) == "ANC only partly read (more results than the page limit allows)"


def test_patient_view_history_unreadable_is_a_card_not_silence():
    from app.engine.facts import PatientInfo

    f = with_status(ClinicalFacts(patient=PatientInfo("p")), administrations=(A.UNSUPPORTED, "404"))
    (d,) = evaluate(f, T0)
    assert d.code is DecisionCode.OBTAIN_DATA
    assert d.summary.startswith("Administration history not supported by the FHIR server")
    assert evaluate(ClinicalFacts(patient=PatientInfo("p")), T0) == []


def test_patient_view_no_dose_and_orders_unreadable_is_a_card_not_silence():
    # a patient about to start shows only through an order: orders that failed leave it unknown
    from app.engine.facts import PatientInfo

    empty = ClinicalFacts(patient=PatientInfo("p"))
    f = with_status(empty, administrations=(A.EMPTY, ""),
                    other_medications=(A.UNREADABLE, "FHIR server answered 503"))
    (d,) = evaluate(f, T0)
    assert d.code is DecisionCode.OBTAIN_DATA and d.dose is None
    assert d.summary.startswith("Medication orders could not be read")
    assert "FHIR server answered 503" in d.detail
    partial = with_status(empty, other_medications=(A.PARTIAL, "page limit"))
    assert [x.code for x in evaluate(partial, T0)] == [DecisionCode.OBTAIN_DATA]
    # not provided by the EHR is not an error: a chart with no dose and no plan stays silent
    quiet = with_status(empty, other_medications=(A.NOT_PROVIDED, "absent"))
    assert evaluate(quiet, T0) == []


def test_legacy_unavailable_set_still_reads_as_unreadable():
    from dataclasses import replace

    f = replace(day8(), unavailable=frozenset({"Observation"}))
    assert f.status(Domain.LIVER_LABS).availability is A.UNREADABLE
    assert f.status(Domain.ADMINISTRATIONS).read_whole
    # availability, when given, is authoritative
    g = replace(with_status(day8(), liver_labs=(A.PARTIAL, "x")), unavailable=frozenset({"Observation"}))
    assert g.status(Domain.LIVER_LABS).availability is A.PARTIAL


def _rec(mg_per_m2: float, cycle: int, day_: int, level: int = 0) -> DoseRecommendation:
    return DoseRecommendation(mg_per_m2=mg_per_m2, mg=round(mg_per_m2 * 1.82, 2), bsa_m2=1.82,
                              cycle=cycle, day=day_, reduction_level=level)


def _dose_decision(rec: DoseRecommendation) -> Decision:
    return Decision(code=DecisionCode.CORRECT_DOSE, rules=("D-4",), citations=(), summary="s",
                    detail="d", dose=rec)


def test_safety_net_never_suggests_above_the_reduction_level_in_force():
    doses = label_history(1, level=1)  # cycle 1 given at level 1 (0.6, 0.375, 0.375)
    f = clean_facts(draft(day(1, T0 + (day(29) - T0)), mg_per_m2=0.6), doses)
    ctx = context(f, course=make_course(cycle=2, day=1, reduction_level=1))
    (kept,) = _cap_suggestions(ctx, [_dose_decision(_rec(0.6, 2, 1, 1))])
    assert kept.dose is not None
    (cut,) = _cap_suggestions(ctx, [_dose_decision(_rec(0.8, 2, 1, 0))])  # re-escalation
    assert cut.dose is None and cut.critical and "never re-escalated" in cut.detail
    # level 2: no third dose in the cycle at all
    ctx2 = context(f, course=make_course(cycle=2, day=15, reduction_level=2))
    (cut2,) = _cap_suggestions(ctx2, [_dose_decision(_rec(0.375, 2, 15, 2))])
    assert cut2.dose is None


def test_issue_example_0_85_mg_day_8_is_never_raised_to_1_36_mg():
    # BSA 1.70 m2 (170 cm, 61.2 kg): Day 8 = 0.5 x 1.7 = 0.85 mg; read as "Cycle 1 Day 1" the
    # order would be "corrected" to 0.8 x 1.7 = 1.36 mg, a second 0.8 mg/m2 dose in the cycle.
    from dataclasses import replace

    from engine_factories import body

    whole = day8()
    whole = replace(whole, measurements=tuple(m for m in whole.measurements
                                              if m.analyte not in (Analyte.HEIGHT, Analyte.WEIGHT))
                    + tuple(body(170, 61.2, day(8) - (day(2) - day(1)))))
    whole = replace(whole, draft=replace(whole.draft, dose_mg=0.85, dose_mg_per_m2=None))
    assert evaluate(whole, day(8))[-1].code is DecisionCode.PROCEED
    unread = with_status(replace(whole, doses_given=()),
                         administrations=(A.UNREADABLE, "FHIR server answered 500"))
    ds = evaluate(unread, day(8))
    assert all(d.dose is None for d in ds) and DecisionCode.PROCEED not in {d.code for d in ds}
    assert not any("1.36" in d.summary or "1.36" in d.detail for d in ds)


def _wrong_day8() -> ClinicalFacts:  # Day 8 ordered at 0.8 mg/m2: D-4 corrects it to 0.5
    return clean_facts(draft(day(8), mg_per_m2=0.8), [dose(day(1), mg_per_m2=0.8)])


def test_correct_dose_offered_on_whole_data():
    (fix,) = [d for d in evaluate(_wrong_day8(), day(8)) if d.code is DecisionCode.CORRECT_DOSE]
    assert fix.dose is not None and fix.dose.mg_per_m2 == 0.5


def test_reactions_unreadable_no_dose_suggested_they_may_stop_the_treatment():
    f = with_status(_wrong_day8(), infusion_reactions=(A.UNREADABLE, "FHIR server answered 500"))
    ds = evaluate(f, day(8))
    (fix,) = [d for d in ds if d.code is DecisionCode.CORRECT_DOSE]
    assert fix.dose is None and "No dose is suggested** until this data is read" in fix.detail
    assert any(d.code is DecisionCode.OBTAIN_DATA and "infusion reactions" in d.summary for d in ds)


def test_reactions_not_provided_dose_card_names_them_as_not_checked():
    f = with_status(_wrong_day8(), infusion_reactions=(A.NOT_PROVIDED, "not in prefetch"))
    (fix,) = [d for d in evaluate(f, day(8)) if d.code is DecisionCode.CORRECT_DOSE]
    assert fix.dose is not None and fix.dose.mg_per_m2 == 0.5
    assert fix.extras[completeness.NOT_CHECKED] == {"infusion-reactions": "not provided by the EHR (not in prefetch)"}
    assert fix.detail.startswith("**Not checked**")
