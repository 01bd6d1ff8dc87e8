"""Which `fhirServer` a hook call may make this service query (and send the client's bearer token to).

With an authenticated client: `fhirServer` must match one of the client's `fhir_servers` by prefix
on scheme, host, port and whole path segments (`https://ehr.org/fhir` matches
`https://ehr.org/fhir/r4`, not `https://ehr.org/fhirx` nor `http://ehr.org/fhir` nor port 8443).
An entry is the client's explicit allowance: an `http://` entry allows plain http, an entry naming a
loopback or private address allows that address. Without client authentication (development):
any http(s) server except link-local, private and other non-public IP literals; loopback on any port
is accepted so local FHIR servers keep working. In both cases URLs with user info (which would
replace the bearer token with Basic credentials) are refused.

Host names are compared as written, not resolved: with authentication only hosts the operator
listed can be reached; without it a name resolving to a private address is not detected (IP
literals and `localhost` are). Bundle `next` links and redirects are never followed to another
origin (app/retrieval.py), so the token stays with the accepted server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class UntrustedFhirServer(ValueError):
    """The fhirServer is refused; the message names the reason (safe to return to the client)."""


@dataclass(frozen=True)
class _Base:
    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]


def _parse(url: str) -> _Base:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UntrustedFhirServer("fhirServer must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise UntrustedFhirServer("fhirServer must not carry user info (user:password@)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UntrustedFhirServer("fhirServer must be a base URL without query or fragment")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise UntrustedFhirServer("fhirServer has an invalid port") from None
    segments = tuple(s for s in parts.path.split("/") if s)
    if any(s in (".", "..") for s in segments):
        raise UntrustedFhirServer("fhirServer path must not contain '.' or '..' segments")
    return _Base(scheme, parts.hostname.lower().rstrip("."), port, segments)


def address_class(host: str) -> str | None:
    """'loopback', 'link-local', 'private' or 'non-public' for a local host name or IP literal;
    None for a public address or a host name (not resolved)."""
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:  # 0.0.0.0 / :: reach the local host on most systems
        return "non-public"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "non-public"
    return None


def _matches(url: _Base, entry: _Base) -> bool:
    return (
        (url.scheme, url.host, url.port) == (entry.scheme, entry.host, entry.port)
        and url.segments[: len(entry.segments)] == entry.segments
    )


def check_fhir_server(url: str, client_servers: Iterable[str] | None, always_trusted: Iterable[str] = ()) -> None:
    """Raise UntrustedFhirServer unless `url` may be queried.

    `client_servers`: the authenticated client's `fhir_servers`, or None when client authentication
    is off (development rules, see the module docstring). `always_trusted`: base URLs accepted in
    either case (the service's own embedded demo server, answered in process)."""
    base = _parse(url)
    if any(_matches(base, _parse(entry)) for entry in always_trusted):
        return
    kind = address_class(base.host)
    if client_servers is None:
        if kind in ("link-local", "private", "non-public"):
            raise UntrustedFhirServer(f"fhirServer is a {kind} address")
        return
    entries = [_parse(entry) for entry in client_servers]
    if any(_matches(base, entry) for entry in entries):
        return
    if kind is not None:
        raise UntrustedFhirServer(f"fhirServer is a {kind} address not listed for this client")
    if base.scheme == "http" and any(e.scheme == "https" and e.host == base.host for e in entries):
        raise UntrustedFhirServer("fhirServer must use https (this client's entry for the host is https)")
    raise UntrustedFhirServer("fhirServer is not one of this client's FHIR servers")
