"""HTTP/1.1 and SSE plumbing of the scripted provider: request parsing, response heads, disconnect watch."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from services.devstack.scripted_provider.script import Call

__all__ = ["Gone", "Exchange", "sse", "http_head", "parse_head", "read_body", "embed"]


class Gone(Exception):
    """The client closed the connection."""


class Exchange:
    """One response being written; notices the client going away without reading from the socket.

    The connection's reader sees EOF as soon as the client closes, so polling ``at_eof()`` detects
    the disconnect while leaving any next keep-alive request untouched in the buffer.
    """

    _POLL_S = 0.02

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call: Call, stop: asyncio.Event
    ) -> None:
        self.reader, self.writer, self.call, self.stop = reader, writer, call, stop

    def check(self) -> None:
        if self.reader.at_eof() or self.stop.is_set() or self.writer.is_closing():
            if not self.call.completed and not self.call.disconnected:
                self.call.disconnected, self.call.disconnected_at = True, time.monotonic()
            raise Gone

    async def pause(self, seconds: float | None) -> None:
        """Sleep (forever when None) unless the client leaves or the server stops first."""
        end = None if seconds is None else time.monotonic() + max(0.0, seconds)
        while True:
            self.check()
            left = self._POLL_S if end is None else end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self._POLL_S))

    async def write(self, data: bytes) -> None:
        self.check()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            self.check()
            raise Gone from None


def sse(obj: Mapping[str, Any] | str, ascii_json: bool) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=ascii_json, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def http_head(status: int, headers: Mapping[str, str]) -> bytes:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
    }.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def embed(text: str, dim: int) -> list[float]:
    vec = [0.0] * dim
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method, path.split("?", 1)[0], headers


async def read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            out += await reader.readexactly(size + 2)
            if size == 0:
                return bytes(out[:-2])
            del out[-2:]
    return await reader.readexactly(int(headers.get("content-length", "0")))
