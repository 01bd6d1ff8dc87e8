"""CTCAE v3.0 grading (clinical-rules section 0): both sides of every grade edge."""

import pytest

from app.engine import ctcae
from app.engine.facts import Analyte

A = Analyte


@pytest.mark.parametrize(
    ("analyte", "uln", "value", "grade"),
    [
        # total bilirubin: >ULN-1.5 / >1.5-3.0 / >3.0-10.0 / >10.0 x ULN (ULN 1.2 mg/dL)
        (A.BILIRUBIN, 1.2, 1.2, 0),
        (A.BILIRUBIN, 1.2, 1.21, 1),
        (A.BILIRUBIN, 1.2, 1.8, 1),  # exactly 1.5 x ULN (1.8/1.2 = 1.5000000000000002 in floats)
        (A.BILIRUBIN, 1.2, 1.81, 2),
        (A.BILIRUBIN, 1.2, 3.6, 2),
        (A.BILIRUBIN, 1.2, 3.61, 3),
        (A.BILIRUBIN, 1.2, 12.0, 3),
        (A.BILIRUBIN, 1.2, 12.01, 4),
        # AST/ALT: >ULN-2.5 / >2.5-5.0 / >5.0-20.0 / >20.0 (ULN 40 U/L)
        (A.AST, 40, 40, 0),
        (A.AST, 40, 41, 1),
        (A.AST, 40, 100, 1),
        (A.AST, 40, 101, 2),
        (A.ALT, 40, 200, 2),
        (A.ALT, 40, 201, 3),
        (A.ALT, 40, 800, 3),
        (A.ALT, 40, 801, 4),
        # ALP, GGT: same bounds as AST/ALT
        (A.ALP, 120, 300, 1),
        (A.ALP, 120, 301, 2),
        (A.GGT, 50, 250, 2),
        (A.GGT, 50, 251, 3),
        # amylase, lipase: >ULN-1.5 / >1.5-2.0 / >2.0-5.0 / >5.0
        (A.AMYLASE, 100, 150, 1),
        (A.AMYLASE, 100, 151, 2),
        (A.LIPASE, 60, 120, 2),
        (A.LIPASE, 60, 121, 3),
        (A.LIPASE, 60, 300, 3),
        (A.LIPASE, 60, 301, 4),
        # creatinine: >ULN-1.5 / >1.5-3.0 / >3.0-6.0 / >6.0
        (A.CREATININE, 1.2, 1.8, 1),
        (A.CREATININE, 1.2, 1.81, 2),
        (A.CREATININE, 1.2, 3.6, 2),
        (A.CREATININE, 1.2, 3.61, 3),
        (A.CREATININE, 1.2, 7.2, 3),
        (A.CREATININE, 1.2, 7.21, 4),
    ],
)
def test_uln_grades_both_sides_of_each_edge(analyte, uln, value, grade):
    assert ctcae.grade_by_uln(analyte, value, uln) == grade
    assert ctcae.grade(analyte, value, uln) == grade


@pytest.mark.parametrize(
    ("qtc", "baseline", "grade"),
    [
        (450, None, 0),
        (451, None, 1),
        (470, None, 1),
        (471, None, 2),
        (500, None, 2),
        (501, None, 3),
        (459, 400, 1),  # +59 ms: not Grade 2 by the increase criterion
        (460, 400, 2),  # +60 ms over baseline: Grade 2 even under 470 ms
        (440, 380, 2),
        (505, 400, 3),
    ],
)
def test_qtc_grades(qtc, baseline, grade):
    assert ctcae.grade_qtc(qtc, baseline) == grade


def test_qtc_grade_4_needs_life_threatening_signs():
    assert ctcae.grade_qtc(520, life_threatening=True) == 4
    assert ctcae.grade_qtc(500, life_threatening=True) == 2


def test_exceeds_is_exact_at_the_boundary():
    assert not ctcae.exceeds(1.8, 1.2, 1.5)
    assert ctcae.exceeds(1.81, 1.2, 1.5)
    assert not ctcae.exceeds(100, 40, 2.5)
    assert ctcae.exceeds(100.1, 40, 2.5)


def test_ungradable_returns_none():
    assert ctcae.grade(A.ANC, 0.5, 1.0) is None
    assert ctcae.grade(A.BILIRUBIN, 2.0, None) is None


def test_bad_uln_rejected():
    with pytest.raises(ValueError):
        ctcae.grade_by_uln(A.AST, 50, 0)
    with pytest.raises(ValueError):
        ctcae.ratio(1, 0)


def test_grade_upper_bound_text():
    assert ctcae.grade_upper_bound(A.BILIRUBIN, 1) == "<= 1.5 x ULN"
    assert ctcae.grade_upper_bound(A.AST, 2) == "<= 5 x ULN"
    assert ctcae.grade_upper_bound(A.QTC, 1) == "<= 470 ms"
