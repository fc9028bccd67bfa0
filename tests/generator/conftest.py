"""Fixtures for the generator tests: the scripted provider, generator replicas on real NATS, an event recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from generator_support import Recorder, Replica, generator_settings
from nats.js import JetStreamContext

from services.core import contracts
from services.devstack.nats import NatsServer
from services.devstack.scripted_provider import ScriptedProvider
from services.generator.app import build_app


@pytest.fixture
def provider() -> Iterator[ScriptedProvider]:
    """A scripted OpenAI-compatible server on a free port."""
    with ScriptedProvider() as p:
        yield p


@pytest.fixture
async def replicas(
    nats_server: NatsServer, js: JetStreamContext, provider: ScriptedProvider
) -> AsyncIterator[Callable[..., Any]]:
    """``await start(**settings)`` → a running, ready generator replica; all are stopped at the end."""
    started: list[Replica] = []

    async def start(**overrides: Any) -> Replica:
        replica = Replica(build_app(generator_settings(nats_server.url, provider, **overrides)))
        started.append(replica)
        return await replica.ready()

    yield start
    for r in started:
        if not r.task.done():
            await r.crash()


@pytest.fixture
async def recorder(js: JetStreamContext) -> AsyncIterator[Recorder]:
    """Records every event the generator publishes."""
    rec = Recorder()

    async def on_msg(msg: Any) -> None:
        rec.events.append(contracts.decode_event(msg.data))

    sub = await js.subscribe(f"{contracts.EVENTS}.*", cb=on_msg, ordered_consumer=True)
    yield rec
    await sub.unsubscribe()
