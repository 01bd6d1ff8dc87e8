"""CPU of the fetch-mode chart's retrieval in process, over real loopback HTTP (issue #11).

    .venv/bin/python bench/bench_fetch_retrieval.py          # 30 calls after a warm-up
    .venv/bin/python bench/bench_fetch_retrieval.py --prof   # and a cProfile of 30 more
    .venv/bin/python bench/bench_fetch_retrieval.py --concurrency 8   # 8 calls at once, as under wrk -c8

Starts bench/fhir_app.py (the benchmark charts) on a random loopback port and runs
retrieval.collect for the fetch-mode patient's 14 queries through app/fhir_client.py's pooled
client; prints CPU and wall time per call, requests per call and resources read. The figure of
the client before a change is taken by running this with the old app/fhir_client.py in place,
old and new in turn. A script that prints figures, not a test.
"""
import sys, os, time, asyncio, tempfile, cProfile, pstats, gc
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]; sys.path.insert(0, str(ROOT)); os.chdir(ROOT)
from pathlib import Path
from datetime import UTC, datetime
from bench.side_by_side import start
from app import retrieval, fhir_client
from app.prefetch_queries import PREFETCH_TEMPLATES
tmp = Path(tempfile.mkdtemp())
fhir = start("fhir", "bench.fhir_app:app", tmp)
n_req = 0
orig = retrieval._Reader._get_json
async def counted(self, url, **kw):
    global n_req; n_req += 1
    return await orig(self, url, **kw)
retrieval._Reader._get_json = counted
try:
    from bench.charts import bodies
    sid, body = bodies(datetime.now(UTC), fhir.base + "/fhir")["fetch-mode"]
    pid = body["context"]["patientId"]
    queries = {k: v.replace("{{context.patientId}}", pid) for k, v in PREFETCH_TEMPLATES.items()}
    async def one():
        return await retrieval.collect({}, queries, fhir_server=body["fhirServer"], access_token=None, required=frozenset(), timeout_seconds=10, max_pages=20)
    conc = int(sys.argv[sys.argv.index("--concurrency") + 1]) if "--concurrency" in sys.argv else 1
    async def wave():
        return (await asyncio.gather(*(one() for _ in range(conc))))[-1]
    async def run(n, prof=None):
        global n_req
        for _ in range(3): got = await wave()
        n_req = 0
        t = time.process_time(); w = time.perf_counter()
        if prof: prof.enable()
        for _ in range(n): got = await wave()
        if prof: prof.disable()
        calls = n * conc
        print(f"per call ({conc} at once): CPU {(time.process_time()-t)/calls*1000:.1f} ms wall {(time.perf_counter()-w)/n*1000:.1f} ms a wave, requests {n_req/calls:.1f}, resources {len(got.resources)}")
    gc.collect(); gc.freeze()
    asyncio.run(run(30))
    if "--prof" in sys.argv:
        pr = cProfile.Profile(); asyncio.run(run(30, pr))
        pstats.Stats(pr).sort_stats("tottime").print_stats(30)
finally:
    fhir.stop()
