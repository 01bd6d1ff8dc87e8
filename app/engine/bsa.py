"""Body surface area (rule D-5). Height in cm, weight in kg, result in m2."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.engine.facts import Analyte, ClinicalFacts, Measurement

FORMULAS = ("mosteller", "dubois")


def mosteller(height_cm: float, weight_kg: float) -> float:
    """Mosteller (1987): sqrt(height_cm x weight_kg / 3600)."""
    _check(height_cm, weight_kg)
    return math.sqrt(height_cm * weight_kg / 3600.0)


def dubois(height_cm: float, weight_kg: float) -> float:
    """DuBois & DuBois (1916): 0.007184 x height_cm^0.725 x weight_kg^0.425."""
    _check(height_cm, weight_kg)
    return 0.007184 * height_cm**0.725 * weight_kg**0.425


def bsa(height_cm: float, weight_kg: float, formula: str = "mosteller") -> float:
    """BSA in m2 by the named formula ("mosteller" | "dubois")."""
    if formula == "mosteller":
        return mosteller(height_cm, weight_kg)
    if formula == "dubois":
        return dubois(height_cm, weight_kg)
    raise ValueError(f"unknown BSA formula {formula!r}; expected one of {FORMULAS}")


def _check(height_cm: float, weight_kg: float) -> None:
    if not (height_cm > 0 and weight_kg > 0):
        raise ValueError(f"height and weight must be positive (got {height_cm} cm, {weight_kg} kg)")


# --- BSA at a date from the facts (D-5) ----------------------------------------------------------



@dataclass(frozen=True)
class BodySize:
    """Height and weight in force at a date and the BSA they give (D-5)."""

    height: Measurement | None
    weight: Measurement | None
    formula: str
    bsa_m2: float | None  # None when height or weight is missing
    height_stale: bool = False
    weight_stale: bool = False

    @property
    def usable(self) -> bool:
        return self.bsa_m2 is not None and not self.height_stale and not self.weight_stale

    @property
    def missing(self) -> tuple[str, ...]:
        """needed_data values for what is missing or stale ("height", "weight")."""
        out = []
        if self.height is None or self.height_stale:
            out.append("height")
        if self.weight is None or self.weight_stale:
            out.append("weight")
        return tuple(out)


def body_size_at(
    facts: ClinicalFacts,
    when: datetime,
    formula: str = "mosteller",
    weight_max_age_days: int | None = None,
    height_max_age_days: int | None = None,
) -> BodySize:
    """Latest height and weight at or before `when` (final results), BSA, and staleness."""
    h = facts.latest(Analyte.HEIGHT, when)
    w = facts.latest(Analyte.WEIGHT, when)
    value = bsa(h.value, w.value, formula) if h and w and h.value > 0 and w.value > 0 else None

    def stale(m: Measurement | None, days: int | None) -> bool:
        return m is not None and days is not None and when - m.effective > timedelta(days=days)

    return BodySize(
        height=h,
        weight=w,
        formula=formula,
        bsa_m2=value,
        height_stale=stale(h, height_max_age_days),
        weight_stale=stale(w, weight_max_age_days),
    )
