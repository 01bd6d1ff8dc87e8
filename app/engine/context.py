"""What every rule reads: the facts, `now`, the policy, the label and the reconstructed course.

The treatment course (rules C-1..C-6) is reconstructed once per evaluation by `app.engine.course`
and handed to every rule family as a `Course`. Rule families are functions
`check_<family>(ctx: RuleContext) -> list[Decision]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.engine.decisions import Evidence, Label
from app.engine.facts import ClinicalFacts, DoseGiven
from app.engine.policy import Policy


@dataclass(frozen=True)
class CycleHistory:
    """One treatment cycle as given (C-2)."""

    number: int  # 1-based
    start: datetime  # Day 1 (the first dose of the cycle)
    doses: tuple[DoseGiven, ...]


@dataclass(frozen=True)
class Interruption:
    """A dose later than planned (C-4): `days` late versus the planned date."""

    planned: datetime
    actual: datetime  # the late dose (given, or the draft's dose date)
    days: int
    within_cycle: bool  # True: a Day 8/15 dose late; False: a cycle's Day 1 late
    inferred: bool = True  # inferred from dates, not documented as due to toxicity
    cycle: int = 0


@dataclass(frozen=True)
class Response:
    """Disease response in force at the dose date (C-5)."""

    status: str  # "CR" | "CRi" | "no-CR" (assessed, not in CR/CRi) | "unknown"
    mrd_negative: bool | None = None
    evidence: tuple[Evidence, ...] = ()

    @property
    def cr_or_cri(self) -> bool:
        return self.status in ("CR", "CRi")


@dataclass(frozen=True)
class Course:
    """The treatment course, and where the ordered dose falls in it."""

    cycles: tuple[CycleHistory, ...]  # cycles with at least one completed dose, in order
    cycle: int | None  # cycle of the ordered dose (None: no draft order)
    day: int | None  # day of the ordered dose within its cycle (Day 1 = cycle start)
    dose_number: int | None  # 1, 2 or 3: which dose of its cycle the ordered dose is
    cycle_start: datetime | None  # Day 1 of the ordered dose's cycle (its own date if it starts one)
    previous_dose: DoseGiven | None  # the last completed dose before the dose date
    reduction_level: int  # C-3, in force for the ordered dose: 0, 1 or 2 (never lowered)
    interruptions: tuple[Interruption, ...]  # C-4, including one the draft order itself would make
    response: Response  # C-5
    hsct_planned: bool  # C-6
    prior_hsct: bool  # C-6
    explicit: bool = False  # cycle/day of the ordered dose came from the C-1 extension
    # T-2: the dose of the cycle (2 or 3) omitted for being >= 7 days late; the ordered dose is
    # read as the next scheduled one (cycle/day/dose_number above), or is that omitted dose
    omitted_dose: int | None = None
    notes: tuple[str, ...] = ()  # how the course was inferred, for card detail
    # C-3: why the level may be higher than `reduction_level` (a later cycle's doses whose level
    # cannot be known); non-empty -> no dose is suggested (never assume level 0, SmPC 4.2)
    reduction_level_unknown: tuple[str, ...] = ()
    # C-3: mg/m2 of each past dose as read (reference, value or None: amount unknown)
    mg_per_m2_given: tuple[tuple[str, float | None], ...] = ()

    @property
    def first_dose(self) -> DoseGiven | None:
        return self.cycles[0].doses[0] if self.cycles else None

    @property
    def starts_new_cycle(self) -> bool:
        return self.dose_number == 1


@dataclass(frozen=True)
class RuleContext:
    facts: ClinicalFacts
    now: datetime
    policy: Policy
    label: Label
    course: Course

    @property
    def dose_date(self) -> datetime:
        return self.facts.draft.dose_date if self.facts.draft else self.now
