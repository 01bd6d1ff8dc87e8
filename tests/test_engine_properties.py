"""Property-style tests over generated treatment histories (issue #3, "Done when")."""

from __future__ import annotations

from datetime import timedelta

from engine_factories import (
    T0,
    body,
    dose,
    draft,
    facts,
    measurement,
    normal_labs,
    premedication_orders,
    procedure,
    response,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.course import reconstruct_course
from app.engine.decisions import DecisionCode, Label
from app.engine.evaluate import ENGINE_ERROR, evaluate
from app.engine.facts import Analyte, CycleDay
from app.engine.policy import Policy

POLICY = Policy()
LABEL_AMOUNTS = (0.8, 0.5, 0.6, 0.375)  # label doses and their 25 % reductions
REDUCED = (0.6, 0.375)
OBJECTING = {DecisionCode.HOLD, DecisionCode.DISCONTINUE, DecisionCode.CONTRAINDICATED,
             DecisionCode.OMIT_DOSE, DecisionCode.REDUCE_DOSE, DecisionCode.CORRECT_DOSE,
             DecisionCode.CONSIDER_DISCONTINUE, DecisionCode.OBTAIN_DATA}

amount = st.one_of(st.sampled_from(LABEL_AMOUNTS), st.sampled_from(LABEL_AMOUNTS),
                   st.floats(0.1, 1.2).map(lambda x: round(x, 3)))


@st.composite
def histories(draw):
    n = draw(st.integers(0, 14))
    t = T0
    doses = []
    for i in range(n):
        if i:
            t = t + timedelta(days=draw(st.sampled_from([5, 6, 7, 7, 7, 8, 9, 13, 14, 15, 21, 28])))
        doses.append(dose(t, mg_per_m2=draw(amount)))
    gap = draw(st.integers(0, 35)) if n else 0
    when = t + timedelta(days=gap) if n else T0
    has_draft = draw(st.booleans()) or n == 0
    ordered = draw(st.one_of(st.none(), amount))
    by_mg = draw(st.booleans())
    bsa_ok = draw(st.sampled_from(["fresh", "fresh", "fresh", "fresh", "stale", "none"]))
    ms = []
    if bsa_ok == "fresh":
        ms += body(draw(st.floats(150, 195)), draw(st.floats(40, 120)), when - timedelta(days=1))
    elif bsa_ok == "stale":
        ms += body(when=when - timedelta(days=60))
    if draw(st.sampled_from([True, True, True, False])):
        ms += normal_labs(when - timedelta(hours=12))
        ms += normal_labs(T0 - timedelta(days=1))
    if draw(st.sampled_from([True, False, False, False])):
        ms.append(measurement(Analyte.BILIRUBIN, draw(st.floats(0.2, 4.0)), when - timedelta(hours=6),
                              uln=1.2))
        ms.append(measurement(Analyte.AST, draw(st.floats(10, 200)), when - timedelta(hours=6), uln=40))
    responses = []
    if n and draw(st.sampled_from([True, True, True, False])):
        responses.append(response(draw(st.sampled_from(["CR", "CRi", "PR", "PD"])),
                                  T0 + timedelta(days=draw(st.integers(1, max(1, (when - T0).days))))))
    procs = ([procedure("hsct", "active", resource_type="ServiceRequest")]
             if draw(st.sampled_from([True, False, False])) else [])
    d = None
    if has_draft:
        explicit = draw(st.one_of(st.none(), st.none(), st.builds(
            CycleDay, st.integers(-1, 8), st.integers(-1, 30))))
        d = draft(when, mg=round(ordered * 1.8, 2) if (ordered and by_mg) else None,
                  mg_per_m2=ordered if (ordered and not by_mg) else None, explicit=explicit)
    return facts(draft=d, doses=doses, measurements=ms, responses=responses, procedures=procs,
                 other_orders=premedication_orders() if d else []), when


@st.composite
def on_schedule(draw):
    """Label-conforming courses (often clean) with the draft at the next scheduled dose."""
    from engine_factories import clean_facts, cycle_start_date, label_history

    from app.engine.regimen import expected_mg_per_m2

    cycle = draw(st.integers(1, 7))
    dose_no = draw(st.integers(1, 3))
    level = draw(st.sampled_from([0, 0, 1]))
    cr_from = draw(st.sampled_from([2, 2, None]))
    doses = label_history(cycle, cr_from_cycle=cr_from, level=level, last_cycle_doses=dose_no - 1)
    if dose_no == 1:
        doses = label_history(cycle - 1, cr_from_cycle=cr_from, level=level) if cycle > 1 else []
    start = cycle_start_date(cycle)
    when = start + timedelta(days=7 * (dose_no - 1) + draw(st.integers(-2, 2)) * (dose_no > 1))
    cr = cr_from is not None and cycle >= cr_from
    expected = expected_mg_per_m2(cycle, dose_no, cr, min(level, 1)) or 0.375
    ordered = round(expected * draw(st.sampled_from([1, 1, 1, 1.04, 1.1, 0.75, 1.6])), 3)
    responses = ([response("CR", start - timedelta(days=3))] if cr else
                 [response("PR", T0 + timedelta(days=19))] if cycle > 1 else [])
    f = clean_facts(draft(when, mg_per_m2=ordered), doses, responses=responses)
    return f, when


SETTINGS = settings(max_examples=int(__import__("os").environ.get("PROP_EXAMPLES", "200")), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(histories(), st.sampled_from([Label.EU, Label.US]))
def test_invariants_over_generated_histories(case, label):
    f, now = case
    ds = evaluate(f, now, POLICY, label)
    found = {d.code for d in ds}
    proceeds = [d for d in ds if d.code is DecisionCode.PROCEED]

    # never proceed beside a hold or discontinue (nor any other objection); at most one
    assert len(proceeds) <= 1
    if proceeds:
        assert not (found & OBJECTING), [d.summary for d in ds]
        assert f.draft is not None and ds[-1] is proceeds[0]
    # no engine errors, every decision carries the label, summaries fit
    assert not [d for d in ds if ENGINE_ERROR in d.extras]
    assert all(d.label is label and len(d.summary) < 140 for d in ds)
    # most severe first
    assert [d.rank for d in ds] == sorted(d.rank for d in ds)

    course = reconstruct_course(f, now, POLICY)
    given_in_cycle = sum(d.dose_mg_per_m2 for c in course.cycles if c.number == course.cycle
                         for d in c.doses if d.given_at.date() >= course.cycle_start.date())
    # a dose given at a 25 %-reduced amount for its slot: 0.6 (Day 1, 0.75 x 0.8), 0.375 (Days
    # 8/15, or Day 1 of a later cycle in CR/CRi: 0.75 x 0.5)
    reduced_before = any(
        (i == 0 and (d.dose_mg_per_m2 == 0.6 or (c.number > 1 and d.dose_mg_per_m2 == 0.375)))
        or (i > 0 and d.dose_mg_per_m2 == 0.375)
        for c in course.cycles for i, d in enumerate(c.doses))
    for d in ds:
        rec = d.dose
        if rec is None:
            continue
        # never a suggested dose above 0.8 mg/m2, nor above 1.8 mg/m2 in the cycle (SmPC 4.9)
        assert rec.mg_per_m2 <= 0.8 + 1e-9
        if d.code is not DecisionCode.REDUCE_DOSE or rec.cycle == course.cycle:
            assert given_in_cycle + rec.mg_per_m2 <= 1.8 + 0.02, (given_in_cycle, rec)
        # never above the reduction level in force (no re-escalation after a 25 % reduction)
        assert rec.reduction_level >= course.reduction_level
        if reduced_before:
            assert rec.mg_per_m2 <= 0.6 + 1e-9  # 0.75 x 0.8 on Day 1
            if rec.day > 4:  # Days 8 and 15 (+/- 2)
                assert rec.mg_per_m2 <= 0.375 + 1e-9  # 0.75 x 0.5
        # mg is mg/m2 x BSA, rounded
        assert abs(rec.mg - rec.mg_per_m2 * rec.bsa_m2) <= 0.01 + rec.mg_per_m2 * 0.005


@SETTINGS
@given(histories())
def test_patient_never_given_the_drug_without_draft_gets_nothing(case):
    f, now = case
    if f.doses_given:
        return
    from dataclasses import replace
    assert evaluate(replace(f, draft=None), now) == []


@SETTINGS
@given(on_schedule(), st.sampled_from([Label.EU, Label.US]))
def test_invariants_on_label_schedules(case, label):
    test_invariants_over_generated_histories.hypothesis.inner_test(case, label)
