"""Dose modification by duration of a dosing interruption: T-1..T-4 (SmPC 4.2 Table 4; USPI 2.3 Table 4).

Interruptions come from the reconstructed course (C-4): a dose later than planned by `days`. They
are usually inferred from dates; such cards say so and offer "interruption not due to toxicity",
since Table 4 applies to interruptions due to toxicity only.

- T-1: < 7 days within a cycle -> the next dose is delayed, keeping >= 6 days between doses.
- T-2: >= 7 days -> omit the (late) dose; the next scheduled dose of the cycle is given.
- T-3: >= 14 days -> once recovered, next cycle at reduction level 1 (-25 %); level 1 already ->
  level 2 (2 doses per cycle); level 2 already -> permanently discontinue.
- T-4: > 28 days -> consider permanent discontinuation (the clinician's choice).
"""

from __future__ import annotations

from datetime import timedelta

from app.engine import regimen
from app.engine.bsa import body_size_at
from app.engine.catalogue import RuleSpec
from app.engine.context import Interruption, RuleContext
from app.engine.course import planned_next_cycle_start
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation, Evidence
from app.engine.rules.decision_text import cite, d, make
from app.engine.text import duration

RULES: list[RuleSpec] = [
    RuleSpec("T-1", "Interruption < 7 days within a cycle: keep >= 6 days between doses",
             ("hold",), ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
    RuleSpec("T-2", "Interruption >= 7 days: omit the next dose within the cycle",
             ("omit-dose", "caution"), ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
    RuleSpec("T-3", "Interruption >= 14 days: reduce the next cycle (level 1, then 2, then stop)",
             ("reduce-dose", "discontinue"), ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
    RuleSpec("T-4", "Interruption > 28 days: consider permanent discontinuation",
             ("consider-discontinue",), ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
]

LEVEL_TEXT = {0: "label dose", 1: "total dose -25 %", 2: "2 doses per cycle at the -25 % amount"}
INFERRED_NOTE = ("The interruption was inferred from administration dates; Table 4 applies only "
                 "to interruptions due to toxicity (override if it was not).")


def _inferred_note(ctx: RuleContext) -> str:
    if ctx.label.value == "US":
        return INFERRED_NOTE + " (USPI Table 4: interruptions due to non-hematologic toxicity.)"
    return INFERRED_NOTE


def _cites(ctx: RuleContext) -> tuple[str, ...]:
    return cite(ctx, ("SmPC 4.2 Table 4",), ("USPI 2.3 Table 4",))


def _ev(it: Interruption) -> Evidence:
    kind = "within cycle" if it.within_cycle else "start of cycle"
    return Evidence(concept="interruption", value=it.days, unit="d", date=it.actual,
                    note=f"cycle {it.cycle}, {kind}: planned {d(it.planned)}, dosed {d(it.actual)}"
                         + (" (inferred)" if it.inferred else ""))


def _overrides(its: list[Interruption]) -> tuple[str, ...]:
    base = ("clinical-judgement-documented",)
    return (("interruption-not-due-to-toxicity",) + base) if any(i.inferred for i in its) else base


def _own(ctx: RuleContext) -> Interruption | None:
    """The interruption the draft order itself makes (its dose is late)."""
    c = ctx.course
    for it in c.interruptions:
        if it.actual == ctx.dose_date and (it.cycle in (0, c.cycle)):
            return it
    if c.omitted_dose == 3 and c.dose_number == 1:  # the course read it as the next Day 1
        for it in c.interruptions:
            if it.actual == ctx.dose_date and it.within_cycle:
                return it
    return None


def check_interruption(ctx: RuleContext) -> list[Decision]:
    c = ctx.course
    if ctx.facts.draft is None or c.cycle is None or c.dose_number is None:
        return []
    out: list[Decision] = []
    own = _own(ctx)
    if c.omitted_dose is not None and own is not None:  # T-2, as the course read the order
        out.append(_t2(ctx, own))
    if c.dose_number > 1 and c.omitted_dose is None:
        out += _within_cycle(ctx)
    elif c.dose_number == 1 and c.cycle >= 2:
        out += _next_cycle(ctx)
    return out


# --- T-1, T-2 -------------------------------------------------------------------------------------


def _within_cycle(ctx: RuleContext) -> list[Decision]:
    c, p = ctx.course, ctx.policy
    own = _own(ctx)
    if own is not None and own.within_cycle and own.days >= p.interruption_omit_days:
        return [_t2(ctx, own)]
    # T-1: an earlier < 7-day interruption in this cycle delays the next dose: >= 6 days apart.
    short = [i for i in c.interruptions if i.cycle == c.cycle and i.within_cycle
             and i.actual < ctx.dose_date and i.days < p.interruption_omit_days]
    prev = c.previous_dose
    if short and prev is not None:
        earliest = prev.given_at + timedelta(days=p.min_days_between_doses)
        if ctx.dose_date.date() < earliest.date():
            it = short[-1]
            gap = (ctx.dose_date.date() - prev.given_at.date()).days
            return [make(
                ctx, DecisionCode.HOLD, ("T-1",), _cites(ctx),
                f"Hold until {d(earliest)}: {gap} days after the delayed dose of {d(prev.given_at)}"
                f" (minimum {p.min_days_between_doses} days)",
                what=f"A dose in cycle {c.cycle} was delayed by {duration(it.days)} (< "
                     f"{p.interruption_omit_days}, Table 4): the next dose is interrupted so that "
                     f"at least {p.min_days_between_doses} days separate doses.",
                evidence=(_ev(it),),
                recovery=f"on or after {d(earliest)}",
                notes=[_inferred_note(ctx)] if it.inferred else [],
                hold_until=earliest.date(),
                inferred=it.inferred,
                override_reasons=_overrides([it]),
            )]
    return []


def _t2(ctx: RuleContext, it: Interruption) -> Decision:
    c, p = ctx.course, ctx.policy
    n = c.omitted_dose or c.dose_number or 2  # the late (omitted) dose
    planned_day = {1: 1, 2: 8, 3: 15}.get(n, 8)
    start = c.cycle_start or it.planned
    if n == 2:
        next_slot, next_name = start + timedelta(days=14), "the Day 15 dose"
    else:  # the next cycle's Day 1, as the course plans it (C-4)
        next_slot = planned_next_cycle_start(c.cycle or 1, start, p, extended=(
            c.cycle == 1 and c.response.cr_or_cri))
        next_name = f"cycle {(c.cycle or 0) + 1} Day 1"
    window = timedelta(days=p.schedule_window_days)
    common = dict(evidence=(_ev(it),), inferred=it.inferred, override_reasons=_overrides([it]))
    notes = [_inferred_note(ctx)] if it.inferred else []
    if c.omitted_dose == 3 and c.dose_number == 1:  # the course reads it as the next Day 1
        return make(
            ctx, DecisionCode.CAUTION, ("T-2",), _cites(ctx),
            f"Day 15 dose of cycle {(c.cycle or 2) - 1} omitted ({it.days} d late, >= "
            f"{p.interruption_omit_days}): this order is Cycle {c.cycle} Day 1 (dose and counts)",
            what=f"The Day 15 dose of cycle {(c.cycle or 2) - 1} is {it.days} days late (>= "
                 f"{p.interruption_omit_days} days, Table 4): the late dose is **omitted**. This "
                 f"order falls in the window of Cycle {c.cycle} Day 1, so it is that Day 1 dose: "
                 "its amount and the Day 1 counts (Table 2) apply.",
            notes=notes, **common)
    if n == 3 and ctx.dose_date >= next_slot - window:
        return make(
            ctx, DecisionCode.CAUTION, ("T-2",), _cites(ctx),
            f"Day 15 dose omitted ({it.days} d late, >= {p.interruption_omit_days}): order this as "
            f"{next_name} instead (Day 1 dose and counts)",
            what=f"The Day 15 dose of cycle {c.cycle} is {it.days} days late (>= "
                 f"{p.interruption_omit_days} days, Table 4): the late dose is **omitted**. This "
                 f"order falls on {next_name} ({d(next_slot)}): order it as that Day 1 dose, which "
                 "may differ in amount and is gated by the Day 1 counts (Table 2).",
            notes=notes, **common)
    if n == 2 and ctx.dose_date >= next_slot - window:
        return make(
            ctx, DecisionCode.CAUTION, ("T-2",), _cites(ctx),
            f"Day 8 dose omitted ({it.days} d late, >= {p.interruption_omit_days}): give this as "
            "the Day 15 dose; no further dose this cycle",
            what=f"The Day 8 dose of cycle {c.cycle} is {it.days} days late (>= "
                 f"{p.interruption_omit_days} days, Table 4): the late dose is **omitted** and the "
                 "next scheduled dose of the cycle (Day 15) is given. This order falls in the Day 15 "
                 "window, so it counts as the Day 15 dose; do not add a third dose to this cycle.",
            notes=notes, **common)
    return make(
        ctx, DecisionCode.OMIT_DOSE, ("T-2",), _cites(ctx),
        f"Omit the Day {planned_day} dose ({it.days} d late, >= {p.interruption_omit_days}); "
        f"next dose is {next_name} on {d(next_slot)}",
        what=f"The Day {planned_day} dose of cycle {c.cycle} is {it.days} days late (>= "
             f"{p.interruption_omit_days} days, Table 4): **omit it** and give the next scheduled "
             f"dose ({next_name}, {d(next_slot)}).",
        notes=notes, hold_until=next_slot.date(), **common)


# --- T-3, T-4 -------------------------------------------------------------------------------------


def _relevant(ctx: RuleContext) -> list[Interruption]:
    """Interruptions during the previous cycle and the late start of this one."""
    cyc = ctx.course.cycle or 0
    return [i for i in ctx.course.interruptions
            if i.cycle == cyc - 1 or (i.cycle == cyc and not i.within_cycle)]


def required_reduction_level(ctx: RuleContext) -> int | None:
    """Reduction level Table 4 requires for the ordered dose: the course's level, raised by one
    after an interruption >= 14 days in the previous cycle or at this cycle's start (T-3).
    None: beyond level 2 (T-3 discontinue). For the regimen rules (D-4), so that a dose ordered
    at the T-3 level is not "corrected" back up (no re-escalation, SmPC 4.2)."""
    c = ctx.course
    level = c.reduction_level
    if c.cycle is None or c.dose_number != 1 or c.cycle < 2:
        return level
    if any(i.days >= ctx.policy.interruption_reduce_days for i in _relevant(ctx)):
        level += 1
    return level if level <= 2 else None


def _round(mg: float, step: float) -> float:
    return round(round(mg / step) * step, 4) if step > 0 else round(mg, 2)


def _next_cycle(ctx: RuleContext) -> list[Decision]:
    c, p = ctx.course, ctx.policy
    its = _relevant(ctx)
    out: list[Decision] = []
    long_ = [i for i in its if i.days >= p.interruption_reduce_days]
    longest = max(its, key=lambda i: i.days) if its else None
    inferred = any(i.inferred for i in long_)
    notes = [_inferred_note(ctx)] if inferred else []

    if long_:
        it = max(long_, key=lambda i: i.days)
        level = min(c.reduction_level, 2)
        new = level + 1
        if new > 2:
            out.append(make(
                ctx, DecisionCode.DISCONTINUE, ("T-3",), _cites(ctx),
                f"Discontinue: {it.days}-day interruption (>= {p.interruption_reduce_days}) already "
                "at 2 doses per cycle with -25 % dose",
                what=f"An interruption of {it.days} days (>= {p.interruption_reduce_days}, Table 4) "
                     "occurred although the dose was already reduced by 25 % and to 2 doses per "
                     "cycle. The label says to **permanently discontinue** when this is not "
                     "tolerated.",
                evidence=tuple(_ev(i) for i in long_), notes=notes, critical=True,
                inferred=inferred, override_reasons=_overrides(long_)))
        else:
            out += _reduce(ctx, it, long_, new, notes, inferred)

    if longest is not None and longest.days > p.interruption_consider_stop_days:
        out.append(make(
            ctx, DecisionCode.CONSIDER_DISCONTINUE, ("T-4",), _cites(ctx),
            f"Consider discontinuing: dosing interrupted {longest.days} days "
            f"(> {p.interruption_consider_stop_days}, Table 4)",
            what=f"Dosing was interrupted for {longest.days} days (> "
                 f"{p.interruption_consider_stop_days} days): the label says to **consider "
                 "permanent discontinuation** of BESPONSA.",
            evidence=(_ev(longest),),
            notes=[_inferred_note(ctx)] if longest.inferred else [],
            choice="Whether to stop or continue is the clinician's decision; the label does not "
                   "require discontinuation.",
            inferred=longest.inferred, override_reasons=_overrides([longest])))
    return out


def _reduce(ctx: RuleContext, it: Interruption, long_: list[Interruption], new: int,
            notes: list[str], inferred: bool) -> list[Decision]:
    c, p, f = ctx.course, ctx.policy, ctx.facts
    cyc = c.cycle or 1
    cr = c.response.cr_or_cri
    mg_m2 = regimen.expected_mg_per_m2(cyc, 1, cr, new)
    assert mg_m2 is not None  # dose 1 is given at every level
    body = body_size_at(f, ctx.dose_date, p.bsa_formula, p.weight_max_age_days,
                        p.height_max_age_days)
    dose = None
    # C-3 level not known (past doses unreadable): the level+1 amount may be above the real one.
    if body.usable and body.bsa_m2 and not c.reduction_level_unknown:
        dose = DoseRecommendation(mg_per_m2=mg_m2, mg=_round(mg_m2 * body.bsa_m2, p.dose_rounding_mg),
                                  bsa_m2=round(body.bsa_m2, 3), cycle=cyc, day=1,
                                  reduction_level=new)
    # Already ordered at the level-1 amount: nothing to object to. (Level 2 keeps the Day 1
    # amount but drops a dose from the cycle: always said.)
    ordered = f.draft.dose_mg_per_m2 if f.draft else None
    if ordered is None and f.draft and f.draft.dose_mg is not None and body.bsa_m2:
        ordered = regimen.mg_per_m2_of_mg(f.draft.dose_mg, body.bsa_m2, p.dose_rounding_mg)
    if new == 1 and ordered is not None and abs(ordered / mg_m2 - 1) <= p.dose_tolerance:
        return []
    mg_text = f" ({dose.mg:g} mg)" if dose else ""
    level_line = (
        "Reduce the total dose by 25 % for this cycle." if new == 1 else
        "Reduce to 2 doses per cycle (each at the -25 % amount). The label does not say which "
        "dose is dropped: that is the clinician's choice (this service models Days 1 and 8).")
    total = regimen.cycle_total_mg_per_m2(cyc, cr, new)
    return [make(
        ctx, DecisionCode.REDUCE_DOSE, ("T-3",), _cites(ctx),
        f"Reduce cycle {cyc}: {it.days}-day interruption (>= {p.interruption_reduce_days}); "
        f"Day 1 {mg_m2:g} mg/m2{mg_text}, {LEVEL_TEXT[new]}",
        what=f"An interruption of {it.days} days (>= {p.interruption_reduce_days} days, Table 4) "
             f"calls for a reduction in the subsequent cycle, **once adequate recovery is "
             f"achieved**. {level_line} Cycle {cyc} total: {total:g} mg/m2. Do not re-escalate.",
        evidence=tuple(_ev(i) for i in long_),
        notes=[*notes,
               *([] if dose or c.reduction_level_unknown else
                 ["Height/weight missing or stale: mg dose not computed."]),
               *(["The reduction level in force is not known (C-3): no dose is suggested."]
                 if c.reduction_level_unknown else []),
               "If the reduced regimen is not tolerated at 2 doses per cycle, permanently "
               "discontinue."],
        dose=dose, inferred=inferred, override_reasons=_overrides(long_))]
