"""C-1..C-6: the treatment course reconstructed from administrations, responses and procedures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from engine_factories import (
    T0,
    body,
    condition,
    context,
    cycle_day,
    cycle_start_date,
    day,
    dose,
    draft,
    facts,
    label_history,
    measurement,
    procedure,
    response,
)

from app.engine.course import reconstruct_course
from app.engine.facts import Analyte
from app.engine.policy import Policy


def course_for(f, now=None):
    return reconstruct_course(f, now or (f.draft.dose_date if f.draft else T0), Policy())


# --- C-2: cycle and day ---------------------------------------------------------------------


def test_first_dose_is_cycle_1_day_1():
    c = course_for(facts(draft=draft(T0, mg_per_m2=0.8)))
    assert (c.cycle, c.day, c.dose_number, c.cycles, c.previous_dose) == (1, 1, 1, (), None)
    assert "first dose" in c.notes[0]


def test_day_8_and_15_in_cycle_1():
    d1 = dose(day(1), mg_per_m2=0.8)
    c = course_for(facts(draft=draft(day(8)), doses=[d1]))
    assert (c.cycle, c.day, c.dose_number, c.previous_dose) == (1, 8, 2, d1)
    c = course_for(facts(draft=draft(day(15)), doses=[d1, dose(day(8), mg_per_m2=0.5)]))
    assert (c.cycle, c.day, c.dose_number) == (1, 15, 3)
    assert [len(x.doses) for x in c.cycles] == [2]


def test_day_21_boundary_for_cycle_membership():
    doses = [dose(day(1), mg_per_m2=0.8), dose(day(8), mg_per_m2=0.5)]
    c = course_for(facts(draft=draft(day(21)), doses=doses))
    assert (c.cycle, c.day, c.dose_number) == (1, 21, 3)
    c = course_for(facts(draft=draft(day(22)), doses=doses))
    assert (c.cycle, c.day, c.dose_number, c.cycle_start) == (2, 1, 1, day(22))


def test_fourth_dose_starts_a_new_cycle():
    c = course_for(facts(draft=draft(day(20)), doses=label_history(1)))
    assert (c.cycle, c.day, c.dose_number) == (2, 1, 1)


def test_six_cycles_of_history():
    h = label_history(6)
    c = course_for(facts(doses=h), now=cycle_start_date(6) + timedelta(days=20))
    assert [x.number for x in c.cycles] == [1, 2, 3, 4, 5, 6]
    assert all(len(x.doses) == 3 for x in c.cycles)
    assert c.cycle is None and c.interruptions == ()


def test_doses_after_dose_date_ignored():
    c = course_for(facts(draft=draft(day(8)), doses=[dose(day(1)), dose(day(9))]))
    assert c.dose_number == 2 and "after the dose date" in " ".join(c.notes)


# --- C-1: explicit -----------------------------------------------------------------------------


def test_explicit_cycle_day_on_administrations_and_draft():
    doses = [dose(day(1), mg_per_m2=0.5, explicit=cycle_day(3, 1))]
    c = course_for(facts(draft=draft(day(8)), doses=doses))
    assert (c.cycle, c.day, c.dose_number, c.explicit) == (3, 8, 2, False)
    c = course_for(facts(draft=draft(day(8), explicit=cycle_day(3, 15)), doses=doses))
    assert (c.cycle, c.day, c.dose_number, c.explicit) == (3, 15, 3, True)
    assert "stated on the order" in c.notes[0]


# --- C-3: reduction level -------------------------------------------------------------------


def test_level_0_for_label_doses():
    assert course_for(facts(draft=draft(cycle_start_date(3)), doses=label_history(2),
                            measurements=body())).reduction_level == 0


def test_level_1_from_mg_given_and_bsa():
    # 1.09 mg at BSA 1.818 = 0.6 mg/m2 = 0.75 x 0.8 on cycle 2 Day 1 (no CR)
    doses = label_history(1) + [dose(cycle_start_date(2), mg=1.09)]
    c = course_for(facts(draft=draft(cycle_start_date(2) + timedelta(days=7)), doses=doses,
                         measurements=body()))
    assert c.reduction_level == 1 and "Reduction level 1" in " ".join(c.notes)


def test_mg_without_bsa_is_read_from_the_ratio_to_a_dose_of_known_mg_per_m2():
    # Issue #8: no height/weight at all; 1.09 mg against Cycle 1 Day 1's 0.8 mg/m2 = 1.45 mg is
    # 0.6 mg/m2 (level 1), assuming an unchanged BSA. Never assumed level 0.
    doses = label_history(1) + [dose(cycle_start_date(2), mg=1.09)]
    c = course_for(facts(draft=draft(cycle_start_date(2) + timedelta(days=7)), doses=[
        *[dose(d.given_at, mg_per_m2=d.dose_mg_per_m2) for d in doses[:3]],
        dose(doses[3].given_at, mg=1.09)]))
    notes = " ".join(c.notes)
    assert c.reduction_level == 1 and "ratio" in notes and "unchanged BSA" in notes
    assert "amount unknown" not in notes


def test_level_1_with_cr_0_375_on_day_1():
    doses = label_history(1) + [dose(cycle_start_date(2), mg_per_m2=0.375)]
    c = course_for(facts(draft=draft(cycle_start_date(2) + timedelta(days=7)), doses=doses))
    assert c.reduction_level == 1


def test_cr_day_1_dose_0_5_is_not_a_reduction():
    doses = label_history(1) + [dose(cycle_start_date(2), mg_per_m2=0.5)]
    c = course_for(facts(draft=draft(cycle_start_date(2) + timedelta(days=7)), doses=doses))
    assert c.reduction_level == 0


def test_reduction_never_re_escalated():
    # cycle 2 reduced (0.375 x 3), cycle 3 given at full 0.5 (re-escalated by mistake)
    start2, start3 = cycle_start_date(2), cycle_start_date(3)
    doses = label_history(1) + [dose(start2 + timedelta(days=7 * i), mg_per_m2=0.375)
                                for i in range(3)] + [
        dose(start3 + timedelta(days=7 * i), mg_per_m2=0.5) for i in range(3)]
    c = course_for(facts(draft=draft(cycle_start_date(4)), doses=doses))
    assert c.reduction_level == 1


def test_level_2_from_completed_cycle_of_two_reduced_doses():
    start2 = cycle_start_date(2)
    doses = label_history(1) + [dose(start2, mg_per_m2=0.6), dose(start2 + timedelta(days=7),
                                                                  mg_per_m2=0.375)]
    # still in cycle 2 (Day 15 draft): level 1 only
    c = course_for(facts(draft=draft(start2 + timedelta(days=14)), doses=doses))
    assert c.reduction_level == 1
    # cycle 3: cycle 2 completed with 2 level-1 doses -> level 2
    c = course_for(facts(draft=draft(cycle_start_date(3)), doses=doses))
    assert c.reduction_level == 2


def test_two_full_doses_is_an_omission_not_level_2():
    start2 = cycle_start_date(2)
    doses = label_history(1) + [dose(start2, mg_per_m2=0.8), dose(start2 + timedelta(days=14),
                                                                  mg_per_m2=0.5)]
    c = course_for(facts(draft=draft(cycle_start_date(3)), doses=doses))
    assert c.reduction_level == 0


# --- C-4: interruptions ---------------------------------------------------------------------


def test_within_cycle_interruption_days():
    d1 = dose(day(1), mg_per_m2=0.8)
    assert course_for(facts(draft=draft(day(10)), doses=[d1])).interruptions == ()  # +2: window
    [it] = course_for(facts(draft=draft(day(11)), doses=[d1])).interruptions
    assert (it.days, it.within_cycle, it.inferred, it.cycle) == (3, True, True, 1)
    assert it.planned.date() == day(8).date()
    # Day 22 is past Day 21: by C-2 a new cycle, whose Day 1 is planned on Day 22 -> on time
    c = course_for(facts(draft=draft(day(22)), doses=[d1]))
    assert (c.cycle, c.day, c.interruptions) == (2, 1, ())


def test_cycle_start_interruption_after_cycle_1_day_22():
    h = label_history(1)
    [it] = course_for(facts(draft=draft(day(29)), doses=h)).interruptions
    assert (it.days, it.within_cycle, it.cycle) == (7, False, 2)
    assert it.planned.date() == day(22).date()


def test_cycle_1_extended_to_28_days_with_cr():
    h = label_history(1)
    f = facts(draft=draft(day(29)), doses=h, responses=[response("CR", day(20))])
    assert course_for(f).interruptions == ()


def test_later_cycle_day_29():
    h = label_history(2)
    start3 = cycle_start_date(3)
    f = facts(draft=draft(start3 + timedelta(days=14)), doses=h,
              responses=[response("CR", day(20))])
    [it] = course_for(f).interruptions
    assert (it.days, it.within_cycle, it.cycle) == (14, False, 3)


def test_interruption_in_history_kept():
    doses = [dose(day(1)), dose(day(16)), dose(day(21))]  # Day 8 dose given on Day 16
    c = course_for(facts(draft=draft(day(29)), doses=doses))
    assert [(i.days, i.within_cycle) for i in c.interruptions][0] == (8, True)


# --- C-5: response --------------------------------------------------------------------------


def test_response_from_finding_and_condition():
    h = label_history(1)
    c = course_for(facts(draft=draft(day(22)), doses=h, responses=[response("CRi", day(20))]))
    assert c.response.status == "CRi" and c.response.cr_or_cri
    c = course_for(facts(draft=draft(day(22)), doses=h,
                         conditions=[condition("b-all", clinical_status="remission",
                                               recorded=day(19))]))
    assert c.response.cr_or_cri
    c = course_for(facts(draft=draft(day(22)), doses=h, responses=[response("PR", day(20))]))
    assert c.response.status == "no-CR" and not c.response.cr_or_cri


def test_remission_before_first_dose_does_not_count():
    c = course_for(facts(draft=draft(day(22)), doses=label_history(1),
                         responses=[response("CR", T0 - timedelta(days=200))]))
    assert c.response.status == "unknown"


def test_latest_response_wins():
    f = facts(draft=draft(cycle_start_date(3)), doses=label_history(2),
              responses=[response("CR", day(20)), response("relapse", cycle_start_date(2) + timedelta(days=20))])
    assert course_for(f).response.status == "no-CR"


def marrow(blasts, pb, anc, plt, when=day(20)):
    return [measurement(Analyte.MARROW_BLASTS, blasts, when),
            measurement(Analyte.PERIPHERAL_BLASTS, pb, when),
            measurement(Analyte.ANC, anc, when), measurement(Analyte.PLATELETS, plt, when)]


@pytest.mark.parametrize("blasts, pb, anc, plt, status", [
    (4.9, 0, 1.0, 100, "CR"),  # Table 1 note c: platelets >= 100 and ANC >= 1
    (4.9, 0, 0.9, 100, "CRi"),  # note d: incomplete recovery
    (4.9, 0, 1.0, 99, "CRi"),
    (5.0, 0, 1.0, 100, "no-CR"),  # not < 5 %
    (2.0, 0.1, 1.5, 150, "no-CR"),  # peripheral blasts present
])
def test_response_inferred_from_marrow(blasts, pb, anc, plt, status):
    f = facts(draft=draft(day(22)), doses=label_history(1), measurements=marrow(blasts, pb, anc, plt))
    assert course_for(f).response.status == status


def test_marrow_without_peripheral_count_is_unknown():
    f = facts(draft=draft(day(22)), doses=label_history(1),
              measurements=[measurement(Analyte.MARROW_BLASTS, 2.0, day(20))])
    assert course_for(f).response.status == "unknown"


@pytest.mark.parametrize("mrd, negative", [(0.9e-4, True), (1e-4, False), (5e-3, False)])
def test_mrd_negative_below_1e_4(mrd, negative):
    f = facts(draft=draft(day(22)), doses=label_history(1),
              measurements=marrow(1.0, 0, 2, 150) + [measurement(Analyte.MRD, mrd, day(20))])
    assert course_for(f).response.mrd_negative is negative


# --- C-6: HSCT ------------------------------------------------------------------------------


@pytest.mark.parametrize("proc, planned, prior", [
    (procedure("hsct", "preparation"), True, False),
    (procedure("hsct", "active", resource_type="ServiceRequest"), True, False),
    (procedure("hsct", "active", resource_type="CarePlan"), True, False),
    (procedure("hsct", "revoked", resource_type="ServiceRequest"), False, False),
    (procedure("hsct", "completed"), False, True),
    (procedure("platelet-transfusion", "completed"), False, False),
])
def test_hsct_planned_or_prior(proc, planned, prior):
    c = course_for(facts(draft=draft(T0), procedures=[proc]))
    assert (c.hsct_planned, c.prior_hsct) == (planned, prior)


def test_context_factory_reconstructs():
    ctx = context(facts(draft=draft(day(8)), doses=[dose(day(1))]))
    assert ctx.course.day == 8 and ctx.dose_date == day(8)


# --- course data (obtain-data) -------------------------------------------------------------


def test_history_unavailable_obtain_data():
    from engine_factories import problem

    from app.engine.rules.course_data import check_course_data

    f = facts(draft=draft(T0, mg_per_m2=0.8), measurements=body(),
              unavailable=frozenset({"MedicationAdministration"}))
    [d] = check_course_data(context(f))
    assert d.needed_data == ("medication-history",) and d.rules == ("C-2",)
    assert "could not be read" in d.summary and "unknown" in d.summary  # issue #8 wording
    f = facts(draft=draft(T0, mg_per_m2=0.8), measurements=body(),
              problems=[problem("medication-history", "FHIR server answered 500")])
    [d] = check_course_data(context(f))
    assert "FHIR server answered 500" in d.summary
    # patient-view: a card saying the history could not be read, never silence (issue #8)
    [d] = check_course_data(context(facts(doses=label_history(1),
                                          unavailable=frozenset({"MedicationAdministration"}))))
    assert d.code.value == "obtain-data" and "could not be read" in d.summary


def test_response_needed_only_for_later_day_1():
    from app.engine.rules.course_data import check_course_data

    h = label_history(1)
    [d] = check_course_data(context(facts(draft=draft(day(22), mg_per_m2=0.8), doses=h,
                                          measurements=body(when=day(21)))))
    assert d.needed_data == ("disease-response",) and "0.5 mg/m2 with CR/CRi, 0.8 mg/m2 without" in d.summary
    # Day 8 of cycle 2 is 0.5 whatever the response
    h2 = h + [dose(day(22), mg_per_m2=0.8)]
    assert check_course_data(context(facts(draft=draft(day(29), mg_per_m2=0.5), doses=h2,
                                           measurements=body(when=day(28))))) == []


def test_invalid_explicit_cycle_is_ignored():
    c = course_for(facts(draft=draft(day(8), explicit=cycle_day(0, 8)), doses=[dose(day(1))]))
    assert (c.cycle, c.day, c.explicit) == (1, 8, False)
