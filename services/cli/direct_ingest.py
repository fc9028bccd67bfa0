"""``relay ingest`` without a running retriever: the retriever's own ingestion code, in this process.

Imported only when the document API is unreachable (it loads the embedder and opens Qdrant), and
built by the retriever's own ``build_embedder``/``build_store`` from its settings (``RETRIEVER_*``,
``QDRANT_*``), so the vectors land where, and as, the retriever searches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["ingest_files"]


async def ingest_files(files: Sequence[Path], *, notes: TextIO) -> list[tuple[str, int]]:
    """Ingest ``files`` into the retriever's vector store; returns (source, chunks) per file."""
    from services.retriever.app import build_embedder, build_store
    from services.retriever.ingestion import ingest_paths
    from services.retriever.settings import RetrieverSettings

    settings = RetrieverSettings()
    where = settings.qdrant_url or f"the folder {Path(settings.qdrant_path).resolve()}"
    notes.write(f"ingesting {len(files)} file(s) into Qdrant at {where}\n")
    notes.flush()
    embedder = build_embedder(settings)
    store = build_store(settings, embedder)
    try:
        await store.ensure_collection()
        done = await ingest_paths(
            files,
            store=store,
            embedder=embedder,
            max_chars=settings.chunk_max_chars,
            overlap_chars=settings.chunk_overlap_chars,
        )
    finally:
        await store.close()
    return [(d.source, d.chunks) for d in done]
