"""Shared builders for engine tests (tasks C1 and C2).

Dates: `day(n)` is Day n of a treatment that started on T0 (cycle 1 Day 1 = 2026-01-05 09:00 UTC).
Default body: 170 cm, 70 kg -> Mosteller BSA 1.818 m2.

    f = facts(draft=draft(day(8), mg_per_m2=0.5), doses=[dose(day(1), mg_per_m2=0.8)],
              measurements=[*body(), measurement(Analyte.BILIRUBIN, 0.9, day(7), uln=1.2)])
    ctx = context(f, course=make_course(cycle=1, day=8))      # course built by hand (C2 style)
    ctx = context(f)                                            # course reconstructed (C-1..C-6)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

from app.engine.context import Course, CycleHistory, Interruption, Response, RuleContext
from app.engine.decisions import Evidence, Label
from app.engine.facts import (
    Analyte,
    ClinicalFacts,
    ConditionFact,
    CycleDay,
    DataProblem,
    DoseGiven,
    DraftDose,
    MedicationFact,
    Measurement,
    OtherOrder,
    PatientInfo,
    ProcedureFact,
    ReactionFact,
    ResponseFinding,
)
from app.engine.policy import Policy

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # cycle 1 Day 1 of the default treatment
HEIGHT_CM = 170.0
WEIGHT_KG = 70.0
BSA_M2 = (HEIGHT_CM * WEIGHT_KG / 3600.0) ** 0.5  # 1.8181 (Mosteller)

_ids = itertools.count(1)


def _ref(kind: str) -> str:
    return f"{kind}/{kind.lower()}-{next(_ids)}"


def day(n: int, start: datetime = T0, hours: float = 0.0) -> datetime:
    """Day n (1-based) of a period starting at `start` (Day 1 = start)."""
    return start + timedelta(days=n - 1, hours=hours)


def days_after(when: datetime, n: float) -> datetime:
    return when + timedelta(days=n)


# --- facts -------------------------------------------------------------------------------------


def measurement(
    analyte: Analyte,
    value: float,
    effective: datetime,
    *,
    uln: float | None = None,
    lln: float | None = None,
    reference: str | None = None,
    status: str = "final",
    **kw,
) -> Measurement:
    return Measurement(
        analyte=analyte,
        value=value,
        effective=effective,
        reference=reference or _ref("Observation"),
        uln=uln,
        lln=lln,
        status=status,
        **kw,
    )


def height(cm: float = HEIGHT_CM, when: datetime = T0 - timedelta(days=1)) -> Measurement:
    return measurement(Analyte.HEIGHT, cm, when)


def weight(kg: float = WEIGHT_KG, when: datetime = T0 - timedelta(days=1)) -> Measurement:
    return measurement(Analyte.WEIGHT, kg, when)


def body(
    cm: float = HEIGHT_CM, kg: float = WEIGHT_KG, when: datetime = T0 - timedelta(days=1)
) -> list[Measurement]:
    """Height and weight measured at `when` (default: the day before T0)."""
    return [height(cm, when), weight(kg, when)]


def cycle_day(cycle: int, day_: int) -> CycleDay:
    return CycleDay(cycle=cycle, day=day_)


def dose(
    when: datetime,
    *,
    mg: float | None = None,
    mg_per_m2: float | None = None,
    explicit: CycleDay | None = None,
    reference: str | None = None,
    bsa: float = BSA_M2,
) -> DoseGiven:
    """A completed administration. Give mg_per_m2 only and mg is derived from `bsa` (2 decimals)."""
    if mg is None and mg_per_m2 is not None:
        mg = round(mg_per_m2 * bsa, 2)
    return DoseGiven(
        reference=reference or _ref("MedicationAdministration"),
        given_at=when,
        dose_mg=mg,
        dose_mg_per_m2=mg_per_m2,
        explicit=explicit,
    )


def draft(
    when: datetime,
    *,
    mg: float | None = None,
    mg_per_m2: float | None = None,
    explicit: CycleDay | None = None,
    reference: str = "MedicationRequest/draft-1",
    **kw,
) -> DraftDose:
    """The draft inotuzumab order dosed on `when` (give mg and/or mg_per_m2 as ordered)."""
    return DraftDose(
        reference=reference,
        dose_date=when,
        dose_mg=mg,
        dose_mg_per_m2=mg_per_m2,
        explicit=explicit,
        **kw,
    )


def condition(concept: str, *, clinical_status: str | None = "active", **kw) -> ConditionFact:
    return ConditionFact(
        concept=concept, reference=kw.pop("reference", _ref("Condition")),
        clinical_status=clinical_status, **kw,
    )


def procedure(
    concept: str, status: str, *, resource_type: str = "Procedure", **kw
) -> ProcedureFact:
    return ProcedureFact(
        concept=concept, reference=kw.pop("reference", _ref(resource_type)), status=status,
        resource_type=resource_type, **kw,
    )


def reaction(kind: str = "infusion-reaction", severity: str | None = "mild", **kw) -> ReactionFact:
    return ReactionFact(reference=kw.pop("reference", _ref("AdverseEvent")), kind=kind,
                        severity=severity, **kw)


def medication(concepts: Iterable[str], status: str = "active", **kw) -> MedicationFact:
    return MedicationFact(reference=kw.pop("reference", _ref("MedicationRequest")),
                          concepts=frozenset(concepts), status=status, **kw)


def other_order(concepts: Iterable[str], display: str = "", **kw) -> OtherOrder:
    return OtherOrder(reference=kw.pop("reference", _ref("MedicationRequest")),
                      concepts=frozenset(concepts), display=display, **kw)


def response(status: str, when: datetime, mrd_negative: bool | None = None) -> ResponseFinding:
    return ResponseFinding(response=status, effective=when, reference=_ref("Observation"),
                           mrd_negative=mrd_negative)


def problem(concept: str, reason: str = "unusable", **kw) -> DataProblem:
    return DataProblem(concept=concept, reason=reason, **kw)


def facts(
    *,
    draft: DraftDose | None = None,
    doses: Sequence[DoseGiven] = (),
    measurements: Sequence[Measurement] = (),
    patient: PatientInfo | None = None,
    **kw,
) -> ClinicalFacts:
    """ClinicalFacts with doses and measurements sorted as the builder sorts them."""
    return ClinicalFacts(
        patient=patient or PatientInfo(id="pat-1", gender="female"),
        draft=draft,
        doses_given=tuple(sorted(doses, key=lambda d: d.given_at)),
        measurements=tuple(sorted(measurements, key=lambda m: m.effective)),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()},
    )


def label_history(
    cycles: int,
    *,
    cr_from_cycle: int | None = 2,
    start: datetime = T0,
    bsa: float = BSA_M2,
    level: int = 0,
    last_cycle_doses: int | None = None,
) -> list[DoseGiven]:
    """Doses of `cycles` complete cycles on the label schedule (cycle 1: 21 days, later: 28 days).

    cr_from_cycle: cycles >= this number get the CR/CRi regimen (None: never in CR/CRi).
    level: reduction level applied to every cycle (1: x0.75; 2: two doses per cycle).
    last_cycle_doses: stop the last cycle after this many doses.
    """
    from app.engine.regimen import expected_mg_per_m2

    out: list[DoseGiven] = []
    cycle_start = start
    for c in range(1, cycles + 1):
        cr = cr_from_cycle is not None and c >= cr_from_cycle
        n_doses = 2 if level >= 2 else 3
        if c == cycles and last_cycle_doses is not None:
            n_doses = min(n_doses, last_cycle_doses)
        for n in range(1, n_doses + 1):
            mg_m2 = expected_mg_per_m2(c, n, cr, level)
            assert mg_m2 is not None
            out.append(dose(day(1 + 7 * (n - 1), cycle_start), mg_per_m2=mg_m2, bsa=bsa))
        cycle_start = cycle_start + timedelta(days=21 if c == 1 else 28)
    return out


def cycle_start_date(cycle: int, start: datetime = T0) -> datetime:
    """Day 1 of `cycle` on the label schedule (cycle 1 = start; + 21 d; then + 28 d each)."""
    if cycle == 1:
        return start
    return start + timedelta(days=21 + 28 * (cycle - 2))


# --- course and context ------------------------------------------------------------------------


def make_course(
    cycle: int | None = 1,
    day: int | None = 1,
    *,
    dose_number: int | None = None,
    cycle_start: datetime | None = None,
    cycles: Sequence[CycleHistory] = (),
    previous_dose: DoseGiven | None = None,
    reduction_level: int = 0,
    interruptions: Sequence[Interruption] = (),
    response: str | Response = "unknown",
    mrd_negative: bool | None = None,
    evidence: Sequence[Evidence] = (),
    hsct_planned: bool = False,
    prior_hsct: bool = False,
    explicit: bool = False,
    notes: Sequence[str] = (),
) -> Course:
    """A Course built by hand. dose_number defaults from day (1-7 -> 1, 8-14 -> 2, 15+ -> 3);
    cycle_start defaults to the label schedule's Day 1 of `cycle`."""
    if dose_number is None and day is not None:
        dose_number = 1 if day < 8 else 2 if day < 15 else 3
    if cycle_start is None and cycle is not None:
        cycle_start = cycle_start_date(cycle)
    resp = response if isinstance(response, Response) else Response(
        status=response, mrd_negative=mrd_negative, evidence=tuple(evidence)
    )
    return Course(
        cycles=tuple(cycles),
        cycle=cycle,
        day=day,
        dose_number=dose_number,
        cycle_start=cycle_start,
        previous_dose=previous_dose,
        reduction_level=reduction_level,
        interruptions=tuple(interruptions),
        response=resp,
        hsct_planned=hsct_planned,
        prior_hsct=prior_hsct,
        explicit=explicit,
        notes=tuple(notes),
    )


def interruption(
    planned: datetime, days: int, *, within_cycle: bool = True, cycle: int = 1, inferred: bool = True
) -> Interruption:
    return Interruption(planned=planned, actual=planned + timedelta(days=days), days=days,
                        within_cycle=within_cycle, inferred=inferred, cycle=cycle)


def context(
    f: ClinicalFacts | None = None,
    *,
    course: Course | None = None,
    now: datetime | None = None,
    policy: Policy | None = None,
    label: Label = Label.EU,
) -> RuleContext:
    """RuleContext. now defaults to the draft's dose date (or T0); course, when not given, is
    reconstructed by app.engine.course.reconstruct_course (rules C-1..C-6)."""
    f = f or facts()
    policy = policy or Policy()
    if now is None:
        now = f.draft.dose_date if f.draft else T0
    if course is None:
        from app.engine.course import reconstruct_course

        course = reconstruct_course(f, now, policy)
    return RuleContext(facts=f, now=now, policy=policy, label=label, course=course)


# --- a patient with nothing to object to (for evaluate and property tests) ----------------------

NORMAL_LABS: dict[Analyte, tuple[float, float | None]] = {
    # analyte: (value, ULN) in canonical units; all within normal limits
    Analyte.BILIRUBIN: (0.6, 1.2),
    Analyte.AST: (20.0, 40.0),
    Analyte.ALT: (20.0, 40.0),
    Analyte.ALP: (80.0, 120.0),
    Analyte.GGT: (30.0, 50.0),
    Analyte.AMYLASE: (50.0, 100.0),
    Analyte.LIPASE: (30.0, 60.0),
    Analyte.CREATININE: (0.8, 1.2),
    Analyte.ANC: (2.5, None),
    Analyte.PLATELETS: (180.0, None),
    Analyte.WBC: (5.0, None),
    Analyte.PERIPHERAL_BLASTS: (0.0, None),
    Analyte.POTASSIUM: (4.2, 5.1),
    Analyte.MAGNESIUM: (0.9, 1.05),
    Analyte.CALCIUM: (2.35, 2.6),
    Analyte.QTC: (420.0, None),
    Analyte.CD22: (90.0, None),
}


def normal_labs(when: datetime, skip: Iterable[Analyte] = ()) -> list[Measurement]:
    """A full set of normal results at `when` (liver, CBC, electrolytes, QTcF, CD22)."""
    skip = set(skip)
    out = []
    for analyte, (value, uln) in NORMAL_LABS.items():
        if analyte in skip:
            continue
        lln = {Analyte.POTASSIUM: 3.5, Analyte.MAGNESIUM: 0.7, Analyte.CALCIUM: 2.15}.get(analyte)
        out.append(measurement(analyte, value, when, uln=uln, lln=lln,
                               method="QTcF" if analyte is Analyte.QTC else None))
    return out


def premedication_orders(classes: Iterable[str] = ("corticosteroid", "antipyretic",
                                                   "antihistamine")) -> list[OtherOrder]:
    return [other_order([c], display=c) for c in classes]


def clean_facts(
    draft_: DraftDose | None,
    doses: Sequence[DoseGiven] = (),
    *,
    extra_measurements: Sequence[Measurement] = (),
    **kw,
) -> ClinicalFacts:
    """Facts with fresh normal labs and body size the day before the dose date, pre-treatment
    labs the day before the first dose, and premedication ordered: only regimen-level findings
    (D-*) can object."""
    when = draft_.dose_date if draft_ else kw.pop("now", T0)
    first = min([d.given_at for d in doses], default=when)
    ms = normal_labs(first - timedelta(days=1)) + body(when=first - timedelta(days=1))
    if when.date() != first.date():
        ms += normal_labs(when - timedelta(hours=20)) + body(when=when - timedelta(hours=20))
    kw.setdefault("other_orders", premedication_orders() if draft_ else [])
    return facts(draft=draft_, doses=doses, measurements=ms + list(extra_measurements), **kw)
