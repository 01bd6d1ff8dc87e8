"""Property-style checks over generated facts for the toxicity/eligibility families (task C2):
no exception on odd data, and card-contract invariants on every decision."""

from datetime import date, timedelta

from engine_factories import (
    condition,
    context,
    day,
    dose,
    draft,
    facts,
    interruption,
    make_course,
    measurement,
    medication,
    other_order,
    problem,
    procedure,
    reaction,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.facts import Analyte, PatientInfo
from app.engine.rules import (
    eligibility,
    haematological,
    hepatic,
    infusion,
    interruption as interruption_rules,
    pregnancy,
    qt,
    vod_risk,
)

CHECKS = (haematological.check_haematological, hepatic.check_hepatic, infusion.check_infusion,
          interruption_rules.check_interruption, eligibility.check_eligibility, qt.check_qt,
          vod_risk.check_vod_risk, pregnancy.check_pregnancy)
LAB = st.sampled_from([a for a in Analyte if a not in (Analyte.HEIGHT, Analyte.WEIGHT)])
CONCEPTS = st.sampled_from(["vod-sos", "severe-liver-toxicity", "gilbert-syndrome", "haemolysis",
                            "cirrhosis", "active-hepatitis", "liver-disease", "pregnancy",
                            "breastfeeding", "tumour-lysis"])
MEDS = st.sampled_from(["qt-prolonging", "live-vaccine", "corticosteroid", "antipyretic",
                        "antihistamine", "uric-acid-lowering", "alkylating-agent"])


@st.composite
def cases(draw):
    n_cycles = draw(st.integers(0, 3))
    doses, cycles, start = [], [], 1
    for c in range(1, n_cycles + 1):
        ds = tuple(dose(day(start + 7 * k), mg_per_m2=0.5) for k in range(draw(st.integers(1, 3))))
        doses += ds
        cycles.append(CycleHistory(c, day(start), ds))
        start += 21 if c == 1 else 28
    draft_day = draw(st.integers(start - 20, start + 40)) if doses else 1
    dnum = draw(st.integers(1, 3))
    ms = [measurement(draw(LAB), draw(st.floats(-1, 2000, allow_nan=False)),
                      day(draw(st.integers(-30, draft_day)), hours=draw(st.integers(0, 23))),
                      uln=draw(st.one_of(st.none(), st.floats(0.5, 200))),
                      status=draw(st.sampled_from(["final", "preliminary"])))
          for _ in range(draw(st.integers(0, 25)))]
    prev = doses[-1] if doses else None
    course = make_course(
        cycle=(len(cycles) + (1 if dnum == 1 else 0)) or 1, day=1 + 7 * (dnum - 1),
        dose_number=dnum, previous_dose=prev, cycles=cycles,
        reduction_level=draw(st.integers(0, 2)),
        interruptions=[interruption(day(draft_day - 3), draw(st.integers(3, 40)),
                                    within_cycle=draw(st.booleans()),
                                    cycle=draw(st.integers(1, 4)))
                       for _ in range(draw(st.integers(0, 2)))],
        response=draw(st.sampled_from(["CR", "CRi", "no-CR", "unknown"])),
        hsct_planned=draw(st.booleans()), prior_hsct=draw(st.booleans()))
    f = facts(
        draft=draft(day(draft_day), mg_per_m2=0.5) if draw(st.booleans()) or not doses else None,
        doses=doses, measurements=ms,
        patient=PatientInfo(id="p", birth_date=draw(st.one_of(st.none(), st.dates(
            date(1930, 1, 1), date(2020, 1, 1)))), gender=draw(st.sampled_from(
                ["female", "male", "other", None]))),
        conditions=[condition(draw(CONCEPTS), onset=day(draw(st.integers(-100, 60))),
                              clinical_status=draw(st.sampled_from(["active", "resolved", None])),
                              verification_status=draw(st.sampled_from(
                                  ["confirmed", "provisional", None])))
                    for _ in range(draw(st.integers(0, 3)))],
        reactions=[reaction(draw(st.sampled_from(["infusion-reaction", "hypersensitivity"])),
                            draw(st.sampled_from(["mild", "severe", "life-threatening", None])))
                   for _ in range(draw(st.integers(0, 1)))],
        medications=[medication([draw(MEDS)], start=day(draw(st.integers(-20, 30))))
                     for _ in range(draw(st.integers(0, 3)))],
        other_orders=[other_order([draw(MEDS)], "x") for _ in range(draw(st.integers(0, 2)))],
        procedures=[procedure("platelet-transfusion", "completed",
                              performed=day(draw(st.integers(-5, 60))))
                    for _ in range(draw(st.integers(0, 1)))],
        problems=[problem(draw(LAB).value, "unparseable", effective=day(draft_day) -
                          timedelta(hours=2)) for _ in range(draw(st.integers(0, 1)))],
    )
    return f, course


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases(), st.sampled_from(list(Label)))
def test_rules_never_raise_and_keep_the_card_contract(case, label):
    f, course = case
    ctx = context(f, course=course, label=label, now=f.draft.dose_date if f.draft else day(60))
    for check in CHECKS:
        for d in check(ctx):
            assert d.code is not C.PROCEED
            assert 0 < len(d.summary) <= 140
            assert d.label is label and d.rules and d.detail
            assert d.evidence, f"{d.rules} {d.code}: card without evidence"
            assert all(c.startswith("USPI" if label is Label.US else "SmPC") or c == "SmPC 4.4"
                       for c in d.citations)
            if d.code in (C.DISCONTINUE, C.CONTRAINDICATED):
                assert d.indicator == "critical"
            if d.code is C.HOLD:
                assert d.recovery_criteria or d.hold_until
            if d.code is C.CONTRAINDICATED:
                assert label is Label.EU  # the US label has no contraindications
            if "H-5" in d.rules:
                assert label is Label.US
            if d.dose is not None:
                assert d.dose.mg_per_m2 <= 0.8 * 0.75 + 1e-9
