"""Engine time of patient-view (#10): the next due dose evaluated as an order for it.

    .venv/bin/python bench/bench_patient_view.py [-n 30]

Prints p50/max of `engine.evaluate_next_dose` (patient-view) beside `engine.evaluate` with no
draft (what patient-view ran before), for every demo patient and for a patient with a year of
daily labs (bench_service.large_patient). Facts are built once; only the engine is timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_service import LARGE_ID, large_patient  # noqa: E402

from app import engine, facts_builder  # noqa: E402
from app.demo import load_demo_resources  # noqa: E402


def timed(n: int, fn: Callable[[], object]) -> str:
    xs = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - start) * 1000)
    return f"p50 {statistics.median(xs):6.1f} ms  max {max(xs):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=30, help="iterations per patient (default 30)")
    args = parser.parse_args()
    now = datetime.now(UTC)
    demo = load_demo_resources(now)
    patients = sorted({r["id"] for r in demo if r["resourceType"] == "Patient"})
    cases = [(pid, [r for r in demo if r.get("id") == pid
                    or (r.get("subject") or {}).get("reference") == f"Patient/{pid}"])
             for pid in patients]
    cases.append((LARGE_ID, large_patient(now)))
    print(f"{'patient':<26} {'patient-view (next dose)':<32} {'no-draft evaluate':<30}")
    for pid, resources in cases:
        facts = facts_builder.build_facts(pid, resources, None, now)
        print(f"{pid:<26} {timed(args.n, lambda: engine.evaluate_next_dose(facts, now)):<32} "
              f"{timed(args.n, lambda: engine.evaluate(facts, now)):<30}")


if __name__ == "__main__":
    main()
