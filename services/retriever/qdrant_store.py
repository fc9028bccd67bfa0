"""The vector store the retriever searches: a small Protocol and its Qdrant adapter.

    CollectionMismatchError   the collection holds vectors of another size/embedder (start-up error)
    StoreLockedError          local mode: another client of this process or machine holds the folder

Point ids are uuid5(source, position), so re-ingesting a document overwrites its chunks in place and
then deletes the positions it no longer has: a document is replaced, never duplicated, and it is
never missing from search while that happens. Local mode (``path=``) commits every point it writes,
so points go in batches.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.core.contracts import FailureCode
from services.core.errors import PermanentError, TransientError
from services.retriever.chunking import Chunk

__all__ = [
    "VectorStore",
    "StoredHit",
    "QdrantStore",
    "CollectionMismatchError",
    "StoreLockedError",
    "open_qdrant_client",
    "point_id",
]

log = logging.getLogger(__name__)

_ID_NAMESPACE = uuid.UUID("5b0c6f0e-2f5e-4a53-9a51-6c1f1f7c0d11")


class CollectionMismatchError(RuntimeError):
    """The stored collection was made for other vectors than the configured embedder produces."""


class StoreLockedError(RuntimeError):
    """Qdrant's local folder is held by another client (only one per folder)."""


@dataclass(frozen=True)
class StoredHit:
    text: str
    source: str
    position: int
    heading: str | None
    score: float


class VectorStore(Protocol):
    async def ensure_collection(self) -> None:
        """Create the collection, or check that the existing one fits the embedder."""

    async def replace_source(self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> int:
        """Make ``chunks`` the only points of ``source``; returns how many were written."""

    async def search(
        self, vector: Sequence[float], *, limit: int, score_threshold: float | None = None
    ) -> list[StoredHit]: ...

    async def sources(self) -> dict[str, int]:
        """Every ingested source with its number of chunks."""

    async def count(self) -> int: ...

    async def close(self) -> None: ...


def point_id(source: str, position: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source}\0{position}"))


def open_qdrant_client(*, url: str | None, api_key: str | None, path: str) -> AsyncQdrantClient:
    """A server when ``url`` is set; else local mode in ``path`` (``:memory:`` keeps nothing)."""
    if url:
        return AsyncQdrantClient(url=url, api_key=api_key)
    if path == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    Path(path).mkdir(parents=True, exist_ok=True)
    try:
        return AsyncQdrantClient(path=path)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreLockedError(
            f"the Qdrant folder {path} is in use by another process (a running retriever?). "
            "Ingest through the retriever's POST /api/documents (`relay ingest` does), stop it first, "
            "or point RETRIEVER_QDRANT_PATH elsewhere"
        ) from exc


def _classify(exc: Exception, doing: str) -> Exception:
    """Qdrant down or overloaded → TransientError (retry); a refused request → PermanentError."""
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code or 0
        if status == 429 or status >= 500:
            return TransientError(f"Qdrant failed while {doing} ({status})", code=FailureCode.RETRIEVAL_FAILED)
        return PermanentError(
            f"Qdrant refused {doing} ({status}): {exc.content[:200]!r}", code=FailureCode.RETRIEVAL_FAILED
        )
    if isinstance(exc, ResponseHandlingException | httpx.TransportError | ConnectionError | TimeoutError | OSError):
        return TransientError(f"Qdrant is unreachable while {doing}: {exc}", code=FailureCode.RETRIEVAL_FAILED)
    if type(exc).__module__.startswith("grpc"):
        return TransientError(f"Qdrant (gRPC) failed while {doing}: {exc}", code=FailureCode.RETRIEVAL_FAILED)
    return PermanentError(f"the vector store failed while {doing}: {exc}", code=FailureCode.RETRIEVAL_FAILED)


class QdrantStore:
    """``VectorStore`` on one Qdrant collection (cosine), sized for one embedder."""

    def __init__(
        self,
        client: AsyncQdrantClient,
        *,
        collection: str,
        dimension: int,
        embedder_name: str,
        remote: bool = False,
        upsert_batch: int = 128,
    ) -> None:
        self.client = client
        self.collection = collection
        self.dimension = dimension
        self.embedder_name = embedder_name
        self.remote = remote
        self.upsert_batch = upsert_batch

    async def ensure_collection(self) -> None:
        if not await self.client.collection_exists(self.collection):
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.dimension, distance=models.Distance.COSINE),
                metadata={"embedder": self.embedder_name, "dimension": self.dimension},
            )
            if self.remote:  # filters and facets on `source` need an index on a server (local mode has none)
                await self.client.create_payload_index(self.collection, "source", models.PayloadSchemaType.KEYWORD)
                await self.client.create_payload_index(self.collection, "position", models.PayloadSchemaType.INTEGER)
            log.info(
                "created Qdrant collection %s (%d-d, cosine, %s)", self.collection, self.dimension, self.embedder_name
            )
            return
        info = await self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        stored_embedder = (info.config.metadata or {}).get("embedder")
        if size != self.dimension:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} holds {size or 'named'}-dimensional vectors"
                f"{f' from {stored_embedder}' if stored_embedder else ''}, but the embedder {self.embedder_name} "
                f"makes {self.dimension}-dimensional ones. Either set RETRIEVER_COLLECTION to a new collection name "
                "and re-ingest, or delete the collection (local mode: remove the RETRIEVER_QDRANT_PATH folder) "
                "and re-ingest, or switch RETRIEVER_EMBEDDER back."
            )
        if stored_embedder and stored_embedder != self.embedder_name:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} was filled by {stored_embedder}, but the embedder is now "
                f"{self.embedder_name}: their vectors are not comparable. Set RETRIEVER_COLLECTION to a new name "
                "and re-ingest, delete the collection and re-ingest, or switch RETRIEVER_EMBEDDER back."
            )

    async def replace_source(self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> int:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        points = [
            models.PointStruct(
                id=point_id(source, c.position),
                vector=list(map(float, v)),
                payload={
                    "source": source,
                    "position": c.position,
                    "heading": c.heading,
                    "text": c.text,
                    "start": c.start,
                    "end": c.end,
                },
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        try:
            for i in range(0, len(points), self.upsert_batch):
                await self.client.upsert(self.collection, points=points[i : i + self.upsert_batch], wait=True)
            stale = models.Filter(
                must=[
                    models.FieldCondition(key="source", match=models.MatchValue(value=source)),
                    models.FieldCondition(key="position", range=models.Range(gte=len(points))),
                ]
            )
            await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=stale), wait=True)
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise _classify(exc, f"storing {source}") from exc
        return len(points)

    async def search(
        self, vector: Sequence[float], *, limit: int, score_threshold: float | None = None
    ) -> list[StoredHit]:
        try:
            result = await self.client.query_points(
                self.collection,
                query=list(map(float, vector)),
                limit=limit,
                score_threshold=score_threshold,
                with_payload=True,
            )
        except Exception as exc:
            raise _classify(exc, "searching") from exc
        return [_hit(p.payload or {}, p.score) for p in result.points]

    async def sources(self) -> dict[str, int]:
        try:
            facets = await self.client.facet(self.collection, "source", limit=100_000, exact=True)
        except Exception as exc:
            raise _classify(exc, "listing sources") from exc
        return {str(h.value): int(h.count) for h in sorted(facets.hits, key=lambda h: str(h.value))}

    async def count(self) -> int:
        try:
            return int((await self.client.count(self.collection, exact=True)).count)
        except Exception as exc:
            raise _classify(exc, "counting points") from exc

    async def close(self) -> None:
        await self.client.close()


def _hit(payload: dict[str, Any], score: float) -> StoredHit:
    return StoredHit(
        text=str(payload.get("text", "")),
        source=str(payload.get("source", "")),
        position=int(payload.get("position", 0)),
        heading=payload.get("heading"),
        score=float(score),
    )
