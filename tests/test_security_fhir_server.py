"""fhirServer trust: the client's fhir_servers (prefix on scheme, host, port, path segments), refused
addresses and user info, the development rules, and the bearer token never leaving the accepted origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.engine.policy import Policy
from app.http.app import create_app
from app.settings import Settings
from cds_hooks.fhir_server_trust import UntrustedFhirServer, address_class, check_fhir_server
from tests.conftest import hook_body
from tests.security_support import BASE, EHR_FHIR, bearer, ehr_entry, private_key, token
from tests.test_security_tokens import jwt_settings

CLIENT_SERVERS = (EHR_FHIR, "http://10.1.2.3:8080/fhir")
SERVICE = "besponsa-order-sign"

REFUSED_FOR_CLIENT = {
    "http://169.254.169.254/latest/meta-data": "link-local address",
    "http://[fe80::1]/fhir": "link-local address",
    "http://[::ffff:169.254.169.254]/fhir": "link-local address",
    "http://127.0.0.1:8080/fhir": "loopback address",
    "http://[::1]:9999/fhir": "loopback address",
    "http://localhost/fhir": "loopback address",
    "http://api.localhost/fhir": "loopback address",
    "http://10.0.0.5/fhir": "private address",
    "http://10.1.2.3:8081/fhir": "private address",  # listed address, other port
    "http://192.168.1.1/fhir": "private address",
    "http://172.16.0.1/fhir": "private address",
    "http://[fd00::1]/fhir": "private address",
    "http://0.0.0.0:8080/fhir": "address",
    "http://224.0.0.1/fhir": "address",
    "https://user:secret@ehr.example.org/fhir": "user info",
    "https://ehr.example.org@attacker.example/fhir": "user info",
    "http://ehr.example.org/fhir": "must use https",
    "https://ehr.example.org:8443/fhir": "not one of this client's FHIR servers",
    "https://ehr.example.org/fhirx": "not one of this client's FHIR servers",
    "https://ehr.example.org/": "not one of this client's FHIR servers",
    "https://ehr.example.org/other/fhir": "not one of this client's FHIR servers",
    "https://attacker.example/fhir": "not one of this client's FHIR servers",
    "https://ehr.example.org.attacker.example/fhir": "not one of this client's FHIR servers",
    "https://ehr.example.org/fhir?_format=json": "without query or fragment",
    "https://ehr.example.org/fhir#x": "without query or fragment",
    "https://ehr.example.org/fhir/../admin": "'.' or '..'",
    "https://ehr.example.org:99999/fhir": "invalid port",
}


@pytest.mark.parametrize("url", sorted(REFUSED_FOR_CLIENT))
def test_refused_for_an_authenticated_client(url: str) -> None:
    with pytest.raises(UntrustedFhirServer, match=REFUSED_FOR_CLIENT[url].replace("(", r"\(").replace(".", r"\.")):
        check_fhir_server(url, CLIENT_SERVERS)


@pytest.mark.parametrize("url", [
    EHR_FHIR, f"{EHR_FHIR}/", f"{EHR_FHIR}/r4", "https://EHR.example.org:443/fhir",
    "http://10.1.2.3:8080/fhir",  # the client's own http + private entry is its explicit allowance
    "http://10.1.2.3:8080/fhir/tenant-1",
])
def test_accepted_for_an_authenticated_client(url: str) -> None:
    check_fhir_server(url, CLIENT_SERVERS)


def test_a_client_without_fhir_servers_gets_none() -> None:
    with pytest.raises(UntrustedFhirServer):
        check_fhir_server(EHR_FHIR, ())


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/fhir", "http://127.0.0.1:45123/baseR4", "http://localhost:8090/fhir",
    "http://[::1]:5555/", "https://launch.smarthealthit.org/v/r4/fhir", "http://cds.example.org:9000/fhir",
])
def test_development_without_authentication_accepts_loopback_and_public_servers(url: str) -> None:
    check_fhir_server(url, None)


@pytest.mark.parametrize("url, reason", [
    ("http://169.254.169.254/latest", "link-local"), ("http://[fe80::1%25eth0]/fhir", "link-local"),
    ("http://10.0.0.5/fhir", "private"), ("http://192.168.0.10:8080/fhir", "private"),
    ("http://0.0.0.0/fhir", "non-public"), ("http://user:pw@127.0.0.1:8080/fhir", "user info"),
])
def test_development_still_refuses_link_local_private_and_user_info(url: str, reason: str) -> None:
    with pytest.raises(UntrustedFhirServer, match=reason):
        check_fhir_server(url, None)


def test_the_embedded_demo_server_is_always_trusted() -> None:
    own = "http://192.168.1.5:8080/fhir"  # a service reached on the LAN: its own /fhir stays usable
    check_fhir_server(own, None, always_trusted=[own])
    check_fhir_server(f"{own}/", (), always_trusted=[own])
    with pytest.raises(UntrustedFhirServer):
        check_fhir_server("http://192.168.1.5:8080/other", None, always_trusted=[own])


def test_address_classes() -> None:
    assert address_class("ehr.example.org") is None  # names are not resolved (module docstring)
    assert address_class("8.8.8.8") is None
    assert address_class("127.1.2.3") == "loopback"
    assert address_class("100.64.0.1") == "non-public"  # carrier-grade NAT


# ------------------------------------------------------------------ over HTTP


def test_a_refused_fhir_server_is_a_400_naming_the_reason_and_the_hook_is_not_run(tmp_path: Path, fake_pipeline) -> None:
    key = private_key("ec384")
    with TestClient(create_app(jwt_settings(tmp_path, [ehr_entry()]))) as c:
        body = hook_body("order-sign", fhirServer="http://169.254.169.254/latest",
                         fhirAuthorization={"access_token": "clinician-token", "token_type": "Bearer",
                                            "expires_in": 300, "scope": "patient/*.read", "subject": "cds"})
        r = c.post(f"/cds-services/{SERVICE}", json=body,
                   headers=bearer(token(key, "ES384", "ec1", aud=f"{BASE}/cds-services/{SERVICE}")))
    assert r.status_code == 400, r.text
    assert r.json()["details"] == [{"field": "fhirServer", "message": "fhirServer is a link-local address not listed for this client"}]
    assert "the hook was not run" in r.json()["message"]
    assert fake_pipeline.collects == [] and fake_pipeline.facts_calls == []


def test_development_over_http_refuses_private_and_accepts_loopback(fake_pipeline, fake_store) -> None:
    app = create_app(Settings(embedded_fhir=False, database_url="sqlite://", log_level="WARNING"))
    app.state.store, app.state.policy = fake_store, Policy()
    with TestClient(app) as c:
        refused = c.post(f"/cds-services/{SERVICE}", json=hook_body("order-sign", fhirServer="http://10.0.0.7/fhir"))
        accepted = c.post(f"/cds-services/{SERVICE}", json=hook_body("order-sign", fhirServer="http://127.0.0.1:45999/fhir"))
    assert refused.status_code == 400 and refused.json()["details"][0]["field"] == "fhirServer"
    assert accepted.status_code == 200, accepted.text
    assert [call["fhir_server"] for call in fake_pipeline.collects] == ["http://127.0.0.1:45999/fhir"]


def _real_pipeline_app(tmp_path: Path) -> Any:
    return create_app(jwt_settings(tmp_path, [ehr_entry()]))


def test_the_clinicians_token_never_leaves_the_accepted_origin(tmp_path: Path) -> None:
    """Real retrieval: every request goes to the trusted server with the token; a `next` page on
    another origin is not followed; an untrusted fhirServer gets no request at all."""
    key = private_key("ec384")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host != "ehr.example.org":
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p1", "gender": "female"})
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                  "link": [{"relation": "next", "url": "https://attacker.example/fhir/next?page=2"}]}
        return httpx.Response(200, json=bundle)

    auth = {"access_token": "clinician-token", "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/*.read", "subject": "cds"}
    aud = f"{BASE}/cds-services/besponsa-patient-view"
    with respx.mock(assert_all_called=False) as mock, TestClient(_real_pipeline_app(tmp_path)) as c:
        mock.route().mock(side_effect=answer)
        refused = c.post("/cds-services/besponsa-patient-view", headers=bearer(token(key, "ES384", "ec1", aud=aud)),
                         json=hook_body("patient-view", fhirServer="https://attacker.example/fhir", fhirAuthorization=auth))
        assert refused.status_code == 400
        assert seen == []  # nothing fetched, the token went nowhere
        ok = c.post("/cds-services/besponsa-patient-view", headers=bearer(token(key, "ES384", "ec1", aud=aud)),
                    json=hook_body("patient-view", fhirServer=EHR_FHIR, fhirAuthorization=auth))
    assert ok.status_code == 200, ok.text
    assert seen, "the trusted server was queried"
    assert {r.url.host for r in seen} == {"ehr.example.org"}
    assert all(r.headers["authorization"] == "Bearer clinician-token" for r in seen)
