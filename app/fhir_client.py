"""httpx clients for FHIR servers: one shared AsyncClient per event loop, plus in-process routes.

`client_for(url)` is the only way retrieval gets a client:
- a base URL registered with `route_to_asgi(base_url, asgi_app)` is served in process through
  `httpx.ASGITransport` (the embedded demo server at `{public_base_url}/fhir`, benchmarks);
- anything else goes through one `httpx.AsyncClient` per FHIR server (scheme, host and port),
  pooling connections across calls.
Tests inject their own client with `use_client(client)` (or mock httpx with respx).

Nothing here logs: tokens and resource contents never leave retrieval's own log lines.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from anyio.abc import SocketAttribute
from httpcore._backends.anyio import AnyIOBackend, AnyIOStream
from httpcore._utils import is_socket_readable

FHIR_JSON = "application/fhir+json"
DEFAULT_HEADERS = {"Accept": f"{FHIR_JSON}, application/json;q=0.9"}
# Per FHIR server: one hook call's queries (14) in parallel; more only queue. A larger pool made
# httpcore scan more idle connections on every request (issue #11: a fifth of a fetch-mode call's
# CPU with 50) and, above the keep-alive limit, opened and closed connections under load.
_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)
MAX_SERVER_CLIENTS = 32  # FHIR servers with a pool of their own, per event loop


class _Stream(AnyIOStream):
    """httpcore's anyio stream with the raw socket looked up once. httpcore asks every pooled
    connection `is_readable` on each request it places (has the server closed it?), and anyio
    builds its whole attribute table to answer: a third of a fetch-mode call's CPU (issue #11)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._sock = stream.extra(SocketAttribute.raw_socket, None)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._sock is not None and is_socket_readable(self._sock)
        if info == "socket":
            return self._sock
        return super().get_extra_info(info)

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        tls = await super().start_tls(*args, **kwargs)
        return _Stream(tls._stream)  # type: ignore[attr-defined]


class _Backend(AnyIOBackend):
    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await super().connect_tcp(*args, **kwargs)
        return _Stream(stream._stream)  # type: ignore[attr-defined]


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping made linear and its queue placed one request per free
    connection (issue #11: together, a fetch-mode call's retrieval at concurrency 8 in ~0.7x the CPU).

    - httpcore 1.0 re-scans its connections for every queued request and, for every idle
      connection, builds a list of all of them (only to take its length) each time a request starts
      or ends. Here each state is read once, a request is not re-tried in a pass once one for its
      origin found no connection, and the pass ends once the pool is full and busy.
    - httpcore gives one free HTTP/1.1 connection to *every* queued request of a pass (a request
      holds its connection only once its task runs); all but one then fail with
      ConnectionNotAvailable and queue again: 6.8 sends per request with 200 in flight
      (tests/test_fhir_client_pool.py). Here a connection given to a request that has not
      started yet is reserved for it (HTTP/1.1 only: an HTTP/2 connection multiplexes).
    - httpcore asks every idle connection whether the server closed it (a poll(2) of its socket)
      each time a request starts or ends: ~60 polls per request at concurrency 8. Here the idle
      connection a request is about to take is asked, always, so no request goes out on a
      connection the server closed or whose keep-alive ran out; the others are swept as httpcore
      does at most every SWEEP_SECONDS, so that a closed one is let go soon.
    """

    SWEEP_SECONDS = 1.0
    _swept_at = float("-inf")

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        connections = self._connections
        # connections given to requests whose task has not taken them yet (HTTP/1.1: one each)
        reserved = set() if self._http2 else {id(r.connection) for r in self._requests if r.connection is not None}
        now = time.monotonic()
        sweep = now - self._swept_at >= self.SWEEP_SECONDS
        if sweep:
            self._swept_at = now
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif id(connection) in reserved:
                continue
            elif sweep and connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
            elif connection.is_idle() and len(connections) > self._max_keepalive_connections:
                # httpcore compares the number of connections (not of idle ones) with the limit
                connections.remove(connection)
                closing.append(connection)

        blocked: list[Any] = []  # origins no connection could take in this pass (Origin is unhashable)
        for pool_request in self._requests:  # arrival order; placing one changes only its state
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            if origin in blocked:
                continue
            connection = self._available(origin, closing, reserved)
            if connection is None:
                if len(connections) >= self._max_connections:
                    idle = next((c for c in connections if c.is_idle() and id(c) not in reserved), None)
                    if idle is None:
                        if not any(c.is_available() and id(c) not in reserved for c in connections):
                            break  # full, nothing idle, nothing free: no queued request can be placed
                        blocked.append(origin)
                        continue
                    connections.remove(idle)
                    closing.append(idle)
                connection = self.create_connection(origin)
                connections.append(connection)
            pool_request.assign_to_connection(connection)
            if not self._http2:
                reserved.add(id(connection))
        return closing

    def _available(self, origin: Any, closing: list[Any], reserved: set[int]) -> Any:
        """The first unreserved connection that can take a request for `origin` now; one that
        turns out expired or closed by the server (httpcore's has_expired) is let go on the way."""
        connections = self._connections
        while True:
            connection = next((c for c in connections if c.can_handle_request(origin) and c.is_available()
                               and id(c) not in reserved), None)
            if connection is None or not (connection.is_idle() and connection.has_expired()):
                return connection
            connections.remove(connection)
            closing.append(connection)


class _NoCookies(httpx.Cookies):
    """A pooled client serves every hook call (and every user's token) to one FHIR server: a
    cookie one response sets must never ride along on another call's requests. Nothing is kept
    (and httpx's cookie jar processing per response is skipped)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def _pooled_client() -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(limits=_LIMITS)
    pool = transport._pool  # type: ignore[attr-defined]  # httpx builds it from _LIMITS and its TLS context
    transport._pool = _Pool(ssl_context=pool._ssl_context, max_connections=pool._max_connections,  # type: ignore[attr-defined]
                            max_keepalive_connections=pool._max_keepalive_connections,
                            keepalive_expiry=pool._keepalive_expiry, http1=pool._http1, http2=pool._http2,
                            network_backend=_Backend())
    client = httpx.AsyncClient(transport=transport, headers=DEFAULT_HEADERS, follow_redirects=False)
    client._cookies = _NoCookies()  # the property setter would copy it into a plain jar
    return client


class _Clients:
    def __init__(self) -> None:
        self.injected: httpx.AsyncClient | None = None
        self.routes: dict[str, Any] = {}  # base URL (no trailing slash) -> ASGI app
        # event loop -> {route base or FHIR server origin: client}. A pooled connection must
        # not outlive its loop, so clients are per loop and forgotten with it.
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]]
        self._by_loop = weakref.WeakKeyDictionary()

    def route_for(self, url: str) -> str | None:
        for base in sorted(self.routes, key=len, reverse=True):
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                return base
        return None

    def client_for(self, url: str) -> httpx.AsyncClient:
        base = self.route_for(url)
        if base is None and self.injected is not None:
            return self.injected
        clients = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        key = base or _origin(url)  # one pool per FHIR server
        if key not in clients and base is None and len(clients) >= MAX_SERVER_CLIENTS:
            key = ""  # fhirServer comes from requests: beyond the bound, one shared pool
        client = clients.get(key)
        if client is None or client.is_closed:
            if base is not None:
                transport = httpx.ASGITransport(app=self.routes[base])
                client = httpx.AsyncClient(transport=transport, headers=DEFAULT_HEADERS, follow_redirects=False)
            else:
                client = _pooled_client()
            clients[key] = client
        return client

    async def aclose(self) -> None:
        clients = self._by_loop.pop(asyncio.get_running_loop(), {})
        for client in clients.values():
            await client.aclose()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


_clients = _Clients()


def client_for(url: str) -> httpx.AsyncClient:
    """The client for a request to `url` (in-process ASGI route, injected, or shared); call it
    inside the running event loop."""
    return _clients.client_for(url)


def route_to_asgi(base_url: str, app: Any) -> None:
    """Serve requests under `base_url` (e.g. "http://127.0.0.1:8080/fhir") with an in-process ASGI app."""
    _clients.routes[base_url.rstrip("/")] = app


def unroute(base_url: str) -> None:
    _clients.routes.pop(base_url.rstrip("/"), None)


def use_client(client: httpx.AsyncClient | None) -> None:
    """Inject the client used for non-routed URLs (tests); None restores the shared client."""
    _clients.injected = client


async def aclose() -> None:
    """Close this event loop's clients (call from the app's lifespan shutdown)."""
    await _clients.aclose()
