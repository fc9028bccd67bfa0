"""The chat page's model, free of Streamlit: turns, text merging by offset, reconnect back-off, idempotency keys.

The page keeps one ``ChatState`` per browser session. It is rebuilt from the status service
(``GET /api/conversation/{id}``) whenever the session is new, so a reload loses nothing: the text a
turn holds is only ever what the server said, merged by character offset and attempt.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.core.contracts import FinishReason, Passage
from services.core.views import TERMINAL, ConversationView, ErrorDetail, ResponseStatus, ResponseView, TurnView

__all__ = [
    "Merge",
    "merge_text",
    "backoff_delay",
    "idempotency_key",
    "Connection",
    "TurnState",
    "ChatState",
]


@dataclass(frozen=True)
class Merge:
    """What one poll does to a turn's text."""

    text: str
    attempt: int | None  # None: the page no longer knows which attempt it holds → ask for everything
    redrawn: bool = False  # the text was replaced, not extended (a new attempt restarted it)
    again: bool = False  # the answer did not fit what we hold (gap or partial redraw): poll again at once


def merge_text(text: str, attempt: int | None, view: ResponseView) -> Merge:
    """Fold ``view`` (text from ``view.offset``) into ``text`` of ``attempt`` — never duplicating or dropping a character.

    - Same attempt, ``offset`` inside what we hold: overlap is dropped, the rest appended.
    - Same attempt, ``offset`` beyond what we hold: a gap — keep ours, ask again from our length.
    - A different attempt, or ``restarted``: the text was restarted; redraw from the view when it
      starts at 0, else forget ours and ask for everything.
    """
    if attempt is None or view.restarted or view.attempt != attempt:
        if view.offset == 0:
            return Merge(view.text, view.attempt, redrawn=not view.text.startswith(text))
        return Merge("", None, redrawn=True, again=True)
    if view.offset > len(text):
        return Merge(text, attempt, again=True)
    end = view.offset + len(view.text)
    if end <= len(text):  # nothing new (a repeated or stale answer)
        return Merge(text, attempt)
    return Merge(text[: view.offset] + view.text, attempt)


def backoff_delay(
    failures: int,
    *,
    base: float = 0.5,
    cap: float = 4.0,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: base·2ⁿ⁻¹, capped, minus up to ``jitter`` of it."""
    if failures <= 0:
        return 0.0
    delay = min(cap, base * 2 ** min(failures - 1, 30))
    return delay * (1.0 - jitter * rand())


def idempotency_key(conversation_ref: str, turn_number: int, message: str) -> str:
    """The ``Idempotency-Key`` of one question: (conversation, turn number, the question's digest).

    Pressing Enter twice, or a submit repeated after a lost reply, sends the same key → one answer.
    The digest keeps a *different* question at the same turn (another tab) from mapping onto it.
    """
    digest = hashlib.sha256(message.encode("utf-8")).hexdigest()[:16]
    return f"ui:{conversation_ref}:{turn_number}:{digest}"


@dataclass
class Connection:
    """Whether the status service answers; after failures, when to try again."""

    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() of the next attempt
    last_error: str | None = None

    @property
    def reconnecting(self) -> bool:
        return self.failures > 0

    def failed(self, now: float, error: str, *, base: float = 0.5, cap: float = 4.0) -> float:
        self.failures += 1
        self.last_error = error
        delay = backoff_delay(self.failures, base=base, cap=cap)
        self.retry_at = now + delay
        return delay

    def recovered(self) -> None:
        self.failures, self.retry_at, self.last_error = 0, 0.0, None

    def ready(self, now: float) -> bool:
        return now >= self.retry_at


@dataclass
class TurnState:
    """One question and its answer as the page shows it."""

    question: str
    response_id: uuid.UUID | None  # None: the question never reached the relay (see ``send_error``)
    status: ResponseStatus | None = ResponseStatus.QUEUED
    text: str = ""
    attempt: int | None = None  # None until a poll says; the next poll then asks for all the text
    text_length: int = 0
    sources: list[Passage] = field(default_factory=list)
    error: ErrorDetail | None = None
    finish_reason: FinishReason | None = None
    user_ttft_ms: float | None = None
    model_ttft_ms: float | None = None
    total_ms: float | None = None
    created_at: datetime | None = None
    idempotency_key: str | None = None
    send_error: str | None = None  # why the question could not be submitted
    send_retryable: bool = True  # False when the API refused it (4xx): sending it again cannot help
    cancel_requested: bool = False
    synced: bool = False  # ``text`` is the server's text of ``attempt`` (or of a finished answer)
    polls: int = 0

    @classmethod
    def unsent(cls, question: str, key: str, error: str, *, retryable: bool) -> TurnState:
        return cls(question, None, status=None, idempotency_key=key, send_error=error, send_retryable=retryable)

    @classmethod
    def from_view(cls, turn: TurnView) -> TurnState:
        """A turn as the conversation read model has it; a running one resumes with its first poll."""
        return cls(
            turn.question,
            turn.response_id,
            status=turn.status,
            text=turn.text,
            text_length=len(turn.text),
            sources=list(turn.sources),
            error=turn.error,
            user_ttft_ms=turn.user_ttft_ms,
            model_ttft_ms=turn.model_ttft_ms,
            total_ms=turn.total_ms,
            created_at=turn.created_at,
            synced=turn.status in TERMINAL,  # a finished answer's text is final; a running one is re-read
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def settled(self) -> bool:
        """Nothing more to fetch: unsent, or terminal with all of its text."""
        if self.response_id is None:
            return True
        return self.terminal and self.synced and len(self.text) >= self.text_length

    @property
    def since(self) -> int:
        return len(self.text) if self.attempt is not None else 0

    def apply(self, view: ResponseView) -> Merge:
        merged = merge_text(self.text, self.attempt, view)
        self.text, self.attempt = merged.text, merged.attempt
        self.synced = merged.attempt is not None
        self.status = view.status
        self.text_length = view.text_length
        self.sources = list(view.sources)
        self.error = view.error
        self.finish_reason = view.finish_reason
        self.user_ttft_ms = view.user_ttft_ms
        self.model_ttft_ms = view.model_ttft_ms
        self.total_ms = view.total_ms
        self.created_at = view.created_at
        self.polls += 1
        return merged


@dataclass
class ChatState:
    """One conversation on one page: its turns, the poll schedule, the connection."""

    user_id: str
    conversation_id: uuid.UUID | None = None
    draft: str = field(default_factory=lambda: uuid.uuid4().hex)  # names a conversation the server has not seen yet
    turns: list[TurnState] = field(default_factory=list)
    loaded: bool = True  # False: the turns still have to come from the status service
    conn: Connection = field(default_factory=Connection)
    next_poll_at: float = 0.0

    @classmethod
    def opening(cls, user_id: str, conversation_id: uuid.UUID) -> ChatState:
        return cls(user_id, conversation_id, loaded=False)

    def load(self, view: ConversationView) -> None:
        self.conversation_id = view.conversation_id
        self.turns = [TurnState.from_view(t) for t in view.turns]
        self.loaded = True
        self.next_poll_at = 0.0

    @property
    def conversation_ref(self) -> str:
        return str(self.conversation_id) if self.conversation_id else f"new-{self.draft}"

    @property
    def busy(self) -> bool:
        """An answer is still coming: the input stays disabled."""
        return any(not t.settled for t in self.turns)

    def first_live(self) -> int | None:
        return next((i for i, t in enumerate(self.turns) if not t.settled), None)

    def key_for(self, message: str, turn_number: int | None = None) -> str:
        return idempotency_key(self.conversation_ref, len(self.turns) if turn_number is None else turn_number, message)

    def due(self, now: float) -> bool:
        return now >= self.next_poll_at and self.conn.ready(now)

    def schedule(self, now: float, views: list[ResponseView], again: bool) -> None:
        """Next poll: at once after a gap/redraw, else the soonest ``poll_after_ms`` the server advised."""
        if again:
            self.next_poll_at = now
            return
        advice = [v.poll_after_ms for v in views if v.poll_after_ms > 0]
        self.next_poll_at = now + (min(advice) / 1000.0 if advice else 0.0)
