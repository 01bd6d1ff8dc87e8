"""Engine entry point: facts + now (+ policy, label) -> decisions, most severe first.

1. Reconstruct the treatment course once (C-1..C-6).
2. Run every rule family (app.engine.rules.FAMILIES) on the same RuleContext.
3. Safety net: no suggested dose above 0.8 mg/m2 or taking the cycle above 1.8 mg/m2 (SmPC
   4.9), whichever family made it; none at all beside a `discontinue` or `contraindicated`
   (treatment stops: nothing proposes its next dose). De-duplicate, stamp the label in force,
   sort by SEVERITY_ORDER (critical first within a code).
4. Add exactly one `proceed` (dose, BSA, preparation: D-1..D-5, R-1) when the draft order is
   inotuzumab ozogamicin and no decision other than `caution` fired. A caution informs; it does
   not object to the dose (issue #3, clinical-rules section 6).

No draft order (patient-view, or an order-sign for another drug): patient-level decisions only;
a patient never given the drug and with no draft gets none, unless the administrations could not
be read: then a card says so (issue #8). A rule family that raises is not skipped silently: it
yields a critical caution naming the unchecked rules, and no `proceed`.

Completeness (issue #8, app.engine.completeness) is one gate over every family: data not read
whole makes the course unknown (administrations), gives obtain-data, withholds `proceed` and any
suggested dose (dose-deciding data), or is listed as not checked beside a `proceed` that becomes a
warning (data the EHR does not provide).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from app.engine import completeness
from app.engine.context import RuleContext
from app.engine.course import reconstruct_course
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.facts import ClinicalFacts
from app.engine.planned import planned_orders
from app.engine.policy import Policy
from app.engine.regimen import expected_mg_per_m2
from app.engine.rules import families
from app.engine.rules.preparation import RULES as PREP_RULES
from app.engine.rules.preparation import prepare
from app.engine.rules.regimen import (
    body_evidence,
    cite,
    dose_evidence,
    dose_plan,
    expected_text,
    recommendation,
)
from app.engine.text import detail, evidence_table, mg, mg_m2, num, summary

ENGINE_ERROR = "engine-error"  # Decision.extras key set on the caution for a family that failed


def evaluate(
    facts: ClinicalFacts, now: datetime, policy: Policy | None = None, label: Label = Label.EU
) -> list[Decision]:
    """All decisions for the draft order (or the patient, for patient-view), most severe first."""
    policy = policy or Policy()
    label = Label(label)
    if facts.draft is None and not facts.doses_given and not planned_orders(facts):
        if completeness.treatment_status_known(facts):
            return []  # never given and nothing planned (#10), as far as a history read whole shows
        return [completeness.history_not_read(facts, label)]  # never `[]` on failed data (#8)
    try:
        course = reconstruct_course(facts, now, policy)
    except Exception as exc:  # every rule needs the course: say nothing was checked
        return [_course_failed(label, exc)]
    if not completeness.history_read(facts):  # never "Cycle 1 Day 1" from part of the history
        course = completeness.unknown_course(course, facts)
    ctx = RuleContext(facts=facts, now=now, policy=policy, label=label, course=course)

    decisions: list[Decision] = []
    failed: list[str] = []
    for family in families():
        try:
            decisions.extend(family.check(ctx))
        except Exception as exc:  # a bug must not hide a check nor break the EHR workflow
            failed.append(family.name)
            decisions.append(_family_failed(ctx, family.name, family.rules, exc))

    gaps = completeness.gaps(facts, response_decides_dose=_response_decides_dose(ctx))
    gap_card = completeness.obtain_data(ctx, gaps)
    decisions = completeness.apply(ctx, decisions + ([gap_card] if gap_card else []), gaps)
    decisions = sort_decisions(dedupe(d if d.label == label else replace(d, label=label)
                                      for d in _no_dose_after_stop(
                                          _cap_suggestions(ctx, decisions))))
    if facts.draft is not None and not failed and not gaps.blocking and all(
        d.code is DecisionCode.CAUTION for d in decisions
    ):
        try:
            proceed = proceed_decision(ctx)
        except Exception as exc:  # no proceed without a computed dose; say so
            proceed = _family_failed(ctx, "dose and preparation", PREP_RULES, exc)
        if proceed is not None:
            decisions.append(completeness.apply(ctx, [proceed], gaps)[0])
    if gaps.unchecked and decisions:  # cards offering a dose, else the first, name what was not checked
        doses = [i for i, d in enumerate(decisions) if d.dose is not None] or [0]
        for i in doses:
            decisions[i] = completeness.with_not_checked(decisions[i], gaps)
    return decisions


def _response_decides_dose(ctx: RuleContext) -> bool:
    """The ordered dose depends on the response (D-2: a later cycle's Day 1), or is unknown."""
    try:
        plan = dose_plan(ctx)
    except Exception:  # the regimen family reports its own failure
        return True
    return ctx.facts.draft is not None and (plan is None or plan.response_needed)


def _cap_suggestions(ctx: RuleContext, decisions: list[Decision]) -> list[Decision]:
    """Safety net over every family: no suggested dose above the label dose at the reduction level
    in force (SmPC 4.2 Table 4, issue #8), above 0.8 mg/m2, nor one that takes the ordered dose's
    cycle above 1.8 mg/m2 (SmPC 4.9). Such a suggestion is removed (the card stays and says why)."""
    try:
        plan = dose_plan(ctx)
    except Exception:  # the regimen family reports its own failure
        plan = None
    p = ctx.policy
    out = []
    for d in decisions:
        rec = d.dose
        if rec is not None and d.code is not DecisionCode.PROCEED:
            given = plan.given_in_cycle_mg_per_m2 if plan and rec.cycle == plan.cycle else 0.0
            allowance = 3 * p.dose_rounding_mg / 2 / max(rec.bsa_m2, 0.1) + 1e-9
            ceiling = _level_ceiling(ctx, plan, rec)
            if ceiling is None or rec.mg_per_m2 > ceiling + 1e-6:
                d = replace(d, dose=None, critical=True, detail=d.detail + (
                    "\n\n**No dose is suggested**: "
                    + (f"{mg_m2(rec.mg_per_m2)} is above {mg_m2(ceiling)}, the most Cycle "
                       f"{rec.cycle} allows at the reduction level in force "
                       f"({ctx.course.reduction_level}); doses are never re-escalated"
                       if ceiling is not None else
                       "the reduction level in force, or the dose this day allows, is unknown")
                    + f" ({cite(ctx, 'SmPC 4.2 Table 4', 'USPI 2.3 Table 4')}). Check the "
                    "administration record."))
            elif (rec.mg_per_m2 > p.max_single_mg_per_m2 + 1e-9
                    or given + rec.mg_per_m2 > p.max_cycle_mg_per_m2 + allowance):
                src = cite(ctx, "SmPC 4.9", "USPI 2.1 Table 1")
                d = replace(d, dose=None, critical=True, detail=d.detail + (
                    f"\n\n**No dose is suggested**: {mg_m2(rec.mg_per_m2)} on top of "
                    f"{mg_m2(given)} already given in Cycle {rec.cycle} would exceed "
                    f"{mg_m2(p.max_single_mg_per_m2)} per dose or {mg_m2(p.max_cycle_mg_per_m2)} "
                    f"per cycle ({src}). Check the administration record."))
        out.append(d)
    return out


def _level_ceiling(ctx: RuleContext, plan, rec) -> float | None:
    """The most mg/m2 a suggested dose may carry: the label dose of that cycle (and dose, when it
    is the ordered one) at the reduction level in force (SmPC 4.2 Table 4: no re-escalation).
    None: not knowable (unknown level or course, or no such dose at that level)."""
    level = ctx.course.reduction_level
    if not isinstance(level, int) or level not in (0, 1, 2) or rec.cycle is None or rec.cycle < 1:
        return None
    if plan is not None and (rec.cycle, rec.day) == (plan.cycle, plan.day):
        numbers = (plan.dose_number,)
    else:
        numbers = (1, 2, 3)
    doses = [expected_mg_per_m2(rec.cycle, n, cr, level) for n in numbers for cr in (False, True)]
    doses = [x for x in doses if x is not None]
    return max(doses) if doses else None


_STOPS = (DecisionCode.DISCONTINUE, DecisionCode.CONTRAINDICATED)


def _no_dose_after_stop(decisions: list[Decision]) -> list[Decision]:
    """When a decision stops the treatment (discontinue, contraindicated), no other card proposes
    its next dose (e.g. T-3's reduced cycle beside H-5 or L-2 non-recovery): the suggestion is
    removed and the card says why."""
    stops = [d for d in decisions if d.code in _STOPS]
    if not stops:
        return decisions
    why = "; ".join(f"{d.summary} ({', '.join(d.rules)})" for d in stops)
    return [replace(d, dose=None, detail=d.detail + f"\n\n**No dose is suggested**: {why}.")
            if d.dose is not None and d.code not in _STOPS else d for d in decisions]


def dedupe(decisions) -> list[Decision]:
    """Drop repeats (same code, rules and summary), keeping the first."""
    seen: set[tuple] = set()
    out = []
    for d in decisions:
        key = (d.code, d.rules, d.summary)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def sort_decisions(decisions: list[Decision]) -> list[Decision]:
    """Most severe first (SEVERITY_ORDER); within a code, critical first; otherwise stable."""
    return sorted(decisions, key=lambda d: (d.rank, not d.critical))


def proceed_decision(ctx: RuleContext) -> Decision | None:
    """The `proceed` decision with the dose, BSA and preparation (D-1..D-5, R-1)."""
    plan = dose_plan(ctx)
    rec = recommendation(ctx, plan)
    if plan is None or rec is None or rec.mg <= 0:
        return None
    prep = prepare(rec.mg, ctx.policy, ctx.label)
    dose = replace(rec, vials=prep.vials, reconstituted_volume_ml=prep.reconstituted_volume_ml,
                   preparation=prep.markdown)
    vial = f"{prep.vials} x {num(prep.vial_mg)} mg vial" + ("s" if prep.vials > 1 else "")
    text = (f"Proceed: {mg_m2(dose.mg_per_m2)} x BSA {num(dose.bsa_m2, 2)} m2 = {mg(dose.mg)}, "
            f"Cycle {dose.cycle} Day {dose.day}; {vial}, {num(prep.reconstituted_volume_ml, 2)} mL")
    citations = (cite(ctx, "SmPC 4.2 Table 1", "USPI 2.1 Table 1"),
                 cite(ctx, "SmPC 6.6", "USPI 2.4"))
    rules = ("D-1" if dose.cycle == 1 else "D-2",) + (("D-3",) if dose.reduction_level else ()) \
        + ("D-4", "D-5", "R-1")
    evidence = dose_evidence(ctx) + body_evidence(plan.body)
    return Decision(
        code=DecisionCode.PROCEED,
        rules=rules,
        citations=citations,
        summary=summary(text),
        detail=detail(expected_text(plan), evidence_table(evidence, ctx.now.date()),
                      "**Preparation**\n\n" + prep.markdown,
                      citations=citations, notes=ctx.course.notes, label=ctx.label),
        label=ctx.label,
        evidence=evidence,
        dose=dose,
    )


def _family_failed(ctx: RuleContext, name: str, rules, exc: Exception) -> Decision:
    ids = tuple(r.id for r in rules) or (name,)
    return Decision(
        code=DecisionCode.CAUTION,
        rules=ids,
        citations=(),
        summary=summary(f"Not checked: rules {', '.join(ids)} failed to run; check these "
                        "manually before giving the dose"),
        detail=f"An internal error ({type(exc).__name__}) stopped the {name} rules. They were not "
               "applied to this order, so no `proceed` card is given. Please report it.",
        label=ctx.label,
        critical=True,
        evidence=(_error_evidence(exc, ids),),
        extras={ENGINE_ERROR: type(exc).__name__},
    )


def _course_failed(label: Label, exc: Exception) -> Decision:
    return Decision(
        code=DecisionCode.CAUTION,
        rules=("C-1", "C-2"),
        citations=(),
        summary="Not checked: the treatment course could not be read; check cycle, day and dose "
                "manually",
        detail=f"An internal error ({type(exc).__name__}) stopped the reconstruction of the "
               "treatment course, so no rule was applied to this order. Please report it.",
        label=label,
        critical=True,
        evidence=(_error_evidence(exc, ("C-1", "C-2")),),
        extras={ENGINE_ERROR: type(exc).__name__},
    )


def _error_evidence(exc: Exception, rules) -> Evidence:
    return Evidence(concept="engine-error", value=type(exc).__name__,
                    note=f"rules not applied: {', '.join(rules)}")
