"""Earlier turns of a conversation, asked of the status service over core NATS request/reply.

Request on ``contracts.HISTORY_RPC_SUBJECT``: ``{"conversation_id", "user_id", "before_response_id", "limit"}``;
reply ``{"turns": [{"question", "answer"}, ...]}`` (oldest first) or ``{"error": {...}}``. When the
status service does not answer after a few brief tries the answer goes ahead without history (logged):
a missing earlier turn is better than no answer at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.core import contracts
from services.core.contracts import Turn

__all__ = ["HistorySource", "NatsHistory", "NoHistory"]

log = logging.getLogger(__name__)


class HistorySource(Protocol):
    async def turns(
        self, *, conversation_id: uuid.UUID, user_id: str, before_response_id: uuid.UUID, limit: int
    ) -> list[Turn]: ...


class NoHistory:
    """Every conversation starts fresh (tests, or a deployment without a status service)."""

    async def turns(self, **_: object) -> list[Turn]:
        return []


class NatsHistory:
    def __init__(self, nc: NATS, *, timeout_s: float = 2.0, attempts: int = 3, retry_delay_s: float = 0.2) -> None:
        self.nc, self.timeout_s, self.attempts, self.retry_delay_s = nc, timeout_s, attempts, retry_delay_s

    async def turns(
        self, *, conversation_id: uuid.UUID, user_id: str, before_response_id: uuid.UUID, limit: int
    ) -> list[Turn]:
        if limit <= 0:
            return []
        payload = json.dumps(
            {
                "conversation_id": str(conversation_id),
                "user_id": user_id,
                "before_response_id": str(before_response_id),
                "limit": limit,
            }
        ).encode()
        problem = "no reply"
        for i in range(self.attempts):
            if i:
                await asyncio.sleep(self.retry_delay_s * i)
            try:
                reply = await self.nc.request(contracts.HISTORY_RPC_SUBJECT, payload, timeout=self.timeout_s)
            except NoRespondersError:
                problem = "no status service answers history requests"
                continue
            except (NatsTimeoutError, TimeoutError):
                problem = f"no reply within {self.timeout_s:g} s"
                continue
            except Exception as exc:  # disconnected, reconnecting...
                problem = f"{type(exc).__name__}: {exc}"
                continue
            try:
                body = json.loads(reply.data)
                if "error" in body:
                    problem = f"the status service said: {body['error']}"
                    continue
                return [Turn(question=str(t["question"]), answer=str(t["answer"] or "")) for t in body.get("turns", [])]
            except (ValueError, KeyError, TypeError) as exc:
                problem = f"unreadable reply: {exc}"
                break
        log.warning("answering without conversation history: %s", problem)
        return []
