"""The course and the response worked out once per chart (issue #11), never a different answer.

`ClinicalFacts.shared_memo` keeps what app/engine/course.py works out from the facts for them and
for their `with_draft` copies; patient-view reads the course for the chart, the next dose and the
card's history. Every decision must be the one worked out without the memo.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app import facts_builder
from app.demo import demo_patient_ids, demo_request, demo_request_names, load_patient
from app.engine import course as course_module
from app.engine import evaluate, evaluate_next_dose
from app.engine.facts import DraftDose
from app.engine.policy import Policy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _without_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(course_module, "_shared", lambda facts, key, policy, compute: compute())


@pytest.mark.parametrize("pid", demo_patient_ids())
@pytest.mark.parametrize("days", [0, 3, 9, 30])
def test_patient_view_decisions_are_those_without_the_memo(monkeypatch, pid, days):
    now = NOW + timedelta(days=days)
    facts = facts_builder.build_facts(pid, load_patient(pid, NOW), None, now)
    with_memo = evaluate_next_dose(facts, now, Policy())
    _without_memo(monkeypatch)
    fresh = facts_builder.build_facts(pid, load_patient(pid, NOW), None, now)
    assert with_memo == evaluate_next_dose(fresh, now, Policy())


@pytest.mark.parametrize("name", demo_request_names())
def test_order_decisions_are_those_without_the_memo(monkeypatch, name):
    request = demo_request(name, NOW, "http://127.0.0.1:1")
    pid = request["context"]["patientId"]
    draft = request["context"].get("draftOrders")
    facts = facts_builder.build_facts(pid, load_patient(pid, NOW), draft, NOW)
    first = evaluate(facts, NOW, Policy())
    assert evaluate(facts, NOW, Policy()) == first  # asked again: the kept course
    _without_memo(monkeypatch)
    assert evaluate(facts_builder.build_facts(pid, load_patient(pid, NOW), draft, NOW), NOW, Policy()) == first


def test_the_memo_follows_with_draft_copies_only_when_nothing_else_changes():
    pid = demo_patient_ids()[0]
    facts = facts_builder.build_facts(pid, load_patient(pid, NOW), None, NOW)
    draft = DraftDose(reference="next-dose", dose_date=NOW)
    assert facts.with_draft(draft).shared_memo is facts.shared_memo
    assert facts.with_draft(draft, other_orders=()).shared_memo is facts.shared_memo
    assert facts.with_draft(draft, conditions=()).shared_memo is not facts.shared_memo
    assert replace(facts, draft=draft).shared_memo is not facts.shared_memo


def test_the_course_is_kept_per_draft_now_and_policy():
    pid = demo_patient_ids()[0]
    facts = facts_builder.build_facts(pid, load_patient(pid, NOW), None, NOW)
    policy = Policy()
    calls = []
    real = course_module._reconstruct_course

    def counting(*args):
        calls.append(args)
        return real(*args)

    course_module._reconstruct_course, saved = counting, real
    try:
        a = course_module.reconstruct_course(facts, NOW, policy)
        assert course_module.reconstruct_course(facts.with_draft(None), NOW, policy) is a
        assert len(calls) == 1
        course_module.reconstruct_course(facts, NOW + timedelta(days=1), policy)  # another now
        course_module.reconstruct_course(facts, NOW, Policy())  # another policy
        later = DraftDose(reference="next-dose", dose_date=NOW + timedelta(days=7))
        course_module.reconstruct_course(facts.with_draft(later), NOW, policy)  # another draft
        assert len(calls) == 4
        course_module.reconstruct_course(facts.with_draft(replace(later)), NOW, policy)  # equal draft
        assert len(calls) == 4
    finally:
        course_module._reconstruct_course = saved


@pytest.mark.parametrize("pid", demo_patient_ids())
def test_the_course_reads_only_the_drafts_date_and_stated_cycle_day(pid):
    """Why the course is kept per dose date and cycle/day: the same course for any amount."""
    facts = facts_builder.build_facts(pid, load_patient(pid, NOW), None, NOW)
    when = NOW + timedelta(days=2)
    bare = DraftDose(reference="next-dose", dose_date=when)
    dosed = DraftDose(reference="MedicationRequest/x", dose_date=when, dose_mg=1.2, dose_mg_per_m2=0.8,
                      status="draft", read_tolerantly=True, problems=("a problem",))
    policy = Policy()
    assert (course_module._reconstruct_course(replace(facts, draft=bare), NOW, policy)
            == course_module._reconstruct_course(replace(facts, draft=dosed), NOW, policy))
