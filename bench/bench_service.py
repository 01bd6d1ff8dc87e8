"""Service-time benchmark: a small and a large patient (a year of daily labs), order-sign end to end.

    .venv/bin/python bench/bench_service.py                # full service, N=50 per case
    .venv/bin/python bench/bench_service.py -n 200
    .venv/bin/python bench/bench_service.py --parts        # only collect() and build_facts()

Each case fires the order-sign hook through the in-process ASGI app (httpx.ASGITransport, no
network): (1) with full prefetch (the EHR sends every key, complete), (2) with no prefetch, the
data fetched from the embedded FHIR server (also in process, paging through `next` links).
Prints p50 / p99 / max service time in milliseconds. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.demo import demo_request, load_demo_resources  # noqa: E402
from app.demo._generate import LABS, UCUM  # noqa: E402
from app.demo.fhir_server import DemoStore, search, set_store  # noqa: E402

SERVICE = "http://127.0.0.1:8080"
FHIR = f"{SERVICE}/fhir"
LARGE_ID = "bench-large"
LAB_SERIES = {"bili": 0.7, "ast": 28, "alt": 25, "alp": 90, "anc": 2.4, "plt": 170}


def large_patient(now: datetime, days: int = 365) -> list[dict[str, Any]]:
    """The clean demo patient's shape with a year of daily liver tests and counts (6 x 365 Obs)."""
    today = now.date()
    base = [copy.deepcopy(r) for r in load_demo_resources(now) if _patient_of(r) == "demo-clean"]
    out: list[dict[str, Any]] = []
    for r in base:
        r = _retarget(r)
        if r["resourceType"] == "Observation" and r["id"].split("-")[-1] in ("base", "now") and _lab_key(r) in LAB_SERIES:
            continue  # replaced by the daily series
        out.append(r)
    for d in range(days, 0, -1):
        day = (today - timedelta(days=d)).isoformat()
        for key, value in LAB_SERIES.items():
            code, display, unit, low, high, _cat = LABS[key]
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{LARGE_ID}-{key}-d{d}",
                    "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                    "subject": {"reference": f"Patient/{LARGE_ID}"},
                    "effectiveDateTime": f"{day}T07:30:00Z",
                    "valueQuantity": {"value": round(value * (1 + 0.05 * ((d % 7) - 3) / 3), 2), "unit": unit, "system": UCUM, "code": unit},
                    "referenceRange": [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit}, "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}],
                }
            )
    return out


def _lab_key(r: dict[str, Any]) -> str:
    code = r["code"]["coding"][0]["code"]
    return next((k for k, v in LABS.items() if v[0] == code), "")


def _patient_of(r: dict[str, Any]) -> str | None:
    if r["resourceType"] == "Patient":
        return r["id"]
    return (r.get("subject") or r.get("patient") or {}).get("reference", "").removeprefix("Patient/") or None


def _retarget(r: dict[str, Any]) -> dict[str, Any]:
    r["id"] = r["id"].replace("demo-clean", LARGE_ID)
    for field in ("subject", "patient"):
        if field in r:
            r[field] = {"reference": f"Patient/{LARGE_ID}"}
    return r


def requests_for(now: datetime) -> dict[str, dict[str, Any]]:
    small = demo_request("clean", now, SERVICE)
    large = copy.deepcopy(small)
    large["context"]["patientId"] = LARGE_ID
    order = large["context"]["draftOrders"]["entry"][0]["resource"]
    order["id"] = f"{LARGE_ID}-draft"
    order["subject"] = {"reference": f"Patient/{LARGE_ID}"}
    return {"small": small, "large": large}


def full_prefetch(store: DemoStore, patient_id: str, templates: dict[str, str]) -> dict[str, Any]:
    """What an EHR filling every template completely would send (one Bundle per key, no paging)."""
    out: dict[str, Any] = {}
    for key, template in templates.items():
        query = template.replace("{{context.patientId}}", patient_id)
        rtype, _, qs = query.partition("?")
        if "/" in rtype:
            out[key] = store.by_id.get(tuple(rtype.split("/", 1)))  # type: ignore[arg-type]
            continue
        from urllib.parse import parse_qsl

        params = [(k, v) for k, v in parse_qsl(qs) if k != "_count"] + [("_count", "100000")]
        page, total, _ = search(store, rtype, params)
        out[key] = {"resourceType": "Bundle", "type": "searchset", "total": total, "entry": [{"resource": r} for r in page]}
        if not page:
            out[key] = None
    return out


class StageTimes(logging.Handler):
    """Collects the per-stage `timings_ms` the service logs with each hook call."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.samples: list[dict[str, float]] = []
        self.durations: list[float] = []  # the server's own duration of each hook call

    def emit(self, record: logging.LogRecord) -> None:
        timings = getattr(record, "timings_ms", None)
        if isinstance(timings, dict):
            self.samples.append(timings)
            self.durations.append(float(getattr(record, "duration_ms", 0.0)))

    def summary(self) -> str:
        stages = list(self.samples[0]) if self.samples else []
        self.samples, samples = [], self.samples
        self.durations, durations = [], self.durations
        parts = ", ".join(f"{k} {statistics.median(t.get(k, 0.0) for t in samples):.1f}" for k in stages)
        return f"{parts}\n      server-side hook call (body read + validation + stages): {stats(durations)}"


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return f"p50 {statistics.median(s):7.1f}  p99 {p99:7.1f}  max {s[-1]:7.1f} ms  (n={len(s)})"


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm-up (imports, caches)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def bench_service(n: int, store: DemoStore, now: datetime) -> None:
    import httpx

    from app import fhir_client
    from app.http.app import create_app
    from app.prefetch_queries import PREFETCH_TEMPLATES
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=f"sqlite:///{tmp}/bench.db", log_level="WARNING"))
        fhir_client.route_to_asgi(FHIR, app)
        stages = StageTimes()
        hooks_log = logging.getLogger("besponsa_cds.hooks")
        hooks_log.setLevel(logging.INFO)
        hooks_log.propagate = False
        hooks_log.addHandler(stages)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=SERVICE, timeout=30) as client:
                for name, request in requests_for(now).items():
                    obs = sum(1 for r in store.by_patient.get(("Observation", request["context"]["patientId"]), []))
                    with_prefetch = {**request, "prefetch": full_prefetch(store, request["context"]["patientId"], PREFETCH_TEMPLATES)}

                    # Encoded once: the client's JSON encoding is not the service's time.
                    async def fire(body: dict[str, Any] = with_prefetch, raw: list[bytes] = []) -> Any:
                        if not raw:
                            raw.append(json.dumps(body).encode())
                        r = await client.post("/cds-services/besponsa-order-sign", content=raw[0],
                                              headers={"content-type": "application/json"})
                        assert r.status_code == 200, r.text[:300]
                        return r.json()

                    async def fire_fetch(body: dict[str, Any] = request, raw: list[bytes] = []) -> Any:
                        return await fire(body, raw)

                    cards = await fire()
                    decisions = [c.get("extension", {}).get("besponsa-cds", {}).get("decision") for c in cards["cards"]]
                    print(f"{name:5} patient ({obs} Observations), cards: {decisions}")
                    stages.summary()
                    print(f"  full prefetch       {stats(await timed(n, fire))}")
                    print(f"      stages (p50 ms): {stages.summary()}")
                    print(f"  embedded fhirServer {stats(await timed(n, fire_fetch))}")
                    print(f"      stages (p50 ms): {stages.summary()}")
        fhir_client.unroute(FHIR)


async def bench_parts(n: int, store: DemoStore, now: datetime) -> None:
    """collect() over the embedded server and build_facts() alone (before the app is integrated)."""
    from fastapi import FastAPI

    from app import facts_builder, fhir_client
    from app.demo.fhir_server import router
    from app.prefetch_queries import PREFETCH_TEMPLATES
    from app.retrieval import collect

    app = FastAPI()
    app.include_router(router, prefix="/fhir")
    fhir_client.route_to_asgi(FHIR, app)
    for name, request in requests_for(now).items():
        pid = request["context"]["patientId"]
        queries = {k: v.replace("{{context.patientId}}", pid) for k, v in PREFETCH_TEMPLATES.items()}

        async def fetch(q: dict[str, str] = queries) -> Any:
            return await collect({}, q, fhir_server=FHIR, access_token=None, required=frozenset(), timeout_seconds=10, max_pages=50)

        retrieved = await fetch()
        print(f"{name:5} patient: {len(retrieved.resources)} resources retrieved, problems: {len(retrieved.problems)}")
        print(f"  collect (embedded)  {stats(await timed(n, fetch))}")
        draft = request["context"]["draftOrders"]

        async def build(res: list[dict[str, Any]] = retrieved.resources, d: dict[str, Any] = draft, p: str = pid) -> Any:
            return facts_builder.build_facts(p, res, d, now)

        try:
            print(f"  build_facts         {stats(await timed(n, build))}")
        except NotImplementedError:
            print("  build_facts         (not implemented yet)")
    fhir_client.unroute(FHIR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50, help="iterations per case (default 50)")
    parser.add_argument("--days", type=int, default=365, help="days of daily labs for the large patient")
    parser.add_argument("--parts", action="store_true", help="time collect() and build_facts() only")
    args = parser.parse_args()
    logging.disable(logging.DEBUG)
    now = datetime.now(UTC)
    store = DemoStore(load_demo_resources(now) + large_patient(now, args.days))
    set_store(store)
    print(f"besponsa-cds benchmark, {args.n} iterations per case, large patient: {args.days} days x {len(LAB_SERIES)} labs")
    asyncio.run((bench_parts if args.parts else bench_service)(args.n, store, now))


if __name__ == "__main__":
    main()
