"""The treatment timeline the SMART app draws, built from the engine's own course and decisions.

`build_timeline(facts, decisions, now, policy)` turns the facts (from `app.facts_builder`), the
course `app.engine.course.reconstruct_course` makes of them (rules C-1..C-6) and the decisions
`app.engine.evaluate` returned into plain JSON. Nothing is re-derived in the browser: the app only
draws this document. Pure: no I/O, no clock (`now` is the request time).

Thresholds are the label's: ANC 1 and platelets 50 x10^9/L (SmPC 4.2 Table 2), total bilirubin
1.5 x ULN and AST/ALT 2.5 x ULN (SmPC 4.2 Table 3), read from the policy in force.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from app.cards import DECISION_DISPLAY, decision_fields
from app.engine import labs
from app.engine.context import Course, Response
from app.engine.course import (
    classify_dose,
    day_in_cycle,
    dose_mg_per_m2_given,
    planned_next_cycle_start,
    reconstruct_course,
)
from app.engine.decisions import Decision, DecisionCode
from app.engine.facts import Analyte, ClinicalFacts, DraftDose
from app.engine.next_dose import NEXT_DOSE
from app.engine.policy import Policy

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DOSES_PER_CYCLE = 3  # Days 1, 8 and 15 (SmPC 4.2 Table 1)

COUNT_ANALYTES = (Analyte.ANC, Analyte.PLATELETS)
LIVER_ANALYTES = (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT)
ANALYTE_LABELS = {
    Analyte.ANC: "ANC",
    Analyte.PLATELETS: "Platelets",
    Analyte.BILIRUBIN: "Total bilirubin",
    Analyte.AST: "AST",
    Analyte.ALT: "ALT",
}


_EMPTY_COURSE = Course(cycles=(), cycle=None, day=None, dose_number=None, cycle_start=None,
                       previous_dose=None, reduction_level=0, interruptions=(),
                       response=Response(status="unknown"), hsct_planned=False, prior_hsct=False)


@dataclass(frozen=True)
class _DoseSlot:
    """What `classify_dose` reads of a placed dose: its cycle and which dose of the cycle it is."""

    cycle: int
    dose_number: int


def _iso(x: datetime | date | None) -> str | None:
    return x.isoformat() if x is not None else None


def _day(x: datetime | date) -> str:
    return (x.date() if isinstance(x, datetime) else x).isoformat()


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


# --------------------------------------------------------------------------- the course


def _doses(course: Course, facts: ClinicalFacts, policy: Policy) -> list[dict[str, Any]]:
    out = []
    for cycle in course.cycles:
        for n, dose in enumerate(cycle.doses, start=1):
            mg_m2 = dose_mg_per_m2_given(dose, facts, policy)
            level = classify_dose(_DoseSlot(cycle.number, n), mg_m2) if mg_m2 is not None else None
            out.append({
                "reference": dose.reference,
                "date": _day(dose.given_at),
                "cycle": cycle.number,
                "day": day_in_cycle(cycle.start, dose.given_at),
                "doseNumber": n,
                "mg": _round(dose.dose_mg, 2),
                "mgPerM2": _round(mg_m2, 3),
                "mgPerM2Recorded": dose.dose_mg_per_m2 is not None,
                # C-3: 0 = label amount, 1 = level 1 (-25 %), None = neither / amount unknown
                "reductionLevel": level,
                "explicitCycleDay": dose.explicit is not None,
            })
    return out


def _cycles(course: Course, policy: Policy) -> list[dict[str, Any]]:
    out = []
    for i, cycle in enumerate(course.cycles):
        nxt = course.cycles[i + 1].start if i + 1 < len(course.cycles) else None
        planned = planned_next_cycle_start(cycle.number, cycle.start, policy, extended=False)
        out.append({
            "number": cycle.number,
            "start": _day(cycle.start),
            "end": _day(nxt or planned),  # the next cycle's Day 1, else the planned one
            "doses": len(cycle.doses),
        })
    return out


def _spans(course: Course, decisions: list[Decision], now: datetime,
           policy: Policy) -> list[dict[str, Any]]:
    """Interruptions (C-4), doses not given in a closed cycle, and a hold in force today."""
    spans: list[dict[str, Any]] = []
    for it in course.interruptions:
        where = "within" if it.within_cycle else "start of"
        spans.append({
            "kind": "interruption",
            "start": _day(it.planned),
            "end": _day(it.actual),
            "cycle": it.cycle,
            "days": it.days,
            "inferred": it.inferred,
            "label": (f"Dose {it.days} days late ({where} Cycle {it.cycle}"
                      + (", inferred)" if it.inferred else ")")),
        })
    for i, cycle in enumerate(course.cycles[:-1] if course.cycles else ()):
        # A cycle followed by another one is closed: its missing Day 8 / Day 15 doses were not given.
        last = cycle.doses[-1].given_at
        for n in range(len(cycle.doses) + 1, DOSES_PER_CYCLE + 1):
            planned = last + timedelta(days=policy.dose_interval_days * (n - len(cycle.doses)))
            if planned >= course.cycles[i + 1].start:
                break
            w = timedelta(days=policy.schedule_window_days)
            spans.append({
                "kind": "omitted",
                "start": _day(planned - w),
                "end": _day(planned + w),
                "cycle": cycle.number,
                "label": f"Cycle {cycle.number} dose {n} not given (omitted or not recorded)",
            })
    for d in decisions:
        if d.code is DecisionCode.HOLD:
            end = d.hold_until
            spans.append({
                "kind": "hold",
                "start": _day(now),
                "end": _day(end) if end else None,  # None: until the recovery criteria are met
                "rules": list(d.rules),
                "label": "Hold" + (f" until {end.isoformat()}" if end else "")
                         + (f": re-dose when {d.recovery_criteria}" if d.recovery_criteria else ""),
            })
            break  # one hold span: the most severe hold (decisions are sorted)
    return spans


# --------------------------------------------------------------------------- labs


def _labs(facts: ClinicalFacts, policy: Policy, since: datetime | None) -> list[dict[str, Any]]:
    out = []
    for m in facts.measurements:
        if m.analyte not in COUNT_ANALYTES + LIVER_ANALYTES:
            continue
        if since is not None and m.effective < since:
            continue
        row: dict[str, Any] = {
            "reference": m.reference,
            "analyte": m.analyte.value,
            "name": ANALYTE_LABELS[m.analyte],
            "date": _iso(m.effective),
            "value": _round(m.value, 3),
            "unit": labs.unit_text(m.unit),
            "preliminary": m.preliminary,
        }
        if m.analyte in LIVER_ANALYTES:
            reading = labs.read(m, policy)
            if reading.ratio is None:  # no ULN: cannot be drawn as a multiple of it; say so
                row["panel"] = "liver"
                row["ratio"] = None
                row["note"] = "no ULN (reported or configured): not drawn"
            else:
                row.update(panel="liver", ratio=_round(reading.ratio, 2), uln=reading.uln,
                           ulnSource=reading.uln_source)
        else:
            row["panel"] = m.analyte.value
        out.append(row)
    return out


def _thresholds(policy: Policy) -> list[dict[str, Any]]:
    return [
        {"panel": "anc", "value": policy.anc_threshold, "unit": "x10^9/L",
         "label": f"ANC {policy.anc_threshold:g} x10^9/L", "source": "SmPC 4.2 Table 2"},
        {"panel": "platelets", "value": policy.platelet_threshold, "unit": "x10^9/L",
         "label": f"Platelets {policy.platelet_threshold:g} x10^9/L", "source": "SmPC 4.2 Table 2"},
        {"panel": "liver", "value": policy.bilirubin_hold_uln, "unit": "x ULN",
         "label": f"Bilirubin {policy.bilirubin_hold_uln:g} x ULN", "source": "SmPC 4.2 Table 3"},
        {"panel": "liver", "value": policy.transaminase_hold_uln, "unit": "x ULN",
         "label": f"AST/ALT {policy.transaminase_hold_uln:g} x ULN", "source": "SmPC 4.2 Table 3"},
    ]


# --------------------------------------------------------------------------- decisions


def _dose_json(decision: Decision) -> dict[str, Any] | None:
    if decision.dose is None:
        return None
    d = asdict(decision.dose)
    d.pop("preparation", None)  # pharmacist Markdown: on the card, not on the chart
    return {
        "cycle": d["cycle"],
        "day": d["day"],
        "mg": _round(d["mg"], 2),
        "mgPerM2": _round(d["mg_per_m2"], 3),
        "bsaM2": _round(d["bsa_m2"], 2),
        "reductionLevel": d["reduction_level"],
        "vials": d["vials"],
    }


def _decision_json(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": d.code.value,
        "display": DECISION_DISPLAY[d.code],
        "indicator": d.indicator,
        "summary": " ".join(d.summary.split()),
        "rules": list(d.rules),
        "citations": list(d.citations),
    }
    dose = _dose_json(d)
    if dose:
        out["dose"] = dose
    out.update(decision_fields(d))
    return out


def _evaluated_next_dose(decisions: list[Decision]) -> Any | None:
    """The next due dose patient-view evaluated (Decision.extras[NEXT_DOSE]), if any."""
    for d in decisions:
        nd = d.extras.get(NEXT_DOSE)
        if nd is not None and hasattr(nd, "as_json"):
            return nd
    return None


def _next_dose(facts: ClinicalFacts, decisions: list[Decision]) -> dict[str, Any] | None:
    """The next dose: the one patient-view evaluated (with the decisions about it), else the dose
    of the first decision that carries one (Decision.dose)."""
    nd = _evaluated_next_dose(decisions)
    if nd is not None:
        about = [d for d in decisions if d.extras.get(NEXT_DOSE) is nd] or decisions[:1]
        j = nd.as_json()
        dose = next((x for x in (_dose_json(d) for d in about) if x), None)  # e.g. the reduced dose
        out = {
            "cycle": j["cycle"], "day": j["day"], "date": j.get("due"),
            "mg": (dose or {}).get("mg", _round(j.get("mg"), 2)),
            "mgPerM2": (dose or {}).get("mgPerM2", _round(j.get("mgPerM2"), 3)),
            "bsaM2": (dose or {}).get("bsaM2", _round(j.get("bsaM2"), 2)),
            "reductionLevel": (dose or {}).get("reductionLevel", j.get("reductionLevel")),
            "decision": about[0].code.value,  # the most severe (decisions are sorted)
            "rules": list(about[0].rules),
            "decisions": [{"code": d.code.value, "rules": list(d.rules)} for d in about],
        }
        return out
    for d in decisions:
        dose = _dose_json(d)
        if dose is None:
            continue
        due = facts.draft.dose_date if facts.draft is not None else d.extras.get("due_date")
        out = {**dose, "decision": d.code.value, "rules": list(d.rules)}
        if isinstance(due, (date, datetime)):
            out["date"] = _day(due)
        return out
    return None


# --------------------------------------------------------------------------- the document


def build_timeline(facts: ClinicalFacts, decisions: list[Decision], now: datetime,
                   policy: Policy, label: str) -> dict[str, Any]:
    nd = _evaluated_next_dose(decisions)
    if nd is not None and facts.draft is None:
        # The course as the engine read it for the next dose: an interruption that dose makes
        # (C-4, a dose overdue today) is part of the timeline.
        facts = facts.with_draft(DraftDose(reference="next-dose", dose_date=nd.dose_date))
    problems = [{"concept": p.concept, "reason": p.reason, **({"reference": p.reference} if p.reference else {})}
                for p in facts.problems]
    try:
        course = reconstruct_course(facts, now, policy)
    except Exception as exc:  # noqa: BLE001 - the decisions (which say so too) still go out
        log.warning("course not reconstructed for the timeline: %s", type(exc).__name__)
        course = _EMPTY_COURSE
        problems.append({"concept": "medication-history",
                         "reason": "the treatment course could not be reconstructed from the doses given"})
    first = course.cycles[0].start if course.cycles else None
    # Labs from 28 days before the first dose (the pre-treatment baseline) onwards.
    since = first - timedelta(days=28) if first else None
    today = decisions[0] if decisions else None
    return {
        "schemaVersion": SCHEMA_VERSION,
        "patient": {"id": facts.patient.id},
        "now": now.isoformat(),
        "today": _day(now),
        "label": label,
        "course": {
            "cycles": _cycles(course, policy),
            "reductionLevel": course.reduction_level,
            "response": course.response.status,
            "hsctPlanned": course.hsct_planned,
            "priorHsct": course.prior_hsct,
            "notes": list(course.notes),
        },
        "doses": _doses(course, facts, policy),
        "spans": _spans(course, decisions, now, policy),
        "labs": _labs(facts, policy, since),
        "thresholds": _thresholds(policy),
        "decisions": [_decision_json(d) for d in decisions],
        "todaysDecision": _decision_json(today) if today else None,
        "nextDose": _next_dose(facts, decisions),
        "problems": problems,
    }
