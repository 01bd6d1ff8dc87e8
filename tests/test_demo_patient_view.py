"""patient-view for every demo patient: the next due dose, evaluated as an order for it (#10).

Expected decisions come from the label (app/demo/README.md), not from running the code. Also: the
sandbox's own request shapes for a QT-prolonging drug ordered for a patient on BESPONSA (ondansetron
sent as the tablet SCD 198052; Rx View omits `intent`, Rx Sign sends `category` as an object).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.demo import demo_request
from app.demo.fhir_server import set_store

SERVICE = "http://127.0.0.1:8080"
FIXTURES = Path(__file__).parent / "fixtures" / "cards"

# patient -> (decision of the first card, a rule it cites, all decisions, where the next dose is)
EXPECTED: dict[str, tuple[str, str, set[str], str]] = {
    "clean": ("proceed", "D-1", {"proceed"}, "Cycle 1 Day 1"),
    "hepatic": ("hold", "L-2", {"hold"}, "Cycle 1 Day 8"),
    "wrong-dose": ("proceed", "D-1", {"proceed"}, "Cycle 1 Day 8"),
    "no-response": ("discontinue", "D-8", {"discontinue"}, "Cycle 4 Day 1"),
    "neutropenia": ("hold", "H-2", {"hold"}, "Cycle 2 Day 1"),
    "vod": ("discontinue", "L-1", {"discontinue", "hold"}, "Cycle 1 Day 15"),
    "infusion-reaction": ("caution", "I-1", {"caution", "proceed"}, "Cycle 1 Day 8"),
    "interruption": ("reduce-dose", "T-3", {"reduce-dose"}, "Cycle 2 Day 1"),
    "stale-labs": ("obtain-data", "E-5", {"obtain-data"}, "Cycle 1 Day 8"),
    "qt": ("caution", "Q-1", {"caution", "proceed"}, "Cycle 1 Day 8"),
    "hsct-cycle3": ("caution", "D-7", {"caution", "proceed"}, "Cycle 3 Day 1"),
    "pregnancy": ("caution", "P-1", {"caution", "proceed"}, "Cycle 1 Day 1"),
    "live-vaccine": ("caution", "P-2", {"caution", "proceed"}, "Cycle 1 Day 8"),
}


def _qt_order(shape: str, patient: str = "demo-hepatic") -> dict[str, Any]:
    """The sandbox's ondansetron order (RxNorm SCD 198052) in the shape of its Rx View/Sign."""
    order = json.loads((FIXTURES / f"sandbox_rx_{shape}.json").read_text())
    order = copy.deepcopy(order)
    order["id"] = f"sandbox-ondansetron-{shape}"
    order["subject"] = {"reference": f"Patient/{patient}"}
    order["medicationCodeableConcept"] = {
        "text": "Ondansetron 4 MG Oral Tablet",
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "198052",
                    "display": "Ondansetron 4 MG Oral Tablet"}]}
    order["dosageInstruction"] = [{"doseAndRate": [{"doseQuantity": {
        "value": 4, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]}]
    return order


def _order_request(hook: str, order: dict[str, Any], patient: str = "demo-hepatic") -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/demo-haematologist", "patientId": patient,
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},  # no `type`
    }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{order['id']}"]
    return {"hookInstance": "5c0ffee0-0000-4000-8000-000000000010", "hook": hook,
            "fhirServer": f"{SERVICE}/fhir", "context": context}


async def _sandbox_prefetch(client: httpx.AsyncClient, templates: dict[str, str],
                            patient_id: str) -> dict[str, Any]:
    """What the sandbox sends: each template GET from the FHIR server; keys it failed to fill are
    left out (never null)."""
    out = {}
    for key, template in templates.items():
        query = template.replace("{{context.patientId}}", patient_id)
        r = await client.get(f"/fhir/{query}")
        if r.status_code == 200:
            out[key] = r.json()
    return out


def _fire(settings_kw: dict[str, Any], tmp: Path) -> dict[str, dict[str, Any]]:
    from app.http.app import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp / 'cards.db'}", log_level="WARNING",
                              **settings_kw))
    set_store(None)

    async def fire_all() -> dict[str, dict[str, Any]]:
        out = {}
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url=SERVICE) as client:
                for name in EXPECTED:
                    body = demo_request(f"{name}-patient-view", datetime.now(UTC), SERVICE)
                    r = await client.post("/cds-services/besponsa-patient-view", json=body)
                    assert r.status_code == 200, (name, r.text[:500])
                    out[name] = r.json()
                services = (await client.get("/cds-services")).json()["services"]
                [view] = [sv for sv in services if sv["hook"] == "patient-view"]
                for name in EXPECTED:  # as the sandbox sends it: prefetch filled by the browser
                    body = demo_request(f"{name}-patient-view", datetime.now(UTC), SERVICE)
                    body["prefetch"] = await _sandbox_prefetch(client, view["prefetch"],
                                                               body["context"]["patientId"])
                    body["hookInstance"] = "5c0ffee0-0000-4000-8000-0000000000aa"
                    r = await client.post("/cds-services/besponsa-patient-view", json=body)
                    assert r.status_code == 200, (name, r.text[:500])
                    out[f"{name}-sandbox"] = r.json()
                # a patient never given the drug, nothing planned (all prefetched, nothing else)
                empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
                prefetch = {k: empty for k in view["prefetch"]}
                prefetch["patient"] = {"resourceType": "Patient", "id": "p-none", "gender": "male"}
                r = await client.post("/cds-services/besponsa-patient-view", json={
                    "hookInstance": "5c0ffee0-0000-4000-8000-0000000000bb", "hook": "patient-view",
                    "context": {"userId": "Practitioner/x", "patientId": "p-none"},
                    "prefetch": prefetch})
                assert r.status_code == 200, r.text[:500]
                out["never-given"] = r.json()
                for name in EXPECTED:
                    body = demo_request(f"{name}-order-sign", datetime.now(UTC), SERVICE)
                    r = await client.post("/cds-services/besponsa-order-sign", json=body)
                    assert r.status_code == 200, (name, r.text[:500])
                    out[f"{name}-order-sign"] = r.json()
                for hook, shape in (("order-select", "view"), ("order-sign", "sign")):
                    r = await client.post(f"/cds-services/besponsa-{hook}",
                                          json=_order_request(hook, _qt_order(shape)))
                    assert r.status_code == 200, (hook, r.text[:500])
                    out[f"qt-{hook}"] = r.json()
                # a patient about to start (active order, no dose yet): the same caution
                r = await client.post("/cds-services/besponsa-order-sign", json=_order_request(
                    "order-sign", _qt_order("sign", "demo-clean"), "demo-clean"))
                assert r.status_code == 200, r.text[:500]
                out["qt-planned"] = r.json()
        return out

    try:
        return asyncio.run(fire_all())
    finally:
        set_store(None)


@pytest.fixture(scope="module")
def responses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    yield _fire({}, Path(tmp_path_factory.mktemp("pv")))


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    yield _fire({"patient_view_plan_card": False}, Path(tmp_path_factory.mktemp("pvq")))


def ext(card: dict[str, Any]) -> dict[str, Any]:
    return card["extension"]["besponsa-cds"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_demo_patient_view_shows_the_case(responses: dict[str, dict[str, Any]], name: str) -> None:
    first, rule, decisions, where = EXPECTED[name]
    cards = responses[name]["cards"]
    assert cards, name
    assert ext(cards[0])["decision"] == first, [c["summary"] for c in cards]
    assert rule in ext(cards[0])["rules"]
    assert {ext(c)["decision"] for c in cards} == decisions, [c["summary"] for c in cards]
    for c in cards:
        assert len(c["summary"]) < 140
        cycle, day = map(int, re.findall(r"\d+", where))
        assert c["summary"].startswith((f"Next dose, {where} due ",  # short head when needed
                                        f"Next dose, C{cycle} D{day} due ")), c["summary"]
        assert (ext(c)["nextDose"]["cycle"], ext(c)["nextDose"]["day"]) == (cycle, day)
        # there is no draft order on patient-view: nothing to update or delete
        actions = [a for s in c.get("suggestions", []) for a in s["actions"]]
        assert all(a["type"] == "create" for a in actions), actions
        assert "ordered-dose" not in c["detail"] and "Ordered dose" not in c["detail"]
    if first != "proceed" and first != "caution":
        assert "proceed" not in decisions
    infos = [c for c in cards if c["indicator"] == "info"]
    assert len(infos) == (1 if "proceed" in decisions else 0)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sandbox_shaped_patient_view_gives_the_same_cards(responses: dict[str, dict[str, Any]],
                                                          name: str) -> None:
    sandbox = [(ext(c)["decision"], c["summary"]) for c in responses[f"{name}-sandbox"]["cards"]]
    plain = [(ext(c)["decision"], c["summary"]) for c in responses[name]["cards"]]
    assert sandbox == plain and sandbox


def test_never_given_and_nothing_planned_gets_no_cards(responses: dict[str, dict[str, Any]]) -> None:
    assert responses["never-given"] == {"cards": []}


def test_neutropenia_hold_is_worded_for_the_chart(responses: dict[str, dict[str, Any]]) -> None:
    card = responses["neutropenia"]["cards"][0]
    assert re.match(r"Next dose, Cycle 2 Day 1 due today: hold .*ANC 0\.6 x10\^9/L", card["summary"])
    assert card["detail"].splitlines()[0].startswith("**Hold the next dose (Cycle 2 Day 1, due today)**")


def test_interruption_next_dose_is_overdue_and_reduced(responses: dict[str, dict[str, Any]]) -> None:
    card = responses["interruption"]["cards"][0]
    assert "(14 days ago)" in card["summary"]  # planned Day 22 of Cycle 1, 14 days ago
    assert ext(card)["dose"]["mg_per_m2"] == 0.6  # Table 4: -25 % after >= 14 days


def test_plan_card_states_the_dose_and_what_to_measure(responses: dict[str, dict[str, Any]]) -> None:
    card = responses["wrong-dose"]["cards"][0]  # the order was wrong; the plan is right
    assert "0.5 mg/m2" in card["summary"] and "0.83 mg" in card["summary"]
    assert "full blood count" in card["summary"] and "liver tests" in card["summary"]
    assert card["detail"].splitlines()[0].startswith("**Give the next dose")
    assert "Latest: ANC 1.9 x10^9/L (yesterday)" in card["detail"]
    assert card["source"]["topic"]["display"] == "Next dose: plan" and card["indicator"] == "info"
    clean = responses["clean"]["cards"][0]
    assert ext(clean)["nextDose"]["plannedOrder"] == "MedicationRequest/demo-clean-ino-plan"
    assert "No dose given yet" in clean["detail"]


def test_plan_card_can_be_switched_off(quiet: dict[str, dict[str, Any]]) -> None:
    assert quiet["clean"] == {"cards": []}
    assert {ext(c)["decision"] for c in quiet["qt"]["cards"]} == {"caution"}
    assert ext(quiet["hepatic"]["cards"][0])["decision"] == "hold"  # objections still show


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_sandbox_qt_drug_order_gives_q1_caution(responses: dict[str, dict[str, Any]], hook: str) -> None:
    cards = responses[f"qt-{hook}"]["cards"]
    assert [ext(c)["decision"] for c in cards] == ["caution"], [c["summary"] for c in cards]
    assert ext(cards[0])["rules"] == ["Q-1"]
    assert "Ondansetron 4 MG Oral Tablet" in cards[0]["summary"]


# --- cards a nurse can read (#10) --------------------------------------------------------------

def _all_cards(responses: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, c) for k, v in responses.items() for c in v["cards"]]


def _tables(detail: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in detail.splitlines():
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_cards_show_display_names_not_internal_ids(responses: dict[str, dict[str, Any]]) -> None:
    from app.engine.facts import Analyte
    from app.engine.rules.decision_text import CONCEPT_DISPLAY

    ids = set(CONCEPT_DISPLAY) | {a.value for a in Analyte}
    for key, card in _all_cards(responses):
        for table in _tables(card["detail"]):
            for row in table[2:]:
                assert row[0] not in ids, (key, row)


def test_no_empty_table_columns(responses: dict[str, dict[str, Any]]) -> None:
    for key, card in _all_cards(responses):
        for table in _tables(card["detail"]):
            header, rows = table[0], table[2:]
            for i, column in enumerate(header):
                assert any(r[i] for r in rows), (key, column)


def test_durations_and_dates_in_words(responses: dict[str, dict[str, Any]]) -> None:
    for key, card in _all_cards(responses):
        assert not re.search(r"\w\(s\)", card["detail"] + card["summary"]), key  # "day(s)"
    hepatic = responses["hepatic-order-sign"]["cards"][0]["detail"]
    assert "(yesterday)" in hepatic  # the lab dates of the evidence table


def test_a_note_is_said_once_per_card(responses: dict[str, dict[str, Any]]) -> None:
    for key, card in _all_cards(responses):
        bullets = [line for line in card["detail"].splitlines() if line.startswith("- ")]
        assert len(bullets) == len(set(bullets)), (key, bullets)
    stale = responses["stale-labs-order-sign"]["cards"][0]["detail"]
    assert stale.count("since the previous dose on") == 1  # said once, not per result
    assert stale.count("| stale: too old |") == 6


def test_first_line_of_the_detail_says_what_to_do(responses: dict[str, dict[str, Any]]) -> None:
    for key, card in _all_cards(responses):
        first = card["detail"].splitlines()[0]
        if key.endswith("order-sign") or key.startswith("qt-order") or key == "qt-planned":
            assert first.startswith("**What to do: "), (key, first)
        else:  # patient-view: the action on the next dose
            assert first.startswith("**") and "the next dose" in first, (key, first)
    hold = responses["neutropenia-order-sign"]["cards"][0]["detail"].splitlines()[0]
    assert hold == "**What to do: do not give this dose now; re-order when ANC >= 1 x10^9/L.**"


def test_qt_drug_for_a_patient_about_to_start(responses: dict[str, dict[str, Any]]) -> None:
    [card] = responses["qt-planned"]["cards"]
    assert ext(card)["decision"] == "caution" and ext(card)["rules"] == ["Q-1"]
    assert "planned (not yet given)" in card["summary"]

