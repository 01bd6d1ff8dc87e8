"""On a real uvicorn server (#9): one large request does not stall /healthz, and oversized bodies
get 413 over the wire, for a declared Content-Length (nothing sent) and for a chunked body."""

from __future__ import annotations

import gc
import json
import select
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.prefetch_queries import PREFETCH_TEMPLATES
from tests.fixtures.mappings.large_patient import make_patient

LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from app.http.app import create_app
    from app.settings import Settings

    db = Path(tmp_path_factory.mktemp("loop")) / "cards.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", embedded_fhir=False, log_level="WARNING"))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _large_order_sign() -> bytes:
    """A year of daily labs (5,480 Observations) in prefetch: about 4.3 MB."""
    resources, draft_orders, _ = make_patient(days=365, patient_id="loop-1")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    bundle = lambda rs: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}  # noqa: E731
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/u1", "patientId": "loop-1", "draftOrders": draft_orders},
        "prefetch": {
            **{key: None for key in PREFETCH_TEMPLATES},  # null: the EHR has no such data
            "patient": patient,
            "labs": bundle(by_type["Observation"]),
            "medicationAdministrations": bundle(by_type.get("MedicationAdministration", [])),
        },
    }
    return json.dumps(body).encode()


def test_healthz_stays_fast_while_a_large_request_is_processed(server: str) -> None:
    raw = _large_order_sign()
    assert 3_000_000 < len(raw) < LIMIT
    result: dict[str, Any] = {}
    with httpx.Client(base_url=server, timeout=60) as warm:
        warm.get("/healthz")

    def large() -> None:
        with httpx.Client(base_url=server, timeout=60) as client:
            started = time.perf_counter()
            res = client.post("/cds-services/besponsa-order-sign", content=raw, headers={"content-type": "application/json"})
            result["duration"] = time.perf_counter() - started
            result["status"] = res.status_code
            result["cards"] = res.json().get("cards")

    worker = threading.Thread(target=large)
    latencies: list[float] = []
    # pytest's own heap (every test module's objects) makes a full garbage collection, which stops
    # every thread, several times longer than in a service worker: keep it out of the measurement.
    gc.collect()
    gc.freeze()
    try:
        with httpx.Client(base_url=server, timeout=60) as client:
            worker.start()
            time.sleep(0.02)
            while worker.is_alive():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.005)
        worker.join()
    finally:
        gc.unfreeze()

    print(f"\nlarge request {result['duration']*1000:.0f} ms, /healthz max {max(latencies)*1000:.1f} ms, median {statistics.median(latencies)*1000:.1f} ms over {len(latencies)} calls")
    assert result["status"] == 200 and result["cards"], result
    assert len(latencies) >= 3, (latencies, result["duration"])
    # Parsing, facts, engine and cards run in a worker thread: a /healthz call waits at most a slice
    # of the large request (on the event loop it would wait for all of it).
    assert max(latencies) < result["duration"] / 3, (max(latencies), statistics.median(latencies), result["duration"])


def _host_port(server: str) -> tuple[str, int]:
    host, port = server.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_declared_content_length_over_the_limit_is_413_before_any_body_is_sent(server: str) -> None:
    with socket.create_connection(_host_port(server), timeout=10) as sock:
        sock.sendall(
            b"POST /cds-services/besponsa-order-sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        head = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"content_too_large" in head or b"content-type: application/json" in head.lower()


def test_endless_chunked_body_is_cut_off_with_413(server: str) -> None:
    chunk = b"x" * (256 * 1024)
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # little held in our buffer
        sock.settimeout(10)
        sock.connect(_host_port(server))
        sock.sendall(
            b"POST /cds-services/besponsa-order-sign/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answered = False
        while sent < 10 * LIMIT:  # an endless body: only the server's answer stops it
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answered = True
                break
            try:
                sock.sendall(framed)
            except OSError:  # the server closed the connection after answering
                answered = True
                break
            sent += len(chunk)
        assert answered, "the server read 10x the limit without answering"
        head = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    # Cut off near the limit: beyond it, only what the server's socket receive buffer took in.
    print(f"\nchunked: {sent} bytes sent before the 413")
    assert sent < 2 * LIMIT, sent
