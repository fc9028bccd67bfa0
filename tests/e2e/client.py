"""A test client that follows an answer the way a browser does: submit, then short polls with ``since``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Followed:
    response_id: str
    received: str = ""  # concatenation of every piece a poll returned
    polls: int = 0
    restarts: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    first_seen_at: dict[int, float] = field(default_factory=dict)  # char offset -> time.monotonic() first returned
    request_seconds: list[float] = field(default_factory=list)


async def submit(client: httpx.AsyncClient, message: str, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/chat", json={"message": message, **body})
    assert r.status_code == 202, r.text
    return r.json()


async def follow(
    client: httpx.AsyncClient,
    response_id: str,
    *,
    interval_s: float | None = None,
    timeout_s: float = 120.0,
    status_client: httpx.AsyncClient | None = None,
) -> Followed:
    """Poll until terminal; ``interval_s`` fixed, else the server's ``poll_after_ms``."""
    reader = status_client or client
    out = Followed(response_id)
    offset, attempt = 0, None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        params: dict[str, Any] = {"since": offset}
        if attempt is not None:
            params["attempt"] = attempt
        t0 = time.monotonic()
        r = await reader.get(f"/api/response/{response_id}", params=params)
        out.request_seconds.append(time.monotonic() - t0)
        assert r.status_code == 200, r.text
        view = r.json()
        out.polls += 1
        if view["restarted"]:
            out.restarts += 1
            out.received = ""
        assert view["offset"] == (0 if view["restarted"] else offset), view
        if view["text"]:
            now = time.monotonic()
            for i in range(len(out.received), len(out.received) + len(view["text"])):
                out.first_seen_at.setdefault(i, now)
            out.received += view["text"]
        offset, attempt = view["next_offset"], view["attempt"]
        out.last = view
        if view["terminal"]:
            return out
        await asyncio.sleep(interval_s if interval_s is not None else max(view["poll_after_ms"], 50) / 1000)
    raise AssertionError(f"answer {response_id} not terminal after {timeout_s} s: {out.last}")
