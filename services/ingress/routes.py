"""The ingress HTTP API: ``POST /api/chat`` and ``POST /api/response/{id}/cancel``, documented for /docs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from services.core.views import CancelAccepted, ChatAccepted, ChatRequest, ErrorBody
from services.ingress.admission import check_idempotency_key, check_user_id
from services.ingress.handlers import SUBMISSIONS, Policy, cancel_response, submit_chat
from services.ingress.jetstream import QueueUnavailable, RequestLog

__all__ = ["router"]

router = APIRouter(tags=["chat"])


def _requests(request: Request) -> RequestLog:
    return request.app.state.requests  # type: ignore[no-any-return]


def _policy(request: Request) -> Policy:
    return request.app.state.policy  # type: ignore[no-any-return]


def _user(
    x_user_id: Annotated[
        str | None, Header(description="Who asks; default `anonymous`. `[A-Za-z0-9_.@-]{1,128}`.")
    ] = None,
) -> str:
    return check_user_id(x_user_id)


Requests = Annotated[RequestLog, Depends(_requests)]
CurrentPolicy = Annotated[Policy, Depends(_policy)]
UserId = Annotated[str, Depends(_user)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        description=(
            "1–255 printable ASCII characters. The same key from the same user always gives the same response id "
            "and at most one answer: repeat the POST with it after a timeout or a 503 and nothing is doubled. "
            "Reusing a key for a different question is refused with 409."
        )
    ),
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "A header is malformed (`X-User-Id`, `Idempotency-Key`, `Content-Length`).",
        404: "No such response for this user (another user's response is reported the same way).",
        409: "The Idempotency-Key was already used for a different question.",
        413: "The body is larger than INGRESS_MAX_BODY_BYTES; it is refused before being read.",
        422: "The body is not valid JSON, has wrong types or unknown fields, an empty or too long message, or an unknown model.",
        503: "JetStream is unreachable or did not acknowledge in time; retry after `Retry-After` seconds.",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


@router.post(
    "/api/chat",
    status_code=202,
    response_model=ChatAccepted,
    summary="Ask a question; answer in milliseconds with where to follow it",
    responses={
        202: {
            "description": "Accepted: the question is durable in JetStream. Follow `poll_url` (status service).",
            "headers": {
                "Location": {"description": "The poll URL", "schema": {"type": "string"}},
                "Retry-After": {"description": "Seconds before the first poll", "schema": {"type": "integer"}},
            },
        },
        **_errors(400, 409, 413, 422, 503),
    },
)
async def post_chat(
    body: ChatRequest, response: Response, requests: Requests, policy: CurrentPolicy, user_id: UserId,
    idempotency_key: IdempotencyKey = None,
) -> ChatAccepted:  # fmt: skip
    """Validates the request, assigns an unguessable response id and publishes `ChatRequested` to
    JetStream. It answers only after JetStream acknowledged the message — once you have the `202`,
    the question is not lost — and long before any model work starts.

    Then poll `GET {poll_url}?since=N` (served by the status service) following its `poll_after_ms`,
    read the whole answer at `final_url`, or stop it with `POST {cancel_url}`.
    """
    key = check_idempotency_key(idempotency_key)
    try:
        accepted = await submit_chat(body, user_id=user_id, idempotency_key=key, requests=requests, policy=policy)
    except QueueUnavailable:
        SUBMISSIONS.labels("unavailable").inc()
        raise
    response.headers["Location"] = accepted.poll_url
    response.headers["Retry-After"] = "1"
    return accepted


@router.post(
    "/api/response/{response_id}/cancel",
    status_code=202,
    response_model=CancelAccepted,
    summary="Stop an answer (idempotent)",
    responses={
        202: {
            "description": "The cancel is durable in JetStream, or the answer had already ended (`cancelled: false`)."
        },
        **_errors(400, 404, 503),
    },
)
async def post_cancel(
    response_id: Annotated[uuid.UUID, Path(description="The `response_id` that `POST /api/chat` returned.")],
    requests: Requests,
    user_id: UserId,
) -> CancelAccepted:
    """Publishes `CancelRequested`: the generator stops the model stream and the answer ends
    `cancelled`, keeping the text produced so far. Repeating it changes nothing. When the answer had
    already ended, nothing is published and `cancelled` is `false` (unless it ended cancelled).
    Closing a client is not a cancel: the answer goes on.
    """
    return await cancel_response(response_id, user_id=user_id, requests=requests)
