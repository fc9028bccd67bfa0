"""What the status service needs from its database: the ``ResponseStore`` protocol and its read shapes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.core.contracts import Event, Turn
from services.core.views import ConversationSummary
from services.status.fold import Decision, ResponseState

__all__ = ["ResponseStore", "TextSlice", "StoredTurn", "StoredConversation"]


@dataclass(frozen=True, slots=True)
class TextSlice:
    """An answer and its current attempt's text from ``offset`` on."""

    state: ResponseState
    text: str
    offset: int
    restarted: bool  # the client's offset belonged to another attempt: ``text`` starts at 0


@dataclass(frozen=True, slots=True)
class StoredTurn:
    state: ResponseState
    text: str


@dataclass(frozen=True, slots=True)
class StoredConversation:
    conversation_id: uuid.UUID
    user_id: str
    turns: list[StoredTurn]


class ResponseStore(Protocol):
    async def fold_batch(self, events: Sequence[Event], *, now: datetime) -> list[Decision]:
        """Fold the events (stream order) into the stored states and commit it all in one transaction."""

    async def read(self, response_id: uuid.UUID, *, since: int = 0, attempt: int | None = None) -> TextSlice | None:
        """The answer with its text from character ``since`` (from 0 when ``attempt`` is not the current one)."""

    async def conversation(self, conversation_id: uuid.UUID, user_id: str) -> StoredConversation | None:
        """The user's conversation under this id with its turns, oldest first (ids are scoped per user)."""

    async def conversations(self, user_id: str, limit: int) -> list[ConversationSummary]:
        """The user's conversations, most recently active first."""

    async def history(
        self, conversation_id: uuid.UUID, user_id: str, before: uuid.UUID | None, limit: int
    ) -> list[Turn]:
        """The last ``limit`` finished turns before the answer ``before``, oldest first (for the prompt)."""

    async def stalled(self, updated_before: datetime, limit: int) -> list[ResponseState]:
        """Answers still running whose last change is older than ``updated_before``."""

    async def in_flight_count(self) -> int: ...

    async def delete_older_than(self, age_s: float) -> int:
        """Retention: delete answers accepted longer than ``age_s`` ago; returns how many."""

    async def ping(self) -> None:
        """Raise when the database cannot be reached."""

    async def close(self) -> None: ...
