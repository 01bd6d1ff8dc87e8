"""Lab reading helpers (clinical-rules section 0): ULN, freshness, preliminary, unusable, transfusion."""

from datetime import timedelta

from engine_factories import (
    context,
    day,
    dose,
    draft,
    facts,
    make_course,
    measurement,
    problem,
    procedure,
)

from app.engine import labs
from app.engine.context import CycleHistory
from app.engine.facts import Analyte
from app.engine.policy import Policy

A = Analyte


def ctx_day8(*ms, procedures=(), problems=(), unavailable=frozenset(), policy=None):
    d1 = dose(day(1), mg_per_m2=0.8)
    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[d1], measurements=list(ms),
              procedures=list(procedures), problems=list(problems), unavailable=unavailable)
    course = make_course(1, 8, previous_dose=d1, cycles=[CycleHistory(1, day(1), (d1,))])
    return context(f, course=course, policy=policy)


def ctx_first_dose(*ms):
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=list(ms))
    return context(f, course=make_course(1, 1))


def test_uln_from_observation_else_policy_default():
    p = Policy()
    own = labs.read(measurement(A.BILIRUBIN, 2.4, day(7), uln=1.0), p)
    assert (own.uln, own.uln_source, own.ratio, own.grade) == (1.0, "reported", 2.4, 2)
    dflt = labs.read(measurement(A.BILIRUBIN, 2.4, day(7)), p)
    assert (dflt.uln, dflt.uln_source, dflt.ratio, dflt.grade) == (1.2, "default", 2.0, 2)
    ev = labs.evidence(dflt)
    assert ev.note == "ULN from configured default"
    assert (ev.value, ev.unit, ev.uln, ev.ratio, ev.grade) == (2.4, "mg/dL", 1.2, 2.0, 2)


def test_policy_override_of_default_uln():
    p = Policy(default_uln={**Policy().default_uln, "alt": 33.0})
    r = labs.read(measurement(A.ALT, 99, day(7)), p)
    assert r.uln == 33.0 and r.ratio == 3.0 and r.grade == 2


def test_fresh_means_after_the_previous_dose():
    before = measurement(A.AST, 30, day(1, hours=-1), uln=40)
    ctx = ctx_day8(before)
    assert labs.current(ctx, A.AST).status == "stale"
    after = measurement(A.AST, 30, day(1, hours=2), uln=40)
    lk = labs.current(ctx_day8(before, after), A.AST)
    assert lk.ok and lk.reading.measurement is after


def test_fresh_before_first_dose_is_within_7_days_inclusive():
    at7 = measurement(A.ALT, 20, day(1) - timedelta(days=7), uln=40)
    assert labs.current(ctx_first_dose(at7), A.ALT).ok
    at7plus = measurement(A.ALT, 20, day(1) - timedelta(days=7, minutes=1), uln=40)
    assert labs.current(ctx_first_dose(at7plus), A.ALT).status == "stale"
    assert labs.current(ctx_first_dose(), A.ALT).status == "missing"


def test_preliminary_is_flagged_never_decisive():
    final = measurement(A.BILIRUBIN, 1.0, day(3), uln=1.2)
    prelim = measurement(A.BILIRUBIN, 5.0, day(7), uln=1.2, status="preliminary")
    lk = labs.current(ctx_day8(final, prelim), A.BILIRUBIN)
    assert lk.reading.value == 1.0
    assert any("preliminary" in n for n in lk.notes)
    assert lk.flagged and lk.flagged[0].value == 5.0
    only = labs.current(ctx_day8(prelim), A.BILIRUBIN)
    assert not only.ok and only.status == "preliminary"


def test_unusable_newer_result_blocks_the_older_one():
    older = measurement(A.ALT, 30, day(3), uln=40)
    bad = problem("alt", "unknown unit 'mg/ml/h'", effective=day(7), reference="Observation/x")
    lk = labs.current(ctx_day8(older, problems=[bad]), A.ALT)
    assert lk.status == "unusable" and not lk.ok
    assert "mg/ml/h" in " ".join(lk.notes)
    # an unusable result older than a usable fresh one does not block it
    bad_old = problem("alt", "bad", effective=day(2))
    assert labs.current(ctx_day8(older, problems=[bad_old]), A.ALT).ok


def test_unavailable_observations():
    lk = labs.current(ctx_day8(unavailable=frozenset({"Observation"})), A.ALT)
    assert lk.status == "unavailable"


def test_platelets_within_72h_after_transfusion_are_ignored():
    tx = procedure("platelet-transfusion", "completed", performed=day(4))
    post71 = measurement(A.PLATELETS, 80, day(4, hours=71))
    pre = measurement(A.PLATELETS, 30, day(3))
    lk = labs.current(ctx_day8(pre, post71, procedures=[tx]), A.PLATELETS)
    assert lk.reading.value == 30  # the transfusion-independent count
    assert any("transfusion" in n for n in lk.notes)
    post73 = measurement(A.PLATELETS, 60, day(4, hours=73))
    lk2 = labs.current(ctx_day8(pre, post73, procedures=[tx]), A.PLATELETS)
    assert lk2.reading.value == 60
    only = labs.current(ctx_day8(post71, procedures=[tx]), A.PLATELETS)
    assert only.status == "transfused"


def test_transfusion_window_is_configurable():
    tx = procedure("platelet-transfusion", "completed", performed=day(5))
    post = measurement(A.PLATELETS, 80, day(5, hours=30))
    ctx = ctx_day8(post, procedures=[tx], policy=Policy(transfusion_window_hours=24))
    assert labs.current(ctx, A.PLATELETS).reading.value == 80


def test_pretreatment_and_prior_cycle_baselines():
    d1 = dose(day(1), mg_per_m2=0.8)
    c2 = dose(day(22), mg_per_m2=0.8)
    ms = [measurement(A.ANC, 2.0, day(0)), measurement(A.ANC, 1.5, day(1, hours=-2)),
          measurement(A.ANC, 0.9, day(21)), measurement(A.ANC, 0.7, day(49))]
    f = facts(draft=draft(day(50)), doses=[d1, c2], measurements=ms)
    course = make_course(3, 1, cycle_start=day(50), previous_dose=c2,
                         cycles=[CycleHistory(1, day(1), (d1,)), CycleHistory(2, day(22), (c2,))])
    ctx = context(f, course=course)
    assert labs.pretreatment(ctx, A.ANC).value == 1.5
    assert labs.prior_cycle_baseline(ctx, A.ANC).value == 0.9
    assert labs.current(ctx, A.ANC).reading.value == 0.7


def test_text_and_number_formatting():
    r = labs.read(measurement(A.BILIRUBIN, 2.1, day(7), uln=1.2), Policy())
    assert r.text() == "2.1 mg/dL (1.8x ULN)"
    assert labs.num(0.85) == "0.85" and labs.num(120.0) == "120" and labs.num(12.5) == "12.5"
