"""CDS client JWTs (CDS Hooks 2.0 security) on the real app: real ES384/RS384 keys, a real SQLite jti store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fastapi.testclient import TestClient

from app.http.app import create_app
from app.settings import Settings
from tests.conftest import hook_body
from tests.security_support import (
    BASE,
    DISCOVERY,
    EHR_FHIR,
    bearer,
    ehr_entry,
    hs256_with_public_key,
    private_key,
    public_jwk,
    raw_token,
    token,
    unsigned_token,
    write_clients,
)

EC, RSA = private_key("ec384"), private_key("rsa")
SIGNERS = {"ES384": (EC, "ec1"), "RS384": (RSA, "rsa1")}


def jwt_settings(tmp_path: Path, entries: list[dict[str, Any]], **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        auth="jwt",
        trusted_clients_file=write_clients(tmp_path / "clients.json", entries),
        public_base_url=BASE,
        database_url=f"sqlite:///{tmp_path}/shared.db",
        embedded_fhir=False,
        log_level="WARNING",
        jwks_min_refresh_seconds=0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(jwt_settings(tmp_path, [ehr_entry()])), raise_server_exceptions=False) as c:
        yield c


def assert_bare_401(response: httpx.Response, *, token_sent: bool = True) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="cds-services"')
    assert ('error="invalid_token"' in challenge) is token_sent
    assert response.json() == {"error": "unauthorized", "message": "A valid CDS client JWT is required (CDS Hooks 2.0 security)."}


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_valid_token_passes_on_discovery_hook_call_and_feedback(alg: str, client: TestClient, fake_pipeline) -> None:
    key, kid = SIGNERS[alg]
    assert client.get("/cds-services", headers=bearer(token(key, alg, kid))).status_code == 200
    service = f"{BASE}/cds-services/besponsa-order-sign"
    hook = client.post("/cds-services/besponsa-order-sign", json=hook_body("order-sign", fhirServer=EHR_FHIR),
                       headers=bearer(token(key, alg, kid, aud=service)))
    assert hook.status_code == 200, hook.text
    assert fake_pipeline.collects[0]["fhir_server"] == EHR_FHIR
    feedback = client.post("/cds-services/besponsa-order-sign/feedback", json={"feedback": []},
                           headers=bearer(token(key, alg, kid, aud=f"{service}/feedback")))
    assert feedback.status_code != 401  # authenticated; the empty list is the feedback route's to judge


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "PS384"])
def test_other_rsa_algorithms_pass_with_a_key_without_alg(alg: str, client: TestClient) -> None:
    assert client.get("/cds-services", headers=bearer(token(RSA, alg, "rsa1"))).status_code == 200


def test_the_hand_built_token_helper_signs_validly(client: TestClient) -> None:
    # the refused cases built with raw_token fail for their stated reason, not a bad signature
    assert client.get("/cds-services", headers=bearer(raw_token(EC, "ES384", {"kid": "ec1"}))).status_code == 200


def test_aud_may_be_a_list_holding_the_url_called(client: TestClient) -> None:
    tok = token(EC, "ES384", "ec1", aud=["https://other.example/x", DISCOVERY])
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 200


def test_every_route_a_client_calls_refuses_a_missing_token(client: TestClient) -> None:
    assert_bare_401(client.get("/cds-services"), token_sent=False)
    assert_bare_401(client.post("/cds-services/besponsa-order-sign", json=hook_body("order-sign")), token_sent=False)
    assert_bare_401(client.post("/cds-services/besponsa-order-sign/feedback", json={"feedback": []}), token_sent=False)
    assert_bare_401(client.get("/cds-services", headers={"Authorization": "Basic dXNlcjpwdw=="}), token_sent=False)
    assert client.get("/healthz").status_code == 200  # liveness stays open


def test_a_hook_call_with_a_discovery_token_is_refused(client: TestClient, fake_pipeline) -> None:
    r = client.post("/cds-services/besponsa-order-sign", json=hook_body("order-sign"),
                    headers=bearer(token(EC, "ES384", "ec1")))  # aud = the discovery URL
    assert_bare_401(r)
    assert fake_pipeline.collects == []  # nothing ran


def _refused_tokens() -> dict[str, str]:
    now = int(time.time())
    other_ec = private_key("ec384", "intruder")
    return {
        "garbage": "not-a-jwt",
        "garbage with dots": "eyJhbGciOiJFUzM4NCJ9.e30.AAAA",
        "alg none": unsigned_token("ec1"),
        "HS256 signed with the public key": hs256_with_public_key(EC, "ec1"),
        "expired": token(EC, "ES384", "ec1", iat=now - 900, exp=now - 120),
        "not yet valid (nbf)": token(EC, "ES384", "ec1", nbf=now + 600),
        "issued in the future": token(EC, "ES384", "ec1", iat=now + 600, exp=now + 900),
        "wrong aud": token(EC, "ES384", "ec1", aud=f"{BASE}/cds-services/besponsa-order-sign"),
        "aud on another host": token(EC, "ES384", "ec1", aud="https://attacker.example/cds-services"),
        "wrong iss": token(EC, "ES384", "ec1", iss="https://attacker.example"),
        "unknown kid": token(EC, "ES384", "no-such-kid"),
        "signed by another key under a trusted kid": token(other_ec, "ES384", "ec1"),
        "RS384 under the EC key's kid": token(RSA, "RS384", "ec1"),
        "jku off the allowlist": token(other_ec, "ES384", "evil", headers={"jku": "https://attacker.example/jwks.json"}),
        "no jti": token(EC, "ES384", "ec1", jti=None),
        "no exp": token(EC, "ES384", "ec1", exp=None),
        "no iat": token(EC, "ES384", "ec1", iat=None),
        "lifetime beyond the maximum": token(EC, "ES384", "ec1", exp=now + 7200),
        "exp far beyond any date": token(EC, "ES384", "ec1", exp=10**20),
        "exp not a number": token(EC, "ES384", "ec1", exp="soon"),
        "iss not a string": raw_token(EC, "ES384", {"kid": "ec1"}, iss=["https://ehr.example.org"]),
        "kid not a string": raw_token(EC, "ES384", {"kid": 7}),
        "no kid": raw_token(EC, "ES384", {}),
        "alg a list": unsigned_token("ec1", header_alg=["ES384"]),
        "jku a list": raw_token(EC, "ES384", {"kid": "ec1", "jku": ["https://ehr.example.org/.well-known/jwks.json"]}),
        "typ not JWT": token(EC, "ES384", "ec1", headers={"typ": "at+jwt"}),
    }


REFUSED = _refused_tokens()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_tokens_get_a_bare_401(case: str, client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        attacker = mock.get(url__startswith="https://attacker.example").mock(return_value=httpx.Response(500))
        assert_bare_401(client.get("/cds-services", headers=bearer(REFUSED[case])))
    assert attacker.call_count == 0  # an unlisted jku is never fetched


def test_a_replayed_jti_is_refused(client: TestClient) -> None:
    tok = token(RSA, "RS384", "rsa1")
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 200
    assert_bare_401(client.get("/cds-services", headers=bearer(tok)))
    # the same jti in a new token (new signature) is a replay too
    jti = "fixed-jti-1"
    assert client.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", jti=jti))).status_code == 200
    assert_bare_401(client.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", jti=jti))))


def test_a_jti_is_replayed_across_two_app_instances_on_one_sqlite_database(tmp_path: Path) -> None:
    settings = jwt_settings(tmp_path, [ehr_entry()])
    first, second = create_app(settings), create_app(settings)
    tok, tok2 = token(EC, "ES384", "ec1"), token(RSA, "RS384", "rsa1")
    with TestClient(first) as a, TestClient(second) as b:
        assert first.state.store is not second.state.store  # two engines, one database file
        assert a.get("/cds-services", headers=bearer(tok)).status_code == 200
        assert_bare_401(b.get("/cds-services", headers=bearer(tok)))
        assert b.get("/cds-services", headers=bearer(tok2)).status_code == 200
        assert_bare_401(a.get("/cds-services", headers=bearer(tok2)))


def test_the_tenant_of_a_client_entry_is_required(tmp_path: Path) -> None:
    app = create_app(jwt_settings(tmp_path, [ehr_entry(tenant="hospital-a")]))
    with TestClient(app) as c:
        assert c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", tenant="hospital-a"))).status_code == 200
        assert_bare_401(c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", tenant="hospital-b"))))
        assert_bare_401(c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1"))))


def test_aud_follows_the_public_base_url_behind_a_proxy(tmp_path: Path) -> None:
    # The proxy forwards https://gateway.example.org/besponsa/... to the service's /...
    app = create_app(jwt_settings(tmp_path, [ehr_entry()], public_base_url="https://gateway.example.org/besponsa/"))
    with TestClient(app) as c:
        ok = token(EC, "ES384", "ec1", aud="https://gateway.example.org/besponsa/cds-services")
        assert c.get("/cds-services", headers=bearer(ok)).status_code == 200
        assert_bare_401(c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", aud="http://testserver/cds-services"))))


def test_aud_with_a_root_path_proxy_counts_the_prefix_once(tmp_path: Path) -> None:
    app = create_app(jwt_settings(tmp_path, [ehr_entry()], public_base_url="https://gateway.example.org/besponsa"))
    with TestClient(app, root_path="/besponsa") as c:
        ok = token(EC, "ES384", "ec1", aud="https://gateway.example.org/besponsa/cds-services")
        assert c.get("/cds-services", headers=bearer(ok)).status_code == 200


def test_leeway_accepts_small_clock_skew_only(tmp_path: Path) -> None:
    now = int(time.time())
    app = create_app(jwt_settings(tmp_path, [ehr_entry()], auth_leeway_seconds=60))
    with TestClient(app) as c:
        assert c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", iat=now - 400, exp=now - 30))).status_code == 200
        assert_bare_401(c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1", iat=now - 400, exp=now - 90))))


def test_the_token_is_never_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    tok = REFUSED["wrong aud"]
    good = token(EC, "ES384", "ec1")
    with caplog.at_level(logging.DEBUG):
        client.get("/cds-services", headers=bearer(tok))
        client.get("/cds-services", headers=bearer(good))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "CDS client authentication refused" in text
    for t in (tok, good):
        for part in t.split("."):
            assert part not in text


# ------------------------------------------------------------------ keys from URLs (respx)

JWKS_URL = "https://keys.ehr.example.org/jwks.json"


def url_client_app(tmp_path: Path, **entry: Any) -> Any:
    entry = {"iss": "https://url.example.org", "fhir_servers": [EHR_FHIR], **entry}
    return create_app(jwt_settings(tmp_path, [entry]))


def test_keys_from_jwks_url_are_cached_and_a_rotated_kid_is_picked_up(tmp_path: Path) -> None:
    ec256, ec256_next = private_key("ec256"), private_key("ec256", "next")
    iss = "https://url.example.org"
    with respx.mock(assert_all_called=False) as mock:
        published = {"keys": [public_jwk(ec256, "k1", "ES256")]}
        route = mock.get(JWKS_URL).mock(side_effect=lambda request: httpx.Response(200, json=published))
        with TestClient(url_client_app(tmp_path, jwks_url=JWKS_URL)) as c:
            for _ in range(3):  # one fetch serves every call while the kid is known
                assert c.get("/cds-services", headers=bearer(token(ec256, "ES256", "k1", iss=iss))).status_code == 200
            assert route.call_count == 1
            # The EHR rotates: a new kid makes the cache re-read the JWK Set.
            published = {"keys": [public_jwk(ec256_next, "k2", "ES256")]}
            assert c.get("/cds-services", headers=bearer(token(ec256_next, "ES256", "k2", iss=iss))).status_code == 200
            assert route.call_count == 2
            assert_bare_401(c.get("/cds-services", headers=bearer(token(ec256, "ES256", "k1", iss=iss))))  # retired


def test_an_allowlisted_jku_is_fetched(tmp_path: Path) -> None:
    jku = "https://ehr.example.org/.well-known/jwks.json"
    rotated = private_key("ec384", "jku")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(jku).mock(return_value=httpx.Response(200, json={"keys": [public_jwk(rotated, "from-jku")]}))
        with TestClient(create_app(jwt_settings(tmp_path, [ehr_entry()]))) as c:
            tok = token(rotated, "ES384", "from-jku", headers={"jku": jku})
            assert c.get("/cds-services", headers=bearer(tok)).status_code == 200
    assert route.call_count == 1


@pytest.mark.parametrize("failure", [
    httpx.Response(500), httpx.Response(200, text="not json"), httpx.Response(200, json={"no": "keys"}),
    httpx.Response(302, headers={"Location": "https://attacker.example/jwks.json"}),
    httpx.ConnectTimeout("slow"),
])
def test_an_unusable_jwks_url_gives_401_never_500(tmp_path: Path, failure: Any) -> None:
    ec256 = private_key("ec256")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(JWKS_URL).mock(side_effect=[failure])
        attacker = mock.get(url__startswith="https://attacker.example").mock(return_value=httpx.Response(200))
        with TestClient(url_client_app(tmp_path, jwks_url=JWKS_URL), raise_server_exceptions=False) as c:
            assert_bare_401(c.get("/cds-services", headers=bearer(token(ec256, "ES256", "k1", iss="https://url.example.org"))))
    assert attacker.call_count == 0  # redirects are not followed


def test_a_database_outage_during_the_replay_check_is_503_not_a_pass(tmp_path: Path) -> None:
    class DownStore:
        def remember_token_id(self, *args: Any) -> bool:
            raise OSError("database is down")

    app = create_app(jwt_settings(tmp_path, [ehr_entry()]))
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.store = DownStore()
        r = c.get("/cds-services", headers=bearer(token(EC, "ES384", "ec1")))
    assert r.status_code == 503
    assert r.json()["error"] == "store_unavailable"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
_header_keys = st.sampled_from(["alg", "kid", "typ", "jku", "crit", "jwk", "x5u"])
_claim_keys = st.sampled_from(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.dictionaries(_header_keys, _json, max_size=5),
    payload=st.dictionaries(_claim_keys, _json, max_size=7),
    signature=st.binary(max_size=64),
)
def test_any_malformed_token_is_a_401_never_a_500(client: TestClient, header: dict, payload: dict, signature: bytes) -> None:
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    tok = ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 401
