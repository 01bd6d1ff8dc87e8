"""The same clinical patient, as Epic, Oracle Health (Cerner), HAPI and the SMART/CDS Hooks sandbox
send it, gives the same ClinicalFacts values (issue #4 "Done when")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.engine.facts import Analyte
from app.facts_builder import build_facts

VENDORS = ("epic", "cerner", "hapi", "smart")
FIXTURES = Path(__file__).parent / "fixtures" / "vendors"

# The clinical truth, in canonical units (value, ULN or None).
EXPECTED = {
    Analyte.BILIRUBIN: (2.1, 1.2),
    Analyte.AST: (150.0, 40.0),
    Analyte.ALT: (90.0, 40.0),
    Analyte.ANC: (1.2, None),
    Analyte.PLATELETS: (45.0, None),
    Analyte.WBC: (3.4, None),
    Analyte.HEIGHT: (170.0, None),
    Analyte.WEIGHT: (70.0, None),
    Analyte.QTC: (430.0, None),
}


def load(vendor: str):
    d = json.loads((FIXTURES / f"{vendor}.json").read_text())
    now = datetime.fromisoformat(d["now"].replace("Z", "+00:00"))
    return d, build_facts(d["patient_id"], d["resources"], d["draftOrders"], now)


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_labs_in_canonical_units(vendor):
    _, facts = load(vendor)
    before = datetime(2026, 11, 23, tzinfo=UTC)
    for analyte, (value, uln) in EXPECTED.items():
        m = facts.latest(analyte, before)
        assert m is not None, analyte
        assert m.value == pytest.approx(value, rel=2e-3), (analyte, m.original)
        if uln is not None:
            assert m.uln == pytest.approx(uln, rel=2e-3), (analyte, m.uln)
        assert m.effective.date().isoformat() == "2026-11-22"
    assert facts.latest(Analyte.QTC, before).method == "QTcF"


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_course_draft_and_conditions(vendor):
    d, facts = load(vendor)
    assert facts.patient.id == d["patient_id"]
    assert facts.patient.birth_date.isoformat() == "1987-09-12"
    assert facts.patient.gender == "female"
    # One completed dose of 1.36 mg on 2026-11-02 (rateQuantity 50 mL/h is never a dose).
    assert [(g.given_at.isoformat(), g.dose_mg) for g in facts.doses_given] == [
        ("2026-11-02T09:00:00+00:00", 1.36)
    ]
    assert facts.draft is not None
    assert facts.draft.reference == "MedicationRequest/draft-1"
    assert facts.draft.dose_mg_per_m2 == 0.5 and facts.draft.dose_mg is None
    assert facts.draft.dose_date == datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert facts.draft.problems == ()
    # Only B-ALL: the refuted VOD (Cerner) is ignored.
    assert {c.concept for c in facts.conditions} == {"b-all"}
    assert all(c.active for c in facts.conditions)


def test_sandbox_draft_is_read_tolerantly_others_strictly():
    assert load("smart")[1].draft.read_tolerantly is True
    for vendor in ("epic", "cerner", "hapi"):
        assert load(vendor)[1].draft.read_tolerantly is False, vendor


def test_entered_in_error_and_superset_results_are_ignored():
    _, epic = load("epic")
    assert [m.value for m in epic.series(Analyte.BILIRUBIN)] == [2.1]  # 9.9 was entered-in-error
    _, hapi = load("hapi")
    assert [m.reference for m in hapi.series(Analyte.BILIRUBIN)] == ["Observation/6001"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_facts_have_no_problems(vendor):
    assert load(vendor)[1].problems == ()


def test_all_vendors_agree():
    """Identical digests (the ULN compared where every vendor sends one)."""
    def digest(f):
        return (
            tuple(sorted(
                (m.analyte.value, round(m.value, 2),
                 None if EXPECTED[m.analyte][1] is None else round(m.uln, 1), m.effective)
                for m in f.measurements
            )),
            tuple((g.given_at, g.dose_mg) for g in f.doses_given),
            (f.draft.dose_mg_per_m2, f.draft.dose_date),
            frozenset(c.concept for c in f.conditions),
        )

    digests = {v: digest(load(v)[1]) for v in VENDORS}
    assert len(set(digests.values())) == 1, digests


def test_all_vendors_get_the_same_decisions():
    """Issue #4: vendor shapes give the same decisions. Bilirubin 2.1/1.2 = 1.75 x ULN (> 1.5) with
    AST 150/40 = 3.75 x ULN (> 2.5): hold (SmPC 4.2 Table 3, rule L-2), whatever the units sent."""
    from app.engine.evaluate import evaluate

    def decisions(vendor):
        d, facts = load(vendor)
        now = datetime.fromisoformat(d["now"].replace("Z", "+00:00"))
        return [(x.code.value, x.rules) for x in evaluate(facts, now)]

    results = {v: decisions(v) for v in VENDORS}
    assert all(r == results["hapi"] for r in results.values()), results
    assert results["hapi"][0][0] == "hold" and "L-2" in results["hapi"][0][1]
