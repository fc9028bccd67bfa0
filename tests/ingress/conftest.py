"""Fixtures for the ingress tests: the real ingress app served by uvicorn on a free port, on real NATS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ingress_support import ingress_settings, serving
from nats.js import JetStreamContext

from services.devstack.nats import NatsServer
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings


@dataclass
class Ingress:
    url: str
    settings: IngressSettings
    http: httpx.AsyncClient


IngressFactory = Callable[..., contextlib.AbstractAsyncContextManager[Ingress]]


@pytest.fixture
def start_ingress(nats_server: NatsServer) -> IngressFactory:
    """``async with start_ingress(**settings) as ingress`` runs a real ingress on ``nats_server``."""

    @contextlib.asynccontextmanager
    async def _start(**overrides: Any) -> AsyncIterator[Ingress]:
        settings = ingress_settings(nats_server.url, **overrides)
        async with serving(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=15) as client:
            yield Ingress(url, settings, client)

    return _start


@pytest.fixture
async def ingress(start_ingress: IngressFactory, js: JetStreamContext) -> AsyncIterator[Ingress]:
    """A real ingress with the default test settings (the stream already declared by ``js``)."""
    async with start_ingress() as running:
        yield running
