"""Hepatic and other non-haematological toxicity: L-1, L-2, L-3 (SmPC 4.2 Table 3; USPI 2.3 Table 3).

- L-1: VOD/SOS or other severe liver toxicity after the first dose -> permanently discontinue.
- L-2: total bilirubin > 1.5 x ULN and AST/ALT > 2.5 x ULN before any dose -> hold until both
  recover; the bilirubin part is waived for Gilbert's syndrome or haemolysis (the card says so).
  Not recovered after a hold of > `policy.hepatic_nonrecovery_days` -> discontinue.
- L-3: gradable non-haematological result at CTCAE v3.0 Grade >= 2 above its pre-treatment grade
  -> hold until Grade <= 1 or the pre-treatment grade; Grade >= 3 liver tests add the "severe liver
  toxicity -> permanently discontinue" line (critical).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.engine import ctcae, labs
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence
from app.engine.facts import Analyte, ConditionFact
from app.engine.rules.decision_text import cite, d, make, ref_evidence
from app.engine.text import relative_day

RULES: list[RuleSpec] = [
    RuleSpec("L-1", "VOD/SOS or other severe liver toxicity after the first dose",
             ("discontinue", "hold"), ("SmPC 4.2 Table 3", "SmPC 4.4", "USPI 2.3 Table 3", "USPI 5.1")),
    RuleSpec("L-2", "Total bilirubin > 1.5 x ULN with AST/ALT > 2.5 x ULN before a dose",
             ("hold", "discontinue", "caution"), ("SmPC 4.2 Table 3", "USPI 2.3 Table 3")),
    RuleSpec("L-3", "CTCAE v3.0 Grade >= 2 non-haematological lab above pre-treatment grade",
             ("hold",), ("SmPC 4.2 Table 3", "USPI 2.3 Table 3")),
]

VOD = "vod-sos"
SEVERE_LIVER = "severe-liver-toxicity"
WAIVERS = {"gilbert-syndrome": "Gilbert's syndrome", "haemolysis": "haemolysis"}
_UNCONFIRMED = {"provisional", "differential", "unconfirmed"}
SEVERE_LINE = ("If this is judged severe liver toxicity, permanently discontinue BESPONSA "
               "(SmPC 4.2 Table 3).")


def check_hepatic(ctx: RuleContext) -> list[Decision]:
    f = ctx.facts
    if f.draft is None and (f.other_orders or not f.doses_given):
        return []  # other drugs' orders, or never treated: nothing hepatic to say
    out = l1_vod_or_severe_liver(ctx)
    if f.draft is None and not _recently_dosed(ctx):
        return out  # patient-view long after treatment: only L-1
    l2, folded = l2_bilirubin_transaminases(ctx)
    out += l2
    out += l3_graded_toxicity(ctx, skip=folded)
    return out


def _recently_dosed(ctx: RuleContext) -> bool:
    """Patient-view: the next dose is still relevant (last dose within policy.on_treatment_days)."""
    last = ctx.facts.doses_given[-1] if ctx.facts.doses_given else None
    return last is not None and ctx.now - last.given_at <= timedelta(
        days=ctx.policy.on_treatment_days)


def _hold_word(ctx: RuleContext) -> str:
    return "Hold dose" if ctx.facts.draft is not None else "Hold next dose"


# --- L-1 ------------------------------------------------------------------------------------------


def _event_time(c: ConditionFact) -> datetime | None:
    return c.onset or c.recorded


def l1_vod_or_severe_liver(ctx: RuleContext) -> list[Decision]:
    first = ctx.course.first_dose
    if first is None:
        return []  # before treatment: a VOD history is E-1 (contraindication)
    out: list[Decision] = []
    cites = cite(ctx, ("SmPC 4.2 Table 3", "SmPC 4.4"), ("USPI 2.3 Table 3", "USPI 5.1"))
    for c in ctx.facts.conditions:
        if c.concept not in (VOD, SEVERE_LIVER):
            continue
        when = _event_time(c)
        if when is not None and when < first.given_at:
            continue  # before treatment: E-1
        what_name = "VOD/SOS" if c.concept == VOD else "Severe liver toxicity"
        ev = ref_evidence(c.concept, c.reference, c.display or what_name, when,
                          note=f"status {c.clinical_status or 'unknown'}"
                          f"/{c.verification_status or 'unknown'}"
                          + ("" if when else "; date unknown: counted as during treatment"))
        if c.verification_status in _UNCONFIRMED:
            out.append(make(
                ctx, DecisionCode.HOLD, ("L-1",), cites,
                f"Hold dose: suspected {what_name} ({c.verification_status}) on {d(when)}; "
                "if confirmed, permanently discontinue",
                what=f"{what_name} is recorded as **{c.verification_status}** after the first dose "
                     f"of inotuzumab ozogamicin ({d(first.given_at)}). Do not give further doses "
                     "until it is excluded.",
                evidence=(ev,),
                recovery=f"{what_name} excluded (Condition refuted or entered in error)",
                notes=("If VOD/SOS or severe liver toxicity is confirmed, the label requires "
                       "permanent discontinuation.",),
                critical=True,
                override_reasons=("clinical-judgement-documented",),
            ))
            continue
        out.append(make(
            ctx, DecisionCode.DISCONTINUE, ("L-1",), cites,
            f"Discontinue: {what_name} on {d(when)} after starting inotuzumab ozogamicin "
            f"({d(first.given_at)})",
            what=f"**{what_name}** is recorded after the first dose of inotuzumab ozogamicin "
                 f"({d(first.given_at)}). The label requires **permanent discontinuation**.",
            evidence=(ev,),
            notes=("If severe VOD/SOS occurs, treat according to standard medical practice.",),
            critical=True,
        ))
    return out


# --- L-2 ------------------------------------------------------------------------------------------


def waivers(ctx: RuleContext) -> list[ConditionFact]:
    """Gilbert's syndrome (any non-refuted record) or active haemolysis."""
    return [c for c in ctx.facts.conditions
            if c.concept == "gilbert-syndrome" or (c.concept == "haemolysis" and c.active)]


def _met(ctx: RuleContext, bili, ast, alt) -> bool:
    p = ctx.policy
    if bili is None or not bili.exceeds(p.bilirubin_hold_uln):
        return False
    return any(x is not None and x.exceeds(p.transaminase_hold_uln) for x in (ast, alt))


def _met_since(ctx: RuleContext) -> datetime | None:
    """Start of the current unbroken run of results meeting the L-2 criterion (None if not met)."""
    series = {a: labs.usable_series(ctx, a) for a in (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT)}
    times = sorted({m.effective for s in series.values() for m in s}, reverse=True)
    start = None
    for t in times:
        at = {a: next((m for m in reversed(s) if m.effective <= t), None) for a, s in series.items()}
        r = {a: labs.read(m, ctx.policy) if m else None for a, m in at.items()}
        if not _met(ctx, r[Analyte.BILIRUBIN], r[Analyte.AST], r[Analyte.ALT]):
            break
        start = t
    return start


def l2_bilirubin_transaminases(ctx: RuleContext) -> tuple[list[Decision], set[Analyte]]:
    """L-2 decisions, and the analytes folded into its card (so L-3 does not repeat them)."""
    p = ctx.policy
    look = {a: labs.current(ctx, a) for a in (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT)}
    bili, ast, alt = (look[a].reading for a in (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT))
    if bili is None or not bili.exceeds(p.bilirubin_hold_uln):
        return [], set()
    high_tx = [x for x in (ast, alt) if x is not None and x.exceeds(p.transaminase_hold_uln)]
    cites = cite(ctx, ("SmPC 4.2 Table 3",), ("USPI 2.3 Table 3",))
    ev = tuple(labs.evidence(x) for x in (bili, ast, alt) if x is not None)
    notes = [n for lk in look.values() for n in lk.notes]
    flagged = tuple(e for lk in look.values() for e in lk.flagged)
    w = waivers(ctx)
    if w:
        names = " / ".join(sorted({WAIVERS[c.concept] for c in w}))
        tx_text = (" with " + ", ".join(f"{labs.name(x.analyte)} {x.ratio:.1f}x ULN" for x in high_tx)
                   if high_tx else "")
        return [make(
            ctx, DecisionCode.CAUTION, ("L-2",), cites,
            f"Bilirubin {bili.text()} not counted: {names} on record (L-2 waiver); "
            "confirm it explains the rise",
            what=f"Total bilirubin is above 1.5 x ULN{tx_text}. The label's hold for bilirubin "
                 f"> 1.5 x ULN with AST/ALT > 2.5 x ULN does not apply when the bilirubin rise is "
                 f"due to Gilbert's syndrome or haemolysis: **{names}** is on record, so the "
                 "bilirubin part is waived. AST/ALT are still graded under L-3.",
            evidence=ev + tuple(ref_evidence(c.concept, c.reference, c.display or WAIVERS[c.concept],
                                             c.onset or c.recorded) for c in w) + flagged,
            notes=notes,
            choice="Confirm that Gilbert's syndrome or haemolysis explains the bilirubin rise; "
                   "if it does not, hold the dose until bilirubin <= 1.5 x ULN and AST/ALT "
                   "<= 2.5 x ULN.",
        )], {Analyte.BILIRUBIN}
    if not high_tx:
        return [], set()

    worst = max(high_tx, key=lambda x: x.ratio or 0)
    recovery = (f"total bilirubin <= {p.bilirubin_hold_uln:g} x ULN and AST and ALT "
                f"<= {p.transaminase_hold_uln:g} x ULN before each dose")
    # L-3 grades folded in: Grade >= 3 liver tests make the card critical with the severe line.
    folded = {Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT}
    l3_in = [f for f in graded_findings(ctx) if f.reading.analyte in folded]
    grade3 = [f for f in l3_in if f.grade >= 3]
    extra_notes = [SEVERE_LINE] if grade3 else []
    rules = ("L-2", "L-3") if l3_in else ("L-2",)
    summary = (f"{_hold_word(ctx)}: bilirubin {bili.text()} with {labs.name(worst.analyte)} "
               f"{worst.ratio:.1f}x ULN")
    # The hold runs from the later of: the criterion first met (unbroken since), the last dose.
    # Before the first dose nothing is "held": no discontinuation of a treatment not started.
    since = _met_since(ctx)
    last = ctx.course.previous_dose
    hold_start = None
    if since is not None and last is not None:
        hold_start = max(since, last.given_at)
    held_days = (ctx.dose_date - hold_start).days if hold_start else 0
    if hold_start is not None and held_days > p.hepatic_nonrecovery_days:
        return [make(
            ctx, DecisionCode.DISCONTINUE, rules, cites,
            f"Discontinue: bilirubin {bili.text()} and {labs.name(worst.analyte)} "
            f"{worst.ratio:.1f}x ULN not recovered after {held_days} days",
            what=f"Total bilirubin > {p.bilirubin_hold_uln:g} x ULN with AST/ALT > "
                 f"{p.transaminase_hold_uln:g} x ULN has persisted since {d(hold_start)} "
                 f"({held_days} days, more than {p.hepatic_nonrecovery_days}) without recovery. "
                 "The label requires permanent discontinuation if bilirubin or AST/ALT does not "
                 "recover.",
            evidence=ev + flagged,
            notes=[*notes, *extra_notes,
                   f"The {p.hepatic_nonrecovery_days}-day limit is the service's reading of "
                   "'does not recover' (configurable); the label gives no period."],
            critical=True,
            override_reasons=("gilbert-or-haemolysis", "clinical-judgement-documented"),
        )], folded
    return [make(
        ctx, DecisionCode.HOLD, rules, cites, summary,
        what=f"Total bilirubin > {p.bilirubin_hold_uln:g} x ULN with AST/ALT > "
             f"{p.transaminase_hold_uln:g} x ULN: **interrupt dosing** until recovery "
             "(applies before each dose).",
        evidence=ev + flagged,
        recovery=recovery,
        notes=[*notes, *extra_notes,
               "Permanently discontinue if bilirubin or AST/ALT does not recover.",
               *( [f"Criterion met since {d(hold_start)} "
                   f"({relative_day(hold_start.date(), ctx.now.date())})."] if hold_start else [])],
        critical=bool(grade3),
        override_reasons=("gilbert-or-haemolysis", "data-verified-elsewhere"),
    )], folded


# --- L-3 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradedFinding:
    reading: labs.LabReading
    grade: int
    baseline_grade: int
    baseline_known: bool
    notes: tuple[str, ...]
    flagged: tuple[Evidence, ...]


def graded_findings(ctx: RuleContext, skip: set[Analyte] = frozenset()) -> list[GradedFinding]:
    """Fresh gradable results at Grade >= 2 above their pre-treatment grade (on treatment only)."""
    if ctx.course.first_dose is None:
        return []
    waived = bool(waivers(ctx))
    out = []
    for a in ctcae.GRADABLE:
        if a in skip or (a == Analyte.BILIRUBIN and waived):
            continue
        base_m = labs.pretreatment(ctx, a)
        base_val = base_m.value if base_m is not None else None
        lk = labs.current(ctx, a, qtc_baseline=base_val if a == Analyte.QTC else None)
        r = lk.reading
        if r is None or r.grade is None or r.grade < 2:
            continue
        base_grade = 0
        if base_m is not None:
            g = labs.read(base_m, ctx.policy).grade
            base_grade = g if g is not None else 0
        if r.grade <= base_grade:
            continue
        out.append(GradedFinding(r, r.grade, base_grade, base_m is not None, lk.notes, lk.flagged))
    return out


def l3_graded_toxicity(ctx: RuleContext, skip: set[Analyte] = frozenset()) -> list[Decision]:
    found = graded_findings(ctx, skip)
    if not found:
        return []
    cites = cite(ctx, ("SmPC 4.2 Table 3",), ("USPI 2.3 Table 3",))
    found.sort(key=lambda f: (-f.grade, -(f.reading.ratio or 0)))
    top = found[0]
    severe_liver = [f for f in found if f.grade >= 3 and f.reading.analyte in ctcae.LIVER_TESTS]

    def short(f: GradedFinding) -> str:
        return f"{labs.name(f.reading.analyte)} {f.reading.text()} Grade {f.grade}"

    if len(found) == 1:
        summary = (f"{_hold_word(ctx)}: {short(top)} (pre-treatment Grade {top.baseline_grade}), "
                   "CTCAE v3.0")
    else:
        summary = f"{_hold_word(ctx)}: CTCAE Grade >= 2: " + ", ".join(short(f) for f in found)
    recovery = "; ".join(
        f"{labs.name(f.reading.analyte)} Grade <= {max(1, f.baseline_grade)} "
        f"({ctcae.grade_upper_bound(f.reading.analyte, max(1, f.baseline_grade))})"
        for f in found) + " before each dose"
    notes = [n for f in found for n in f.notes]
    notes += [f"No pre-treatment {labs.name(f.reading.analyte)} on record: pre-treatment grade "
              "taken as 0." for f in found if not f.baseline_known]
    if severe_liver:
        notes.append(SEVERE_LINE)
    ev = tuple(labs.evidence(f.reading, note=f"pre-treatment Grade {f.baseline_grade}")
               for f in found) + tuple(e for f in found for e in f.flagged)
    return [make(
        ctx, DecisionCode.HOLD, ("L-3",), cites, summary,
        what="A non-haematological result is at **CTCAE v3.0 Grade >= 2** and above its "
             "pre-treatment grade: interrupt treatment until recovery (SmPC 4.2 Table 3 applies to "
             "BESPONSA-related toxicity).",
        evidence=ev,
        recovery=recovery,
        notes=notes,
        choice="If the abnormality is not BESPONSA-related, the hold does not apply "
               "(override: not BESPONSA-related).",
        critical=bool(severe_liver),
        override_reasons=("not-besponsa-related", "data-verified-elsewhere"),
    )]
