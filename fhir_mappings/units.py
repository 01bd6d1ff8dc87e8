"""Units: UCUM semantics via ucumvert (a UCUM grammar on top of pint), plus what real EHRs send.

`to_ucum` turns a Quantity's unit into a UCUM code: the `code` wins when `system` is UCUM, else
the `unit` display; common non-UCUM spellings ("K/uL", "x10E3/uL", "mg/dl", "µmol/L", "lbs") are
mapped by a reviewed alias table. `convert` gives the factor with pint, adding the two clinical
conventions pint cannot know: mass <-> substance concentration by molar mass (bilirubin 584.66
g/mol: 1 mg/dL = 17.1 umol/L; creatinine 113.12 g/mol: 1 mg/dL = 88.4 umol/L), and meq by valence.
An enzyme "IU" is the enzyme unit U (1 umol/min), so [IU]/L and IU/L are U/L; 1 ukat/L = 60 U/L.
Anything else unknown raises UnitError: an unusable result, never a guess.

The registry costs ~1 s to build: it is built lazily on the first conversion that needs it (call
`warm()` at startup); identical units and cached factors never touch it.

Bounded: parsing a unit the caches have not seen costs milliseconds (hundreds for a long made-up
one), so only units of at most MAX_UCUM_CHARS are parsed, at most `parse_budget(n)` of them per
block (the facts builder: per hook call), and units in messages are shown cut to SHOWN_CHARS.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"
MAX_UCUM_CHARS = 40  # the longest clinical UCUM codes ("mL/min/{1.73_m2}") are under 20
SHOWN_CHARS = 40
CACHED_CHARS = 128  # longer unit members are read uncached (each cache entry stays small)


class UnitError(ValueError):
    """A unit that cannot be read or converted to the wanted unit."""


class ParseBudgetSpent(UnitError):
    """A unit not seen before, past the block's `parse_budget`: not read."""


def shown(text: Any) -> str:
    """repr() of a unit (or a value) for a message, cut to SHOWN_CHARS characters."""
    if isinstance(text, str) and len(text) > SHOWN_CHARS:
        return repr(text[:SHOWN_CHARS]) + f" (cut, {len(text):,} characters)"
    return repr(text)


_parses_left: ContextVar[list[int] | None] = ContextVar("ucum_parses_left", default=None)


@contextmanager
def parse_budget(parses: int) -> Iterator[None]:
    """At most `parses` units not seen before are parsed inside this block; beyond, UnitError."""
    token = _parses_left.set([parses])
    try:
        yield
    finally:
        _parses_left.reset(token)


def _spend_parse() -> None:
    left = _parses_left.get()
    if left is not None:
        if left[0] <= 0:
            raise ParseBudgetSpent("too many different units in one request to read them all")
        left[0] -= 1


# Molar masses (g/mol) and valences of analytes measured both ways.
MOLAR_MASS: dict[str, float] = {
    "bilirubin": 584.66,
    "creatinine": 113.12,
    "magnesium": 24.305,
    "calcium": 40.078,
    "potassium": 39.098,
    "urate": 168.11,
}
VALENCE: dict[str, int] = {"potassium": 1, "magnesium": 2, "calcium": 2, "sodium": 1}

# Non-UCUM spellings -> UCUM (keys compared lower-case without spaces). Reviewed list; extend it
# when an EHR sends a new spelling rather than guessing.
_ALIASES: dict[str, str] = {}


def _alias(ucum: str, *spellings: str) -> None:
    for s in spellings + (ucum,):
        _ALIASES[s.lower().replace(" ", "")] = ucum


_alias("10*3/uL", "K/uL", "K/µL", "K/μL", "K/mcL", "x10E3/uL", "x10e3/µL", "x10^3/uL", "x10^3/µL",
       "10^3/uL", "10^3/µL", "10^3/μL", "10e3/uL", "10E3/uL", "thou/uL", "thou/mm3", "10*3/µL",
       "10*3/mcL", "10^3/mcL", "x10(3)/mcL", "x10*3/uL", "10.3/uL", "TH/uL", "10*3/mm3", "K/mm3",
       "10^3/mm3", "x10^3/mm3", "10*3/ul", "x10^3/mcL", "x10E3/mcL", "x10*3/mcL", "thou/mcL")
_alias("10*9/L", "10^9/L", "x10E9/L", "x10^9/L", "10e9/L", "10E9/L", "x10*9/L", "G/L", "Gpt/L",
       "10.9/L", "/nL", "10*9/l")
_alias("10*6/uL", "M/uL", "x10E6/uL", "10^6/uL", "x10^6/uL", "10^12/L", "10*12/L", "x10^12/L")
_alias("/uL", "/µL", "/μL", "/mcL", "cells/uL", "cells/µL", "{cells}/uL", "/ul", "per uL")
_alias("/mm3", "cells/mm3", "{cells}/mm3", "/cmm", "/cumm", "per mm3")
_alias("mg/dL", "mg/dl", "mg/100mL", "mg%")
_alias("g/dL", "g/dl")
_alias("g/L", "g/l")
_alias("mg/L", "mg/l")
_alias("umol/L", "µmol/L", "μmol/L", "umol/l", "µmol/l", "micromol/L", "mcmol/L")
_alias("mmol/L", "mmol/l", "mM")
_alias("meq/L", "mEq/L", "meq/l", "mEq/l", "meql")
_alias("U/L", "u/l", "IU/L", "[IU]/L", "iu/l", "U/l", "IU/l", "units/L", "unit/L")
_alias("ukat/L", "µkat/L", "μkat/L", "ukat/l", "µkat/l", "microkat/L")
_alias("nkat/L", "nkat/l")
_alias("kg", "kilogram", "kilograms", "kgs", "Kg", "KG")
_alias("g", "gram", "grams", "gm")
_alias("[lb_av]", "lb", "lbs", "pound", "pounds", "[lb]", "lb_av")
_alias("[oz_av]", "oz", "ounce", "ounces")
_alias("cm", "centimeter", "centimeters", "cms", "CM")
_alias("m", "meter", "meters", "metre")
_alias("[in_i]", "in", "inch", "inches", "[in_us]", "''", '"')
_alias("[ft_i]", "ft", "feet", "foot")
_alias("ms", "msec", "millisecond", "milliseconds", "mSec")
_alias("s", "sec", "second", "seconds")
_alias("%", "percent", "pct", "%cells", "% of cells", "{%}")
_alias("1", "{ratio}", "ratio", "fraction")
_alias("mg", "milligram", "milligrams", "MG")
_alias("mg/m2", "mg/m^2", "mg/m²", "mg/sqm", "mg/m*m", "mg/(m2)", "mg/m**2", "mg/M2")
_alias("m2", "m^2", "m²", "sqm")

# Unit systems whose `code` we trust as UCUM.
_UCUM_SYSTEMS = {UCUM_SYSTEM, UCUM_SYSTEM + "/", "urn:oid:2.16.840.1.113883.6.8", "https://unitsofmeasure.org"}


def to_ucum(unit: str | None, code: str | None = None, system: str | None = None) -> str:
    """The UCUM code for a Quantity's unit. Raises UnitError when there is none usable."""
    candidates: list[str] = []
    if code and (system or "").strip() in _UCUM_SYSTEMS:
        candidates.append(code)
    if unit:
        candidates.append(unit)
    if code and code not in candidates:
        candidates.append(code)  # a code from an unknown system: last, through the alias table
    if not candidates:
        raise UnitError("no unit")
    for cand in candidates:
        c = cand.strip()
        alias = _ALIASES.get(c.lower().replace(" ", ""))
        if alias:
            return alias
        if _is_ucum(c):
            return c
    raise UnitError(f"unknown unit {shown(candidates[0])}")


def quantity_ucum(quantity: dict[str, Any]) -> str:
    """UCUM code of a Quantity dict (code when system is UCUM, else unit). Raises UnitError."""
    members = (quantity.get("unit"), quantity.get("code"), quantity.get("system"))
    if any(isinstance(v, str) and len(v) > CACHED_CHARS for v in members):
        return _to_ucum_checked(*members)
    try:
        return _to_ucum_cached(*members)
    except TypeError as exc:  # unhashable junk (a list or object where a string belongs)
        raise UnitError(f"malformed unit {shown(quantity.get('unit'))}") from exc


@lru_cache(maxsize=2048)
def _to_ucum_cached(unit: Any, code: Any, system: Any) -> str:
    return _to_ucum_checked(unit, code, system)


def _to_ucum_checked(unit: Any, code: Any, system: Any) -> str:
    if not all(v is None or isinstance(v, str) for v in (unit, code, system)):
        raise UnitError(f"malformed unit {shown(unit)}")
    return to_ucum(unit, code, system)


_lock = threading.Lock()
_registry: Any = None


def _ureg() -> Any:
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from ucumvert import PintUcumRegistry

                _registry = PintUcumRegistry()
    return _registry


def warm() -> None:
    """Build the UCUM registry now (about 1 s) instead of on the first unusual unit."""
    _ureg()


@lru_cache(maxsize=1024)
def _is_ucum(code: str) -> bool:
    if not code or len(code) > MAX_UCUM_CHARS or any(ch.isspace() for ch in code):
        return False
    _spend_parse()
    try:
        _ureg().from_ucum(code)
        return True
    except Exception:  # noqa: BLE001 - ucumvert raises lark and pint errors of many kinds
        return False


@lru_cache(maxsize=4096)
def _pint_factor(frm: str, to: str) -> tuple[float | None, str]:
    """(factor, dimensionality of frm): frm -> to, factor None when dimensions differ."""
    if len(frm) > MAX_UCUM_CHARS or len(to) > MAX_UCUM_CHARS:
        raise UnitError(f"unknown unit {shown(frm)} or {shown(to)}")
    _spend_parse()
    ureg = _ureg()
    try:
        q_from = ureg.from_ucum(frm)
        q_to = ureg.from_ucum(to)
    except Exception as exc:  # noqa: BLE001
        raise UnitError(f"unknown unit {shown(frm)} or {shown(to)}") from exc
    dim = str(q_from.dimensionality)
    try:
        return float((q_from / q_to).to("dimensionless").magnitude), dim
    except Exception:  # noqa: BLE001 - DimensionalityError
        return None, dim


def _is_eq(ucum: str) -> bool:
    return "eq" in ucum and "req" not in ucum


@lru_cache(maxsize=4096)
def factor(frm: str, to: str, substance: str | None = None) -> float:
    """Multiplier that converts a value in UCUM `frm` to UCUM `to`.

    `substance` ("bilirubin", "creatinine", ...) enables mass <-> molar conversion and meq.
    """
    if frm == to:
        return 1.0
    f, _ = _pint_factor(frm, to)
    eq_mismatch = _is_eq(frm) != _is_eq(to)  # pint counts an equivalent as a mole: needs valence
    if f is not None and not eq_mismatch:
        return f
    if substance is None:
        raise UnitError(f"cannot convert {shown(frm)} to {shown(to)}")
    # Through the base concentrations: g/L <-> mol/L (molar mass), mol/L <-> eq/L (valence).
    m = MOLAR_MASS.get(substance)
    z = VALENCE.get(substance)

    def to_mol_per_l(unit: str) -> float:
        if _is_eq(unit):
            if not z:
                raise UnitError(f"no valence for {substance}")
            eq_f, _ = _pint_factor(unit, "eq/L")
            if eq_f is None:
                raise UnitError(f"cannot read {shown(unit)} as a concentration")
            return eq_f / z
        mol_f, _ = _pint_factor(unit, "mol/L")
        if mol_f is not None:
            return mol_f
        g_f, _ = _pint_factor(unit, "g/L")
        if g_f is not None and m:
            return g_f / m
        raise UnitError(f"cannot convert {shown(unit)} for {substance}")

    try:
        return to_mol_per_l(frm) / to_mol_per_l(to)
    except ParseBudgetSpent:
        raise  # its own words: the unit was not read, not found unconvertible
    except UnitError as exc:
        raise UnitError(f"cannot convert {shown(frm)} to {shown(to)} for {substance}") from exc


def convert(value: float, frm: str, to: str, substance: str | None = None) -> float:
    """`value` in UCUM `frm` expressed in UCUM `to`. Raises UnitError."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise UnitError(f"not a number: {shown(value)}")
    f = factor(frm, to, substance)
    if f == 1.0:
        return float(value)
    # 9 significant digits: drops float noise (1.5000000000000004) without losing precision.
    return float(f"{float(value) * f:.9g}")
