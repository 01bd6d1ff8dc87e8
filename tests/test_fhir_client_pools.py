"""One pooled client per FHIR server, bounded (issue #11)."""

from __future__ import annotations

import asyncio

from app import fhir_client


def test_one_client_per_fhir_server_and_a_bound():
    async def run() -> None:
        a1 = fhir_client.client_for("http://ehr-a.example/fhir/Observation?patient=1")
        a2 = fhir_client.client_for("HTTP://EHR-A.example/fhir/Patient/1")
        b = fhir_client.client_for("https://ehr-b.example:8443/r4/Condition")
        assert a1 is a2
        assert a1 is not b
        others = {fhir_client.client_for(f"http://ehr-{i}.example/fhir/Patient/1")
                  for i in range(fhir_client.MAX_SERVER_CLIENTS + 5)}
        # beyond the bound every new server shares one pool: the number of pools stays bounded
        assert len(others | {a1, b}) <= fhir_client.MAX_SERVER_CLIENTS + 1
        assert fhir_client.client_for("http://ehr-a.example/fhir/x") is a1
        await fhir_client.aclose()
        assert a1.is_closed and b.is_closed

    asyncio.run(run())
