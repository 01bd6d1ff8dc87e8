"""UCUM conversions to canonical units, with the label's and codes.md's own numbers."""

from __future__ import annotations

import pytest

from fhir_mappings.units import UnitError, convert, to_ucum


@pytest.mark.parametrize(
    ("value", "frm", "to", "substance", "expected"),
    [
        # Bilirubin: 1 mg/dL = 17.1 umol/L (584.66 g/mol), codes.md s9.
        (1.0, "mg/dL", "umol/L", "bilirubin", 17.104),
        (36.0, "umol/L", "mg/dL", "bilirubin", 2.1048),
        (20.52, "umol/L", "mg/dL", "bilirubin", 1.1997),
        # Creatinine: 1 mg/dL = 88.4 umol/L.
        (1.0, "mg/dL", "umol/L", "creatinine", 88.40),
        (88.4, "umol/L", "mg/dL", "creatinine", 1.0),
        # Counts: 10*9/L = 10*3/uL; /uL and /mm3 x 1e-3 (ANC 1.0 = 1000/uL; platelets 50 = 50,000/uL).
        (1.5, "10*3/uL", "10*9/L", None, 1.5),
        (1000, "/uL", "10*9/L", None, 1.0),
        (50000, "/mm3", "10*9/L", None, 50.0),
        (10000, "/mm3", "10*9/L", None, 10.0),  # E-3 blast threshold 10,000/mm3
        (2.0, "10*3/mm3", "10*9/L", None, 2.0),
        # Enzymes: 1 ukat/L = 60 U/L.
        (1.0, "ukat/L", "U/L", None, 60.0),
        (2.5, "ukat/L", "U/L", None, 150.0),
        (120, "U/L", "ukat/L", None, 2.0),
        # Electrolytes: Mg 24.305 g/mol, Ca 40.078 g/mol; meq by valence.
        (2.43, "mg/dL", "mmol/L", "magnesium", 0.99979),
        (10.0, "mg/dL", "mmol/L", "calcium", 2.4951),
        (2.0, "meq/L", "mmol/L", "magnesium", 1.0),
        (4.0, "meq/L", "mmol/L", "potassium", 4.0),
        # Height and weight.
        (70, "[in_i]", "cm", None, 177.8),
        (1.7, "m", "cm", None, 170.0),
        (154.32, "[lb_av]", "kg", None, 69.998),
        (70000, "g", "kg", None, 70.0),
        (2469.2, "[oz_av]", "kg", None, 70.0),
        # Fractions: MRD 0.01 % = 1e-4.
        (0.01, "%", "1", None, 1e-4),
        # Doses.
        (900, "ug", "mg", None, 0.9),
    ],
)
def test_convert(value, frm, to, substance, expected):
    assert convert(value, frm, to, substance) == pytest.approx(expected, rel=1e-4)


def test_identical_units_are_exact():
    assert convert(2.1, "mg/dL", "mg/dL") == 2.1


@pytest.mark.parametrize(
    ("unit", "code", "system", "expected"),
    [
        ("K/uL", None, None, "10*3/uL"),
        ("x10E3/uL", None, None, "10*3/uL"),
        ("x10^3/mcL", None, None, "10*3/uL"),
        ("10^9/L", None, None, "10*9/L"),
        ("cells/uL", None, None, "/uL"),
        ("mg/dl", None, None, "mg/dL"),
        ("µmol/L", None, None, "umol/L"),
        ("micromol/L", None, None, "umol/L"),
        ("IU/L", None, None, "U/L"),
        ("[IU]/L", None, None, "U/L"),
        ("lbs", None, None, "[lb_av]"),
        ("in", None, None, "[in_i]"),
        ("msec", None, None, "ms"),
        ("mg/m²", None, None, "mg/m2"),
        # The UCUM code wins over the display when the system is UCUM.
        ("milligrams per deciliter", "mg/dL", "http://unitsofmeasure.org", "mg/dL"),
        ("K/uL", "10*3/uL", "http://unitsofmeasure.org", "10*3/uL"),
        # A valid UCUM expression not in the alias table is accepted as is.
        ("ng/mL", None, None, "ng/mL"),
    ],
)
def test_to_ucum(unit, code, system, expected):
    assert to_ucum(unit, code, system) == expected


@pytest.mark.parametrize("unit", ["mg/ml/h bogus", "widgets", "", None])
def test_unknown_unit_is_an_error_never_a_guess(unit):
    with pytest.raises(UnitError):
        to_ucum(unit)


@pytest.mark.parametrize(
    ("frm", "to", "substance"),
    [
        ("mg/dL", "U/L", None),  # different dimensions
        ("mg/dL", "umol/L", None),  # mass <-> molar needs a molar mass
        ("meq/L", "mmol/L", None),  # equivalents need a valence
        ("%", "10*9/L", None),  # a differential percentage is not a count
    ],
)
def test_impossible_conversions_raise(frm, to, substance):
    with pytest.raises(UnitError):
        convert(1.0, frm, to, substance)


def test_non_finite_value_raises():
    with pytest.raises(UnitError):
        convert(float("nan"), "mg/dL", "mg/dL")
