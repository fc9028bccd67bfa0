"""Helpers for the ingress tests: serve an app for real, read what the stream holds, wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.core import contracts
from services.core.contracts import Event
from services.devstack.ports import free_port
from services.ingress.settings import IngressSettings

MODELS = "smollm2-135m-instruct,gpt-4o-mini"


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the test runner keeps its signals
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server exited during start-up")
        assert time.monotonic() < deadline, "server did not start within 30 s"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def stored_events(js: JetStreamContext, subject: str = ">") -> list[Event]:
    """Every event the RELAY stream holds on ``subject`` (a wildcard is fine), oldest first."""
    info = await js.stream_info(contracts.STREAM)
    out: list[Event] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if seq == 0:
            continue
        try:
            msg = await js.get_msg(contracts.STREAM, seq=seq)
        except NotFoundError:
            continue
        if _matches(subject, msg.subject or "") and msg.data:
            out.append(contracts.decode_event(msg.data))
    return out


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Wait, bounded, until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:.0f} s"
        await asyncio.sleep(0.05)


def ingress_settings(nats_url: str, **overrides: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "NATS_URL": nats_url,
        "RELAY_STREAM_MAX_AGE_S": 3600,  # the same stream config as the ``js`` fixture: no drift updates
        "RELAY_DUPLICATE_WINDOW_S": 120,
        "allowed_models": MODELS,
        "INGRESS_DEFAULT_MODEL": "smollm2-135m-instruct",
        "id_secret": "secret-for-tests",
        "nats_connect_attempts": 5,
    }
    values.update(overrides)
    return IngressSettings(_env_file=None, **values)  # type: ignore[call-arg]
