"""Helpers for the status tests: the real service on a free port, and a publisher of pipeline events.

Events are published the way the other services do (``bus.publish_event``, the subjects and event
ids of DESIGN.md), so these tests exercise the same messages the pipeline produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.contracts import (
    CancelRequested,
    ChatRequested,
    ContextRetrieved,
    DeltaEmitted,
    FailureCode,
    FinishReason,
    FirstTokenEmitted,
    GenerationStarted,
    Passage,
    ResponseCompleted,
    ResponseFailed,
    RetrievalStarted,
    Usage,
)
from services.devstack.ports import free_port
from services.status.app import build_app
from services.status.settings import StatusSettings

PASSAGE = Passage(text="Licensed under the Apache License.", source="Apache-2.0.txt", position=0, score=0.91)


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, every: float = 0.05) -> Any:
    """Retry ``check`` until it returns something truthy (bounded); then return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met in {timeout} s; last value: {last!r}")


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # the test process keeps its signals
        return contextlib.nullcontext()


@dataclass
class StatusService:
    """A running status service and an HTTP client for it."""

    url: str
    http: httpx.AsyncClient
    settings: StatusSettings

    async def get(self, path: str, user: str | None = "alice", **params: Any) -> httpx.Response:
        headers = {"X-User-Id": user} if user is not None else {}
        return await self.http.get(path, params={k: v for k, v in params.items() if v is not None}, headers=headers)

    async def poll(self, rid: uuid.UUID, user: str = "alice", **params: Any) -> dict[str, Any]:
        r = await self.get(f"/api/response/{rid}", user, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_for(
        self, rid: uuid.UUID, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, user: str = "alice"
    ) -> dict:
        async def check() -> dict | None:
            r = await self.get(f"/api/response/{rid}", user)
            return r.json() if r.status_code == 200 and pred(r.json()) else None

        return await eventually(check, timeout=timeout)


@contextlib.asynccontextmanager
async def run_status(settings: StatusSettings) -> AsyncIterator[StatusService]:
    """Start the service in this event loop (real HTTP on a free port); stop it cleanly afterwards."""
    server = _Server(uvicorn.Config(build_app(settings), host="127.0.0.1", port=settings.port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        try:

            async def ready() -> bool:
                if task.done():
                    task.result()  # start-up failed: raise its error here
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/ready")).status_code == 200
                return False

            await eventually(ready, timeout=60)
            yield StatusService(url=url, http=http, settings=settings)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)


def make_settings(nats_url: str, database_url: str, **overrides: Any) -> StatusSettings:
    values: dict[str, Any] = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "port": free_port(),
        "flush_tick_ms": 20,
        "gap_nak_delay_s": 0.05,
        "db_down_nak_delay_s": 0.2,
        "db_wait_s": 30,
        "LOG_JSON": False,
        "RELAY_STREAM_MAX_AGE_S": 3600,  # as the tests' ``js`` fixture declares it
        **overrides,
    }
    return StatusSettings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Pipeline:
    """Publishes what ingress, the retriever and the generator would, for one answer at a time."""

    js: JetStreamContext
    offsets: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)
    seqs: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)

    async def event(self, subject: str, event: Any) -> None:
        await bus.publish_event(self.js, subject, event)

    async def request(
        self, user: str = "alice", message: str = "What does the license allow?", conversation: uuid.UUID | None = None
    ) -> ChatRequested:
        rid = uuid.uuid4()
        req = ChatRequested(
            event_id=f"{rid}:requested",
            response_id=rid,
            conversation_id=conversation or uuid.uuid4(),
            user_id=user,
            message=message,
            model="smollm2",
        )
        await self.event(contracts.subject_for_request(rid), req)
        return req

    async def retrieve(self, req: ChatRequested, passages: Sequence[Passage] = (PASSAGE,)) -> None:
        rid = req.response_id
        await self.event(
            contracts.subject_for_events(rid), RetrievalStarted(event_id=f"{rid}:retrieval-started", response_id=rid)
        )
        ctx = ContextRetrieved(event_id=f"{rid}:context", response_id=rid, request=req, passages=tuple(passages))
        await self.event(contracts.subject_for_context(rid), ctx)

    async def start(self, rid: uuid.UUID, attempt: int = 1) -> None:
        ev = GenerationStarted(
            event_id=f"{rid}:{attempt}:started", response_id=rid, attempt=attempt, model="m", worker="w"
        )
        await self.event(contracts.subject_for_events(rid), ev)
        ft = FirstTokenEmitted(
            event_id=f"{rid}:{attempt}:first-token", response_id=rid, attempt=attempt, model_ttft_ms=42.0
        )
        await self.event(contracts.subject_for_events(rid), ft)

    def delta_event(self, rid: uuid.UUID, text: str, attempt: int = 1) -> DeltaEmitted:
        key = (rid, attempt)
        seq, offset = self.seqs.get(key, 0), self.offsets.get(key, 0)
        self.seqs[key], self.offsets[key] = seq + 1, offset + len(text)
        return DeltaEmitted(
            event_id=f"{rid}:{attempt}:delta:{seq}", response_id=rid, attempt=attempt, seq=seq, offset=offset, text=text
        )

    async def deltas(self, rid: uuid.UUID, pieces: Sequence[str], attempt: int = 1) -> None:
        for text in pieces:
            await self.event(contracts.subject_for_events(rid), self.delta_event(rid, text, attempt))

    async def complete(
        self, rid: uuid.UUID, attempt: int = 1, finish: FinishReason = FinishReason.STOP, text_length: int | None = None
    ) -> None:
        length = self.offsets.get((rid, attempt), 0) if text_length is None else text_length
        ev = ResponseCompleted(
            event_id=f"{rid}:{attempt}:completed",
            response_id=rid,
            attempt=attempt,
            finish_reason=finish,
            usage=Usage(prompt_tokens=30, completion_tokens=7, total_tokens=37),
            model="m",
            model_ttft_ms=42.0,
            total_ms=1234.0,
            text_length=length,
            delta_count=self.seqs.get((rid, attempt), 0),
        )
        await self.event(contracts.subject_for_events(rid), ev)

    async def fail(self, rid: uuid.UUID, code: FailureCode, message: str, attempt: int = 1) -> None:
        ev = ResponseFailed(
            event_id=f"{rid}:{attempt}:failed", response_id=rid, attempt=attempt, code=code, message=message
        )
        await self.event(contracts.subject_for_events(rid), ev)

    async def cancel(self, rid: uuid.UUID, user: str = "alice") -> None:
        ev = CancelRequested(event_id=f"{rid}:cancel", response_id=rid, user_id=user)
        await self.event(contracts.subject_for_cancel(rid), ev)

    async def answer(self, pieces: Sequence[str], **request: Any) -> ChatRequested:
        """A whole answer, completed."""
        req = await self.request(**request)
        await self.retrieve(req)
        await self.start(req.response_id)
        await self.deltas(req.response_id, pieces)
        await self.complete(req.response_id)
        return req
