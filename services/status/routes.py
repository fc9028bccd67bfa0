"""The polling API: an answer with its text from an offset, the final answer, conversations.

Every read is scoped to the ``X-User-Id`` caller; another user's ids answer 404 like unknown ones.
An id that ingress accepted but the fold has not stored yet answers "queued" from the stream.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.http import ApiError
from services.core.views import (
    TERMINAL,
    ConversationSummary,
    ConversationView,
    ErrorBody,
    ErrorDetail,
    FinalView,
    ResponseStatus,
    ResponseView,
    TurnView,
)
from services.status.fold import ResponseState
from services.status.store import ResponseStore, TextSlice

__all__ = ["Deps", "router", "poll_after_ms"]

_USER = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid X-User-Id"},
    404: {"model": ErrorBody, "description": "Unknown id, or not the caller's"},
    503: {"model": ErrorBody, "description": "A dependency is not reachable"},
}


@dataclass
class Deps:
    store: ResponseStore
    nc: NATS
    js: JetStreamContext


def _deps(request: Request) -> Deps:
    deps: Deps | None = getattr(request.app.state, "deps", None)
    if deps is None:
        raise ApiError(503, "starting", "the status service is starting; retry shortly", {"Retry-After": "1"})
    return deps


def _user(x_user_id: Annotated[str | None, Header(description="Caller id; `anonymous` when absent.")] = None) -> str:
    user = "anonymous" if x_user_id is None else x_user_id
    if not _USER.fullmatch(user):
        raise ApiError(
            400, "invalid_user_id", "X-User-Id must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', '@', '-'"
        )
    return user


DepsDep = Annotated[Deps, Depends(_deps)]
UserId = Annotated[str, Depends(_user)]

router = APIRouter(prefix="/api", tags=["status"], responses=_ERRORS)


def poll_after_ms(status: ResponseStatus) -> int:
    """The server's advice for the next poll (DESIGN.md, "Polling")."""
    if status in TERMINAL:
        return 0
    return 250 if status is ResponseStatus.GENERATING else 1000


def _not_found(what: str, ident: object) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {ident} for this user")


def _parse(ident: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(ident)
    except ValueError:
        raise _not_found(what, ident) from None


def _error(s: ResponseState) -> ErrorDetail | None:
    return ErrorDetail(code=s.error_code, message=s.error_message or s.error_code) if s.error_code else None


def _view(sl: TextSlice) -> ResponseView:
    s = sl.state
    return ResponseView(
        response_id=s.response_id,
        conversation_id=s.conversation_id,
        status=s.status,
        terminal=s.terminal,
        attempt=s.attempt,
        text=sl.text,
        offset=sl.offset,
        next_offset=sl.offset + len(sl.text),
        text_length=s.text_length,
        restarted=sl.restarted,
        sources=list(s.sources),
        error=_error(s),
        finish_reason=s.finish_reason,
        usage=s.usage,
        model=s.model,
        model_ttft_ms=s.model_ttft_ms,
        user_ttft_ms=s.user_ttft_ms,
        total_ms=s.total_ms,
        created_at=s.created_at,
        updated_at=s.updated_at,
        poll_after_ms=poll_after_ms(s.status),
    )


def _final(sl: TextSlice) -> FinalView:
    s = sl.state
    return FinalView(
        response_id=s.response_id,
        conversation_id=s.conversation_id,
        status=s.status,
        text=sl.text,
        sources=list(s.sources),
        usage=s.usage,
        finish_reason=s.finish_reason,
        error=_error(s),
        model=s.model,
        model_ttft_ms=s.model_ttft_ms,
        user_ttft_ms=s.user_ttft_ms,
        total_ms=s.total_ms,
        created_at=s.created_at,
        completed_at=s.completed_at,
    )


def _json(body: ResponseView | FinalView | ConversationView, status: int = 200) -> Response:
    headers = {"Retry-After": "1"} if status == 202 else None
    return Response(body.model_dump_json(), status_code=status, media_type="application/json", headers=headers)


_INT4_MAX = 2**31 - 1  # offsets and attempts are PostgreSQL integers


async def _load(deps: Deps, rid: uuid.UUID, user: str, since: int = 0, attempt: int | None = None) -> TextSlice:
    """The stored answer, or a queued one from the stream when the fold has not stored it yet."""
    sl = await deps.store.read(rid, since=since, attempt=attempt)
    if sl is not None:
        if sl.state.user_id != user:
            raise _not_found("response", rid)
        return sl
    try:
        async with asyncio.timeout(0.5):  # a poll must answer fast, also while NATS is away
            event = await bus.last_event_on(deps.js, contracts.subject_for_request(rid))
    except Exception:
        raise ApiError(
            503, "unavailable", "the message stream is not reachable; retry shortly", {"Retry-After": "1"}
        ) from None
    if not isinstance(event, contracts.ChatRequested) or event.user_id != user:
        raise _not_found("response", rid)
    state = ResponseState(
        response_id=rid,
        conversation_id=event.conversation_id,
        user_id=user,
        question=event.message,
        model=event.model,
        status=ResponseStatus.QUEUED,
        created_at=event.occurred_at,
        updated_at=event.occurred_at,
    )
    return TextSlice(state=state, text="", offset=0, restarted=since > 0)


@router.get("/response/{response_id}", response_model=ResponseView, summary="The answer, with its text from `since`")
async def get_response(
    response_id: str,
    user: UserId,
    deps: DepsDep,
    since: Annotated[
        int, Query(ge=0, le=_INT4_MAX, description="Character offset already received (`next_offset`).")
    ] = 0,
    attempt: Annotated[
        int | None, Query(ge=0, le=_INT4_MAX, description="The `attempt` the client's text belongs to.")
    ] = None,
) -> Response:
    sl = await _load(deps, _parse(response_id, "response"), user, since, attempt)
    return _json(_view(sl))


@router.get(
    "/response/{response_id}/final",
    response_model=FinalView,
    responses={202: {"model": ResponseView, "description": "Still running: the current state"}},
    summary="The final answer once it has ended (202 while running)",
)
async def get_final(response_id: str, user: UserId, deps: DepsDep) -> Response:
    sl = await _load(deps, _parse(response_id, "response"), user)
    if sl.state.terminal:
        return _json(_final(sl))
    return _json(_view(sl), status=202)


@router.get("/conversation/{conversation_id}", response_model=ConversationView, summary="A conversation's turns")
async def get_conversation(conversation_id: str, user: UserId, deps: DepsDep) -> Response:
    cid = _parse(conversation_id, "conversation")
    conv = await deps.store.conversation(cid, user)
    if conv is None or conv.user_id != user:
        raise _not_found("conversation", cid)
    turns = [
        TurnView(
            response_id=t.state.response_id,
            question=t.state.question,
            status=t.state.status,
            text=t.text,
            sources=list(t.state.sources),
            error=_error(t.state),
            model_ttft_ms=t.state.model_ttft_ms,
            user_ttft_ms=t.state.user_ttft_ms,
            total_ms=t.state.total_ms,
            created_at=t.state.created_at,
        )
        for t in conv.turns
    ]
    return _json(ConversationView(conversation_id=cid, turns=turns))


@router.get("/conversations", response_model=list[ConversationSummary], summary="The caller's recent conversations")
async def list_conversations(
    user: UserId, deps: DepsDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[ConversationSummary]:
    return await deps.store.conversations(user, limit)
