"""The status consumer loop (fetch → fold → commit → ack) and the history responder for the generator.

Ack policy, on purpose: an event is acked only after the transaction holding what it changed has
committed; a gap (folded too early) is nak'ed with a growing delay; an undecodable message is
terminated with a log line; when the database is down every message goes back (nak with delay) and
the loop keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.core import bus, contracts, logs, metrics
from services.core.contracts import Event
from services.core.errors import TransientError
from services.core.views import ResponseStatus
from services.status.fold import CONTENT_FILTER_CODE, Decision, Outcome
from services.status.settings import StatusSettings
from services.status.store import ResponseStore

__all__ = ["StatusConsumer", "HistoryRequest", "serve_history", "FOLD_LAG"]

log = logging.getLogger(__name__)

FOLD_LAG = Histogram(
    "relay_status_fold_lag_seconds",
    "Event published → its fold committed by the status service",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class StatusConsumer:
    """Pulls from the durable ``status`` consumer; one transaction per flush tick for every answer."""

    def __init__(self, store: ResponseStore, consumer: bus.PullConsumer, settings: StatusSettings) -> None:
        self.store = store
        self.consumer = consumer
        self.settings = settings
        self.caught_up = False  # the last fetch drained the consumer: nothing is waiting to be folded

    async def run(self, stop: asyncio.Event) -> None:
        log.info(
            "status consumer running (tick %d ms, batch %d)", self.settings.flush_tick_ms, self.settings.batch_size
        )
        try:
            while not stop.is_set():
                msgs = await self._collect()
                if msgs:
                    await self.flush(msgs)
        finally:
            # Messages fetched but not folded are redelivered after AckWait. Unsubscribing first also
            # keeps the connection's drain from waiting on this subscription's internal queue.
            with contextlib.suppress(Exception):
                await self.consumer.sub.unsubscribe()

    async def _collect(self) -> list[Msg]:
        """Gather what arrives within one tick (or until the batch is full).

        A pull request stays open on the server until its batch is full or it expires, so every
        fetch is bounded by the tick: an event waits at most one tick before its fold commits.
        """
        batch, sub = self.settings.batch_size, self.consumer.sub
        deadline = time.monotonic() + self.settings.flush_tick_ms / 1000
        msgs: list[Msg] = []
        while len(msgs) < batch and (remaining := deadline - time.monotonic()) > 0.002:
            try:
                msgs.extend(await sub.fetch(batch - len(msgs), timeout=remaining))
            except (NatsTimeoutError, TimeoutError):
                break
            except Exception as exc:  # disconnected, consumer briefly gone during a NATS restart…
                log.warning("fetch from the status consumer failed: %s; retrying", exc or type(exc).__name__)
                await asyncio.sleep(0.5)
                break
        self.caught_up = len(msgs) < batch
        for m in msgs:
            metrics.EVENTS_CONSUMED.labels(subject=_family(m.subject), consumer=self.consumer.durable).inc()
        return msgs

    async def flush(self, msgs: Sequence[Msg]) -> None:
        """Fold a batch in one transaction, then ack/nak/term each message by what the fold decided."""
        kept: list[tuple[Msg, Event]] = []
        for m in msgs:
            try:
                kept.append((m, contracts.decode_event(m.data)))
            except (ValidationError, ValueError) as exc:
                log.error("terminating undecodable message on %s: %s", m.subject, str(exc).splitlines()[0])
                await _settle(m.term())
        if not kept:
            return
        try:
            decisions = await self.store.fold_batch([e for _, e in kept], now=datetime.now(UTC))
        except TransientError as exc:  # database down or restarting: everything goes back, nothing is lost
            log.warning("fold of %d events not committed (%s); nak'ed for redelivery", len(kept), exc)
            delay = self.settings.db_down_nak_delay_s
            for m, _ in kept:
                await _settle(m.nak(delay=delay))
            await asyncio.sleep(delay)
            return
        except Exception:  # something in the batch the database refuses: fold one by one to find it
            if len(kept) == 1:
                m, event = kept[0]
                with logs.bound(response_id=event.response_id, event_id=event.event_id):
                    log.exception("terminating an event the store cannot fold")
                await _settle(m.term())
                return
            log.exception("fold of %d events failed; folding them one at a time", len(kept))
            for m, _ in kept:
                await self.flush([m])
            return
        committed = datetime.now(UTC)
        for (m, event), d in zip(kept, decisions, strict=True):
            if d.outcome is Outcome.GAP:
                await self._retry_later(m, event, d)
                continue
            await _settle(m.ack())
            if d.outcome is Outcome.APPLIED:
                _observe(event, d, committed)

    async def _retry_later(self, m: Msg, event: Event, d: Decision) -> None:
        delivered = m.metadata.num_delivered
        with logs.bound(response_id=event.response_id, event_id=event.event_id):
            if delivered >= self.settings.gap_max_deliveries:
                log.error("giving up on an event folded too early %d times: %s", delivered, d.reason)
                await _settle(m.term())
                return
            log.debug("gap, refold later: %s", d.reason)
            await _settle(m.nak(delay=min(self.settings.gap_nak_delay_s * delivered, 5.0)))


def _observe(event: Event, d: Decision, committed: datetime) -> None:
    FOLD_LAG.observe(max(0.0, (committed - event.occurred_at).total_seconds()))
    state = d.state
    if state is None:
        return
    if d.first_token and state.user_ttft_ms is not None:
        metrics.USER_TTFT.observe(state.user_ttft_ms / 1000)
    if d.became_terminal:
        if state.status is ResponseStatus.FAILED:
            metrics.FAILURES.labels(cause=state.error_code or "unknown").inc()
        elif state.status is ResponseStatus.CONTENT_FILTERED:
            metrics.FAILURES.labels(cause=CONTENT_FILTER_CODE).inc()
        with logs.bound(response_id=state.response_id):
            log.info("answer ended %s (attempt %d, %d characters)", state.status, state.attempt, state.text_length)


async def _settle(ack: Awaitable[None]) -> None:
    """Send an ack/nak/term; a lost one only means a redelivery, which the fold absorbs."""
    try:
        await ack
    except Exception as exc:
        log.warning("could not settle a message (%s); it will be redelivered", exc)


def _family(subject: str) -> str:
    parts = subject.split(".")
    return ".".join(parts[:-1]) if len(parts) > 2 else subject


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# --- history RPC ------------------------------------------------------------------------------


class HistoryRequest(BaseModel):
    """Request on ``contracts.HISTORY_RPC_SUBJECT``; the reply is ``{"turns": [{"question", "answer"}…]}``."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: uuid.UUID
    user_id: str
    before_response_id: uuid.UUID | None = None
    limit: int = Field(default=20, ge=0, le=200)


async def serve_history(nc: NATS, store: ResponseStore, *, max_turns: int) -> Subscription:
    """Answer history requests (queue group "status"), each in a task of its own."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        try:
            req = HistoryRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            await _reply(msg, {"error": {"code": "invalid_request", "message": str(exc).splitlines()[0]}})
            return
        try:
            turns = await store.history(
                req.conversation_id, req.user_id, req.before_response_id, min(req.limit, max_turns)
            )
        except Exception as exc:
            log.warning("history for %s unavailable: %s", req.conversation_id, _first_line(exc))
            await _reply(msg, {"error": {"code": "unavailable", "message": "conversation history is unavailable"}})
            return
        await _reply(msg, {"turns": [t.model_dump() for t in turns]})

    async def on_request(msg: Msg) -> None:
        task = asyncio.create_task(answer(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return await nc.subscribe(contracts.HISTORY_RPC_SUBJECT, queue="status", cb=on_request)


async def _reply(msg: Msg, body: dict[str, object]) -> None:
    if not msg.reply:
        return
    with contextlib.suppress(Exception):
        await msg.respond(json.dumps(body, ensure_ascii=False).encode())
