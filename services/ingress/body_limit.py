"""Refuse request bodies over a byte limit with 413 before the application parses them.

A declared ``Content-Length`` over the limit is refused without reading the body; a chunked body
is read only up to the limit. Either way, at most ``limit`` bytes are ever held in memory. A
moderately oversized body that is already on its way is read and thrown away (never stored)
before answering, so the client sees the 413 instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DISCARD_AT_MOST = 16 * 1024 * 1024  # bytes read and dropped so the client can read its 413
_DISCARD_FOR_AT_MOST_S = 5.0


class BodyLimitMiddleware:
    """Pure ASGI middleware: ``app.add_middleware(BodyLimitMiddleware, limit=65536)``."""

    def __init__(self, app: ASGIApp, *, limit: int, setting: str = "INGRESS_MAX_BODY_BYTES") -> None:
        self.app = app
        self.limit = limit
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _refuse(send, 400, "invalid_content_length", "the Content-Length header is not a number")
                return
            if size > self.limit:
                expects_continue = headers.get(b"expect", b"").lower() == b"100-continue"
                if not expects_continue and size <= _DISCARD_AT_MOST:
                    await _discard(receive)
                await self._too_large(send, f"the request body is {size} bytes")
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                if more:
                    await _discard(receive)
                await self._too_large(send, "the request body is larger than that")
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, send: Send, what: str) -> None:
        await _refuse(send, 413, "body_too_large", f"{what}; the limit is {self.limit} bytes ({self.setting})")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def _receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would say it

    return _receive


async def _discard(receive: Receive) -> None:
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCARD_FOR_AT_MOST_S):
            while dropped <= _DISCARD_AT_MOST:
                message = await receive()
                if message["type"] != "http.request":
                    return
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    payload = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
