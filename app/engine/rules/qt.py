"""QT interval prolongation: Q-1 (SmPC 4.4, 4.5; USPI 5.5, 7).

- Inotuzumab order: active QT-prolonging medication, QTc > 500 ms or >= 60 ms over baseline, or
  potassium/magnesium/calcium below the lower limit -> caution; ECG or electrolytes missing before
  cycle 1 -> obtain-data.
- Order of a QT-prolonging drug (other_orders) for a patient on inotuzumab ozogamicin -> caution.
The QT-prolonging drug list is data (value set "qt-prolonging", app terminology), not code.
"""

from __future__ import annotations

from datetime import timedelta

from app.engine import labs
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.facts import Analyte
from app.engine.planned import planned_orders
from app.engine.rules import hepatic
from app.engine.rules.decision_text import cite, d, make, ref_evidence
from app.engine.rules.eligibility import covers_dose

RULES: list[RuleSpec] = [
    RuleSpec("Q-1", "QT-prolonging drugs, QTc > 500 ms or +60 ms, electrolytes; ECG and "
             "electrolytes before cycle 1", ("caution", "obtain-data"),
             ("SmPC 4.4", "SmPC 4.5", "USPI 5.5", "USPI 7")),
]

QT = "qt-prolonging"
ELECTROLYTES = {"potassium": Analyte.POTASSIUM, "magnesium": Analyte.MAGNESIUM,
                "calcium": Analyte.CALCIUM}


def _cites(ctx: RuleContext) -> tuple[str, ...]:
    return cite(ctx, ("SmPC 4.4", "SmPC 4.5"), ("USPI 5.5", "USPI 7"))


def on_drug(ctx: RuleContext) -> bool:
    """A draft inotuzumab order, a planned one (active/draft MedicationRequest: about to start,
    issue #10), or a dose within `policy.on_treatment_days` (institutional)."""
    if ctx.facts.draft is not None or planned_orders(ctx.facts):
        return True
    window = timedelta(days=ctx.policy.on_treatment_days)
    return any(ctx.now - window <= g.given_at <= ctx.now for g in
               (x for x in ctx.facts.doses_given))


def check_qt(ctx: RuleContext) -> list[Decision]:
    if ctx.facts.draft is None:
        return _other_order(ctx)
    return [*_cautions(ctx), *_pretreatment_data(ctx)]


def _other_order(ctx: RuleContext) -> list[Decision]:
    orders = [o for o in ctx.facts.other_orders if QT in o.concepts]
    if not orders or not on_drug(ctx):
        return []
    last = ctx.facts.doses_given[-1] if ctx.facts.doses_given else None
    names = ", ".join(o.display or o.reference for o in orders)
    us = ctx.label is Label.US
    return [make(
        ctx, DecisionCode.CAUTION, ("Q-1",), _cites(ctx),
        f"QT risk: {names} prolongs QT; patient is on inotuzumab ozogamicin (last dose "
        f"{d(last.given_at)})" if last else
        f"QT risk: {names} prolongs QT; inotuzumab ozogamicin is planned (not yet given)",
        what="Inotuzumab ozogamicin prolongs the QT interval. Combining it with drugs known to "
             "prolong QT or induce torsades de pointes should be carefully considered"
             + (" (US label: discontinue or use an alternative that does not prolong QT/QTc)"
                if us else "") + ". If the combination cannot be avoided, obtain an ECG and "
             "electrolytes after starting the drug and monitor periodically.",
        evidence=tuple(ref_evidence(QT, o.reference, o.display or "QT-prolonging drug", None,
                                    note="ordered") for o in orders)
        + ((ref_evidence("dose-history", last.reference, "last inotuzumab dose", last.given_at),)
           if last else ()),
        choice="Whether to combine the drugs is the clinician's decision.",
        needed_data=("ecg", "electrolytes"),
    )]


def _low(ctx: RuleContext, key: str, a: Analyte) -> tuple[labs.LabReading, float] | None:
    r = labs.current(ctx, a).reading
    if r is None:
        return None
    lln = r.measurement.lln if r.measurement.lln is not None else ctx.policy.default_lln.get(key)
    if lln is not None and r.value < lln:
        return r, lln
    return None


def _cautions(ctx: RuleContext) -> list[Decision]:
    f, p = ctx.facts, ctx.policy
    reasons: list[str] = []
    ev: list[Evidence] = []
    notes: list[str] = []
    meds = [m for m in f.medications if QT in m.concepts and covers_dose(m, ctx)]
    orders = [o for o in f.other_orders if QT in o.concepts]
    if meds or orders:
        names = [m.display or m.reference for m in meds] + [o.display or o.reference for o in orders]
        reasons.append("QT-prolonging " + ", ".join(names))
        ev += [ref_evidence(QT, m.reference, m.display or "QT-prolonging drug", m.start,
                            note=m.status) for m in meds]
        ev += [ref_evidence(QT, o.reference, o.display or "QT-prolonging drug", None,
                            note="ordered") for o in orders]

    base = labs.pretreatment(ctx, Analyte.QTC)
    qtc = labs.latest_usable(ctx, Analyte.QTC, labs.lookup_time(ctx))
    held_by_l3 = any(g.reading.analyte == Analyte.QTC for g in hepatic.graded_findings(ctx))
    if qtc is not None and not held_by_l3:
        rise = qtc.value - base.value if base is not None and base is not qtc else None
        if qtc.value > p.qtc_caution_ms or (rise is not None and rise >= p.qtc_increase_caution_ms):
            txt = f"QTc {qtc.value:.0f} ms"
            if rise is not None:
                txt += f" (+{rise:.0f} ms over baseline)"
            reasons.append(txt)
            r = labs.read(qtc, p, base.value if base is not None else None)
            ev.append(labs.evidence(r))
            if base is not None and base is not qtc:
                ev.append(labs.evidence(labs.read(base, p), note="pre-treatment"))
            if qtc.method and "B" in qtc.method.upper() and "F" not in qtc.method.upper():
                notes.append("QTc by Bazett overestimates QTc at high heart rates; the label's "
                             "data use QTcF (Fridericia).")

    for key, a in ELECTROLYTES.items():
        low = _low(ctx, key, a)
        if low:
            r, lln = low
            reasons.append(f"low {labs.name(a).lower()} {r.text(False)}")
            ev.append(labs.evidence(r, note=f"below lower limit {lln:g}"))

    if not reasons:
        return []
    return [make(
        ctx, DecisionCode.CAUTION, ("Q-1",), _cites(ctx),
        "QT caution: " + "; ".join(reasons),
        what="Inotuzumab ozogamicin prolongs the QT interval. Use with caution with a history of or "
             "predisposition to QT prolongation, drugs known to prolong QT, or electrolyte "
             "disturbances; monitor ECG and electrolytes.",
        evidence=ev, notes=notes,
        choice="Whether to continue a QT-prolonging drug or correct electrolytes first is the "
               "clinician's decision.",
    )]


def _pretreatment_data(ctx: RuleContext) -> list[Decision]:
    """ECG and electrolytes before the start of treatment (SmPC 4.4, USPI 5.5)."""
    if ctx.course.first_dose is not None:
        return []
    p = ctx.policy
    since = ctx.dose_date - timedelta(days=p.pretreatment_ecg_window_days)
    until = labs.lookup_time(ctx)

    def has(a: Analyte) -> bool:
        return any(since <= m.effective <= until and not m.preliminary for m in ctx.facts.series(a))

    needed: list[str] = []
    missing: list[str] = []
    if not has(Analyte.QTC):
        needed.append("ecg")
        missing.append("ECG (QTc)")
    lacking = [k for k in p.required_electrolytes if k in ELECTROLYTES and not has(ELECTROLYTES[k])]
    if lacking:
        needed.append("electrolytes")
        missing += lacking
    if not needed:
        return []
    ev = []
    for a in (Analyte.QTC, *(ELECTROLYTES[k] for k in lacking)):
        if a == Analyte.QTC and "ecg" not in needed:
            continue
        last = labs.latest_usable(ctx, a, until)
        ev.append(labs.evidence(labs.read(last, p), note="older than the window")
                  if last is not None else Evidence(concept=a.value, note="none on record"))
    return [make(
        ctx, DecisionCode.OBTAIN_DATA, ("Q-1",), _cites(ctx),
        f"Obtain before cycle 1: {', '.join(missing)} (none in the last "
        f"{p.pretreatment_ecg_window_days} days)",
        what="An ECG and electrolytes should be obtained **before the start of treatment** and "
             "monitored periodically (QT prolongation).",
        notes=[f"Window of {p.pretreatment_ecg_window_days} days before the first dose is an "
               "institutional setting."],
        evidence=ev,
        needed_data=tuple(needed),
        override_reasons=("data-verified-elsewhere",),
    )]
