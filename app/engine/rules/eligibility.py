"""Eligibility and pre-dose checks: E-1..E-5.

- E-1: EU contraindications (SmPC 4.3): hypersensitivity to inotuzumab ozogamicin; prior confirmed
  severe or ongoing VOD/SOS; serious ongoing hepatic disease (cirrhosis, nodular regenerative
  hyperplasia, active hepatitis) -> contraindicated (critical). The US label has no
  contraindications (USPI 4): the same findings -> caution (USPI 5.1, 5.4).
- E-2: age < 18 -> caution (SmPC 4.2); CD22 > 0 % not documented before cycle 1 -> obtain-data;
  a documented 0 % -> hold (never beside `proceed`, issue #8).
- E-3: before the first dose, peripheral blasts > 10,000/mm3 -> caution: cytoreduce first.
- E-4: premedication (corticosteroid, antipyretic, antihistamine) not ordered/active -> caution;
  high tumour burden -> uric-acid lowering and hydration.
- E-5: liver tests (ALT, AST, total bilirubin, ALP) and CBC not fresh before a dose -> obtain-data.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from app.engine import labs
from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.facts import Analyte, MedicationFact
from app.engine.rules import haematological
from app.engine.rules.decision_text import cite, d, make, qty, ref_evidence

RULES: list[RuleSpec] = [
    RuleSpec("E-1", "Contraindications: hypersensitivity, prior severe/ongoing VOD, serious "
             "ongoing hepatic disease", ("contraindicated", "caution"),
             ("SmPC 4.3", "SmPC 4.4", "USPI 4", "USPI 5.1", "USPI 5.4")),
    RuleSpec("E-2", "Age < 18; CD22 positivity > 0 % documented before cycle 1 (0 % -> hold)",
             ("caution", "obtain-data", "hold"), ("SmPC 4.2", "USPI 8.4", "USPI 12.1", "USPI 14")),
    RuleSpec("E-3", "Peripheral blasts > 10,000/mm3 before the first dose: cytoreduce",
             ("caution",), ("SmPC 4.2", "USPI 2.2")),
    RuleSpec("E-4", "Premedication (corticosteroid, antipyretic, antihistamine; uric-acid "
             "lowering if high tumour burden)", ("caution",), ("SmPC 4.2", "SmPC 4.4", "USPI 2.2")),
    RuleSpec("E-5", "Liver tests and CBC fresh before each dose", ("obtain-data",),
             ("SmPC 4.4", "USPI 5.1", "USPI 5.3")),
]

SERIOUS_HEPATIC = {"cirrhosis": "cirrhosis",
                   "nodular-regenerative-hyperplasia": "nodular regenerative hyperplasia",
                   "active-hepatitis": "active hepatitis"}
HEPATIC_PANEL = (Analyte.ALT, Analyte.AST, Analyte.BILIRUBIN, Analyte.ALP)
CBC = (Analyte.ANC, Analyte.PLATELETS)
CLASS_TEXT = {"corticosteroid": "corticosteroid", "antipyretic": "antipyretic",
              "antihistamine": "antihistamine", "uric-acid-lowering": "uric-acid lowering agent"}
INACTIVE_STATUSES = {"stopped", "cancelled", "entered-in-error", "not-done", "revoked", "completed-error",
             "unknown"}


def age_years(born: date | None, when: datetime) -> int | None:
    if born is None:
        return None
    w = when.date()
    return w.year - born.year - ((w.month, w.day) < (born.month, born.day))


def before_first_dose(ctx: RuleContext) -> bool:
    return ctx.facts.draft is not None and ctx.course.first_dose is None


def check_eligibility(ctx: RuleContext) -> list[Decision]:
    if ctx.facts.draft is None:
        return []
    return [*e1_contraindications(ctx), *e2_age_and_cd22(ctx), *e3_blasts(ctx),
            *e4_premedication(ctx), *e5_fresh_labs(ctx)]


# --- E-1 ------------------------------------------------------------------------------------------


def e1_contraindications(ctx: RuleContext) -> list[Decision]:
    f = ctx.facts
    first = ctx.course.first_dose
    found: list[tuple[str, object, str]] = []  # (text, evidence, strength: "ci" | "possible")
    for r in f.reactions:
        if r.kind == "hypersensitivity":
            found.append(("hypersensitivity to inotuzumab ozogamicin",
                          ref_evidence("hypersensitivity", r.reference, r.display or
                                       "hypersensitivity", r.recorded,
                                       note=f"severity {r.severity or 'unknown'}"), "ci"))
    for c in f.conditions:
        when = c.onset or c.recorded
        ev = ref_evidence(c.concept, c.reference, c.display or c.concept, when,
                          note=f"{c.clinical_status or 'status unknown'}, "
                               f"{c.verification_status or 'verification unknown'}, "
                               f"severity {c.severity or 'unknown'}")
        if c.concept == "vod-sos":
            if first is not None and (when is None or when >= first.given_at):
                continue  # during treatment: L-1
            if c.verification_status in ("provisional", "differential", "unconfirmed"):
                found.append((f"possible prior VOD/SOS ({c.verification_status})", ev, "possible"))
            elif c.active:
                found.append(("ongoing VOD/SOS", ev, "ci"))
            elif c.severity == "severe":
                found.append(("prior confirmed severe VOD/SOS", ev, "ci"))
            else:
                found.append((f"prior VOD/SOS (severity {c.severity or 'unknown'})", ev,
                              "possible"))
        elif c.concept in SERIOUS_HEPATIC and c.active:
            found.append((f"ongoing {SERIOUS_HEPATIC[c.concept]}", ev, "ci"))
    if not found:
        return []
    ci = [x for x in found if x[2] == "ci"]
    possible = [x for x in found if x[2] == "possible"]
    ev = tuple(x[1] for x in found)
    names = ", ".join(x[0] for x in (ci or possible))
    if ctx.label is Label.US:
        return [make(
            ctx, DecisionCode.CAUTION, ("E-1",), ("USPI 4", "USPI 5.1", "USPI 5.4"),
            f"Caution: {names}: higher risk of VOD/worsening liver disease or reactions",
            what="The US label lists **no contraindications** (USPI 4). Patients with prior VOD or "
                 "serious ongoing hepatic disease are at increased risk of worsening liver disease, "
                 "including VOD (USPI 5.1); a prior hypersensitivity calls for close monitoring "
                 "(USPI 5.4). Weigh benefit and risk.",
            evidence=ev,
            choice="Whether to treat is the clinician's decision under the US label.",
            critical=bool(ci),
        )]
    if ci:
        return [make(
            ctx, DecisionCode.CONTRAINDICATED, ("E-1",), ("SmPC 4.3",),
            f"Contraindicated: {names} (SmPC 4.3)",
            what="BESPONSA is **contraindicated** (SmPC 4.3) in hypersensitivity to the active "
                 "substance or excipients, prior confirmed severe or ongoing VOD/SOS, and serious "
                 "ongoing hepatic disease (e.g. cirrhosis, nodular regenerative hyperplasia, active "
                 "hepatitis).",
            evidence=ev, critical=True,
            override_reasons=("data-verified-elsewhere", "clinical-judgement-documented"),
        )]
    return [make(
        ctx, DecisionCode.CAUTION, ("E-1",), ("SmPC 4.3", "SmPC 4.4"),
        f"Check contraindication: {names}; contraindicated if confirmed severe or ongoing",
        what="A VOD/SOS history is on record but not as confirmed severe or ongoing. Prior "
             "confirmed severe or ongoing VOD/SOS is a contraindication (SmPC 4.3); a history of "
             "liver disease needs careful evaluation (SmPC 4.4).",
        evidence=ev,
        choice="Confirm the severity and status of the prior VOD/SOS before treating.",
    )]


# --- E-2 ------------------------------------------------------------------------------------------


def e2_age_and_cd22(ctx: RuleContext) -> list[Decision]:
    out: list[Decision] = []
    f, p = ctx.facts, ctx.policy
    age = age_years(f.patient.birth_date, ctx.dose_date)
    if age is not None and age < p.adult_age_years:
        out.append(make(
            ctx, DecisionCode.CAUTION, ("E-2",), cite(ctx, ("SmPC 4.2",), ("USPI 8.4",)),
            f"Caution: patient is {age} years old; safety and efficacy under "
            f"{p.adult_age_years} not established",
            what=f"The patient is **{age}** years old at the dose date. The safety and efficacy of "
                 f"BESPONSA in children under {p.adult_age_years} have not been established; no "
                 "posology recommendation can be made.",
            evidence=(ref_evidence("age", f"Patient/{f.patient.id}", age, f.patient.birth_date,
                                   note="years at the dose date"),),
        ))
    if before_first_dose(ctx):
        out += _cd22(ctx)
    return out


def _cd22(ctx: RuleContext) -> list[Decision]:
    f = ctx.facts
    cites = cite(ctx, ("SmPC 4.2",), ("USPI 12.1", "USPI 14"))
    us_note = ["The US label states no CD22 test requirement; BESPONSA is CD22-directed and the "
               "pivotal trial enrolled CD22-positive ALL (USPI 12.1, 14). The SmPC requires it."
               ] if ctx.label is Label.US else []
    series = [m for m in f.series(Analyte.CD22)
              if m.effective <= labs.lookup_time(ctx) and not m.preliminary]
    m = series[-1] if series else None
    if m is not None and m.value > 0 and m.comparator not in ("<", "<="):
        return []
    if m is not None and m.value <= 0:
        # A documented 0 %: treatment must not start (SmPC 4.2), so never beside `proceed`.
        ev = labs.evidence(labs.read(m, ctx.policy))
        return [make(
            ctx, DecisionCode.HOLD, ("E-2",), cites,
            f"Hold: CD22 positivity {qty(m.value, '%')} on {d(m.effective)}; the label requires "
            "> 0 % before the first dose",
            what="Baseline CD22 positivity of **> 0 %** by a validated, sensitive assay is required "
                 "before starting BESPONSA (SmPC 4.2). The latest result shows none, so this first "
                 "dose is not given.",
            evidence=(ev,), critical=True, notes=us_note,
            recovery="CD22 positivity > 0 % documented by a validated, sensitive assay",
            override_reasons=("data-verified-elsewhere",),
        )]
    if m is not None:
        # "< x %": below the assay's limit, positivity neither shown nor excluded.
        ev = labs.evidence(labs.read(m, ctx.policy))
        return [make(
            ctx, DecisionCode.OBTAIN_DATA, ("E-2",), cites,
            f"Obtain CD22: {m.comparator}{qty(m.value, '%')} on {d(m.effective)} does not show "
            "positivity > 0 % required before the first dose",
            what="Baseline CD22 positivity of **> 0 %** by a validated, sensitive assay is required "
                 "before starting BESPONSA (SmPC 4.2). The latest result is reported below a limit "
                 "and does not show it: repeat with a sensitive assay.",
            evidence=(ev,), notes=us_note, needed_data=("cd22",),
            override_reasons=("data-verified-elsewhere",),
        )]
    problems = f.problems_for(Analyte.CD22.value)
    return [make(
        ctx, DecisionCode.OBTAIN_DATA, ("E-2",), cites,
        "Obtain CD22: positivity > 0 % must be documented before the first dose",
        what="No usable CD22 result is on record. Baseline CD22 positivity of > 0 % by a validated, "
             "sensitive assay is required before starting BESPONSA (SmPC 4.2).",
        notes=[f"CD22 result unusable: {p.reason}" for p in problems] + us_note,
        evidence=(Evidence(concept=Analyte.CD22.value, note="no usable result on record"),),
        needed_data=("cd22",), override_reasons=("data-verified-elsewhere",),
    )]


# --- E-3 ------------------------------------------------------------------------------------------


def e3_blasts(ctx: RuleContext) -> list[Decision]:
    if not before_first_dose(ctx):
        return []
    lk = labs.current(ctx, Analyte.PERIPHERAL_BLASTS)
    r = lk.reading
    limit = ctx.policy.peripheral_blasts_max
    if r is None or not r.value > limit:
        return []
    per_mm3 = r.value * 1000
    return [make(
        ctx, DecisionCode.CAUTION, ("E-3",), cite(ctx, ("SmPC 4.2",), ("USPI 2.2",)),
        f"Cytoreduce first: peripheral blasts {per_mm3:,.0f}/mm3 (> {limit * 1000:,.0f}) before "
        "the first dose",
        what=f"Peripheral blasts are {per_mm3:,.0f}/mm3. Before the first dose, cytoreduction with "
             "hydroxyurea, steroids and/or vincristine to a peripheral blast count "
             f"<= {limit * 1000:,.0f}/mm3 is recommended.",
        evidence=(labs.evidence(r),), notes=lk.notes,
    )]


# --- E-4 ------------------------------------------------------------------------------------------


def covers_dose(m: MedicationFact, ctx: RuleContext) -> bool:
    """A medication that covers the dose: active, or given/started shortly before it."""
    if m.status in INACTIVE_STATUSES:
        return False
    when = ctx.dose_date
    window = timedelta(hours=ctx.policy.premedication_window_hours)
    if m.end is not None and m.end < when - window:
        return False
    if m.start is not None and m.start > when + window:
        return False
    if m.status == "completed":
        return m.start is not None and when - window <= m.start <= when + window
    return True


def high_tumour_burden(ctx: RuleContext) -> list[str]:
    reasons = []
    r = labs.current(ctx, Analyte.PERIPHERAL_BLASTS).reading
    if r is not None and r.value > ctx.policy.high_tumour_burden_blasts:
        reasons.append(f"peripheral blasts {r.value * 1000:,.0f}/mm3")
    if any(c.concept == "tumour-lysis" and c.active for c in ctx.facts.conditions):
        reasons.append("tumour lysis syndrome on record")
    return reasons


def e4_premedication(ctx: RuleContext) -> list[Decision]:
    f, p = ctx.facts, ctx.policy
    present: set[str] = set()
    for o in f.other_orders:
        present |= o.concepts
    for m in f.medications:
        if covers_dose(m, ctx):
            present |= m.concepts
    missing = [c for c in p.premedication_classes if c not in present]
    burden = high_tumour_burden(ctx)
    missing_tb = [c for c in p.high_tumour_burden_premedication if c not in present] if burden else []
    if not missing and not missing_tb:
        return []
    cites = cite(ctx, ("SmPC 4.2", "SmPC 4.4"), ("USPI 2.2", "USPI 5.4"))
    all_missing = missing + missing_tb
    notes = []
    if burden:
        notes.append(f"High tumour burden ({'; '.join(burden)}): uric-acid lowering premedication "
                     "and hydration are recommended (TLS risk, SmPC 4.4). The threshold is an "
                     "institutional setting: the label does not define high tumour burden.")
    return [make(
        ctx, DecisionCode.CAUTION, ("E-4",), cites,
        "Premedicate: no " + ", ".join(CLASS_TEXT.get(c, c) for c in all_missing)
        + " ordered or active for this dose",
        what="Premedication with a corticosteroid, antipyretic and antihistamine is recommended "
             "before each dose. None of the following is ordered or active for this dose: "
             + ", ".join(CLASS_TEXT.get(c, c) for c in all_missing) + ".",
        evidence=(ref_evidence("premedication", None, ", ".join(sorted(present & set(
            (*p.premedication_classes, *p.high_tumour_burden_premedication)))) or "none",
            ctx.dose_date, note="classes found ordered or active"),),
        notes=notes,
        suggest_premedication=True,
        override_reasons=("data-verified-elsewhere",),
    )]


# --- E-5 ------------------------------------------------------------------------------------------


def _missing_evidence(ctx: RuleContext, lk: labs.LabLookup) -> Evidence:
    """Evidence row for a lab that is not usable: its latest (stale) result, or 'none on record'."""
    last = labs.latest_usable(ctx, lk.analyte, labs.lookup_time(ctx))
    # A stale row says only that (the card says once since when, #10); others say what is wrong.
    note = f"{lk.status}: {'too old' if lk.status == 'stale' else lk.problem(ctx)}"
    if last is not None:
        return labs.evidence(labs.read(last, ctx.policy), note=note)
    return Evidence(concept=lk.analyte.value, note=note)


def e5_fresh_labs(ctx: RuleContext) -> list[Decision]:
    hep = [labs.current(ctx, a) for a in HEPATIC_PANEL]
    cbc = [labs.current(ctx, a) for a in CBC]
    bad_hep = [lk for lk in hep if not lk.ok]
    bad_cbc = [lk for lk in cbc if not lk.ok]
    if not bad_hep and not bad_cbc:
        return []
    needed = (("hepatic-panel",) if bad_hep else ()) + (("cbc-differential",) if bad_cbc else ())
    rules = ["E-5"]
    if any(lk.analyte in (Analyte.BILIRUBIN, Analyte.AST, Analyte.ALT) for lk in bad_hep):
        rules.append("L-2")
    if bad_cbc and haematological.applies(ctx):
        rules += ["H-2", "H-3", "H-4"]
    missing_names = ", ".join(labs.name(lk.analyte) for lk in (*bad_hep, *bad_cbc))
    prev = ctx.course.previous_dose
    since = (f"since the previous dose ({d(prev.given_at)})" if prev
             else f"within {ctx.policy.lab_fresh_days_before_first_dose} d before the first dose")
    stale = [labs.name(lk.analyte) for lk in (*bad_hep, *bad_cbc) if lk.status == "stale"]
    problems = ([f"No result {labs.fresh_since_text(ctx)}: {', '.join(stale)}."] if stale else [])
    problems += [f"{lk.problem(ctx)}." for lk in (*bad_hep, *bad_cbc) if lk.status != "stale"]
    notes = [n for lk in (*hep, *cbc) for n in lk.notes]
    flagged = tuple(e for lk in (*hep, *cbc) for e in lk.flagged)
    ok_ev = tuple(labs.evidence(lk.reading) for lk in (*hep, *cbc) if lk.reading)
    bad_ev = tuple(_missing_evidence(ctx, lk) for lk in (*bad_hep, *bad_cbc))
    return [make(
        ctx, DecisionCode.OBTAIN_DATA, tuple(rules),
        cite(ctx, ("SmPC 4.4",), ("USPI 5.1", "USPI 5.3")),
        f"Obtain labs: no usable {missing_names} {since}",
        what="Liver tests (ALT, AST, total bilirubin, alkaline phosphatase) and complete blood "
             "counts must be checked **before each dose**; the dose-modification rules (SmPC 4.2 "
             "Tables 2 and 3) cannot be applied without them.",
        evidence=bad_ev + ok_ev + flagged,
        notes=[*problems, *notes],
        needed_data=needed,
        override_reasons=("data-verified-elsewhere",),
    )]
