"""Issue #11, s6: facts of the typical order-sign chart with reference limits of a value in the
canonical unit read as the number itself (`_limit_in_unit`) against read through the limits cache
(`_plain_limit`, as before), alternated in one process; checks both give the same measurements.

    .venv/bin/python bench/ab_facts_limits.py

A script that prints figures, not a test.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import facts_builder as fb  # noqa: E402
from bench.charts import bodies  # noqa: E402


def main() -> None:
    now = datetime.now(UTC)
    _, body = bodies(now, "http://127.0.0.1:1/fhir")["order-sign"]
    resources = [e["resource"] for v in body["prefetch"].values()
                 if isinstance(v, dict) and v.get("resourceType") == "Bundle" for e in v.get("entry", [])]
    draft = body["context"]["draftOrders"]
    in_unit = fb._value_plan

    def cached(*args):  # the plan without its in-unit flag: every limit through _plain_limit
        plan = in_unit(*args)
        return plan[:-1] + (False,) if plan else plan

    modes = {"in unit": in_unit, "through the cache": cached}
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {k: [] for k in modes}
    measured = {}
    for r in range(16):
        for name in list(modes) if r % 2 else list(modes)[::-1]:
            fb._value_plan = modes[name]
            fb._value_plans.clear()
            measured.setdefault(name, fb.build_facts("bench-typical", resources, draft, now,
                                                     problems=[], unavailable=frozenset()).measurements)
            t = time.process_time()
            for _ in range(50):
                fb.build_facts("bench-typical", resources, draft, now, problems=[], unavailable=frozenset())
            times[name].append((time.process_time() - t) / 50 * 1000)
    fb._value_plan = in_unit
    for name, ts in times.items():
        print(f"{name:18s} facts p50 {statistics.median(ts):.3f} ms (16 x 50 calls)")
    print("same measurements:", len(set(map(tuple, measured.values()))) == 1)


if __name__ == "__main__":
    main()
