"""Card wording helpers shared by the toxicity/eligibility rules (summary limit, evidence table)."""

from engine_factories import context, day, draft, facts, make_course, measurement

from app.engine import labs
from app.engine.decisions import DecisionCode, Label
from app.engine.facts import Analyte
from app.engine.policy import Policy
from app.engine.rules.decision_text import clip, evidence_table, make


def test_clip_keeps_summaries_under_140():
    assert clip("short  text") == "short text"
    long = "x" * 200
    assert len(clip(long)) <= 140 and clip(long).endswith("…")
    exact = "y" * 139
    assert clip(exact) == exact


def test_evidence_table_has_value_unit_uln_ratio_grade_date():
    r = labs.read(measurement(Analyte.AST, 128, day(7), uln=40, reference="Observation/9"), Policy())
    t = evidence_table([labs.evidence(r)])
    assert "| AST | 128 | U/L | 40 | 3.20 | 2 | 2026-01-11 09:00 | Observation/9 |" in t


def test_make_stamps_label_and_recovery_for_holds_only():
    ctx = context(facts(draft=draft(day(1))), course=make_course(1, 1), label=Label.US)
    hold = make(ctx, DecisionCode.HOLD, ("L-2",), ("USPI 2.3 Table 3",), "Hold", what="w",
                recovery="ok")
    assert hold.label is Label.US and hold.recovery_criteria == "ok"
    assert "US Prescribing Information" in hold.detail
    caution = make(ctx, DecisionCode.CAUTION, ("Q-1",), (), "c", what="w", recovery="r")
    assert caution.recovery_criteria is None
