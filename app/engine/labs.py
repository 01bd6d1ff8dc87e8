"""Lab results as the toxicity rules read them (clinical-rules section 0).

- ULN: the Observation's referenceRange.high, else the policy default (the evidence says which).
- Fresh: taken after the previous dose, or (before the first dose) within
  `policy.lab_fresh_days_before_first_dose` days before the dose date.
- Missing, stale, unusable (facts.problems_for) or preliminary-only results are reported, never
  passed silently; a preliminary result is flagged and never decisive.
- Platelets used for dosing must be independent of transfusion (SmPC 4.2 Table 2 note a): a count
  taken within `policy.transfusion_window_hours` after a platelet transfusion is ignored.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.engine import ctcae
from app.engine.context import RuleContext
from app.engine.decisions import Evidence
from app.engine.facts import Analyte, Domain, Measurement
from app.engine.text import sent_as

DISPLAY: dict[str, str] = {
    Analyte.BILIRUBIN: "Total bilirubin",
    Analyte.BILIRUBIN_INDIRECT: "Indirect bilirubin",
    Analyte.AST: "AST",
    Analyte.ALT: "ALT",
    Analyte.ALP: "Alkaline phosphatase",
    Analyte.GGT: "GGT",
    Analyte.AMYLASE: "Amylase",
    Analyte.LIPASE: "Lipase",
    Analyte.CREATININE: "Creatinine",
    Analyte.ANC: "ANC",
    Analyte.PLATELETS: "Platelets",
    Analyte.WBC: "WBC",
    Analyte.PERIPHERAL_BLASTS: "Peripheral blasts",
    Analyte.MARROW_BLASTS: "Marrow blasts",
    Analyte.MRD: "MRD",
    Analyte.CD22: "CD22 positivity",
    Analyte.POTASSIUM: "Potassium",
    Analyte.MAGNESIUM: "Magnesium",
    Analyte.CALCIUM: "Calcium",
    Analyte.QTC: "QTc",
    Analyte.HEIGHT: "Height",
    Analyte.WEIGHT: "Weight",
}

UNIT_DISPLAY = {"10*9/L": "x10^9/L", "1": ""}

# The data domain each analyte is read from (app.prefetch_queries groups): its read status
# (issue #8) decides whether "no result" means "none on record" or "could not be read".
ANALYTE_DOMAIN: dict[Analyte, Domain] = {
    **{a: Domain.BLOOD_COUNTS for a in (Analyte.ANC, Analyte.PLATELETS, Analyte.WBC,
                                        Analyte.PERIPHERAL_BLASTS)},
    **{a: Domain.HEIGHT_WEIGHT for a in (Analyte.HEIGHT, Analyte.WEIGHT)},
    Analyte.QTC: Domain.ECG,
    **{a: Domain.DISEASE for a in (Analyte.MARROW_BLASTS, Analyte.CD22, Analyte.MRD)},
}


def domain_of(analyte: Analyte) -> Domain:
    return ANALYTE_DOMAIN.get(analyte, Domain.LIVER_LABS)


PLATELET_TRANSFUSION = "platelet-transfusion"
_VOID_PROCEDURE = {"not-done", "entered-in-error", "revoked", "preparation", "draft", "stopped"}


def name(analyte: str) -> str:
    return DISPLAY.get(analyte, str(analyte))


def unit_text(unit: str) -> str:
    return UNIT_DISPLAY.get(unit, unit)


def num(x: float | None) -> str:
    """Compact number for summaries: 2.1, 0.85, 120, 1.82."""
    if x is None:
        return "?"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}".rstrip("0").rstrip(".") if abs(x) < 10 else f"{x:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class LabReading:
    """One result with its ULN, ratio and CTCAE grade."""

    measurement: Measurement
    uln: float | None
    uln_source: str  # "reported" | "default" | "none"
    ratio: float | None
    grade: int | None

    @property
    def analyte(self) -> Analyte:
        return self.measurement.analyte

    @property
    def value(self) -> float:
        return self.measurement.value

    @property
    def effective(self) -> datetime:
        return self.measurement.effective

    def exceeds(self, factor: float) -> bool:
        """value > factor x ULN (False when there is no ULN)."""
        return self.uln is not None and ctcae.exceeds(self.value, self.uln, factor)

    def text(self, with_ratio: bool = True) -> str:
        """'2.1 mg/dL (1.8x ULN)' for summaries."""
        u = unit_text(self.measurement.unit)
        s = f"{num(self.value)} {u}".strip()
        if with_ratio and self.ratio is not None:
            s += f" ({self.ratio:.1f}x ULN)"
        return s


def resolve_uln(m: Measurement, ctx_policy) -> tuple[float | None, str]:
    """ULN of a result: its own reference range, else the configured default."""
    if m.uln is not None and m.uln > 0:
        return m.uln, "reported"
    default = ctx_policy.uln_default(m.analyte.value)
    if default is not None and default > 0:
        return float(default), "default"
    return None, "none"


def read(m: Measurement, policy, qtc_baseline: float | None = None) -> LabReading:
    """A Measurement with ULN, ratio and CTCAE grade resolved."""
    if m.analyte == Analyte.QTC:
        return LabReading(m, None, "none", None, ctcae.grade_qtc(m.value, qtc_baseline))
    if m.analyte not in ctcae.ULN_GRADE_BOUNDS:
        # counts, electrolytes...: not graded; keep a reported ULN for display only
        return LabReading(m, m.uln, "reported" if m.uln else "none", None, None)
    uln, source = resolve_uln(m, policy)
    if uln is None:
        return LabReading(m, None, "none", None, None)
    r = ctcae.ratio(m.value, uln)
    g = ctcae.grade(m.analyte, m.value, uln)
    return LabReading(m, uln, source, r, g)


def evidence(reading: LabReading, note: str | None = None) -> Evidence:
    """Evidence row for a lab: value, unit, ULN, ratio, grade, date, and where the ULN came from."""
    m = reading.measurement
    notes = [n for n in (note,) if n]
    if reading.uln_source == "default":
        notes.append("ULN from configured default")
    if m.preliminary:
        notes.append("preliminary: not used for the decision")
    if m.comparator:
        notes.append(f"reported as {m.comparator}{num(m.value)}")
    if m.method:
        notes.append(m.method)
    sent = sent_as(m)
    if sent:
        notes.append(f"sent as {sent}, converted")
    return Evidence(
        concept=m.analyte.value,
        reference=m.reference,
        code=m.code or None,
        value=m.value,
        unit=m.unit,
        uln=reading.uln,
        ratio=reading.ratio,
        grade=reading.grade,
        date=m.effective,
        note="; ".join(notes) or None,
        sent=sent,
    )


# --- freshness and lookup ----------------------------------------------------------------------


def fresh_since(ctx: RuleContext) -> datetime:
    """Results after this instant are fresh for the ordered dose (section 0)."""
    prev = ctx.course.previous_dose
    if prev is not None:
        return prev.given_at
    return ctx.dose_date - timedelta(days=ctx.policy.lab_fresh_days_before_first_dose)


def is_fresh(ctx: RuleContext, when: datetime) -> bool:
    """After the previous dose; before the first dose, within the window (inclusive)."""
    if when > lookup_time(ctx):
        return False
    if ctx.course.previous_dose is not None:
        return when > ctx.course.previous_dose.given_at
    return when >= fresh_since(ctx)


def fresh_since_text(ctx: RuleContext) -> str:
    prev = ctx.course.previous_dose
    if prev is not None:
        return f"since the previous dose on {prev.given_at.date().isoformat()}"
    days = ctx.policy.lab_fresh_days_before_first_dose
    return f"within {days} days before the first dose"


def lookup_time(ctx: RuleContext) -> datetime:
    """Results up to this instant are considered (the later of now and the dose date)."""
    return max(ctx.now, ctx.dose_date)


def _memo(ctx: RuleContext) -> dict:
    """Per-context memo (issue #11: rule families ask for the same lookups many times). The
    context is frozen and so are its facts: a lookup's answer cannot change within one context."""
    return ctx.__dict__.setdefault("_labs_memo", {})


def transfusions(ctx: RuleContext) -> list[datetime]:
    return list(_transfusions(ctx))


def _transfusions(ctx: RuleContext) -> tuple[datetime, ...]:
    memo = _memo(ctx)
    if "transfusions" not in memo:
        memo["transfusions"] = tuple(sorted(
            p.performed
            for p in ctx.facts.procedures
            if p.concept == PLATELET_TRANSFUSION and p.performed is not None
            and p.status not in _VOID_PROCEDURE
        ))
    return memo["transfusions"]


def transfused_at(ctx: RuleContext, m: Measurement) -> datetime | None:
    """The platelet transfusion that makes this platelet count unusable for dosing, if any."""
    if m.analyte != Analyte.PLATELETS:
        return None
    transfused = _transfusions(ctx)  # sorted
    if not transfused:
        return None
    # The earliest transfusion t with t <= m.effective <= t + window, found by bisection (one
    # count against each transfusion made 3,000 of each take 2.6 s).
    i = bisect_left(transfused, m.effective - timedelta(hours=ctx.policy.transfusion_window_hours))
    if i < len(transfused) and transfused[i] <= m.effective:
        return transfused[i]
    return None


def usable_series(ctx: RuleContext, analyte: Analyte, *, until: datetime | None = None,
                  include_preliminary: bool = False) -> list[Measurement]:
    """Results (final unless asked), transfusion-independent for platelets, sorted by time."""
    until = until or lookup_time(ctx)
    out = []
    for m in ctx.facts.series(analyte):
        if m.effective > until or (m.preliminary and not include_preliminary):
            continue
        if transfused_at(ctx, m) is not None:
            continue
        out.append(m)
    return sorted(out, key=lambda m: m.effective)


def latest_usable(ctx: RuleContext, analyte: Analyte, before: datetime) -> Measurement | None:
    s = usable_series(ctx, analyte, until=before)
    return s[-1] if s else None


@dataclass(frozen=True)
class LabLookup:
    """The result a rule should use for an analyte at the ordered dose, or why there is none."""

    analyte: Analyte
    reading: LabReading | None  # the fresh, final, usable result (None: not ok)
    status: str  # ok | missing | stale | unusable | preliminary | transfused | unavailable
    notes: tuple[str, ...] = ()  # flags to show on the card (preliminary newer result, ...)
    flagged: tuple[Evidence, ...] = ()  # evidence rows for ignored results (preliminary, transfused)
    unread: str = ""  # status "unavailable": how its domain was read ("could not be read (503)")

    @property
    def ok(self) -> bool:
        return self.reading is not None

    def problem(self, ctx: RuleContext) -> str:
        n = name(self.analyte)
        since = fresh_since_text(ctx)
        return {
            "missing": f"no {n} result on record",
            "stale": f"no {n} result {since}",
            "unusable": f"{n} result unusable",
            "preliminary": f"{n} only preliminary {since}",
            "transfused": f"{n} only within {ctx.policy.transfusion_window_hours} h after a "
            "platelet transfusion",
            "unavailable": f"{n} {self.unread or 'could not be read'}",
        }.get(self.status, f"{n}: {self.status}")


def current(ctx: RuleContext, analyte: Analyte, qtc_baseline: float | None = None) -> LabLookup:
    """The fresh result for the ordered dose (section 0), with flags for what was not used."""
    key = ("current", analyte, qtc_baseline)
    memo = _memo(ctx)
    if key not in memo:
        memo[key] = _current(ctx, analyte, qtc_baseline)
    return memo[key]


def _fresh_filter(ctx: RuleContext, series: tuple[Measurement, ...]) -> list[Measurement]:
    """[m for m in series if is_fresh(ctx, m.effective)], with the bounds computed once."""
    upper = lookup_time(ctx)
    prev = ctx.course.previous_dose
    if prev is not None:
        after = prev.given_at
        return [m for m in series if after < m.effective <= upper]
    since = fresh_since(ctx)
    return [m for m in series if since <= m.effective <= upper]


def _current(ctx: RuleContext, analyte: Analyte, qtc_baseline: float | None) -> LabLookup:
    notes: list[str] = []
    flagged: list[Evidence] = []
    all_fresh = _fresh_filter(ctx, ctx.facts.series(analyte))
    final_fresh = [m for m in all_fresh if not m.preliminary]
    usable = [m for m in final_fresh if transfused_at(ctx, m) is None]
    best = max(usable, key=lambda m: m.effective) if usable else None

    for m in all_fresh:
        if m.preliminary and (best is None or m.effective > best.effective):
            flagged.append(evidence(read(m, ctx.policy, qtc_baseline)))
            notes.append(f"A preliminary {name(analyte)} result of "
                         f"{m.effective.date().isoformat()} is flagged and not used.")
        elif (t := transfused_at(ctx, m)) is not None and (best is None or m.effective > best.effective):
            flagged.append(evidence(read(m, ctx.policy), note="within "
                                    f"{ctx.policy.transfusion_window_hours} h of a platelet "
                                    "transfusion: ignored"))
            notes.append(f"Platelet count of {m.effective.date().isoformat()} ignored: taken within "
                         f"{ctx.policy.transfusion_window_hours} h after a platelet transfusion "
                         f"({t.date().isoformat()}); the label requires a transfusion-independent "
                         "count (SmPC 4.2 Table 2 note a).")

    # Unusable data newer than the usable result (or with no usable result) -> not ok.
    problems = [p for p in ctx.facts.problems_for(analyte.value)
                if (p.effective is None and best is None)
                or (p.effective is not None and is_fresh(ctx, p.effective)
                    and (best is None or p.effective > best.effective))]
    if problems:
        notes.extend(f"{name(analyte)} result unusable: {p.reason}"
                     + (f" ({p.reference})" if p.reference else "") for p in problems)
        return LabLookup(analyte, None, "unusable", tuple(notes), tuple(flagged))
    if best is not None:
        return LabLookup(analyte, read(best, ctx.policy, qtc_baseline), "ok", tuple(notes),
                         tuple(flagged))
    domain_read = ctx.facts.status(domain_of(analyte))
    if not domain_read.read_whole:  # "could not be read" is not "no result on record" (issue #8)
        return LabLookup(analyte, None, "unavailable", tuple(notes), tuple(flagged), domain_read.text())
    if any(m.preliminary for m in all_fresh):
        status = "preliminary"
    elif final_fresh:
        status = "transfused"
    elif ctx.facts.series(analyte):
        status = "stale"
    else:
        status = "missing"
    return LabLookup(analyte, None, status, tuple(notes), tuple(flagged))


# --- baselines (section 0) ---------------------------------------------------------------------


def pretreatment(ctx: RuleContext, analyte: Analyte) -> Measurement | None:
    """Latest result at or before the first dose of cycle 1 ('prior to BESPONSA treatment').

    None before the first dose (the current value is itself pre-treatment) or when not on record.
    """
    first = ctx.course.first_dose
    if first is None:
        return None
    return latest_usable(ctx, analyte, first.given_at)


def prior_cycle_baseline(ctx: RuleContext, analyte: Analyte) -> Measurement | None:
    """Latest result at or before Day 1 of the cycle before the ordered dose's cycle."""
    cycle = ctx.course.cycle
    if cycle is None or cycle < 2:
        return None
    prev = next((c for c in ctx.course.cycles if c.number == cycle - 1), None)
    if prev is None:
        return None
    return latest_usable(ctx, analyte, prev.start)
