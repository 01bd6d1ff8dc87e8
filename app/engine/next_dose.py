"""patient-view: the next due dose of the course, checked as an order for it would be (issue #10).

`next_due_dose(facts, now, policy)` works out when the next dose is due from the administrations
(SmPC 4.2 Table 1: Days 1, 8 and 15; the next cycle on Day 22 after Cycle 1, Day 29 after later
cycles; 2 doses per cycle at reduction level 2, Table 4) or, before the first dose, from a planned
(active/draft) inotuzumab ozogamicin MedicationRequest. Cycle and day come from the same course
reconstruction as an order's (app.engine.course), never from a second one.

`evaluate_next_dose(...)` then evaluates that dose with `app.engine.evaluate` exactly as a draft
order for the expected amount: holds, omissions, reductions, discontinuation, missing data and
warnings come from the same rules, reworded for the chart ("Next dose, Cycle 2 Day 1 due
2026-12-09: hold, ..."). The `proceed` decision becomes one `info` plan card (where the patient is,
the dose, what to measure before it), which a site may switch off.

Pure: facts + now in, decisions out; no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from app.engine.completeness import history_read
from app.engine.context import RuleContext
from app.engine.course import place_doses, planned_next_cycle_start, reconstruct_course
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.evaluate import ENGINE_ERROR, evaluate, proceed_decision
from app.engine.facts import Analyte, ClinicalFacts, DraftDose
from app.engine.planned import planned_orders
from app.engine.policy import Policy
from app.engine.regimen import doses_per_cycle, expected_mg_per_m2
from app.engine.rules.decision_text import finding
from app.engine.rules.regimen import dose_plan, recommendation, round_mg
from app.engine.text import evidence_table, mg, mg_m2, num, relative_day, summary

NEXT_DOSE_REFERENCE = "next-dose"  # DraftDose.reference when no planned order stands for it
NEXT_DOSE = "next_dose"  # Decision.extras key: the NextDose the decision is about

# What the label asks to measure before each dose: complete blood counts prior to each dose
# (SmPC 4.4, USPI 5.3); liver tests (ALT, AST, total bilirubin, alkaline phosphatase) prior to
# and following each dose (SmPC 4.4, USPI 5.1). SmPC 4.2 Tables 2 and 3 act on them.
BEFORE_EACH_DOSE: tuple[tuple[str, tuple[Analyte, ...]], ...] = (
    ("full blood count with differential", (Analyte.ANC, Analyte.PLATELETS)),
    ("liver tests", (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT, Analyte.ALP)),
)
MONITORING_SOURCE = {Label.EU: "SmPC 4.4", Label.US: "USPI 5.1, 5.3"}


@dataclass(frozen=True)
class NextDose:
    """The next dose of the course. cycle/day/dose_number come from the course reconstruction."""

    due: date  # planned date (Table 1), or the planned order's start
    dose_date: datetime  # when it is evaluated: the due date, or now when it is overdue
    cycle: int
    day: int
    dose_number: int
    reduction_level: int
    basis: str  # how the due date was worked out, for the card
    planned_order: str | None = None  # "MedicationRequest/<id>" of the planned first dose
    mg_per_m2: float | None = None  # expected (None: response or BSA unknown, or not given)
    mg: float | None = None
    bsa_m2: float | None = None
    course_mg_per_m2: float | None = None  # at the course's level before T-3 (what is checked)
    course_mg: float | None = None

    @property
    def where(self) -> str:
        return f"Cycle {self.cycle} Day {self.day}"

    def due_text(self, now: datetime) -> str:
        """'due today', 'due 2026-12-09 (in 7 days)', 'due 2026-11-25 (7 days ago)'."""
        return "due " + relative_day(self.due, now.date(), with_date=True)

    def due_clause(self, now: datetime) -> str:
        """'due today', 'due 2026-12-09, in 7 days' (inside parentheses)."""
        return self.due_text(now).replace(" (", ", ").rstrip(")")

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"cycle": self.cycle, "day": self.day,
                                  "doseNumber": self.dose_number, "due": self.due.isoformat(),
                                  "reductionLevel": self.reduction_level}
        for key, value in (("mgPerM2", self.mg_per_m2), ("mg", self.mg), ("bsaM2", self.bsa_m2),
                           ("plannedOrder", self.planned_order)):
            if value is not None:
                out[key] = value
        return out


def _planned_first_dose(facts: ClinicalFacts, now: datetime) -> tuple[date, str, str] | None:
    """(due, reference, basis) of a planned inotuzumab order when no dose was given yet."""
    planned = planned_orders(facts)
    if not planned:
        return None
    first = min(planned, key=lambda m: (m.start or now))
    start = (first.start or now).date()
    due = max(start, now.date())
    return due, first.reference, f"first dose, planned by {first.reference}"


def _due_date(facts: ClinicalFacts, now: datetime, policy: Policy) -> tuple[date, str]:
    """(due, basis) from the administrations up to now (Table 1, Table 4)."""
    given = tuple(d for d in facts.doses_given if d.given_at.date() <= now.date())
    placed = place_doses(given, policy)
    last = placed[-1]
    course = reconstruct_course(facts.with_draft(None), now, policy)
    in_cycle = [p for p in placed if p.cycle == last.cycle]
    per_cycle = doses_per_cycle(course.reduction_level)
    if len(in_cycle) < per_cycle and last.dose_number < 3:
        due = last.when.date() + timedelta(days=policy.dose_interval_days)
        if (due - last.start.date()).days + 1 <= policy.last_dosing_day:
            return (due, f"{policy.dose_interval_days} days after Cycle {last.cycle} Day "
                         f"{last.day} on {last.when.date().isoformat()}")
    start = planned_next_cycle_start(last.cycle, last.start, policy, extended=False).date()
    length = (start - last.start.date()).days
    basis = (f"Cycle {last.cycle} began on {last.start.date().isoformat()} and lasts {length} days"
             + (" (up to 28 with CR/CRi, Table 1 note b)" if last.cycle == 1 else ""))
    earliest = last.when.date() + timedelta(days=policy.min_days_between_doses)
    if earliest > start:  # a late last dose: at least 6 days between doses (Table 1 note a)
        return earliest, (f"{basis}; at least {policy.min_days_between_doses} days after the last "
                          f"dose on {last.when.date().isoformat()}")
    return start, basis


def next_due_dose(facts: ClinicalFacts, now: datetime, policy: Policy) -> NextDose | None:
    """The next due dose, or None for a patient never given the drug and with no planned order,
    or whose administrations could not be retrieved (where the patient is cannot be known: the
    evaluation without a draft says so)."""
    if not history_read(facts):  # administrations not read whole (#8): the evaluation says so
        return None
    given = [d for d in facts.doses_given if d.given_at.date() <= now.date()]
    if given and (now - given[-1].given_at).days > policy.next_dose_window_days:
        return None  # treatment over (institutional window): nothing is due
    planned: str | None = None
    if given:
        due, basis = _due_date(facts, now, policy)
    else:
        first = _planned_first_dose(facts, now)
        if first is None:
            return None
        due, planned, basis = first
    when = now if due <= now.date() else datetime.combine(due, now.timetz())
    draft = DraftDose(reference=planned or NEXT_DOSE_REFERENCE, dose_date=when)
    course = reconstruct_course(facts.with_draft(draft), now, policy)
    if course.cycle is None or course.day is None or course.dose_number is None:
        return None  # the course could not place it (unknown history): no next dose to state
    nd = NextDose(due=due, dose_date=when, cycle=course.cycle, day=course.day,
                  dose_number=course.dose_number, reduction_level=course.reduction_level,
                  basis=basis, planned_order=planned)
    ctx = RuleContext(facts=facts.with_draft(draft), now=now, policy=policy, label=Label.EU,
                      course=course)
    plan = dose_plan(ctx)
    rec = recommendation(ctx, plan)
    if plan is not None:
        # The amount at the course's own reduction level (Table 1 x Table 4 so far): a further
        # reduction a rule asks for (T-3) is then that rule's reduce-dose card, as for an order.
        course_m2 = None
        if plan.expected_mg_per_m2 is not None:
            course_m2 = expected_mg_per_m2(plan.cycle, plan.dose_number, bool(plan.cr_or_cri),
                                           course.reduction_level)
        course_mg = (round_mg(course_m2 * plan.bsa, policy.dose_rounding_mg)
                     if course_m2 is not None and plan.bsa else None)
        nd = replace(nd, reduction_level=plan.level, mg_per_m2=plan.expected_mg_per_m2,
                     mg=rec.mg if rec else None, bsa_m2=rec.bsa_m2 if rec else None,
                     course_mg_per_m2=course_m2, course_mg=course_mg)
    return nd


def next_dose_facts(facts: ClinicalFacts, nd: NextDose) -> ClinicalFacts:
    """The facts with a draft order for the next dose at its expected amount (none if unknown)."""
    draft = DraftDose(reference=nd.planned_order or NEXT_DOSE_REFERENCE, dose_date=nd.dose_date,
                      dose_mg=nd.course_mg if nd.course_mg_per_m2 is not None else None,
                      dose_mg_per_m2=nd.course_mg_per_m2)
    return facts.with_draft(draft, other_orders=())


def evaluate_next_dose(
    facts: ClinicalFacts, now: datetime, policy: Policy | None = None, label: Label = Label.EU,
    *, plan_card: bool = True,
) -> list[Decision]:
    """patient-view decisions: the next due dose evaluated as an order for it, for the chart.

    No next dose (never given, nothing planned; or the course cannot be read): the patient-level
    evaluation without a draft, as before."""
    policy = policy or Policy()
    if facts.draft is not None:
        return evaluate(facts, now, policy, label)
    try:
        nd = next_due_dose(facts, now, policy)
    except Exception:  # the evaluation below reports an unreadable course as a caution
        nd = None
    if nd is None:
        return evaluate(facts, now, policy, label)
    dose_facts = next_dose_facts(facts, nd)
    decisions = evaluate(dose_facts, now, policy, label)
    if nd.due > now.date():
        try:
            decisions = _labs_not_yet_due(decisions, dose_facts, nd, now, policy, label)
        except Exception:  # noqa: BLE001 - keep the rules' own decisions (obtain-data)
            pass
    out: list[Decision] = []
    for d in decisions:
        if d.code is DecisionCode.PROCEED and not plan_card:
            continue
        try:
            out.append(plan_decision(d, nd, facts, now, policy) if d.code is DecisionCode.PROCEED
                       else for_chart(d, nd, now))
        except Exception:  # noqa: BLE001 - a wording bug must never hide a decision
            out.append(replace(d, extras={**d.extras, NEXT_DOSE: nd}))
    return out


# --- labs not drawn yet for a dose still to come ---------------------------------------------

_NOT_YET = ("stale", "missing")  # app.engine.labs.LabLookup.status: no result since the last dose
TO_MEASURE = "to_measure"  # Decision.extras key on the plan card: what is not measured yet


def _labs_not_yet_due(decisions: list[Decision], dose_facts: ClinicalFacts, nd: NextDose,
                      now: datetime, policy: Policy, label: Label) -> list[Decision]:
    """A dose due in the future whose only objection is E-5 "no liver tests/CBC since the last
    dose" is not held up: those labs are what must be measured before it, so the plan card says so
    (with the ServiceRequest suggestions). Unusable, preliminary or unavailable results stay
    obtain-data, as does everything for a dose due today."""
    fresh = [d for d in decisions if d.code is DecisionCode.OBTAIN_DATA and d.rules[:1] == ("E-5",)
             and _only_not_yet_measured(d)]
    rest = [d for d in decisions if d not in fresh]
    if not fresh or not all(d.code is DecisionCode.CAUTION for d in rest) or any(
            d.extras.get(ENGINE_ERROR) for d in rest) or dose_facts.not_read():
        return decisions  # anything else objects, or data not read whole (#8): as the rules say
    course = reconstruct_course(dose_facts, now, policy)
    ctx = RuleContext(facts=dose_facts, now=now, policy=policy, label=label, course=course)
    proceed = proceed_decision(ctx)
    if proceed is None:
        return decisions
    needed = tuple(dict.fromkeys(n for d in fresh for n in d.needed_data))
    names = tuple(dict.fromkeys(finding(c) for d in fresh for _, c in _statuses(d)))
    proceed = replace(proceed, needed_data=needed, extras={**proceed.extras, TO_MEASURE: names})
    return rest + [proceed]


_STATUSES = ("stale", "missing", "unusable", "preliminary", "transfused", "unavailable")


def _statuses(d: Decision) -> list[tuple[str, str]]:
    """(status, analyte) of the evidence rows E-5 marks ("stale: no ALT result since ...")."""
    out = []
    for e in d.evidence:
        status = (e.note or "").split(":", 1)[0].strip()
        if status in _STATUSES:
            out.append((status, e.concept))
    return out


def _only_not_yet_measured(d: Decision) -> bool:
    statuses = _statuses(d)
    return bool(statuses) and all(s in _NOT_YET for s, _ in statuses)


# --- wording for the chart --------------------------------------------------------------------


def _verb_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def for_chart(d: Decision, nd: NextDose, now: datetime) -> Decision:
    """'Next dose, Cycle 2 Day 1 due 2026-12-09: hold, ANC 0.6 x10^9/L ...' and a detail whose
    first line says what to do about the next dose (there is no order to change)."""
    verb, sep, why = d.summary.partition(": ")
    short_verb = bool(sep) and verb.count(" ") <= 2
    text = f"{verb}, {why}" if short_verb else d.summary
    lead = (f"**{DO[d.code]} the next dose ({nd.where}, {nd.due_clause(now)})**: "
            f"{why if short_verb else d.summary}")
    checked = (f" at {mg_m2(nd.course_mg_per_m2)}" if nd.course_mg_per_m2 is not None else "")
    context = (f"Where the patient is: the next dose of inotuzumab ozogamicin is {nd.where} "
               f"({nd.basis}). It was checked with the same rules as an order for it{checked}.")
    return replace(
        d, summary=_chart_summary(nd, now, _verb_first(text)),
        detail=f"{lead}\n\n{context}\n\n{_chart_detail(d, nd, now)}",
        evidence=_chart_evidence(d.evidence, nd),
        extras={**d.extras, NEXT_DOSE: nd},
    )


def _chart_summary(nd: NextDose, now: datetime, text: str) -> str:
    """'Next dose, Cycle 2 Day 1 due today: <what>' under 140 characters: the short head
    ('Next dose, C2 D1 due today:') before the rule's own words are cut."""
    due = nd.due_text(now)
    full = f"Next dose, {nd.where} {due}: {text}"
    return full if len(full) <= 139 else summary(f"Next dose, C{nd.cycle} D{nd.day} {due}: {text}")


DO: dict[DecisionCode, str] = {
    DecisionCode.DISCONTINUE: "Do not give",
    DecisionCode.CONTRAINDICATED: "Do not give",
    DecisionCode.HOLD: "Hold",
    DecisionCode.OMIT_DOSE: "Omit",
    DecisionCode.REDUCE_DOSE: "Reduce",
    DecisionCode.CORRECT_DOSE: "Check the dose of",
    DecisionCode.CONSIDER_DISCONTINUE: "Review",
    DecisionCode.OBTAIN_DATA: "Obtain data before",
    DecisionCode.CAUTION: "Take care with",
    DecisionCode.PROCEED: "Give",
}


def _chart_detail(d: Decision, nd: NextDose, now: datetime) -> str:
    """The rule's detail with its evidence table re-rendered with the next-dose row (the rules
    rendered the synthetic order as 'ordered dose')."""
    old = evidence_table(d.evidence, now.date())
    if not old or old not in d.detail:
        return d.detail
    return d.detail.replace(old, evidence_table(_chart_evidence(d.evidence, nd), now.date()))


def _dose_text(nd: NextDose) -> str:
    if nd.mg_per_m2 is None:
        return "the dose in mg/m2 cannot be worked out yet"
    if nd.mg is None:
        return f"{mg_m2(nd.mg_per_m2)} (no mg dose computed: see below)"
    return f"{mg_m2(nd.mg_per_m2)} x BSA {num(nd.bsa_m2, 2)} m2 = {mg(nd.mg)}"


def _chart_evidence(evidence: tuple[Evidence, ...], nd: NextDose) -> tuple[Evidence, ...]:
    """The synthetic order's 'ordered-dose' row becomes the next dose (due date, expected dose)."""
    out = []
    for e in evidence:
        if e.concept == "ordered-dose":
            m2 = nd.course_mg_per_m2
            e = Evidence(concept="next-dose", reference=nd.planned_order,
                         value=mg_m2(m2) if m2 is not None else None, date=nd.due,
                         note=f"{nd.where}, due" + (" (planned order)" if nd.planned_order else ""))
        out.append(e)
    return tuple(out)


def _latest_results(facts: ClinicalFacts, now: datetime) -> list[str]:
    out = []
    for _, analytes in BEFORE_EACH_DOSE:
        for a in analytes:
            m = facts.latest(a, now)
            if m is not None:
                from app.engine.labs import name, unit_text

                out.append(f"{name(a.value)} {num(m.value)} {unit_text(m.unit)}".rstrip()
                           + f" ({relative_day(m.effective.date(), now.date())})")
    return out


def _course_so_far(facts: ClinicalFacts, now: datetime, policy: Policy) -> str:
    """'Cycle 1: Day 1 2026-11-25 (1.45 mg), Day 8 2026-12-02 (0.91 mg)' from the course."""
    course = reconstruct_course(facts.with_draft(None), now, policy)
    cycles = []
    for c in course.cycles:
        doses = []
        for g in c.doses:
            amount = f" ({mg(g.dose_mg)})" if g.dose_mg is not None else ""
            doses.append(f"Day {(g.given_at.date() - c.start.date()).days + 1} "
                         f"{g.given_at.date().isoformat()}{amount}")
        cycles.append(f"Cycle {c.number}: " + ", ".join(doses))
    return "; ".join(cycles)


def plan_decision(proceed: Decision, nd: NextDose, facts: ClinicalFacts,
                  now: datetime, policy: Policy) -> Decision:
    """The one info card when nothing objects: where the patient is, the dose, what to measure."""
    measure = " and ".join(n for n, _ in BEFORE_EACH_DOSE)
    not_yet = proceed.extras.get(TO_MEASURE)
    verb = "measure" if not_yet else "check"
    text = (f"Next dose, {nd.where} {nd.due_text(now)}: {_dose_text(nd)}; {verb} {measure} "
            "before it")
    if len(text) > 139:
        text = (f"Next dose, {nd.where} {nd.due_text(now)}: {_dose_text(nd)}; {verb} CBC, LFTs "
                "first")
    latest = _latest_results(facts, now)
    so_far = _course_so_far(facts, now, policy)
    where = (f"Given so far: {so_far}. The next is dose {nd.dose_number} of Cycle {nd.cycle}"
             if so_far else "No dose given yet: the next is the first dose of Cycle 1")
    lead = (f"**Give the next dose as planned if today's checks allow: {nd.where}, "
            f"{nd.due_clause(now)}, {_dose_text(nd)}.**")
    body = [
        lead,
        f"{where} ({nd.basis}). No rule objects to it on the data on record.",
        f"**Before the dose, measure:** {measure} ({MONITORING_SOURCE[proceed.label]}: before "
        "each dose; liver tests also after it)." + (
            f" Not measured since the last dose yet: {', '.join(not_yet)}." if not_yet else "")
        + (f" Latest: {'; '.join(latest)}." if latest else ""),
    ]
    evidence = _chart_evidence(proceed.evidence, nd)
    parts = proceed.detail.split("\n\n")
    body += [parts[0], evidence_table(evidence, now.date())]  # expected dose (Table 1), then the evidence
    body += [p for p in parts if p.startswith(("How the course was read", "_Source"))]
    return replace(proceed, summary=summary(text), detail="\n\n".join(b for b in body if b),
                   evidence=evidence, extras={**proceed.extras, NEXT_DOSE: nd})
