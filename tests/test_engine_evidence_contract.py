"""Card contract (clinical-rules section 6): every decision carries `evidence`, the facts it
used (issue #8: the "maximum 6 cycles" discontinue card had none)."""

from __future__ import annotations

from engine_factories import clean_facts, cycle_start_date, draft, label_history, response
from hypothesis import given
from hypothesis import strategies as st
from test_engine_properties import POLICY, SETTINGS, histories, on_schedule

from app.engine.decisions import DecisionCode, Label
from app.engine.evaluate import evaluate


def _without_evidence(ds):
    return [(d.code.value, d.rules, d.summary) for d in ds if not d.evidence]


@SETTINGS
@given(st.one_of(histories(), on_schedule()), st.sampled_from([Label.EU, Label.US]))
def test_every_decision_carries_evidence(case, label):
    f, now = case
    assert _without_evidence(evaluate(f, now, POLICY, label)) == []


def test_maximum_six_cycles_discontinue_carries_the_course_as_evidence():
    when = cycle_start_date(7)
    f = clean_facts(draft(when, mg_per_m2=0.5), label_history(6, cr_from_cycle=2),
                    responses=[response("CR", cycle_start_date(2))])
    ds = [d for d in evaluate(f, when) if d.code is DecisionCode.DISCONTINUE]
    assert ds and ds[0].rules == ("D-7",)
    ev = ds[0].evidence
    assert ev and any(e.concept == "cycle-history" and e.value == 6 for e in ev), ev


def test_engine_error_cards_carry_evidence(monkeypatch):
    import sys

    from engine_factories import T0

    from app.engine import rules as rules_pkg
    from app.engine.evaluate import ENGINE_ERROR

    def boom(ctx):
        raise RuntimeError("bug")

    broken = tuple(rules_pkg.Family(f.name, boom, f.rules) if f.name == "qt" else f
                   for f in rules_pkg.families())
    monkeypatch.setattr(sys.modules["app.engine.evaluate"], "families", lambda: broken)
    ds = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0)
    [err] = [d for d in ds if ENGINE_ERROR in d.extras]
    assert err.evidence and err.evidence[0].value == "RuntimeError"
    monkeypatch.setattr(sys.modules["app.engine.evaluate"], "reconstruct_course",
                        lambda *a: boom(None))
    [err] = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0)
    assert err.evidence and "C-1" in err.evidence[0].note


def test_obtain_height_and_weight_names_what_is_missing():
    from engine_factories import T0, facts

    [d] = [d for d in evaluate(facts(draft=draft(T0, mg_per_m2=0.8)), T0) if "D-5" in d.rules]
    assert {e.concept for e in d.evidence} == {"height", "weight"}
    assert all("no " in (e.note or "") for e in d.evidence)
