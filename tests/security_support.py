"""Real key pairs and CDS client JWTs for the security tests (cryptography + PyJWT)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

BASE = "https://cds.example.org"  # BESPONSA_PUBLIC_BASE_URL of the apps under test
DISCOVERY = f"{BASE}/cds-services"
ISS = "https://ehr.example.org"
EHR_FHIR = "https://ehr.example.org/fhir"


@lru_cache
def private_key(kind: str, name: str = "a") -> Any:
    """A fresh key pair per (kind, name) for the test session: 'ec256', 'ec384' or 'rsa'."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1() if kind == "ec384" else ec.SECP256R1())


def public_jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(aud: str = DISCOVERY, iss: str = ISS, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def token(key: Any, alg: str, kid: str, *, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    return jwt.encode(claims(**claim_overrides), key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})


def raw_token(key: Any, alg: str, header: dict[str, Any], **claim_overrides: Any) -> str:
    """Signed as given: claims and header PyJWT's encoder would refuse to produce."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", **header}).encode())
    body = _b64(json.dumps(claims(**claim_overrides)).encode())
    signing_input = f"{head}.{body}".encode()
    signature = jwt.get_algorithm_by_name(alg).sign(signing_input, key)
    return f"{head}.{body}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(kid: str, header_alg: Any = "none", **claim_overrides: Any) -> str:
    """alg none (or any odd `alg` value): header.payload. (no signature)."""
    header = _b64(json.dumps({"alg": header_alg, "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims(**claim_overrides)).encode())}."


def hs256_with_public_key(key: Any, kid: str, **claim_overrides: Any) -> str:
    """The classic confusion attack: HMAC keyed with the (public) verification key."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims(**claim_overrides)).encode())
    signature = hmac.new(public_pem(key), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def write_clients(path: Path, entries: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(entries), encoding="utf-8")
    return str(path)


def ehr_entry(**overrides: Any) -> dict[str, Any]:
    """The trusted EHR: inline ES384 key 'ec1' and RS384 key 'rsa1'."""
    entry = {
        "iss": ISS,
        "jwks": {"keys": [public_jwk(private_key("ec384"), "ec1", "ES384"), public_jwk(private_key("rsa"), "rsa1")]},
        "jku_allowlist": ["https://ehr.example.org/.well-known/jwks.json"],
        "fhir_servers": [EHR_FHIR, "http://10.1.2.3:8080/fhir"],
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}
