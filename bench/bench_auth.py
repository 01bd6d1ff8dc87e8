"""Cost of CDS client authentication per call: GET /cds-services with and without BESPONSA_AUTH=jwt.

    .venv/bin/python bench/bench_auth.py            # N=300 per case
    .venv/bin/python bench/bench_auth.py -n 1000
    .venv/bin/python bench/bench_auth.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/<a scratch database>

In process (httpx.ASGITransport, no network), SQLite jti store in a temporary file, inline keys
(no JWKS fetch). Each token is fresh (new jti), so every call writes one row. Prints p50 / p99 /
max in milliseconds per case, and the added p50. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.http.app import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.security_support import BASE, bearer, ehr_entry, private_key, token, write_clients  # noqa: E402


async def _run(settings: Settings, n: int, sign: tuple | None) -> list[float]:
    app = create_app(settings)
    timings: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            for _ in range(n):
                headers = bearer(token(*sign)) if sign else {}  # signing is the client's cost, not timed
                started = time.perf_counter()
                response = await client.get("/cds-services", headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
    return timings


def _summary(name: str, values: list[float]) -> float:
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"{name:<28} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {values[-1]:6.2f} ms")
    return p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--database-url", help="jti store (default: a temporary SQLite file)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(public_base_url=BASE, embedded_fhir=False, log_level="ERROR",
                      database_url=args.database_url or f"sqlite:///{tmp}/bench.db")
        clients = write_clients(Path(tmp) / "clients.json", [ehr_entry()])
        off = asyncio.run(_run(Settings(**common), args.n, None))
        base = _summary("auth off", off)
        for alg, kind, kid in (("ES384", "ec384", "ec1"), ("RS384", "rsa", "rsa1")):
            jwt_settings = Settings(auth="jwt", trusted_clients_file=clients, **common)
            on = asyncio.run(_run(jwt_settings, args.n, (private_key(kind), alg, kid)))
            print(f"  added p50 {_summary(f'auth jwt {alg}', on) - base:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
