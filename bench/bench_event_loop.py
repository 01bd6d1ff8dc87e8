"""/healthz latency while large hook calls are processed, on a real server (#9).

    .venv/bin/python bench/bench_event_loop.py        # 5 large order-sign calls, a year of labs each

Starts `besponsa-cds serve` (one worker, a free port, a temporary SQLite store), sends the ~4.3 MB
order-sign body of tests/test_http_event_loop.py while polling /healthz, and prints per call its
duration and the /healthz median and maximum. A script that prints figures, not a test.

Measured on the 2-core machine (#9): large call 370-940 ms, /healthz median 5-10 ms; its maximum is
23-34 ms unless a full garbage collection (100-320 ms here, it stops every thread) falls in the call,
then up to ~320 ms. Those pauses are the garbage collector's, not the event loop's (see #11).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_http_event_loop import _large_order_sign  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BESPONSA_DATABASE_URL": f"sqlite:///{tmp}/cards.db", "BESPONSA_EMBEDDED_FHIR": "false",
               "BESPONSA_LOG_LEVEL": "WARNING"}
        cli = str(Path(sys.executable).with_name("besponsa-cds"))
        server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            raw = _large_order_sign()
            print(f"body {len(raw)} bytes")
            for run in range(5):
                result: dict[str, float] = {}

                def large() -> None:
                    started = time.perf_counter()
                    r = httpx.post(f"{base}/cds-services/besponsa-order-sign", content=raw,
                                   headers={"content-type": "application/json"}, timeout=60)
                    result["duration"] = time.perf_counter() - started
                    result["status"] = r.status_code

                worker = threading.Thread(target=large)
                latencies: list[float] = []
                with httpx.Client(base_url=base, timeout=60) as client:
                    worker.start()
                    while worker.is_alive():
                        started = time.perf_counter()
                        client.get("/healthz")
                        latencies.append(time.perf_counter() - started)
                        time.sleep(0.005)
                worker.join()
                print(f"run {run + 1}: status {result['status']:.0f}, large call {result['duration'] * 1000:6.0f} ms; "
                      f"/healthz median {statistics.median(latencies) * 1000:5.1f} ms, max {max(latencies) * 1000:6.1f} ms "
                      f"({len(latencies)} calls)")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
