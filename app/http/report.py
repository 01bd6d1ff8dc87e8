"""`GET /governance/report`: the governance report as JSON (read-only; off unless
BESPONSA_REPORT_ENDPOINT=true). Per rule: cards shown, accepted, overridden, override reasons."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["Governance"])

_EXAMPLE = {
    "totals": {"cards": 3, "accepted": 1, "overridden": 1, "noFeedback": 1, "feedbackReceived": 2},
    "rules": [{
        "rule": "L-2", "shown": 3, "accepted": 1, "overridden": 1, "noFeedback": 1,
        "overriddenWithoutReason": 0, "decisions": {"hold": 3},
        "overrideReasons": [{"system": "https://besponsa-cds.org/fhir/CodeSystem/override-reason",
                             "code": "gilbert-or-haemolysis",
                             "display": "Bilirubin due to Gilbert's syndrome or haemolysis", "count": 1}],
    }],
}


@router.get(
    "/governance/report",
    summary="Per rule: cards shown, accepted, overridden, with the override reasons",
    responses={200: {"content": {"application/json": {"example": _EXAMPLE}}}},
)
async def governance_report(request: Request) -> JSONResponse:
    store = getattr(request.app.state, "store", None)
    if store is None:
        return JSONResponse(status_code=503, content={
            "error": "store_unavailable", "message": "The card store is not available."})
    return JSONResponse(await run_in_threadpool(store.report))
