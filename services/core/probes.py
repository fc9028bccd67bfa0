"""/health, /ready and /metrics for any service; workers without an API serve them with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response

from services.core.metrics import metrics_response

__all__ = ["ReadyCheck", "probe_router", "serve_probes"]

#: Returns None when ready, else a sentence saying which dependency is not reachable.
ReadyCheck = Callable[[], Awaitable[str | None]]


def probe_router(ready: ReadyCheck) -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/health", summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="Dependencies are reachable")
    async def ready_probe() -> Response:
        problem = await ready()
        if problem:
            return JSONResponse({"status": "unavailable", "detail": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response()

    return router


async def serve_probes(ready: ReadyCheck, *, host: str, port: int, stop: asyncio.Event) -> None:
    """Run a tiny probe server until ``stop`` is set (for services that are only consumers)."""
    app = FastAPI(title="probes", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(probe_router(ready))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    # the service owns SIGTERM/SIGINT (it drains first); uvicorn must not take them over
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
