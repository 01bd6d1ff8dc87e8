"""The one JSON body reader of the hook and feedback endpoints: content type, size, decode, depth.

Decoded once, with orjson (RFC 8259 strict): `NaN`/`Infinity` literals, invalid UTF-8 and lone
surrogates (`"\\ud800"`) are refused as the invalid JSON they are, with the line and column. A body
nested deeper than `max_depth` levels is refused too, so nothing downstream (validation, storage,
the response encoder) meets a structure it cannot handle. Every refusal is a `RequestProblem`
(-> 400 `invalid_request` with `details`); bodies over the byte limit are refused by limits.py (413).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.settings import Settings
from cds_hooks.request import RequestProblem

JSON_MEDIA_TYPES = ("application/json", "application/fhir+json")
_NON_JSON_NUMBERS = (b"NaN", b"Infinity")

T = TypeVar("T")


def _invalid(message: str, detail: str, field: str = "body") -> RequestProblem:
    return RequestProblem(message, [{"field": field, "message": detail}])


def check_content_type(content_type: str | None) -> None:
    """JSON media types only (`application/json`, `application/fhir+json`, any `+json`); absent is tolerated."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
        raise _invalid("The request body must be JSON.", f"expected application/json, got '{media}'", "Content-Type")


def _deeper_than(value: Any, max_depth: int) -> bool:
    """True when `value` nests containers more than `max_depth` levels (breadth first, no recursion)."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return False


# The nesting of valid JSON read from its bytes with C-speed bytes methods, in ~60 % of the walk's
# time (which builds lists of the decoded containers): keep only quotes and brackets, drop the
# strings (brackets inside them do not nest), then peel off innermost pairs until none are left.
_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in _STRUCTURE)
_STRING = re.compile(rb'"[^"]*"')


def _deeper_than_raw(raw: bytes, max_depth: int) -> bool | None:
    """For `raw` that decoded as JSON: True when it nests more than `max_depth` levels, False when
    not, None when this reading cannot tell (then the walk over the decoded value decides)."""
    if b"\\" in raw:  # inside strings only: escaped backslashes, then escaped quotes, go first,
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # so each '"' left opens or closes one
    s = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")  # strings without brackets vanish
    if b'"' in s:
        s = _STRING.sub(b"", s)  # strings with brackets (UCUM units such as "[iU]/L")
    passes = 0
    while s:  # a pass removes every empty [] and then every empty {}: one or two levels
        passes += 1
        if passes > max_depth:
            return True
        s = s.replace(b"[]", b"").replace(b"{}", b"")
    return None if 2 * passes > max_depth else False


def _syntax_message(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    near = raw[max(exc.pos - 1, 0) : exc.pos + 9]
    if any(literal in near for literal in _NON_JSON_NUMBERS):
        reason = "NaN and Infinity are not JSON numbers"
    elif exc.msg == "depth limit exceeded":
        reason = "nested too deeply"
    else:
        reason = exc.msg
    return f"{reason} at line {exc.lineno} column {exc.colno}"


def decode_json(raw: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """The body as JSON values; raises RequestProblem for anything that is not bounded, valid JSON."""
    if len(raw) > max_bytes:  # limits.py answers 413 first; this guards any other way in
        raise _invalid("The request body is too large.", f"at most {max_bytes} bytes")
    if not raw or raw.isspace():
        raise _invalid("The request body is empty.", "expected a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid("The request body is not valid JSON.", _syntax_message(raw, exc)) from None
    deeper = _deeper_than_raw(raw, max_depth)
    if deeper is None:
        deeper = _deeper_than(value, max_depth)
    if deeper:
        raise _invalid("The request body is nested too deeply.", f"JSON nested more than {max_depth} levels")
    return value


def _settings(request: Request) -> Settings:
    """The app's settings; the defaults for a bare app."""
    settings = getattr(request.app.state, "settings", None)
    return settings if settings is not None else Settings.model_construct()


def body_limits(request: Request) -> tuple[int, int]:
    """(max_bytes, max_depth) from the app's settings; the settings' defaults for a bare app."""
    settings = _settings(request)
    return settings.max_body_bytes, settings.max_json_depth


def inline_max_bytes(request: Request) -> int:
    """The most data a call of this request may decode and decide on the event loop (0: none).
    That saves two thread hand-offs (under load the worker and the loop take turns at the GIL,
    ~0.45 ms each), but a queue of such calls on the loop would starve the others, so: only while
    few requests are in flight and the loop keeps time (app/http/app.py counts the one, measures
    the other)."""
    settings, state = _settings(request), request.app.state
    keeps_up = (getattr(state, "requests_in_flight", 0) <= settings.inline_max_in_flight
                and getattr(state, "loop_lag_seconds", 0.0) * 1000 < settings.inline_max_loop_lag_ms)
    return settings.inline_max_bytes if keeps_up else 0


async def read_json(request: Request) -> Any:
    """Check, read and decode a JSON request body (off the loop when large); raises RequestProblem."""
    raw = await read_body(request)
    max_bytes, max_depth = body_limits(request)
    decode = partial(decode_json, max_bytes=max_bytes, max_depth=max_depth)
    return await off_the_loop(len(raw) > inline_max_bytes(request), decode, raw)


async def read_body(request: Request) -> bytes:
    """The raw body of a JSON request (content type checked; size bounded by limits.py)."""
    check_content_type(request.headers.get("content-type"))
    return await request.body()


async def off_the_loop(offload: bool, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, CPU-bound: in a worker thread when `offload` (see `inline_max_bytes`), so that
    the loop stays free for other calls, else right here."""
    if offload:
        return await run_in_threadpool(fn, *args)
    return fn(*args)
