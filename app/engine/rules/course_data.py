"""Data the treatment course needs (C-1..C-5): obtain-data instead of guessing.

- The administration history was not read whole (ClinicalFacts.status, issue #8): cycle, day
  and reduction level are unknown; patient-view says so too instead of answering nothing.
- The Day 1 dose of a cycle after the first depends on the response (D-2) and none is recorded.
"""

from __future__ import annotations

from app.engine.catalogue import RuleSpec
from app.engine.completeness import NOT_READ, history_not_read
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence
from app.engine.facts import Domain
from app.engine.regimen import expected_mg_per_m2
from app.engine.rules.regimen import make_decision, dose_evidence, where, cite, dose_plan
from app.engine.text import mg_m2

HISTORY_CONCEPTS = ("medication-history", "MedicationAdministration")

# The course rules (app.engine.course) feed every other rule; C-2 and C-5 also say when the data
# behind them is missing.
RULES: list[RuleSpec] = [
    RuleSpec("C-1", "Course: an explicit cycle/day on the order or administration (extension "
             "treatment-cycle-day) wins over inference", (), ("SmPC 4.2 Table 1", "USPI 2.1")),
    RuleSpec("C-2", "Course: first administration = Cycle 1 Day 1; a 2nd/3rd dose on Day 21 or "
             "earlier stays in the cycle, else a new cycle; history unavailable -> obtain-data",
             ("obtain-data",), ("SmPC 4.2 Table 1", "USPI 2.1 Table 1")),
    RuleSpec("C-3", "Course: reduction level from doses given (0.75 x label -> level 1; a completed "
             "cycle of 2 reduced doses -> level 2); never lowered", (),
             ("SmPC 4.2 Table 4", "USPI 2.3 Table 4")),
    RuleSpec("C-4", "Course: interruptions = days a dose is later than previous + 7 (within a "
             "cycle) or than Day 22/29 (cycle start), beyond +/- 2 days; marked inferred", (),
             ("SmPC 4.2 Table 1", "SmPC 4.2 Table 4", "USPI 2.1 Table 1", "USPI 2.3 Table 4")),
    RuleSpec("C-5", "Course: response CR/CRi (finding, Condition remission, or marrow blasts < 5 % "
             "without peripheral blasts; CR if platelets >= 100 and ANC >= 1), MRD < 1e-4; unknown "
             "where the dose depends on it -> obtain-data",
             ("obtain-data",), ("SmPC 4.2 Table 1 notes c, d", "USPI 2.1 Table 1 notes d, e")),
    RuleSpec("C-6", "Course: HSCT planned (Procedure in preparation, active ServiceRequest/CarePlan) "
             "or prior (completed Procedure)", (), ("SmPC 4.2", "USPI 2.1")),
]


def check_course_data(ctx: RuleContext) -> list[Decision]:
    out = _history(ctx)
    if ctx.facts.draft is not None:
        out += _response_needed(ctx)
    return out


def _history(ctx: RuleContext) -> list[Decision]:
    facts = ctx.facts
    status = facts.status(Domain.ADMINISTRATIONS)  # issue #8: how the history was read
    problems = [p for c in HISTORY_CONCEPTS for p in facts.problems_for(c)]
    if status.read_whole and not problems:
        return []
    if facts.draft is None:  # patient-view or another drug's order
        return [] if status.read_whole else [history_not_read(facts, ctx.label)]
    ev = tuple(Evidence(concept="medication-history", reference=p.reference, value=p.reason,
                        date=p.effective) for p in problems)
    if not status.read_whole:
        ev = (Evidence(concept=Domain.ADMINISTRATIONS.value, value=status.availability.value,
                       note=status.reason or None),) + ev
        return [make_decision(
            ctx, DecisionCode.OBTAIN_DATA, ("C-2",),
            (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1"),),
            f"Obtain administration history: {status.words}; cycle, day and dose unknown",
            "The inotuzumab ozogamicin administrations (MedicationAdministration): "
            f"{status.text()}. The cycle and day of this dose, the interval since the last dose "
            "and the reduction level in force come from them, so they are **unknown**: no dose "
            "is advised and the dose, spacing and interruption checks (D-4, D-6, T-1..T-4) were "
            "not made. Retry, or check the history in the chart before the dose is given.",
            evidence=ev, needed_data=("medication-history",),
            extras={NOT_READ: {Domain.ADMINISTRATIONS.value: status.availability.value}})]
    reason = problems[0].reason
    return [make_decision(
        ctx, DecisionCode.OBTAIN_DATA, ("C-2",),
        (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1"),),
        f"Obtain administration history: {reason}; cycle, day and dose cannot be confirmed",
        "The inotuzumab ozogamicin administrations (MedicationAdministration) could not be read "
        f"({reason}). The cycle and day of this dose, the interval since the last dose and the "
        "reduction level in force are inferred from them; the checks below assume no earlier "
        "dose that could not be read.", evidence=ev, needed_data=("medication-history",))]


def _response_needed(ctx: RuleContext) -> list[Decision]:
    plan = dose_plan(ctx)
    if plan is None or not (plan.response_needed and plan.cr_or_cri is None):
        return []
    with_cr = expected_mg_per_m2(plan.cycle, 1, True, plan.level)
    without = expected_mg_per_m2(plan.cycle, 1, False, plan.level)
    return [make_decision(
        ctx, DecisionCode.OBTAIN_DATA, ("C-5", "D-2"),
        (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1"),),
        f"Obtain disease response: {where(plan)} dose is {mg_m2(with_cr)} with CR/CRi, "
        f"{mg_m2(without)} without",
        "The Day 1 dose of cycles after the first depends on the response: CR or CRi (< 5 % "
        "marrow blasts, no peripheral blasts) gives the lower dose. No response assessment after "
        "the first dose is recorded (response Observation, Condition in remission, or marrow and "
        "peripheral blasts).", evidence=dose_evidence(ctx), needed_data=("disease-response",))]
