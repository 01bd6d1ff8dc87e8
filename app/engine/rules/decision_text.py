"""Shared wording for the toxicity/eligibility decisions: summaries, evidence tables, citations."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime

from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.labs import name, num, unit_text
from app.engine.text import clipped

MAX_SUMMARY = 140


def clip(summary: str) -> str:
    """A summary of at most 140 characters (CDS Hooks: 'under 140')."""
    summary = " ".join(summary.split())
    if len(summary) <= MAX_SUMMARY - 1:
        return summary
    return summary[: MAX_SUMMARY - 2].rstrip(" ,;:") + "…"


def cite(ctx: RuleContext, eu: Iterable[str], us: Iterable[str]) -> tuple[str, ...]:
    """The citations of the label in force."""
    return tuple(us if ctx.label is Label.US else eu)


# Display names for the non-lab findings of evidence rows (labs: app.engine.labs.DISPLAY); a
# card shows these, never the internal concept id.
CONCEPT_DISPLAY: dict[str, str] = {
    "vod-sos": "VOD/SOS", "severe-liver-toxicity": "Severe liver toxicity",
    "gilbert-syndrome": "Gilbert's syndrome", "haemolysis": "Haemolysis", "cirrhosis": "Cirrhosis",
    "nodular-regenerative-hyperplasia": "Nodular regenerative hyperplasia",
    "active-hepatitis": "Active hepatitis", "liver-disease": "Liver disease", "b-all": "B-ALL",
    "pregnancy": "Pregnancy", "breastfeeding": "Breastfeeding", "tumour-lysis": "Tumour lysis",
    "prior-hsct": "Prior HSCT", "hsct-planned": "HSCT planned", "hsct": "HSCT",
    "all-in-remission": "ALL in remission", "qt-prolonging": "QT-prolonging drug",
    "live-vaccine": "Live vaccine", "corticosteroid": "Corticosteroid", "antipyretic": "Antipyretic",
    "antihistamine": "Antihistamine", "uric-acid-lowering": "Uric-acid-lowering drug",
    "alkylating-agent": "Alkylating agent", "hydroxyurea": "Hydroxyurea",
    "premedication": "Premedication", "infusion-reaction": "Infusion-related reaction",
    "hypersensitivity": "Hypersensitivity", "platelet-transfusion": "Platelet transfusion",
    "dose-history": "Last dose", "ordered-dose": "Ordered dose", "previous-dose": "Previous dose",
    "next-dose": "Next dose", "medication-history": "Administration record",
    "interruption": "Interruption", "disease-response": "Disease response", "age": "Age",
    "cycle-history": "Cycles given", "engine-error": "Internal error",
    "final-concentration": "Final concentration",
    "patient": "Patient",
}


def finding(concept: str) -> str:
    """The display name of an evidence row's concept (never the id as such)."""
    shown = name(concept)
    if shown != concept:
        return shown
    return CONCEPT_DISPLAY.get(concept) or concept.replace("-", " ").capitalize()


def when_text(x: datetime | date, today: date | None = None) -> str:
    """'2026-12-01 07:30 (yesterday)'; without `today` the date alone."""
    from app.engine.text import relative_day

    day = x.date() if isinstance(x, datetime) else x
    out = x.strftime("%Y-%m-%d %H:%M") if isinstance(x, datetime) else x.isoformat()
    return f"{out} ({relative_day(day, today)})" if today is not None else out


def _cell(x: object, today: date | None = None) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return num(x)
    if isinstance(x, (datetime, date)):
        return when_text(x, today)
    return clipped(str(x)).replace("|", "\\|")


_COLUMNS = ("Finding", "Value", "Unit", "ULN", "x ULN", "CTCAE grade", "Date", "Source", "Note")


def evidence_table(rows: Iterable[Evidence], today: date | None = None) -> str:
    """Markdown table: finding, value, unit, ULN, ratio, grade, date (in words when `today` is
    given), source, note. A column empty in every row is left out."""
    rows = list(rows)
    if not rows:
        return ""
    cells = [[
        _cell(finding(e.concept)), _cell(e.value), _cell(unit_text(e.unit or "")), _cell(e.uln),
        f"{e.ratio:.2f}" if e.ratio is not None else "", _cell(e.grade), _cell(e.date, today),
        _cell(e.reference), _cell(e.note),
    ] for e in rows]
    for r in cells:  # "HSCT planned | HSCT planned": the value says nothing the finding does not
        if r[1].lower() == r[0].lower():
            r[1] = ""
    keep = [i for i in range(len(_COLUMNS)) if i == 0 or any(r[i] for r in cells)]
    lines = ["| " + " | ".join(_COLUMNS[i] for i in keep) + " |",
             "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(r[i] for i in keep) + " |" for r in cells]
    return "\n".join(lines)


_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b(?![ T]?\d{2}:| \()")


def dates_in_words(text: str, today: date | None) -> str:
    """'since 2026-11-25' -> 'since 2026-11-25 (7 days ago)': each bare ISO date of a sentence
    gets its distance from today in words (not dates already followed by a time or words)."""
    if today is None:
        return text
    from app.engine.text import relative_day

    def words(m: re.Match) -> str:
        try:
            day = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return m[0]
        return f"{m[0]} ({relative_day(day, today)})"

    return _ISO_DATE.sub(words, text)


def unique(notes: Iterable[str | None]) -> list[str]:
    """Notes once each (the same note from two lookups is said once), in order."""
    seen: set[str] = set()
    out = []
    for n in notes:
        if n and n not in seen:
            seen.add(n)
            out.append(n)
    return out


def detail(
    what: str,
    *,
    evidence: Iterable[Evidence] = (),
    recovery: str | None = None,
    notes: Iterable[str] = (),
    choice: str | None = None,
    citations: Iterable[str] = (),
    label: Label = Label.EU,
    today: date | None = None,
) -> str:
    """Markdown detail: what and why, evidence table, recovery, notes, clinician's choice, source."""
    parts = [dates_in_words(what.strip(), today)]
    evidence = tuple(evidence)
    table = evidence_table(evidence, today)
    if table:
        parts.append(table)
    if recovery:
        parts.append(f"**Recovery / re-order when:** {recovery}")
    said = [e.note for e in evidence if e.note]  # a note an evidence row already says: once
    notes = [dates_in_words(n, today) for n in unique(notes)
             if not any(n.rstrip(".") in x for x in said)]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    if choice:
        parts.append(f"**Clinician's judgement:** {choice}")
    cites = ", ".join(citations)
    if cites:
        src = "EU SmPC" if label is Label.EU else "US Prescribing Information"
        parts.append(f"_Source: {cites} ({src})._")
    return "\n\n".join(parts)


def make(
    ctx: RuleContext,
    code: DecisionCode,
    rules: Iterable[str],
    citations: Iterable[str],
    summary: str,
    *,
    what: str,
    evidence: Iterable[Evidence] = (),
    recovery: str | None = None,
    notes: Iterable[str] = (),
    choice: str | None = None,
    **kw,
) -> Decision:
    """A Decision with the label in force, a clipped summary and the standard Markdown detail."""
    citations = tuple(citations)
    evidence = tuple(evidence)
    return Decision(
        code=code,
        rules=tuple(rules),
        citations=citations,
        summary=clip(summary),
        detail=detail(what, evidence=evidence, recovery=recovery, notes=notes, choice=choice,
                      citations=citations, label=ctx.label, today=ctx.now.date()),
        label=ctx.label,
        evidence=evidence,
        recovery_criteria=recovery if code is DecisionCode.HOLD else kw.pop("recovery_criteria", None),
        **kw,
    )


def ref_evidence(concept: str, reference: str | None, value: str | float | None = None,
                 when: datetime | date | None = None, note: str | None = None) -> Evidence:
    """Evidence for a non-lab fact (Condition, Procedure, medication, reaction, course)."""
    return Evidence(concept=concept, reference=reference, value=value, date=when, note=note)


def d(x: datetime | date | None) -> str:
    if x is None:
        return "date unknown"
    return (x.date() if isinstance(x, datetime) else x).isoformat()


def qty(value: float, unit: str) -> str:
    return f"{num(value)} {unit_text(unit)}".strip()
