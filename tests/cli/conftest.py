"""Fixtures for the CLI tests: a real ingress on the real nats-server and a scripted status service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from cli_support import StatusScript, cli_env, serving, status_stub
from nats.js import JetStreamContext

from services.devstack.nats import NatsServer
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings


@pytest.fixture
async def ingress_url(nats_server: NatsServer, js: JetStreamContext) -> AsyncIterator[str]:
    """A real ingress on ``nats_server`` (stream declared by ``js``)."""
    settings = IngressSettings(
        _env_file=None,  # type: ignore[call-arg]
        NATS_URL=nats_server.url,
        RELAY_STREAM_MAX_AGE_S=3600,
        RELAY_DUPLICATE_WINDOW_S=120,
        INGRESS_DEFAULT_MODEL="smollm2-135m-instruct",
        id_secret="secret-for-tests",
    )
    async with serving(build_app(settings)) as url:
        yield url


StatusFactory = Callable[[StatusScript], AbstractAsyncContextManager[str]]


@pytest.fixture
def status_service() -> StatusFactory:
    """``async with status_service(script) as url``: a real HTTP server answering the polls from ``script``."""

    @asynccontextmanager
    async def _start(script: StatusScript) -> AsyncIterator[str]:
        async with serving(status_stub(script)) as url:
            yield url

    return _start


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the CLI runs: away from any ``.env`` of the checkout."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def env_for() -> Callable[..., dict[str, str]]:
    def _env(ingress: str = "http://127.0.0.1:9", status: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
        return cli_env(RELAY_INGRESS_URL=ingress, RELAY_STATUS_URL=status, **extra)

    return _env
