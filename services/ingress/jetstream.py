"""Ingress's adapter to JetStream: publish a request or a cancel, read what a subject already holds.

QueueUnavailable     JetStream could not be reached or did not acknowledge in time (→ 503)
NatsUnreachableError NATS did not answer during start-up, after every bounded retry
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError

from services.core import bus, contracts
from services.core.contracts import Event

__all__ = ["RequestLog", "JetStreamLog", "QueueUnavailable", "NatsUnreachableError", "connect_with_retries"]

log = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """JetStream is not there right now. ``maybe_stored``: the publish went out but no ack came back in time."""

    def __init__(self, message: str, *, maybe_stored: bool = False) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


class NatsUnreachableError(RuntimeError):
    """Start-up could not reach NATS."""


class RequestLog(Protocol):
    """What ingress needs from the durable log of requests."""

    async def last_event(self, subject: str) -> Event | None: ...

    async def publish(self, subject: str, event: Event) -> bool:
        """True when stored now; False when JetStream dropped it as a duplicate of an earlier publish."""
        ...

    async def problem(self) -> str | None:
        """None when the log is reachable, else a sentence saying what is not."""
        ...


_NATS_FAILURES = (nats.errors.Error, asyncio.TimeoutError, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return "not connected to NATS"
    if isinstance(exc, asyncio.TimeoutError):
        return "JetStream did not acknowledge in time"
    if isinstance(exc, nats.errors.NoRespondersError | NoStreamResponseError):
        return f"JetStream has no stream {contracts.STREAM} answering"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class JetStreamLog:
    """``RequestLog`` on a NATS connection; every call is bounded by ``timeout`` seconds."""

    def __init__(self, nc: NATS, *, url: str, timeout: float) -> None:
        self.nc = nc
        self.url = url
        self.timeout = timeout
        self.js: JetStreamContext = nc.jetstream(timeout=timeout)

    def _require_connection(self) -> None:
        # Fail fast: while NATS is away, nothing may be queued for a later, surprising delivery.
        if not self.nc.is_connected:
            raise QueueUnavailable("not connected to NATS")

    async def last_event(self, subject: str) -> Event | None:
        self._require_connection()
        try:
            return await asyncio.wait_for(bus.last_event_on(self.js, subject), self.timeout)
        except _NATS_FAILURES as exc:
            raise QueueUnavailable(_describe(exc)) from exc

    async def publish(self, subject: str, event: Event) -> bool:
        self._require_connection()
        try:
            ack = await bus.publish_event(self.js, subject, event, timeout=self.timeout)
        except _NATS_FAILURES as exc:
            raise QueueUnavailable(_describe(exc), maybe_stored=isinstance(exc, asyncio.TimeoutError)) from exc
        return not ack.duplicate

    async def problem(self) -> str | None:
        if not self.nc.is_connected:
            return f"not connected to NATS at {self.url} (reconnecting)"
        try:
            await asyncio.wait_for(self.js.stream_info(contracts.STREAM), self.timeout)
        except NotFoundError:
            return f"the JetStream stream {contracts.STREAM} does not exist"
        except _NATS_FAILURES as exc:
            return f"JetStream is not reachable: {_describe(exc)}"
        return None


async def connect_with_retries(url: str, *, name: str, attempts: int, attempt_timeout_s: float, wait_s: float) -> NATS:
    """Connect with bounded retries; fail with a message that says what to do."""
    started = time.monotonic()
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.wait_for(
                bus.connect(url, name=name, connect_timeout=attempt_timeout_s, buffer_while_reconnecting=False),
                attempt_timeout_s + 0.5,
            )
        except _NATS_FAILURES as exc:
            last = exc
            log.warning("cannot reach NATS at %s (attempt %d of %d): %s", url, attempt, attempts, _describe(exc))
            if attempt < attempts:
                await asyncio.sleep(wait_s)
    raise NatsUnreachableError(
        f"cannot reach NATS at {url} after {attempts} attempts in {time.monotonic() - started:.0f} s "
        f"({_describe(last) if last else 'no answer'}): start it (`relay up` runs the local stack) or set NATS_URL"
    )
