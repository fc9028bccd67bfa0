"""Wiring of the status service: ``build_app(settings)``, its lifespan, and ``main()``.

Start-up: wait for PostgreSQL (bounded), apply the migrations, declare the stream and the durable
``status`` consumer, then run the consumer loop, the history responder, the sweeper and retention.
Shutdown (SIGTERM/SIGINT via uvicorn): stop fetching, finish the flush in hand, drain NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import bus, contracts
from services.core.errors import TransientError
from services.core.http import error_response, install_http_conventions, serve_until_signalled
from services.core.logs import configure_logging
from services.core.probes import probe_router
from services.status import jobs, routes
from services.status.advisories import watch_exhausted_deliveries
from services.status.handlers import StatusConsumer, serve_history
from services.status.postgres_store import PostgresStore, apply_migrations, wait_for_database
from services.status.settings import StatusSettings
from services.status.store import ResponseStore

__all__ = ["build_app", "main"]

log = logging.getLogger(__name__)


@dataclass
class _Runtime:
    nc: NATS
    store: ResponseStore
    owns_store: bool
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    rpc: Subscription | None = None
    advisories: Subscription | None = None

    async def close(self) -> None:
        self.stop.set()
        for sub in (self.rpc, self.advisories):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        _, pending = await asyncio.wait(self.tasks, timeout=10) if self.tasks else (set(), set())
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        if self.owns_store:
            await self.store.close()


async def _start(settings: StatusSettings, store: ResponseStore | None) -> tuple[_Runtime, routes.Deps]:
    owns = store is None
    if store is None:
        await wait_for_database(settings.database_url, timeout_s=settings.db_wait_s)
        applied = await apply_migrations(settings.database_url, settings.migrations_dir)
        if applied:
            log.info("schema migrated: %s", ", ".join(applied))
        store = await PostgresStore.open(
            settings.database_url, max_size=settings.pool_size, timeout_s=settings.db_timeout_s
        )
    try:
        nc = await bus.connect(settings.nats_url, name=settings.service_name)
    except BaseException:
        if owns:
            await store.close()
        raise
    rt = _Runtime(nc=nc, store=store, owns_store=owns)
    try:
        js = nc.jetstream()
        await bus.ensure_stream(
            js,
            contracts.stream_config(
                max_age_s=settings.stream_max_age_s, duplicate_window_s=settings.duplicate_window_s
            ),
        )
        rt.rpc = await serve_history(nc, store, max_turns=settings.history_max_turns)
        if settings.consume:
            rt.tasks = await _background(settings, store, js, rt.stop)
            rt.advisories = await watch_exhausted_deliveries(nc, js)
    except BaseException:
        await rt.close()
        raise
    return rt, routes.Deps(store=store, nc=nc, js=js)


class _NoStore:
    """Every ``/api/`` answer carries ``Cache-Control: no-store`` (errors included); plain ASGI, no copying."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, send_no_store)


async def _background(
    settings: StatusSettings, store: ResponseStore, js: JetStreamContext, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """The fold loop and the jobs that belong with it (only where this process folds)."""
    wanted = contracts.status_consumer(ack_wait_s=settings.ack_wait_s)
    await bus.ensure_consumer(js, contracts.STREAM, wanted, update_on_drift=settings.update_consumers_on_drift)
    consumer = StatusConsumer(store, await bus.bind(js, contracts.STREAM, wanted.durable_name or "status"), settings)
    sweeper = jobs.run_sweeper(
        store,
        js,
        stall_after_s=settings.stall_after_s,
        every_s=settings.sweep_every_s,
        caught_up=lambda: consumer.caught_up,
        stop=stop,
    )
    retention = jobs.run_retention(
        store, max_age_s=settings.retention_days * 86400, every_s=settings.retention_every_s, stop=stop
    )
    return [
        asyncio.create_task(consumer.run(stop), name="status-consumer"),
        asyncio.create_task(sweeper, name="status-sweeper"),
        asyncio.create_task(retention, name="status-retention"),
    ]


def build_app(settings: StatusSettings, *, store: ResponseStore | None = None) -> FastAPI:
    """The status API; the lifespan owns NATS, the pool (unless ``store`` is given) and the loops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt, deps = await _start(settings, store)
        app.state.deps = deps
        log.info("status service ready on %s:%d", settings.host, settings.port)
        try:
            yield
        finally:
            app.state.deps = None
            await rt.close()
            log.info("status service stopped")

    app = FastAPI(
        title="llm-relay status",
        description="Polling API: an answer's state and text from an offset, the final answer, conversations.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_http_conventions(app)

    app.add_middleware(_NoStore)

    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable for a request: %s", exc)
        return error_response(503, "unavailable", "the database is not reachable; retry shortly", {"Retry-After": "1"})

    app.add_exception_handler(TransientError, _db_down)
    app.add_exception_handler(psycopg.Error, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)

    async def ready() -> str | None:
        deps: routes.Deps | None = getattr(app.state, "deps", None)
        if deps is None:
            return "starting"
        if not deps.nc.is_connected:
            return "NATS is not connected"
        try:
            await asyncio.wait_for(deps.store.ping(), timeout=2.0)
        except Exception as exc:
            return f"PostgreSQL is not reachable: {type(exc).__name__}"
        return None

    app.include_router(routes.router)
    app.include_router(probe_router(ready))
    return app


def main() -> None:
    settings = StatusSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    asyncio.run(_serve(settings))


async def _serve(settings: StatusSettings) -> None:
    """Run until SIGTERM/SIGINT; the lifespan then drains the consumer, and the process exits 0."""
    await serve_until_signalled(build_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
