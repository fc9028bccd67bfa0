"""The retriever's document API: ``POST /api/documents`` (ingest/replace) and ``GET /api/documents`` (list).

Local Qdrant lets one client hold its folder, so while the retriever runs every ingestion goes
through here (``relay ingest`` does). Ingestions run one at a time; questions keep being answered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.core.errors import RelayError
from services.core.http import ApiError
from services.core.views import ErrorBody, has_lone_surrogate
from services.retriever.embedders import Embedder
from services.retriever.ingestion import SUFFIXES, Document, DocumentError, ingest_documents
from services.retriever.qdrant_store import VectorStore

__all__ = [
    "router",
    "DocumentService",
    "DocumentIn",
    "DocumentsIn",
    "IngestedView",
    "DocumentsIngested",
    "DocumentList",
]

MAX_DOCUMENTS_PER_REQUEST = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(_Body):
    source: str = Field(description="The file name citations show, e.g. `GPL-3.txt`; ingesting it again replaces it.")
    text: str = Field(description="The document's text (UTF-8).")

    @field_validator("source")
    @classmethod
    def _file_name(cls, v: str) -> str:
        v = v.strip()
        _no_lone_surrogates(v)
        if not v or len(v) > 255:
            raise ValueError("must be a file name of 1–255 characters")
        if "/" in v or "\\" in v or v in (".", "..") or any(ord(c) < 32 for c in v):
            raise ValueError("must be a bare file name such as 'GPL-3.txt', without folders or control characters")
        if PurePath(v).suffix.lower() not in SUFFIXES:
            raise ValueError(f"must end in {', '.join(SUFFIXES)} (only text and Markdown documents are ingested)")
        return v

    @field_validator("text")
    @classmethod
    def _has_text(cls, v: str) -> str:
        _no_lone_surrogates(v)
        if not v.strip():
            raise ValueError("is empty: a document needs some text")
        return v


def _no_lone_surrogates(v: str) -> None:
    if has_lone_surrogate(v):
        raise ValueError("contains an invalid Unicode escape (a lone surrogate such as \\ud800)")


class DocumentsIn(_Body):
    """``POST /api/documents``."""

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_REQUEST)


class IngestedView(_Body):
    source: str
    chunks: int


class DocumentsIngested(_Body):
    ingested: list[IngestedView]


class DocumentList(_Body):
    """``GET /api/documents``: every source with its number of chunks."""

    documents: list[IngestedView]
    total_chunks: int


@dataclass
class DocumentService:
    """What the routes need; the app's lifespan builds it."""

    store: VectorStore
    embedder: Embedder
    max_chars: int
    overlap_chars: int
    max_document_chars: int
    lock: asyncio.Lock

    async def ingest(self, docs: list[Document]) -> list[IngestedView]:
        async with self.lock:  # one ingestion at a time: a source is never written by two at once
            done = await ingest_documents(
                docs,
                store=self.store,
                embedder=self.embedder,
                max_chars=self.max_chars,
                overlap_chars=self.overlap_chars,
            )
        return [IngestedView(source=d.source, chunks=d.chunks) for d in done]


def _service(request: Request) -> DocumentService:
    service: DocumentService | None = getattr(request.app.state, "documents", None)
    if service is None:
        raise ApiError(503, "not_ready", "the retriever is still starting; retry in a few seconds")
    return service


Service = Annotated[DocumentService, Depends(_service)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "A document cannot be ingested (two with the same name, no text, too long); the message says which.",
        422: "The body is not valid JSON, or a field is missing, of the wrong type, or invalid (e.g. `source` not a .txt/.md name).",
        503: "The vector store or the embedder is unavailable; nothing was changed for the failing document.",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


router = APIRouter(prefix="/api/documents", tags=["documents"])


@router.post("", summary="Ingest or replace documents", responses=_errors(400, 422, 503))
async def post_documents(body: DocumentsIn, service: Service) -> DocumentsIngested:
    """Chunk, embed and store each document. A source already present is replaced, never duplicated."""
    for d in body.documents:
        if len(d.text) > service.max_document_chars:
            raise ApiError(
                400,
                "document_too_large",
                f"{d.source}: {len(d.text)} characters is more than RETRIEVER_MAX_DOCUMENT_CHARS ({service.max_document_chars})",
            )
    docs = [Document(source=d.source, text=d.text) for d in body.documents]
    try:
        ingested = await service.ingest(docs)
    except DocumentError as exc:
        raise ApiError(400, "invalid_document", str(exc)) from exc
    except RelayError as exc:
        raise ApiError(503, "store_unavailable", exc.message, headers={"Retry-After": "5"}) from exc
    return DocumentsIngested(ingested=ingested)


@router.get("", summary="List ingested documents", responses=_errors(503))
async def get_documents(service: Service) -> DocumentList:
    try:
        sources = await service.store.sources()
    except RelayError as exc:
        raise ApiError(503, "store_unavailable", exc.message, headers={"Retry-After": "5"}) from exc
    views = [IngestedView(source=s, chunks=n) for s, n in sources.items()]
    return DocumentList(documents=views, total_chunks=sum(v.chunks for v in views))
