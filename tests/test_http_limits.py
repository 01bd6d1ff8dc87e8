"""Bounded input (#9): 413 before an oversized body is held, strict JSON, depth limit, and a card
recorded only once its response exists."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.http.limits import BodyLimit
from conftest import hook_body

HOOK = "/cds-services/besponsa-order-sign"
FEEDBACK = "/cds-services/besponsa-order-sign/feedback"
LIMIT = 4096
SERVER = "https://ehr.example.org/fhir"  # the fake retrieval answers from it


def _client_with(http_settings, fake_store, **settings):
    """A client on the app with these settings changed, the fake store and the default policy."""
    from app.engine.policy import Policy
    from app.http.app import create_app

    app = create_app(http_settings.model_copy(update=settings))
    app.state.store, app.state.policy = fake_store, Policy()
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def small_limit_client(fake_pipeline, fake_store, http_settings):
    with _client_with(http_settings, fake_store, max_body_bytes=LIMIT) as test_client:
        yield test_client


def _padded_hook_body(size: int) -> bytes:
    body = hook_body("order-sign", fhirServer=SERVER)
    body["padding"] = ""
    raw = json.dumps(body).encode()
    body["padding"] = "x" * (size - len(raw))
    out = json.dumps(body).encode()
    assert len(out) == size
    return out


def _assert_413(res: Any) -> None:
    assert res.status_code == 413, res.text
    body = res.json()
    assert body["error"] == "content_too_large" and str(LIMIT) in body["message"]
    assert body["details"] == [{"field": "body", "message": f"at most {LIMIT} bytes"}]


@pytest.mark.parametrize("url", [HOOK, FEEDBACK])
def test_content_length_over_the_limit_is_413(small_limit_client, fake_store, url):
    res = small_limit_client.post(url, content=_padded_hook_body(LIMIT + 1), headers={"content-type": "application/json"})
    _assert_413(res)
    assert fake_store.recorded == []


@pytest.mark.parametrize("url", [HOOK, FEEDBACK])
def test_chunked_body_over_the_limit_is_413(small_limit_client, fake_store, url):
    raw = _padded_hook_body(LIMIT + 1)
    chunks = iter([raw[:1000], raw[1000:3000], raw[3000:]])  # an iterator: sent without Content-Length
    res = small_limit_client.post(url, content=chunks, headers={"content-type": "application/json"})
    _assert_413(res)
    assert fake_store.recorded == []


def test_bodies_at_the_limit_are_answered(small_limit_client, fake_store):
    raw = _padded_hook_body(LIMIT)
    assert small_limit_client.post(HOOK, content=raw, headers={"content-type": "application/json"}).status_code == 200
    chunked = small_limit_client.post(HOOK, content=iter([raw[:100], raw[100:]]), headers={"content-type": "application/json"})
    assert chunked.status_code == 200 and len(fake_store.recorded) == 2


class _Receive:
    """Delivers a chunked body as separate ASGI messages and counts how many were asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls > len(self.chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": self.chunks[self.calls - 1], "more_body": self.calls < len(self.chunks)}


def _run(middleware: BodyLimit, headers: list[tuple[bytes, bytes]], receive: Any) -> list[dict[str, Any]]:
    import anyio

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    anyio.run(middleware, scope, receive, send)
    return sent


def test_chunked_body_is_refused_at_the_first_chunk_over_the_limit():
    seen: list[bytes] = []

    async def app(scope, receive, send):  # never reached
        seen.append(b"called")

    receive = _Receive([b"a" * 1000] * 10)
    sent = _run(BodyLimit(app, max_bytes=2500), [(b"transfer-encoding", b"chunked")], receive)
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert receive.calls == 3  # the rest of the body is never read
    assert seen == []


def test_declared_length_over_the_limit_reads_nothing():
    receive = _Receive([b"a" * 10])

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    sent = _run(BodyLimit(app, max_bytes=2048), [(b"content-length", b"1000000000")], receive)
    assert sent[0]["status"] == 413 and receive.calls == 0


def test_chunked_body_within_the_limit_reaches_the_app_whole():
    got: list[Any] = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append(await receive())  # afterwards the real receive: the disconnect

    _run(BodyLimit(app, max_bytes=2500), [(b"transfer-encoding", b"chunked")], _Receive([b"ab", b"cd", b"ef"]))
    assert got[0] == {"type": "http.request", "body": b"abcdef", "more_body": False}
    assert got[1] == {"type": "http.disconnect"}


# Strict JSON, one reader for both endpoints.

def _post_raw(client: TestClient, url: str, raw: bytes) -> Any:
    return client.post(url, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize("url", [HOOK, FEEDBACK])
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(client, fake_store, url, literal):
    raw = json.dumps(hook_body("order-sign", fhirServer=SERVER, padding=0)).encode().replace(b'"padding": 0', b'"padding": ' + literal)
    res = _post_raw(client, url, raw)
    assert res.status_code == 400
    detail = res.json()["details"][0]
    assert detail["field"] == "body" and detail["message"].startswith("NaN and Infinity are not JSON numbers at line 1 column ")
    assert fake_store.recorded == []


def test_syntax_errors_name_line_and_column(client):
    res = _post_raw(client, HOOK, b'{\n  "hook": "order-sign",\n  "context": }')
    assert res.status_code == 400
    assert res.json()["details"][0]["message"].endswith("at line 3 column 14")


@pytest.mark.parametrize("url", [HOOK, FEEDBACK])
def test_a_lone_surrogate_is_refused_and_no_card_is_stored(client, fake_store, url):
    raw = json.dumps(hook_body("order-sign", fhirServer=SERVER, patient="p1")).encode().replace(b'"p1"', b'"\\ud800"')
    assert b"\\ud800" in raw
    res = _post_raw(client, url, raw)
    assert res.status_code == 400
    assert "surrogate" in res.json()["details"][0]["message"]
    assert fake_store.recorded == []


def test_a_lone_surrogate_in_a_resource_id_is_refused(client, fake_store):
    body = hook_body("order-sign", fhirServer=SERVER)
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "SURROGATE"
    raw = json.dumps(body).encode().replace(b'"SURROGATE"', b'"mr\\udfff1"')
    assert _post_raw(client, HOOK, raw).status_code == 400
    assert fake_store.recorded == []


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("url", [HOOK, FEEDBACK])
@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_deeply_nested_bodies_are_400(client, url, depth):
    body = json.dumps({"feedback": [{"extension": {"x": "NESTED"}}], **hook_body("order-sign", fhirServer=SERVER)})
    res = _post_raw(client, url, body.replace('"NESTED"', _nested(depth)).encode())
    assert res.status_code == 400, res.text
    assert res.json()["details"][0]["field"] == "body" and "nested" in res.json()["message"] + res.json()["details"][0]["message"]


def test_nesting_within_the_limit_is_accepted(client):
    body = hook_body("order-sign", fhirServer=SERVER)
    body["context"]["extension"] = {"x": "NESTED"}
    # root, context, extension and the array levels: 60 in all, within the default 64
    res = _post_raw(client, HOOK, json.dumps(body).replace('"NESTED"', _nested(57)).encode())
    assert res.status_code == 200, res.text


def test_a_card_is_recorded_only_once_its_response_is_serialized(client, fake_store, monkeypatch):
    from app import cards
    from cds_hooks.cards import Card, Source

    def unsendable(decisions, ctx):  # a card whose text cannot be encoded as UTF-8
        return [Card(summary="bad \ud800", indicator="info", source=Source(label="besponsa-cds"))]

    monkeypatch.setattr(cards, "build_cards", unsendable)
    res = client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 500 and res.json()["error"] == "internal_error"
    assert fake_store.recorded == []  # the governance report never counts a card nobody saw


def test_the_response_is_the_serialized_cards(client, fake_store):
    res = client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    stored = fake_store.recorded[0]["cards"]
    assert [c["summary"] for c in res.json()["cards"]] == [c.summary for c in stored]


def test_the_413_carries_cors_headers_so_a_browser_client_can_read_it(small_limit_client):
    res = small_limit_client.post(
        HOOK, content=_padded_hook_body(LIMIT + 1),
        headers={"content-type": "application/json", "origin": "https://sandbox.example.org"},
    )
    _assert_413(res)
    assert res.headers.get("access-control-allow-origin") in ("*", "https://sandbox.example.org")


def test_feedback_shares_the_hook_readers_content_type_check(client):
    res = client.post(FEEDBACK, content=b'{"feedback": []}', headers={"content-type": "text/plain"})
    assert res.status_code == 400 and res.json()["details"][0]["field"] == "Content-Type"


def test_a_feedback_body_nested_1000_levels_is_400_not_500(client):
    raw = b'{"feedback": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    res = _post_raw(client, FEEDBACK, raw)
    assert res.status_code == 400 and res.json()["error"] == "invalid_request"


def _reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_reference_depth, value), default=0)
    return 0


def test_depth_check_agrees_with_a_recursive_count():
    from hypothesis import given, settings, strategies as st

    from app.http.json_body import _deeper_than

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
        max_leaves=40,
    )

    @settings(max_examples=300, deadline=None)
    @given(json_values, st.integers(min_value=0, max_value=8))
    def check(value: Any, limit: int) -> None:
        assert _deeper_than(value, limit) == (_reference_depth(value) > limit)

    check()


def test_the_depth_read_from_the_bytes_agrees_with_a_recursive_count():
    """The body's bytes are read first (app/http/json_body.py `_deeper_than_raw`): brackets, quotes
    and backslashes inside strings, any spacing, escaped or raw unicode; undecided -> the walk."""
    from hypothesis import example, given, settings, strategies as st

    from app.http.json_body import _deeper_than_raw, decode_json

    tricky = st.text(alphabet='[]{}"\\/ab\u00b5\u2603\n', max_size=6)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | tricky,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
        max_leaves=40,
    )

    @settings(max_examples=600, deadline=None)
    @given(json_values, st.integers(min_value=0, max_value=12), st.booleans(), st.sampled_from([None, 0, 2]))
    @example(["]]]]]]", [["[[[[", {"}": "{{{{"}]]], 2, True, None)
    @example([["\\", "\\\"]"], {"\\\\": [[["\\]"]]]}], 3, False, 2)
    def check(value: Any, limit: int, ascii_only: bool, indent: int | None) -> None:
        raw = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
        deeper = _reference_depth(value) > limit
        quick = _deeper_than_raw(raw, limit)
        assert quick in (None, deeper)
        if _reference_depth(value) <= limit // 2:
            assert quick is False  # an ordinary body never needs the walk
        try:
            decode_json(raw, max_bytes=1 << 20, max_depth=limit)
            refused = False
        except Exception:  # noqa: BLE001 - RequestProblem: nested too deeply
            refused = True
        assert refused == deeper

    check()


WORKER = "AnyIO worker thread"  # anyio's name for run_in_threadpool's threads


@pytest.fixture
def where_work_runs(monkeypatch, fake_pipeline):
    """The thread each CPU-bound stage of a hook call ran in: parsing, and facts (then engine, cards)."""
    import threading

    from app import facts_builder
    from app.http import hooks

    seen: dict[str, str] = {}
    parse, facts = hooks.parse_request, facts_builder.build_facts

    def parse_request(*args, **kwargs):
        seen["parse"] = threading.current_thread().name
        return parse(*args, **kwargs)

    def build_facts(*args, **kwargs):
        seen["facts"] = threading.current_thread().name
        return facts(*args, **kwargs)

    monkeypatch.setattr(hooks, "parse_request", parse_request)
    monkeypatch.setattr(facts_builder, "build_facts", build_facts)
    return seen


def test_a_small_call_is_decoded_and_decided_on_the_event_loop(where_work_runs, http_settings, fake_store):
    with _client_with(http_settings, fake_store) as test_client:
        res = test_client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 200 and res.json()["cards"]
    assert where_work_runs["parse"] == where_work_runs["facts"] != WORKER  # no hand-off to a worker


def test_a_call_over_the_inline_limit_is_decoded_and_decided_in_a_worker_thread(where_work_runs, http_settings,
                                                                                 fake_store):
    raw = _padded_hook_body(3000)
    with _client_with(http_settings, fake_store, inline_max_bytes=2999) as test_client:
        res = test_client.post(HOOK, content=raw, headers={"content-type": "application/json"})
    assert res.status_code == 200 and res.json()["cards"]
    assert where_work_runs == {"parse": WORKER, "facts": WORKER}


def test_data_fetched_for_a_call_counts_towards_the_inline_limit(where_work_runs, monkeypatch, http_settings,
                                                                 fake_store):
    from app import retrieval

    collect = retrieval.collect

    async def fetching(*args, **kwargs):  # as if the FHIR server had answered 100 KB
        retrieved = await collect(*args, **kwargs)
        retrieved.fetched_bytes = 100_000
        return retrieved

    monkeypatch.setattr(retrieval, "collect", fetching)
    with _client_with(http_settings, fake_store, inline_max_bytes=64 * 1024) as test_client:
        res = test_client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 200 and res.json()["cards"]
    assert where_work_runs["parse"] != WORKER and where_work_runs["facts"] == WORKER


@pytest.mark.parametrize("busy", [{"inline_max_in_flight": 0}, {"inline_max_loop_lag_ms": 0}])
def test_a_small_call_goes_to_a_worker_thread_when_the_process_is_busy(where_work_runs, http_settings,
                                                                       fake_store, busy):
    """More requests in flight than allowed (here: any), or an event loop running late (here: any
    lag), and even a small call's work leaves the loop, so that a queue never starves the rest."""
    with _client_with(http_settings, fake_store, **busy) as test_client:
        res = test_client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER))
    assert res.status_code == 200 and res.json()["cards"]
    assert where_work_runs == {"parse": WORKER, "facts": WORKER}


def test_requests_in_flight_are_counted_while_they_run(http_settings, fake_store, fake_pipeline, monkeypatch):
    from app import facts_builder

    seen = []
    build = facts_builder.build_facts

    def counting(*args, **kwargs):
        seen.append(test_client.app.state.requests_in_flight)
        return build(*args, **kwargs)

    monkeypatch.setattr(facts_builder, "build_facts", counting)
    with _client_with(http_settings, fake_store) as test_client:
        assert test_client.post(HOOK, json=hook_body("order-sign", fhirServer=SERVER)).status_code == 200
        assert test_client.get("/healthz").status_code == 200
        after = test_client.app.state.requests_in_flight
    assert seen == [1] and after == 0  # this call while it ran; none once answered


def test_the_loop_lag_watcher_sees_a_blocked_event_loop():
    import asyncio
    import time
    from types import SimpleNamespace

    from app.http.app import _watch_loop_lag

    async def scenario() -> tuple[float, float, float]:
        state = SimpleNamespace(loop_lag_seconds=0.0)
        watcher = asyncio.create_task(_watch_loop_lag(state))
        await asyncio.sleep(0.05)
        calm = state.loop_lag_seconds
        time.sleep(0.2)  # CPU-bound work holding the loop
        await asyncio.sleep(0.001)  # the overdue tick runs first
        blocked = state.loop_lag_seconds
        await asyncio.sleep(0.05)  # the loop keeps time again
        watcher.cancel()
        return calm, blocked, state.loop_lag_seconds

    calm, blocked, again = asyncio.run(scenario())
    assert calm < 0.05 and blocked > 0.15 and again < 0.05
