"""Ingress's two commands: accept a question, request a cancel. Decide, publish, wait for the ack.

Both take their dependencies as parameters (the request log, the policy), so they read the same
whether called from a route or a test.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from prometheus_client import Counter

from services.core import logs
from services.core.contracts import (
    CancelRequested,
    ChatRequested,
    Event,
    FinishReason,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
    RetrievalStarted,
    subject_for_cancel,
    subject_for_events,
    subject_for_request,
)
from services.core.views import CancelAccepted, ChatAccepted, ChatRequest, ResponseStatus
from services.ingress.admission import Rejection, check_message, derive_response_id, resolve_model, same_request
from services.ingress.jetstream import RequestLog
from services.ingress.settings import IngressSettings

__all__ = ["Policy", "submit_chat", "cancel_response", "SUBMISSIONS", "CANCELS"]

log = logging.getLogger(__name__)

SUBMISSIONS = Counter("relay_ingress_submissions_total", "POST /api/chat by outcome", ["outcome"])
CANCELS = Counter("relay_ingress_cancels_total", "POST /api/response/{id}/cancel by outcome", ["outcome"])


@dataclass(frozen=True)
class Policy:
    """The part of the settings the commands need."""

    max_message_chars: int
    allowed_models: tuple[str, ...]
    default_model: str
    id_secret: bytes
    base_url: str = ""
    status_base_url: str = ""

    @classmethod
    def from_settings(cls, settings: IngressSettings) -> Policy:
        return cls(
            max_message_chars=settings.max_message_chars,
            allowed_models=settings.allowed_model_list,
            default_model=settings.default_model,
            id_secret=settings.id_secret.get_secret_value().encode(),
            base_url=settings.public_base_url.rstrip("/"),
            status_base_url=(settings.status_base_url or settings.public_base_url).rstrip("/"),
        )

    def accepted(self, response_id: uuid.UUID, conversation_id: uuid.UUID) -> ChatAccepted:
        path = f"/api/response/{response_id}"
        return ChatAccepted(
            response_id=response_id,
            conversation_id=conversation_id,
            status=ResponseStatus.QUEUED,
            poll_url=f"{self.status_base_url}{path}",
            final_url=f"{self.status_base_url}{path}/final",
            cancel_url=f"{self.base_url}{path}/cancel",
        )


def _replay(
    stored: Event, *, key: str, message: str, model: str, conversation_id: uuid.UUID | None, policy: Policy
) -> ChatAccepted:
    if not isinstance(stored, ChatRequested):  # cannot happen on relay.requests.*; refuse rather than guess
        raise Rejection(409, "idempotency_key_reused", f"Idempotency-Key {key!r} belongs to another request")
    differs = same_request(stored, message=message, model=model, conversation_id=conversation_id)
    if differs:
        SUBMISSIONS.labels("conflict").inc()
        raise Rejection(
            409,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was already used for another request ({differs}); use a new key for a new question",
        )
    SUBMISSIONS.labels("replayed").inc()
    return policy.accepted(stored.response_id, stored.conversation_id)


async def submit_chat(
    body: ChatRequest, *, user_id: str, idempotency_key: str | None, requests: RequestLog, policy: Policy
) -> ChatAccepted:
    """Validate, publish ``ChatRequested`` and return once JetStream holds it.

    With an idempotency key the response id is derived from (user, key): a repeat finds the stored
    request and answers the same, and two racing copies are collapsed by JetStream's de-duplication.
    """
    try:
        message = check_message(body.message, max_chars=policy.max_message_chars)
        model = resolve_model(body.model, allowed=policy.allowed_models, default=policy.default_model)
    except Rejection:
        SUBMISSIONS.labels("rejected").inc()
        raise
    key = idempotency_key
    response_id = derive_response_id(policy.id_secret, user_id, key) if key else uuid.uuid4()
    subject = subject_for_request(response_id)
    with logs.bound(response_id=response_id, user_id=user_id):
        if key:
            stored = await requests.last_event(subject)
            if stored is not None:
                log.info("idempotent repeat of an accepted request")
                return _replay(
                    stored, key=key, message=message, model=model, conversation_id=body.conversation_id, policy=policy
                )
        event = ChatRequested(
            event_id=f"{response_id}:requested",
            response_id=response_id,
            conversation_id=body.conversation_id or uuid.uuid4(),
            user_id=user_id,
            message=message,
            model=model,
            idempotency_key=key,
        )
        if not await requests.publish(subject, event):
            # A copy with the same key got there first: answer with what JetStream kept.
            stored = await requests.last_event(subject)
            if key and stored is not None:
                return _replay(
                    stored, key=key, message=message, model=model, conversation_id=body.conversation_id, policy=policy
                )
        SUBMISSIONS.labels("accepted").inc()
        log.info("accepted question of %d characters for model %s", len(message), model)
        return policy.accepted(response_id, event.conversation_id)


def _ended(last: Event | None) -> tuple[ResponseStatus, str] | None:
    """The terminal state the last lifecycle event shows, with what to tell the caller; None while running."""
    if isinstance(last, ResponseCancelled):
        return ResponseStatus.CANCELLED, "the answer was already cancelled"
    if isinstance(last, ResponseFailed):
        return ResponseStatus.FAILED, "the answer had already failed"
    if isinstance(last, ResponseCompleted):
        if last.finish_reason == FinishReason.LENGTH:
            return ResponseStatus.TRUNCATED, "the answer had already completed (truncated at the model's length limit)"
        if last.finish_reason == FinishReason.CONTENT_FILTER:
            return ResponseStatus.CONTENT_FILTERED, "the answer had already ended (stopped by the content filter)"
        if last.text_length == 0:
            return ResponseStatus.FAILED, "the answer had already failed"
        return ResponseStatus.COMPLETED, "the answer had already completed"
    return None


def _running(last: Event | None) -> ResponseStatus:
    if last is None:
        return ResponseStatus.QUEUED
    if isinstance(last, RetrievalStarted):
        return ResponseStatus.RETRIEVING
    return ResponseStatus.GENERATING


async def cancel_response(response_id: uuid.UUID, *, user_id: str, requests: RequestLog) -> CancelAccepted:
    """Publish ``CancelRequested`` once per response; say so plainly when the answer had already ended."""
    with logs.bound(response_id=response_id, user_id=user_id):
        request = await requests.last_event(subject_for_request(response_id))
        if not isinstance(request, ChatRequested) or request.user_id != user_id:
            CANCELS.labels("not_found").inc()
            raise Rejection(404, "not_found", f"no response {response_id}")
        last = await requests.last_event(subject_for_events(response_id))
        ended = _ended(last)
        if ended is not None:
            CANCELS.labels("already_ended").inc()
            status, message = ended
            return CancelAccepted(
                response_id=response_id, status=status, cancelled=status == ResponseStatus.CANCELLED, message=message
            )
        subject = subject_for_cancel(response_id)
        if await requests.last_event(subject) is not None:
            CANCELS.labels("repeated").inc()
            message = "cancel already requested"
        else:
            event = CancelRequested(event_id=f"{response_id}:cancel", response_id=response_id, user_id=user_id)
            await requests.publish(subject, event)
            CANCELS.labels("requested").inc()
            log.info("cancel requested")
            message = "cancel requested"
        return CancelAccepted(response_id=response_id, status=_running(last), cancelled=True, message=message)
