"""Engine policy: configuration as data (issue #3, "one documented settings/data module").

Every number a rule uses that is not fixed by the label's own tables lives here, with its source.
`Policy()` gives the defaults; `load_policy(path)` reads a JSON object of overrides (file named by
BESPONSA_POLICY_FILE), e.g. {"dose_tolerance": 0.03, "bsa_formula": "dubois",
"default_uln": {"alt": 33}}. Unknown keys or wrong types raise PolicyError (a ValueError).
Mapping fields (default_uln) are merged key by key onto the defaults.

Sources: "label" = SmPC/USPI section cited; "institutional" = a configurable local choice the
label does not make (cards built on it say so).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from app.engine.decisions import Label

# Typical adult upper limits of normal, used ONLY when an Observation has no referenceRange.high
# (clinical-rules section 0). Bilirubin, AST, ALT, ALP, GGT: shared/reference/codes.md section 9
# (AASLD-cited typical values). Amylase, lipase, creatinine: typical adult laboratory reference
# ranges (institutional defaults: override with the local laboratory's values).
DEFAULT_ULN: dict[str, float] = {
    "bilirubin-total": 1.2,  # mg/dL (about 21 umol/L)
    "ast": 40.0,  # U/L
    "alt": 40.0,  # U/L
    "alkaline-phosphatase": 120.0,  # U/L
    "ggt": 50.0,  # U/L
    "amylase": 100.0,  # U/L (institutional default)
    "lipase": 60.0,  # U/L (institutional default)
    "creatinine": 1.2,  # mg/dL (institutional default)
}


class PolicyError(ValueError):
    """A policy file that cannot be used (unknown key, wrong type, out-of-range value)."""


@dataclass(frozen=True)
class Policy:
    # --- Dose (D-4, SmPC 4.2 Table 1, 4.9) ---------------------------------------------------
    dose_tolerance: float = 0.05  # D-4: relative difference allowed between ordered and expected
    max_single_mg_per_m2: float = 0.8  # D-4 critical: SmPC 4.9 maximum single dose
    max_cycle_mg_per_m2: float = 1.8  # D-4 critical: SmPC 4.9 maximum per cycle
    dose_rounding_mg: float = 0.01  # R-1/D-4: mg dose rounded to this step (institutional)

    # --- Body surface area (D-5) ---------------------------------------------------------------
    bsa_formula: str = "mosteller"  # "mosteller" | "dubois" (institutional)
    weight_max_age_days: int = 30  # D-5: weight older than this at the dose date is stale
    height_max_age_days: int = 365  # D-5: adult height, stale after a year (institutional)
    weight_change_caution: float = 0.10  # D-5: >= 10 % change since the cycle's Day 1 weight
    # -> caution (institutional policy, NOT a label rule; the card says so)

    # --- Freshness and labs (section 0, E-5) -----------------------------------------------------
    lab_fresh_days_before_first_dose: int = 7  # a pre-cycle-1 result within 7 d is fresh
    transfusion_window_hours: int = 72  # platelets within 72 h after transfusion ignored (Table 2a)
    default_uln: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ULN))

    # --- Schedule (D-1, D-2, D-6, C-2, C-4; SmPC 4.2 Table 1 and notes) --------------------------
    schedule_window_days: int = 2  # Table 1 note a: doses +/- 2 days
    min_days_between_doses: int = 6  # Table 1 note a / Table 4: minimum 6 days between doses
    dose_interval_days: int = 7  # Days 1, 8, 15: planned interval within a cycle (C-4)
    cycle1_length_days: int = 21  # Table 1: cycle 1 is 21 days
    cycle1_max_length_days: int = 28  # Table 1 note b: may extend to 28 days
    later_cycle_length_days: int = 28  # Table 1: subsequent cycles 28 days
    last_dosing_day: int = 21  # C-2: a 2nd/3rd dose on Day 21 or earlier stays in its cycle

    # --- Cycles and response (D-7, D-8, C-5) ------------------------------------------------------
    hsct_recommended_cycles: int = 2  # SmPC 4.2: 2 cycles when proceeding to HSCT
    hsct_max_cycles: int = 3  # SmPC 4.2: a 3rd only without CR/CRi + MRD negativity after 2
    max_cycles_without_hsct: int = 6  # SmPC 4.2: maximum 6 cycles
    response_deadline_cycles: int = 3  # SmPC 4.2: no CR/CRi within 3 cycles -> discontinue
    cr_marrow_blasts_below_pct: float = 5.0  # Table 1 notes c, d: < 5 % marrow blasts
    cr_platelets_min: float = 100.0  # Table 1 note c: platelets >= 100 x10^9/L for CR
    cr_anc_min: float = 1.0  # Table 1 note c: ANC >= 1 x10^9/L for CR
    mrd_negative_below: float = 1e-4  # C-5: MRD negative < 1 x10^-4 marrow nucleated cells
    response_max_age_days: int = 90  # C-5: a marrow assessment older than this is not used
    # for inference (c) (institutional; recorded findings (a)/(b) always count)

    # --- Preparation (R-1; SmPC 6.6 + Table 8; USPI 2.4 + Table 5) --------------------------------
    vial_mg_eu: float = 1.0  # SmPC 6.5/6.6: 1 mg vial, reconstituted with 4 mL
    vial_mg_us: float = 0.9  # USPI 2.4: each vial delivers 0.9 mg (3.6 mL)
    reconstitution_water_ml: float = 4.0  # SmPC 6.6 / USPI 2.4: 4 mL water for injection per vial
    reconstituted_mg_per_ml: float = 0.25  # SmPC 6.6 / USPI 2.4
    infusion_volume_ml: float = 50.0  # total nominal volume with NaCl 0.9 %
    final_conc_min_mg_per_ml: float = 0.01  # SmPC 6.6
    final_conc_max_mg_per_ml: float = 0.1  # SmPC 6.6
    infusion_minutes: int = 60  # SmPC 4.2 / 6.6: over 1 hour
    infusion_rate_ml_per_h: float = 50.0  # SmPC 6.6 / USPI 2.4
    max_hours_reconstitution_to_end: float = 8.0  # SmPC Table 8 / USPI Table 5
    max_hours_reconstitution_to_dilution: float = 4.0  # SmPC Table 8 / USPI Table 5
    reconstituted_fridge_hours: float = 4.0  # SmPC Table 8 / USPI Table 5 (2-8 C)
    us_diluted_room_temp_hours: float = 4.0  # USPI Table 5
    us_diluted_fridge_hours: float = 3.0  # USPI Table 5
    observe_after_infusion_hours: float = 1.0  # SmPC 4.2: observe >= 1 h after infusion

    # --- Premedication (E-4; SmPC 4.2, 4.4; USPI 2.2) --------------------------------------------
    premedication_classes: tuple[str, ...] = ("corticosteroid", "antipyretic", "antihistamine")
    high_tumour_burden_premedication: tuple[str, ...] = ("uric-acid-lowering",)

    # --- Room for the toxicity/eligibility rule families (task C2) --------------------------------
    # Haematological (H-1..H-5; SmPC 4.2 Table 2, USPI 2.3 Table 2)
    anc_threshold: float = 1.0  # H-2/H-4: ANC 1 x10^9/L (label)
    platelet_threshold: float = 50.0  # H-3/H-4: platelets 50 x10^9/L (label)
    haem_persistence_days: int = 28  # H-5 (US only): low counts persisting > 28 d (label)
    # Hepatic (L-2; SmPC 4.2 Table 3)
    bilirubin_hold_uln: float = 1.5  # L-2: total bilirubin > 1.5 x ULN (label)
    transaminase_hold_uln: float = 2.5  # L-2: AST/ALT > 2.5 x ULN (label)
    hepatic_nonrecovery_days: int = 28  # L-2: not recovered after > 28 d of hold -> discontinue
    # (catalogue choice: the label says "does not recover" without a period)
    # Interruption duration (T-1..T-4; SmPC 4.2 Table 4) (label)
    interruption_omit_days: int = 7  # T-2: >= 7 d -> omit the next dose within the cycle
    interruption_reduce_days: int = 14  # T-3: >= 14 d -> reduce the subsequent cycle
    interruption_consider_stop_days: int = 28  # T-4: > 28 d -> consider permanent discontinuation
    # Eligibility (E-2, E-3, E-4; SmPC 4.2)
    adult_age_years: int = 18  # E-2: safety/efficacy not established < 18 y (label)
    peripheral_blasts_max: float = 10.0  # E-3: 10 x10^9/L = 10,000/mm3 (label)
    high_tumour_burden_blasts: float = 10.0  # E-4: "high tumour burden" = peripheral blasts above
    # this (x10^9/L) or a tumour-lysis Condition (institutional: the label gives no definition)
    premedication_window_hours: int = 24  # E-4: a premedication given/started within this many
    # hours before the dose counts (institutional)
    # QT (Q-1; SmPC 4.4, 4.5; USPI 5.5, 7)
    qtc_caution_ms: float = 500.0  # QTcF > 500 ms (USPI 5.5)
    qtc_increase_caution_ms: float = 60.0  # >= 60 ms over baseline (USPI 5.5)
    default_lln: dict[str, float] = field(
        default_factory=lambda: {"potassium": 3.5, "magnesium": 0.7, "calcium": 2.1}
    )  # mmol/L, used only when an Observation has no referenceRange.low (institutional)
    required_electrolytes: tuple[str, ...] = ("potassium", "magnesium")  # Q-1 before cycle 1
    pretreatment_ecg_window_days: int = 28  # Q-1: ECG/electrolytes "prior to the start of
    # treatment" count within this many days before the first dose (institutional)
    on_treatment_days: int = 28  # Q-1/P-2 for other orders: a patient dosed within this many days
    # (or with a draft order) is "on inotuzumab ozogamicin" (institutional: one cycle length)
    next_dose_window_days: int = 84  # patient-view: no dose for longer than this -> the course is
    # taken as over and no next dose is worked out (institutional; longer than T-4's 28 days)
    # VOD/SOS risk (V-1; SmPC 4.4, 4.8; USPI 5.1)
    vod_age_high_risk_years: int = 65  # >= 50 % VOD post-HSCT (label)
    vod_age_risk_years: int = 55  # label
    vod_many_cycles: int = 3  # "greater number of treatment cycles": from this cycle (institutional)
    # Pregnancy, lactation, vaccines (P-1, P-2; SmPC 4.4, 4.6; USPI 5.6, 8.2, 8.3)
    contraception_months_female: int = 8  # label
    contraception_months_male: int = 5  # label
    breastfeeding_months: int = 2  # label
    reproductive_age_min_years: int = 12  # P-1: reproductive potential assumed from this age ...
    reproductive_age_max_years: int = 55  # ... up to this age (institutional)
    live_vaccine_days_before: int = 14  # P-2: >= 2 weeks before the start of treatment (label)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 <= self.dose_tolerance < 1:
            problems.append("dose_tolerance must be in [0, 1)")
        if self.bsa_formula not in ("mosteller", "dubois"):
            problems.append("bsa_formula must be 'mosteller' or 'dubois'")
        if not 0 < self.weight_change_caution < 1:
            problems.append("weight_change_caution must be in (0, 1)")
        if not self.final_conc_min_mg_per_ml < self.final_conc_max_mg_per_ml:
            problems.append("final_conc_min_mg_per_ml must be below final_conc_max_mg_per_ml")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not math.isfinite(v) or v < 0:
                    problems.append(f"{f.name} must be a finite number >= 0")
        for k, v in self.default_uln.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                problems.append(f"default_uln[{k!r}] must be a number > 0")
        for name in ("max_single_mg_per_m2", "max_cycle_mg_per_m2", "dose_rounding_mg",
                     "vial_mg_eu", "vial_mg_us", "reconstituted_mg_per_ml", "infusion_volume_ml"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if problems:
            raise PolicyError("invalid policy: " + "; ".join(problems))

    def vial_mg(self, label: Label | str) -> float:
        """Deliverable mg per vial under the label in force (EU 1 mg; US 0.9 mg)."""
        return self.vial_mg_us if str(label) == Label.US.value else self.vial_mg_eu

    def uln_default(self, analyte: str) -> float | None:
        return self.default_uln.get(str(analyte))


def load_policy(path: str | Path | None) -> Policy:
    """Policy from a JSON file of overrides; None -> the defaults. Raises PolicyError."""
    if path is None or str(path) == "":
        return Policy()
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"policy file not found: {path}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise PolicyError(f"policy file {path} is not readable JSON: {exc}") from exc
    return policy_from_mapping(raw, source=str(path))


def policy_from_mapping(raw: Any, source: str = "policy overrides") -> Policy:
    """Apply a mapping of overrides to the defaults, checking keys and types."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: expected a JSON object of policy overrides")
    defaults = Policy()
    known = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise PolicyError(
            f"{source}: unknown policy key(s) {', '.join(unknown)}; known keys: "
            + ", ".join(sorted(known))
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _coerce(key, value, getattr(defaults, key), source)
    return Policy(**values)


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    def bad(expected: str) -> PolicyError:
        return PolicyError(f"{source}: {key} must be {expected} (got {value!r})")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("an object")
        merged = dict(default)
        numeric = all(isinstance(v, (int, float)) for v in default.values())
        for k, v in value.items():
            if numeric:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise PolicyError(f"{source}: {key}.{k} must be a number (got {v!r})")
                v = float(v)
            merged[k] = v
        return merged
    if isinstance(default, frozenset):
        if not isinstance(value, list):
            raise bad("a list")
        return frozenset(value)
    return value
