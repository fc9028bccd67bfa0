"""The whole stack for end-to-end tests: real NATS, PostgreSQL, the four services, a scripted provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.devstack.scripted_provider import ScriptedProvider
from services.devstack.stack import Stack


@pytest.fixture(scope="module")
def provider() -> Iterator[ScriptedProvider]:
    """The OpenAI-compatible provider every answer of the module streams from."""
    with ScriptedProvider() as p:
        yield p


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, provider: ScriptedProvider, corpus_dir: Path) -> Iterator[Stack]:
    """The four services on free ports against a throw-away NATS and PostgreSQL; corpus loaded."""
    env = {
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_MODEL": "scripted",
        "INGRESS_DEFAULT_MODEL": "scripted",
        "INGRESS_ALLOWED_MODELS": "scripted",
        "RETRIEVER_SEED_DIR": str(corpus_dir),
    }
    with Stack.isolated(tmp_path_factory.mktemp("stack"), env=env, ui=False) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_script(request: pytest.FixtureRequest) -> None:
    if "provider" in request.fixturenames:
        request.getfixturevalue("provider").reset()


@pytest.fixture
async def ingress(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url_of("ingress"), timeout=10) as c:
        yield c


@pytest.fixture
async def status(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url_of("status"), timeout=10) as c:
        yield c
