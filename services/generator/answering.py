"""One attempt of one answer: the provider stream, read in a task of its own, turned into ordered events.

The reader task puts pieces into the job's inbox; the writer (``stream_answer``) takes them in order,
publishes ``FirstTokenEmitted`` and coalesced ``DeltaEmitted`` events (each acknowledged by JetStream
before the next), and returns an :class:`Outcome` for the handler to end the answer with.
``Job.stop()`` cancels the reader at once — which closes the HTTP stream, so the provider sees the
disconnect — and wakes the writer, which publishes what it already has and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.contracts import DeltaEmitted, Event, FailureCode, FirstTokenEmitted, Usage
from services.core.errors import PermanentError, RelayError
from services.core.metrics import MODEL_TTFT
from services.generator.openai_chat import ChatModel, FinishPiece, TextPiece, UsagePiece
from services.generator.streaming import Coalescer, Delta

__all__ = ["StopReason", "Job", "Outcome", "Publisher", "PublishFailed", "stream_answer"]

log = logging.getLogger(__name__)


class StopReason(StrEnum):
    CANCEL = "cancelled"  # the user cancelled: end the answer as cancelled
    HAND_BACK = "handed_back"  # shutting down: nak so another replica takes it


class _End:
    """The provider's stream ended normally."""


@dataclass(eq=False)
class Job:
    """An answer this replica is streaming; ``stop()`` closes the provider stream at once."""

    response_id: uuid.UUID
    attempt: int
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    stopped: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        if self.stopped is None:
            self.stopped = reason
            if self.reader is not None:
                self.reader.cancel()
            self.inbox.put_nowait(reason)


@dataclass
class Outcome:
    """How the provider stream of one attempt ended, and what was published of it."""

    finish: FinishPiece | None = None
    usage: Usage | None = None
    error: RelayError | None = None
    stopped: StopReason | None = None
    ttft_ms: float | None = None
    total_ms: float = 0.0
    text_length: int = 0  # code points published as deltas
    delta_count: int = 0


class PublishFailed(RuntimeError):
    """JetStream did not acknowledge an event after every retry."""


@dataclass
class Publisher:
    """Publish an event on its response's subject and wait for JetStream's ack, retrying a NATS hiccup."""

    js: JetStreamContext
    timeout_s: float = 5.0
    attempts: int = 6

    async def __call__(self, event: Event) -> None:
        subject = contracts.subject_for_events(event.response_id)
        last: Exception | None = None
        for i in range(self.attempts):
            try:
                await bus.publish_event(self.js, subject, event, timeout=self.timeout_s)
                return
            except Exception as exc:  # timeouts, no responders during a NATS restart...
                last = exc
                await asyncio.sleep(min(0.1 * 2**i, 2.0))
        raise PublishFailed(f"JetStream did not take {event.event_id}: {last!r}")


async def stream_answer(
    job: Job,
    model: ChatModel,
    messages: list[dict[str, str]],
    *,
    model_name: str,
    publish: Publisher,
    flush_ms: float,
    flush_chars: int,
) -> Outcome:
    """Stream one attempt; raises PublishFailed when JetStream cannot take its events."""
    out = Outcome()
    if job.stopped is not None:  # cancelled while the prompt was being built
        out.stopped = job.stopped
        return out
    coalescer = Coalescer(flush_ms=flush_ms, flush_chars=flush_chars)
    started = time.monotonic()

    async def emit(delta: Delta | None) -> None:
        if delta is not None:
            await publish(
                DeltaEmitted(
                    event_id=f"{job.response_id}:{job.attempt}:delta:{delta.seq}",
                    response_id=job.response_id,
                    attempt=job.attempt,
                    seq=delta.seq,
                    offset=delta.offset,
                    text=delta.text,
                )
            )

    job.reader = asyncio.create_task(_read(job, model, messages, model_name))
    try:
        while True:
            due = coalescer.due_at()
            try:
                wait = None if due is None else max(0.0, due - time.monotonic())
                item = await asyncio.wait_for(job.inbox.get(), wait)
            except TimeoutError:
                await emit(coalescer.flush())
                continue
            if isinstance(item, TextPiece):
                if out.ttft_ms is None:
                    out.ttft_ms = (time.monotonic() - started) * 1000
                    MODEL_TTFT.observe(out.ttft_ms / 1000)
                    await publish(
                        FirstTokenEmitted(
                            event_id=f"{job.response_id}:{job.attempt}:first-token",
                            response_id=job.response_id,
                            attempt=job.attempt,
                            model_ttft_ms=out.ttft_ms,
                        )
                    )
                await emit(coalescer.add(item.text))
            elif isinstance(item, FinishPiece):
                out.finish = item
            elif isinstance(item, UsagePiece):
                out.usage = item.usage
            elif isinstance(item, StopReason):
                out.stopped = item
                break
            elif isinstance(item, RelayError):
                out.error = item
                break
            elif isinstance(item, _End):
                break
    finally:
        if not job.reader.cancelling():  # a second cancel would interrupt the HTTP stream's close
            job.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job.reader
    if out.stopped is not StopReason.HAND_BACK:
        await emit(coalescer.flush())  # text the provider already sent is kept
    out.total_ms = (time.monotonic() - started) * 1000
    out.text_length, out.delta_count = coalescer.emitted_chars, coalescer.seq
    return out


async def _read(job: Job, model: ChatModel, messages: list[dict[str, str]], model_name: str) -> None:
    """Read the provider stream into the job's inbox (cancelling this task closes the HTTP stream)."""
    pieces = model.stream(messages, model=model_name)
    try:
        async for piece in pieces:
            job.inbox.put_nowait(piece)
        job.inbox.put_nowait(_End())
    except RelayError as exc:
        job.inbox.put_nowait(exc)
    except Exception as exc:
        log.exception("the model adapter failed")
        job.inbox.put_nowait(
            PermanentError(f"The answer failed inside the generator: {exc}", code=FailureCode.INTERNAL)
        )
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()
