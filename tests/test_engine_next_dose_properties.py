"""Property tests for patient-view's next dose (#10) over generated treatment histories."""

from __future__ import annotations

from datetime import timedelta

from engine_factories import T0, body, dose, facts, medication, normal_labs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.decisions import DecisionCode
from app.engine.evaluate import ENGINE_ERROR
from app.engine.next_dose import NEXT_DOSE, evaluate_next_dose, next_due_dose
from app.engine.policy import Policy

POLICY = Policy()
PREMEDS = [medication([c]) for c in ("corticosteroid", "antipyretic", "antihistamine")]


@st.composite
def histories(draw):
    gaps = draw(st.lists(st.integers(5, 35), min_size=0, max_size=9))
    amounts = draw(st.lists(st.sampled_from((0.8, 0.5, 0.6, 0.375, 0.25)), min_size=len(gaps) + 1,
                            max_size=len(gaps) + 1))
    when = [T0]
    for g in gaps:
        when.append(when[-1] + timedelta(days=g))
    doses = [dose(w, mg_per_m2=a) for w, a in zip(when, amounts)]
    now = when[-1] + timedelta(days=draw(st.integers(0, 40)), hours=draw(st.integers(0, 23)))
    labs = normal_labs(T0 - timedelta(days=1)) + body(when=T0 - timedelta(days=1))
    if draw(st.booleans()):
        labs += normal_labs(now - timedelta(hours=6)) + body(when=now - timedelta(hours=6))
    return facts(doses=doses, measurements=labs, medications=PREMEDS), now


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_every_next_dose_card_is_for_the_chart(case) -> None:
    f, now = case
    nd = next_due_dose(f, now, POLICY)
    decisions = evaluate_next_dose(f, now, POLICY)
    assert nd is not None  # on treatment (last dose within the window): a next dose is stated
    assert nd.due >= f.doses_given[-1].given_at.date() + timedelta(days=POLICY.min_days_between_doses)
    assert nd.dose_number in (1, 2, 3) and nd.cycle >= 1
    assert not any(d.extras.get(ENGINE_ERROR) for d in decisions), [d.summary for d in decisions]
    assert sum(d.code is DecisionCode.PROCEED for d in decisions) <= 1
    for d in decisions:
        assert len(d.summary) < 140
        assert d.summary.startswith("Next dose, "), d.summary
        assert d.extras.get(NEXT_DOSE) is not None
        if d.code is DecisionCode.PROCEED:  # nothing objects beside the plan card
            assert all(o.code is DecisionCode.CAUTION for o in decisions if o is not d)
