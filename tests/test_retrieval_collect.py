"""app.retrieval.collect: CDS Hooks 2.0 prefetch semantics and a misbehaving FHIR server (respx)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app import fhir_client
from app.retrieval import RequiredDataUnavailable, Retrieved, collect

FIXTURES = Path(__file__).parent / "fixtures" / "retrieval"
BASE = "https://fhir.example.org/r4"
TOKEN = "secret-token-abc123"
LABS_Q = "Observation?patient=p1&code=http://loinc.org|1975-2,http://loinc.org|1920-8&_sort=-date&_count=2"
QUERIES = {"patient": "Patient/p1", "labs": LABS_Q}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def run(prefetch: dict[str, Any] | None, queries: dict[str, str] = QUERIES, **kw: Any) -> Retrieved:
    args: dict[str, Any] = {
        "fhir_server": BASE,
        "access_token": TOKEN,
        "required": frozenset(),
        "timeout_seconds": 2.0,
        "max_pages": 5,
    }
    args.update(kw)
    return asyncio.run(collect(prefetch, queries, **args))


def ids(result: Retrieved) -> list[str]:
    return sorted(f"{r['resourceType']}/{r.get('id')}" for r in result.resources)


def obs(oid: str, value: float = 1.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}


# --- prefetch present / null / absent / OperationOutcome -------------------------------------


@respx.mock(assert_all_mocked=True)
def test_prefetch_present_is_used_without_any_fetch() -> None:
    result = run({"patient": PATIENT, "labs": bundle(obs("o1", 2.1), obs("o2"))})
    assert ids(result) == ["Observation/o1", "Observation/o2", "Patient/p1"]
    assert result.problems == [] and result.unavailable == set()
    assert respx.calls.call_count == 0
    assert result.fetched_bytes == 0


@respx.mock
def test_prefetch_null_means_no_data_and_nothing_is_fetched() -> None:
    result = run({"patient": PATIENT, "labs": None})
    assert ids(result) == ["Patient/p1"]
    assert result.problems == [] and result.unavailable == set()
    assert respx.calls.call_count == 0


@respx.mock
def test_prefetch_null_without_fhir_server_is_not_a_412() -> None:
    result = run({"patient": PATIENT, "labs": None}, fhir_server=None, required=frozenset(QUERIES))
    assert ids(result) == ["Patient/p1"] and result.unavailable == set()


@respx.mock
def test_absent_key_is_fetched_with_bearer_token_and_fhir_accept() -> None:
    route = respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle(obs("o9", 2.1))))
    result = run({"patient": PATIENT})
    assert ids(result) == ["Observation/o9", "Patient/p1"]
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"
    # the token-filled query is sent as given (code list with | and ,)
    assert request.url.params["code"] == "http://loinc.org|1975-2,http://loinc.org|1920-8"
    assert request.url.params["patient"] == "p1"


@respx.mock
def test_no_authorization_header_without_token() -> None:
    route = respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=PATIENT))
    result = run({"labs": None}, access_token=None)
    assert ids(result) == ["Patient/p1"]
    assert "Authorization" not in route.calls.last.request.headers


@respx.mock
def test_operation_outcome_in_prefetch_is_fetched_again() -> None:
    outcome = fixture("operation-outcome.json")
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle(obs("o3"))))
    result = run({"patient": PATIENT, "labs": outcome})
    assert ids(result) == ["Observation/o3", "Patient/p1"]
    assert result.problems == []


def test_required_absent_without_fhir_server_raises_412_error() -> None:
    with pytest.raises(RequiredDataUnavailable) as info:
        run({"patient": PATIENT}, fhir_server=None, required=frozenset({"patient", "labs"}))
    assert info.value.keys == ["labs"]
    assert "labs" in info.value.reason and "fhirServer" in info.value.reason


def test_operation_outcome_for_required_key_without_fhir_server_raises() -> None:
    with pytest.raises(RequiredDataUnavailable) as info:
        run({"patient": PATIENT, "labs": fixture("operation-outcome.json")}, fhir_server=None, required=frozenset({"labs"}))
    assert info.value.keys == ["labs"]


def test_optional_absent_without_fhir_server_is_unavailable_with_problem() -> None:
    result = run({"patient": PATIENT}, fhir_server=None, required=frozenset({"patient"}))
    assert ids(result) == ["Patient/p1"]
    assert result.unavailable == {"labs", "Observation"}
    assert len(result.problems) == 1
    assert result.problems[0].concept == "fhir-server"
    assert result.problems[0].reason.startswith("Observation (labs): ")


# --- paging -----------------------------------------------------------------------------------


@respx.mock
def test_next_links_are_followed_with_token() -> None:
    page2 = f"{BASE}/Observation?_getpages=abc&_offset=2"
    page3 = f"{BASE}/Observation?_getpages=abc&_offset=4"

    def answer(request: httpx.Request) -> httpx.Response:
        offset = request.url.params.get("_offset")
        if offset == "2":
            return httpx.Response(200, json=bundle(obs("o3"), obs("o4"), next_url=page3))
        if offset == "4":
            return httpx.Response(200, json=bundle(obs("o5")))
        return httpx.Response(200, json=bundle(obs("o1"), obs("o2"), next_url=page2))

    route = respx.get(f"{BASE}/Observation").mock(side_effect=answer)
    result = run({"patient": PATIENT})
    assert ids(result) == [f"Observation/o{i}" for i in range(1, 6)] + ["Patient/p1"]
    assert route.call_count == 3
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in route.calls)
    assert result.problems == []


@respx.mock
def test_prefetch_bundle_next_link_is_followed() -> None:
    respx.get(f"{BASE}/Observation", params={"page": "2"}).mock(return_value=httpx.Response(200, json=bundle(obs("o2"))))
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2")})
    assert ids(result) == ["Observation/o1", "Observation/o2", "Patient/p1"]
    # what was read from the server (the page), not what came in prefetch: it sizes the work (#11)
    assert result.fetched_bytes == len(httpx.Response(200, json=bundle(obs("o2"))).content)


@respx.mock
def test_relative_next_link_resolved_against_fhir_server() -> None:
    route = respx.get(f"{BASE}/Observation", params={"page": "2"}).mock(
        return_value=httpx.Response(200, json=bundle(obs("o2")))
    )
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url="Observation?page=2")})
    assert ids(result) == ["Observation/o1", "Observation/o2", "Patient/p1"]
    assert route.call_count == 1


@respx.mock
def test_page_bound_reached_is_reported_not_silent() -> None:
    counter = {"n": 0}

    def endless(request: httpx.Request) -> httpx.Response:
        counter["n"] += 1
        n = counter["n"]
        return httpx.Response(200, json=bundle(obs(f"o{n}"), next_url=f"{BASE}/Observation?page={n + 1}"))

    respx.get(f"{BASE}/Observation").mock(side_effect=endless)
    result = run({"patient": PATIENT}, max_pages=3)
    assert counter["n"] == 3  # first page + 2 next pages
    assert ids(result) == ["Observation/o1", "Observation/o2", "Observation/o3", "Patient/p1"]
    assert [p.reason for p in result.problems] == [
        "Observation (labs): more results than the page limit allows; later pages were not read"
    ]


@respx.mock
def test_next_link_to_another_server_is_not_followed_and_token_not_leaked() -> None:
    evil = respx.get("https://elsewhere.example.com/Observation").mock(return_value=httpx.Response(200, json=bundle()))
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url="https://elsewhere.example.com/Observation?p=2")})
    assert evil.call_count == 0
    assert ids(result) == ["Observation/o1", "Patient/p1"]
    assert "another server" in result.problems[0].reason


def test_prefetch_next_link_without_fhir_server_is_reported() -> None:
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2")}, fhir_server=None)
    assert ids(result) == ["Observation/o1", "Patient/p1"]
    assert "more pages" in result.problems[0].reason


# --- a misbehaving FHIR server ----------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404, 500, 502, 503])
@respx.mock
def test_error_status_is_a_data_problem_and_unavailable(status: int) -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(status, json=fixture("operation-outcome.json")))
    result = run({"patient": PATIENT})
    assert ids(result) == ["Patient/p1"]
    assert result.unavailable == {"labs", "Observation"}
    (problem,) = result.problems
    assert problem.concept == "fhir-server"
    assert problem.reason.startswith(f"Observation (labs): FHIR server answered {status}")


@respx.mock
def test_401_reason_names_the_data_and_the_cause() -> None:
    respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(401))
    result = run({"labs": None})
    assert result.problems[0].reason == (
        "Patient (patient): FHIR server answered 401 (not authorised: access token missing, expired or refused)"
    )
    assert result.unavailable == {"patient", "Patient"}


@respx.mock
def test_timeout_within_total_budget_keeps_fast_answers() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle(obs("late")))

    respx.get(f"{BASE}/Observation").mock(side_effect=slow)
    respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=PATIENT))
    result = run({}, timeout_seconds=0.2)
    assert ids(result) == ["Patient/p1"]
    assert result.unavailable == {"labs", "Observation"}
    assert "did not answer" in result.problems[0].reason
    assert result.problems[0].reason.startswith("Observation (labs)")


@respx.mock
def test_httpx_timeout_exception_is_a_problem() -> None:
    respx.get(f"{BASE}/Observation").mock(side_effect=httpx.ReadTimeout("read timed out"))
    result = run({"patient": PATIENT})
    assert result.problems[0].reason == "Observation (labs): FHIR server did not answer in time"
    assert "labs" in result.unavailable


@respx.mock
def test_connect_error_is_a_problem() -> None:
    respx.get(f"{BASE}/Observation").mock(side_effect=httpx.ConnectError("connection refused"))
    respx.get(f"{BASE}/Patient/p1").mock(side_effect=httpx.ConnectError("connection refused"))
    result = run({})
    assert result.resources == []
    assert result.unavailable == {"labs", "Observation", "patient", "Patient"}
    assert sorted(p.reason for p in result.problems) == [
        "Observation (labs): FHIR server could not be reached",
        "Patient (patient): FHIR server could not be reached",
    ]


@respx.mock
def test_malformed_json_is_a_problem() -> None:
    respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(200, content=b'{"resourceType": "Bundle", "entry": [', headers={"Content-Type": "application/fhir+json"})
    )
    result = run({"patient": PATIENT})
    assert result.problems[0].reason == "Observation (labs): FHIR server answered malformed JSON"
    assert "labs" in result.unavailable


@respx.mock
def test_non_bundle_for_a_search_is_a_problem() -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=obs("o1")))
    result = run({"patient": PATIENT})
    assert result.problems[0].reason == "Observation (labs): FHIR server answered a Observation instead of a search Bundle"
    assert ids(result) == ["Patient/p1"]


@respx.mock
def test_error_on_next_page_keeps_first_page_but_marks_unavailable() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(500)
        return httpx.Response(200, json=bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2"))

    respx.get(f"{BASE}/Observation").mock(side_effect=answer)
    result = run({"patient": PATIENT})
    assert ids(result) == ["Observation/o1", "Patient/p1"]
    assert "labs" in result.unavailable
    assert result.problems[0].reason == "Observation (labs): FHIR server answered 500 (next page)"


# --- content: invalid resources, supersets, duplicates -----------------------------------------


@respx.mock
def test_invalid_resource_inside_good_bundle_is_passed_through() -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=fixture("labs-with-invalid.json")))
    result = run({"patient": PATIENT})
    by_id = {r["id"]: r for r in result.resources}
    assert set(by_id) == {"bili-ok", "ast-invalid", "p1"}
    assert by_id["ast-invalid"]["status"] == "not-a-status"  # untouched: the builder reports it
    # informational OperationOutcome entries (search.mode=outcome) are not data
    assert all(r["resourceType"] != "OperationOutcome" for r in result.resources)
    assert "1 Bundle entry without a resource skipped" in result.problems[0].reason


@respx.mock
def test_superset_answer_is_returned_unfiltered() -> None:
    # a lenient server ignores the code filter: the other codes and patients come back as sent
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=fixture("labs-superset.json")))
    result = run({"patient": PATIENT})
    codes = sorted(r["code"]["coding"][0]["code"] for r in result.resources if r["resourceType"] == "Observation")
    assert codes == ["1920-8", "1975-2", "8302-2"]
    assert len(result.resources) == 4


@respx.mock
def test_resources_are_deduplicated_by_type_and_id() -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle(obs("o1", 2.1), obs("o1", 2.1))))
    result = run({"patient": PATIENT, "again": bundle(obs("o1", 2.1), PATIENT)})
    assert ids(result) == ["Observation/o1", "Patient/p1"]


# --- logging ------------------------------------------------------------------------------------


@respx.mock
def test_token_and_values_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(401))
    respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=PATIENT))
    run({})
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records  # something was logged
    assert TOKEN not in text
    assert "Bearer" not in text
    assert "female" not in text


@pytest.fixture(autouse=True)
def _fresh_clients() -> Any:
    fhir_client.use_client(None)
    yield


@respx.mock
def test_prefetch_value_that_is_not_a_resource_is_fetched_instead() -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle(obs("o7"))))
    result = run({"patient": PATIENT, "labs": "oops"})
    assert ids(result) == ["Observation/o7", "Patient/p1"]


@respx.mock
def test_read_answered_with_wrong_type_is_a_problem() -> None:
    respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=bundle()))
    result = run({"labs": None})
    assert result.problems[0].reason == "Patient (patient): FHIR server answered a Bundle to a read"
    assert "patient" in result.unavailable


@respx.mock(assert_all_mocked=True)
def test_a_prefetch_bundle_that_breaks_the_reader_is_unreadable_not_an_error() -> None:
    """Prefetch is read without a task (#11); a shape the reader does not expect (`link` a number)
    still leaves that key unreadable and the others read, as a failing task would."""
    from app.engine.facts import Availability

    broken = {**bundle(obs("o1")), "link": 5}
    result = run({"patient": PATIENT, "labs": broken})
    assert ids(result) == ["Observation/o1", "Patient/p1"]  # what was read is kept, marked incomplete
    assert result.status["labs"].availability is Availability.UNREADABLE
    assert "labs" in result.unavailable and respx.calls.call_count == 0
