"""The generator's consumer loop: fetch only into free slots, fan cancels out, drain on stop.

A replica never holds more ContextRetrieved messages than it has free slots
(``GENERATOR_CONCURRENCY``), so the rest stay in JetStream for other replicas. Every replica
subscribes (core NATS, no queue group) to ``relay.control.cancel.*``; the one streaming the answer
stops it. On stop: no new fetches, running answers get ``GENERATOR_DRAIN_S`` to finish, the rest
are handed back (nak) for another replica. Cancelling ``run()`` itself is a crash: nothing is acked
or nak'ed, JetStream redelivers after AckWait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.core import bus, contracts, metrics
from services.generator.handlers import AnswerHandler
from services.generator.settings import GeneratorSettings

__all__ = ["GeneratorConsumer", "DURABLE"]

log = logging.getLogger(__name__)

DURABLE = "generator"


class GeneratorConsumer:
    def __init__(self, *, nc: NATS, js: JetStreamContext, handler: AnswerHandler, settings: GeneratorSettings) -> None:
        self.nc, self.js, self.handler, self.settings = nc, js, handler, settings
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.js.pull_subscribe_bind(DURABLE, stream=contracts.STREAM)
        cancels = await self.nc.subscribe(f"{contracts.CANCEL}.*", cb=self.handler.on_cancel)
        try:
            await self._fetch_until(stop, sub)
            await self._drain()
        finally:
            for task in self.tasks:  # only left on a crash: the answers stop without ack or nak
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await cancels.unsubscribe()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _fetch_until(self, stop: asyncio.Event, sub: JetStreamContext.PullSubscription) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                free = self.settings.concurrency - len(self.tasks)
                if free <= 0:
                    await asyncio.wait({stopping, *self.tasks}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await bus.fetch_ready(sub, free, timeout=self.settings.fetch_timeout_s)
                except Exception as exc:  # disconnected, consumer briefly gone during a NATS restart...
                    if stop.is_set():
                        break
                    log.warning("fetch failed: %s; retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    metrics.EVENTS_CONSUMED.labels(subject=contracts.CONTEXT, consumer=DURABLE).inc()
                    task = asyncio.create_task(self.handler.handle(msg))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            stopping.cancel()

    async def _drain(self) -> None:
        if not self.tasks:
            return
        log.info("stopping: %d answers running, waiting up to %g s for them", len(self.tasks), self.settings.drain_s)
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.settings.drain_s)
        if pending:
            log.warning("handing %d unfinished answers back to JetStream", len(pending))
            self.handler.hand_back_all()
            await asyncio.wait(pending, timeout=15)
