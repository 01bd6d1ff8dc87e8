"""Pregnancy, lactation, contraception and live vaccines: P-1, P-2.

- P-1 (SmPC 4.6; USPI 5.6, 8.1-8.3): pregnancy -> caution (critical); before the first dose,
  females of reproductive potential: verify pregnancy status, contraception during treatment and
  for 8 months after the last dose (males with female partners: 5 months); breastfeeding -> stop
  during treatment and for 2 months after the last dose.
- P-2 (SmPC 4.4): live viral vaccines not recommended for >= 2 weeks before the start, during
  treatment, and until B-lymphocyte recovery after the last cycle -> caution.
"""

from __future__ import annotations

from datetime import timedelta

from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode
from app.engine.planned import planned_orders
from app.engine.rules.decision_text import cite, d, make, ref_evidence
from app.engine.rules.eligibility import INACTIVE_STATUSES, age_years

RULES: list[RuleSpec] = [
    RuleSpec("P-1", "Pregnancy, contraception (8 months women / 5 months men), breastfeeding "
             "(2 months)", ("caution",), ("SmPC 4.6", "USPI 5.6", "USPI 8.1", "USPI 8.2",
                                          "USPI 8.3")),
    RuleSpec("P-2", "Live vaccine within 2 weeks before, during, or after treatment until B-cell "
             "recovery", ("caution",), ("SmPC 4.4",)),
]

LIVE = "live-vaccine"


def check_pregnancy(ctx: RuleContext) -> list[Decision]:
    return [*p1_pregnancy(ctx), *p2_live_vaccines(ctx)]


def p1_pregnancy(ctx: RuleContext) -> list[Decision]:
    f, p = ctx.facts, ctx.policy
    if f.draft is None:
        return []
    out: list[Decision] = []
    pregnant = [c for c in f.conditions if c.concept == "pregnancy" and c.active]
    if pregnant:
        c = pregnant[0]
        out.append(make(
            ctx, DecisionCode.CAUTION, ("P-1",), cite(ctx, ("SmPC 4.6",), ("USPI 5.6", "USPI 8.1")),
            "Pregnancy on record: inotuzumab ozogamicin can cause embryo-foetal harm",
            what="Pregnancy is recorded. BESPONSA must not be used during pregnancy unless the "
                 "potential benefit to the mother outweighs the potential risk to the foetus; the "
                 "patient must be told of the potential hazard to the foetus.",
            evidence=(ref_evidence("pregnancy", c.reference, c.display or "pregnancy",
                                   c.onset or c.recorded),),
            choice="Benefit/risk in pregnancy is the clinician's judgement.",
            critical=True,
            override_reasons=("data-verified-elsewhere", "clinical-judgement-documented"),
        ))
    feeding = [c for c in f.conditions if c.concept == "breastfeeding" and c.active]
    if feeding:
        c = feeding[0]
        out.append(make(
            ctx, DecisionCode.CAUTION, ("P-1",), cite(ctx, ("SmPC 4.6",), ("USPI 8.2",)),
            f"Breastfeeding on record: stop during treatment and for {p.breastfeeding_months} "
            "months after the last dose",
            what="Because of possible adverse reactions in the breast-fed child, women must not "
                 f"breast-feed during treatment and for at least {p.breastfeeding_months} months "
                 "after the final dose.",
            evidence=(ref_evidence("breastfeeding", c.reference, c.display or "breastfeeding",
                                   c.onset or c.recorded),),
        ))
    if ctx.course.first_dose is None and not pregnant:
        age = age_years(f.patient.birth_date, ctx.dose_date)
        g = f.patient.gender
        who = (ref_evidence("patient", f"Patient/{f.patient.id}", f"{g}, age "
                            f"{age if age is not None else 'unknown'}", f.patient.birth_date,
                            note="sex and age at the dose date"),)
        fertile_age = age is None or p.reproductive_age_min_years <= age <= p.reproductive_age_max_years
        if g == "female" and fertile_age:
            out.append(make(
                ctx, DecisionCode.CAUTION, ("P-1",),
                cite(ctx, ("SmPC 4.6",), ("USPI 5.6", "USPI 8.3")),
                "Before cycle 1: verify pregnancy status; contraception during and "
                f"{p.contraception_months_female} months after the last dose",
                what="Females of reproductive potential: verify pregnancy status before starting; "
                     "use effective contraception during treatment and for at least "
                     f"{p.contraception_months_female} months after the final dose. Seek advice on "
                     "fertility preservation before treatment.",
                notes=[f"Reproductive potential is assumed from age {p.reproductive_age_min_years}"
                       f"-{p.reproductive_age_max_years} (institutional setting)"
                       + (" (age unknown)" if age is None else "") + "."],
                evidence=who,
                needed_data=("pregnancy-test",),
                override_reasons=("data-verified-elsewhere",),
            ))
        elif g == "male":
            out.append(make(
                ctx, DecisionCode.CAUTION, ("P-1",),
                cite(ctx, ("SmPC 4.6",), ("USPI 5.6", "USPI 8.3")),
                "Before cycle 1: contraception with female partners during and "
                f"{p.contraception_months_male} months after the last dose",
                what="Men with female partners of reproductive potential should use effective "
                     "contraception during treatment and for at least "
                     f"{p.contraception_months_male} months after the final dose. Seek advice on "
                     "fertility preservation before treatment.",
                evidence=who,
            ))
    return out


def p2_live_vaccines(ctx: RuleContext) -> list[Decision]:
    f, p = ctx.facts, ctx.policy
    first = ctx.course.first_dose or (f.doses_given[0] if f.doses_given else None)
    planned = planned_orders(f)
    start = first.given_at if first else (f.draft.dose_date if f.draft else (
        (planned[0].start or ctx.now) if planned else None))  # about to start (#10)
    if start is None:
        return []  # never treated and no inotuzumab order: not our patient
    orders = [o for o in f.other_orders if LIVE in o.concepts]
    window_start = start - timedelta(days=p.live_vaccine_days_before)
    given = [m for m in f.medications if LIVE in m.concepts and m.status not in INACTIVE_STATUSES
             and m.start is not None and m.start >= window_start] if f.draft else []
    if not orders and not given:
        return []
    ev = [ref_evidence(LIVE, o.reference, o.display or "live vaccine", None, note="ordered")
          for o in orders]
    ev += [ref_evidence(LIVE, m.reference, m.display or "live vaccine", m.start, note=m.status)
           for m in given]
    names = ", ".join([o.display or o.reference for o in orders]
                      + [m.display or m.reference for m in given])
    when = (f"first dose {d(first.given_at)}" if first else f"planned start {d(start)}")
    return [make(
        ctx, DecisionCode.CAUTION, ("P-2",), cite(ctx, ("SmPC 4.4",), ("SmPC 4.4",)),
        f"Live vaccine: {names} within 2 weeks before, during or after inotuzumab ({when})",
        what="Vaccination with live viral vaccines is not recommended for at least "
             f"{p.live_vaccine_days_before // 7} weeks before the start of BESPONSA, during "
             "treatment, and until recovery of B lymphocytes after the last treatment cycle "
             "(safety not studied).",
        evidence=ev,
        notes=["B-cell recovery is not assessed by this service: confirm it before a live "
               "vaccine after treatment."] + (
            ["The US label does not address live vaccines; this caution follows the SmPC."]
            if ctx.label.value == "US" else []),
        choice="Whether B-cell recovery allows vaccination is the clinician's judgement.",
        override_reasons=("clinical-judgement-documented",),
    )]
