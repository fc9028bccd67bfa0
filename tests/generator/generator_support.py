"""Helpers of the generator tests: settings for a replica, a running replica, an event recorder, requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.contracts import (
    ChatRequested,
    ContextRetrieved,
    DeltaEmitted,
    Event,
    Passage,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
)
from services.devstack.scripted_provider import ScriptedProvider
from services.generator.app import GeneratorApp
from services.generator.settings import GeneratorSettings

TERMINAL = (ResponseCompleted, ResponseFailed, ResponseCancelled)


def generator_settings(nats_url: str, provider: ScriptedProvider, **overrides: Any) -> GeneratorSettings:
    values: dict[str, Any] = {
        "NATS_URL": nats_url,
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": None,
        "OPENAI_MODEL": "scripted",
        "port": 0,
        "flush_ms": 20,
        "retry_delay_s": 0.2,
        "history_attempts": 1,
        "history_timeout_s": 0.5,
        "provider_max_retries": 0,
        "fetch_timeout_s": 0.5,
        "RELAY_STREAM_MAX_AGE_S": 3600,
    }
    values.update(overrides)
    return GeneratorSettings(_env_file=None, **values)  # type: ignore[call-arg]


class Replica:
    """One generator replica running in this test's event loop."""

    def __init__(self, app: GeneratorApp) -> None:
        self.app = app
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(app.run(self.stop_event))

    async def ready(self, timeout: float = 10.0) -> Replica:
        deadline = time.monotonic() + timeout
        while self.app.handler is None:
            if self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, "generator did not start"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the pull subscription and cancel subscription are bound right after
        return self

    async def stop(self, timeout: float = 60.0) -> None:
        """Graceful: what SIGTERM does."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, timeout)

    async def crash(self) -> None:
        """Die mid-work: no ack, no nak, no terminal event."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Recorder:
    """Every event on ``relay.events.*``, in stream order (an ordered push consumer)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def of(self, rid: uuid.UUID) -> list[Event]:
        return [e for e in self.events if e.response_id == rid]

    def terminal(self, rid: uuid.UUID) -> list[Event]:
        return [e for e in self.of(rid) if isinstance(e, TERMINAL)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                tail = [e.event_id for e in self.events[-8:]]
                raise AssertionError(f"condition not met in {timeout} s; {len(self.events)} events, the last: {tail}")
            await asyncio.sleep(0.02)

    async def until_terminal(self, rid: uuid.UUID, timeout: float = 20.0) -> Event:
        await self.until(lambda: bool(self.terminal(rid)), timeout)
        return self.terminal(rid)[0]


PASSAGES = (
    Passage(
        text="Copyleft requires derived works to keep the licence.",
        source="GPL-3.txt",
        position=3,
        heading="Preamble",
        score=0.9,
    ),
    Passage(text="Permissive licences allow closed derivatives.", source="MIT.txt", position=0, score=0.4),
)


def context_event(
    message: str = "What is copyleft?", *, model: str = "scripted", user_id: str = "alice"
) -> ContextRetrieved:
    rid = uuid.uuid4()
    request = ChatRequested(
        event_id=f"{rid}:requested",
        response_id=rid,
        conversation_id=uuid.uuid4(),
        user_id=user_id,
        message=message,
        model=model,
    )
    return ContextRetrieved(event_id=f"{rid}:context", response_id=rid, request=request, passages=PASSAGES)


async def submit(js: JetStreamContext, message: str = "What is copyleft?", **kwargs: Any) -> ContextRetrieved:
    event = context_event(message, **kwargs)
    await bus.publish_event(js, contracts.subject_for_context(event.response_id), event)
    return event


def deltas_of(events: list[Event], attempt: int) -> list[DeltaEmitted]:
    return sorted((e for e in events if isinstance(e, DeltaEmitted) and e.attempt == attempt), key=lambda d: d.seq)


def text_of(events: list[Event], attempt: int = 1) -> str:
    """The attempt's text from its deltas, checking they are contiguous (seq 0.., offsets add up)."""
    deltas = deltas_of(events, attempt)
    offset = 0
    for i, d in enumerate(deltas):
        assert d.seq == i, f"delta seq gap at {i}: {[x.seq for x in deltas]}"
        assert d.offset == offset, f"delta {i} offset {d.offset} != {offset}"
        offset += len(d.text)
    return "".join(d.text for d in deltas)


async def consumer_info(js: JetStreamContext, *, settle_s: float = 10.0) -> Any:
    """The generator consumer's info once nothing is pending an ack (the ack follows the terminal event)."""
    deadline = time.monotonic() + settle_s
    info = await js.consumer_info(contracts.STREAM, "generator")
    while info.num_ack_pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        info = await js.consumer_info(contracts.STREAM, "generator")
    return info
