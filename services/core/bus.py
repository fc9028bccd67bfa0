"""JetStream helpers shared by every service: connect, declare the topology, publish, consume.

Exceptions: ``TopologyDriftError`` (stored consumer differs from the code and may not be updated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, PubAck, StreamConfig
from nats.js.errors import NotFoundError

from services.core import contracts, metrics
from services.core.contracts import Event

__all__ = [
    "Header",
    "TopologyDriftError",
    "connect",
    "ensure_stream",
    "ensure_consumer",
    "publish_event",
    "last_event_on",
    "keep_in_progress",
    "fetch_ready",
    "fetch_batches",
]

log = logging.getLogger(__name__)


class Header(StrEnum):
    MSG_ID = "Nats-Msg-Id"
    EVENT_TYPE = "Relay-Event"


class TopologyDriftError(RuntimeError):
    """The server holds a stream/consumer whose config differs from what the code declares."""


async def connect(url: str, *, name: str, connect_timeout: float = 5.0, buffer_while_reconnecting: bool = True) -> NATS:
    """Connect with unlimited reconnects (a NATS restart must not kill a service).

    ``buffer_while_reconnecting=False``: a publish while disconnected raises ``OutboundBufferLimitError`` at
    once instead of being queued and sent after the reconnect (ingress: a 503 must mean "not published").
    """

    async def _on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def _on_disconnected() -> None:
        log.warning("nats disconnected")

    async def _on_reconnected() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        error_cb=_on_error,
        disconnected_cb=_on_disconnected,
        reconnected_cb=_on_reconnected,
        **({} if buffer_while_reconnecting else {"pending_size": 0}),
    )


_STREAM_FIELDS = ("subjects", "retention", "storage", "max_age", "duplicate_window", "discard")
_CONSUMER_FIELDS = ("filter_subject", "ack_policy", "ack_wait", "max_deliver", "max_ack_pending", "deliver_policy")


def _diff(stored: Any, wanted: Any, fields: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    out = {}
    for f in fields:
        a, b = getattr(stored, f), getattr(wanted, f)
        if isinstance(a, list) and isinstance(b, list):
            a, b = sorted(a), sorted(b)
        if isinstance(a, float) or isinstance(b, float):
            if a is not None and b is not None and abs(float(a) - float(b)) < 1e-3:
                continue
        if a != b:
            out[f] = (a, b)
    return out


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it when its stored config drifted (streams are editable)."""
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", config.name)
        return
    drift = _diff(info.config, config, _STREAM_FIELDS)
    if drift:
        log.warning("stream %s drifted, updating: %s", config.name, drift)
        await js.update_stream(config)


async def ensure_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig, *, update_on_drift: bool = True
) -> None:
    """Create the durable consumer; on config drift update it explicitly or fail saying what differs."""
    name = config.durable_name or ""
    config = config.evolve(name=name)
    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        await js.add_consumer(stream, config)
        log.info("created consumer %s on %s", name, stream)
        return
    drift = _diff(info.config, config, _CONSUMER_FIELDS)
    if not drift:
        return
    if not update_on_drift:
        raise TopologyDriftError(
            f"consumer {name!r} on stream {stream!r} differs from the code: "
            + ", ".join(f"{k}: stored {a!r}, code {b!r}" for k, (a, b) in drift.items())
            + " (set update_on_drift or delete the consumer)"
        )
    log.warning("consumer %s drifted, updating: %s", name, drift)
    try:
        await js.add_consumer(stream, config)
    except Exception as exc:  # the server refuses non-editable changes (e.g. ack policy)
        raise TopologyDriftError(
            f"consumer {name!r} on {stream!r} cannot be updated to the code's config: {exc}"
        ) from exc


async def publish_event(js: JetStreamContext, subject: str, event: Event, *, timeout: float = 5.0) -> PubAck:
    """Publish and wait for JetStream's acknowledgement; ``Nats-Msg-Id`` is the event id.

    The returned ack says ``duplicate=True`` when JetStream dropped it as a copy of an earlier publish.
    """
    ack = await js.publish(
        subject,
        event.model_dump_json().encode(),
        timeout=timeout,
        headers={Header.MSG_ID: event.event_id, Header.EVENT_TYPE: event.type},
    )
    metrics.EVENTS_PUBLISHED.labels(subject=_subject_family(subject)).inc()
    return ack


async def last_event_on(js: JetStreamContext, subject: str) -> Event | None:
    """The last event stored on a subject (direct get), or None when there is none."""
    try:
        raw = await js.get_last_msg(contracts.STREAM, subject, direct=True)
    except NotFoundError:
        return None
    if not raw.data:
        return None
    return contracts.decode_event(raw.data)


def _subject_family(subject: str) -> str:
    """``relay.events.<id>`` → ``relay.events``: metric labels must not carry ids."""
    parts = subject.split(".")
    return ".".join(parts[:-1]) if len(parts) > 2 else subject


@contextlib.asynccontextmanager
async def keep_in_progress(msg: Msg, every_s: float) -> AsyncIterator[None]:
    """Tell JetStream the message is still being worked on, so AckWait never hands it to another worker."""

    async def _beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(_beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class PullConsumer:
    """A bound pull subscription on a durable consumer."""

    sub: JetStreamContext.PullSubscription
    stream: str
    durable: str


async def bind(js: JetStreamContext, stream: str, durable: str) -> PullConsumer:
    sub = await js.pull_subscribe_bind(durable, stream=stream)
    return PullConsumer(sub=sub, stream=stream, durable=durable)


async def fetch_ready(sub: JetStreamContext.PullSubscription, batch: int, *, timeout: float) -> list[Msg]:
    """Wait up to ``timeout`` for the first message, then take only what is already there.

    nats-py's ``fetch(n)`` with n > 1 keeps a lingering pull open until n messages arrived or the
    timeout ran out, so a lone message could sit in the client for the whole timeout.
    """
    try:
        first = await sub.fetch(1, timeout=timeout)
    except (TimeoutError, NatsTimeoutError):
        return []
    if batch <= 1:
        return first
    try:
        return first + await sub.fetch(batch - 1, timeout=0.01)
    except (TimeoutError, NatsTimeoutError):
        return first


async def fetch_batches(
    consumer: PullConsumer,
    *,
    batch: int,
    timeout: float,
    stop: asyncio.Event,
    on_batch: Callable[[list[Msg]], Awaitable[None]],
) -> None:
    """Fetch until ``stop`` is set, handing each non-empty batch to ``on_batch``. Survives reconnects."""
    while not stop.is_set():
        try:
            msgs = await fetch_ready(consumer.sub, batch, timeout=timeout)
        except Exception as exc:  # disconnected, consumer briefly gone during a restart...
            if stop.is_set():
                break
            log.warning("fetch from %s failed: %s; retrying", consumer.durable, exc)
            await asyncio.sleep(0.5)
            continue
        if not msgs:
            continue
        for m in msgs:
            metrics.EVENTS_CONSUMED.labels(subject=_subject_family(m.subject), consumer=consumer.durable).inc()
        await on_batch(msgs)
