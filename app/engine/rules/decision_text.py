"""Shared wording for the toxicity/eligibility decisions: summaries, evidence tables, citations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.labs import name, num, unit_text

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


def _cell(x: object) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return num(x)
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d %H:%M")
    if isinstance(x, date):
        return x.isoformat()
    return str(x).replace("|", "\\|")


def evidence_table(rows: Iterable[Evidence]) -> str:
    """Markdown table: finding, value, unit, ULN, ratio, grade, date, source, note."""
    rows = list(rows)
    if not rows:
        return ""
    lines = [
        "| Finding | Value | Unit | ULN | x ULN | CTCAE grade | Date | Source | Note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        ratio = f"{e.ratio:.2f}" if e.ratio is not None else ""
        lines.append(
            "| " + " | ".join([
                _cell(name(e.concept)), _cell(e.value), _cell(unit_text(e.unit or "")),
                _cell(e.uln), ratio, _cell(e.grade), _cell(e.date), _cell(e.reference),
                _cell(e.note),
            ]) + " |"
        )
    return "\n".join(lines)


def detail(
    what: str,
    *,
    evidence: Iterable[Evidence] = (),
    recovery: str | None = None,
    notes: Iterable[str] = (),
    choice: str | None = None,
    citations: Iterable[str] = (),
    label: Label = Label.EU,
) -> str:
    """Markdown detail: what and why, evidence table, recovery, notes, clinician's choice, source."""
    parts = [what.strip()]
    table = evidence_table(evidence)
    if table:
        parts.append(table)
    if recovery:
        parts.append(f"**Recovery / re-order when:** {recovery}")
    notes = [n for n in notes if n]
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
                      citations=citations, label=ctx.label),
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
