"""The pooled FHIR client over real loopback sockets (issue #11): the faster pool places requests
exactly as httpcore's own, reuses connections, notices connections the server closed, keeps no
cookies between hook calls. (respx mocks above the pool, so the other retrieval tests never reach it.)"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpcore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import fhir_client

BODY = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'


class _Server:
    """A minimal HTTP/1.1 keep-alive server: counts connections, can close each one after N
    responses without saying so (as a FHIR server's idle time-out does), can set a cookie."""

    def __init__(self, *, close_after: int | None = None, set_cookie: bool = False, delay: float = 0.0) -> None:
        self.close_after, self.set_cookie, self.delay = close_after, set_cookie, delay
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/fhir"

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                if self.delay:
                    await asyncio.sleep(random.uniform(0, self.delay))
                cookie = b"Set-Cookie: session=abc; Path=/\r\n" if self.set_cookie else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + cookie
                             + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


async def _get(url: str) -> int:
    client = fhir_client.client_for(url)
    response = await client.get(url)
    return response.status_code


def test_many_concurrent_queries_share_a_bounded_pool() -> None:
    async def run() -> _Server:
        server = _Server(delay=0.003)
        async with server as base:
            statuses = await asyncio.gather(*[_get(f"{base}/Observation?n={i}") for i in range(300)])
            assert statuses == [200] * 300
            await fhir_client.aclose()
        return server

    server = asyncio.run(run())
    assert len(server.requests) == 300
    assert server.max_open <= fhir_client._LIMITS.max_connections
    assert server.connections <= fhir_client._LIMITS.max_connections  # every connection kept alive and reused


def test_each_request_is_sent_once_no_connection_handed_to_several_waiting_requests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = 0
    send = httpcore.AsyncHTTPConnection.handle_async_request

    async def counted(self: Any, request: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await send(self, request)

    monkeypatch.setattr(httpcore.AsyncHTTPConnection, "handle_async_request", counted)

    async def run() -> None:
        async with _Server(delay=0.002) as base:
            statuses = await asyncio.gather(*[_get(f"{base}/Observation?n={i}") for i in range(200)])
            assert statuses == [200] * 200
            await fhir_client.aclose()

    asyncio.run(run())
    # httpcore's own pool gives a freed connection to every queued request; all but one then
    # fail with ConnectionNotAvailable and queue again (several attempts per request)
    assert attempts == 200


def test_a_connection_the_server_closed_is_never_reused() -> None:
    async def run() -> _Server:
        server = _Server(close_after=1)
        async with server as base:
            for i in range(20):  # each connection is closed by the server after one answer
                assert await _get(f"{base}/Patient/p{i}") == 200
                await asyncio.sleep(0.01)  # the close reaches the client while the connection is idle
            await fhir_client.aclose()
        return server

    server = asyncio.run(run())
    assert server.connections == 20


def test_no_cookie_from_one_call_rides_on_the_next() -> None:
    async def run() -> _Server:
        server = _Server(set_cookie=True)
        async with server as base:
            for i in range(3):
                assert await _get(f"{base}/Patient/p{i}") == 200
            await fhir_client.aclose()
        return server

    server = asyncio.run(run())
    assert len(server.requests) == 3
    assert not any(b"cookie:" in head.lower() for head in server.requests)


# --- the same placement decisions as httpcore's own pool -------------------------------------


@dataclass(eq=False)
class _Conn:
    name: str
    origin: str
    closed: bool = False
    expired: bool = False
    idle: bool = False
    available: bool = False

    def is_closed(self) -> bool:
        return self.closed

    def has_expired(self) -> bool:
        return self.expired

    def is_idle(self) -> bool:
        return self.idle

    def is_available(self) -> bool:
        return self.available

    def can_handle_request(self, origin: str) -> bool:
        return origin == self.origin


@dataclass
class _Url:
    origin: str


@dataclass
class _Req:
    url: _Url


@dataclass(eq=False)
class _PoolReq:
    request: _Req
    queued: bool = True
    connection: _Conn | None = None

    def is_queued(self) -> bool:
        return self.queued

    def assign_to_connection(self, connection: _Conn) -> None:
        self.connection = connection
        self.queued = False
        connection.available = False  # an HTTP/1.1 connection takes one request
        connection.idle = False


@dataclass
class _State:
    connections: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, bool]] = field(default_factory=list)


def _run(pool_class: type, state: _State, max_connections: int, max_keepalive: int, *,
         between_sweeps: bool = False) -> tuple:
    created: list[str] = []

    class Pool(pool_class):  # type: ignore[misc, valid-type]
        def create_connection(self, origin: str) -> _Conn:  # type: ignore[override]
            conn = _Conn(f"new{len(created)}", origin)
            created.append(conn.name)
            return conn

    pool = Pool(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    if between_sweeps:  # the last sweep of every connection was just now
        pool._swept_at = time.monotonic()
    pool._connections = [_Conn(**c) for c in state.connections]
    pool._requests = [_PoolReq(_Req(_Url(origin)), queued) for origin, queued in state.requests]
    closing = pool._assign_requests_to_connections()
    return ([c.name for c in pool._connections], [c.name for c in closing],
            [(r.connection.name if r.connection else None) for r in pool._requests], created)


_origins = st.sampled_from(["http://a", "http://b", "https://c"])
_connection = st.fixed_dictionaries({
    "origin": _origins, "closed": st.booleans(), "expired": st.booleans(),
    "idle": st.booleans(), "available": st.booleans()})
# the other arguments of every generated pool state (requests: origin, queued)
_POOL_ARGS = {"requests": st.lists(st.tuples(_origins, st.booleans()), max_size=40),
              "max_connections": st.integers(1, 20), "max_keepalive": st.integers(0, 20)}


def _named(connections: list[dict[str, Any]], requests: list[tuple[str, bool]]) -> _State:
    """The generated connections named c0, c1, ... in order."""
    return _State([{**c, "name": f"c{i}"} for i, c in enumerate(connections)], requests)


# With requests that take their connection as they are placed (_PoolReq), the pool's decisions
# are httpcore's; with requests that take it later, as httpcore's really do, it differs on purpose
# (test_a_free_connection_goes_to_one_waiting_request_in_and_across_passes).
@settings(max_examples=400, deadline=None)
@given(connections=st.lists(_connection, max_size=20), **_POOL_ARGS)
def test_the_pool_places_requests_exactly_as_httpcore(connections: list[dict[str, Any]],
                                                      requests: list[tuple[str, bool]],
                                                      max_connections: int, max_keepalive: int) -> None:
    state = _named(connections, requests)
    ours = _run(fhir_client._Pool, state, max_connections, max_keepalive)
    theirs = _run(httpcore.AsyncConnectionPool, state, max_connections, max_keepalive)
    assert ours == theirs


@settings(max_examples=400, deadline=None)
@given(connections=st.lists(_connection.filter(lambda c: not c["expired"]), max_size=20), **_POOL_ARGS)
def test_between_sweeps_the_pool_places_requests_as_httpcore_while_nothing_expired(
        connections: list[dict[str, Any]], requests: list[tuple[str, bool]],
        max_connections: int, max_keepalive: int) -> None:
    state = _named(connections, requests)
    ours = _run(fhir_client._Pool, state, max_connections, max_keepalive, between_sweeps=True)
    theirs = _run(httpcore.AsyncConnectionPool, state, max_connections, max_keepalive)
    assert ours == theirs


@settings(max_examples=400, deadline=None)
@given(connections=st.lists(_connection, max_size=20), **_POOL_ARGS)
def test_between_sweeps_no_request_goes_out_on_a_closed_or_expired_connection(
        connections: list[dict[str, Any]], requests: list[tuple[str, bool]],
        max_connections: int, max_keepalive: int) -> None:
    state = _named(connections, requests)
    kept, closing, placed, created = _run(fhir_client._Pool, state, max_connections, max_keepalive,
                                          between_sweeps=True)
    bad = {f"c{i}" for i, c in enumerate(connections) if c["closed"] or (c["idle"] and c["expired"])}
    newly = [p for p, (_, queued) in zip(placed, requests) if queued and p is not None]
    assert not bad & set(newly)
    assert not {f"c{i}" for i, c in enumerate(connections) if c["closed"]} & set(kept + closing)
    assert len(kept) <= max(max_connections, len(connections))


@dataclass(eq=False)
class _WaitingPoolReq(_PoolReq):
    """As httpcore's: the request holds its connection only once its task runs (the connection
    stays idle and available until then)."""

    def assign_to_connection(self, connection: _Conn) -> None:
        self.connection = connection
        self.queued = False


def test_a_free_connection_goes_to_one_waiting_request_in_and_across_passes() -> None:
    def pool_of(pool_class: type) -> Any:
        pool = pool_class(max_connections=2, max_keepalive_connections=2)
        pool._connections = [_Conn(f"c{i}", "http://a", idle=True, available=True) for i in range(2)]
        pool._requests = [_WaitingPoolReq(_Req(_Url("http://a"))) for _ in range(5)]
        return pool

    ours = pool_of(fhir_client._Pool)
    assert ours._assign_requests_to_connections() == []
    assert [r.connection.name if r.connection else None for r in ours._requests] == ["c0", "c1", None, None, None]
    ours._assign_requests_to_connections()  # another request starts or ends before those two ran
    assert [r.connection.name if r.connection else None for r in ours._requests] == ["c0", "c1", None, None, None]
    ours._requests.pop(0)  # the first one is done: c0 is free again
    ours._assign_requests_to_connections()
    assert [r.connection.name if r.connection else None for r in ours._requests] == ["c1", "c0", None, None]

    theirs = pool_of(httpcore.AsyncConnectionPool)  # the herd the reservation avoids
    theirs._assign_requests_to_connections()
    assert [r.connection.name for r in theirs._requests] == ["c0"] * 5


@pytest.fixture(autouse=True)
def _fresh_clients() -> Any:
    fhir_client.use_client(None)
    yield
