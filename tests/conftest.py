"""Shared fixtures: a real nats-server (fresh JetStream store per test) and a real PostgreSQL.

PostgreSQL: one throw-away cluster per test session (fsync off: tests measure behaviour, not
durability of the disk), a fresh database per test. Set ``TEST_DATABASE_URL`` to use an existing
server instead (each test still gets its own database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.core import bus, contracts
from services.devstack.nats import NatsServer
from services.devstack.postgres import LocalPostgres

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port and a throw-away store."""
    with NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log") as srv:
        yield srv


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    """A client connected to ``nats_server``."""
    client = await bus.connect(nats_server.url, name="tests")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    """JetStream on ``nc`` with the RELAY stream declared."""
    ctx = nc.jetstream()
    await bus.ensure_stream(ctx, contracts.stream_config(max_age_s=3600, duplicate_window_s=120))
    return ctx


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres | None]:
    """One throw-away PostgreSQL cluster for the session (None when TEST_DATABASE_URL is set)."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    with LocalPostgres(tmp_path_factory.mktemp("pg") / "data", fsync=False) as pg:
        yield pg


@pytest.fixture
def database_url(postgres_server: LocalPostgres | None) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    admin = os.environ.get("TEST_DATABASE_URL") or (postgres_server.dsn() if postgres_server else "")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The sample legal texts shipped beside the checkout."""
    path = CORPUS / "licenses"
    assert path.is_dir(), f"sample corpus missing at {path}"
    return path
