"""Ingress wiring: ``build_app(settings)``, the lifespan that opens JetStream, and ``main()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NATS
from pydantic import ValidationError

from services.core import bus, contracts
from services.core.http import error_response, install_http_conventions, serve_until_signalled
from services.core.logs import configure_logging
from services.core.probes import probe_router
from services.ingress.admission import Rejection
from services.ingress.body_limit import BodyLimitMiddleware
from services.ingress.handlers import Policy
from services.ingress.jetstream import (
    JetStreamLog,
    NatsUnreachableError,
    QueueUnavailable,
    RequestLog,
    connect_with_retries,
)
from services.ingress.routes import router
from services.ingress.settings import IngressSettings

__all__ = ["build_app", "open_request_log", "main"]

log = logging.getLogger(__name__)

DESCRIPTION = """
Submit questions to **llm-relay**. Every call here answers in milliseconds: the work runs in the
background and you follow the answer through short polls, so no proxy timeout (Cloudflare's 100 s)
can cut it.

1. `POST /api/chat` → `202` with `response_id`, `poll_url`, `final_url`, `cancel_url` once the
   question is durable in JetStream.
2. `GET {poll_url}?since=N&attempt=A` (the **status service**) → the status and the text from
   character offset `N`; wait `poll_after_ms` before the next poll; redraw when `restarted` is true.
3. `GET {final_url}` → the whole answer, its sources and usage.
4. `POST {cancel_url}` → stop it (idempotent).

**Identity**: `X-User-Id` (default `anonymous`); a user sees only their own responses.
**Retries**: send an `Idempotency-Key`; repeating the POST with it (after a timeout or a `503`)
returns the same response id and never starts a second answer.
**Errors**: every 4xx/5xx has the body `{"error": {"code": "...", "message": "..."}}`; the message says
what is wrong.
"""


async def open_request_log(settings: IngressSettings) -> tuple[NATS, JetStreamLog]:
    """Connect to NATS with bounded retries and make sure the stream exists."""
    nc = await connect_with_retries(
        settings.nats_url,
        name=settings.service_name,
        attempts=settings.nats_connect_attempts,
        attempt_timeout_s=settings.nats_connect_timeout_s,
        wait_s=settings.nats_retry_wait_s,
    )
    try:
        config = contracts.stream_config(
            max_age_s=settings.stream_max_age_s, duplicate_window_s=settings.duplicate_window_s
        )
        await bus.ensure_stream(nc.jetstream(timeout=10.0), config)
    except BaseException:
        await nc.close()
        raise
    return nc, JetStreamLog(nc, url=settings.nats_url, timeout=settings.publish_timeout_s)


async def _close(nc: NATS) -> None:
    try:
        await asyncio.wait_for(nc.drain(), 5.0)
    except Exception:  # already closed or NATS away: nothing left to flush
        with contextlib.suppress(Exception):
            await nc.close()


_NOT_AN_OBJECT = ("model_attributes_type", "dict_type")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def build_app(settings: IngressSettings, requests: RequestLog | None = None) -> FastAPI:
    """The ingress API. Without ``requests`` the lifespan connects to ``settings.nats_url``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc: NATS | None = None
        if requests is None:
            nc, app.state.requests = await open_request_log(settings)
        log.info("ingress ready on %s:%d (NATS %s)", settings.host, settings.port, settings.nats_url)
        try:
            yield
        finally:
            if nc is not None:
                await _close(nc)

    app = FastAPI(
        title="llm-relay ingress",
        version="0.1.0",
        summary="Submit questions and cancel answers; answers are followed on the status service.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.policy = Policy.from_settings(settings)
    app.state.requests = requests
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    install_http_conventions(app)

    describe_invalid = app.exception_handlers[RequestValidationError]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and request.url.path == "/api/chat" and not _is_json(content_type):
            got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
            return error_response(
                415, "unsupported_media_type", f"the body must be JSON with Content-Type: application/json ({got})"
            )
        if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in _NOT_AN_OBJECT for e in exc.errors()):
            return error_response(
                422, "invalid_request", 'the body must be a JSON object such as {"message": "your question"}'
            )
        return await cast(Callable[..., Awaitable[Response]], describe_invalid)(request, exc)

    @app.exception_handler(Rejection)
    async def _rejected(_: Request, exc: Rejection) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(QueueUnavailable)
    async def _unavailable(request: Request, exc: QueueUnavailable) -> JSONResponse:
        log.warning("refused %s: JetStream unavailable (%s)", request.url.path, exc)
        outcome = "the request may or may not have been stored" if exc.maybe_stored else "nothing was stored"
        if request.url.path == "/api/chat":
            hint = "Retry in a few seconds with the same Idempotency-Key: a retry with it never starts a second answer"
        else:
            hint = "Retry in a few seconds: repeating a cancel is harmless"
        return error_response(
            503,
            "queue_unavailable",
            f"the message queue (NATS JetStream) is unavailable: {exc}; {outcome}. {hint}",
            headers={"Retry-After": "2"},
        )

    async def ready() -> str | None:
        current: RequestLog | None = app.state.requests
        return "not connected to NATS yet" if current is None else await current.problem()

    app.include_router(router)
    app.include_router(probe_router(ready))
    return app


async def _serve(settings: IngressSettings) -> None:
    nc, requests = await open_request_log(settings)
    try:
        await serve_until_signalled(build_app(settings, requests), host=settings.host, port=settings.port)
    finally:
        await _close(nc)


def main() -> None:
    configure_logging("ingress")
    try:
        settings = IngressSettings()
    except ValidationError as exc:
        log.error("invalid ingress settings: %s", "; ".join(str(e["msg"]) for e in exc.errors()))
        raise SystemExit(2) from None
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    try:
        asyncio.run(_serve(settings))
    except NatsUnreachableError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
