"""Shared formatting for decision summaries and Markdown details."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import date, datetime

from app.engine.decisions import Evidence, Label
from app.engine.facts import Measurement

SUMMARY_MAX = 139  # CDS Hooks: summary under 140 characters


EVIDENCE_CHARS = 200  # the most of one evidence cell or member a card shows (ids, texts as sent)


def clipped(text: str, limit: int = EVIDENCE_CHARS) -> str:
    """`text` cut to `limit` characters ("..." marks the cut): a card never repeats the megabytes
    a body may hold where an id or a display text belongs."""
    return text if len(text) <= limit else text[:limit] + "…"


def num(x: float | None, digits: int = 3) -> str:
    """0.5 -> "0.5", 0.375 -> "0.375", 1.4700 -> "1.47", 2.0 -> "2"; None -> "?"."""
    if x is None:
        return "?"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def mg(x: float | None) -> str:
    return f"{num(x, 2)} mg"


def mg_m2(x: float | None) -> str:
    return f"{num(x, 3)} mg/m2"


def pct(x: float, digits: int = 1) -> str:
    return f"{num(100 * x, digits)} %"


def day_str(x: datetime | date | None) -> str:
    if x is None:
        return "?"
    return (x.date() if isinstance(x, datetime) else x).isoformat()


def relative_day(day: date, today: date, *, with_date: bool = False) -> str:
    """A date in words relative to today: "today", "yesterday", "3 days ago", "in 7 days";
    with_date adds the date ("2026-12-09 (in 7 days)"), never for today."""
    n = (day - today).days
    if n == 0:
        return "today"
    words = {-1: "yesterday", 1: "tomorrow"}.get(n) or (
        f"{-n} days ago" if n < 0 else f"in {n} days")
    return f"{day.isoformat()} ({words})" if with_date else words


def plural(n: float, word: str, words: str | None = None) -> str:
    """'1 vial', '2 vials', '1 hour', '0.5 hours' (never 'vial(s)')."""
    return f"{num(n)} {word if n == 1 else (words or word + 's')}"


def duration(days: int) -> str:
    """A number of days in words: "less than a day", "1 day", "3 days"."""
    if days <= 0:
        return "less than a day"
    return "1 day" if days == 1 else f"{days} days"


def summary(text: str) -> str:
    """A summary under 140 characters (CDS Hooks 2.0 card summary)."""
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def evidence_table(evidence: Iterable[Evidence], today: date | None = None) -> str:
    """Markdown evidence table, the same columns as the toxicity rules' cards (finding, value,
    unit, ULN, x ULN, CTCAE grade, date, source, note; empty columns left out)."""
    from app.engine.rules.decision_text import evidence_table as table

    return table(evidence, today)


def detail(*parts: str | None, citations: Iterable[str] = (), notes: Iterable[str] = (),
           label: Label = Label.EU, today: date | None = None) -> str:
    """Markdown detail: paragraphs, then how the course was read, then the citation line. With
    `today`, bare dates in paragraphs and notes get their distance in words (tables keep theirs)."""
    from app.engine.rules.decision_text import dates_in_words

    out = [p if p.startswith("|") else dates_in_words(p, today) for p in parts if p]
    notes = [dates_in_words(n, today) for n in dict.fromkeys(n for n in notes if n)]  # once
    if notes:
        out.append("How the course was read:\n" + "\n".join(f"- {n}" for n in notes))
    cites = ", ".join(citations)
    if cites:
        src = "US Prescribing Information" if label == Label.US else "EU SmPC"
        out.append(f"_Source: {cites} ({src})._")
    return "\n\n".join(out)


_SENT = re.compile(r"^\s*(?:[<>]=?|≤|≥)?\s*([-+]?\d+(?:[.,]\d+)?)\s*(.*)$")


def sent_as(m: Measurement) -> str | None:
    """The value and unit as the EHR sent them ("36 umol/L"), when they differ from the
    canonical value the rules use (2.1 mg/dL); None when the EHR sent the canonical value."""
    match = _SENT.match(m.original or "")
    if not match:
        return None
    sent = float(match.group(1).replace(",", "."))
    if math.isclose(sent, m.value, rel_tol=1e-6, abs_tol=1e-9):
        return None
    return m.original.strip()


def measured(m: Measurement, note: str | None = None, **kw) -> Evidence:
    """Evidence row for a measurement: the canonical value and unit, and beside them the value
    as sent when it was converted (a bilirubin sent in umol/L keeps its umol/L)."""
    sent = sent_as(m)
    notes = "; ".join(n for n in (note, f"sent as {sent}, converted" if sent else None) if n)
    return Evidence(concept=m.analyte.value, reference=m.reference, code=m.code or None,
                    value=m.value, unit=m.unit, date=m.effective, note=notes or None, sent=sent,
                    **kw)
