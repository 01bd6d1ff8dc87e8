"""evaluate(): all families on one course, de-duplicated, most severe first, one proceed."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import pytest
from engine_factories import (
    T0,
    clean_facts,
    cycle_start_date,
    day,
    dose,
    draft,
    facts,
    label_history,
    measurement,
    other_order,
    response,
    weight,
)

from app.engine import rules as rules_pkg
from app.engine.catalogue import all_rules, format_catalogue
from app.engine.decisions import SEVERITY_ORDER, Decision, DecisionCode, Label
from app.engine.evaluate import ENGINE_ERROR, dedupe, evaluate, sort_decisions
from app.engine.facts import Analyte
from app.engine.policy import Policy, PolicyError, load_policy, policy_from_mapping

CR = [response("CR", day(20))]


def codes(ds):
    return [d.code for d in ds]


def only_proceed(ds):
    return [d for d in ds if d.code is DecisionCode.PROCEED]


def test_clean_first_dose_proceeds_with_dose_bsa_and_preparation():
    ds = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0)
    assert all(d.code in (DecisionCode.CAUTION, DecisionCode.PROCEED) for d in ds)
    [p] = only_proceed(ds)
    assert ds[-1] is p and p.indicator == "info"
    assert (p.dose.mg_per_m2, p.dose.mg, p.dose.bsa_m2, p.dose.vials) == (0.8, 1.45, 1.82, 2)  # 0.8 x 1.8181
    assert p.dose.reconstituted_volume_ml == 5.8 and "Withdraw **5.8 mL**" in p.dose.preparation
    assert p.summary == ("Proceed: 0.8 mg/m2 x BSA 1.82 m2 = 1.45 mg, Cycle 1 Day 1; "
                         "2 x 1 mg vials, 5.8 mL")
    assert "SmPC 4.2 Table 1" in p.citations and "SmPC 6.6" in p.citations
    assert {e.concept for e in p.evidence} == {"ordered-dose", "height", "weight"}
    assert "| Weight | 70 | kg |" in p.detail and "**Preparation**" in p.detail


@pytest.mark.parametrize("n_cycle, m2", [(2, 0.5), (3, 0.5), (6, 0.5)])
def test_clean_later_cycles_proceed(n_cycle, m2):
    start = cycle_start_date(n_cycle)
    ds = evaluate(clean_facts(draft(start, mg_per_m2=m2), label_history(n_cycle - 1),
                              responses=CR), start)
    [p] = only_proceed(ds)
    assert (p.dose.cycle, p.dose.day, p.dose.mg_per_m2) == (n_cycle, 1, 0.5)


def test_wrong_dose_no_proceed():
    ds = evaluate(clean_facts(draft(day(8), mg_per_m2=0.8), [dose(day(1), mg_per_m2=0.8)]), day(8))
    assert DecisionCode.CORRECT_DOSE in codes(ds) and not only_proceed(ds)


def test_too_early_hold_no_proceed():
    ds = evaluate(clean_facts(draft(day(6), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)]), day(6))
    assert codes(ds)[0] is DecisionCode.HOLD and not only_proceed(ds)


def test_caution_alone_keeps_proceed():
    # weight 10 % lower since Day 1: an institutional caution, not an objection
    f = clean_facts(draft(day(8), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)],
                    extra_measurements=[weight(63.0, day(8, hours=-1))])
    ds = evaluate(f, day(8))
    assert any(d.code is DecisionCode.CAUTION and "D-5" in d.rules for d in ds)
    [p] = only_proceed(ds)
    assert p.dose.bsa_m2 == 1.72  # sqrt(170 x 63 / 3600) = 1.7248


def test_hepatic_hold_sorted_before_other_findings_and_no_proceed():
    late = day(8, hours=-2)
    f = clean_facts(draft(day(8), mg_per_m2=0.8), [dose(day(1), mg_per_m2=0.8)],
                    extra_measurements=[measurement(Analyte.BILIRUBIN, 2.0, late, uln=1.2),
                                        measurement(Analyte.AST, 110, late, uln=40)])
    ds = evaluate(f, day(8))
    assert DecisionCode.HOLD in codes(ds) and DecisionCode.CORRECT_DOSE in codes(ds)
    assert not only_proceed(ds)
    ranks = [d.rank for d in ds]
    assert ranks == sorted(ranks)


def test_never_treated_patient_view_and_other_drug_order_give_nothing():
    assert evaluate(facts(), T0) == []
    assert evaluate(facts(other_orders=[other_order(["qt-prolonging"])]), T0) == []


def test_patient_view_on_treatment_has_no_proceed():
    h = label_history(4, cr_from_cycle=None)
    f = clean_facts(None, h, now=cycle_start_date(4) + timedelta(days=3),
                    responses=[response("PR", day(20))])
    ds = evaluate(f, cycle_start_date(4) + timedelta(days=3))
    assert not only_proceed(ds)
    assert any(d.code is DecisionCode.DISCONTINUE and d.rules == ("D-8",) for d in ds)


def test_label_stamped_on_every_decision_us_vials():
    ds = evaluate(clean_facts(draft(day(8), mg_per_m2=0.5), [dose(day(1), mg_per_m2=0.8)]),
                  day(8), label=Label.US)
    assert ds and all(d.label is Label.US for d in ds)
    [p] = only_proceed(ds)
    assert p.dose.mg == 0.91 and p.dose.vials == 2  # 0.9 mg deliverable per US vial
    assert "USPI 2.1 Table 1" in p.citations


def test_string_label_accepted():
    ds = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0, label="US")
    assert all(d.label is Label.US for d in ds)


def test_dedupe_and_sort():
    def dec(code, summary="x", critical=False):
        return Decision(code=code, rules=("Z-1",), citations=(), summary=summary, detail="",
                        critical=critical)
    ds = [dec(DecisionCode.CAUTION), dec(DecisionCode.CAUTION), dec(DecisionCode.HOLD),
          dec(DecisionCode.CAUTION, "y", critical=True), dec(DecisionCode.DISCONTINUE)]
    out = sort_decisions(dedupe(ds))
    assert [d.code for d in out] == [DecisionCode.DISCONTINUE, DecisionCode.HOLD,
                                     DecisionCode.CAUTION, DecisionCode.CAUTION]
    assert out[2].critical and out[2].summary == "y"
    assert SEVERITY_ORDER[0] is DecisionCode.DISCONTINUE and SEVERITY_ORDER[-1] is DecisionCode.PROCEED


def test_failing_family_is_reported_not_skipped(monkeypatch):
    real = rules_pkg.families()

    def boom(ctx):
        raise RuntimeError("bug")

    broken = tuple(f if f.name != "qt" else rules_pkg.Family("qt", boom, f.rules) for f in real)
    monkeypatch.setattr(sys.modules["app.engine.evaluate"], "families", lambda: broken)
    ds = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0)
    [err] = [d for d in ds if ENGINE_ERROR in d.extras]
    assert err.critical and "Q-1" in err.rules and "Not checked" in err.summary
    assert not only_proceed(ds)


def test_no_engine_errors_in_normal_runs():
    for f, now in [(clean_facts(draft(T0, mg_per_m2=0.8)), T0),
                   (facts(draft=draft(T0)), T0),
                   (facts(doses=label_history(2)), cycle_start_date(3))]:
        assert not [d for d in evaluate(f, now) if ENGINE_ERROR in d.extras]


def test_all_summaries_within_140_characters():
    f = facts(draft=draft(cycle_start_date(7), mg=3.0), doses=label_history(6, cr_from_cycle=None))
    ds = evaluate(f, cycle_start_date(7))
    assert ds and all(len(d.summary) < 140 for d in ds)


# --- policy -----------------------------------------------------------------------------------


def test_policy_defaults():
    p = Policy()
    assert (p.dose_tolerance, p.max_single_mg_per_m2, p.max_cycle_mg_per_m2) == (0.05, 0.8, 1.8)
    assert (p.min_days_between_doses, p.weight_max_age_days, p.weight_change_caution) == (6, 30, 0.1)
    assert (p.vial_mg(Label.EU), p.vial_mg(Label.US), p.reconstituted_mg_per_ml) == (1.0, 0.9, 0.25)
    assert p.uln_default("ast") == 40.0 and p.uln_default("bilirubin-total") == 1.2
    assert load_policy(None) == p


def test_load_policy_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"dose_tolerance": 0.03, "bsa_formula": "dubois",
                                "default_uln": {"alt": 33}, "weight_max_age_days": 14}))
    p = load_policy(str(path))
    assert (p.dose_tolerance, p.bsa_formula, p.weight_max_age_days) == (0.03, "dubois", 14)
    assert p.default_uln["alt"] == 33.0 and p.default_uln["ast"] == 40.0  # merged


@pytest.mark.parametrize("raw, message", [
    ({"dose_tolerence": 0.1}, "unknown policy key(s) dose_tolerence"),
    ({"dose_tolerance": "5%"}, "dose_tolerance must be a number"),
    ({"min_days_between_doses": 6.5}, "must be an integer"),
    ({"bsa_formula": "haycock"}, "bsa_formula must be 'mosteller' or 'dubois'"),
    ({"dose_tolerance": 1.5}, "dose_tolerance must be in [0, 1)"),
    ({"default_uln": {"alt": "high"}}, "default_uln.alt must be a number"),
    ([1, 2], "expected a JSON object"),
])
def test_policy_errors_are_clear(raw, message):
    with pytest.raises(PolicyError) as exc:
        policy_from_mapping(raw)
    assert message in str(exc.value)


def test_policy_file_errors(tmp_path):
    with pytest.raises(PolicyError, match="not found"):
        load_policy(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="not readable JSON"):
        load_policy(str(bad))


# --- catalogue --------------------------------------------------------------------------------


def test_catalogue_lists_every_rule_family():
    ids = {s.id for s in all_rules()}
    expected = {f"D-{i}" for i in range(1, 9)} | {"R-1", "C-2", "C-5"}
    assert expected <= ids
    assert {"H-1", "L-2", "I-1", "T-1", "E-1", "Q-1", "V-1", "P-1"} <= ids
    text = format_catalogue(None)
    assert "D-4" in text and "SmPC 4.9" in text and "correct-dose" in text
    assert text.index("D-1 ") < text.index("D-8 ") < text.index("R-1 ")


def test_catalogue_by_label():
    us = format_catalogue("US")
    assert "(US label)" in us and "USPI 2.1" in us
    eu_only = [s.id for s in all_rules() if s.labels == ("EU",)]
    for rid in eu_only:
        assert f"\n{rid} " not in us


def test_safety_net_removes_a_suggestion_above_the_maxima(monkeypatch):
    from app.engine.decisions import DoseRecommendation

    def too_much(ctx):
        dose_ = DoseRecommendation(mg_per_m2=0.9, mg=1.64, bsa_m2=1.82, cycle=1, day=1)
        return [Decision(code=DecisionCode.REDUCE_DOSE, rules=("Z-1",), citations=(),
                         summary="test", detail="d", dose=dose_)]

    fams = rules_pkg.families() + (rules_pkg.Family("fake", too_much, ()),)
    monkeypatch.setattr(sys.modules["app.engine.evaluate"], "families", lambda: fams)
    ds = evaluate(clean_facts(draft(T0, mg_per_m2=0.8)), T0)
    [d] = [d for d in ds if d.rules == ("Z-1",)]
    assert d.dose is None and d.critical and "No dose is suggested" in d.detail
