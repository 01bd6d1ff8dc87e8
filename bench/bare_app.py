"""The bare endpoint of issue #11: FastAPI, `json.loads` of the body, one fixed card.

    uvicorn bench.bare_app:app        (bench/side_by_side.py starts it with the product's settings)
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CARD = {
    "uuid": "5b6c3f4e-0000-4000-8000-000000000001",
    "summary": "Inotuzumab ozogamicin: proceed with 0.5 mg/m2 (cycle 3 day 1)",
    "indicator": "info",
    "source": {"label": "besponsa-cds (bare benchmark endpoint)"},
}

app = FastAPI()


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    if not isinstance(body, dict):
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    return JSONResponse({"cards": [CARD]})


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
