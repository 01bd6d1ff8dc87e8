"""Card store on the request path or off it: what one hook call waits for to record its cards.

    .venv/bin/python bench/bench_store.py                    # SQLite, N=500
    .venv/bin/python bench/bench_store.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test

Compares, for a typical response (3 cards): `CardStore.record_cards` (a commit per hook call, as
before issue #11) and `BufferedCardStore.enqueue_cards` (queued for the background writer), and
then how long the writer takes to commit everything queued. Prints p50 / p99 in milliseconds.
This is a script, not a test; PostgreSQL runs use a schema of their own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from app.storage import open_store  # noqa: E402
from app.storage.writer import BufferedCardStore, CardWriter  # noqa: E402
from tests.test_storage_support import NOW, make_cards  # noqa: E402


def _pcts(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return f"p50 {statistics.median(ms):7.3f} ms  p99 {ms[int(len(ms) * 0.99) - 1]:7.3f} ms"


def run(url: str, n: int, schema: str | None) -> None:
    store = open_store(url, schema=schema)
    synchronous = []
    for i in range(n):
        cards, decisions = make_cards()
        started = time.perf_counter()
        store.record_cards(service_id="besponsa-order-sign", hook_instance=f"sync-{i}", patient_id="p1",
                           cards=cards, decisions=decisions, now=NOW)
        synchronous.append(time.perf_counter() - started)
    writer = CardWriter(store)
    writer.start()
    buffered = BufferedCardStore(store, writer)
    queued = []
    for i in range(n):
        cards, decisions = make_cards()
        started = time.perf_counter()
        buffered.enqueue_cards(service_id="besponsa-order-sign", hook_instance=f"async-{i}", patient_id="p1",
                               cards=cards, decisions=decisions, now=NOW)
        queued.append(time.perf_counter() - started)
    started = time.perf_counter()
    writer.flush(timeout=60)
    drained = time.perf_counter() - started
    print(f"{make_url_label(url)}: {n} hook responses of 3 cards")
    print(f"  commit per hook call (before):  {_pcts(synchronous)}")
    print(f"  queued for the writer (now):    {_pcts(queued)}")
    print(f"  writer: the rest of the queue committed {drained * 1000:.1f} ms after the last call")
    counts = store.counts()
    assert counts["cards"] == 6 * n, counts
    buffered.close()


def make_url_label(url: str) -> str:
    return url.split("://", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--url", default=None, help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.url is None:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", args.n, None)
        return
    schema = f"bench_store_{uuid.uuid4().hex[:8]}" if args.url.startswith("postgresql") else None
    try:
        run(args.url, args.n, schema)
    finally:
        if schema:
            engine = create_engine(args.url)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()


if __name__ == "__main__":
    main()
