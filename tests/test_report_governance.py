"""Governance report: per rule, cards shown / accepted / overridden / override reasons (text, JSON,
GET /governance/report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.http.report import router as report_router
from app.storage import CardStore, open_store
from app.storage.report import render_report
from tests.test_storage_support import NOW, accepted, items, overridden, record


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    s = open_store(f"sqlite:///{tmp_path}/report.db")
    # Two responses (3 cards each: L-2 hold, D-4/D-5 correct-dose, E-5 obtain-data).
    first = record(s, hook_instance="h1")
    second = record(s, hook_instance="h2")
    s.record_feedback("besponsa-order-sign", items(
        overridden(first[0]),                                    # L-2: Gilbert's
        overridden(second[0], code="clinical-judgement-documented", comment="x"),  # L-2: judgement
        accepted(first[1]),                                      # D-4/D-5 accepted
        overridden(second[1], code=None),                        # D-4/D-5 overridden, no reason
        # a later answer replaces an earlier one for the same card (latest outcome counts)
        overridden(first[2], code="data-verified-elsewhere", when="2026-11-23T10:00:00Z"),
        accepted(first[2], when="2026-11-23T11:00:00Z"),
    ), NOW)
    return s


def test_report_counts_per_rule(store: CardStore) -> None:
    report = store.report()
    assert report["totals"] == {"cards": 6, "accepted": 2, "overridden": 3, "noFeedback": 1,
                                "feedbackReceived": 6}
    rules = {r["rule"]: r for r in report["rules"]}
    assert [r["rule"] for r in report["rules"]] == ["D-4", "D-5", "E-5", "L-2"]
    l2 = rules["L-2"]
    assert (l2["shown"], l2["accepted"], l2["overridden"], l2["noFeedback"]) == (2, 0, 2, 0)
    assert l2["decisions"] == {"hold": 2}
    assert [(x["code"], x["count"]) for x in l2["overrideReasons"]] == [
        ("clinical-judgement-documented", 1), ("gilbert-or-haemolysis", 1)]
    d4 = rules["D-4"]
    assert (d4["shown"], d4["accepted"], d4["overridden"], d4["overriddenWithoutReason"]) == (2, 1, 1, 1)
    assert rules["D-5"]["shown"] == 2  # a card counts under every rule that produced it
    e5 = rules["E-5"]
    assert (e5["accepted"], e5["overridden"], e5["noFeedback"], e5["overrideReasons"]) == (1, 0, 1, [])


def test_render_text_and_json(store: CardStore) -> None:
    text = render_report(store)
    assert "Cards shown: 6  accepted: 2  overridden: 3  no feedback: 1" in text
    l2_line = next(line for line in text.splitlines() if line.startswith("L-2 "))
    assert l2_line.split()[:6] == ["L-2", "2", "0", "2", "0", "100%"]
    assert "Bilirubin due to Gilbert's syndrome or haemolysis (gilbert-or-haemolysis)" in text
    assert "(no reason given)" in text
    assert json.loads(render_report(store, "json")) == store.report()
    with pytest.raises(ValueError):
        render_report(store, "xml")


def test_empty_store_report(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/empty.db")
    assert "No cards recorded yet." in render_report(s)
    assert s.report()["rules"] == []


def test_report_endpoint_is_read_only_json(store: CardStore) -> None:
    app = FastAPI()
    app.state.store = store
    app.include_router(report_router)
    client = TestClient(app)
    r = client.get("/governance/report")
    assert r.status_code == 200 and r.json() == store.report()
    assert client.post("/governance/report").status_code == 405
