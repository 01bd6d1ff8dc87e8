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
import weakref
from typing import Any
from urllib.parse import urlsplit

import httpx

FHIR_JSON = "application/fhir+json"
DEFAULT_HEADERS = {"Accept": f"{FHIR_JSON}, application/json;q=0.9"}
# Per FHIR server: one hook call's queries (14) in parallel; more only queue. A larger pool made
# httpcore scan more idle connections on every request (issue #11: a fifth of a fetch-mode call's
# CPU with 50) and, above the keep-alive limit, opened and closed connections under load.
_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)
MAX_SERVER_CLIENTS = 32  # FHIR servers with a pool of their own, per event loop


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
                client = httpx.AsyncClient(headers=DEFAULT_HEADERS, limits=_LIMITS, follow_redirects=False)
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
