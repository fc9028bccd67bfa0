"""The document API over real HTTP: ingest, replace, list; bad input gets a 4xx that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import JetStreamContext
from retriever_support import RetrieverFactory, eventually

from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import QdrantStore

LICENCE = "1. Scope.\n\nThis licence covers the garden shed.\n\n2. Paint.\n\nThe door must stay green.\n"


async def test_posted_documents_are_listed_with_their_chunk_counts_and_replaced_on_repost(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    async with start_retriever() as r:
        first = await r.http.post(
            "/api/documents",
            json={
                "documents": [
                    {"source": "shed.txt", "text": LICENCE * 8},
                    {"source": "notes.md", "text": "# Notes\n\nHi."},
                ]
            },
        )
        assert first.status_code == 200, first.text
        counts = {d["source"]: d["chunks"] for d in first.json()["ingested"]}
        assert counts["shed.txt"] > 1 and counts["notes.md"] == 1

        again = await r.http.post("/api/documents", json={"documents": [{"source": "shed.txt", "text": LICENCE}]})
        assert again.json() == {"ingested": [{"source": "shed.txt", "chunks": 1}]}

        listed = (await r.http.get("/api/documents")).json()
        assert listed == {
            "documents": [{"source": "notes.md", "chunks": 1}, {"source": "shed.txt", "chunks": 1}],
            "total_chunks": 2,
        }


@pytest.mark.parametrize(
    "body,status,says",
    [
        ({"documents": []}, 422, "documents"),
        ({"documents": [{"source": "../etc/passwd.txt", "text": "x"}]}, 422, "bare file name"),
        ({"documents": [{"source": "report.pdf", "text": "x"}]}, 422, "must end in .txt"),
        ({"documents": [{"source": "a.txt", "text": "   "}]}, 422, "is empty"),
        ({"documents": [{"source": "a.txt"}]}, 422, "documents.0.text"),
        ({"documents": [{"source": "a.txt", "text": 5}]}, 422, "documents.0.text"),
        ({"documents": [{"source": "a.txt", "text": "x", "extra": 1}]}, 422, "extra"),
        (
            {"documents": [{"source": "a.txt", "text": "x"}, {"source": "a.txt", "text": "y"}]},
            400,
            "two documents are named",
        ),
        ({"documents": [{"source": "big.txt", "text": "x" * 5001}]}, 400, "RETRIEVER_MAX_DOCUMENT_CHARS"),
    ],
)
async def test_bad_documents_are_refused_with_a_message(
    js: JetStreamContext, start_retriever: RetrieverFactory, body: dict, status: int, says: str
) -> None:
    async with start_retriever(max_document_chars=5000) as r:
        response = await r.http.post("/api/documents", json=body)
        assert response.status_code == status, response.text
        assert says in response.json()["error"]["message"]
        assert (await r.http.get("/api/documents")).json()["documents"] == []


async def test_a_body_that_is_not_json_is_refused(js: JetStreamContext, start_retriever: RetrieverFactory) -> None:
    async with start_retriever() as r:
        response = await r.http.post(
            "/api/documents", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert "not valid JSON" in response.json()["error"]["message"]


async def test_a_failing_store_answers_503_with_the_cause(
    js: JetStreamContext, start_retriever: RetrieverFactory, store: QdrantStore
) -> None:
    async with start_retriever(store=store) as r:
        await store.client.close()
        response = await r.http.post("/api/documents", json={"documents": [{"source": "a.txt", "text": "text"}]})
        assert response.status_code == 503
        assert "vector store failed" in response.json()["error"]["message"]


async def test_the_seed_folder_is_loaded_into_an_empty_collection_and_ready_waits_for_it(
    js: JetStreamContext, start_retriever: RetrieverFactory, tmp_path: Path
) -> None:
    (tmp_path / "shed.txt").write_text(LICENCE)
    (tmp_path / "pond.md").write_text("# Pond\n\nNo swimming.\n")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    async with start_retriever(seed_dir=str(tmp_path)) as r:

        async def ready() -> bool:
            return (await r.http.get("/ready")).status_code == 200

        await eventually(ready, timeout=60)
        listed = (await r.http.get("/api/documents")).json()
        assert [d["source"] for d in listed["documents"]] == ["pond.md", "shed.txt"]


async def test_the_seed_folder_is_not_loaded_again_when_documents_exist(
    js: JetStreamContext, start_retriever: RetrieverFactory, store: QdrantStore, embedder: Embedder, tmp_path: Path
) -> None:
    from services.retriever.ingestion import Document, ingest_documents

    await ingest_documents([Document("mine.txt", "My own document.")], store=store, embedder=embedder)
    (tmp_path / "seed.txt").write_text(LICENCE)
    async with start_retriever(store=store, seed_dir=str(tmp_path)) as r:

        async def ready() -> bool:
            return (await r.http.get("/ready")).status_code == 200

        await eventually(ready, timeout=60)
        assert [d["source"] for d in (await r.http.get("/api/documents")).json()["documents"]] == ["mine.txt"]


async def test_health_and_ready_probes_answer(js: JetStreamContext, start_retriever: RetrieverFactory) -> None:
    async with start_retriever() as r:
        assert (await r.http.get("/health")).json() == {"status": "ok"}
        assert (await r.http.get("/ready")).json() == {"status": "ready"}
