"""The product at a git ref against the working tree, same bodies, same run (issue #11 levers).

    .venv/bin/python bench/ab_commits.py 4488802                       # order-sign, patient-view
    .venv/bin/python bench/ab_commits.py HEAD~3 --only order-sign --rounds 5 --seconds 8

Checks the ref out into a temporary git worktree, starts both products with bench/side_by_side.py's
settings (one worker, uvloop, httptools, embedded demo FHIR, a fresh SQLite card store each) and
the bench FHIR server (bench/fhir_app.py, for the fetch-mode body), checks
that both give the same cards for each body, then runs wrk -c8 against them in turn (A B A B ...)
and prints throughput, CPU per request (/proc utime+stime) and p99 of each run, and the medians.
This machine's speed drifts within minutes, hence the alternation. A script that prints figures,
not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.side_by_side as sbs  # noqa: E402
from bench.charts import bodies  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", help="git ref of the 'before' product")
    p.add_argument("--only", default="order-sign,patient-view", help="comma-separated body names")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="besponsa-ab-"))
    tree = tmp / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), args.ref], check=True)
    servers: list[sbs.Server] = []
    try:
        for name, root in (("before", tree), ("after", ROOT)):
            sbs.ROOT = root  # the server's working directory: its `app` package is imported from there
            servers.append(sbs.start(name, "app.http.app:create_app", tmp, factory=True, env={
                "BESPONSA_DATABASE_URL": f"sqlite:///{tmp}/{name}.db", "BESPONSA_EMBEDDED_FHIR": "true"}))
        sbs.ROOT = ROOT
        fhir = sbs.start("fhir", "bench.fhir_app:app", tmp)  # the chart of fetch-mode calls
        servers.append(fhir)
        all_bodies = bodies(datetime.now(UTC), fhir.base + "/fhir")
        print(f"before = {args.ref}, after = working tree of {ROOT}; wrk -c{args.connections}, {args.rounds} rounds")
        for name in args.only.split(","):
            service, body = all_bodies[name]
            raw = json.dumps(body).encode()
            path = f"/cds-services/{service}"
            (tmp / f"{name}.json").write_bytes(raw)
            script = tmp / f"{name}.lua"
            script.write_text(sbs.LUA % {"body": tmp / f"{name}.json"})
            answers = []
            products = [s for s in servers if s.name != "fhir"]
            for server in products:
                for _ in range(3):
                    sbs.request(server, "POST", path, raw)
                answers.append(sbs._decisions(sbs.request(server, "POST", path, raw)[1]))
            print(f"\n{name}: same cards before and after: {answers[0] == answers[1]} {[a[0] for a in answers[1]]}")
            runs: dict[str, list[sbs.Run]] = {s.name: [] for s in products}
            for _ in range(args.rounds):
                for server in products:
                    run = sbs.wrk(server, path, script, args.seconds, args.connections)
                    runs[server.name].append(run)
                    print(f"  {server.name:7} {run.rps:7.1f} req/s  CPU/request {run.cpu_ms:5.2f} ms  "
                          f"p50 {run.p50_ms:6.0f} ms  p99 {run.p99_ms:6.0f} ms")
            med = {k: (statistics.median(r.rps for r in v), statistics.median(r.cpu_ms for r in v),
                       statistics.median(r.p99_ms for r in v)) for k, v in runs.items()}
            print(f"  medians: before {med['before'][0]:.1f} req/s, {med['before'][1]:.2f} ms, p99 "
                  f"{med['before'][2]:.0f} ms; after {med['after'][0]:.1f} req/s, {med['after'][1]:.2f} ms, p99 "
                  f"{med['after'][2]:.0f} ms; CPU per request after/before {med['after'][1] / med['before'][1]:.2f}")
    finally:
        for server in servers:
            server.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
