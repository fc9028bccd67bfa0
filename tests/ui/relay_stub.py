"""A small real HTTP server that serves the relay API (ingress + status) from scripted answers.

Used by the page tests: the Streamlit page talks to it over real HTTP exactly as to the services.
Answers advance one chunk per poll (deterministic, no clocks), so a test drives the page run by run::

    with RelayStub() as stub:
        stub.next_answer(["Hel", "lo"], sources=[...])
        ...page submits; every poll reveals one more chunk...
        stub.calls  # (method, path, query, headers) of every request
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from services.core.contracts import Passage
from services.core.views import (
    TERMINAL,
    CancelAccepted,
    ChatAccepted,
    ChatRequest,
    ConversationSummary,
    ConversationView,
    ErrorDetail,
    ResponseStatus,
    ResponseView,
    TurnView,
)
from services.devstack.ports import free_port

__all__ = ["RelayStub", "StubAnswer"]


@dataclass
class StubAnswer:
    response_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: str
    question: str
    chunks: list[str]
    end: ResponseStatus = ResponseStatus.COMPLETED
    error: ErrorDetail | None = None
    sources: list[Passage] = field(default_factory=list)
    attempt: int = 1
    revealed: int = 0  # chunks visible so far
    queued_polls: int = 0  # polls answered "queued" before generation starts
    cancelled: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    idempotency_key: str | None = None
    poll_after_ms: int = 1  # what the stub advises while running

    @property
    def text(self) -> str:
        return "".join(self.chunks[: self.revealed])

    @property
    def status(self) -> ResponseStatus:
        if self.cancelled:
            return ResponseStatus.CANCELLED
        if self.queued_polls > 0:
            return ResponseStatus.QUEUED
        return self.end if self.revealed >= len(self.chunks) else ResponseStatus.GENERATING

    def restart(self, chunks: list[str]) -> None:
        """A redelivery: a new attempt starts the text again."""
        self.attempt += 1
        self.chunks, self.revealed = chunks, 0


class RelayStub:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answers: dict[uuid.UUID, StubAnswer] = {}
        self.order: list[uuid.UUID] = []
        self.by_key: dict[tuple[str, str], uuid.UUID] = {}
        self.calls: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.asked: list[tuple[ChatRequest, str | None]] = []  # POST /api/chat bodies with their Idempotency-Key
        self.status_down = False
        self.ingress_down = False
        self.advance = True  # each poll reveals one more chunk
        self._scripts: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    # --- scripting -----------------------------------------------------------------------------

    def next_answer(self, chunks: list[str], **kwargs: object) -> None:
        """The next accepted question is answered with ``chunks`` (then ``end``, ``error``...)."""
        self._scripts.append({"chunks": list(chunks), **kwargs})

    def only(self) -> StubAnswer:
        assert len(self.answers) == 1, f"expected one answer, have {len(self.answers)}"
        return next(iter(self.answers.values()))

    def last(self) -> StubAnswer:
        return self.answers[self.order[-1]]

    def requests(self, method: str, prefix: str) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
        return [c for c in self.calls if c[0] == method and c[1].startswith(prefix)]

    def polls(self) -> list[dict[str, str]]:
        """The query (since, attempt) of every answer poll, in order."""
        return [c[2] for c in self.calls if c[0] == "GET" and c[1].startswith("/api/response/")]

    def add_conversation(self, user_id: str, turns: list[tuple[str, str, ResponseStatus]]) -> uuid.UUID:
        """A finished conversation the page can list and reopen."""
        cid = uuid.uuid4()
        for question, text, status in turns:
            rid = uuid.uuid4()
            a = StubAnswer(rid, cid, user_id, question, [text], end=status, revealed=1)
            self.answers[rid] = a
            self.order.append(rid)
        return cid

    # --- the API -------------------------------------------------------------------------------

    def _view(self, a: StubAnswer, since: int, attempt: int | None) -> ResponseView:
        restarted = attempt is not None and attempt != a.attempt
        text = a.text
        offset = 0 if restarted else min(since, len(text))
        return ResponseView(
            response_id=a.response_id, conversation_id=a.conversation_id, status=a.status, terminal=a.status in TERMINAL,
            attempt=a.attempt, text=text[offset:], offset=offset, next_offset=len(text), text_length=len(text),
            restarted=restarted, sources=a.sources if a.revealed or a.status in TERMINAL else [],
            error=a.error if a.status is ResponseStatus.FAILED else None,
            user_ttft_ms=120.0 if a.revealed else None, model_ttft_ms=80.0 if a.revealed else None,
            total_ms=2345.0 if a.status in TERMINAL else None, created_at=a.created_at, updated_at=datetime.now(UTC),
            poll_after_ms=0 if a.status in TERMINAL else a.poll_after_ms,
        )  # fmt: skip

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
            self.calls.append((request.method, request.url.path, dict(request.query_params), dict(request.headers)))
            path = request.url.path
            is_ingress = request.method == "POST"
            if (is_ingress and self.ingress_down) or (not is_ingress and self.status_down):
                return JSONResponse({"error": {"code": "unavailable", "message": "stub is down"}}, status_code=503)
            return await call_next(request) if path.startswith("/api/") else JSONResponse({}, status_code=404)

        def _missing() -> JSONResponse:
            return JSONResponse(
                {"error": {"code": "not_found", "message": "no such id for this user"}}, status_code=404
            )

        @app.post("/api/chat", status_code=202)
        def chat(
            body: ChatRequest, x_user_id: str = Header("anonymous"), idempotency_key: str | None = Header(None)
        ) -> ChatAccepted:
            with self._lock:
                self.asked.append((body, idempotency_key))
                rid = self.by_key.get((x_user_id, idempotency_key)) if idempotency_key else None
                if rid is None:
                    rid = uuid.uuid4()
                    script = self._scripts.pop(0) if self._scripts else {"chunks": ["Stub ", "answer."]}
                    a = StubAnswer(rid, body.conversation_id or uuid.uuid4(), x_user_id, body.message, **script)  # type: ignore[arg-type]
                    a.idempotency_key = idempotency_key
                    self.answers[rid] = a
                    self.order.append(rid)
                    if idempotency_key:
                        self.by_key[(x_user_id, idempotency_key)] = rid
                a = self.answers[rid]
            base = f"{self.url}/api/response/{rid}"
            return ChatAccepted(
                response_id=rid, conversation_id=a.conversation_id, poll_url=base, final_url=f"{base}/final", cancel_url=f"{base}/cancel"
            )  # fmt: skip

        @app.post("/api/response/{rid}/cancel", status_code=202, response_model=None)
        def cancel(rid: uuid.UUID, x_user_id: str = Header("anonymous")) -> CancelAccepted | JSONResponse:
            a = self.answers.get(rid)
            if a is None or a.user_id != x_user_id:
                return _missing()
            if a.status in TERMINAL:
                return CancelAccepted(
                    response_id=rid, status=a.status, cancelled=a.cancelled, message="the answer had already ended"
                )
            a.cancelled = True
            return CancelAccepted(
                response_id=rid, status=ResponseStatus.GENERATING, cancelled=True, message="cancel requested"
            )

        @app.get("/api/response/{rid}", response_model=None)
        def poll(
            rid: uuid.UUID, since: int = 0, attempt: int | None = None, x_user_id: str = Header("anonymous")
        ) -> ResponseView | JSONResponse:
            with self._lock:
                a = self.answers.get(rid)
                if a is None or a.user_id != x_user_id:
                    return _missing()
                view = self._view(a, since, attempt)
                if self.advance and a.status not in TERMINAL:
                    if a.queued_polls > 0:
                        a.queued_polls -= 1
                    else:
                        a.revealed += 1
                return view

        @app.get("/api/conversation/{cid}", response_model=None)
        def conversation(cid: uuid.UUID, x_user_id: str = Header("anonymous")) -> ConversationView | JSONResponse:
            turns = [self.answers[r] for r in self.order if self.answers[r].conversation_id == cid]
            if not turns or turns[0].user_id != x_user_id:
                return _missing()
            return ConversationView(
                conversation_id=cid,
                turns=[
                    TurnView(
                        response_id=a.response_id, question=a.question, status=a.status, text=a.text, sources=a.sources,
                        error=a.error if a.status is ResponseStatus.FAILED else None, created_at=a.created_at,
                        total_ms=2345.0 if a.status in TERMINAL else None,
                    )
                    for a in turns
                ],
            )  # fmt: skip

        @app.get("/api/conversations")
        def conversations(limit: int = 20, x_user_id: str = Header("anonymous")) -> list[ConversationSummary]:
            seen: dict[uuid.UUID, list[StubAnswer]] = {}
            for r in self.order:
                a = self.answers[r]
                if a.user_id == x_user_id:
                    seen.setdefault(a.conversation_id, []).append(a)
            items = [
                ConversationSummary(
                    conversation_id=cid, title=t[0].question, turn_count=len(t), updated_at=t[-1].created_at
                )
                for cid, t in seen.items()
            ]
            return sorted(items, key=lambda c: c.updated_at, reverse=True)[:limit]

        return app

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> RelayStub:
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            threading.Event().wait(0.02)
        raise TimeoutError("the relay stub did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RelayStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[StubAnswer]:
        return iter(self.answers[r] for r in self.order)
