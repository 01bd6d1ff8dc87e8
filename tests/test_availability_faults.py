"""Issue #8: never advise on data the service did not read. End to end (HTTP -> retrieval ->
facts -> engine -> cards) against a respx FHIR server that fails one data domain at a time.

Chart: BSA 2.00 m2 (180 cm, 80 kg); Cycle 1 Day 1 = 1.6 mg (0.8 mg/m2) given 7 days ago; the
draft is Day 8 = 1.0 mg (0.5 mg/m2, SmPC 4.2 Table 1). Read whole, it gets `proceed`. If the
history were rebuilt as "Cycle 1 Day 1" the service would offer an update to 1.6 mg: it must not.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.prefetch_queries import PREFETCH_TEMPLATES

SERVER = "https://fhir.example.org/r4"
EVIL = "https://elsewhere.example.com/r4"
TOKEN = "fault-token-7f3a"
PATIENT = "av-patient"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NOW = datetime.now(UTC)
TIMEOUT_S = 0.6

KEY_OF_CODE = {"8302-2": "vitals", "29463-7": "vitals", "751-8": "cbc", "777-3": "cbc",
               "97509-4": "disease"}


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="seconds")


def _obs(oid: str, loinc: str, value: float, ucum: str, days_ago: float, high: float | None = None) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": _iso(days_ago),
        "valueQuantity": {"value": value, "unit": ucum, "system": UCUM, "code": ucum},
    }
    if high is not None:
        res["referenceRange"] = [{"high": {"value": high, "unit": ucum, "system": UCUM, "code": ucum}}]
    return res


def _administration(aid: str, days_ago: float, mg: float) -> dict:
    return {
        "resourceType": "MedicationAdministration", "id": aid, "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1942950"}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": _iso(days_ago),
        "dosage": {"dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}},
    }


def _draft(mg: float) -> dict:
    return {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "av-draft", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1942950"}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "authoredOn": _iso(0),
        "dosageInstruction": [{"timing": {"event": [_iso(0)]}, "doseAndRate": [
            {"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}]}],
    }}]}


def _observations(days_ago_first_dose: float) -> list[dict]:
    pre = days_ago_first_dose + 1
    out = []
    for suffix, when in (("pre", pre), ("now", 1)):
        out += [
            _obs(f"bili-{suffix}", "1975-2", 0.6, "mg/dL", when, high=1.2),
            _obs(f"ast-{suffix}", "1920-8", 22, "U/L", when, high=34),
            _obs(f"alt-{suffix}", "1742-6", 25, "U/L", when, high=40),
            _obs(f"alp-{suffix}", "6768-6", 80, "U/L", when, high=120),
            _obs(f"anc-{suffix}", "751-8", 2.5, "10*9/L", when),
            _obs(f"plt-{suffix}", "777-3", 180, "10*9/L", when),
            _obs(f"ht-{suffix}", "8302-2", 180, "cm", when),
            _obs(f"wt-{suffix}", "29463-7", 80, "kg", when),
        ]
    return out


def _in_cr(days_ago: float) -> dict:
    """A disease-response Observation: in full remission (C-5 a)."""
    return {"resourceType": "Observation", "id": "response-cr", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "97509-4"}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": _iso(days_ago),
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "103338009"}]}}


def chart(*, day8: bool = True, cycle2: bool = False) -> dict[str, list[dict]]:
    """Resources per prefetch key (searches) and the Patient (read). Default: Cycle 1 Day 8;
    cycle2: Cycle 1 given (28, 21, 14 days ago), CR recorded, the draft is Cycle 2 Day 1."""
    by_key: dict[str, list[dict]] = {k: [] for k in PREFETCH_TEMPLATES}
    first = 28 if cycle2 else 7 if day8 else 0
    for o in _observations(first) + ([_in_cr(3)] if cycle2 else []):
        by_key[KEY_OF_CODE.get(o["code"]["coding"][0]["code"], "labs")].append(o)
    by_key["medicationAdministrations"] = [_administration("c1d1", 7, 1.6)] if day8 else []
    if cycle2:
        by_key["medicationAdministrations"] = [_administration("c1d1", 28, 1.6), _administration("c1d8", 21, 1.0),
                                               _administration("c1d15", 14, 1.0)]
    by_key["patient"] = [{"resourceType": "Patient", "id": PATIENT, "gender": "male", "birthDate": "1970-01-01"}]
    return by_key


def _searchset(resources: list[dict], next_url: str | None = None) -> dict:
    b: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


_BOMB: bytes | None = None


def _gzip_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:  # 40 MB of JSON whitespace, ~40 kB on the wire
        _BOMB = gzip.compress(b'{"resourceType": "Bundle", "entry": [' + b" " * 40_000_000 + b"]}", 9)
    return _BOMB


def _key_of(request: httpx.Request) -> str:
    params = parse_qs(urlsplit(str(request.url)).query)
    if "key" in params:  # our own next-page links
        return params["key"][0]
    path = request.url.path.removeprefix("/r4/")
    rtype = path.split("/")[0]
    if rtype == "Patient":
        return "patient"
    codes = params.get("code", [""])[0]
    for key, template in PREFETCH_TEMPLATES.items():
        t_type = template.split("?")[0]
        if t_type != rtype:
            continue
        if rtype != "Observation" or parse_qs(template.split("?", 1)[1]).get("code", [""])[0] == codes:
            return key
    raise AssertionError(f"unexpected query {request.url}")


class FaultyServer:
    """A FHIR server answering `chart` and failing `fault_key` with `fault`."""

    def __init__(self, data: dict[str, list[dict]], fault_key: str | None, fault: str | None) -> None:
        self.data, self.fault_key, self.fault = data, fault_key, fault
        self.auth_seen: list[tuple[str, str | None]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.auth_seen.append((str(request.url), request.headers.get("authorization")))
        key = _key_of(request)
        resources = self.data[key]
        if key == "patient":
            if key == self.fault_key and self.fault in _STATUS:
                return httpx.Response(_STATUS[self.fault])
            return httpx.Response(200, json=resources[0])
        page = int(parse_qs(urlsplit(str(request.url)).query).get("page", ["1"])[0])
        if key != self.fault_key:
            return httpx.Response(200, json=_searchset(resources))
        return await self._fail(key, resources, page)

    async def _fail(self, key: str, resources: list[dict], page: int) -> httpx.Response:
        f = self.fault
        if f in _STATUS:
            return httpx.Response(_STATUS[f], json={"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "processing", "diagnostics": "failure"}]})
        if f == "unsupported":
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-supported", "diagnostics": "Unknown resource type"}]})
        if f == "timeout":
            await asyncio.sleep(5)
            return httpx.Response(200, json=_searchset(resources))
        if f == "slow-drip":
            async def drip():
                yield b'{"resourceType": "Bundle", "entry": ['
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    yield b" "
                yield b"]}"
            return httpx.Response(200, content=drip(), headers={"Content-Type": "application/fhir+json"})
        if f == "gzip-bomb":  # streamed in network-sized chunks, as a server sends it
            bomb = _gzip_bomb()

            async def chunks():
                for i in range(0, len(bomb), 65536):
                    yield bomb[i:i + 65536]
            return httpx.Response(200, content=chunks(), headers={
                "Content-Type": "application/fhir+json", "Content-Encoding": "gzip"})
        if f == "malformed":
            return httpx.Response(200, content=b'{"resourceType": "Bundle", "entry": [',
                                  headers={"Content-Type": "application/fhir+json"})
        if f == "other-origin-next":  # page 1 is empty; the rest sits on another server
            return httpx.Response(200, json=_searchset([], next_url=f"{EVIL}/{key}?page=2"))
        if f == "page-limit":  # one resource per page, pages without end (the history is on page 3)
            return httpx.Response(200, json=_searchset([], next_url=f"{SERVER}/more?key={key}&page={page + 1}"))
        if f == "page-fails":
            if page == 1:
                return httpx.Response(200, json=_searchset([], next_url=f"{SERVER}/more?key={key}&page=2"))
            return httpx.Response(500)
        raise AssertionError(f)


_STATUS = {"500": 500, "401": 401, "403": 403}
FAULTS = ["500", "401", "403", "timeout", "slow-drip", "gzip-bomb", "malformed", "other-origin-next",
          "page-limit", "page-fails", "unsupported"]
WORDING = {  # what the card says of the domain
    "500": "could not be read", "401": "could not be read", "403": "could not be read",
    "timeout": "could not be read", "slow-drip": "could not be read", "gzip-bomb": "could not be read",
    "malformed": "could not be read", "other-origin-next": "only partly read",
    "page-limit": "only partly read", "page-fails": "only partly read",
    "unsupported": "not supported by the FHIR server",
}
DOSE_KEYS = {  # prefetch key -> domain (ClinicalFacts.availability) and its words on the card
    "medicationAdministrations": ("administrations", "administration history"),
    "labs": ("liver-labs", "liver tests"),
    "cbc": ("blood-counts", "blood counts"),
    "vitals": ("height-weight", "height and weight"),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app.http.app import create_app
    from app.settings import Settings

    db = tmp_path_factory.mktemp("av") / "av.db"
    settings = Settings(database_url=f"sqlite:///{db}", embedded_fhir=False, log_level="WARNING",
                        fhir_timeout_seconds=TIMEOUT_S, fhir_max_pages=3,
                        fhir_max_response_bytes=2_000_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def call(client, hook: str, server: FaultyServer, draft_mg: float | None = 1.0, **extra) -> tuple[dict, float]:
    context: dict[str, Any] = {"userId": "Practitioner/av", "patientId": PATIENT}
    if draft_mg is not None and hook != "patient-view":
        context["draftOrders"] = _draft(draft_mg)
    auth = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read",
            "subject": "cds"}
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "fhirServer": SERVER, "fhirAuthorization": auth, **extra}
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.route(url__startswith=EVIL).mock(return_value=httpx.Response(200, json=_searchset([])))
        mock.route(url__startswith=SERVER).mock(side_effect=server)
        start = time.perf_counter()
        res = client.post(f"/cds-services/besponsa-{hook}", json=body)
        elapsed = time.perf_counter() - start
        assert evil.call_count == 0, "a page on another origin was requested"
    assert res.status_code == 200, res.text
    return res.json(), elapsed


def ext(card: dict) -> dict:
    return card["extension"]["besponsa-cds"]


def decisions(body: dict) -> list[str]:
    return [ext(c)["decision"] for c in body["cards"]]


def actions(body: dict, kind: str) -> list[dict]:
    return [a for c in body["cards"] for s in c.get("suggestions", []) for a in s.get("actions", [])
            if a["type"] == kind]


def test_whole_chart_gets_proceed_for_day_8(client):
    body, _ = call(client, "order-sign", FaultyServer(chart(), None, None))
    assert "proceed" in decisions(body), decisions(body)
    proceed = next(c for c in body["cards"] if ext(c)["decision"] == "proceed")
    assert "Day 8" in proceed["summary"] and proceed["indicator"] == "info"
    assert actions(body, "update") == []
    assert all("notRead" not in ext(c) for c in body["cards"])


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("key", list(DOSE_KEYS))
def test_dose_deciding_domain_not_read_gives_obtain_data_no_proceed_no_dose(client, key, fault):
    domain, words = DOSE_KEYS[key]
    server = FaultyServer(chart(), key, fault)
    body, elapsed = call(client, "order-sign", server)
    codes = decisions(body)
    assert "proceed" not in codes, codes
    assert actions(body, "update") == [], "a dose was offered on data not read whole"
    assert all("dose" not in ext(c) for c in body["cards"])
    gap = [c for c in body["cards"] if ext(c)["decision"] == "obtain-data" and words in c["summary"]]
    assert gap, [(c["summary"]) for c in body["cards"]]
    text = " ".join(c["summary"] + c.get("detail", "") for c in gap)
    assert WORDING[fault] in text, text
    assert "none on record" not in text
    assert all(ext(c)["notRead"][domain] for c in body["cards"])
    if key == "medicationAdministrations":  # the course is unknown, never "Cycle 1 Day 1"
        assert not any("Cycle 1 Day 1" in c["summary"] for c in body["cards"])
        assert "cycle, day and dose unknown" in " ".join(c["summary"] for c in gap)
    # the time budget holds, slow drips and gzip bombs included (generous margin for 2 cores)
    assert elapsed < TIMEOUT_S + 2.0, elapsed
    # the bearer token only ever went to the fhirServer
    assert all(url.startswith(SERVER) for url, auth in server.auth_seen if auth)


def test_whole_chart_cycle_2_day_1_in_cr_proceeds_at_0_5(client):
    body, _ = call(client, "order-sign", FaultyServer(chart(cycle2=True), None, None))
    proceed = [c for c in body["cards"] if ext(c)["decision"] == "proceed"]
    assert proceed and "Cycle 2 Day 1" in proceed[0]["summary"], [c["summary"] for c in body["cards"]]
    assert ext(proceed[0])["dose"]["mg_per_m2"] == 0.5


@pytest.mark.parametrize("fault", FAULTS + ["absent"])
def test_response_not_read_where_the_dose_depends_on_it(client, fault):
    # Cycle 2 Day 1: 0.5 mg/m2 in CR/CRi, 0.8 without (SmPC 4.2 Table 1): the response decides it
    data = chart(cycle2=True)
    if fault == "absent":  # not in prefetch, no fhirServer: every other key sent
        prefetch = {k: (data[k][0] if k == "patient" else _searchset(data[k]))
                    for k in PREFETCH_TEMPLATES if k != "disease"}
        context = {"userId": "Practitioner/av", "patientId": PATIENT, "draftOrders": _draft(1.0)}
        res = client.post("/cds-services/besponsa-order-sign", json={
            "hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch})
        assert res.status_code == 200, res.text
        body, wording = res.json(), "not provided by the EHR"
    else:
        body, _ = call(client, "order-sign", FaultyServer(data, "disease", fault))
        wording = WORDING[fault]
    assert "proceed" not in decisions(body)
    assert actions(body, "update") == [] and all("dose" not in ext(c) for c in body["cards"])
    gap = [c for c in body["cards"] if ext(c)["decision"] == "obtain-data" and "disease assessments" in c["summary"]]
    assert gap and "no dose can be advised" in gap[0]["summary"], [c["summary"] for c in body["cards"]]
    assert wording in gap[0]["detail"]


def test_issue_example_day_8_history_unreadable_gets_no_update_to_1_6_mg(client):
    # Read as "Cycle 1 Day 1", 1.0 mg would be "corrected" to 0.8 mg/m2 x 2.00 = 1.6 mg.
    body, _ = call(client, "order-sign", FaultyServer(chart(), "medicationAdministrations", "500"))
    assert actions(body, "update") == []
    assert "1.6 mg" not in " ".join(c["summary"] for c in body["cards"])
    assert "correct-dose" not in decisions(body) and "proceed" not in decisions(body)
    (hist,) = [c for c in body["cards"] if "C-2" in ext(c)["rules"]]
    assert hist["summary"].startswith("Obtain administration history: could not be read;")
    assert "FHIR server answered 500" in hist["summary"] + hist["detail"]


def test_issue_example_clean_patient_partial_history_gets_no_proceed(client):
    body, _ = call(client, "order-sign", FaultyServer(chart(), "medicationAdministrations", "other-origin-next"))
    assert "proceed" not in decisions(body)
    (hist,) = [c for c in body["cards"] if "C-2" in ext(c)["rules"]]
    assert "only partly read" in hist["summary"] and "another server" in hist["summary"] + hist["detail"]


def test_issue_example_labs_unread_too_no_dose_increase_only(client):
    data = chart()
    server = FaultyServer(data, "medicationAdministrations", "500")
    orig = server.__call__

    async def both(request: httpx.Request) -> httpx.Response:
        if _key_of(request) == "labs":
            return httpx.Response(503)
        return await orig(request)

    body, _ = call(client, "order-sign", both)  # type: ignore[arg-type]
    assert actions(body, "update") == [] and "proceed" not in decisions(body)
    texts = " ".join(c["summary"] + c.get("detail", "") for c in body["cards"])
    assert "liver tests" in texts and "administration history" in texts


# --- other domains: not provided / unsupported -> "not checked", proceed warns ----------------


@pytest.mark.parametrize("key,words", [("adverseEvents", "infusion reactions"),
                                       ("procedures", "procedures"),
                                       ("immunizations", "vaccinations"),
                                       ("medicationRequests", "other medications")])
def test_other_domain_unsupported_is_listed_not_checked_and_proceed_warns(client, key, words):
    body, _ = call(client, "order-sign", FaultyServer(chart(), key, "unsupported"))
    assert "obtain-data" not in decisions(body), [c["summary"] for c in body["cards"]]
    proceed = next(c for c in body["cards"] if ext(c)["decision"] == "proceed")
    assert proceed["indicator"] == "warning"
    assert "Not checked" in proceed["detail"] and words in proceed["detail"]
    assert "not supported by the FHIR server" in proceed["detail"]
    assert "not checked" in proceed["summary"]


@pytest.mark.parametrize("key,words", [("adverseEvents", "infusion reactions"),
                                       ("procedures", "platelet transfusions"),
                                       ("conditions", "pregnancy")])
def test_other_domain_unreadable_gives_obtain_data(client, key, words):
    body, _ = call(client, "order-sign", FaultyServer(chart(), key, "500"))
    assert "proceed" not in decisions(body)
    gap = [c for c in body["cards"] if ext(c)["decision"] == "obtain-data"]
    assert gap and words in gap[0]["detail"] and "could not be read" in gap[0]["detail"]
    assert "a hold or warning may be missed" in gap[0]["summary"]


def test_other_domains_absent_without_fhir_server_are_not_checked(client):
    # prefetch: everything required, nothing else, and no fhirServer to fetch the rest from
    data = chart()
    prefetch = {k: (data[k][0] if k == "patient" else _searchset(data[k]))
                for k in ("patient", "labs", "cbc", "vitals", "medicationAdministrations", "conditions")}
    context = {"userId": "Practitioner/av", "patientId": PATIENT, "draftOrders": _draft(1.0)}
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    res = client.post("/cds-services/besponsa-order-sign", json=body)
    assert res.status_code == 200, res.text
    cards = res.json()["cards"]
    proceed = next(c for c in cards if ext(c)["decision"] == "proceed")
    assert proceed["indicator"] == "warning"
    for words in ("infusion reactions", "procedures (HSCT, platelet transfusions)", "vaccinations"):
        assert words in proceed["detail"]
    assert "not provided by the EHR" in proceed["detail"]
    assert ext(proceed)["notChecked"]["infusion-reactions"].startswith("not provided by the EHR")


@pytest.mark.parametrize("key", ["labs", "cbc", "vitals", "medicationAdministrations"])
def test_dose_deciding_key_absent_without_fhir_server_is_412(client, key):
    data = chart()
    prefetch = {k: (data[k][0] if k == "patient" else _searchset(data[k])) for k in PREFETCH_TEMPLATES}
    del prefetch[key]
    context = {"userId": "Practitioner/av", "patientId": PATIENT, "draftOrders": _draft(1.0)}
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    res = client.post("/cds-services/besponsa-order-sign", json=body)
    assert res.status_code == 412 and key in res.json()["keys"]


# --- patient-view ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_patient_view_history_not_read_says_so_never_empty(client, fault):
    body, _ = call(client, "patient-view", FaultyServer(chart(), "medicationAdministrations", fault))
    assert body["cards"], "patient-view answered nothing on failed data"
    (card,) = [c for c in body["cards"] if "C-2" in ext(c)["rules"]]
    assert ext(card)["decision"] == "obtain-data" and WORDING[fault] in card["summary"] + card["detail"]
    assert ext(card)["notRead"]["administrations"] in ("unreadable", "partial", "unsupported")
    assert actions(body, "update") == []


def test_patient_view_never_treated_and_read_whole_is_empty(client):
    body, _ = call(client, "patient-view", FaultyServer(chart(day8=False), None, None))
    assert body == {"cards": []}


@pytest.mark.parametrize("key", ["labs", "cbc"])
def test_patient_view_on_treatment_labs_unreadable_names_them(client, key):
    body, _ = call(client, "patient-view", FaultyServer(chart(), key, "500"))
    texts = " ".join(c["summary"] + c.get("detail", "") for c in body["cards"])
    assert DOSE_KEYS[key][1] in texts and "could not be read" in texts


def test_hold_found_in_labs_read_whole_survives_an_unreadable_history(client):
    # bilirubin 2.1 mg/dL (1.75 x ULN) and AST 95 U/L (2.79 x ULN) the day before: L-2 hold
    data = chart()
    for o in data["labs"]:
        if o["id"] == "bili-now":
            o["valueQuantity"]["value"] = 2.1
        if o["id"] == "ast-now":
            o["valueQuantity"]["value"] = 95
    body, _ = call(client, "order-sign", FaultyServer(data, "medicationAdministrations", "500"))
    assert any(ext(c)["decision"] == "hold" and "L-2" in ext(c)["rules"] for c in body["cards"]), \
        [c["summary"] for c in body["cards"]]
    assert actions(body, "update") == [] and "proceed" not in decisions(body)
