"""One ContextRetrieved → one answer: decode, stream, publish the events in order, then ack (or nak).

Ack policy (explicit): ``ack_sync`` only after the terminal event (completed | failed | cancelled) is
acknowledged by JetStream. A transient provider failure before any text naks with back-off (a new
attempt) unless this is the last delivery; a failure after text ends the answer as failed, keeping the
partial text. A handed-back answer (shutdown) naks at once. A poison message is terminated.
In-progress acks run for the whole answer so AckWait never hands a live answer to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter
from pydantic import ValidationError

from services.core import bus, contracts, logs
from services.core.contracts import (
    ContextRetrieved,
    Event,
    FailureCode,
    GenerationStarted,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
)
from services.core.errors import PermanentError, TransientError
from services.core.metrics import FAILURES, IN_FLIGHT, TOTAL_TIME
from services.generator.answering import Job, Outcome, Publisher, PublishFailed, StopReason, stream_answer
from services.generator.history import HistorySource
from services.generator.openai_chat import ChatModel
from services.generator.prompting import PromptLimits, build_messages
from services.generator.settings import GeneratorSettings

__all__ = ["AnswerHandler", "PROVIDER_CALLS"]

log = logging.getLogger(__name__)

PROVIDER_CALLS = Counter("relay_provider_calls_total", "Streaming calls to the model provider, by outcome", ["outcome"])


class AnswerHandler:
    def __init__(
        self, *, js: JetStreamContext, model: ChatModel, history: HistorySource, settings: GeneratorSettings
    ) -> None:
        self.js, self.model, self.history, self.settings = js, model, history, settings
        self.publish = Publisher(js, timeout_s=settings.publish_timeout_s, attempts=settings.publish_attempts)
        self.limits = PromptLimits(settings.max_passage_chars, settings.max_history_turns, settings.max_turn_chars)
        self.running: dict[uuid.UUID, set[Job]] = {}

    # --- control -------------------------------------------------------------------------------

    async def on_cancel(self, msg: Msg) -> None:
        """Core NATS callback for ``relay.control.cancel.*``: stop the answer if this replica runs it."""
        try:
            rid = uuid.UUID(msg.subject.rsplit(".", 1)[-1])
        except ValueError:
            return
        for job in list(self.running.get(rid, ())):
            with logs.bound(response_id=rid, attempt=job.attempt):
                log.info("cancel requested: closing the provider stream")
            job.stop(StopReason.CANCEL)

    def hand_back_all(self) -> None:
        for jobs in list(self.running.values()):
            for job in list(jobs):
                job.stop(StopReason.HAND_BACK)

    # --- one message ---------------------------------------------------------------------------

    async def handle(self, msg: Msg) -> None:
        try:
            event = contracts.decode_event(msg.data)
        except ValidationError as exc:
            log.error("terminating an unreadable message on %s: %s", msg.subject, str(exc).splitlines()[0])
            await msg.term()
            return
        if not isinstance(event, ContextRetrieved):
            log.error("terminating a %s on %s: the generator only takes context.retrieved", event.type, msg.subject)
            await msg.term()
            return
        job = Job(event.response_id, msg.metadata.num_delivered or 1)
        self.running.setdefault(job.response_id, set()).add(job)
        IN_FLIGHT.inc()
        try:
            with logs.bound(response_id=job.response_id, attempt=job.attempt):
                async with bus.keep_in_progress(msg, self.settings.ack_wait_s / 3):
                    try:
                        await self._answer(msg, event, job)
                    except Exception:
                        log.exception("the answer broke inside the generator; handing the request back")
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=self.settings.retry_delay_s)
        finally:
            IN_FLIGHT.dec()
            jobs = self.running.get(job.response_id, set())
            jobs.discard(job)
            if not jobs:
                self.running.pop(job.response_id, None)

    async def _answer(self, msg: Msg, event: ContextRetrieved, job: Job) -> None:
        rid, attempt, req = job.response_id, job.attempt, event.request
        if await self._cancel_requested(rid):
            log.info("cancelled before generation started; not calling the model")
            await self._ack(msg)
            return
        model = req.model or self.settings.openai_model
        try:
            await self.publish(
                GenerationStarted(
                    event_id=f"{rid}:{attempt}:started",
                    response_id=rid,
                    attempt=attempt,
                    model=model,
                    worker=self.settings.worker_id,
                )
            )
            turns = await self.history.turns(
                conversation_id=req.conversation_id,
                user_id=req.user_id,
                before_response_id=rid,
                limit=self.settings.max_history_turns,
            )
            prompt = build_messages(req.message, event.passages, turns, self.limits)
            outcome = await stream_answer(
                job,
                self.model,
                prompt.messages,
                model_name=model,
                publish=self.publish,
                flush_ms=self.settings.flush_ms,
                flush_chars=self.settings.flush_chars,
            )
            terminal = self._terminal(job, outcome, model)
            if terminal is None:
                await self._nak(msg, job, outcome)
                return
            await self.publish(terminal)
        except PublishFailed as exc:
            log.error("handing the request back: %s", exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.settings.retry_delay_s)
            return
        await self._ack(msg)

    async def _cancel_requested(self, rid: uuid.UUID) -> bool:
        try:
            last = await bus.last_event_on(self.js, contracts.subject_for_cancel(rid))
        except Exception as exc:  # cannot tell: generate; a cancel arriving now still reaches on_cancel
            log.warning("could not look up a cancel: %s", exc)
            return False
        return isinstance(last, contracts.CancelRequested)

    # --- the end -------------------------------------------------------------------------------

    def _terminal(self, job: Job, out: Outcome, model: str) -> Event | None:
        """The terminal event for this attempt, or None to hand the message back (nak)."""
        rid, attempt = job.response_id, job.attempt
        last_delivery = attempt >= self.settings.max_deliver
        err = out.error
        if out.stopped is StopReason.HAND_BACK:
            PROVIDER_CALLS.labels("handed_back").inc()
            if not last_delivery:
                return None
            err = PermanentError(
                "The generator was stopped while answering and this answer has no delivery left to resume it.",
                code=FailureCode.DELIVERY_EXHAUSTED,
            )
        elif out.stopped is StopReason.CANCEL:
            PROVIDER_CALLS.labels("cancelled").inc()
            return ResponseCancelled(
                event_id=f"{rid}:{attempt}:cancelled", response_id=rid, attempt=attempt, text_length=out.text_length
            )
        elif isinstance(err, TransientError) and out.text_length == 0:
            PROVIDER_CALLS.labels("retried" if not last_delivery else err.code.value).inc()
            if not last_delivery:
                log.warning("model unavailable (%s); retrying as a new attempt", err.message)
                return None
            err = PermanentError(
                f"The model server could not be reached after {attempt} attempts: {err.message.split(';')[0]}.",
                code=FailureCode.PROVIDER_UNAVAILABLE,
            )
        elif err is not None:
            PROVIDER_CALLS.labels(err.code.value).inc()
        if err is not None:
            FAILURES.labels(cause=err.code.value).inc()
            log.warning("answer failed: %s (%s)", err.code.value, err.message)
            return ResponseFailed(
                event_id=f"{rid}:{attempt}:failed", response_id=rid, attempt=attempt, code=err.code, message=err.message,
                text_length=out.text_length,
            )  # fmt: skip
        assert out.finish is not None  # the adapter raises when the stream ends without one
        PROVIDER_CALLS.labels("completed").inc()
        TOTAL_TIME.observe(out.total_ms / 1000)
        log.info(
            "answer finished (%s): %d characters in %d deltas, first token after %s ms, %.0f ms in all",
            out.finish.raw, out.text_length, out.delta_count, "-" if out.ttft_ms is None else f"{out.ttft_ms:.0f}",
            out.total_ms,
        )  # fmt: skip
        return ResponseCompleted(
            event_id=f"{rid}:{attempt}:completed", response_id=rid, attempt=attempt, finish_reason=out.finish.reason,
            usage=out.usage, model=model, model_ttft_ms=out.ttft_ms, total_ms=out.total_ms,
            text_length=out.text_length, delta_count=out.delta_count,
        )  # fmt: skip

    async def _nak(self, msg: Msg, job: Job, out: Outcome) -> None:
        delay = 0.0 if out.stopped is StopReason.HAND_BACK else self.settings.retry_delay_s * 2 ** (job.attempt - 1)
        with contextlib.suppress(Exception):
            await msg.nak(delay=delay or None)

    async def _ack(self, msg: Msg) -> None:
        for i in range(self.settings.publish_attempts):
            try:
                await msg.ack_sync(timeout=self.settings.publish_timeout_s)
                return
            except Exception as exc:
                log.warning("ack not confirmed (%s); retrying", exc)
                await asyncio.sleep(min(0.1 * 2**i, 2.0))
        log.error("could not ack; JetStream will redeliver this request after AckWait")
