"""CPU of one hook call, stage by stage, in process (no HTTP, no load): where the time of a body goes.

    .venv/bin/python bench/hot_path.py                 # every prefetch body of bench/charts.py
    .venv/bin/python bench/hot_path.py -n 200 --only order-sign
    .venv/bin/python bench/hot_path.py --no-freeze     # without gc.freeze() after the warm-up

Times (CPU time of this process, so that other load on the machine counts less), per body,
the median of -n calls of: decoding the body (the product's reader, app/http/json_body.py),
request parsing (parse_request + validate_context), retrieval (prefetch only), facts, engine and
cards. The engine stage is the service's (`evaluate_for_hook`: patient-view evaluates the next
due dose). Complements bench/side_by_side.py (figures under load); the lever measurements of issue #11
use both. A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
from functools import partial
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.charts import bodies  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--only", default="")
    p.add_argument("--no-freeze", action="store_true")
    p.add_argument("--gc-threshold", default="", help="gen0,gen1,gen2 thresholds (gc.set_threshold)")
    args = p.parse_args()

    from app import cards as cards_module
    from app import facts_builder, retrieval
    from app.discovery import SERVICES
    from app.engine.decisions import Label
    from app.engine.policy import Policy
    from app.prefetch_queries import PREFETCH_TEMPLATES
    from app.service import evaluate_for_hook
    from app.settings import Settings as ServiceSettings
    from cds_hooks.request import parse_request, validate_context

    facts_builder.warm()
    now = datetime.now(UTC)
    all_bodies = bodies(now, "http://127.0.0.1:1/fhir")
    names = [x for x in args.only.split(",") if x] or [n for n in all_bodies if n != "fetch-mode"]
    raws = {n: json.dumps(all_bodies[n][1]).encode() for n in names}
    if args.gc_threshold:
        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
    if not args.no_freeze:
        gc.collect()
        gc.freeze()
    print(f"objects tracked by gc: {len(gc.get_objects())}, frozen: {gc.get_freeze_count()}")
    policy = Policy()
    settings = ServiceSettings()
    try:  # the product's body reader (orjson and the depth check, issue #9), else json.loads
        from app.http.json_body import decode_json
        from app.settings import Settings

        limits = Settings()
        decode = partial(decode_json, max_bytes=2**31, max_depth=limits.max_json_depth)
    except ImportError:
        decode = json.loads

    async def one(service_id: str, raw: bytes, t: dict[str, list[float]]) -> int:
        marks = [time.process_time()]

        def lap(name: str) -> None:
            marks.append(time.process_time())
            t.setdefault(name, []).append((marks[-1] - marks[-2]) * 1000)

        body = decode(raw)
        lap("decode")
        service = SERVICES[service_id]
        req = parse_request(body)
        ctx = validate_context(service.hook, req.context)
        lap("parse")
        draft_orders = getattr(ctx, "draftOrders", None)
        if draft_orders is not None and not facts_builder.summarize_draft_orders(draft_orders).relevant:
            lap("relevance")
            return 0
        queries = {k: v.replace("{{context.patientId}}", ctx.patientId) for k, v in PREFETCH_TEMPLATES.items()}
        got = await retrieval.collect(req.prefetch or {}, queries, fhir_server=None, access_token=None,
                                      required=frozenset(), timeout_seconds=10, max_pages=20)
        lap("retrieval")
        facts = facts_builder.build_facts(ctx.patientId, got.resources, draft_orders, now,
                                          problems=list(got.problems), unavailable=frozenset(got.unavailable))
        lap("facts")
        decisions = evaluate_for_hook(service.hook, facts, now, policy, Label.EU, settings)
        lap("engine")
        card_ctx = cards_module.CardContext(patient_id=ctx.patientId, now=now, label=Label.EU)
        out = [c.to_json() for c in cards_module.build_cards(decisions, card_ctx)]
        lap("cards")
        return len(out)

    async def run() -> None:
        for name in names:
            service_id, _ = all_bodies[name]
            raw = raws[name]
            t: dict[str, list[float]] = {}
            n = max(5, args.n // 10) if name == "5000-obs" else args.n
            for _ in range(3):
                await one(service_id, raw, {})
            totals = []
            for _ in range(n):
                t0 = time.process_time()
                await one(service_id, raw, t)
                totals.append((time.process_time() - t0) * 1000)
            parts = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in t.items())
            print(f"{name:12} {len(raw) / 1024:6.0f} KB  total p50 {statistics.median(totals):7.2f} ms  "
                  f"({parts})  gc gen2 collections so far: {gc.get_stats()[2]['collections']}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
