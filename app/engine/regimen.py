"""The label regimen as data (rules D-1, D-2, D-3; SmPC 4.2 Table 1, USPI 2.1).

Doses are mg/m2 for dose 1, 2, 3 of a cycle (Days 1, 8, 15). Reduction levels (SmPC 4.2 Table 4,
>= 14 days): 1 = total dose reduced by 25 % (every dose x 0.75); 2 = two doses per cycle, each at
the level-1 amount. The label does not say which dose is dropped at level 2: we model Days 1 and 8
and the card says the choice is the clinician's.
"""

from __future__ import annotations

import math

# SmPC 4.2 Table 1 (Day 1, Day 8, Day 15), mg/m2
CYCLE_1: tuple[float, float, float] = (0.8, 0.5, 0.5)  # D-1: all patients
LATER_CR_CRI: tuple[float, float, float] = (0.5, 0.5, 0.5)  # D-2: CR/CRi achieved
LATER_NO_CR: tuple[float, float, float] = (0.8, 0.5, 0.5)  # D-2: CR/CRi not achieved
DOSE_DAYS: tuple[int, int, int] = (1, 8, 15)  # planned day of dose 1, 2, 3 (Table 1)

LEVEL_1_FACTOR = 0.75  # D-3: "decrease the total dose by 25 %" (SmPC 4.2 Table 4)
MAX_SINGLE_MG_PER_M2 = 0.8  # SmPC 4.9
MAX_CYCLE_MG_PER_M2 = 1.8  # SmPC 4.9


def label_schedule(cycle: int, cr_or_cri: bool) -> tuple[float, float, float]:
    """Table 1 doses for a cycle at reduction level 0."""
    if cycle < 1:
        raise ValueError(f"cycle must be >= 1 (got {cycle})")
    if cycle == 1:
        return CYCLE_1
    return LATER_CR_CRI if cr_or_cri else LATER_NO_CR


def doses_per_cycle(reduction_level: int) -> int:
    """3 doses at levels 0 and 1; 2 doses at level 2 (D-3)."""
    _check_level(reduction_level)
    return 2 if reduction_level >= 2 else 3


def expected_mg_per_m2(
    cycle: int, dose_number: int, cr_or_cri: bool, reduction_level: int = 0
) -> float | None:
    """Expected dose in mg/m2 (D-1..D-3), or None when that dose is not given (3rd dose, level 2).

    Rounded to 4 decimals (0.8 x 0.75 = 0.6; 0.5 x 0.75 = 0.375).
    """
    _check_level(reduction_level)
    if dose_number not in (1, 2, 3):
        raise ValueError(f"dose_number must be 1, 2 or 3 (got {dose_number})")
    if dose_number > doses_per_cycle(reduction_level):
        return None
    base = label_schedule(cycle, cr_or_cri)[dose_number - 1]
    factor = LEVEL_1_FACTOR if reduction_level >= 1 else 1.0
    return round(base * factor, 4)


def cycle_total_mg_per_m2(cycle: int, cr_or_cri: bool, reduction_level: int = 0) -> float:
    """Planned total of a cycle (1.8 cycle 1; 1.5 / 1.8 later; x 0.75 at level 1; 2 doses at 2)."""
    total = 0.0
    for n in (1, 2, 3):
        dose = expected_mg_per_m2(cycle, n, cr_or_cri, reduction_level)
        if dose is not None:
            total += dose
    return round(total, 4)


def _check_level(level: int) -> None:
    if level not in (0, 1, 2):
        raise ValueError(f"reduction_level must be 0, 1 or 2 (got {level})")


def mg_per_m2_of_mg(mg: float, bsa_m2: float, rounding_mg: float) -> float:
    """The mg/m2 an amount in mg stands for, to the precision the amount has (D-4, SmPC 4.9).

    An mg dose is mg/m2 x BSA rounded to `rounding_mg`, often on the BSA rounded to 0.01 m2, so
    1.48 mg on 1.8457 m2 is 0.8 mg/m2 (1.48 / 1.8457 = 0.802 is rounding, not an overdose). The
    answer is the simplest value (1, then 2 decimals, then multiples of 0.005, then 3 decimals)
    whose dose on either BSA rounds to `mg`, the closest to mg / BSA; else mg / BSA itself."""
    raw = mg / bsa_m2
    half = rounding_mg / 2 + 1e-9
    spans = [((mg - half) / b, (mg + half) / b) for b in {bsa_m2, round(bsa_m2, 2)} if b > 0]
    for step in (0.1, 0.01, 0.005, 0.001):
        inside = [k * step for lo, hi in spans
                  for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)]
        inside = [round(x, 4) for x in inside if x > 0]
        if inside:
            return min(inside, key=lambda x: (abs(x - raw), x))
    return raw
