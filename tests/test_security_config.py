"""Trusted-clients file, JWKS cache rate limit, the profiles (development / production) and CORS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.http.app import create_app
from app.http.auth import StartupRefused
from app.settings import Settings
from cds_hooks.security import AuthError, JWKSCache, TrustConfigError, load_trusted_clients, parse_trusted_clients
from tests.security_support import ehr_entry, private_key, public_jwk, write_clients

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_FILE = ROOT / "app" / "data" / "trusted-clients.sandbox.json"


# ------------------------------------------------------------------ trusted clients file

def test_the_shipped_sandbox_entry_is_the_published_sandbox_key() -> None:
    clients = load_trusted_clients(SANDBOX_FILE)
    sandbox = clients["https://sandbox.cds-hooks.org"]
    published = json.loads(Path("/work/shared/reference/cds-hooks-sandbox-jwks.json").read_text()) \
        if Path("/work/shared/reference/cds-hooks-sandbox-jwks.json").exists() else None
    (key,) = sandbox.jwks["keys"]
    assert (key["kid"], key["alg"], key["crv"]) == ("44823f3d-0b01-4a6c-a80e-b9d3e8a7226f", "ES384", "P-384")
    if published:
        assert sandbox.jwks == published
    assert "https://sandbox.cds-hooks.org/.well-known/jwks.json" in sandbox.jku_allowlist
    assert "DEVELOPMENT ONLY" in sandbox.description


@pytest.mark.parametrize("entries, reason", [
    ({"iss": "x"}, "expected a JSON list"),
    ([{"iss": "x", "fhir_servers": []}], "needs jwks_url, jwks or a jku_allowlist"),
    ([{"iss": "x", "jwks_url": "http://keys.example.org/jwks"}], "must be an https URL"),
    ([{"iss": "x", "jku_allowlist": ["https://u:p@keys.example.org/jwks"]}], "user info"),
    ([{"iss": "x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}], "only EC and RSA"),
    ([{"iss": "x", "jwks": {"keys": [{**public_jwk(private_key("ec256"), "k"), "d": "AAAA"}]}}], "private key material"),
    ([{"iss": "x", "jwks": {"keys": [{k: v for k, v in public_jwk(private_key("ec256"), "k").items() if k != "kid"}]}}], "needs a 'kid'"),
    ([{"iss": "x", "jwks": {"keys": []}}], "at least one key"),
    ([{"iss": "x", "jwks_url": "https://k.example.org/j", "fhir_servers": ["https://u:p@ehr.example.org/fhir"]}], "user info"),
    ([{"iss": "x", "jwks_url": "https://k.example.org/j", "fhir_servers": ["ehr.example.org/fhir"]}], "absolute http\\(s\\) URL"),
    ([{"iss": "x", "jwks_url": "https://k.example.org/j", "fhirServers": []}], "Extra inputs are not permitted"),
    ([{"iss": "x", "jwks_url": "https://k.example.org/j"}, {"iss": "x", "jwks_url": "https://k.example.org/j"}], "listed twice"),
])
def test_unusable_trusted_client_entries_are_refused_with_the_reason(entries: Any, reason: str) -> None:
    with pytest.raises(TrustConfigError, match=reason):
        parse_trusted_clients(entries)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrustConfigError, match="cannot be read"):
        load_trusted_clients(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[{", encoding="utf-8")
    with pytest.raises(TrustConfigError, match="not valid JSON"):
        load_trusted_clients(tmp_path / "bad.json")


# ------------------------------------------------------------------ JWKS cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_kids_refetch_at_most_once_per_interval_and_cached_sets_age_out() -> None:
    fetches: list[str] = []
    document = {"keys": [public_jwk(private_key("ec256"), "k1")]}

    async def fetch(url: str, timeout: float) -> dict[str, Any]:
        fetches.append(url)
        return document

    clock = FakeClock()
    cache = JWKSCache(fetch=fetch, min_refresh_seconds=60, max_age_seconds=600, clock=clock)

    async def run() -> None:
        assert (await cache.key("https://k", "k1"))["kid"] == "k1"
        for _ in range(5):  # random kids cannot make us hammer the key server
            with pytest.raises(AuthError):
                await cache.key("https://k", "random")
        assert len(fetches) == 1
        clock.now += 61
        with pytest.raises(AuthError):
            await cache.key("https://k", "random")
        assert len(fetches) == 2
        clock.now += 601  # aged out: re-read even for a known kid
        await cache.key("https://k", "k1")
        assert len(fetches) == 3

    asyncio.run(run())


def test_a_failed_refresh_keeps_the_known_keys() -> None:
    calls = 0

    async def fetch(url: str, timeout: float) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("down")
        return {"keys": [public_jwk(private_key("ec256"), "k1")]}

    clock = FakeClock()
    cache = JWKSCache(fetch=fetch, min_refresh_seconds=0, max_age_seconds=10, clock=clock)

    async def run() -> None:
        await cache.key("https://k", "k1")
        clock.now += 11
        assert (await cache.key("https://k", "k1"))["kid"] == "k1"  # the key server is down: keep serving
        assert calls == 2

    asyncio.run(run())


# ------------------------------------------------------------------ profiles


def prod_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        env="production", auth="jwt", trusted_clients_file=write_clients(tmp_path / "c.json", [ehr_entry()]),
        cors_origins="https://ehr.example.org", embedded_fhir=False, public_base_url="https://cds.example.org",
        database_url=f"sqlite:///{tmp_path}/p.db", log_level="WARNING",
    )
    values.update(overrides)
    return Settings(**values)


def test_a_safe_production_configuration_starts(tmp_path: Path) -> None:
    app = create_app(prod_settings(tmp_path))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/cds-services").status_code == 401


@pytest.mark.parametrize("overrides, reason", [
    ({"auth": "off"}, "BESPONSA_AUTH must be jwt"),
    ({"auth": "off", "trusted_clients_file": None}, "must list at least one trusted client"),
    ({"cors_origins": "*"}, "BESPONSA_CORS_ORIGINS must list origins"),
    ({"cors_origins": "https://ehr.example.org, *"}, "BESPONSA_CORS_ORIGINS must list origins"),
    ({"embedded_fhir": True}, "BESPONSA_EMBEDDED_FHIR must be false"),
    ({"public_base_url": "http://cds.example.org"}, "BESPONSA_PUBLIC_BASE_URL must be the service's https URL"),
    ({"trusted_clients_file": str(SANDBOX_FILE)}, "is the CDS Hooks sandbox"),
])
def test_production_refuses_unsafe_settings(tmp_path: Path, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(StartupRefused, match=reason):
        create_app(prod_settings(tmp_path, **overrides))


def test_production_defaults_list_every_reason(tmp_path: Path) -> None:
    with pytest.raises(StartupRefused) as exc:
        create_app(Settings(env="production", log_level="WARNING"))
    message = str(exc.value)
    for reason in ("BESPONSA_AUTH must be jwt", "at least one trusted client", "'*'", "EMBEDDED_FHIR", "https URL"):
        assert reason in message


def test_jwt_auth_without_clients_is_refused_in_development_too(tmp_path: Path) -> None:
    with pytest.raises(StartupRefused, match="needs BESPONSA_TRUSTED_CLIENTS_FILE"):
        create_app(Settings(auth="jwt", log_level="WARNING"))
    with pytest.raises(StartupRefused, match="not valid JSON"):
        (tmp_path / "x.json").write_text("nope", encoding="utf-8")
        create_app(Settings(auth="jwt", trusted_clients_file=str(tmp_path / "x.json"), log_level="WARNING"))


def test_serve_exits_non_zero_with_the_reason_in_production(tmp_path: Path) -> None:
    env = {**os.environ, "BESPONSA_ENV": "production", "BESPONSA_PORT": "1"}
    env = {k: v for k, v in env.items() if k not in ("BESPONSA_AUTH", "BESPONSA_TRUSTED_CLIENTS_FILE")}
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start (production profile)" in done.stderr
    assert "BESPONSA_AUTH must be jwt" in done.stderr


def test_the_development_default_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="besponsa_cds.auth"):
        create_app(Settings(log_level="WARNING"))
    (record,) = [r for r in caplog.records if r.name == "besponsa_cds.auth"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "DEVELOPMENT PROFILE" in message and "authentication is OFF" in message
    assert "embedded demo FHIR server" in message and "CORS allows any origin" in message


def test_the_development_default_stays_open_for_the_demo() -> None:
    settings = Settings()
    assert (settings.env, settings.auth, settings.embedded_fhir, settings.cors_origins) == ("development", "off", True, "*")
    app = create_app(Settings(embedded_fhir=False, database_url="sqlite://", log_level="WARNING"))
    with TestClient(app) as c:
        r = c.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origins", ["ehr.example.org", "https://ehr.example.org/app", "javascript:alert(1)", "https://a@b.example"])
def test_cors_origins_must_be_origins(origins: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=origins)


def test_listed_cors_origins_only_are_allowed(tmp_path: Path) -> None:
    app = create_app(prod_settings(tmp_path, cors_origins="https://ehr.example.org, https://sandbox.example.org/"))
    with TestClient(app) as c:
        for origin in ("https://ehr.example.org", "https://sandbox.example.org"):
            pre = c.options("/cds-services", headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                                       "Access-Control-Request-Headers": "authorization"})
            assert pre.headers["access-control-allow-origin"] == origin
        other = c.options("/cds-services", headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers
