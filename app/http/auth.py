"""CDS client authentication and FHIR server trust, wired into the routes (see README, Security).

- `configure_security(app, settings)`: loads the trusted clients, applies the profile (production
  refuses unsafe settings: `StartupRefused`), logs a loud WARNING in the open development profile.
- `authenticate_client`: the FastAPI dependency on discovery, service calls and feedback. With
  `BESPONSA_AUTH=jwt` a call without a valid CDS client JWT gets a bare 401 with
  `WWW-Authenticate: Bearer ...`; the reason is logged, the token never.
- `check_fhir_server`: the hook call's `fhirServer` against the calling client's `fhir_servers`
  (400 naming the reason, before anything is fetched).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.service import HookCallError
from app.settings import Settings
from cds_hooks import fhir_server_trust
from cds_hooks.security import (
    AuthenticatedClient,
    AuthError,
    JWKSCache,
    ReplayStoreUnavailable,
    TokenVerifier,
    TrustConfigError,
    TrustedClient,
    load_trusted_clients,
    www_authenticate,
)

log = logging.getLogger("besponsa_cds.auth")

# The CDS Hooks sandbox signs with a private key published in its repository: anyone can forge its
# tokens, so it is a development client only (app/data/trusted-clients.sandbox.json).
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"

UNAUTHORIZED = {"error": "unauthorized", "message": "A valid CDS client JWT is required (CDS Hooks 2.0 security)."}

REPLAY_STORE_DOWN = {
    "error": "store_unavailable",
    "message": "The client token could not be checked for replay (database unavailable); nothing was done.",
}

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="CDSClientJWT",
    description=(
        "CDS Hooks 2.0 client JWT, required when the service runs with BESPONSA_AUTH=jwt: signed "
        "with ES256/384/512, RS256/384/512 or PS256/384/512 by a trusted client (iss), aud = the URL "
        "called, exp, iat, a fresh jti."
    ),
)


class StartupRefused(RuntimeError):
    """The configuration is unsafe for its profile; the service must not start."""


def _uses_sandbox_key(client: TrustedClient) -> bool:
    keys = (client.jwks or {}).get("keys", [])
    return client.iss == SANDBOX_ISS or any(isinstance(k, dict) and k.get("kid") == SANDBOX_KID for k in keys)


def load_clients(settings: Settings) -> dict[str, TrustedClient]:
    """The trusted clients of this configuration; raises StartupRefused with every reason."""
    clients: dict[str, TrustedClient] = {}
    if settings.trusted_clients_file:
        try:
            clients = load_trusted_clients(settings.trusted_clients_file)
        except TrustConfigError as exc:
            raise StartupRefused(str(exc)) from None
    problems: list[str] = []
    if settings.auth == "jwt" and not clients:
        problems.append("BESPONSA_AUTH=jwt needs BESPONSA_TRUSTED_CLIENTS_FILE listing at least one client")
    if settings.env == "production":
        problems += settings.production_problems(len(clients))
        problems += [
            f"trusted client '{c.iss}' is the CDS Hooks sandbox, whose private key is public (development only)"
            for c in clients.values() if _uses_sandbox_key(c)
        ]
    if problems:
        raise StartupRefused(f"refusing to start ({settings.env} profile): " + "; ".join(problems))
    return clients


def own_fhir_base(settings: Settings) -> str | None:
    """The embedded demo FHIR server's URL, when it is served (answered in process)."""
    return f"{settings.public_base_url.rstrip('/')}/fhir" if settings.embedded_fhir else None


def configure_security(app: FastAPI, settings: Settings) -> None:
    clients = load_clients(settings)
    app.state.trusted_clients = clients
    app.state.token_verifier = None
    if settings.auth == "jwt":
        app.state.token_verifier = TokenVerifier(
            clients,
            lambda: app.state.store,  # opened by the lifespan; the database is the shared jti store
            jwks_cache=JWKSCache(
                timeout_seconds=settings.jwks_timeout_seconds,
                min_refresh_seconds=settings.jwks_min_refresh_seconds,
                max_age_seconds=settings.jwks_cache_seconds,
            ),
            leeway_seconds=settings.auth_leeway_seconds,
            max_lifetime_seconds=settings.auth_max_token_lifetime_seconds,
        )
    own = own_fhir_base(settings)
    app.state.always_trusted_fhir = (own,) if own else ()
    open_parts = []
    if settings.auth == "off":
        open_parts.append("client authentication is OFF (any caller is accepted)")
    if own:
        open_parts.append(f"the embedded demo FHIR server {own} is served and trusted")
    if "*" in settings.cors_origin_list:
        open_parts.append("CORS allows any origin")
    if settings.env == "development" and open_parts:
        log.warning(
            "DEVELOPMENT PROFILE, NOT FOR PATIENT DATA: %s. Set BESPONSA_ENV=production for a deployment.",
            "; ".join(open_parts),
        )


async def authenticate_client(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # documents the scheme
) -> AuthenticatedClient | None:
    """The verified caller (None when BESPONSA_AUTH=off); a bare 401 otherwise."""
    # create_app always sets it; an app assembled from bare routers (unit tests) has auth off.
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        return None
    settings: Settings = request.app.state.settings
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):  # a proxy prefix belongs in BESPONSA_PUBLIC_BASE_URL
        path = path[len(root):]
    audience = settings.public_base_url.rstrip("/") + path  # the URL the client called
    try:
        caller = await verifier.verify(request.headers.get("authorization"), audience)
    except AuthError as exc:
        # The reason and the claimed iss (both capped), never the token.
        log.warning(
            "CDS client authentication refused: %s (iss %r)",
            exc.reason[:200],
            (exc.iss or "")[:100] or None,
            extra={"path": request.url.path, "status": 401},
        )
        raise HTTPException(401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": www_authenticate(exc)}) from None
    except ReplayStoreUnavailable as exc:  # fail closed, but say it is the service's fault
        log.error("jti replay store unavailable", extra={"path": request.url.path, "error_type": str(exc)})
        raise HTTPException(503, detail=REPLAY_STORE_DOWN, headers={"Retry-After": "5"}) from None
    return caller


def check_fhir_server(request: Request, caller: AuthenticatedClient | None, fhir_server: str | None) -> None:
    """Raise a 400 HookCallError unless this caller may make the service query `fhir_server`."""
    if not fhir_server:
        return
    servers = caller.client.fhir_servers if caller is not None else None
    try:
        fhir_server_trust.check_fhir_server(fhir_server, servers, getattr(request.app.state, "always_trusted_fhir", ()))
    except fhir_server_trust.UntrustedFhirServer as exc:
        log.warning("fhirServer refused: %s (client %r)", exc, caller.iss if caller else None)
        raise HookCallError(
            400,
            "invalid_request",
            f"The fhirServer is not trusted: {exc}. No data was fetched and the hook was not run.",
            details=[{"field": "fhirServer", "message": str(exc)}],
        ) from None


def openapi_security_responses(doc: dict[str, Any]) -> None:
    """Document the 401 of every operation that takes the client JWT."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("security"):
                operation.setdefault("responses", {})["401"] = {
                    "description": "No valid CDS client JWT (only with BESPONSA_AUTH=jwt). The reason is logged, not returned.",
                    "headers": {"WWW-Authenticate": {
                        "description": 'Bearer realm="cds-services"[, error="invalid_token"] (RFC 6750)',
                        "schema": {"type": "string"},
                    }},
                    "content": {"application/json": {"example": UNAUTHORIZED}},
                }
                operation["responses"].setdefault("503", {
                    "description": "The token's jti could not be checked (database unavailable; only with BESPONSA_AUTH=jwt).",
                    "content": {"application/json": {"example": REPLAY_STORE_DOWN}},
                })
