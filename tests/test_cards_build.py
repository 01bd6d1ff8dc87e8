"""Card contract (clinical-rules.md section 6, CDS Hooks 2.0): order, indicator, source, extension,
links, override reasons, no null or empty members."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fhir.resources.R4B.codesystem import CodeSystem

from app import overrides
from app.cards import EMA_EPAR_URL, FDA_LABEL_URL, CardContext, build_cards
from app.engine.decisions import Decision, DecisionCode, DoseRecommendation, Evidence, Label
from app.extensions import OVERRIDE_REASON_SYSTEM
from tests.conftest import assert_no_empty_members

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CTX = CardContext(patient_id="p1", now=NOW)

L2 = Decision(
    code=DecisionCode.HOLD,
    rules=("L-2",),
    citations=("SmPC 4.2 Table 3", "SmPC 4.4"),
    summary="Hold: bilirubin 2.1 mg/dL = 1.75 x ULN and ALT 130 U/L = 3.25 x ULN (SmPC 4.2 Table 3)",
    detail="| lab | value | ULN | ratio |\n|---|---|---|---|\n| bilirubin | 2.1 mg/dL | 1.2 | 1.75 |",
    evidence=(
        Evidence("bilirubin-total", "Observation/bili", "http://loinc.org|1975-2", 2.1, "mg/dL", 1.2, 1.75, 2,
                 datetime(2026, 11, 22, 7, tzinfo=UTC)),
        Evidence("alt", "Observation/alt", "http://loinc.org|1742-6", 130.0, "U/L", 40.0, 3.25, 2,
                 date(2026, 11, 22)),
    ),
    hold_until=date(2026, 11, 30),
    recovery_criteria="bilirubin <= 1.5 x ULN and AST/ALT <= 2.5 x ULN",
)
PROCEED = Decision(
    code=DecisionCode.PROCEED, rules=("D-1", "D-5", "R-1"), citations=("SmPC 4.2 Table 1", "SmPC 6.6"),
    summary="Proceed: 0.8 mg/m2 x BSA 1.82 m2 = 1.45 mg (2 vials)", detail="Cycle 1 Day 1.",
    dose=DoseRecommendation(0.8, 1.45, 1.8181, 1, 1, vials=2, reconstituted_volume_ml=5.8),
)
DISCONTINUE_US = Decision(
    code=DecisionCode.DISCONTINUE, rules=("H-5",), citations=("USPI 2.3 Table 2",),
    summary="Discontinue: ANC < 1 x 10^9/L for 30 days", detail="", label=Label.US,
    override_reasons=("not-besponsa-related", "no-such-code"),
)


def test_one_card_per_decision_in_engine_order() -> None:
    cards = build_cards([DISCONTINUE_US, L2, PROCEED], CTX)
    decisions = [c.extension["besponsa-cds"]["decision"] for c in cards]
    assert decisions == ["discontinue", "hold", "proceed"]
    assert [c.indicator for c in cards] == ["critical", "warning", "info"]
    assert len({c.uuid for c in cards}) == 3


def test_extension_contract_and_evidence() -> None:
    card = build_cards([L2], CTX)[0].to_json()
    ext = card["extension"]["besponsa-cds"]
    assert ext["decision"] == "hold" and ext["rules"] == ["L-2"] and ext["label"] == "EU"
    assert ext["citations"] == ["SmPC 4.2 Table 3", "SmPC 4.4"]
    bili, alt = ext["evidence"]
    assert bili == {"concept": "bilirubin-total", "reference": "Observation/bili", "code": "http://loinc.org|1975-2",
                    "value": 2.1, "unit": "mg/dL", "uln": 1.2, "ratio": 1.75, "grade": 2,
                    "date": "2026-11-22T07:00:00+00:00"}
    assert alt["date"] == "2026-11-22" and "note" not in alt
    assert ext["holdUntil"] == "2026-11-30"
    assert_no_empty_members(card)


def test_source_topic_and_links_follow_the_label() -> None:
    eu, us = (c.to_json() for c in build_cards([L2, DISCONTINUE_US], CTX))
    assert eu["source"]["label"] == "besponsa-cds (EU SmPC)" and eu["source"]["url"] == EMA_EPAR_URL
    assert eu["source"]["topic"]["code"] == "hold" and eu["source"]["topic"]["display"]
    assert eu["links"] == [{"label": "EU SmPC (EMA): SmPC 4.2 Table 3, SmPC 4.4", "url": EMA_EPAR_URL,
                            "type": "absolute"}]
    assert us["source"]["label"] == "besponsa-cds (US PI)" and us["source"]["url"] == FDA_LABEL_URL
    assert us["links"][0]["url"] == FDA_LABEL_URL and "USPI 2.3 Table 2" in us["links"][0]["label"]
    assert FDA_LABEL_URL.startswith("https://www.accessdata.fda.gov/") and "761040" in FDA_LABEL_URL


def test_override_reasons_decision_first_then_rule_defaults_then_generic() -> None:
    hold, disc = (c.to_json() for c in build_cards([L2, DISCONTINUE_US], CTX))
    assert [r["code"] for r in hold["overrideReasons"]] == ["gilbert-or-haemolysis", "clinical-judgement-documented",
                                                            "data-incorrect"]
    # the decision's own code first; an unknown code is dropped (a Coding needs a display)
    assert [r["code"] for r in disc["overrideReasons"]] == ["not-besponsa-related", "due-to-underlying-disease",
                                                            "clinical-judgement-documented", "data-incorrect"]
    for r in hold["overrideReasons"] + disc["overrideReasons"]:
        assert r["system"] == OVERRIDE_REASON_SYSTEM and r["display"]


def test_inferred_interruption_offers_not_due_to_toxicity() -> None:
    d = Decision(code=DecisionCode.OMIT_DOSE, rules=("T-2",), citations=("SmPC 4.2 Table 4",),
                 summary="Omit: interruption of 8 days", detail="x", inferred=True)
    card = build_cards([d], CTX)[0].to_json()
    assert card["overrideReasons"][0]["code"] == "interruption-not-due-to-toxicity"
    assert "inferred" in card["detail"] and card["extension"]["besponsa-cds"]["inferred"] is True


def test_proceed_card_has_no_suggestions_or_override_reasons_and_carries_dose() -> None:
    card = build_cards([PROCEED], CTX)[0].to_json()
    assert "suggestions" not in card and "overrideReasons" not in card and "selectionBehavior" not in card
    assert card["extension"]["besponsa-cds"]["dose"]["mg"] == 1.45
    assert card["extension"]["besponsa-cds"]["dose"]["vials"] == 2
    assert_no_empty_members(card)


def test_empty_members_are_never_emitted() -> None:
    bare = Decision(code=DecisionCode.CAUTION, rules=("E-2",), citations=(), summary="Age 17: caution",
                    detail="   ", evidence=())
    card = build_cards([bare], CTX)[0].to_json()
    assert_no_empty_members(card)
    ext = card["extension"]["besponsa-cds"]
    assert "evidence" not in ext and "citations" not in ext and "detail" not in card
    assert card["links"][0]["url"] == EMA_EPAR_URL


def test_summary_is_limited_to_140_characters() -> None:
    long = Decision(code=DecisionCode.CAUTION, rules=("V-1",), citations=("SmPC 4.4",), summary="x" * 200,
                    detail="d")
    card = build_cards([long], CTX)[0]
    assert len(card.summary) == 140 and card.summary.endswith("…")


def test_override_code_system_is_valid_fhir_and_complete() -> None:
    cs = overrides.code_system_resource()
    CodeSystem.model_validate(cs)
    assert cs["url"] == OVERRIDE_REASON_SYSTEM
    assert {c["code"] for c in cs["concept"]} == set(overrides.REASONS)
    # every rule default names a defined code
    assert all(c in overrides.REASONS for codes in overrides.RULE_DEFAULTS.values() for c in codes)
