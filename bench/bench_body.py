"""Request-body decoding cost (#9, #11): stdlib json vs the service's reader (orjson + depth check).

    .venv/bin/python bench/bench_body.py          # prints ms per body, best of 5 x 10 runs

Bodies: a fortnight and a year of daily labs in prefetch (tests/fixtures/mappings/large_patient.py).
A script that prints figures, not a test.
"""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from app.http.json_body import _deeper_than, decode_json  # noqa: E402
from tests.fixtures.mappings.large_patient import make_patient  # noqa: E402


def body(days: int) -> bytes:
    resources, draft, _ = make_patient(days=days)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    return json.dumps({"hook": "order-sign", "context": {"draftOrders": draft}, "prefetch": {"labs": bundle}}).encode()


def best_ms(fn, number: int = 10) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1000


def main() -> None:
    print(f"{'body':>16} {'bytes':>10} {'json.loads':>11} {'orjson.loads':>13} {'depth check':>12} {'decode_json':>12}")
    for days in (14, 365):
        raw = body(days)
        value = orjson.loads(raw)
        figures = (
            best_ms(lambda: json.loads(raw)),
            best_ms(lambda: orjson.loads(raw)),
            best_ms(lambda: _deeper_than(value, 64)),
            best_ms(lambda: decode_json(raw, max_bytes=8 << 20, max_depth=64)),
        )
        print(f"{f'{days} days of labs':>16} {len(raw):>10} " + " ".join(f"{f:>11.2f}ms" for f in figures))


if __name__ == "__main__":
    main()
