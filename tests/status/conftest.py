"""Fixtures for the status service tests (helpers in ``status_helpers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from status_helpers import Pipeline, StatusService, make_settings, run_status

from services.devstack.nats import NatsServer
from services.status.settings import StatusSettings


@pytest.fixture
def status_settings(nats_server: NatsServer, database_url: str) -> StatusSettings:
    """Settings for a status service on the test's nats-server and fresh database."""
    return make_settings(nats_server.url, database_url)


@pytest.fixture
async def status(status_settings: StatusSettings, js: JetStreamContext) -> AsyncIterator[StatusService]:
    """The status service, folding and serving."""
    async with run_status(status_settings) as svc:
        yield svc


@pytest.fixture
def pipeline(js: JetStreamContext) -> Pipeline:
    """Publishes pipeline events to the test's JetStream."""
    return Pipeline(js)
