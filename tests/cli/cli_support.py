"""Helpers for the CLI tests: real servers in the test's event loop, a scripted status service, the CLI as a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.core.views import ResponseView
from services.devstack.ports import free_port

TERMINAL = {"completed", "truncated", "content_filtered", "failed", "cancelled"}


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop until the block ends; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server exited during start-up")
        assert time.monotonic() < deadline, "server did not start within 30 s"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Frame:
    """What the status service knows at one moment: the attempt's whole text so far and the state."""

    status: str
    text: str = ""
    attempt: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # sources, error, timings, usage, model, finish_reason


@dataclass
class StatusScript:
    """A scripted status service: each poll serves the current frame, then (``auto``) moves to the next."""

    frames: Sequence[Frame]
    auto: bool = True
    poll_after_ms: int = 20
    known: set[str] | None = None  # ids it answers for; None: any
    failures_left: int = 0  # answer 503 this many times first
    index: int = 0
    polls: list[tuple[str, int, int | None]] = field(default_factory=list)
    conversation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def advance(self) -> None:
        self.index = min(self.index + 1, len(self.frames) - 1)

    def view(self, rid: str, since: int, attempt: int | None) -> dict[str, Any]:
        f = self.frames[self.index]
        restart = since > 0 and ((attempt is not None and attempt != f.attempt) or since > len(f.text))
        start = 0 if restart else since
        body = ResponseView(
            response_id=uuid.UUID(rid),
            conversation_id=self.conversation_id,
            status=f.status,  # type: ignore[arg-type]
            terminal=f.status in TERMINAL,
            attempt=f.attempt,
            text=f.text[start:],
            offset=start,
            next_offset=len(f.text),
            text_length=len(f.text),
            restarted=restart,
            created_at=self.started,
            updated_at=datetime.now(UTC),
            poll_after_ms=0 if f.status in TERMINAL else self.poll_after_ms,
            **f.extra,
        )
        return body.model_dump(mode="json")


def status_stub(script: StatusScript) -> FastAPI:
    app = FastAPI()

    @app.get("/api/response/{rid}")
    async def poll(rid: str, since: int = 0, attempt: int | None = None) -> JSONResponse:
        script.polls.append((rid, since, attempt))
        if script.failures_left > 0:
            script.failures_left -= 1
            return JSONResponse({"error": {"code": "unavailable", "message": "database away"}}, status_code=503)
        if script.known is not None and rid not in script.known:
            return JSONResponse({"error": {"code": "not_found", "message": f"no response {rid}"}}, status_code=404)
        body = script.view(rid, since, attempt)
        if script.auto:
            script.advance()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return app


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "INGRESS_", "RETRIEVER_", "QDRANT_"))}
    return {**env, **extra}


@dataclass
class Cli:
    """The ``relay`` command running as its own process; stdout/stderr read as they come."""

    proc: asyncio.subprocess.Process
    out: str = ""
    err: str = ""

    async def read_until(self, needle: str, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never appeared on stdout; got {self.out!r}"
            try:
                chunk = await asyncio.wait_for(self.proc.stdout.read(4096), left)
            except TimeoutError:
                continue
            assert chunk, f"stdout closed before {needle!r} appeared; got {self.out!r}"
            self.out += chunk.decode()
        return self.out

    async def finish(self, timeout: float = 60.0) -> int:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        self.out += out.decode()
        self.err += err.decode()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def start_cli(*args: str, env: dict[str, str], cwd: Path) -> Cli:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Cli(proc)


async def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    cli = await start_cli(*args, env=env, cwd=cwd)
    code = await cli.finish(timeout)
    return code, cli.out, cli.err
