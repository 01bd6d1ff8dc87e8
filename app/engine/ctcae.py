"""NCI CTCAE v3.0 grading of the labs the service can grade (clinical-rules section 0).

SmPC 4.2 Table 3 note a / USPI 2.3 Table 3 note a grade non-haematological toxicity by CTCAE 3.0.
Grades are by multiples of the upper limit of normal (ULN); QTc by milliseconds. Comparisons use
exact decimal arithmetic so that a value of exactly 1.5 x ULN is Grade 1 for bilirubin, not 2.
"""

from __future__ import annotations

from decimal import Decimal

from app.engine.facts import Analyte

# Upper bounds (x ULN, inclusive) of Grades 1, 2 and 3; above the last bound is Grade 4.
# Grade 1 starts above the ULN (> 1.0 x ULN).
ULN_GRADE_BOUNDS: dict[Analyte, tuple[float, float, float]] = {
    Analyte.BILIRUBIN: (1.5, 3.0, 10.0),
    Analyte.AST: (2.5, 5.0, 20.0),
    Analyte.ALT: (2.5, 5.0, 20.0),
    Analyte.ALP: (2.5, 5.0, 20.0),
    Analyte.GGT: (2.5, 5.0, 20.0),
    Analyte.AMYLASE: (1.5, 2.0, 5.0),
    Analyte.LIPASE: (1.5, 2.0, 5.0),
    Analyte.CREATININE: (1.5, 3.0, 6.0),
}

GRADABLE: tuple[Analyte, ...] = (*ULN_GRADE_BOUNDS, Analyte.QTC)
LIVER_TESTS: frozenset[Analyte] = frozenset(
    {Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT, Analyte.ALP, Analyte.GGT}
)

# QTc (ms): Grade 1 > 450-470, Grade 2 > 470-500 or >= 60 ms over baseline, Grade 3 > 500,
# Grade 4 > 500 with life-threatening signs (torsade, polymorphic VT, ...).
QTC_GRADE_1_ABOVE = 450.0
QTC_GRADE_2_ABOVE = 470.0
QTC_GRADE_3_ABOVE = 500.0
QTC_GRADE_2_INCREASE = 60.0


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def exceeds(value: float, uln: float, factor: float) -> bool:
    """value > factor x ULN, exactly (no binary floating-point error at the boundary)."""
    return _d(value) > _d(uln) * _d(factor)


def ratio(value: float, uln: float) -> float:
    """value / ULN for display and evidence (4 decimals)."""
    if not uln > 0:
        raise ValueError(f"ULN must be > 0 (got {uln})")
    return round(value / uln, 4)


def grade_by_uln(analyte: Analyte, value: float, uln: float) -> int:
    """CTCAE v3.0 grade 0-4 of a ULN-graded lab. Raises KeyError if the analyte is not graded."""
    g1, g2, g3 = ULN_GRADE_BOUNDS[analyte]
    if not uln > 0:
        raise ValueError(f"ULN must be > 0 (got {uln})")
    if not exceeds(value, uln, 1.0):
        return 0
    if not exceeds(value, uln, g1):
        return 1
    if not exceeds(value, uln, g2):
        return 2
    if not exceeds(value, uln, g3):
        return 3
    return 4


def grade_qtc(qtc_ms: float, baseline_ms: float | None = None, life_threatening: bool = False) -> int:
    """CTCAE v3.0 grade of QTc prolongation (0-4)."""
    q = _d(qtc_ms)
    if q > _d(QTC_GRADE_3_ABOVE):
        return 4 if life_threatening else 3
    grade = 0
    if q > _d(QTC_GRADE_2_ABOVE):
        grade = 2
    elif q > _d(QTC_GRADE_1_ABOVE):
        grade = 1
    if baseline_ms is not None and q - _d(baseline_ms) >= _d(QTC_GRADE_2_INCREASE):
        grade = max(grade, 2)
    return grade


def grade(analyte: Analyte, value: float, uln: float | None = None,
          baseline: float | None = None) -> int | None:
    """Grade of any gradable analyte; None when it cannot be graded (no ULN, or not gradable).

    baseline is used for QTc only (Grade 2: >= 60 ms over baseline).
    """
    if analyte == Analyte.QTC:
        return grade_qtc(value, baseline)
    if analyte not in ULN_GRADE_BOUNDS or uln is None or not uln > 0:
        return None
    return grade_by_uln(analyte, value, uln)


def grade_upper_bound(analyte: Analyte, g: int) -> str:
    """Human text for 'Grade <= g' of an analyte, e.g. '<= 1.5 x ULN' for bilirubin Grade 1."""
    if analyte == Analyte.QTC:
        return {0: "<= 450 ms", 1: "<= 470 ms", 2: "<= 500 ms"}.get(g, "any")
    if g <= 0:
        return "<= ULN"
    bounds = ULN_GRADE_BOUNDS[analyte]
    if g >= 4:
        return "any"
    return f"<= {bounds[g - 1]:g} x ULN"
