"""Preparation, rule R-1 (SmPC 6.6 and Table 8; USPI 2.4 and Table 5).

`prepare()` gives the pharmacist's lines for the `proceed` card; `check_preparation()` adds a
`caution` when the final concentration would fall outside 0.01-0.1 mg/mL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.policy import Policy
from app.engine.rules.regimen import cite, dose_evidence, make_decision, recommendation
from app.engine.text import mg, num, plural

RULES: list[RuleSpec] = [
    RuleSpec("R-1", "Dose mg, vials (EU 1 mg; US 0.9 mg deliverable), 0.25 mg/mL volume, dilute to "
             "50 mL, final 0.01-0.1 mg/mL (else caution), 1 h at 50 mL/h, time limits",
             ("proceed", "caution"), ("SmPC 6.6", "SmPC 6.6 Table 8", "USPI 2.4", "USPI 2.4 Table 5")),
]


@dataclass(frozen=True)
class Preparation:
    dose_mg: float
    vials: int
    vial_mg: float
    reconstituted_volume_ml: float  # of 0.25 mg/mL solution to withdraw
    final_mg_per_ml: float  # in the infusion volume
    in_range: bool  # final concentration within the label's range
    markdown: str


def prepare(dose_mg: float, policy: Policy, label: Label = Label.EU) -> Preparation:
    """Vials, volume to withdraw and final concentration for a dose in mg (R-1)."""
    if not dose_mg > 0:
        raise ValueError(f"dose must be > 0 mg (got {dose_mg})")
    vial = policy.vial_mg(label)
    vials = math.ceil(dose_mg / vial - 1e-9)
    volume = round(dose_mg / policy.reconstituted_mg_per_ml, 2)
    final = dose_mg / policy.infusion_volume_ml
    lo, hi = policy.final_conc_min_mg_per_ml, policy.final_conc_max_mg_per_ml
    in_range = lo - 1e-12 <= final <= hi + 1e-12
    us = label == Label.US
    vial_txt = (f"{plural(vials, 'vial')}; each delivers {num(vial)} mg "
                f"({num(vial / policy.reconstituted_mg_per_ml, 2)} mL)" if us
                else f"{vials} x {num(vial)} mg " + ("vial" if vials == 1 else "vials"))
    lines = [
        f"- Dose: **{mg(dose_mg)}**",
        f"- Vials: {vial_txt}. Reconstitute each with {num(policy.reconstitution_water_ml)} mL "
        f"water for injection to {num(policy.reconstituted_mg_per_ml)} mg/mL; swirl, do not "
        "shake.",
        f"- Withdraw **{num(volume, 2)} mL** of reconstituted solution; add to sodium chloride "
        f"0.9 % to a total volume of {num(policy.infusion_volume_ml)} mL (final "
        f"{num(final, 4)} mg/mL; label range {num(lo)}-{num(hi)} mg/mL). Protect from light.",
        f"- Infuse over {policy.infusion_minutes} min at {num(policy.infusion_rate_ml_per_h)} "
        f"mL/h; observe for at least {num(policy.observe_after_infusion_hours)} h after the end "
        "of the infusion.",
        f"- Time limits: reconstitution to end of infusion <= "
        f"{num(policy.max_hours_reconstitution_to_end)} h, with <= "
        f"{num(policy.max_hours_reconstitution_to_dilution)} h from reconstitution to dilution; "
        f"reconstituted solution refrigerated (2-8 C) up to "
        f"{num(policy.reconstituted_fridge_hours)} h"
        + (f"; diluted solution up to {num(policy.us_diluted_room_temp_hours)} h at room "
           f"temperature or {num(policy.us_diluted_fridge_hours)} h refrigerated"
           if us else "; diluted solution at room temperature or refrigerated within these "
           "limits") + ". Do not freeze.",
    ]
    src = "USPI 2.4, Table 5" if us else "SmPC 6.6, Table 8"
    lines.append(f"- Source: {src}.")
    return Preparation(dose_mg, vials, vial, volume, final, in_range, "\n".join(lines))


def check_preparation(ctx: RuleContext) -> list[Decision]:
    rec = recommendation(ctx)
    if rec is None or rec.mg <= 0:
        return []
    prep = prepare(rec.mg, ctx.policy, ctx.label)
    if prep.in_range:
        return []
    p = ctx.policy
    side = "below" if prep.final_mg_per_ml < p.final_conc_min_mg_per_ml else "above"
    src = (cite(ctx, "SmPC 6.6", "USPI 2.4"),)
    return [make_decision(
        ctx, DecisionCode.CAUTION, ("R-1",), src,
        f"Preparation: {mg(rec.mg)} in {num(p.infusion_volume_ml)} mL is "
        f"{num(prep.final_mg_per_ml, 4)} mg/mL, {side} the {num(p.final_conc_min_mg_per_ml)}-"
        f"{num(p.final_conc_max_mg_per_ml)} mg/mL range",
        f"The label dilutes the dose to a total nominal volume of {num(p.infusion_volume_ml)} mL "
        f"and states a final concentration of {num(p.final_conc_min_mg_per_ml)}-"
        f"{num(p.final_conc_max_mg_per_ml)} mg/mL. It gives no other volume: the pharmacist "
        "decides how to prepare this dose.\n\n" + prep.markdown,
        evidence=(Evidence(concept="final-concentration", value=round(prep.final_mg_per_ml, 4),
                           unit="mg/mL", note=f"{mg(rec.mg)} in {num(p.infusion_volume_ml)} mL; "
                           f"range {num(p.final_conc_min_mg_per_ml)}-"
                           f"{num(p.final_conc_max_mg_per_ml)} mg/mL"),)
        + dose_evidence(ctx))]
