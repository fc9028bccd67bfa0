"""Helpers for the retriever tests: serve the app, publish a question, wait for what the retriever wrote."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.contracts import ChatRequested, Event
from services.devstack.ports import free_port
from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import QdrantStore, VectorStore, open_qdrant_client
from services.retriever.settings import RetrieverSettings

T = TypeVar("T")
E = TypeVar("E")


def memory_store(embedder: Embedder, *, collection: str = "docs") -> QdrantStore:
    return QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=":memory:"),
        collection=collection,
        dimension=embedder.dimension,
        embedder_name=embedder.name,
    )


def retriever_settings(nats_url: str, **overrides: Any) -> RetrieverSettings:
    """Test settings: in-memory Qdrant, no seed, no embedding cache, quick retries; the ``js`` fixture's stream."""
    values: dict[str, Any] = {
        "NATS_URL": nats_url,
        "RELAY_STREAM_MAX_AGE_S": 3600,  # the same stream config as the ``js`` fixture: no drift updates
        "RELAY_DUPLICATE_WINDOW_S": 120,
        "RETRIEVER_QDRANT_PATH": ":memory:",
        "seed_dir": "",
        "embedding_cache": "",
        "retry_delay_s": 0.2,
        "retry_delay_max_s": 0.5,
        "ack_wait_s": 10.0,
        "max_deliver": 3,
    }
    values.update(overrides)
    return RetrieverSettings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` (lifespan included) on a real uvicorn server on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        if task.done():
            task.result()  # raises the start-up error
        raise TimeoutError("the retriever did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


@dataclass
class Retriever:
    url: str
    http: httpx.AsyncClient
    store: VectorStore
    settings: RetrieverSettings
    app: FastAPI


RetrieverFactory = Callable[..., contextlib.AbstractAsyncContextManager[Retriever]]


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, every: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(every)


async def ask(js: JetStreamContext, message: str) -> ChatRequested:
    """Publish a ChatRequested as ingress does."""
    rid = uuid.uuid4()
    event = ChatRequested(
        event_id=f"{rid}:requested",
        response_id=rid,
        conversation_id=uuid.uuid4(),
        user_id="tester",
        message=message,
        model="scripted",
    )
    await bus.publish_event(js, contracts.subject_for_request(rid), event)
    return event


async def last_on(js: JetStreamContext, subject: str, *, timeout: float = 30.0) -> Event:
    async def probe() -> Event | None:
        return await bus.last_event_on(js, subject)

    return await eventually(probe, timeout=timeout)


async def last_of_type(js: JetStreamContext, subject: str, kind: type[E], *, timeout: float = 30.0) -> E:
    """The last event on ``subject`` once it is a ``kind``."""

    async def probe() -> E | None:
        event = await bus.last_event_on(js, subject)
        return event if isinstance(event, kind) else None

    return await eventually(probe, timeout=timeout)


async def consumer_settled(js: JetStreamContext, *, timeout: float = 30.0) -> None:
    """Until the retriever consumer has nothing pending and nothing unacknowledged."""

    async def probe() -> bool:
        info = await js.consumer_info(contracts.STREAM, "retriever")
        return info.num_pending == 0 and info.num_ack_pending == 0 and (info.delivered.stream_seq or 0) > 0

    await eventually(probe, timeout=timeout)
