"""CDS client authentication (CDS Hooks 2.0, "Security and Safety"): trusted clients, JWT checks, JWKS cache.

Every call (discovery, service, feedback) carries `Authorization: Bearer <JWT>` signed by the CDS
client. Header: `alg`, `kid`, `typ` "JWT", optional `jku`. Claims: `iss`, `aud` (the URL called),
`exp`, `iat`, `jti`, optional `tenant`. Here:
- only asymmetric algorithms (ES*, RS*, PS*); `none` and HMAC are refused before any key is looked up;
- `iss` must be a trusted client; its keys come from the client's configured `jwks_url` or inline
  `jwks`, or from the token's `jku` only when that URL is on the client's `jku_allowlist`;
- JWKS documents are cached, re-fetched on an unknown `kid` at most once per `min_refresh_seconds`,
  fetched with a short time-out and a size cap, never following redirects;
- `aud` must equal the URL called; `exp`/`iat`/`nbf` are checked with a small leeway; `jti` is
  required and refused when the shared replay store has seen it within the token's lifetime.
Verification uses PyJWT (with `cryptography`); nothing here logs or returns the token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# RFC 7518 asymmetric signature algorithms; `none` and HS* are never accepted.
ALLOWED_ALGORITHMS = frozenset({
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
})
_MAX_JWKS_BYTES = 64 * 1024
_MAX_CLAIM_LENGTH = 255


class AuthError(Exception):
    """The call is not authenticated. `reason` is for the log (never contains the token); the
    client only sees a bare 401."""

    def __init__(self, reason: str, *, iss: str | None = None, token_sent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.token_sent = token_sent


class ReplayStoreUnavailable(Exception):
    """The jti store could not be asked: the call can be neither accepted nor refused (-> 503)."""


class TrustConfigError(ValueError):
    """The trusted-clients file cannot be used."""


# ---------------------------------------------------------------------------- trusted clients


def _is_loopback_host(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def _key_url(value: str) -> str:
    """A JWKS URL: https, or http only on a loopback host (local tests); compared exactly."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" and bool(host)
    if not (secure or (parts.scheme == "http" and _is_loopback_host(host))):
        raise ValueError(f"'{value}' must be an https URL (http only on localhost)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"'{value}' must not carry user info")
    return value


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' must be an absolute http(s) URL")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"'{value}' must be a base URL without user info, query or fragment")
    parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    return value


class TrustedClient(BaseModel):
    """One CDS client (EHR) this service trusts, as configured in the trusted-clients file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1, max_length=_MAX_CLAIM_LENGTH)
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    jku_allowlist: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()
    tenant: str | None = Field(None, min_length=1)
    description: str | None = None  # free text for operators

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return _key_url(value) if value is not None else None

    @field_validator("jku_allowlist")
    @classmethod
    def _jku_allowlist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_key_url(v) for v in value)

    @field_validator("fhir_servers")
    @classmethod
    def _fhir_servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_base_url(v) for v in value)

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        keys = value.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ValueError("jwks must be a JWK Set: {\"keys\": [...]} with at least one key")
        for n, key in enumerate(keys):
            _check_public_jwk(key, f"jwks.keys[{n}]")
        return value

    @model_validator(mode="after")
    def _has_a_key_source(self) -> TrustedClient:
        if self.jwks_url and self.jwks:
            raise ValueError("give either jwks_url or jwks, not both")
        if not (self.jwks_url or self.jwks or self.jku_allowlist):
            raise ValueError("needs jwks_url, jwks or a jku_allowlist to find the client's keys")
        return self


def _check_public_jwk(key: Any, where: str) -> None:
    if not isinstance(key, dict):
        raise ValueError(f"{where} must be a JWK object")
    if key.get("kty") not in ("EC", "RSA"):
        raise ValueError(f"{where}: only EC and RSA public keys are accepted (kty {key.get('kty')!r})")
    if "d" in key:
        raise ValueError(f"{where} holds private key material: give the public key only")
    if not isinstance(key.get("kid"), str) or not key["kid"]:
        raise ValueError(f"{where} needs a 'kid'")
    try:
        jwt.PyJWK(key)
    except jwt.PyJWTError as exc:
        raise ValueError(f"{where} is not a usable key: {exc}") from exc


def parse_trusted_clients(data: Any, source: str = "trusted clients") -> dict[str, TrustedClient]:
    """A JSON list of client entries -> {iss: TrustedClient}; raises TrustConfigError."""
    if not isinstance(data, list):
        raise TrustConfigError(f"{source}: expected a JSON list of client entries")
    clients: dict[str, TrustedClient] = {}
    for n, entry in enumerate(data):
        try:
            client = TrustedClient.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise TrustConfigError(f"{source}: entry {n}: {problems}") from None
        if client.iss in clients:
            raise TrustConfigError(f"{source}: entry {n}: iss '{client.iss}' is listed twice")
        clients[client.iss] = client
    return clients


def load_trusted_clients(path: str | Path) -> dict[str, TrustedClient]:
    """Read the trusted-clients JSON file; raises TrustConfigError with the reason."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrustConfigError(f"trusted clients file {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise TrustConfigError(f"trusted clients file {path}: not valid JSON ({exc})") from None
    return parse_trusted_clients(data, f"trusted clients file {path}")


# ---------------------------------------------------------------------------- JWKS cache


async def fetch_jwks(url: str, timeout_seconds: float) -> dict[str, Any]:
    """GET a JWK Set (no redirects, size-capped); raises httpx.HTTPError or ValueError."""
    async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ValueError(f"JWKS endpoint answered {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise ValueError("JWKS document is too large")
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    return document


@dataclass
class _CachedSet:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> JWK
    fetched_at: float | None = None  # last successful fetch (monotonic)
    attempted_at: float | None = None  # last fetch attempt (monotonic), for the rate limit


def _keys_by_kid(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k["kid"]: k
        for k in document.get("keys", [])
        if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("kty") in ("EC", "RSA") and "d" not in k
    }


class JWKSCache:
    """JWK Sets by URL: cached for `max_age_seconds`, re-fetched on an unknown kid at most once per
    `min_refresh_seconds` per URL (an attacker sending random kids cannot make us hammer the EHR).
    A failed fetch keeps the keys already known."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 2.0,
        min_refresh_seconds: float = 60.0,
        max_age_seconds: float = 3600.0,
        fetch: Callable[[str, float], Awaitable[dict[str, Any]]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._fetch = fetch
        self._clock = clock
        self._sets: dict[str, _CachedSet] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, url: str, kid: str) -> dict[str, Any]:
        """The JWK with this kid at `url`; raises AuthError when there is none."""
        cached = self._sets.setdefault(url, _CachedSet())
        if kid in cached.keys and not self._stale(cached):
            return cached.keys[kid]
        async with self._locks.setdefault(url, asyncio.Lock()):
            if kid not in cached.keys or self._stale(cached):
                await self._refresh(url, cached)
        if kid not in cached.keys:
            raise AuthError(f"no key with kid '{kid}' in the JWK Set at {url}")
        return cached.keys[kid]

    def _stale(self, cached: _CachedSet) -> bool:
        return cached.fetched_at is None or self._clock() - cached.fetched_at > self.max_age_seconds

    async def _refresh(self, url: str, cached: _CachedSet) -> None:
        now = self._clock()
        if cached.attempted_at is not None and now - cached.attempted_at < self.min_refresh_seconds:
            return  # rate-limited: answer from what is known
        cached.attempted_at = now
        try:
            document = await self._fetch(url, self.timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - any failure to read keys is a 401, never a 500
            if not cached.keys:
                raise AuthError(f"JWK Set at {url} could not be fetched ({type(exc).__name__})") from None
            return  # keep the keys we have
        cached.keys = _keys_by_kid(document)
        cached.fetched_at = self._clock()


# ---------------------------------------------------------------------------- verification


class ReplayStore(Protocol):
    def remember_token_id(self, iss: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record (iss, jti) until `expires_at`; False when it is already recorded and unexpired."""


@dataclass(frozen=True)
class AuthenticatedClient:
    """A caller whose token was verified."""

    client: TrustedClient
    claims: dict[str, Any]

    @property
    def iss(self) -> str:
        return self.client.iss


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("no Authorization header", token_sent=False)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization is not a Bearer token", token_sent=False)
    return token.strip()


class TokenVerifier:
    """Checks a CDS client JWT against the trusted clients (see the module docstring)."""

    def __init__(
        self,
        clients: dict[str, TrustedClient],
        replay_store: Callable[[], ReplayStore],
        *,
        jwks_cache: JWKSCache | None = None,
        leeway_seconds: float = 30.0,
        max_lifetime_seconds: float = 3600.0,
        run_sync: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.clients = clients
        self._replay_store = replay_store
        self.jwks_cache = jwks_cache or JWKSCache()
        self.leeway_seconds = leeway_seconds
        self.max_lifetime_seconds = max_lifetime_seconds
        self._run_sync = run_sync or _in_thread

    async def verify(self, authorization: str | None, audience: str) -> AuthenticatedClient:
        token = bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthError(f"algorithm {alg!r} is not accepted (asymmetric signatures only)")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthError(f"typ {typ!r} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_CLAIM_LENGTH:
            raise AuthError("token header has no usable kid")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError("iss is not a trusted client", iss=iss if isinstance(iss, str) else None)

        jwk = await self._key(client, header, kid)
        if jwk.get("alg") not in (None, alg):
            raise AuthError(f"key '{kid}' is for {jwk.get('alg')}, the token is signed with {alg}", iss=client.iss)
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=client.iss,
                leeway=self.leeway_seconds,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise AuthError(f"token refused: {type(exc).__name__}: {exc}", iss=client.iss) from None

        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_CLAIM_LENGTH:
            raise AuthError("jti must be a string of 1-255 characters", iss=client.iss)
        now = datetime.now(UTC)
        if int(claims["exp"]) - now.timestamp() > self.max_lifetime_seconds:  # also bounds the jti store
            raise AuthError(f"exp is more than {self.max_lifetime_seconds:g} s ahead", iss=client.iss)
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise AuthError("tenant does not match the client's", iss=client.iss)
        try:
            fresh = await self._run_sync(
                self._replay_store().remember_token_id,
                client.iss,
                jti,
                expires_at + timedelta(seconds=self.leeway_seconds),
                now,
            )
        except Exception as exc:  # noqa: BLE001 - a database outage is not a client error
            raise ReplayStoreUnavailable(type(exc).__name__) from exc
        if not fresh:
            raise AuthError("jti was already used (replay)", iss=client.iss)
        return AuthenticatedClient(client=client, claims=claims)

    async def _key(self, client: TrustedClient, header: dict[str, Any], kid: str) -> dict[str, Any]:
        """The client's key for `kid`: configured keys first; a `jku` only when allowlisted."""
        jku = header.get("jku")
        if jku is not None and (not isinstance(jku, str) or jku not in client.jku_allowlist):
            raise AuthError("jku is not on the client's jku_allowlist", iss=client.iss)
        if client.jwks is not None:
            keys = _keys_by_kid(client.jwks)
            if kid in keys:
                return keys[kid]
        if jku is not None:
            return await self.jwks_cache.key(jku, kid)
        if client.jwks_url is not None:
            return await self.jwks_cache.key(client.jwks_url, kid)
        raise AuthError(f"no key with kid '{kid}' among the client's configured keys", iss=client.iss)


async def _in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(func, *args)


def www_authenticate(error: AuthError, realm: str = "cds-services") -> str:
    """RFC 6750 section 3: no error code when no token was sent, `invalid_token` otherwise."""
    if not error.token_sent:
        return f'Bearer realm="{realm}"'
    return f'Bearer realm="{realm}", error="invalid_token"'
