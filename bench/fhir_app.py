"""A local FHIR server process holding the benchmark charts (bench/charts.py), for fetch mode.

    uvicorn bench.fhir_app:app        (bench/side_by_side.py starts it on a random port)

The embedded demo FHIR router (app/demo/fhir_server.py) over a store of the two benchmark patients,
dates relative to start-up; a separate process, so the product fetches over real loopback HTTP.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI  # noqa: E402

from app.demo.fhir_server import router, set_store  # noqa: E402
from bench.charts import charts  # noqa: E402

set_store(charts(datetime.now(UTC))[0])
app = FastAPI()
app.include_router(router, prefix="/fhir")
