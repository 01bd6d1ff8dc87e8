"""Replicas that share nothing but PostgreSQL (#12): real `besponsa-cds serve` processes, addressed
directly, on one database. Each test uses its own schema in its own database (`<db>_h6fleet`,
created if missing), dropped afterwards. Runs when BESPONSA_TEST_POSTGRES_URL is set (`.ci/run`).

Shown: two replicas started at the same instant migrate once; a card shown by replica A takes
feedback on replica B and is counted once in the report; SIGKILL under load loses no acknowledged
feedback; SIGTERM under load fails no in-flight request and the writer's queue is committed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("BESPONSA_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not PG_URL,
    reason="BESPONSA_TEST_POSTGRES_URL is not set (no PostgreSQL server found; `.ci/run` sets it "
    "when one answers on 127.0.0.1:5432)",
)
REQUEST = json.loads((ROOT / "app" / "demo" / "requests" / "hepatic-order-sign.json").read_text(encoding="utf-8"))
SERVICE = "besponsa-order-sign"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fleet_database() -> str:
    """This module's own database beside the configured one (created once)."""
    base = make_url(PG_URL)  # type: ignore[arg-type]
    name = f"{base.database}_h6fleet"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            try:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            except Exception:  # noqa: BLE001 - created meanwhile by a parallel run
                pass
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def database() -> Iterator[str]:
    """A URL whose search_path is a fresh schema (tables, alembic_version and all)."""
    url = _fleet_database()
    schema = f"fleet_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


class Replica:
    def __init__(self, database_url: str, log_path: Path, port: int | None = None, **env: str) -> None:
        self.port = port or _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("BESPONSA_", "OTEL_"))}
        environment.update(
            BESPONSA_DATABASE_URL=database_url, BESPONSA_LOG_LEVEL="INFO", BESPONSA_LOG_FORMAT="json",
            BESPONSA_PURGE_INTERVAL_HOURS="0", BESPONSA_GRACEFUL_SHUTDOWN_SECONDS="20", **env,
        )
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica on {self.port} not ready: {self.log()}")

    def hook_call(self, client: httpx.Client | None = None) -> httpx.Response:
        body = {**REQUEST, "hookInstance": str(uuid.uuid4()), "fhirServer": f"{self.base}/fhir"}
        return (client or httpx).post(f"{self.base}/cds-services/{SERVICE}", json=body, timeout=30,
                                      headers={"Connection": "close"})

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_messages(self) -> list[str]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line)["msg"])
            except (ValueError, KeyError):
                out.append(line)
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def replicas(database: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Replica] = []

    def start(n: int, **env: str) -> list[Replica]:
        new = [Replica(database, tmp_path / f"replica-{len(started) + i}.log", **env) for i in range(n)]
        started.extend(new)
        for r in new:
            r.wait_ready()
        return new

    yield start
    for r in started:
        r.stop()


def _engine(database: str):
    return create_engine(database)


def _feedback(card: dict[str, Any], when: str) -> dict[str, Any]:
    return {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": when}]}


def _card_uuids_in_db(database: str) -> set[str]:
    engine = _engine(database)
    with engine.connect() as conn:
        found = set(conn.execute(text("SELECT uuid FROM cards")).scalars())
    engine.dispose()
    return found


def test_the_connection_pool_is_sized_by_settings(database):
    from app.settings import Settings
    from app.storage.store import open_configured_store

    store = open_configured_store(Settings(database_url=database, db_pool_size=3, db_max_overflow=1,
                                           db_pool_timeout_seconds=2))
    try:
        pool = store.engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 1, 2)  # noqa: SLF001
        assert store.schema_revision() is not None  # migrated on open (BESPONSA_MIGRATE_ON_START)
    finally:
        store.close()


def test_two_replicas_started_together_migrate_once_and_share_cards_and_feedback(database, replicas):
    # Both processes are launched before either is waited for. A's writer commits half a second
    # after a response, so B's feedback below usually arrives before the card is stored.
    a, b = replicas(2, BESPONSA_STORE_FLUSH_INTERVAL_SECONDS="0.5", BESPONSA_FEEDBACK_CARD_WAIT_SECONDS="5")
    messages = a.log_messages() + b.log_messages()
    upgraded = [m for m in messages if m.startswith("database schema upgraded")]
    at_head = [m for m in messages if m.startswith("database schema already at")]
    assert len(upgraded) == 1 and len(at_head) == 1, messages
    engine = _engine(database)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()

    # A card shown by replica A takes feedback on replica B at once (before A's writer may have
    # committed it: B waits for it briefly rather than refusing an unknown card).
    shown = a.hook_call()
    assert shown.status_code == 200, shown.text
    hold = next(c for c in shown.json()["cards"] if c["extension"]["besponsa-cds"]["decision"] == "hold")
    fb = httpx.post(f"{b.base}/cds-services/{SERVICE}/feedback", json=_feedback(hold, "2026-11-23T10:00:00Z"), timeout=30)
    assert fb.status_code == 200 and fb.json() == {"received": 1, "stored": 1, "duplicates": 0}, fb.text
    again = httpx.post(f"{a.base}/cds-services/{SERVICE}/feedback", json=_feedback(hold, "2026-11-23T10:00:00Z"), timeout=30)
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1}  # re-sent to A: stored once

    env = {**os.environ, "BESPONSA_DATABASE_URL": database}
    report = subprocess.run([sys.executable, "-m", "app.cli", "report", "--format", "json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    totals = json.loads(report.stdout)["totals"]
    assert totals["overridden"] == 1 and totals["feedbackReceived"] == 1
    assert totals["cards"] == len(shown.json()["cards"])
    assert "report of database postgresql+psycopg://" in report.stderr


def test_sigkill_under_load_loses_no_acknowledged_feedback(database, replicas):
    (victim,) = replicas(1)
    cards = []
    for _ in range(3):
        res = victim.hook_call()
        assert res.status_code == 200
        cards.extend(res.json()["cards"])
    deadline = time.monotonic() + 10  # wait for the writer to commit them
    while not {c["uuid"] for c in cards} <= _card_uuids_in_db(database):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def send(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and n < 400:
                card = cards[(worker + n) % len(cards)]
                when = f"2026-11-{1 + worker:02d}T{n // 60 % 24:02d}:{n % 60:02d}:00Z"
                n += 1
                try:
                    r = client.post(f"{victim.base}/cds-services/{SERVICE}/feedback", json=_feedback(card, when))
                except httpx.HTTPError:
                    return  # the replica died: no acknowledgement
                if r.status_code == 200 and r.json()["stored"] == 1:
                    with lock:
                        acknowledged.append((card["uuid"], when))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, w) for w in range(4)]
        deadline = time.monotonic() + 20
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.process.send_signal(signal.SIGKILL)
        for f in futures:
            f.result(timeout=30)
        stop.set()
    assert victim.process.wait(timeout=10) == -signal.SIGKILL
    assert len(acknowledged) >= 40

    engine = _engine(database)
    with engine.connect() as conn:
        stored = {(row.card_uuid, row.outcome_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
                  for row in conn.execute(text("SELECT card_uuid, outcome_timestamp FROM feedback"))}
    engine.dispose()
    lost = set(acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged feedback items are not in the database"


class _SlowFhirServer:
    """A FHIR server on loopback answering every search with an empty Bundle after `delay`
    seconds, so that hook calls are certainly in flight when the replica gets SIGTERM."""

    def __init__(self, delay: float) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.requests = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with outer._lock:
                    outer.requests += 1
                time.sleep(delay)
                path = self.path.split("?", 1)[0].strip("/").split("/")
                if len(path) == 2:  # a read: Patient/{id}
                    body = {"resourceType": path[0], "id": path[1]}
                else:
                    body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/r4"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_under_load_fails_no_in_flight_request_and_commits_the_queue(database, replicas):
    fhir = _SlowFhirServer(delay=1.0)
    # Cards wait in the writer's queue (a batch gathers for 5 s, longer than this test runs after
    # the first card): only the shutdown flush can store them in time.
    (replica,) = replicas(1, BESPONSA_STORE_FLUSH_INTERVAL_SECONDS="5", BESPONSA_FHIR_TIMEOUT_SECONDS="10")
    body = {**REQUEST, "fhirServer": fhir.base}
    try:
        warm = httpx.post(f"{replica.base}/cds-services/{SERVICE}", json={**body, "hookInstance": str(uuid.uuid4())},
                          timeout=30)
        assert warm.status_code == 200, warm.text
        per_call = fhir.requests  # FHIR queries one hook call sends
        burst = 8
        results: list[tuple[int | str, list[str]]] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                r = httpx.post(f"{replica.base}/cds-services/{SERVICE}", timeout=60,
                               json={**body, "hookInstance": str(uuid.uuid4())})
                outcome: tuple[int | str, list[str]] = (r.status_code, [c["uuid"] for c in r.json()["cards"]])
            except Exception as exc:  # noqa: BLE001 - any transport failure is a failed request
                outcome = (type(exc).__name__, [])
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=one) for _ in range(burst)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20  # every call is waiting on the slow FHIR server
        while fhir.requests < per_call * (burst + 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fhir.requests >= per_call * (burst + 1), "the burst never reached the FHIR server"
        replica.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        # uvicorn re-raises SIGTERM after its graceful shutdown: the exit status says "terminated".
        assert replica.process.wait(timeout=30) in (0, -signal.SIGTERM), replica.log()
    finally:
        fhir.close()
    assert "Application shutdown complete." in replica.log_messages()
    statuses = [s for s, _ in results]
    assert statuses == [200] * burst, statuses
    shown = {u for _, uuids in results for u in uuids} | {c["uuid"] for c in warm.json()["cards"]}
    assert shown and shown <= _card_uuids_in_db(database)  # the writer's queue was committed on exit


def _nginx_config(tmp: Path, listen: int, upstreams: list[int]) -> Path:
    """deploy/compose/nginx.conf with the replicas on loopback ports instead of Docker's DNS."""
    conf = (ROOT / "deploy" / "compose" / "nginx.conf").read_text(encoding="utf-8")
    server_line = next(line for line in conf.splitlines() if line.strip().startswith("server cds:8080"))
    params = server_line.strip().removeprefix("server cds:8080").replace(" resolve", "").rstrip(";")
    conf = conf.replace(server_line, "\n".join(f"        server 127.0.0.1:{p}{params};" for p in upstreams))
    conf = "\n".join(line for line in conf.splitlines() if not line.strip().startswith("resolver "))
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    conf = conf.replace("access_log /dev/stdout upstream;", f"access_log {tmp}/access.log upstream;")
    conf = conf.replace("http {", "\n".join([
        "http {",
        *(f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
    ]), 1)
    head = f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
    path = tmp / "nginx.conf"
    path.write_text(head + conf.replace("worker_processes auto;", "worker_processes 1;"), encoding="utf-8")
    return path


def test_rolling_restart_behind_nginx_under_load_fails_no_request(database, tmp_path):
    import shutil

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    listen = _free_port()
    public = f"http://127.0.0.1:{listen}"
    env = {"BESPONSA_PUBLIC_BASE_URL": public}  # the demo /fhir behind the balancer is answered in process
    replicas = [Replica(database, tmp_path / f"r{i}.log", **env) for i in range(2)]
    for r in replicas:
        r.wait_ready()
    conf = _nginx_config(tmp_path, listen, [r.port for r in replicas])
    proxy = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    results: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(results) < 2000:
                body = {**REQUEST, "hookInstance": str(uuid.uuid4()), "fhirServer": f"{public}/fhir"}
                try:
                    outcome: int | str = client.post(f"{public}/cds-services/{SERVICE}", json=body).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                results.append(outcome)

    try:
        deadline = time.monotonic() + 10
        while True:  # nginx is up
            try:
                if httpx.get(f"{public}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proxy.poll() is None, proxy.stderr.read() if proxy.stderr else ""
            time.sleep(0.05)
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        for i, old in enumerate(list(replicas)):  # one replica at a time, as a rolling update does
            time.sleep(0.5)
            old.process.send_signal(signal.SIGTERM)
            old.process.wait(timeout=30)
            old.stop()
            # Its replacement on the same address (nginx's upstream list is static here).
            replicas[i] = Replica(database, tmp_path / f"r{i}-new.log", port=old.port, **env)
            replicas[i].wait_ready()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        proxy.terminate()
        proxy.wait(timeout=10)
        for r in replicas:
            r.stop()
    failures = [r for r in results if r != 200]
    assert len(results) >= 20, results
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:10]}"
