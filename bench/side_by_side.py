"""Issue #11 side by side: the product against a bare FastAPI endpoint, same uvicorn settings.

    .venv/bin/python bench/side_by_side.py                      # every body, A B A B, 8 s per run
    .venv/bin/python bench/side_by_side.py --seconds 15 --only order-sign,5000-obs
    .venv/bin/python bench/side_by_side.py --workers-check --memory-seconds 120

Starts three uvicorn processes on random loopback ports with the same settings (one worker,
uvloop, httptools, log level warning): the product (`app.http.app:create_app --factory`, embedded
demo FHIR on, a fresh SQLite card store), the bare endpoint (bench/bare_app.py: `json.loads` of the
body, one fixed card) and a local FHIR server holding the benchmark chart (bench/fhir_app.py, for
fetch mode). Sends each body of bench/charts.py in turn, product then bare then product then bare
(A B A B), with wrk (Debian package `wrk`, a Lua script POSTs the body) at concurrency 8, and
prints per body: both throughputs, their ratio, p50/p99, CPU per request from /proc/<pid>/stat
(utime+stime) deltas of each server process (the FHIR server's own CPU is shown apart in fetch
mode), and the product's p50/p99 one call at a time (wrk -c1). Then: the fetch-mode answer at concurrency 1 and 8 (cards compared),
optionally two workers against one and memory per worker over a longer run. Loopback only,
bounded in time. A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.charts import bodies  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
UVICORN = ["--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
GOALS = {"order-sign": 0.5, "patient-view": 0.5, "other-drug": 0.9, "5000-obs": 0.7}
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n', summary.requests,
    summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workers: int = 1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The serving processes: the worker itself, or the supervisor's children."""
        if self.workers == 1:
            return [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(c) for c in children  # not multiprocessing's resource tracker
                if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return total / CLK_TCK

    def rss_mb(self) -> list[float]:
        out = []
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(name: str, target: str, tmp: Path, *, factory: bool = False, workers: int = 1,
          env: dict[str, str] | None = None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", target, *UVICORN, "--port", str(port),
           "--workers", str(workers), *(["--factory"] if factory else [])]
    log = open(tmp / f"{name}-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    server = Server(name, proc, port, workers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited at start-up, see {log.name}")
        try:
            status, _ = request(server, "GET", "/healthz" if name != "fhir" else "/fhir/metadata")
            if status == 200 and (workers == 1 or len(server.pids()) == workers):
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not answer within 60 s")


def request(server: Server, method: str, path: str, body: bytes | None = None,
            timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# --- load --------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # CPU per request of the measured server
    other_cpu_ms: float | None  # CPU per request of the FHIR server (fetch mode)
    requests: int
    errors: int


def wrk(server: Server, path: str, script: Path, seconds: float, connections: int,
        also: Server | None = None) -> Run:
    cpu0 = server.cpu_seconds()
    other0 = also.cpu_seconds() if also else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "60s", "-s", str(script),
         server.base + path],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if out.returncode != 0 or "RESULT " not in out.stdout:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stderr.strip()[:500]}")
    out = out.stdout
    cpu = server.cpu_seconds() - cpu0
    other = also.cpu_seconds() - other0 if also else None
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    n = max(1, r["requests"])
    return Run(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000,
        cpu_ms=cpu * 1000 / n, other_cpu_ms=other * 1000 / n if other is not None else None,
        requests=r["requests"], errors=r["non_2xx"] + r["socket_errors"],
    )


def _decisions(raw: bytes) -> list[tuple[Any, ...]]:
    """The clinical answer of a response: per card its decision, indicator, rules, summary."""
    cards = json.loads(raw)["cards"]
    out = []
    for c in cards:
        ext = c.get("extension", {}).get("besponsa-cds", {})
        out.append((ext.get("decision"), c.get("indicator"), tuple(ext.get("rules") or ()), c.get("summary")))
    return out


def same_answer_under_load(server: Server, path: str, body: bytes, sequential: int,
                           connections: int, per_thread: int) -> dict[str, Any]:
    """The cards at concurrency 1 (`sequential` calls) against concurrency `connections`."""
    alone = []
    latencies1 = []
    for _ in range(sequential):
        t0 = time.perf_counter()
        status, raw = request(server, "POST", path, body)
        latencies1.append((time.perf_counter() - t0) * 1000)
        alone.append((status, _decisions(raw) if status == 200 else raw[:200]))

    def worker(_: int) -> list[tuple[int, Any, float]]:
        got = []
        for _ in range(per_thread):
            t0 = time.perf_counter()
            status, raw = request(server, "POST", path, body)
            got.append((status, _decisions(raw) if status == 200 else raw[:200], (time.perf_counter() - t0) * 1000))
        return got

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        loaded = [x for chunk in pool.map(worker, range(connections)) for x in chunk]
    reference = alone[0]
    differing = [a for a in alone if a != reference] + [(s, d) for s, d, _ in loaded if (s, d) != reference]
    return {
        "reference": reference, "sequential": sequential, "loaded": len(loaded),
        "differing": len(differing), "examples": differing[:2],
        "p50_c1_ms": statistics.median(latencies1),
        "p50_c8_ms": statistics.median(t for *_, t in loaded),
        "p99_c8_ms": sorted(t for *_, t in loaded)[int(0.99 * (len(loaded) - 1))],
    }


# --- report ------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def table(results: dict[str, dict[str, list[Run]]], sizes: dict[str, int], single: dict[str, Run]) -> str:
    lines = [
        "| body | size | product req/s | bare req/s | ratio (goal) | product p50 / p99 ms | bare p50 / p99 ms "
        "| CPU/request product / bare ms | product alone p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        a, b = runs["product"], runs["bare"]
        ratios = [x.rps / y.rps for x, y in zip(a, b, strict=True)]
        goal = GOALS.get(name)
        verdict = "" if goal is None else f" ({'>=' if min(ratios) >= goal else 'NOT >='} {goal:.2f})"
        if name == "fetch-mode":  # the goal is p99 <= 500 ms; the bare endpoint only parses 1 KB
            p99 = max(r.p99_ms for r in a)
            verdict = f" (goal p99 <= 500 ms: {'held' if p99 <= 500 else 'NOT held'})"
        cpu_other = ""
        if a[0].other_cpu_ms is not None:
            cpu_other = f" + FHIR server {_mean([r.other_cpu_ms or 0 for r in a]):.1f}"
        errors = sum(r.errors for r in a + b)
        lines.append(
            f"| {name} | {sizes[name] / 1024:,.0f} KB | {' / '.join(f'{r.rps:.1f}' for r in a)} | "
            f"{' / '.join(f'{r.rps:.1f}' for r in b)} | {' / '.join(f'{x:.2f}' for x in ratios)}{verdict} | "
            f"{_mean([r.p50_ms for r in a]):.1f} / {_mean([r.p99_ms for r in a]):.1f} | "
            f"{_mean([r.p50_ms for r in b]):.1f} / {_mean([r.p99_ms for r in b]):.1f} | "
            f"{_mean([r.cpu_ms for r in a]):.1f}{cpu_other} / {_mean([r.cpu_ms for r in b]):.1f}"
            f"{f' ({errors} errors)' if errors else ''} | "
            + (f"{single[name].p50_ms:.1f} / {single[name].p99_ms:.1f} |" if name in single else "|")
        )
    return "\n".join(lines)


@dataclass
class Args:
    seconds: float
    large_seconds: float
    connections: int
    rounds: int
    only: list[str] = field(default_factory=list)
    workers_check: bool = False
    memory_seconds: float = 0
    json_out: str | None = None
    db_dir: str | None = None


def parse() -> Args:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8, help="seconds per wrk run (default 8)")
    p.add_argument("--large-seconds", type=float, default=15, help="seconds per run, 5000-obs body")
    p.add_argument("--connections", type=int, default=8, help="wrk concurrency (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per body (default 2: A B A B)")
    p.add_argument("--only", default="", help="comma-separated body names")
    p.add_argument("--workers-check", action="store_true", help="also two workers against one")
    p.add_argument("--memory-seconds", type=float, default=0, help="also RSS over a run this long")
    p.add_argument("--json", dest="json_out", help="write the figures as JSON here")
    p.add_argument("--db-dir", help="directory of the product's SQLite card store (default: a temporary "
                   "directory; /dev/shm takes the disk's fsync out of the figures)")
    a = p.parse_args()
    return Args(a.seconds, a.large_seconds, a.connections, a.rounds,
                [x for x in a.only.split(",") if x], a.workers_check, a.memory_seconds, a.json_out, a.db_dir)


def main() -> None:
    args = parse()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="besponsa-bench-"))
    db = Path(tempfile.mkdtemp(prefix="besponsa-bench-db-", dir=args.db_dir))
    servers: list[Server] = []
    report: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    try:
        fhir = start("fhir", "bench.fhir_app:app", tmp)
        servers.append(fhir)
        prod = start("product-w1", "app.http.app:create_app", tmp, factory=True, env={
            "BESPONSA_DATABASE_URL": f"sqlite:///{db}/product.db", "BESPONSA_EMBEDDED_FHIR": "true"})
        servers.append(prod)
        bare = start("bare", "bench.bare_app:app", tmp)
        servers.append(bare)
        all_bodies = bodies(datetime.now(UTC), fhir.base + "/fhir")
        names = args.only or list(all_bodies)
        print(f"besponsa-cds side by side: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
              f"wrk -c{args.connections}, {args.rounds} x (product, bare) per body; logs in {tmp}")
        results: dict[str, dict[str, list[Run]]] = {}
        single: dict[str, Run] = {}
        sizes: dict[str, int] = {}
        raws: dict[str, tuple[str, bytes]] = {}
        for name in names:
            service, body = all_bodies[name]
            raw = json.dumps(body).encode()
            path = f"/cds-services/{service}"
            raws[name] = (path, raw)
            sizes[name] = len(raw)
            body_file = tmp / f"{name}.json"
            body_file.write_bytes(raw)
            script = tmp / f"{name}.lua"
            script.write_text(LUA % {"body": body_file})
            for server in (prod, bare):
                for _ in range(3):  # warm-up, and the body must be answered 200
                    status, resp = request(server, "POST", path, raw)
                    if status != 200:
                        raise SystemExit(f"{server.name} answered {status} to {name}: {resp[:300]!r}")
            status, resp = request(prod, "POST", path, raw)
            print(f"\n{name}: {len(raw) / 1024:,.0f} KB, product cards: "
                  f"{[d[0] for d in _decisions(resp)]}")
            seconds = args.large_seconds if name == "5000-obs" else args.seconds
            results[name] = {"product": [], "bare": []}
            for _ in range(args.rounds):
                for label, server in (("product", prod), ("bare", bare)):
                    run = wrk(server, path, script, seconds, args.connections,
                              also=fhir if name == "fetch-mode" and label == "product" else None)
                    results[name][label].append(run)
                    extra = f" + FHIR server {run.other_cpu_ms:.1f}" if run.other_cpu_ms is not None else ""
                    print(f"  {label:8} {run.rps:7.1f} req/s  p50 {run.p50_ms:7.1f}  p99 {run.p99_ms:7.1f} ms  "
                          f"CPU/request {run.cpu_ms:6.1f}{extra} ms  ({run.requests} requests, {run.errors} errors)")
            alone = wrk(prod, path, script, max(2.0, seconds / 2), 1)  # one call at a time: latency
            single[name] = alone
            print(f"  product at concurrency 1: p50 {alone.p50_ms:.1f}  p99 {alone.p99_ms:.1f} ms "
                  f"({alone.requests} requests, {alone.errors} errors)")
        print("\n" + table(results, sizes, single))
        report["runs"] = {n: {k: [vars(r) for r in v] for k, v in d.items()} for n, d in results.items()}
        report["concurrency_1"] = {n: vars(r) for n, r in single.items()}

        if "fetch-mode" in raws:
            path, raw = raws["fetch-mode"]
            check = same_answer_under_load(prod, path, raw, sequential=20, connections=args.connections, per_thread=10)
            report["fetch_answer_under_load"] = {k: v for k, v in check.items() if k != "examples"}
            held = "HELD" if check["differing"] == 0 else "NOT HELD"
            print(f"\nfetch mode, the clinical answer never depends on load: {held} -- "
                  f"{check['sequential']} calls at concurrency 1 and {check['loaded']} at concurrency "
                  f"{args.connections}, {check['differing']} differ from the first; "
                  f"p50 c1 {check['p50_c1_ms']:.0f} ms, c{args.connections} p50 {check['p50_c8_ms']:.0f} / "
                  f"p99 {check['p99_c8_ms']:.0f} ms; cards {[d[0] for d in check['reference'][1]]}")
            for example in check["examples"]:
                print(f"    differing: {str(example)[:300]}")

        if args.workers_check:
            path, raw = raws.get("order-sign") or next(iter(raws.values()))
            script = tmp / "order-sign.lua"
            prod.stop()
            servers.remove(prod)
            figures = {}
            for workers in (1, 2):
                server = start(f"product-w{workers}", "app.http.app:create_app", tmp, factory=True,
                               workers=workers, env={"BESPONSA_DATABASE_URL": f"sqlite:///{db}/w{workers}.db",
                                                     "BESPONSA_EMBEDDED_FHIR": "true"})
                servers.append(server)
                for _ in range(3):
                    request(server, "POST", path, raw)
                one = [wrk(server, path, script, args.seconds, 2 * args.connections) for _ in range(args.rounds)]
                figures[workers] = _mean([r.rps for r in one])
                print(f"\n{workers} worker(s), order-sign, wrk -c{2 * args.connections}: "
                      f"{' / '.join(f'{r.rps:.1f}' for r in one)} req/s, p99 {_mean([r.p99_ms for r in one]):.0f} ms, "
                      f"CPU/request {_mean([r.cpu_ms for r in one]):.1f} ms")
                server.stop()
                servers.remove(server)
            scale = figures[2] / figures[1]
            report["workers"] = {"one_rps": figures[1], "two_rps": figures[2], "scale": scale}
            print(f"two workers / one: x{scale:.2f} ({'>=' if scale >= 1.7 else 'NOT >='} 1.7)")

        if args.memory_seconds:
            path, raw = raws.get("order-sign") or next(iter(raws.values()))
            script = tmp / "order-sign.lua"
            server = start("product-mem", "app.http.app:create_app", tmp, factory=True,
                           env={"BESPONSA_DATABASE_URL": f"sqlite:///{db}/mem.db", "BESPONSA_EMBEDDED_FHIR": "true"})
            servers.append(server)
            request(server, "POST", path, raw)
            samples = [(0.0, server.rss_mb()[0], 0)]
            step = max(5.0, args.memory_seconds / 12)
            total = 0
            elapsed = 0.0
            while elapsed < args.memory_seconds:
                run = wrk(server, path, script, step, args.connections)
                elapsed += step
                total += run.requests
                samples.append((elapsed, server.rss_mb()[0], total))
            report["memory"] = samples
            series = ", ".join(f"{mb:.0f}" for _, mb, _ in samples)
            half = samples[len(samples) // 2]
            print(f"\nmemory of one worker over {args.memory_seconds:.0f} s ({total} order-sign calls), "
                  f"RSS MB every {step:.0f} s: {series}; second half growth {samples[-1][1] - half[1]:+.1f} MB")
        report["loadavg_end"] = os.getloadavg()
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":
    main()
