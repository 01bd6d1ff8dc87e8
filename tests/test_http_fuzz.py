"""Fuzzing (#9): schemathesis generates requests from the service's own OpenAPI document and sends
them in process (ASGI); every answer must be a documented non-5xx response matching its schema.

A bounded number of examples per operation keeps this run under a minute on two cores; outgoing
FHIR queries (a generated `fhirServer`) are answered by a mock that refuses every connection.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import respx
import schemathesis
from hypothesis import HealthCheck, settings

from app.discovery import SERVICES
from app.engine.policy import load_policy
from app.http.app import create_app
from app.settings import Settings
from app.storage import open_store

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
MAX_EXAMPLES = 20


def _app(tmp: Path):
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp}/fuzz.db",
            embedded_fhir=False,
            log_level="ERROR",
            fhir_timeout_seconds=0.5,
        )
    )
    app.state.store = open_store(f"sqlite:///{tmp}/fuzz.db")
    app.state.policy = load_policy(None)
    return app


_TMP = Path(tempfile.mkdtemp(prefix="besponsa-fuzz-"))
APP = _app(_TMP)
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
schema = schemathesis.openapi.from_path(DOCUMENT)
schema.app = APP  # type: ignore[attr-defined]

SERVICE_PATHS = {f"/cds-services/{service_id}" for service_id in SERVICES}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.specs.openapi.checks.status_code_conformance,
    schemathesis.specs.openapi.checks.content_type_conformance,
    schemathesis.specs.openapi.checks.response_schema_conformance,
]


@pytest.fixture(autouse=True)
def _no_network():
    with respx.mock(assert_all_called=False) as mock:
        mock.route().mock(side_effect=httpx.ConnectError("fuzzing: no FHIR server"))
        yield


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_5xx_and_every_response_as_documented(case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    generation = getattr(case.meta, "generation", None)
    if case.operation.path in SERVICE_PATHS and generation and generation.mode == schemathesis.GenerationMode.POSITIVE:
        # A request the document allows for this service is never refused as malformed (#9).
        assert response.status_code != 400, (case.body, response.text)
