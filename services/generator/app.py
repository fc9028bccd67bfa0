"""Wiring of the generator: NATS, the topology, the model adapter, the consumer and the probe server.

``python -m services.generator`` (or ``relay-generator``) runs it; SIGTERM/SIGINT drain it.
Probes on ``GENERATOR_PORT`` (default 8704): ``/health``, ``/ready`` (NATS connected), ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from nats.aio.client import Client as NATS

from services.core import bus, contracts
from services.core.logs import configure_logging
from services.core.probes import serve_probes
from services.generator.consumer import GeneratorConsumer
from services.generator.handlers import AnswerHandler
from services.generator.history import HistorySource, NatsHistory
from services.generator.openai_chat import ChatModel, OpenAIChat
from services.generator.settings import GeneratorSettings

__all__ = ["GeneratorApp", "build_app", "main"]

log = logging.getLogger(__name__)

_CONNECT_ATTEMPTS = 30


def _check_port_free(host: str, port: int) -> None:
    """Fail with a sentence instead of uvicorn exiting the process from inside a task."""
    if port == 0:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"GENERATOR_PORT {port} on {host} is taken ({exc.strerror}): set GENERATOR_PORT"
            ) from exc


class GeneratorApp:
    """``await app.run(stop)`` until ``stop`` is set; the model and history sources can be injected."""

    def __init__(
        self, settings: GeneratorSettings, *, chat_model: ChatModel | None, history: HistorySource | None
    ) -> None:
        self.settings = settings
        self._chat_model = chat_model
        self._history = history
        self.nc: NATS | None = None
        self.handler: AnswerHandler | None = None

    async def ready(self) -> str | None:
        if self.nc is None or not self.nc.is_connected:
            return "NATS is not connected"
        return None

    async def _connect(self) -> NATS:
        for i in range(_CONNECT_ATTEMPTS):
            try:
                return await bus.connect(self.settings.nats_url, name=self.settings.service_name)
            except Exception as exc:
                if i == _CONNECT_ATTEMPTS - 1:
                    raise RuntimeError(f"cannot reach NATS at {self.settings.nats_url}: {exc}") from exc
                log.warning("NATS at %s not reachable yet (%s); retrying", self.settings.nats_url, exc)
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        _check_port_free(s.host, s.port)
        self.nc = nc = await self._connect()
        own_model = self._chat_model is None
        model = self._chat_model or OpenAIChat(
            base_url=s.openai_base_url,
            api_key=s.api_key,
            max_retries=s.provider_max_retries,
            stall_timeout_s=s.stall_timeout_s,
            connect_timeout_s=s.provider_connect_timeout_s,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
        )
        probes_stop = asyncio.Event()
        probes = asyncio.create_task(serve_probes(self.ready, host=s.host, port=s.port, stop=probes_stop))
        try:
            js = nc.jetstream()
            await bus.ensure_stream(
                js, contracts.stream_config(max_age_s=s.stream_max_age_s, duplicate_window_s=s.duplicate_window_s)
            )
            await bus.ensure_consumer(
                js,
                contracts.STREAM,
                contracts.generator_consumer(ack_wait_s=s.ack_wait_s, max_deliver=s.max_deliver),
                update_on_drift=s.update_consumers_on_drift,
            )
            history = self._history or NatsHistory(nc, timeout_s=s.history_timeout_s, attempts=s.history_attempts)
            self.handler = AnswerHandler(js=js, model=model, history=history, settings=s)
            log.info("generator %s consuming (concurrency %d, model %s)", s.worker_id, s.concurrency, s.openai_model)
            await GeneratorConsumer(nc=nc, js=js, handler=self.handler, settings=s).run(stop)
        finally:
            probes_stop.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(probes, 5)
            if own_model:
                with contextlib.suppress(Exception):
                    await model.close()
            with contextlib.suppress(Exception):
                await nc.close()
            log.info("generator stopped")


def build_app(
    settings: GeneratorSettings, *, chat_model: ChatModel | None = None, history: HistorySource | None = None
) -> GeneratorApp:
    return GeneratorApp(settings, chat_model=chat_model, history=history)


def main() -> None:
    settings = GeneratorSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the openai client's transport logs every request

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await build_app(settings).run(stop)

    asyncio.run(run())
