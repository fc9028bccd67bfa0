"""ChatRequested → RetrievalStarted + ContextRetrieved, one message at a time; the ack policy lives here.

Ack policy (explicit, per outcome):
    context published          ack (after JetStream acknowledged both publishes)
    request already cancelled  ack, publish nothing
    transient failure          nak with exponential back-off, until the last delivery
    last delivery / permanent  publish ResponseFailed(retrieval_failed, attempt 0), then term
    unreadable payload         term (and ResponseFailed when the subject names a response id)
If even the failure cannot be published (NATS down), the message is nak'ed so it comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from services.core import bus, contracts, logs, metrics
from services.core.contracts import ChatRequested, ContextRetrieved, FailureCode, ResponseFailed, RetrievalStarted
from services.core.errors import PermanentError, TransientError
from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import VectorStore
from services.retriever.retrieval import retrieve

__all__ = ["RetrieverDeps", "handle_request", "consume", "RETRIEVAL_LATENCY", "REQUESTS_PROCESSED", "REQUESTS_FAILED"]

log = logging.getLogger(__name__)

RETRIEVAL_LATENCY = Histogram(
    "relay_retrieval_seconds",
    "Question embedded and searched (retriever)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUESTS_PROCESSED = Counter(
    "relay_retriever_requests_total", "Chat requests the retriever finished, by outcome", ["outcome"]
)
REQUESTS_FAILED = Counter("relay_retriever_failures_total", "Retrieval attempts that failed, by kind", ["kind"])


@dataclass
class RetrieverDeps:
    js: JetStreamContext
    embedder: Embedder
    store: VectorStore
    top_k: int = 4
    score_threshold: float | None = None
    max_deliver: int = 5
    retry_delay_s: float = 1.0
    retry_delay_max_s: float = 15.0
    in_progress_every_s: float = 10.0  # well inside the consumer's AckWait


def _backoff(deps: RetrieverDeps, delivered: int) -> float:
    return min(deps.retry_delay_max_s, deps.retry_delay_s * 2 ** max(0, delivered - 1))


async def _fail(deps: RetrieverDeps, msg: Msg, response_id: uuid.UUID, message: str, kind: str) -> None:
    """End the answer as failed (attempt 0), then terminate the message; nak if the failure cannot be published."""
    event = ResponseFailed(
        event_id=f"{response_id}:0:failed",
        response_id=response_id,
        attempt=0,
        code=FailureCode.RETRIEVAL_FAILED,
        message=message,
    )
    try:
        await bus.publish_event(deps.js, contracts.subject_for_events(response_id), event)
    except Exception as exc:
        log.warning("could not publish the retrieval failure (%s); the request will come back", exc)
        await msg.nak(delay=deps.retry_delay_max_s)
        return
    await msg.term()
    REQUESTS_PROCESSED.labels(outcome="failed").inc()
    REQUESTS_FAILED.labels(kind=kind).inc()
    metrics.FAILURES.labels(cause=FailureCode.RETRIEVAL_FAILED.value).inc()
    log.error("retrieval failed for good: %s", message)


def _response_id_from_subject(subject: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(subject.rsplit(".", 1)[-1])
    except ValueError:
        return None


async def handle_request(msg: Msg, deps: RetrieverDeps) -> None:
    """Decode → skip if cancelled → RetrievalStarted → retrieve → ContextRetrieved → ack."""
    try:
        event = contracts.decode_event(msg.data)
        if not isinstance(event, ChatRequested):
            raise ValueError(f"expected chat.requested, got {event.type}")
    except (ValidationError, ValueError) as exc:
        rid = _response_id_from_subject(msg.subject)
        log.error("unreadable message on %s: %s", msg.subject, exc)
        if rid is None:
            await msg.term()
            REQUESTS_PROCESSED.labels(outcome="unreadable").inc()
            return
        await _fail(deps, msg, rid, "The question could not be read by the retriever.", "unreadable")
        return

    rid = event.response_id
    delivered = msg.metadata.num_delivered if msg.metadata else 1
    with logs.bound(response_id=rid, delivery=delivered):
        try:
            if await bus.last_event_on(deps.js, contracts.subject_for_cancel(rid)) is not None:
                await msg.ack()
                REQUESTS_PROCESSED.labels(outcome="cancelled").inc()
                log.info("request was cancelled before retrieval; skipped")
                return
            async with bus.keep_in_progress(msg, deps.in_progress_every_s):
                await bus.publish_event(
                    deps.js,
                    contracts.subject_for_events(rid),
                    RetrievalStarted(event_id=f"{rid}:retrieval-started", response_id=rid),
                )
                started = time.perf_counter()
                passages = await retrieve(
                    event.message,
                    embedder=deps.embedder,
                    store=deps.store,
                    top_k=deps.top_k,
                    score_threshold=deps.score_threshold,
                )
                RETRIEVAL_LATENCY.observe(time.perf_counter() - started)
                await bus.publish_event(
                    deps.js,
                    contracts.subject_for_context(rid),
                    ContextRetrieved(event_id=f"{rid}:context", response_id=rid, request=event, passages=passages),
                )
            await msg.ack()
            REQUESTS_PROCESSED.labels(outcome="retrieved").inc()
            log.info("context published: %d passages", len(passages))
        except PermanentError as exc:
            await _fail(deps, msg, rid, f"Searching the documents failed: {exc.message}", "permanent")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # TransientError and anything unexpected: retry until the last delivery
            kind = "transient" if isinstance(exc, TransientError) else "unexpected"
            reason = exc.message if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
            if delivered >= deps.max_deliver:
                await _fail(deps, msg, rid, f"Searching the documents failed after {delivered} tries: {reason}", kind)
                return
            delay = _backoff(deps, delivered)
            REQUESTS_FAILED.labels(kind=kind).inc()
            log.warning("retrieval attempt %d failed (%s); retrying in %.1f s", delivered, reason, delay)
            try:
                await msg.nak(delay=delay)
            except Exception as nak_exc:  # NATS gone: AckWait brings the message back anyway
                log.warning("could not nak: %s", nak_exc)


async def consume(
    consumer: bus.PullConsumer, deps: RetrieverDeps, *, concurrency: int, stop: asyncio.Event, batch: int = 16
) -> None:
    """Fetch and handle requests, at most ``concurrency`` at once, until ``stop``; then finish the ones in hand."""
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def _one(m: Msg) -> None:
        metrics.IN_FLIGHT.inc()
        try:
            await handle_request(m, deps)
        except Exception:  # handle_request decides every outcome; this is a bug guard
            log.exception("retriever handler crashed; the message will be redelivered")
        finally:
            metrics.IN_FLIGHT.dec()
            slots.release()

    async def on_batch(msgs: list[Msg]) -> None:
        for m in msgs:
            await slots.acquire()
            task = asyncio.create_task(_one(m))
            running.add(task)
            task.add_done_callback(running.discard)

    try:
        await bus.fetch_batches(consumer, batch=min(batch, concurrency), timeout=1.0, stop=stop, on_batch=on_batch)
    finally:
        if running:
            await asyncio.wait(running, timeout=30.0)
