"""Cards a nurse can read (#10): display names, no empty columns, dates and durations in words,
a note once per card, the detail's first line says what to do."""

from __future__ import annotations

from datetime import date

from app.cards import action_line
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation, Evidence
from app.engine.rules.decision_text import dates_in_words, detail, evidence_table, finding
from app.engine.text import duration, plural, relative_day

TODAY = date(2026, 12, 2)


def test_relative_days_and_durations_in_words() -> None:
    assert relative_day(TODAY, TODAY) == "today"
    assert relative_day(date(2026, 12, 1), TODAY) == "yesterday"
    assert relative_day(date(2026, 11, 29), TODAY) == "3 days ago"
    assert relative_day(date(2026, 12, 9), TODAY, with_date=True) == "2026-12-09 (in 7 days)"
    assert duration(0) == "less than a day" and duration(1) == "1 day" and duration(3) == "3 days"
    assert plural(1, "vial") == "1 vial" and plural(2, "vial") == "2 vials"


def test_evidence_table_reads_well() -> None:
    rows = [Evidence(concept="vod-sos", reference="Condition/c1", value="VOD/SOS",
                     date=date(2026, 12, 1)),
            Evidence(concept="hsct-planned", reference="Procedure/p1", value="HSCT planned")]
    table = evidence_table(rows, today=TODAY)
    assert table.splitlines()[0] == "| Finding | Date | Source |"  # no empty columns
    assert "| VOD/SOS | 2026-12-01 (yesterday) | Condition/c1 |" in table
    assert "vod-sos" not in table and "hsct-planned" not in table
    assert finding("platelet-transfusion") == "Platelet transfusion"
    assert finding("some-new-concept") == "Some new concept"  # never the bare id


def test_dates_in_sentences_get_words_once() -> None:
    text = "Give on or after 2026-12-09. Given 2026-11-29 08:00; seen 2026-12-01 (yesterday)."
    assert dates_in_words(text, TODAY) == (
        "Give on or after 2026-12-09 (in 7 days). Given 2026-11-29 08:00; seen 2026-12-01 "
        "(yesterday).")
    assert dates_in_words(text, None) == text


def test_a_note_is_said_once() -> None:
    ev = (Evidence(concept="alt", note="stale: no ALT result since the previous dose on 2026-11-25"),)
    md = detail("Liver tests are needed.", evidence=ev,
                notes=["no ALT result since the previous dose on 2026-11-25.", "Other note.",
                       "Other note."], today=TODAY)
    assert md.count("no ALT result since the previous dose") == 1  # the table row says it
    assert md.count("Other note.") == 1


def _decision(code: DecisionCode, **kw) -> Decision:
    return Decision(code=code, rules=("X-1",), citations=(), summary="s", detail="d", **kw)


def test_first_line_says_what_to_do() -> None:
    dose = DoseRecommendation(mg_per_m2=0.5, mg=0.91, bsa_m2=1.82, cycle=1, day=8)
    assert action_line(_decision(DecisionCode.HOLD, hold_until=date(2026, 12, 9))) == (
        "**What to do: do not give this dose now; re-order on or after 2026-12-09.**")
    assert action_line(_decision(DecisionCode.CORRECT_DOSE, dose=dose)) == (
        "**What to do: change the dose to 0.91 mg (0.5 mg/m2 x BSA 1.82 m2).**")
    assert action_line(_decision(DecisionCode.OBTAIN_DATA,
                                 needed_data=("hepatic-panel", "cbc-differential"))) == (
        "**What to do: obtain liver tests and a full blood count with differential before giving "
        "the dose.**")
    assert action_line(_decision(DecisionCode.DISCONTINUE)).startswith(
        "**What to do: do not give inotuzumab ozogamicin")
    # patient-view decisions open with the action on the next dose instead
    assert action_line(_decision(DecisionCode.HOLD, extras={"next_dose": object()})) is None
