"""The status fold: ``apply(state, event) -> Decision``, pure — what one event does to one answer.

Rules (docs/DESIGN.md, "Fold rules"): states only move forward and a terminal state never changes;
applying an event twice changes nothing; events of an older attempt are ignored (fencing) and a
``GenerationStarted`` of a newer one restarts the text; a delta beyond the stored text, or a
completion claiming more text than is stored, is a gap (refold it later); an empty "stop" completion
is a failure, ``length`` and ``content_filter`` end in states of their own. Offsets count code points.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.core.contracts import (
    CancelRequested,
    ChatRequested,
    ContextRetrieved,
    DeltaEmitted,
    Event,
    FailureCode,
    FinishReason,
    FirstTokenEmitted,
    GenerationStarted,
    Passage,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
    RetrievalStarted,
    Usage,
)
from services.core.views import TERMINAL, ResponseStatus

__all__ = ["ResponseState", "Append", "Outcome", "Decision", "apply", "EMPTY_ANSWER_MESSAGE", "CONTENT_FILTER_CODE"]

EMPTY_ANSWER_MESSAGE = "the model returned an empty answer"
CONTENT_FILTER_CODE = "content_filter"
CONTENT_FILTER_MESSAGE = "the provider's content filter stopped this answer"

_RANK = {
    ResponseStatus.QUEUED: 0,
    ResponseStatus.RETRIEVING: 1,
    ResponseStatus.GENERATING: 2,
}


@dataclass(frozen=True, slots=True)
class ResponseState:
    """One answer as the read model stores it (a row of ``responses``)."""

    response_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: str
    question: str
    status: ResponseStatus
    created_at: datetime  # when ingress accepted the question
    updated_at: datetime  # when the fold last changed it
    model: str | None = None
    attempt: int = 0
    text_length: int = 0  # code points of the current attempt's text
    next_seq: int = 0  # the next delta seq expected (informational; offsets decide)
    chunk_count: int = 0  # chunk rows of the current attempt; the store numbers new rows from it
    sources: tuple[Passage, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model_ttft_ms: float | None = None
    user_ttft_ms: float | None = None
    total_ms: float | None = None
    completed_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Append:
    """Text to append to ``attempt`` at character ``offset`` (always the stored length)."""

    attempt: int
    offset: int
    text: str


class Outcome(StrEnum):
    APPLIED = "applied"  # the state changed: persist it, then ack
    DUPLICATE = "duplicate"  # already folded: ack
    IGNORED = "ignored"  # stale attempt, ended answer, foreign user: ack
    GAP = "gap"  # something it depends on is not folded yet: nak with delay, refold later


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    state: ResponseState | None  # the state after the event (unchanged unless APPLIED)
    appends: tuple[Append, ...] = ()
    reason: str = ""
    created: bool = False  # the answer (and maybe its conversation) is new
    restarted: bool = False  # a newer attempt voided the text of an older one
    first_token: bool = False  # the answer's first visible text
    became_terminal: bool = False


def _ms(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds() * 1000.0)


def _same(state: ResponseState | None, outcome: Outcome, reason: str) -> Decision:
    return Decision(outcome, state, reason=reason)


def apply(state: ResponseState | None, event: Event, *, now: datetime | None = None) -> Decision:
    """Fold ``event`` into ``state`` (None: nothing stored yet). ``now`` stamps ``updated_at``."""
    now = now or event.occurred_at
    if isinstance(event, ChatRequested):
        if state is not None:
            return _same(state, Outcome.DUPLICATE, "request already folded")
        return Decision(Outcome.APPLIED, _new(event, now), created=True)
    if state is None:
        return _same(None, Outcome.GAP, "the request is not folded yet")
    if isinstance(event, CancelRequested):
        return _cancel_requested(state, event, now)
    if isinstance(event, RetrievalStarted | ContextRetrieved):
        return _retrieval(state, event, now)
    if state.terminal:
        return _same(state, Outcome.IGNORED, f"the answer has ended ({state.status})")
    if event.attempt < state.attempt:
        return _same(state, Outcome.IGNORED, f"stale attempt {event.attempt} < {state.attempt}")
    if event.attempt > state.attempt:
        if isinstance(event, GenerationStarted):
            return _start(state, event.attempt, event.model, now)
        if isinstance(event, ResponseFailed) and not event.text_length:
            # A newer attempt failed before it emitted anything (or before its start was folded).
            started = _start(state, event.attempt, None, now)
            assert started.state is not None
            return replace(_fail(started.state, event, now), restarted=started.restarted)
        return _same(state, Outcome.GAP, f"attempt {event.attempt} has not started yet (stored {state.attempt})")
    if isinstance(event, GenerationStarted):
        if state.status is ResponseStatus.GENERATING:
            return _same(state, Outcome.DUPLICATE, "attempt already started")
        return _start(state, event.attempt, event.model, now)
    if isinstance(event, FirstTokenEmitted):
        if state.model_ttft_ms is not None:
            return _same(state, Outcome.DUPLICATE, "first token already folded")
        return Decision(Outcome.APPLIED, replace(state, model_ttft_ms=event.model_ttft_ms, updated_at=now))
    if isinstance(event, DeltaEmitted):
        return _delta(state, event, now)
    if isinstance(event, ResponseCompleted):
        return _complete(state, event, now)
    if isinstance(event, ResponseFailed):
        if event.text_length and event.text_length > state.text_length:
            return _same(
                state, Outcome.GAP, f"failure after {event.text_length} characters, {state.text_length} stored"
            )
        return _fail(state, event, now)
    if isinstance(event, ResponseCancelled):
        if event.text_length > state.text_length:
            return _same(
                state, Outcome.GAP, f"cancelled after {event.text_length} characters, {state.text_length} stored"
            )
        return _end(state, now, ResponseStatus.CANCELLED, event.occurred_at)
    return _same(state, Outcome.IGNORED, f"not an event the status fold uses: {type(event).__name__}")


def _new(event: ChatRequested, now: datetime) -> ResponseState:
    return ResponseState(
        response_id=event.response_id,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        question=event.message,
        model=event.model,
        status=ResponseStatus.QUEUED,
        created_at=event.occurred_at,
        updated_at=now,
    )


def _retrieval(state: ResponseState, event: RetrievalStarted | ContextRetrieved, now: datetime) -> Decision:
    changes: dict[str, object] = {}
    if not state.terminal and _RANK.get(state.status, 99) < _RANK[ResponseStatus.RETRIEVING]:
        changes["status"] = ResponseStatus.RETRIEVING
    # Sources are facts about the question, not a step of the state machine: they may arrive late.
    if isinstance(event, ContextRetrieved) and event.passages and not state.sources:
        changes["sources"] = tuple(event.passages)
    if not changes:
        return _same(state, Outcome.DUPLICATE, "retrieval already folded")
    return Decision(Outcome.APPLIED, replace(state, updated_at=now, **changes))  # type: ignore[arg-type]


def _start(state: ResponseState, attempt: int, model: str | None, now: datetime) -> Decision:
    """Generation under ``attempt`` began; a newer attempt voids the text of the older one."""
    new = replace(state, status=ResponseStatus.GENERATING, model=model or state.model, updated_at=now)
    if attempt == state.attempt:
        return Decision(Outcome.APPLIED, new)
    new = replace(new, attempt=attempt, text_length=0, next_seq=0, chunk_count=0, model_ttft_ms=None)
    return Decision(Outcome.APPLIED, new, restarted=state.attempt > 0)


def _delta(state: ResponseState, event: DeltaEmitted, now: datetime) -> Decision:
    end = event.offset + len(event.text)
    if end <= state.text_length:
        return _same(state, Outcome.DUPLICATE, f"delta {event.seq} already stored")
    if event.offset > state.text_length:
        return _same(state, Outcome.GAP, f"delta {event.seq} at {event.offset}, {state.text_length} stored")
    tail = event.text[state.text_length - event.offset :]
    first = state.user_ttft_ms is None
    new = replace(
        state,
        status=ResponseStatus.GENERATING,
        text_length=end,
        next_seq=max(state.next_seq, event.seq + 1),
        user_ttft_ms=_ms(now, state.created_at) if first else state.user_ttft_ms,
        updated_at=now,
    )
    return Decision(Outcome.APPLIED, new, appends=(Append(state.attempt, state.text_length, tail),), first_token=first)


def _complete(state: ResponseState, event: ResponseCompleted, now: datetime) -> Decision:
    if event.text_length > state.text_length:
        return _same(state, Outcome.GAP, f"completed with {event.text_length} characters, {state.text_length} stored")
    code = message = None
    if event.finish_reason is FinishReason.LENGTH:
        status = ResponseStatus.TRUNCATED
    elif event.finish_reason is FinishReason.CONTENT_FILTER:
        status, code, message = ResponseStatus.CONTENT_FILTERED, CONTENT_FILTER_CODE, CONTENT_FILTER_MESSAGE
    elif state.text_length == 0:
        status, code, message = ResponseStatus.FAILED, FailureCode.PROVIDER_ERROR.value, EMPTY_ANSWER_MESSAGE
    else:
        status = ResponseStatus.COMPLETED
    new = replace(
        state,
        finish_reason=event.finish_reason,
        usage=event.usage,
        model=event.model or state.model,
        model_ttft_ms=event.model_ttft_ms if event.model_ttft_ms is not None else state.model_ttft_ms,
        total_ms=event.total_ms,
        error_code=code,
        error_message=message,
    )
    return _end(new, now, status, event.occurred_at)


def _fail(state: ResponseState, event: ResponseFailed, now: datetime) -> Decision:
    new = replace(state, error_code=event.code.value, error_message=event.message)
    return _end(new, now, ResponseStatus.FAILED, event.occurred_at)


def _cancel_requested(state: ResponseState, event: CancelRequested, now: datetime) -> Decision:
    if event.user_id != state.user_id:
        return _same(state, Outcome.IGNORED, "cancel from another user")
    if state.terminal:
        return _same(
            state,
            Outcome.IGNORED if state.status is not ResponseStatus.CANCELLED else Outcome.DUPLICATE,
            f"the answer has ended ({state.status})",
        )
    return _end(state, now, ResponseStatus.CANCELLED, event.occurred_at)


def _end(state: ResponseState, now: datetime, status: ResponseStatus, at: datetime) -> Decision:
    return Decision(
        Outcome.APPLIED, replace(state, status=status, completed_at=at, updated_at=now), became_terminal=True
    )
