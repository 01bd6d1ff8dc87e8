"""JSON error bodies: 400 invalid_request with field details, 404, 412, 500 without stack traces."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.service import HookCallError
from cds_hooks.request import field_path

log = logging.getLogger("besponsa_cds.http")

INTERNAL_ERROR = {
    "error": "internal_error",
    "message": "The service failed while handling this request; no decision was made.",
}
_HTTP_ERRORS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    412: "required_data_unavailable",
    413: "content_too_large",
}


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    details: list[ErrorDetail] | None = None
    keys: list[str] | None = None


def invalid_request(message: str, details: list[dict[str, str]]) -> HookCallError:
    return HookCallError(400, "invalid_request", message, details=details)


def error_response(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=status, content={k: v for k, v in body.items() if v not in (None, [], {}, "")})


def _field(loc: tuple[Any, ...]) -> str:
    return field_path(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 becomes the service's 400 format, on every route.
        details = [
            {"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        return error_response(400, {"error": "invalid_request", "message": "The request is invalid.", "details": details})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):
            return JSONResponse(status_code=exc.status_code, content=exc.detail, headers=exc.headers)
        body = {"error": _HTTP_ERRORS.get(exc.status_code, "http_error"), "message": str(exc.detail)}
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            extra={"method": request.method, "path": request.url.path, "error_type": type(exc).__name__},
        )
        return error_response(500, INTERNAL_ERROR)
