"""The whole message flow of llm-relay: event models, subjects, stream and consumers, side by side.

    POST /api/chat ─▶ ChatRequested      relay.requests.<id>  ─▶ retriever  (consumer "retriever")
    retriever      ─▶ ContextRetrieved   relay.context.<id>   ─▶ generator  (consumer "generator")
    every stage    ─▶ lifecycle events   relay.events.<id>    ─▶ status     (consumer "status", all subjects)
    POST .../cancel─▶ CancelRequested    relay.control.cancel.<id> ─▶ generator (core NATS, every replica)
                                                              ─▶ status

Every event is a frozen pydantic model with the same envelope (event id, response id, attempt,
sequence number where order matters, time). The publish helper sets ``Nats-Msg-Id`` from the
event id, so JetStream drops duplicates inside its window and consumers fold each event once.
The attempt is the generator's delivery count: a redelivered request restarts the text under a
higher attempt, and anything an older attempt still emits is ignored (fencing).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "STREAM",
    "ChatRequested",
    "ContextRetrieved",
    "RetrievalStarted",
    "GenerationStarted",
    "FirstTokenEmitted",
    "DeltaEmitted",
    "ResponseCompleted",
    "ResponseFailed",
    "CancelRequested",
    "ResponseCancelled",
    "Event",
    "Passage",
    "Turn",
    "Usage",
    "FailureCode",
    "FinishReason",
    "decode_event",
    "subject_for_request",
    "subject_for_context",
    "subject_for_events",
    "subject_for_cancel",
    "stream_config",
    "retriever_consumer",
    "generator_consumer",
    "status_consumer",
    "HISTORY_RPC_SUBJECT",
]


def _now() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Passage(_Frozen):
    """One retrieved chunk of a document, with what a citation needs."""

    text: str
    source: str  # file name the chunk came from, e.g. "GPL-3.txt"
    position: int  # chunk index inside the source (0-based)
    heading: str | None = None  # nearest section heading, when the document has one
    score: float


class Turn(_Frozen):
    """One earlier exchange of a conversation, as the model sees it."""

    question: str
    answer: str


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    TOOL_CALLS = "tool_calls"
    OTHER = "other"


class FailureCode(StrEnum):
    """Why an answer failed; the status service shows the code and a human message."""

    PROVIDER_ERROR = "provider_error"  # the model server answered with an error
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # could not reach it / rate limited past retries
    PROVIDER_DISCONNECTED = "provider_disconnected"  # stream closed without a finish reason
    PROVIDER_TIMEOUT = "provider_timeout"  # no token for longer than the configured stall limit
    RETRIEVAL_FAILED = "retrieval_failed"
    HISTORY_UNAVAILABLE = "history_unavailable"
    DELIVERY_EXHAUSTED = "delivery_exhausted"  # every redelivery died; no worker could finish it
    STALLED = "stalled"  # no event for longer than the stall limit: swept by the status service
    INTERNAL = "internal"


class _Envelope(_Frozen):
    event_id: str
    response_id: uuid.UUID
    attempt: int = 0  # 0 before generation; the generator's delivery count from then on
    seq: int | None = None  # order inside one attempt, where order matters (deltas)
    occurred_at: datetime = Field(default_factory=_now)


class ChatRequested(_Envelope):
    """Ingress accepted a question; it is durable in JetStream."""

    type: Literal["chat.requested"] = "chat.requested"
    conversation_id: uuid.UUID
    user_id: str
    message: str
    model: str
    idempotency_key: str | None = None


class RetrievalStarted(_Envelope):
    type: Literal["retrieval.started"] = "retrieval.started"


class ContextRetrieved(_Envelope):
    """The request, enriched with the passages the retriever found (best first)."""

    type: Literal["context.retrieved"] = "context.retrieved"
    request: ChatRequested
    passages: tuple[Passage, ...] = ()


class GenerationStarted(_Envelope):
    """A generator took the request under ``attempt``; any text of older attempts is void."""

    type: Literal["generation.started"] = "generation.started"
    model: str
    worker: str


class FirstTokenEmitted(_Envelope):
    type: Literal["generation.first_token"] = "generation.first_token"
    model_ttft_ms: float  # from the provider call to its first content token


class DeltaEmitted(_Envelope):
    """A piece of the answer. ``offset`` counts Unicode characters of this attempt's text before it."""

    type: Literal["generation.delta"] = "generation.delta"
    seq: int
    offset: int
    text: str


class ResponseCompleted(_Envelope):
    """The provider finished. ``text_length`` lets the fold wait until every delta is in."""

    type: Literal["response.completed"] = "response.completed"
    finish_reason: FinishReason
    usage: Usage | None = None
    model: str
    model_ttft_ms: float | None = None
    total_ms: float
    text_length: int
    delta_count: int


class ResponseFailed(_Envelope):
    type: Literal["response.failed"] = "response.failed"
    code: FailureCode
    message: str  # readable by the person who asked
    text_length: int | None = None  # partial text the failing attempt had emitted, when known


class CancelRequested(_Envelope):
    type: Literal["cancel.requested"] = "cancel.requested"
    user_id: str


class ResponseCancelled(_Envelope):
    """A generator stopped the provider stream because of a cancel."""

    type: Literal["response.cancelled"] = "response.cancelled"
    text_length: int


Event = Annotated[
    ChatRequested
    | RetrievalStarted
    | ContextRetrieved
    | GenerationStarted
    | FirstTokenEmitted
    | DeltaEmitted
    | ResponseCompleted
    | ResponseFailed
    | CancelRequested
    | ResponseCancelled,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def decode_event(data: bytes) -> Event:
    """Parse any event from its JSON bytes; raises pydantic.ValidationError on a bad payload."""
    return _EVENT_ADAPTER.validate_json(data)


# --- subjects ---------------------------------------------------------------------------------

STREAM = "RELAY"
SUBJECT_PREFIX = "relay"
REQUESTS = f"{SUBJECT_PREFIX}.requests"
CONTEXT = f"{SUBJECT_PREFIX}.context"
EVENTS = f"{SUBJECT_PREFIX}.events"
CANCEL = f"{SUBJECT_PREFIX}.control.cancel"
#: Core NATS request/reply (not in the stream): the generator asks the status service for turns.
HISTORY_RPC_SUBJECT = "relay_rpc.history"


def subject_for_request(response_id: uuid.UUID | str) -> str:
    return f"{REQUESTS}.{response_id}"


def subject_for_context(response_id: uuid.UUID | str) -> str:
    return f"{CONTEXT}.{response_id}"


def subject_for_events(response_id: uuid.UUID | str) -> str:
    return f"{EVENTS}.{response_id}"


def subject_for_cancel(response_id: uuid.UUID | str) -> str:
    return f"{CANCEL}.{response_id}"


# --- stream and consumers ---------------------------------------------------------------------


def stream_config(*, max_age_s: float, duplicate_window_s: float, replicas: int = 1) -> StreamConfig:
    """One file-backed stream holds every subject, so the status consumer sees them in order."""
    return StreamConfig(
        name=STREAM,
        subjects=[f"{REQUESTS}.*", f"{CONTEXT}.*", f"{EVENTS}.*", f"{CANCEL}.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        duplicate_window=duplicate_window_s,
        num_replicas=replicas,
        allow_direct=True,
    )


def retriever_consumer(*, ack_wait_s: float = 30.0, max_deliver: int = 5) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name="retriever",
        filter_subject=f"{REQUESTS}.*",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=1000,
    )


def generator_consumer(
    *, ack_wait_s: float = 30.0, max_deliver: int = 3, max_ack_pending: int = 1000
) -> ConsumerConfig:
    """Long answers stay with one worker: the handler sends in-progress acks well inside ack_wait."""
    return ConsumerConfig(
        durable_name="generator",
        filter_subject=f"{CONTEXT}.*",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=max_ack_pending,
    )


def status_consumer(*, ack_wait_s: float = 30.0) -> ConsumerConfig:
    """Sees every subject in stream order; never gives up on a message (max_deliver unlimited)."""
    return ConsumerConfig(
        durable_name="status",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=20000,
    )
