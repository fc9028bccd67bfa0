"""Load ``.txt``/``.md`` documents into the vector store: read, chunk, embed, replace the source's points.

``ingest_paths`` is for direct use when no retriever runs (local Qdrant allows one client per folder:
while the retriever runs, ingest through its ``POST /api/documents``, which calls ``ingest_documents``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.retriever.chunking import chunk_document, document_title, embedding_text
from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import VectorStore

__all__ = [
    "SUFFIXES",
    "Document",
    "Ingested",
    "DocumentError",
    "collect_files",
    "read_documents",
    "ingest_documents",
    "ingest_paths",
]

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".markdown")
_EMBED_BATCH = 4


class DocumentError(ValueError):
    """A document cannot be ingested (wrong type, unreadable, empty, duplicate name); the message says which."""


@dataclass(frozen=True)
class Document:
    source: str  # the name citations show: the file name, e.g. "GPL-3.txt"
    text: str


@dataclass(frozen=True)
class Ingested:
    source: str
    chunks: int


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.txt``/``.md`` files named, and those under the folders named (sorted, recursive)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DocumentError(f"{path}: only {', '.join(SUFFIXES)} files can be ingested")
            files.append(path)
        else:
            raise DocumentError(f"{path}: no such file or folder")
    return files


def read_documents(paths: Iterable[str | Path]) -> list[Document]:
    docs: list[Document] = []
    for f in collect_files(paths):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{f}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        docs.append(Document(source=f.name, text=text))
    return docs


def _check(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for d in docs:
        if d.source in seen:
            raise DocumentError(f"two documents are named {d.source!r}: the source name must be unique")
        seen.add(d.source)


async def ingest_documents(
    docs: Sequence[Document],
    *,
    store: VectorStore,
    embedder: Embedder,
    max_chars: int = 1200,
    overlap_chars: int = 200,
) -> list[Ingested]:
    """Chunk every document first (so a bad one is refused before anything is written), then embed and store each."""
    _check(docs)
    planned = []
    for doc in docs:
        chunks = chunk_document(doc.source, doc.text, max_chars=max_chars, overlap_chars=overlap_chars)
        if not chunks:
            raise DocumentError(f"{doc.source}: the document has no text")
        planned.append((doc, chunks))
    out: list[Ingested] = []
    for doc, chunks in planned:
        title = document_title(doc.source, doc.text)
        inputs = [embedding_text(c, title) for c in chunks]
        vectors: list[list[float]] = []
        for i in range(0, len(inputs), _EMBED_BATCH):  # small batches: questions get the embedder in between
            vectors.extend(await embedder.embed_passages(inputs[i : i + _EMBED_BATCH]))
        written = await store.replace_source(doc.source, chunks, vectors)
        log.info("ingested %s: %d chunks", doc.source, written)
        out.append(Ingested(doc.source, written))
    return out


async def ingest_paths(
    paths: Iterable[str | Path],
    *,
    store: VectorStore,
    embedder: Embedder,
    max_chars: int = 1200,
    overlap_chars: int = 200,
) -> list[Ingested]:
    """Ingest files and folders straight into ``store`` (``relay ingest`` when no retriever is running)."""
    return await ingest_documents(
        read_documents(paths), store=store, embedder=embedder, max_chars=max_chars, overlap_chars=overlap_chars
    )
