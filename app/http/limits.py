"""Bounded request bodies: a pure ASGI middleware answering 413 before an oversized body is held.

- A declared `Content-Length` above the limit is answered at once: not one body byte is read (a
  client sending `Expect: 100-continue` is never asked for the body).
- A body without `Content-Length` (`Transfer-Encoding: chunked`) is read chunk by chunk and refused
  at the first chunk that takes it over the limit; a body within the limit is handed to the app
  unchanged, so at most `max_bytes` plus one chunk is ever held.
- A body within a declared `Content-Length` needs no counting: the server delivers exactly that many
  bytes.

The 413 body has the service's error shape (`{"error", "message", "details"}`, see errors.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_large_body(max_bytes: int) -> dict[str, Any]:
    return {
        "error": "content_too_large",
        "message": f"The request body is larger than the {max_bytes} bytes this service accepts.",
        "details": [{"field": "body", "message": f"at most {max_bytes} bytes"}],
    }


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; None when absent (a chunked or empty body)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed Content-Length before the app sees it
    return None


def _is_chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))


class BodyLimit:
    """Refuse request bodies larger than `max_bytes` with 413, before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        if not _is_chunked(scope):
            await self.app(scope, receive, send)  # no body
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client left, nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        body = b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect, for apps that wait for it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = orjson.dumps(too_large_body(self.max_bytes))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),  # the unread rest of the body is not worth draining
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
