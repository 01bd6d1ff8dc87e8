"""I-1 (SmPC 4.2 Table 3, 4.4): severe/life-threatening -> discontinue; otherwise caution."""

import pytest
from engine_factories import context, day, dose, draft, facts, make_course, reaction

from app.engine.context import CycleHistory
from app.engine.decisions import DecisionCode as C
from app.engine.decisions import Label
from app.engine.rules.infusion import check_infusion

D1 = dose(day(1), mg_per_m2=0.8)


def run(*reactions, label=Label.EU, with_draft=True):
    f = facts(draft=draft(day(8), mg_per_m2=0.5) if with_draft else None, doses=[D1],
              reactions=list(reactions))
    course = make_course(1, 8, previous_dose=D1, cycles=[CycleHistory(1, day(1), (D1,))])
    return check_infusion(context(f, course=course, label=label, now=day(8)))


@pytest.mark.parametrize("severity", ["severe", "life-threatening"])
def test_severe_reaction_discontinues(severity):
    ds = run(reaction("infusion-reaction", severity, recorded=day(1, hours=2)))
    assert [(d.code, d.rules, d.indicator) for d in ds] == [(C.DISCONTINUE, ("I-1",), "critical")]
    assert severity in ds[0].summary and "2026-01-05" in ds[0].summary


@pytest.mark.parametrize("severity", ["mild", "moderate"])
def test_mild_or_moderate_reaction_caution_premedicate_observe_1h(severity):
    ds = run(reaction("infusion-reaction", severity))
    assert [(d.code, d.suggest_premedication) for d in ds] == [(C.CAUTION, True)]
    assert ">= 1 h" in ds[0].summary


def test_unknown_severity_caution_says_what_severe_would_mean():
    ds = run(reaction("infusion-reaction", None))
    assert ds[0].code is C.CAUTION and "permanently discontinued" in ds[0].detail


def test_no_reaction_or_hypersensitivity_only_is_not_i1():
    assert run() == []
    assert run(reaction("hypersensitivity", "severe")) == []  # E-1's business


def test_us_citations_and_no_draft():
    assert run(reaction(severity="severe"), label=Label.US)[0].citations == (
        "USPI 2.3 Table 3", "USPI 5.4")
    assert run(reaction(severity="severe"), with_draft=False) == []
