"""Issue #11: does running small hook calls on the event loop starve anyone under overload?

    .venv/bin/python bench/bench_overload.py                    # concurrency 8 and 64, 12 s each
    .venv/bin/python bench/bench_overload.py --connections 8,16,32,64 --seconds 8

For each concurrency, starts the product (as bench/side_by_side.py does: one worker, uvloop,
httptools, a fresh SQLite card store) twice: with its defaults (small calls on the loop while at
most BESPONSA_INLINE_MAX_IN_FLIGHT requests are in flight and the loop is less than
BESPONSA_INLINE_MAX_LOOP_LAG_MS late) and with BESPONSA_INLINE_MAX_BYTES=0 (every call's work in
worker threads). wrk sends the typical order-sign body at that concurrency while one client calls
/healthz every 20 ms; prints per run: hook calls per second, their p50/p99, wrk's socket errors
(calls that waited past wrk's 2 s timeout) and the /healthz p50/p99/max. A script that prints
figures, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.charts import bodies  # noqa: E402
from bench.side_by_side import LUA, start  # noqa: E402

MODES = {"default (loop while it keeps up)": {}, "always worker threads": {"BESPONSA_INLINE_MAX_BYTES": "0"}}


def run(connections: int, seconds: float, env: dict[str, str], tmp: Path, script: Path, service: str) -> str:
    db = Path(tempfile.mkdtemp(dir=tmp))
    prod = start("product", "app.http.app:create_app", tmp, factory=True,
                 env={"BESPONSA_DATABASE_URL": f"sqlite:///{db}/cards.db", "BESPONSA_EMBEDDED_FHIR": "true", **env})
    try:
        url = prod.base + f"/cds-services/{service}"
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(script), url], capture_output=True)
        load = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds) + 3}s", "-s", str(script), url],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        latencies = []
        conn = http.client.HTTPConnection("127.0.0.1", prod.port, timeout=30)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
        out = load.communicate(timeout=seconds + 60)[0]
        r = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT ")).removeprefix("RESULT "))
        latencies.sort()
        pct = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))]  # noqa: E731
        return (f"{r['requests'] / (r['duration_us'] / 1e6):7.1f} calls/s, p50 {r['p50_us'] / 1000:7.1f} "
                f"p99 {r['p99_us'] / 1000:7.1f} ms, {r['socket_errors']:3d} over 2 s | /healthz n={len(latencies)} "
                f"p50 {pct(0.5):6.1f} p99 {pct(0.99):6.1f} max {latencies[-1]:6.1f} ms")
    finally:
        prod.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", default="8,64")
    p.add_argument("--seconds", type=float, default=12)
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="besponsa-overload-"))
    service, body = bodies(datetime.now(UTC), "http://127.0.0.1:1/fhir")["order-sign"]
    (tmp / "body.json").write_bytes(json.dumps(body).encode())
    script = tmp / "body.lua"
    script.write_text(LUA % {"body": tmp / "body.json"})
    print(f"besponsa-cds overload: order-sign body, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for c in (int(x) for x in args.connections.split(",")):
        for name, env in MODES.items():
            print(f"wrk -c{c:<3d} {name:33s} {run(c, args.seconds, env, tmp, script, service)}", flush=True)


if __name__ == "__main__":
    main()
