"""V-1 (SmPC 4.4, 4.8): VOD/SOS risk factors when HSCT is planned."""

from datetime import date

from engine_factories import (
    condition,
    context,
    day,
    draft,
    facts,
    make_course,
    measurement,
    medication,
)

from app.engine.decisions import DecisionCode as C
from app.engine.facts import Analyte, PatientInfo
from app.engine.rules.vod_risk import check_vod_risk


def run(birth=date(1980, 1, 1), hsct=True, cycle=1, prior=False, **kw):
    f = facts(draft=draft(day(1), mg_per_m2=0.8),
              patient=PatientInfo(id="p", birth_date=birth, gender="male"), **kw)
    return check_vod_risk(context(f, course=make_course(cycle, 1, hsct_planned=hsct,
                                                        prior_hsct=prior)))


def test_no_hsct_planned_no_card():
    assert run(hsct=False, birth=date(1950, 1, 1)) == []


def test_hsct_planned_without_risk_factors_no_card():
    assert run() == []


def test_two_alkylating_agents_and_age_65():
    meds = [medication(["alkylating-agent"], display="busulfan"),
            medication(["alkylating-agent"], display="melphalan")]
    ds = run(birth=date(1960, 1, 5), medications=meds)  # 66 on 2026-01-05
    assert [(d.code, d.rules) for d in ds] == [(C.CAUTION, ("V-1",))]
    assert "2 alkylating agents" in ds[0].summary and "age 66 (>= 65)" in ds[0].summary
    assert ">= 50 %" in ds[0].detail


def test_one_alkylating_agent_is_not_the_2_agent_factor():
    assert run(medications=[medication(["alkylating-agent"], display="busulfan")]) == []


def test_age_55_and_64_other_factor_54_none():
    assert "age 55 (>= 55)" in run(birth=date(1971, 1, 5))[0].summary
    assert "(>= 55)" in run(birth=date(1961, 1, 6))[0].summary  # 64
    assert run(birth=date(1971, 1, 6)) == []  # 54


def test_bilirubin_at_uln_counts_below_does_not():
    at = [measurement(Analyte.BILIRUBIN, 1.2, day(0), uln=1.2)]
    assert "bilirubin" in run(measurements=at)[0].summary
    below = [measurement(Analyte.BILIRUBIN, 1.19, day(0), uln=1.2)]
    assert run(measurements=below) == []


def test_prior_hsct_liver_history_and_cycle_3():
    ds = run(prior=True, cycle=3, conditions=[condition("liver-disease", clinical_status="resolved")])
    s = ds[0].summary
    assert "prior HSCT" in s and "liver disease history" in s and "cycle 3" in s
    assert len(s) <= 140
