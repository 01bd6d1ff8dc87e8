"""VOD/SOS risk factors when HSCT is planned: V-1 (SmPC 4.4, 4.8; USPI 5.1, Boxed Warning).

Post-HSCT VOD/SOS was >= 50 % with an HSCT conditioning regimen containing 2 alkylating agents,
age >= 65 years, or serum bilirubin >= ULN before HSCT. Other factors: prior HSCT, age >= 55,
liver disease or hepatitis history, later salvage lines, more treatment cycles.
"""

from __future__ import annotations

from app.engine import ctcae, labs
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence
from app.engine.facts import Analyte
from app.engine.rules.decision_text import cite, make, ref_evidence
from app.engine.rules.eligibility import INACTIVE_STATUSES, age_years

RULES: list[RuleSpec] = [
    RuleSpec("V-1", "HSCT planned: VOD/SOS risk factors present", ("caution",),
             ("SmPC 4.4", "SmPC 4.8", "USPI 5.1")),
]

LIVER_HISTORY = ("liver-disease", "cirrhosis", "active-hepatitis",
                 "nodular-regenerative-hyperplasia", "vod-sos")


def check_vod_risk(ctx: RuleContext) -> list[Decision]:
    c, f, p = ctx.course, ctx.facts, ctx.policy
    if f.draft is None or not c.hsct_planned:
        return []
    high: list[str] = []  # >= 50 % post-HSCT VOD in the label's subgroups
    other: list[str] = []
    ev: list[Evidence] = []

    alkyl = {}
    for m in f.medications:
        if "alkylating-agent" in m.concepts and m.status not in INACTIVE_STATUSES:
            alkyl.setdefault((m.display or m.reference).lower(), m)
    for o in f.other_orders:
        if "alkylating-agent" in o.concepts:
            alkyl.setdefault((o.display or o.reference).lower(), o)
    if len(alkyl) >= 2:
        high.append(f"{len(alkyl)} alkylating agents planned/active")
        ev += [ref_evidence("alkylating-agent", x.reference, x.display or "alkylating agent")
               for x in alkyl.values()]

    age = age_years(f.patient.birth_date, ctx.dose_date)
    if age is not None and age >= p.vod_age_high_risk_years:
        high.append(f"age {age} (>= {p.vod_age_high_risk_years})")
    elif age is not None and age >= p.vod_age_risk_years:
        other.append(f"age {age} (>= {p.vod_age_risk_years})")

    b = labs.latest_usable(ctx, Analyte.BILIRUBIN, labs.lookup_time(ctx))
    if b is not None:
        r = labs.read(b, p)
        if r.uln is not None and not ctcae.exceeds(r.uln, r.value, 1.0):  # value >= ULN
            high.append(f"bilirubin {r.text()} >= ULN")
            ev.append(labs.evidence(r))

    if c.prior_hsct:
        other.append("prior HSCT")
        ev += [ref_evidence("hsct", pr.reference, pr.display or "HSCT", pr.performed,
                            note=pr.status) for pr in f.procedures
               if pr.concept == "hsct" and pr.status == "completed"]
    liver = [x for x in f.conditions if x.concept in LIVER_HISTORY]
    if liver:
        other.append("liver disease history")
        ev += [ref_evidence(x.concept, x.reference, x.display or x.concept, x.onset or x.recorded)
               for x in liver]
    if c.cycle is not None and c.cycle >= p.vod_many_cycles:
        other.append(f"cycle {c.cycle} (more cycles)")

    if not high and not other:
        return []
    if age is not None:
        ev.insert(0, ref_evidence("age", f"Patient/{f.patient.id}", age, f.patient.birth_date,
                                  note="years at the dose date"))
    ev.insert(0, ref_evidence("hsct-planned", next(
        (pr.reference for pr in f.procedures if pr.concept == "hsct" and pr.status != "completed"),
        None), "HSCT planned", note=f"ordered dose: cycle {c.cycle}"))
    listed = high + other
    return [make(
        ctx, DecisionCode.CAUTION, ("V-1",), cite(ctx, ("SmPC 4.4", "SmPC 4.8"), ("USPI 5.1",)),
        "HSCT planned, VOD/SOS risk: " + "; ".join(listed),
        what="HSCT is planned. BESPONSA increases the risk of VOD/SOS, most of all after HSCT. "
             + (f"**Subgroups with >= 50 % post-HSCT VOD/SOS:** {'; '.join(high)}. " if high else "")
             + (f"Other risk factors present: {'; '.join(other)}. " if other else "")
             + "Avoid HSCT conditioning with 2 alkylating agents; with bilirubin >= ULN before "
               "HSCT, proceed only after careful benefit/risk consideration; monitor closely for "
               "VOD/SOS (bilirubin, hepatomegaly, weight gain, ascites).",
        evidence=ev,
        notes=["Later salvage lines also raise the risk; the service cannot assess them from the "
               "record."],
        choice="Benefit/risk of BESPONSA before HSCT is the clinician's judgement.",
    )]
