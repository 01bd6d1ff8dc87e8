"""Treatment course reconstruction (rules C-1..C-6; SmPC 4.2 Table 1 and Table 4).

Dates are compared as calendar dates (each datetime's own date), so "Day 8" is 7 calendar days
after Day 1 whatever the hour of administration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from app.engine.bsa import bsa, body_size_at
from app.engine.context import Course, CycleHistory, Interruption, Response
from app.engine.decisions import Evidence
from app.engine.facts import Analyte, ClinicalFacts, CycleDay, DoseGiven
from app.engine.policy import Policy
from app.engine.regimen import LEVEL_1_FACTOR, label_schedule, mg_per_m2_of_mg
from app.engine.text import measured, num, plural

T = TypeVar("T")

_NO_CR = {"PR", "SD", "PD", "relapse", "no-CR", "NR", "refractory"}


def days_between(a: datetime, b: datetime) -> int:
    """Calendar days from a to b (b later -> positive)."""
    return (b.date() - a.date()).days


def day_in_cycle(start: datetime, when: datetime) -> int:
    return days_between(start, when) + 1


def dose_number_for_day(day: int) -> int:
    """Which dose of a cycle an explicit day stands for (C-1): Days 1/8/15 with +/- 2 days,
    split at the midpoints (Day <= 4 -> 1; 5..11 -> 2; >= 12 -> 3)."""
    return 1 if day <= 4 else 2 if day <= 11 else 3


# --- C-1, C-2: placing doses into cycles -----------------------------------------------------


@dataclass
class _Placed:
    when: datetime
    cycle: int
    day: int
    dose_number: int
    start: datetime  # Day 1 of its cycle
    explicit: bool
    dose: DoseGiven | None  # None for the draft


def _place(
    prev: list[_Placed], when: datetime, explicit: CycleDay | None, policy: Policy
) -> _Placed:
    if explicit is not None:  # C-1: the stated cycle/day wins
        start = datetime.combine(when.date() - timedelta(days=explicit.day - 1), when.timetz())
        same = [p for p in prev if p.cycle == explicit.cycle]
        start = same[0].start if same and explicit.day > 1 else start
        return _Placed(when, explicit.cycle, explicit.day, dose_number_for_day(explicit.day),
                       start, True, None)
    if not prev:
        return _Placed(when, 1, 1, 1, when, False, None)
    last = prev[-1]
    in_cycle = [p for p in prev if p.cycle == last.cycle]
    day = day_in_cycle(last.start, when)
    # C-2: the cycle's 2nd or 3rd dose on Day 21 or earlier stays in the cycle
    if len(in_cycle) < 3 and day <= policy.last_dosing_day:
        return _Placed(when, last.cycle, day, len(in_cycle) + 1, last.start, False, None)
    return _Placed(when, last.cycle + 1, 1, 1, when, False, None)


def _usable(explicit: CycleDay | None) -> CycleDay | None:
    """An explicit cycle/day is used only if both are >= 1 (else inferred, C-2)."""
    if explicit is None or explicit.cycle < 1 or explicit.day < 1:
        return None
    return explicit


def place_doses(doses: tuple[DoseGiven, ...], policy: Policy) -> list[_Placed]:
    placed: list[_Placed] = []
    for d in doses:
        p = _place(placed, d.given_at, _usable(d.explicit), policy)
        p.dose = d
        placed.append(p)
    return placed


# --- C-3: reduction level ---------------------------------------------------------------------


def dose_mg_per_m2_given(d: DoseGiven, facts: ClinicalFacts, policy: Policy) -> float | None:
    """The mg/m2 a completed dose amounted to: as recorded, else mg / BSA at the time (to the
    precision the mg amount has: 1.48 mg on 1.8457 m2 is 0.8 mg/m2, SmPC 4.9)."""
    if d.dose_mg_per_m2 is not None:
        return d.dose_mg_per_m2
    if d.dose_mg is None:
        return None
    body = body_size_at(facts, d.given_at, policy.bsa_formula)
    if body.bsa_m2 is None:
        return None
    return mg_per_m2_of_mg(d.dose_mg, body.bsa_m2, policy.dose_rounding_mg)


def classify_dose(p: _Placed, mg_m2: float) -> int | None:
    """0 = a label (level 0) dose, 1 = a level-1 (x0.75) dose, None = neither (C-3).

    Candidates are the Table 1 amounts for the dose (cycle >= 2 Day 1: 0.5 with CR/CRi or 0.8
    without) at full and at 0.75 amount; the closest wins if within 15 % of it."""
    if p.dose_number > 3 or mg_m2 <= 0:
        return None
    cands = []
    for cr in (True, False):
        base = label_schedule(p.cycle, cr)[p.dose_number - 1]
        cands += [(abs(mg_m2 / base - 1), 0), (abs(mg_m2 / (base * LEVEL_1_FACTOR) - 1), 1)]
    err, level = min(cands)
    return level if err <= 0.15 else None


@dataclass(frozen=True)
class _Amount:
    """The mg/m2 of a past dose for C-3 and how it was known (None: it cannot be)."""

    mg_m2: float | None
    how: str  # "recorded" | "bsa" | "nearest-weight" | "ratio" | "no-amount" | "no-bsa"


def _nearest_body(facts: ClinicalFacts, when: datetime, policy: Policy):
    """The weight nearest to `when` within the weight age limit (none dated before it) and a
    height at or before that weight (else the nearest), with the BSA they give."""
    limit = timedelta(days=policy.weight_max_age_days)
    weights = [m for m in facts.series(Analyte.WEIGHT)
               if not m.preliminary and abs(m.effective - when) <= limit and m.value > 0]
    heights = [m for m in facts.series(Analyte.HEIGHT) if not m.preliminary and m.value > 0]
    if not weights or not heights:
        return None
    w = min(weights, key=lambda m: abs(m.effective - when))
    h = min(heights, key=lambda m: (m.effective > w.effective, abs(m.effective - w.effective)))
    return w, bsa(h.value, w.value, policy.bsa_formula)


def _amounts(placed: list[_Placed], facts: ClinicalFacts, policy: Policy,
             notes: list[str]) -> list[_Amount]:
    """mg/m2 of every past dose (C-3): as recorded; else mg / BSA at the time; else mg / BSA
    from the nearest weight (assumed unchanged); else the mg ratio to a dose of known mg/m2, or
    to Cycle 1 Day 1 taken as the label's 0.8 mg/m2 (Table 1: all patients); the assumption is
    stated in the notes. Never a guessed level 0 when none of these is possible."""
    out: list[_Amount] = []
    nearest: dict[str, list[str]] = {}
    for p in placed:
        d = p.dose
        assert d is not None
        if d.dose_mg_per_m2 is not None:
            out.append(_Amount(d.dose_mg_per_m2, "recorded"))
        elif d.dose_mg is None:
            out.append(_Amount(None, "no-amount"))
        elif (v := dose_mg_per_m2_given(d, facts, policy)) is not None:
            out.append(_Amount(v, "bsa"))
        elif (nb := _nearest_body(facts, d.given_at, policy)) is not None:
            w, b = nb
            out.append(_Amount(mg_per_m2_of_mg(d.dose_mg, b, policy.dose_rounding_mg),
                               "nearest-weight"))
            key = (f"the weight of {w.effective.date().isoformat()} ({w.value:g} kg, "
                   f"{w.reference})")
            nearest.setdefault(key, []).append(d.reference)
        else:
            out.append(_Amount(None, "no-bsa"))
    for key, refs in nearest.items():
        notes.append(f"No weight dated before {', '.join(refs)}: BSA taken from {key}, "
                     "assuming the weight was unchanged at the time of those doses (C-3).")
    # Ratio to an anchor: the first dose whose mg/m2 is known with its mg, else Cycle 1 Day 1.
    anchor = next(((p, a.mg_m2) for p, a in zip(placed, out) if a.mg_m2
                   and a.mg_m2 > 0 and p.dose is not None and p.dose.dose_mg), None)
    assumed = ""
    if anchor is None:
        c1d1 = next((p for p in placed if p.cycle == 1 and p.dose_number == 1
                     and p.dose is not None and p.dose.dose_mg), None)
        if c1d1 is not None:
            anchor = (c1d1, label_schedule(1, False)[0])
            assumed = ", taken as the label's 0.8 mg/m2 (Table 1)"
    ratio_refs: list[str] = []
    if anchor is not None:
        ap, am2 = anchor
        assert ap.dose is not None and ap.dose.dose_mg
        for i, (p, a) in enumerate(zip(placed, out)):
            if a.how == "no-bsa" and p.dose is not None and p.dose.dose_mg:
                v = mg_per_m2_of_mg(p.dose.dose_mg, ap.dose.dose_mg / am2,
                                    policy.dose_rounding_mg)
                out[i] = _Amount(v, "ratio")
                ratio_refs.append(f"{p.dose.reference} {num(p.dose.dose_mg)} mg = {num(v)} mg/m2")
        if ratio_refs:
            notes.append(
                f"No weight near {plural(len(ratio_refs), 'dose')}: mg/m2 from the mg ratio to "
                f"{ap.dose.reference} ({num(ap.dose.dose_mg)} mg, Cycle {ap.cycle} Day {ap.day}"
                f"{assumed}), assuming an unchanged BSA: {'; '.join(ratio_refs)} (C-3).")
    return out


def _reduction_level(
    placed: list[_Placed], facts: ClinicalFacts, policy: Policy, current_cycle: int,
    notes: list[str],
) -> tuple[int, tuple[str, ...], tuple[tuple[str, float | None], ...]]:
    """Highest level the given doses show; never lowered once raised (SmPC 4.2). Also the
    reasons the level may be higher than shown (a cycle after the first, not followed by a
    cycle whose level is known, none of whose doses has a known level) and the mg/m2 of every
    past dose as read (reference, mg/m2 or None)."""
    level = 0
    classes: dict[int, list[int | None]] = {}
    missing: dict[int, list[str]] = {}
    no_amount: list[str] = []
    amounts = _amounts(placed, facts, policy, notes)
    for p, a in zip(placed, amounts):
        assert p.dose is not None
        cls = classify_dose(p, a.mg_m2) if a.mg_m2 is not None else None
        classes.setdefault(p.cycle, []).append(cls)
        if a.how == "no-amount":
            no_amount.append(p.dose.reference)
        if cls is None:
            why = {"no-amount": "no dose amount recorded",
                   "no-bsa": "dose in mg without height and weight to convert it"}.get(
                a.how, f"{num(a.mg_m2)} mg/m2 matches neither the label nor the -25 % amount")
            missing.setdefault(p.cycle, []).append(f"{p.dose.reference} ({why})")
        if cls == 1 and level < 1:
            level = 1
            notes.append(
                f"Reduction level 1 (total dose -25 %) inferred from {p.dose.reference}: "
                f"{num(a.mg_m2)} mg/m2 on Cycle {p.cycle} Day {p.day}."
            )
    if no_amount:
        notes.append(f"No dose amount recorded on {', '.join(no_amount)}: not used for the "
                     "reduction level.")
    # Level 2: a completed cycle (before the current one) of exactly 2 doses at level-1 amounts.
    # Two full-amount doses is an omitted dose (T-2), not level 2.
    for cycle, cls in sorted(classes.items()):
        if cycle < current_cycle and len(cls) == 2 and 1 in cls and 0 not in cls:
            if level < 2:
                notes.append(f"Reduction level 2 (2 doses per cycle) inferred from Cycle {cycle}.")
            level = 2
    known = [c for c, cls in classes.items() if any(x is not None for x in cls)]
    unknown: list[str] = []
    if level < 2:
        for cycle, cls in sorted(classes.items()):
            if cycle >= 2 and all(x is None for x in cls) and not any(k > cycle for k in known):
                unknown.append(f"Cycle {cycle}: " + "; ".join(missing.get(cycle, [])))
    if unknown:
        notes.append(f"Reduction level at least {level}, possibly higher: the level of "
                     + " / ".join(unknown) + " cannot be known (C-3).")
    read = tuple((p.dose.reference, a.mg_m2) for p, a in zip(placed, amounts) if p.dose)
    return level, tuple(unknown), read


# --- C-4: interruptions -----------------------------------------------------------------------


def planned_next_cycle_start(
    cycle: int, start: datetime, policy: Policy, extended: bool
) -> datetime:
    """Day 22 after cycle 1 (Day 29 if extended for CR/CRi), Day 29 after later cycles."""
    if cycle == 1 and not extended:
        return start + timedelta(days=policy.cycle1_length_days)
    length = policy.cycle1_max_length_days if cycle == 1 else policy.later_cycle_length_days
    return start + timedelta(days=length)


def _interruption(
    placed: list[_Placed], p: _Placed, policy: Policy, cr_at: Callable[[datetime], bool]
) -> Interruption | None:
    same = [q for q in placed if q.cycle == p.cycle and q.when < p.when]
    if p.dose_number > 1 and same:
        planned = same[-1].when + timedelta(days=policy.dose_interval_days)
        late = days_between(planned, p.when)
        within = True
    elif p.dose_number == 1 and p.cycle > 1:
        prev = [q for q in placed if q.cycle == p.cycle - 1]
        if not prev:
            return None
        planned = planned_next_cycle_start(
            p.cycle - 1, prev[0].start, policy, extended=(p.cycle - 1 == 1 and cr_at(p.when))
        )
        late = days_between(planned, p.when)
        within = False
    else:
        return None
    # A dose within the label's +/- 2-day window (Table 1 note a) is on schedule.
    if late <= policy.schedule_window_days:
        return None
    return Interruption(planned=planned, actual=p.when, days=late, within_cycle=within,
                        inferred=True, cycle=p.cycle)


def _after_omission(
    p: _Placed, it: Interruption, policy: Policy, cr_at: Callable[[datetime], bool],
    notes: list[str],
) -> tuple[_Placed, int | None]:
    """T-2 (SmPC 4.2 Table 4): a dose of the cycle >= 7 days late is omitted and the next
    scheduled dose is given. The ordered dose is read as that next dose, once, for every rule:
    a late Day 8 ordered in the Day 15 window is the Day 15 dose; a late Day 15 ordered in the
    window of the next cycle's Day 1 is that Day 1. Otherwise the order is the omitted dose.
    Returns the placement and the dose number omitted (None: nothing omitted)."""
    if not (it.within_cycle and it.days >= policy.interruption_omit_days
            and p.dose_number in (2, 3)):
        return p, None
    window = timedelta(days=policy.schedule_window_days)
    late = f"{it.days} days late, >= {policy.interruption_omit_days}: SmPC 4.2 Table 4, T-2"
    if p.dose_number == 2:
        day = day_in_cycle(p.start, p.when)
        notes.append(f"The Day 8 dose is omitted ({late}): this order, on Day {day}, is the "
                     "cycle's Day 15 dose.")
        return replace(p, day=day, dose_number=3), 2
    nxt = planned_next_cycle_start(p.cycle, p.start, policy,
                                   extended=(p.cycle == 1 and cr_at(p.when)))
    if p.when.date() >= (nxt - window).date():
        notes.append(f"The Day 15 dose of Cycle {p.cycle} is omitted ({late}): this order is "
                     f"Cycle {p.cycle + 1} Day 1 (due {nxt.date().isoformat()}).")
        return _Placed(p.when, p.cycle + 1, 1, 1, p.when, False, None), 3
    notes.append(f"The Day 15 dose of Cycle {p.cycle} is omitted ({late}); the next dose is "
                 f"Cycle {p.cycle + 1} Day 1 on {nxt.date().isoformat()}.")
    return p, 3


# --- C-5: response ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseEvent:
    when: datetime | None
    status: str  # CR | CRi | no-CR
    source: str
    evidence: tuple[Evidence, ...] = ()
    mrd_negative: bool | None = None


def response_events(facts: ClinicalFacts, policy: Policy, after: datetime | None,
                    before: datetime) -> list[ResponseEvent]:
    """Dated response findings after the first dose (a remission before the first dose is the
    one the patient relapsed from) and at or before `before`, oldest first."""
    out: list[ResponseEvent] = []

    def in_window(t: datetime | None) -> bool:
        if t is None:
            return True
        return (after is None or t >= after) and t <= before

    mrd = _mrd_at(facts, policy, before)
    for r in facts.responses:  # (a)
        if not in_window(r.effective):
            continue
        status = {"CR": "CR", "CRi": "CRi", "remission": "CR/CRi"}.get(r.response)
        if status is None and r.response in _NO_CR:
            status = "no-CR"
        if status is None:
            continue
        ev = Evidence(concept="disease-response", reference=r.reference, value=r.response,
                      date=r.effective)
        out.append(ResponseEvent(r.effective, status, f"{r.reference} ({r.response})", (ev,),
                                 r.mrd_negative if r.mrd_negative is not None else mrd))
    for c in facts.conditions:  # (b)
        if c.concept != "b-all" or c.clinical_status not in ("remission", "relapse", "recurrence"):
            continue
        when = c.recorded or c.onset
        if not in_window(when):
            continue
        status = "CR/CRi" if c.clinical_status == "remission" else "no-CR"
        ev = Evidence(concept="disease-response", reference=c.reference,
                      value=f"Condition {c.clinical_status}", date=when)
        out.append(ResponseEvent(when, status, f"{c.reference} (clinicalStatus "
                                 f"{c.clinical_status})", (ev,), mrd))
    for m in facts.series(Analyte.MARROW_BLASTS):  # (c)
        if not in_window(m.effective) or m.preliminary:
            continue
        if before - m.effective > timedelta(days=policy.response_max_age_days):
            continue
        out.append(_marrow_event(facts, policy, m, mrd))
    undated = [e for e in out if e.when is None]
    dated = sorted((e for e in out if e.when is not None), key=lambda e: e.when)
    return undated + dated  # undated first: any dated finding is more specific


def _marrow_event(facts: ClinicalFacts, policy: Policy, m, mrd: bool | None) -> ResponseEvent:
    ev = [measured(m)]
    if m.value >= policy.cr_marrow_blasts_below_pct:
        return ResponseEvent(m.effective, "no-CR", f"{m.reference} (marrow blasts {m.value:g} %)",
                             tuple(ev), mrd)
    pb = facts.latest(Analyte.PERIPHERAL_BLASTS, m.effective + timedelta(days=3))
    if pb is None or abs((pb.effective - m.effective).days) > 3:
        # no peripheral blast count near the marrow: CR/CRi cannot be established (c)
        return ResponseEvent(m.effective, "unknown", f"{m.reference} (no peripheral blast "
                             f"count within 3 days)", tuple(ev), mrd)
    ev.append(measured(pb))
    if pb.value > 0:
        return ResponseEvent(m.effective, "no-CR", f"{m.reference} with peripheral blasts "
                             f"{pb.value:g}", tuple(ev), mrd)
    anc = facts.latest(Analyte.ANC, m.effective + timedelta(days=3))
    plt = facts.latest(Analyte.PLATELETS, m.effective + timedelta(days=3))
    full = (anc is not None and plt is not None and anc.value >= policy.cr_anc_min
            and plt.value >= policy.cr_platelets_min)
    for c in (anc, plt):
        if c is not None:
            ev.append(measured(c))
    status = "CR" if full else "CRi"
    return ResponseEvent(m.effective, status, f"{m.reference} (marrow blasts {m.value:g} %, "
                         f"no peripheral blasts: {status})", tuple(ev), mrd)


def _mrd_at(facts: ClinicalFacts, policy: Policy, before: datetime) -> bool | None:
    m = facts.latest(Analyte.MRD, before)
    if m is None:
        return None
    if m.comparator in ("<", "<=") and m.value <= policy.mrd_negative_below:
        return True
    return m.value < policy.mrd_negative_below


def response_at(facts: ClinicalFacts, policy: Policy, first_dose: datetime | None,
                when: datetime) -> tuple[Response, str | None]:
    """Response in force at `when` (C-5): the latest known finding after the first dose."""
    return _shared(facts, ("response_at", first_dose, when), policy,
                   lambda: _response_at(facts, policy, first_dose, when))


def _shared(facts: ClinicalFacts, key: tuple[Any, ...], policy: Policy, compute: Callable[[], T]) -> T:
    """compute(), kept in the facts' shared memo under `key` and the policy (by identity)."""
    memo, key = facts.shared_memo, (*key, id(policy))
    try:
        policy_of, value = memo[key]
        if policy_of is policy:
            return value
    except KeyError:
        pass
    except TypeError:  # an unhashable key member: not kept
        return compute()
    value = compute()
    memo[key] = (policy, value)
    return value


def _response_at(facts: ClinicalFacts, policy: Policy, first_dose: datetime | None,
                 when: datetime) -> tuple[Response, str | None]:
    if first_dose is None:
        return Response(status="unknown"), None
    events = [e for e in response_events(facts, policy, first_dose, when) if e.status != "unknown"]
    if not events:
        return Response(status="unknown", mrd_negative=_mrd_at(facts, policy, when)), None
    e = events[-1]
    status = "CR" if e.status == "CR/CRi" else e.status
    return Response(status=status, mrd_negative=e.mrd_negative, evidence=e.evidence), e.source


def ever_cr_or_cri(facts: ClinicalFacts, policy: Policy, first_dose: datetime | None,
                   before: datetime) -> bool | None:
    """True if CR/CRi was recorded after the first dose and before `before`; False if assessed
    without CR/CRi; None if never assessed (D-8)."""
    if first_dose is None:
        return None
    events = [e for e in response_events(facts, policy, first_dose, before)
              if e.status != "unknown"]
    if not events:
        return None
    return any(e.status in ("CR", "CRi", "CR/CRi") for e in events)


# --- C-6: HSCT --------------------------------------------------------------------------------


def hsct_status(facts: ClinicalFacts, when: datetime) -> tuple[bool, bool]:
    """(planned, prior): planned = Procedure in preparation or an active ServiceRequest/CarePlan;
    prior = a completed HSCT Procedure (C-6)."""
    planned = prior = False
    for p in facts.procedures:
        if p.concept != "hsct":
            continue
        if p.resource_type == "Procedure":
            if p.status == "preparation":
                planned = True
            elif p.status == "completed" and (p.performed is None or p.performed <= when):
                prior = True
        elif p.resource_type in ("ServiceRequest", "CarePlan") and p.status == "active":
            planned = True
    return planned, prior


# --- the course ------------------------------------------------------------------------------


def reconstruct_course(facts: ClinicalFacts, now: datetime, policy: Policy) -> Course:
    """The course at the draft's dose date (or `now` without a draft), rules C-1..C-6. Worked out
    once per draft dose date and stated cycle/day (all it reads of the draft), `now` and policy for
    the facts and their with_draft copies (patient-view reads it for the chart, the next dose at
    its expected amount and the card's history)."""
    draft = facts.draft
    key = ("course", now) if draft is None else ("course", now, draft.dose_date, draft.explicit)
    return _shared(facts, key, policy, lambda: _reconstruct_course(facts, now, policy))


def _reconstruct_course(facts: ClinicalFacts, now: datetime, policy: Policy) -> Course:
    draft = facts.draft
    when = draft.dose_date if draft else now
    notes: list[str] = []
    # Completed doses up to the dose date (same calendar day included: D-6 then objects).
    given = tuple(d for d in facts.doses_given if d.given_at.date() <= when.date())
    later = len(facts.doses_given) - len(given)
    if later:
        notes.append(f"{plural(later, 'administration')} dated after the dose date not used.")
    placed = place_doses(given, policy)
    first = placed[0].when if placed else None

    def cr_at(t: datetime) -> bool:
        return response_at(facts, policy, first, t)[0].cr_or_cri

    interruptions = []
    for i, p in enumerate(placed):
        it = _interruption(placed[:i], p, policy, cr_at)
        if it:
            interruptions.append(it)

    cycle = day = dose_number = None
    cycle_start = None
    explicit = False
    omitted = None
    if draft is not None:
        p = _place(placed, when, _usable(draft.explicit), policy)
        explicit = p.explicit
        stated = (p.cycle, p.day)
        it = _interruption(placed, p, policy, cr_at)
        omission: list[str] = []
        if it:
            interruptions.append(it)
            p, omitted = _after_omission(p, it, policy, cr_at, omission)
        if explicit:
            inferred = _place(placed, when, None, policy)
            if omitted is not None:
                notes.append(f"The order states Cycle {stated[0]} Day {stated[1]} (C-1).")
            elif (inferred.cycle, inferred.day) != stated:
                notes.append(f"The order states Cycle {p.cycle} Day {p.day}; the administrations "
                             f"suggest Cycle {inferred.cycle} Day {inferred.day}. The stated "
                             "cycle/day is used (C-1).")
        notes += omission
        cycle, day, dose_number, cycle_start = p.cycle, p.day, p.dose_number, p.start
        how = "stated on the order" if explicit and omitted is None else (
            f"inferred from {plural(len(placed), 'administration')}" if placed else
            "first dose (no prior administration)")
        notes.insert(0, f"Cycle {cycle} Day {day} (dose {dose_number} of the cycle), {how}.")
    current = cycle if cycle is not None else (placed[-1].cycle if placed else 1)
    level, level_unknown, amounts = _reduction_level(placed, facts, policy, current, notes)
    for it in interruptions:
        kind = "within Cycle" if it.within_cycle else "start of Cycle"
        notes.append(f"Interruption of {plural(it.days, 'day')} inferred ({kind} {it.cycle}: planned "
                     f"{it.planned.date().isoformat()}, dosed {it.actual.date().isoformat()}).")

    response, source = response_at(facts, policy, first, when)
    if source:
        notes.append(f"Response {response.status} from {source}.")
    planned, prior = hsct_status(facts, when)

    cycles: list[CycleHistory] = []
    for p in placed:
        if cycles and cycles[-1].number == p.cycle:
            last = cycles[-1]
            cycles[-1] = CycleHistory(last.number, last.start, last.doses + (p.dose,))
        else:
            cycles.append(CycleHistory(p.cycle, p.start, (p.dose,)))
    return Course(
        cycles=tuple(cycles),
        cycle=cycle,
        day=day,
        dose_number=dose_number,
        cycle_start=cycle_start,
        previous_dose=placed[-1].dose if placed else None,
        reduction_level=level,
        reduction_level_unknown=level_unknown,
        mg_per_m2_given=amounts,
        interruptions=tuple(interruptions),
        response=response,
        hsct_planned=planned,
        prior_hsct=prior,
        explicit=explicit,
        omitted_dose=omitted,
        notes=tuple(notes),
    )


def given_mg_per_m2(course: Course, d: DoseGiven, facts: ClinicalFacts,
                    policy: Policy) -> float | None:
    """A past dose's mg/m2 as the course read it (C-3: recorded, BSA at the time, nearest weight
    or mg ratio), so every rule agrees with the reduction level; else as recorded / mg / BSA."""
    for ref, v in course.mg_per_m2_given:
        if ref == d.reference:
            return v
    return dose_mg_per_m2_given(d, facts, policy)


def placed_cycle_of(course: Course, dose: DoseGiven) -> int | None:
    for c in course.cycles:
        if any(d is dose or d.reference == dose.reference for d in c.doses):
            return c.number
    return None


def as_date(x: datetime | date) -> date:
    return x.date() if isinstance(x, datetime) else x
