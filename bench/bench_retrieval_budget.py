"""Does BESPONSA_FHIR_TIMEOUT_SECONDS bound the whole retrieval against hostile FHIR servers? (#8)

Runs `app.retrieval.collect` for every prefetch template against a respx-mocked server that
answers one key with a fault (slow drip: one byte every 0.1 s; gzip bomb: 200 MB of JSON in
~200 kB; a time-out; a paged answer whose pages drip) and the others at once, and prints the
wall-clock time against the budget and the key's read status.

    .venv/bin/python bench/bench_retrieval_budget.py [budget_seconds]
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import time

import httpx
import respx

from app.prefetch_queries import PREFETCH_TEMPLATES
from app.retrieval import collect

BASE = "https://fhir.bench.example/r4"
BOMB = gzip.compress(b'{"resourceType": "Bundle", "entry": [' + b" " * 200_000_000 + b"]}", 6)


def _empty() -> httpx.Response:
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})


async def _drip():
    yield b'{"resourceType": "Bundle", "entry": ['
    for _ in range(600):
        await asyncio.sleep(0.1)
        yield b" "
    yield b"]}"


async def _answer(fault: str, request: httpx.Request) -> httpx.Response:
    if "MedicationAdministration" not in request.url.path:
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
        return _empty()
    if fault == "slow-drip":
        return httpx.Response(200, content=_drip())
    if fault == "gzip-bomb":  # streamed in 64 kB network-sized chunks
        async def chunks():
            for i in range(0, len(BOMB), 65536):
                yield BOMB[i:i + 65536]
        return httpx.Response(200, content=chunks(), headers={"Content-Encoding": "gzip"})
    if fault == "time-out":
        await asyncio.sleep(60)
    if fault == "dripping-pages":
        page = int(request.url.params.get("page", "1"))
        await asyncio.sleep(0.4)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [],
                                         "link": [{"relation": "next",
                                                   "url": f"{BASE}/MedicationAdministration?page={page + 1}"}]})
    return _empty()


async def _run(fault: str, budget: float) -> tuple[float, str]:
    queries = {k: v.replace("{{context.patientId}}", "p1") for k, v in PREFETCH_TEMPLATES.items()}
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=BASE).mock(side_effect=lambda r: _answer(fault, r))
        start = time.perf_counter()
        got = await collect({}, queries, fhir_server=BASE, access_token="t", required=frozenset(),
                            timeout_seconds=budget, max_pages=20, max_response_bytes=20_000_000)
        elapsed = time.perf_counter() - start
    st = got.status["medicationAdministrations"]
    return elapsed, f"{st.availability.value}: {st.reason}"


def main() -> None:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
    print(f"time budget {budget:g} s (BESPONSA_FHIR_TIMEOUT_SECONDS)")
    for fault in ("slow-drip", "gzip-bomb", "time-out", "dripping-pages"):
        elapsed, status = asyncio.run(_run(fault, budget))
        verdict = "within budget" if elapsed <= budget + 0.25 else "OVER BUDGET"
        print(f"{fault:15s} {elapsed:6.2f} s  {verdict:13s} administrations {status}")


if __name__ == "__main__":
    main()
