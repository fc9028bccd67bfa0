"""The HTTP API's bodies: what ingress accepts and answers, and the read model the status service serves.

Clients (the CLI, the Streamlit chat) parse these same models, so the API has one definition.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from services.core.contracts import FinishReason, Passage, Usage

__all__ = [
    "has_lone_surrogate",
    "ResponseStatus",
    "TERMINAL",
    "ChatRequest",
    "ChatAccepted",
    "ErrorDetail",
    "ErrorBody",
    "ResponseView",
    "FinalView",
    "CancelAccepted",
    "TurnView",
    "ConversationView",
    "ConversationSummary",
]


def has_lone_surrogate(text: str) -> bool:
    """JSON may escape half a UTF-16 pair (``\\ud800``); such text cannot be stored or published."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


class ResponseStatus(StrEnum):
    QUEUED = "queued"
    RETRIEVING = "retrieving"
    GENERATING = "generating"
    COMPLETED = "completed"
    TRUNCATED = "truncated"  # finish reason "length": the text is complete up to the model's limit
    CONTENT_FILTERED = "content_filtered"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {
        ResponseStatus.COMPLETED,
        ResponseStatus.TRUNCATED,
        ResponseStatus.CONTENT_FILTERED,
        ResponseStatus.FAILED,
        ResponseStatus.CANCELLED,
    }
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatRequest(_Body):
    """``POST /api/chat``."""

    message: str = Field(description="The question. Not empty; at most INGRESS_MAX_MESSAGE_CHARS characters.")
    conversation_id: uuid.UUID | None = Field(
        default=None, description="Continue this conversation; omit to start one."
    )
    model: str | None = Field(default=None, description="One of the allowed models; omit for the default.")


class ChatAccepted(_Body):
    response_id: uuid.UUID
    conversation_id: uuid.UUID
    status: ResponseStatus = ResponseStatus.QUEUED
    poll_url: str
    final_url: str
    cancel_url: str


class ErrorDetail(_Body):
    code: str
    message: str


class ErrorBody(_Body):
    """Every 4xx/5xx of the API: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class ResponseView(_Body):
    """``GET /api/response/{id}?since=N``: the state and the text from character offset N."""

    response_id: uuid.UUID
    conversation_id: uuid.UUID
    status: ResponseStatus
    terminal: bool
    attempt: int
    text: str = Field(description="The answer's text from `offset` on (Unicode characters).")
    offset: int = Field(description="Where `text` starts.")
    next_offset: int = Field(description="Pass as `since` on the next poll.")
    text_length: int
    restarted: bool = Field(
        default=False,
        description="The text was restarted by a new attempt since the client's `attempt`: redraw from `text`.",
    )
    sources: list[Passage] = []
    error: ErrorDetail | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str | None = None
    model_ttft_ms: float | None = None
    user_ttft_ms: float | None = Field(default=None, description="Accepted → first token stored.")
    total_ms: float | None = None
    created_at: datetime
    updated_at: datetime
    poll_after_ms: int = Field(description="The server's advice for when to poll next.")


class FinalView(_Body):
    """``GET /api/response/{id}/final`` once the answer is terminal."""

    response_id: uuid.UUID
    conversation_id: uuid.UUID
    status: ResponseStatus
    text: str
    sources: list[Passage] = []
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: ErrorDetail | None = None
    model: str | None = None
    model_ttft_ms: float | None = None
    user_ttft_ms: float | None = None
    total_ms: float | None = None
    created_at: datetime
    completed_at: datetime | None = None


class CancelAccepted(_Body):
    response_id: uuid.UUID
    status: ResponseStatus
    cancelled: bool = Field(description="False when the answer had already ended: nothing to cancel.")
    message: str


class TurnView(_Body):
    response_id: uuid.UUID
    question: str
    status: ResponseStatus
    text: str
    sources: list[Passage] = []
    error: ErrorDetail | None = None
    model_ttft_ms: float | None = None
    user_ttft_ms: float | None = None
    total_ms: float | None = None
    created_at: datetime


class ConversationView(_Body):
    """``GET /api/conversation/{id}``: the turns, oldest first, each with its answer's state."""

    conversation_id: uuid.UUID
    turns: list[TurnView]


class ConversationSummary(_Body):
    conversation_id: uuid.UUID
    title: str
    turn_count: int
    updated_at: datetime
