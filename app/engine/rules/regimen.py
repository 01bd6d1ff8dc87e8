"""Regimen and dose, rules D-1..D-8 (SmPC 4.2 Table 1, 4.9; USPI 2.1 Table 1).

`dose_plan(ctx)` computes the expected dose of the draft order once; `check_regimen(ctx)` turns
it into decisions. The `proceed` card (app.engine.evaluate) reuses `recommendation(ctx)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from app.engine.bsa import BodySize, body_size_at
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.course import ever_cr_or_cri, given_mg_per_m2
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation, Evidence, Label
from app.engine.facts import Analyte, Measurement
from app.engine.regimen import (
    DOSE_DAYS,
    doses_per_cycle,
    expected_mg_per_m2,
    label_schedule,
    mg_per_m2_of_mg,
)
from app.engine.rules.interruption import required_reduction_level
from app.engine.text import (
    day_str,
    detail,
    evidence_table,
    measured,
    mg,
    mg_m2,
    num,
    pct,
    plural,
    summary,
)

RULES: list[RuleSpec] = [
    RuleSpec("D-1", "Cycle 1: Day 1 0.8, Day 8 0.5, Day 15 0.5 mg/m2; 21-day cycle",
             ("correct-dose", "proceed"), ("SmPC 4.2 Table 1", "USPI 2.1 Table 1")),
    RuleSpec("D-2", "Cycle >= 2: 0.5/0.5/0.5 mg/m2 with CR/CRi, 0.8/0.5/0.5 without; unknown "
             "response for a Day 1 dose -> obtain-data", ("correct-dose", "obtain-data"),
             ("SmPC 4.2 Table 1", "USPI 2.1 Table 1")),
    RuleSpec("D-3", "Reduction level 1: each dose x0.75; level 2: 2 doses per cycle (3rd omitted); "
             "level not knowable from the doses given (C-3) -> obtain-data, no dose suggested",
             ("correct-dose", "omit-dose", "obtain-data"), ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
    RuleSpec("D-4", "Ordered dose differs from expected by > tolerance (5 %); above 0.8 mg/m2 "
             "single or 1.8 mg/m2 per cycle -> critical", ("correct-dose", "omit-dose"),
             ("SmPC 4.2 Table 1", "SmPC 4.9", "USPI 2.1")),
    RuleSpec("D-5", "BSA from height and weight (Mosteller/DuBois); missing or stale -> "
             "obtain-data; weight change >= 10 % in the cycle -> caution (institutional policy)",
             ("obtain-data", "caution"), ("SmPC 4.2 Table 1", "USPI 2.1 Table 1 note b")),
    RuleSpec("D-6", "At least 6 days between doses; a cycle starts no earlier than its planned "
             "Day 1 - 2 days -> else hold", ("hold",), ("SmPC 4.2 Table 1 note a",
                                                       "USPI 2.1 Table 1 note a")),
    RuleSpec("D-7", "HSCT planned: 2 cycles (3rd only without CR/CRi + MRD negativity) -> caution; "
             "cycle >= 4 critical; not proceeding to HSCT: max 6 cycles -> discontinue",
             ("caution", "discontinue"), ("SmPC 4.2", "SmPC 4.4", "USPI 2.1", "USPI 5.1")),
    RuleSpec("D-8", "No CR/CRi within 3 cycles -> discontinue at Cycle 4",
             ("discontinue", "obtain-data"), ("SmPC 4.2", "USPI 2.1")),
]


def cite(ctx: RuleContext, eu: str, us: str) -> str:
    return us if ctx.label == Label.US else eu


def round_mg(x: float, step: float) -> float:
    """Round to the policy step (0.01 mg default), half up, without float noise."""
    return round(math.floor(x / step + 0.5 + 1e-9) * step, 6)


@dataclass(frozen=True)
class DosePlan:
    """The expected dose for the draft order and what was ordered."""

    cycle: int
    day: int
    dose_number: int
    level: int
    cr_or_cri: bool | None  # None: response unknown
    response_needed: bool  # the expected amount depends on the response (cycle >= 2, dose 1)
    expected_mg_per_m2: float | None  # None: not given (level 2, 3rd dose) or response unknown
    body: BodySize
    ordered_mg_per_m2: float | None  # as ordered (mg/m2), else ordered mg / BSA
    ordered_mg: float | None
    given_in_cycle_mg_per_m2: float  # completed doses of this cycle before the draft
    given_unknown: int  # completed doses of this cycle with unknown amount
    accepted_levels: tuple[int, ...] = ()  # levels whose amount D-4 accepts (see dose_plan)
    level_unknown: tuple[str, ...] = ()  # C-3: the level may be higher (no dose is suggested)

    @property
    def bsa(self) -> float | None:
        """BSA used for dosing, unrounded (cards show it rounded to 0.01 m2; mg = mg/m2 x this
        BSA, then rounded per policy: 0.8 x 1.8181 = 1.45 mg)."""
        return self.body.bsa_m2 if self.body.usable else None


def dose_plan(ctx: RuleContext) -> DosePlan | None:
    """None without a draft order."""
    facts, course, policy = ctx.facts, ctx.course, ctx.policy
    draft = facts.draft
    if draft is None or course.cycle is None or course.day is None or course.dose_number is None:
        return None
    body = body_size_at(facts, draft.dose_date, policy.bsa_formula,
                        policy.weight_max_age_days, policy.height_max_age_days)
    status = course.response.status
    cr = course.response.cr_or_cri if status != "unknown" else None
    needed = course.cycle >= 2 and course.dose_number == 1
    # T-3 (SmPC 4.2 Table 4): after an interruption >= 14 days the next cycle goes one level down.
    # The recommendation follows that level (never re-escalate); D-4 also accepts the course's
    # own level, since T-3's reduce-dose card already asks for the reduction (and offers
    # "interruption not due to toxicity" when it was inferred).
    level = course.reduction_level
    required = required_reduction_level(ctx)
    accepted = (level,)
    if required is not None and required > level:
        level, accepted = required, (course.reduction_level, required)
    if needed and cr is None:
        expected = None
    else:
        expected = expected_mg_per_m2(course.cycle, course.dose_number, bool(cr), level)
    ordered_m2 = draft.dose_mg_per_m2
    if ordered_m2 is None and draft.dose_mg is not None and body.bsa_m2 and body.usable:
        ordered_m2 = mg_per_m2_of_mg(draft.dose_mg, body.bsa_m2, policy.dose_rounding_mg)
    given = 0.0
    unknown = 0
    start = course.cycle_start.date() if course.cycle_start else None
    for c in course.cycles:
        if c.number != course.cycle:
            continue
        for d in c.doses:
            if start is not None and d.given_at.date() < start:
                continue  # before this cycle's Day 1 (a stated cycle/day that restarts it)
            v = given_mg_per_m2(course, d, facts, policy)
            if v is None:
                unknown += 1
            else:
                given += v
    return DosePlan(course.cycle, course.day, course.dose_number, level, cr, needed, expected,
                    body, ordered_m2, draft.dose_mg, given, unknown, accepted,
                    course.reduction_level_unknown)


def recommendation(ctx: RuleContext, plan: DosePlan | None = None) -> DoseRecommendation | None:
    """The dose to give (expected mg/m2 x BSA), capped so the cycle stays within 1.8 mg/m2 and
    no dose exceeds 0.8 mg/m2 (SmPC 4.9). None when it cannot be computed or is not given."""
    plan = plan or dose_plan(ctx)
    if plan is None or plan.expected_mg_per_m2 is None or plan.bsa is None:
        return None
    if plan.level_unknown:  # the level in force may be higher: no dose above it (SmPC 4.2)
        return None
    policy = ctx.policy
    m2 = min(plan.expected_mg_per_m2, policy.max_single_mg_per_m2)
    if plan.given_in_cycle_mg_per_m2 + m2 > policy.max_cycle_mg_per_m2 + _cycle_allowance(ctx, plan):
        return None
    return DoseRecommendation(
        mg_per_m2=m2,
        mg=round_mg(m2 * plan.bsa, policy.dose_rounding_mg),
        bsa_m2=round(plan.bsa, 2),
        cycle=plan.cycle,
        day=plan.day,
        reduction_level=plan.level,
    )


def _cycle_allowance(ctx: RuleContext, plan: DosePlan) -> float:
    """What mg rounding can add to a cycle total in mg/m2 (half a step per dose)."""
    bsa = plan.bsa or plan.body.bsa_m2 or 1.0
    return 3 * ctx.policy.dose_rounding_mg / 2 / bsa + 1e-9


def where(plan: DosePlan) -> str:
    return f"Cycle {plan.cycle} Day {plan.day}"


def body_evidence(body: BodySize) -> tuple[Evidence, ...]:
    out = []
    for m in (body.height, body.weight):
        if m is not None:
            out.append(measured(m))
    return tuple(out)


def dose_evidence(ctx: RuleContext) -> tuple[Evidence, ...]:
    d = ctx.facts.draft
    out = []
    if d is not None:
        out.append(Evidence(concept="ordered-dose", reference=d.reference,
                            value=num(d.dose_mg_per_m2) + " mg/m2" if d.dose_mg_per_m2 is not None
                            else (mg(d.dose_mg) if d.dose_mg is not None else "none"),
                            date=d.dose_date))
    prev = ctx.course.previous_dose
    if prev is not None:
        out.append(Evidence(concept="previous-dose", reference=prev.reference,
                            value=mg(prev.dose_mg) if prev.dose_mg is not None else None,
                            date=prev.given_at))
    return tuple(out)


def course_evidence(ctx: RuleContext) -> tuple[Evidence, ...]:
    """The course behind a cycle-count decision (D-7, D-8): cycles given, the last cycle's Day 1
    and its doses."""
    cycles = ctx.course.cycles
    if not cycles:
        return (Evidence(concept="cycle-history", value=0, note="no completed administration"),)
    last = cycles[-1]
    return (Evidence(concept="cycle-history", reference=last.doses[-1].reference,
                     value=len(cycles), unit="cycles", date=last.start,
                     note=f"Cycle {last.number} Day 1 {day_str(last.start)}, "
                          f"{plural(len(last.doses), 'dose')}; first dose {day_str(cycles[0].start)}"),)


def make_decision(ctx: RuleContext, code: DecisionCode, rules: tuple[str, ...],
              citations: tuple[str, ...], text: str, body_md: str, **kw) -> Decision:
    evidence = kw.pop("evidence", ())
    table = evidence_table(evidence, ctx.now.date())
    return Decision(
        code=code, rules=rules, citations=citations, summary=summary(text),
        detail=detail(body_md, table, citations=citations, notes=ctx.course.notes,
                      label=ctx.label, today=ctx.now.date()),
        label=ctx.label, evidence=tuple(evidence), **kw,
    )


def check_regimen(ctx: RuleContext) -> list[Decision]:
    """D-1..D-8 for the draft order; D-7/D-8 for the patient (patient-view) without one."""
    if ctx.facts.draft is None:
        return _patient_level(ctx)
    plan = dose_plan(ctx)
    if plan is None:
        return []
    out: list[Decision] = []
    out += _cycle_limits(ctx, plan.cycle, plan.dose_number)
    out += _spacing(ctx, plan)
    out += _bsa(ctx, plan)
    out += _level_unknown(ctx, plan)
    out += _dose(ctx, plan)
    return out


def _level_unknown(ctx: RuleContext, plan: DosePlan) -> list[Decision]:
    """C-3: the reduction level cannot be known from the doses given: say so, suggest no dose
    (a reduction is never undone, SmPC 4.2 / USPI 2.3)."""
    if not plan.level_unknown:
        return []
    src = (cite(ctx, "SmPC 4.2 Table 4", "USPI 2.3 Table 4"),)
    ev = tuple(Evidence(concept="dose-history", reference=d.reference,
                        value=mg(d.dose_mg) if d.dose_mg is not None else "no amount",
                        date=d.given_at, note=f"Cycle {c.number}")
               for c in ctx.course.cycles for d in c.doses
               if any(d.reference in r for r in plan.level_unknown))
    return [make_decision(
        ctx, DecisionCode.OBTAIN_DATA, ("C-3", "D-3"), src,
        f"Reduction level unknown: the doses of {plan.level_unknown[0].split(':')[0]} do not "
        f"show it; at least level {ctx.course.reduction_level}, no dose suggested",
        "The dose depends on the reduction level in force (Table 4: -25 %, then 2 doses per "
        "cycle; never re-escalated). "
        + " ".join(f"{r}." for r in plan.level_unknown)
        + " Record the administered dose (mg or mg/m2) or the weight at the time, or confirm the "
        "level in force, before this dose is given.",
        evidence=ev, needed_data=("dose-history",),
        override_reasons=("data-verified-elsewhere",))]


# --- D-7, D-8 -------------------------------------------------------------------------------


def _patient_level(ctx: RuleContext) -> list[Decision]:
    cycles = ctx.course.cycles
    if not cycles or ctx.facts.other_orders:
        return []  # never treated, or an order for another drug: nothing to say here
    return _cycle_limits(ctx, cycles[-1].number, 1, patient_view=True)


def _cycle_limits(ctx: RuleContext, cycle: int, dose_number: int,
                  patient_view: bool = False) -> list[Decision]:
    course, policy = ctx.course, ctx.policy
    out: list[Decision] = []
    verb = "continuing" if patient_view else "this dose"
    first = course.first_dose.given_at if course.first_dose else None
    deadline = policy.response_deadline_cycles
    src_42 = cite(ctx, "SmPC 4.2", "USPI 2.1")
    # D-8: no CR/CRi within 3 cycles -> discontinue (SmPC 4.2). A patient in CR/CRi now is
    # past that decision: no card.
    if cycle > deadline and not course.response.cr_or_cri:
        starts = [c.start for c in course.cycles if c.number == deadline + 1]
        before = starts[0] if starts else ctx.dose_date
        achieved = ever_cr_or_cri(ctx.facts, policy, first, before)
        ev = course.response.evidence
        if achieved is False:
            out.append(make_decision(
                ctx, DecisionCode.DISCONTINUE, ("D-8",), (src_42,),
                f"Discontinue: no CR/CRi within {deadline} cycles; Cycle {cycle} is not "
                f"recommended",
                f"Responses recorded since the first dose show no CR/CRi by Cycle {deadline + 1} "
                f"Day 1. The label: patients who do not achieve a CR/CRi within {deadline} cycles "
                "should discontinue treatment.", evidence=ev + course_evidence(ctx), critical=True,
                override_reasons=("clinical-judgement-documented",)))
        elif achieved is None:
            out.append(make_decision(
                ctx, DecisionCode.OBTAIN_DATA, ("D-8",), (src_42,),
                f"Obtain disease response: Cycle {cycle} needs CR/CRi within {deadline} cycles; "
                "none recorded",
                f"No response assessment (CR/CRi, marrow blasts) is recorded since the first dose. "
                f"Treatment beyond Cycle {deadline} is only for patients who achieved CR/CRi "
                f"within {deadline} cycles.", needed_data=("disease-response",),
                evidence=course_evidence(ctx) + (Evidence(
                    concept="disease-response", note="no response assessment recorded since the "
                    "first dose"),)))
    # D-7: HSCT planned: 2 cycles, a 3rd only without CR/CRi + MRD negativity
    if course.hsct_planned:
        src = (src_42, cite(ctx, "SmPC 4.4", "USPI 5.1"))
        if cycle == policy.hsct_max_cycles and dose_number == 1:
            r = course.response
            if r.cr_or_cri and r.mrd_negative is True:
                out.append(make_decision(
                    ctx, DecisionCode.CAUTION, ("D-7",), src,
                    f"HSCT planned: Cycle {cycle} not recommended after CR/CRi with MRD "
                    "negativity (VOD/SOS risk)",
                    f"For patients proceeding to HSCT the recommended duration is "
                    f"{policy.hsct_recommended_cycles} cycles; a third may be considered only for "
                    "patients without CR/CRi and MRD negativity after 2 cycles. The risk of "
                    "post-HSCT VOD/SOS rises with the number of cycles. The decision is the "
                    "clinician's.", evidence=r.evidence + course_evidence(ctx),
                    override_reasons=("clinical-judgement-documented",)))
            elif r.cr_or_cri and r.mrd_negative is None:
                out.append(make_decision(
                    ctx, DecisionCode.CAUTION, ("D-7",), src,
                    f"HSCT planned: Cycle {cycle} only if MRD-positive after 2 cycles; "
                    "MRD not documented",
                    "The patient is in CR/CRi. A third cycle before HSCT may be considered only "
                    "without MRD negativity; no MRD result (< 1x10^-4) is recorded.",
                    evidence=r.evidence + course_evidence(ctx),
                    override_reasons=("clinical-judgement-documented",)))
        elif cycle > policy.hsct_max_cycles:
            out.append(make_decision(
                ctx, DecisionCode.CAUTION, ("D-7",), src,
                f"HSCT planned: Cycle {cycle} exceeds the recommended 2 (at most 3) cycles; "
                "VOD/SOS risk rises",
                f"For patients proceeding to HSCT the recommended duration is "
                f"{policy.hsct_recommended_cycles} cycles (a 3rd only without CR/CRi and MRD "
                "negativity). More cycles increase the risk of post-HSCT VOD/SOS.",
                critical=True, evidence=course_evidence(ctx),
                override_reasons=("clinical-judgement-documented",)))
    elif cycle > policy.max_cycles_without_hsct:
        out.append(make_decision(
            ctx, DecisionCode.DISCONTINUE, ("D-7",), (src_42,),
            f"Discontinue: Cycle {cycle} exceeds the maximum of {policy.max_cycles_without_hsct} "
            "cycles without HSCT",
            f"For patients not proceeding to HSCT a maximum of {policy.max_cycles_without_hsct} "
            f"cycles may be administered ({verb} would be Cycle {cycle}). If HSCT is planned, "
            "record it (ServiceRequest or CarePlan) and re-check.", critical=True,
            evidence=course_evidence(ctx),
            override_reasons=("clinical-judgement-documented",)))
    return out


# --- D-6 ------------------------------------------------------------------------------------


def _spacing(ctx: RuleContext, plan: DosePlan) -> list[Decision]:
    course, policy = ctx.course, ctx.policy
    prev = course.previous_dose
    if prev is None:
        return []
    when = ctx.dose_date
    gap = (when.date() - prev.given_at.date()).days
    src = (cite(ctx, "SmPC 4.2 Table 1 note a", "USPI 2.1 Table 1 note a"),)
    ev = dose_evidence(ctx)
    if gap < policy.min_days_between_doses:
        until = prev.given_at.date() + timedelta(days=policy.min_days_between_doses)
        return [make_decision(
            ctx, DecisionCode.HOLD, ("D-6",), src,
            f"Hold: {gap} days since the last dose ({day_str(prev.given_at)}); minimum "
            f"{policy.min_days_between_doses}: give on or after {until.isoformat()}",
            f"Doses must be at least {policy.min_days_between_doses} days apart (Table 1 note a: "
            f"+/- {policy.schedule_window_days} days, maintain a minimum of "
            f"{policy.min_days_between_doses} days between doses). The last dose was given on "
            f"{day_str(prev.given_at)}; this order is for {day_str(when)}.",
            evidence=ev, hold_until=until,
            recovery_criteria=f"{policy.min_days_between_doses} days since the previous dose")]
    # A new cycle earlier than its planned Day 1 (Day 22 after cycle 1, Day 29 later) - 2 days.
    if plan.dose_number == 1 and plan.cycle > 1 and course.cycles:
        prev_cycle = [c for c in course.cycles if c.number == plan.cycle - 1]
        if prev_cycle:
            length = policy.cycle1_length_days if plan.cycle - 1 == 1 else \
                policy.later_cycle_length_days
            planned = prev_cycle[0].start.date() + timedelta(days=length)
            earliest = planned - timedelta(days=policy.schedule_window_days)
            if when.date() < earliest:
                return [make_decision(
                    ctx, DecisionCode.HOLD, ("D-6",),
                    src + (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1"),),
                    f"Hold: Cycle {plan.cycle} would start on Day "
                    f"{(when.date() - prev_cycle[0].start.date()).days + 1} of Cycle "
                    f"{plan.cycle - 1} ({length}-day cycle); give on or after "
                    f"{earliest.isoformat()}",
                    f"Cycle {plan.cycle - 1} began on {day_str(prev_cycle[0].start)} and lasts "
                    f"{length} days, so Cycle {plan.cycle} Day 1 is due on {planned.isoformat()} "
                    f"(+/- {policy.schedule_window_days} days). The window for Day 1 is this "
                    "service's reading of Table 1 (the label's +/- 2 days note is on Days 8 and "
                    "15).", evidence=ev, hold_until=earliest,
                    recovery_criteria=f"Cycle {plan.cycle - 1} completed",
                    override_reasons=("clinical-judgement-documented",))]
    return []


# --- D-5 ------------------------------------------------------------------------------------


def _bsa(ctx: RuleContext, plan: DosePlan) -> list[Decision]:
    policy, body = ctx.policy, plan.body
    src = (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1 note b"),)
    if not body.usable:
        reasons = []
        for name, m, stale, limit in (
            ("height", body.height, body.height_stale, policy.height_max_age_days),
            ("weight", body.weight, body.weight_stale, policy.weight_max_age_days),
        ):
            problems = ctx.facts.problems_for(name)
            if m is None:
                extra = f" ({problems[0].reason})" if problems else ""
                reasons.append(f"no {name} recorded{extra}")
            elif stale:
                age = (ctx.dose_date.date() - m.effective.date()).days
                reasons.append(f"latest {name} is {age} days old (limit {limit})")
        need = body.missing
        return [make_decision(
            ctx, DecisionCode.OBTAIN_DATA, ("D-5",), src,
            f"Obtain {' and '.join(need)}: {'; '.join(reasons)}; dose cannot be checked",
            "The dose is based on body surface area "
            f"({body.formula.capitalize()} formula, from height and weight). Record a current "
            f"{' and '.join(need)} to check the ordered dose.",
            evidence=body_evidence(body) + tuple(
                Evidence(concept=n, note=r) for n, r in zip(need, reasons)
                if (body.height if n == "height" else body.weight) is None),
            needed_data=need)]
    out: list[Decision] = []
    # Weight change since the cycle's Day 1 (institutional policy, not from the label).
    course = ctx.course
    if plan.dose_number > 1 and course.cycle_start is not None and body.weight is not None:
        ref = ctx.facts.latest(Analyte.WEIGHT, course.cycle_start)
        if ref is not None and ref.value > 0 and ref.reference != body.weight.reference:
            change = (body.weight.value - ref.value) / ref.value
            if abs(change) >= policy.weight_change_caution - 1e-9:
                out.append(make_decision(
                    ctx, DecisionCode.CAUTION, ("D-5",), src,
                    f"Weight {num(body.weight.value)} kg changed {pct(abs(change))} since Cycle "
                    f"{plan.cycle} Day 1 ({num(ref.value)} kg): BSA is now "
                    f"{num(body.bsa_m2, 2)} m2",
                    f"The dose is computed from the current weight ({num(body.weight.value)} kg, "
                    f"{day_str(body.weight.effective)}); the cycle's Day 1 dose used "
                    f"{num(ref.value)} kg. Confirm the weight. This caution is institutional "
                    f"policy (threshold {pct(policy.weight_change_caution, 0)}), not a label "
                    "rule.", evidence=body_evidence(body) + (
                        measured(ref, note="Day 1 weight"),)))
    return out


# --- D-3, D-4 -------------------------------------------------------------------------------


def _dose(ctx: RuleContext, plan: DosePlan) -> list[Decision]:
    policy = ctx.policy
    out: list[Decision] = []
    max1, maxc = policy.max_single_mg_per_m2, policy.max_cycle_mg_per_m2
    src_max = cite(ctx, "SmPC 4.9", "USPI 2.1 Table 1")
    src_t1 = cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1")
    ev = dose_evidence(ctx) + body_evidence(plan.body)
    # D-3: level 2 gives 2 doses per cycle
    if plan.level >= 2 and plan.dose_number > doses_per_cycle(plan.level):
        return [make_decision(
            ctx, DecisionCode.OMIT_DOSE, ("D-3",), (cite(ctx, "SmPC 4.2 Table 4",
                                                         "USPI 2.3 Table 4"),),
            f"Omit dose: reduced to 2 doses per cycle, so no dose {plan.dose_number} in Cycle "
            f"{plan.cycle} (Day {plan.day})",
            "The dose was reduced to 2 doses per cycle (Table 4, >= 14 days' interruption after "
            "a 25 % reduction). The label does not say which dose is dropped: this service "
            "assumes Days 1 and 8; if Days 1 and 15 were chosen, document it and override.",
            evidence=ev, override_reasons=("clinical-judgement-documented",))]
    rec = recommendation(ctx, plan)
    if plan.expected_mg_per_m2 is None:
        # Response unknown: only the maxima can be checked (with D-4's rounding).
        if plan.ordered_mg_per_m2 is not None and _over_single(ctx, plan, plan.ordered_mg_per_m2):
            out.append(make_decision(
                ctx, DecisionCode.CORRECT_DOSE, ("D-4",), (src_max,),
                f"Dose above maximum: {mg_m2(plan.ordered_mg_per_m2)} ordered; single doses "
                f"are at most {mg_m2(max1)}", "The label's highest single dose is "
                f"{mg_m2(max1)} ({src_max}).", evidence=ev, critical=True))
        return out
    expected = plan.expected_mg_per_m2
    bsa = plan.bsa
    expected_mg = round_mg(expected * bsa, policy.dose_rounding_mg) if bsa else None
    ordered = plan.ordered_mg_per_m2
    draft = ctx.facts.draft
    assert draft is not None
    problems = list(draft.problems)
    if ordered is None:
        if draft.dose_mg is not None and bsa is None:
            return out  # mg order without a usable BSA: D-5 asks for height/weight
        out.append(make_decision(
            ctx, DecisionCode.CORRECT_DOSE, ("D-4", _regimen_rule(plan)), (src_t1,),
            f"Order has no usable dose: {mg_m2(expected)}"
            + (f" ({mg(expected_mg)})" if expected_mg is not None else "")
            + f" is due on {where(plan)}",
            "The draft order carries no dose in mg or mg/m2 that can be read"
            + (f" ({'; '.join(problems)})" if problems else "") + ". "
            + expected_text(plan), evidence=ev, dose=rec))
        return out
    rel = abs(ordered - expected) / expected
    for other in plan.accepted_levels:  # an order at the course's own level (T-3 says reduce)
        alt = expected_mg_per_m2(plan.cycle, plan.dose_number, bool(plan.cr_or_cri), other)
        if alt:
            rel = min(rel, abs(ordered - alt) / alt)
    ordered_mg = plan.ordered_mg if plan.ordered_mg is not None else (
        round_mg(ordered * bsa, policy.dose_rounding_mg) if bsa else None)
    # mg orders: tolerance on mg too when both mg and mg/m2 are given
    mg_rel = None
    if draft.dose_mg is not None and draft.dose_mg_per_m2 is not None and expected_mg:
        mg_rel = abs(draft.dose_mg - expected_mg) / expected_mg
    over_single = _over_single(ctx, plan, ordered)
    cycle_total = plan.given_in_cycle_mg_per_m2 + ordered
    over_cycle = cycle_total > maxc + _cycle_allowance(ctx, plan)
    if mg_rel is not None and len(plan.accepted_levels) > 1:
        mg_rel = None if rel <= policy.dose_tolerance + 1e-9 else mg_rel
    wrong = rel > policy.dose_tolerance + 1e-9 or (mg_rel is not None
                                                   and mg_rel > policy.dose_tolerance + 1e-9)
    if rec is None and bsa is not None and not plan.level_unknown:
        # The expected dose itself would take the cycle above 1.8 mg/m2 (doses already given).
        return [make_decision(
            ctx, DecisionCode.OMIT_DOSE, ("D-4",), (src_max,),
            f"Omit dose: {mg_m2(plan.given_in_cycle_mg_per_m2)} already given in Cycle "
            f"{plan.cycle}; {mg_m2(expected)} more exceeds {mg_m2(maxc)} per cycle",
            f"The label's highest total per cycle is {mg_m2(maxc)} ({src_max}). Doses already "
            f"given in Cycle {plan.cycle} add up to {mg_m2(plan.given_in_cycle_mg_per_m2)}.",
            evidence=ev, critical=True, override_reasons=("data-verified-elsewhere",))]
    if not (wrong or over_single or over_cycle):
        return out
    ordered_txt = mg_m2(ordered) + (f" ({mg(ordered_mg)})" if ordered_mg is not None else "")
    due_txt = mg_m2(expected) + (f" ({mg(expected_mg)})" if expected_mg is not None else "")
    critical = over_single or over_cycle
    if over_single:
        head = f"Above max {mg_m2(max1)}: {where(plan)} dose is {due_txt}, not {ordered_txt}"
    elif over_cycle:
        head = (f"Cycle total {mg_m2(cycle_total)} > {mg_m2(maxc)}: {where(plan)} dose is "
                f"{due_txt}, not {ordered_txt}")
    else:
        head = f"Correct dose: {due_txt} is due on {where(plan)}, not {ordered_txt}"
    if len(head) >= 140 and not critical:
        head = f"Correct dose: {due_txt} on {where(plan)}, not {ordered_txt}"
    lines = [
        expected_text(plan),
        f"Ordered: {ordered_txt}, {pct(rel)} from the expected dose (tolerance "
        f"{pct(policy.dose_tolerance, 0)}).",
    ]
    if over_single:
        lines.append(f"**Above the maximum single dose of {mg_m2(max1)}** ({src_max}).")
    if over_cycle:
        lines.append(f"**Cycle {plan.cycle} total would be {mg_m2(cycle_total)}, above the "
                     f"maximum of {mg_m2(maxc)} per cycle** ({src_max}).")
    if plan.given_unknown:
        lines.append(f"{plural(plan.given_unknown, 'earlier dose')} of this cycle "
                     "(no recorded amount) not in the cycle total.")
    cites = (src_t1,) + ((src_max,) if critical else ())
    if plan.level:
        cites += (cite(ctx, "SmPC 4.2 Table 4", "USPI 2.3 Table 4"),)
    rules = ("D-4", _regimen_rule(plan)) + (("D-3",) if plan.level else ())
    out.append(make_decision(ctx, DecisionCode.CORRECT_DOSE, rules, cites, head, "\n\n".join(lines),
                         evidence=ev, dose=rec, critical=critical,
                         override_reasons=("clinical-judgement-documented",)))
    return out


def _over_single(ctx: RuleContext, plan: DosePlan, ordered_m2: float) -> bool:
    """Above 0.8 mg/m2 (SmPC 4.9). An mg order's mg/m2 is read to the precision the mg amount
    has (`mg_per_m2_of_mg`, the same rounding as D-4), so a 0.8 mg/m2 dose computed on a rounded
    BSA is not an overdose."""
    return ordered_m2 > ctx.policy.max_single_mg_per_m2 + 1e-9


def _regimen_rule(plan: DosePlan) -> str:
    return "D-1" if plan.cycle == 1 else "D-2"


def expected_text(plan: DosePlan) -> str:
    sched = label_schedule(plan.cycle, bool(plan.cr_or_cri))
    which = "Cycle 1" if plan.cycle == 1 else (
        "cycles after the first, with CR/CRi" if plan.cr_or_cri else
        "cycles after the first, without CR/CRi")
    text = (f"{where(plan)} is dose {plan.dose_number} of the cycle (planned Day "
            f"{DOSE_DAYS[plan.dose_number - 1]}). Table 1 for {which}: "
            + ", ".join(f"Day {d} {num(v)}" for d, v in zip(DOSE_DAYS, sched)) + " mg/m2.")
    if plan.level == 1:
        text += " Reduction level 1 is in force: each dose x 0.75 (total -25 %, Table 4)."
    elif plan.level == 2:
        text += " Reduction level 2 is in force: 2 doses per cycle at the reduced amount."
    text += f" Expected: {mg_m2(plan.expected_mg_per_m2)}"
    if plan.bsa:
        text += (f" x BSA {num(plan.bsa, 2)} m2 ({plan.body.formula.capitalize()}, "
                 f"{num(plan.body.height.value)} cm, {num(plan.body.weight.value)} kg) = "
                 f"{num(plan.expected_mg_per_m2 * plan.bsa, 3)} mg")
    return text + "."


def measurement_evidence(m: Measurement) -> Evidence:
    return measured(m)
