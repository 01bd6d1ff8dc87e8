"""app.retrieval decides how each prefetch key was read (issue #8): complete, empty, partial,
unreadable, not-provided, unsupported - with the reason, and within the time budget."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

import httpx
import pytest
import respx

from app.engine.facts import Availability, Domain
from app.prefetch_queries import KEY_DOMAINS, PREFETCH_TEMPLATES, domain_availability
from app.retrieval import Retrieved, collect

BASE = "https://fhir.example.org/r4"
TOKEN = "status-token-91c"
Q = {"patient": "Patient/p1", "labs": "Observation?patient=p1&code=http://loinc.org|1975-2&_count=2"}
PATIENT = {"resourceType": "Patient", "id": "p1"}
A = Availability


def obs(oid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": "Patient/p1"}}


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def run(prefetch: dict[str, Any] | None, **kw: Any) -> Retrieved:
    args: dict[str, Any] = dict(fhir_server=BASE, access_token=TOKEN, required=frozenset(),
                                timeout_seconds=1.0, max_pages=3, max_response_bytes=100_000)
    args.update(kw)
    return asyncio.run(collect(prefetch, dict(Q), **args))


def labs_status(result: Retrieved) -> tuple[Availability, str]:
    st = result.status["labs"]
    return st.availability, st.reason


def test_prefetch_sent_is_complete_and_null_is_empty() -> None:
    result = run({"patient": PATIENT, "labs": None})
    assert result.status["patient"].availability is A.COMPLETE
    assert labs_status(result) == (A.EMPTY, "")
    assert result.unavailable == set()


def test_empty_searchset_is_empty_not_complete() -> None:
    result = run({"patient": PATIENT, "labs": bundle()})
    assert labs_status(result)[0] is A.EMPTY


def test_absent_key_without_fhir_server_is_not_provided() -> None:
    result = run({"patient": PATIENT}, fhir_server=None)
    assert labs_status(result) == (A.NOT_PROVIDED, "not in prefetch and no fhirServer to query")
    assert "labs" in result.unavailable


def test_operation_outcome_prefetch_without_fhir_server_is_unreadable() -> None:
    result = run({"patient": PATIENT, "labs": {"resourceType": "OperationOutcome", "issue": []}}, fhir_server=None)
    assert labs_status(result)[0] is A.UNREADABLE


@pytest.mark.parametrize("status", [401, 403, 500, 502, 503])
@respx.mock
def test_error_statuses_are_unreadable(status: int) -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(status))
    avail, reason = labs_status(run({"patient": PATIENT}))
    assert avail is A.UNREADABLE and reason.startswith(f"FHIR server answered {status}")


@pytest.mark.parametrize("status", [404, 501])
@respx.mock
def test_404_or_501_on_a_search_is_unsupported(status: int) -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(status))
    assert labs_status(run({"patient": PATIENT}))[0] is A.UNSUPPORTED


@respx.mock
def test_404_on_a_read_is_unreadable_not_unsupported() -> None:
    respx.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(404))
    result = run({"labs": bundle()})
    assert result.status["patient"].availability is A.UNREADABLE


@pytest.mark.parametrize("issue,expected", [
    ({"severity": "error", "code": "not-supported"}, A.UNSUPPORTED),
    ({"severity": "error", "code": "processing", "diagnostics": "Unknown resource type 'AdverseEvent'"}, A.UNSUPPORTED),
    ({"severity": "error", "code": "invalid", "diagnostics": "bad date"}, A.UNREADABLE),
])
@respx.mock
def test_400_is_unsupported_only_when_the_outcome_says_so(issue: dict, expected: Availability) -> None:
    respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": [issue]}))
    assert labs_status(run({"patient": PATIENT}))[0] is expected


@respx.mock
def test_malformed_json_and_wrong_type_are_unreadable() -> None:
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, content=b"{not json"))
    assert labs_status(run({"patient": PATIENT})) == (A.UNREADABLE, "FHIR server answered malformed JSON")
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=obs("o1")))
    assert labs_status(run({"patient": PATIENT}))[0] is A.UNREADABLE


@respx.mock
def test_page_limit_is_partial_and_keeps_the_pages_read() -> None:
    n = {"i": 0}

    def endless(request: httpx.Request) -> httpx.Response:
        n["i"] += 1
        return httpx.Response(200, json=bundle(obs(f"o{n['i']}"), next_url=f"{BASE}/Observation?page={n['i'] + 1}"))

    respx.get(f"{BASE}/Observation").mock(side_effect=endless)
    result = run({"patient": PATIENT})
    avail, reason = labs_status(result)
    assert avail is A.PARTIAL and "page limit" in reason
    assert "labs" in result.unavailable  # partial is not "read": issue #8
    assert len([r for r in result.resources if r["resourceType"] == "Observation"]) == 3


@respx.mock
def test_other_origin_next_is_partial_and_never_gets_the_token() -> None:
    evil = respx.get("https://evil.example.com/Observation").mock(return_value=httpx.Response(200, json=bundle()))
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url="https://evil.example.com/Observation?p=2")})
    assert labs_status(result)[0] is A.PARTIAL and evil.call_count == 0


@respx.mock
def test_one_page_failing_is_partial() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(503)
        return httpx.Response(200, json=bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2"))

    respx.get(f"{BASE}/Observation").mock(side_effect=answer)
    avail, reason = labs_status(run({"patient": PATIENT}))
    assert avail is A.PARTIAL and reason == "FHIR server answered 503 (next page)"


def test_prefetch_with_more_pages_and_no_fhir_server_is_partial() -> None:
    result = run({"patient": PATIENT, "labs": bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2")}, fhir_server=None)
    assert labs_status(result)[0] is A.PARTIAL


@respx.mock
def test_time_budget_spent_mid_paging_is_partial_first_page_slow_is_unreadable() -> None:
    async def slow_pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            await asyncio.sleep(5)
        return httpx.Response(200, json=bundle(obs("o1"), next_url=f"{BASE}/Observation?page=2"))

    respx.get(f"{BASE}/Observation").mock(side_effect=slow_pages)
    assert labs_status(run({"patient": PATIENT}, timeout_seconds=0.3))[0] is A.PARTIAL

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle())

    respx.get(f"{BASE}/Observation").mock(side_effect=slow)
    assert labs_status(run({"patient": PATIENT}, timeout_seconds=0.3))[0] is A.UNREADABLE


@respx.mock
def test_slow_drip_is_cut_at_the_deadline() -> None:
    async def drip():
        yield b'{"resourceType": "Bundle", "entry": ['
        for _ in range(100):
            await asyncio.sleep(0.05)
            yield b" "
        yield b"]}"

    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, content=drip()))
    start = time.perf_counter()
    result = run({"patient": PATIENT}, timeout_seconds=0.4)
    assert time.perf_counter() - start < 2.0  # the drip alone would take 5 s
    assert labs_status(result)[0] is A.UNREADABLE and "time budget" in labs_status(result)[1]


@respx.mock
def test_gzip_bomb_is_cut_at_the_byte_cap() -> None:
    bomb = gzip.compress(b'{"resourceType": "Bundle", "entry": [' + b" " * 5_000_000 + b"]}")

    async def chunks():
        for i in range(0, len(bomb), 16384):
            yield bomb[i:i + 16384]

    respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(200, content=chunks(), headers={"Content-Encoding": "gzip"}))
    avail, reason = labs_status(run({"patient": PATIENT}, max_response_bytes=100_000))
    assert avail is A.UNREADABLE and reason == "FHIR server answered more than 100,000 bytes; not read"


@respx.mock
def test_gzip_answer_within_the_cap_is_read() -> None:
    body = gzip.compress(b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": '
                         b'{"resourceType": "Observation", "id": "g1"}}]}')
    route = respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"}))
    result = run({"patient": PATIENT})
    assert labs_status(result)[0] is A.COMPLETE
    assert [r["id"] for r in result.resources if r["resourceType"] == "Observation"] == ["g1"]
    assert route.calls[0].request.headers["accept-encoding"] == "gzip, deflate"


@respx.mock
def test_unknown_content_encoding_and_corrupt_gzip_are_unreadable() -> None:
    respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(200, content=b"xx", headers={"Content-Encoding": "compress"}))
    assert "Content-Encoding" in labs_status(run({"patient": PATIENT}))[1]
    async def corrupt():  # streamed: httpx would decode (and fail on) bytes given at once
        yield b"not gzip at all"

    respx.get(f"{BASE}/Observation").mock(
        return_value=httpx.Response(200, content=corrupt(), headers={"Content-Encoding": "gzip"}))
    assert labs_status(run({"patient": PATIENT})) == (
        A.UNREADABLE, "FHIR server answered a body that could not be decompressed")


def test_every_template_key_maps_to_a_domain_and_the_worst_status_wins() -> None:
    assert set(KEY_DOMAINS) == set(PREFETCH_TEMPLATES)
    from app.engine.facts import DomainStatus

    out = domain_availability({"adverseEvents": DomainStatus(A.UNSUPPORTED, "404"),
                               "allergies": DomainStatus(A.COMPLETE),
                               "labs": DomainStatus(A.EMPTY), "unknown-key": DomainStatus(A.UNREADABLE)})
    assert out[Domain.REACTIONS] == DomainStatus(A.UNSUPPORTED, "AdverseEvent: 404")
    assert out[Domain.LIVER_LABS].availability is A.EMPTY
    assert len(out) == 2
