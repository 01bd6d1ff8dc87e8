"""Haematological toxicity at the start of a cycle: H-1..H-5 (SmPC 4.2 Table 2; USPI 2.3 Table 2).

- H-1: only Day 1 of a cycle (cycle >= 2) is held for counts; Days 8 and 15 never are.
- H-2: pre-treatment ANC >= 1 x10^9/L and ANC now < 1 -> hold until ANC >= 1.
- H-3: pre-treatment platelets >= 50 x10^9/L and platelets now < 50 -> hold until >= 50.
- H-4: pre-treatment ANC < 1 and/or platelets < 50: ANC or platelets below the prior cycle's
  baseline -> hold until both recover to that baseline, or ANC >= 1 and platelets >= 50, or the
  decrease is judged due to the disease (override).
- H-5 (US label only): low ANC or platelets persisting > 28 days and suspected related -> discontinue.
Platelet counts are transfusion-independent (Table 2 note a; see app.engine.labs).
"""

from __future__ import annotations

from datetime import datetime

from app.engine import labs
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.facts import Analyte, Measurement
from app.engine.rules.decision_text import cite, d, make, qty

RULES: list[RuleSpec] = [
    RuleSpec("H-1", "Counts gate Day 1 of a cycle only; Days 8/15 never held for counts",
             (), ("SmPC 4.2", "USPI 2.3")),
    RuleSpec("H-2", "Pre-treatment ANC >= 1: ANC < 1 x10^9/L on Day 1", ("hold", "obtain-data"),
             ("SmPC 4.2 Table 2", "USPI 2.3 Table 2")),
    RuleSpec("H-3", "Pre-treatment platelets >= 50: platelets < 50 x10^9/L on Day 1",
             ("hold", "obtain-data"),
             ("SmPC 4.2 Table 2", "USPI 2.3 Table 2")),
    RuleSpec("H-4", "Pre-treatment ANC < 1 and/or platelets < 50: decrease vs prior cycle",
             ("hold", "obtain-data"), ("SmPC 4.2 Table 2", "USPI 2.3 Table 2")),
    RuleSpec("H-5", "Low ANC/platelets persisting > 28 days, suspected related", ("discontinue",),
             ("USPI 2.3 Table 2",), labels=("US",)),
]

ANC, PLT = Analyte.ANC, Analyte.PLATELETS


def applies(ctx: RuleContext) -> bool:
    """H-1: only an order for Day 1 of cycle 2 or later is gated by counts."""
    c = ctx.course
    return ctx.facts.draft is not None and c.cycle is not None and c.cycle >= 2 \
        and c.dose_number == 1


def _low_since(ctx: RuleContext, analyte: Analyte, threshold: float) -> datetime | None:
    """Start of the current unbroken run of results below threshold (None if the latest is not)."""
    start = None
    for m in reversed(labs.usable_series(ctx, analyte)):
        if not m.value < threshold:
            break
        start = m.effective
    return start


def _ev(m: Measurement | None, ctx: RuleContext, note: str) -> tuple[Evidence, ...]:
    return (labs.evidence(labs.read(m, ctx.policy), note=note),) if m is not None else ()


def check_haematological(ctx: RuleContext) -> list[Decision]:
    if not applies(ctx):
        return []  # H-1
    p = ctx.policy
    cyc = ctx.course.cycle
    look = {ANC: labs.current(ctx, ANC), PLT: labs.current(ctx, PLT)}
    now = {a: lk.reading.value if lk.reading else None for a, lk in look.items()}
    base = {a: labs.pretreatment(ctx, a) for a in (ANC, PLT)}
    thr = {ANC: p.anc_threshold, PLT: p.platelet_threshold}
    unit = {ANC: "10*9/L", PLT: "10*9/L"}
    notes = [n for lk in look.values() for n in lk.notes]
    flagged = tuple(e for lk in look.values() for e in lk.flagged)
    current_ev = tuple(labs.evidence(lk.reading, note="Day 1") for lk in look.values() if lk.reading)
    base_ev = tuple(e for a in (ANC, PLT) for e in _ev(base[a], ctx, "pre-treatment"))
    cites = cite(ctx, ("SmPC 4.2 Table 2",), ("USPI 2.3 Table 2",))

    fired: list[str] = []
    reasons: list[str] = []
    recovery: list[str] = []
    persist: list[tuple[Analyte, datetime, int]] = []

    # H-2 / H-3: normal pre-treatment level, now below the threshold
    for a, rid in ((ANC, "H-2"), (PLT, "H-3")):
        if base[a] is None or base[a].value < thr[a] or now[a] is None or not now[a] < thr[a]:
            continue
        fired.append(rid)
        reasons.append(f"{labs.name(a)} {qty(now[a], unit[a])} (< {thr[a]:g})")
        recovery.append(f"{labs.name(a)} >= {thr[a]:g} x10^9/L")
        if ctx.label is Label.US:
            since = _low_since(ctx, a, thr[a])
            if since is not None and (ctx.dose_date - since).days > p.haem_persistence_days:
                persist.append((a, since, (ctx.dose_date - since).days))

    # H-4: low pre-treatment level
    low_base = [a for a in (ANC, PLT) if base[a] is not None and base[a].value < thr[a]]
    prior = {a: labs.prior_cycle_baseline(ctx, a) for a in (ANC, PLT)}
    prior_ev: tuple[Evidence, ...] = ()
    out: list[Decision] = []
    if low_base:
        prior_ev = tuple(e for a in (ANC, PLT)
                         for e in _ev(prior[a], ctx, f"baseline for cycle {cyc - 1}"))
        decreased = [a for a in (ANC, PLT)
                     if now[a] is not None and prior[a] is not None and now[a] < prior[a].value]
        recovered = all(now[a] is not None and now[a] >= thr[a] for a in (ANC, PLT))
        missing_prior = [a for a in (ANC, PLT) if now[a] is not None and prior[a] is None]
        if decreased and not recovered:
            fired.append("H-4")
            reasons += [f"{labs.name(a)} {qty(now[a], unit[a])} below cycle {cyc - 1} baseline "
                        f"{qty(prior[a].value, unit[a])}" for a in decreased]
            recovery.append(
                f"either ANC and platelets back to at least the cycle {cyc - 1} baseline (ANC "
                f"{qty(prior[ANC].value, 'x10^9/L') if prior[ANC] else '?'}, platelets "
                f"{qty(prior[PLT].value, 'x10^9/L') if prior[PLT] else '?'}), or ANC >= "
                f"{thr[ANC]:g} and platelets >= {thr[PLT]:g} x10^9/L, or stable/improved disease "
                "on the latest marrow with the decrease judged due to the disease")
        elif missing_prior and not recovered and not decreased:
            out.append(make(
                ctx, DecisionCode.OBTAIN_DATA, ("H-4",), cites,
                f"Cannot apply Table 2: no {', '.join(labs.name(a) for a in missing_prior)} "
                f"before cycle {cyc - 1} Day 1 to compare with",
                what="The pre-treatment count was low, so the label compares today's count with "
                     f"the baseline before cycle {cyc - 1}; that result is not on record.",
                evidence=current_ev + base_ev + flagged,
                notes=notes,
                override_reasons=("data-verified-elsewhere",),
            ))

    # Unknown pre-treatment level with a low count now: the branch cannot be chosen.
    unknown = [a for a in (ANC, PLT) if base[a] is None and now[a] is not None and now[a] < thr[a]]
    if unknown and not fired:
        out.append(make(
            ctx, DecisionCode.OBTAIN_DATA, ("H-2", "H-3", "H-4"), cites,
            "Cannot apply Table 2: " + ", ".join(
                f"{labs.name(a)} {qty(now[a], unit[a])}" for a in unknown)
            + " on Day 1 but no pre-treatment count on record",
            what="SmPC Table 2 depends on the count **prior to BESPONSA treatment** (before cycle 1 "
                 "Day 1), which is not on record. Find it before deciding whether to hold.",
            evidence=current_ev + flagged,
            notes=notes,
            override_reasons=("data-verified-elsewhere",),
        ))

    if persist:
        a, since, days = max(persist, key=lambda t: t[2])
        out.append(make(
            ctx, DecisionCode.DISCONTINUE, ("H-5", *fired), ("USPI 2.3 Table 2",),
            f"Discontinue if related: low {labs.name(a)} {qty(now[a], unit[a])} persisting "
            f"{days} days (> {p.haem_persistence_days})",
            what=f"{labs.name(a)} has stayed below {thr[a]:g} x10^9/L since {d(since)} ({days} "
                 f"days). The US label says to **discontinue** BESPONSA if low counts persist for "
                 f"more than {p.haem_persistence_days} days and are suspected to be related.",
            evidence=current_ev + base_ev + flagged,
            notes=notes,
            choice="Whether the low count is related to BESPONSA is the clinician's judgement; if "
                   "not suspected related, keep holding the cycle until " + "; ".join(recovery) + ".",
            critical=True,
            override_reasons=("due-to-underlying-disease", "not-besponsa-related"),
        ))
        return out

    if fired:
        out.append(make(
            ctx, DecisionCode.HOLD, tuple(fired), cites,
            f"Hold cycle {cyc}: " + "; ".join(reasons) + " on Day 1",
            what=f"Counts on Day 1 of cycle {cyc} call for **interrupting the next cycle** "
                 "(SmPC 4.2 Table 2). Days 8 and 15 are never held for counts.",
            evidence=current_ev + base_ev + prior_ev + flagged,
            recovery="; ".join(recovery),
            notes=notes,
            choice=("If the decrease is due to the underlying disease (stable or improved disease "
                    "on the latest marrow), the hold does not apply.") if "H-4" in fired else None,
            override_reasons=("due-to-underlying-disease", "data-verified-elsewhere")
            if "H-4" in fired else ("data-verified-elsewhere",),
        ))
    return out
