"""The PostgreSQL adapter on a real database: migrations, one chunk row per flush, retention, races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.core.contracts import CancelRequested, ChatRequested, DeltaEmitted, GenerationStarted, RetrievalStarted
from services.core.views import ResponseStatus
from services.status.fold import Outcome
from services.status.postgres_store import PostgresStore, apply_migrations

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    """A migrated database behind the store."""
    await apply_migrations(database_url)
    s = await PostgresStore.open(database_url, max_size=4)
    yield s
    await s.close()


def request(rid: uuid.UUID, *, at: datetime | None = None, user: str = "alice") -> ChatRequested:
    return ChatRequested(
        event_id=f"{rid}:requested",
        response_id=rid,
        conversation_id=uuid.uuid4(),
        user_id=user,
        message="Which license is permissive?",
        model="m",
        occurred_at=at or datetime.now(UTC),
    )


def delta(rid: uuid.UUID, seq: int, offset: int, text: str) -> DeltaEmitted:
    return DeltaEmitted(event_id=f"{rid}:1:delta:{seq}", response_id=rid, attempt=1, seq=seq, offset=offset, text=text)


def started(rid: uuid.UUID) -> GenerationStarted:
    return GenerationStarted(event_id=f"{rid}:1:started", response_id=rid, attempt=1, model="m", worker="w")


async def test_migrations_apply_once_even_when_replicas_start_together(database_url: str):
    results = await asyncio.gather(*(apply_migrations(database_url) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert await apply_migrations(database_url) == []
    with psycopg.connect(database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        versions = conn.execute("SELECT count(*) FROM relay_schema_migrations").fetchone()
    assert {"responses", "response_chunks", "conversations", "relay_schema_migrations"} <= tables
    assert versions == (1,)


async def test_deltas_of_one_answer_in_one_flush_become_one_row_and_text_is_written_once(
    store: PostgresStore, database_url: str
):
    rid = uuid.uuid4()
    now = datetime.now(UTC)
    pieces = ["Apache ", "2.0 is ", "permissive."]
    first = [request(rid), started(rid)]
    offset = 0
    for seq, piece in enumerate(pieces):
        first.append(delta(rid, seq, offset, piece))
        offset += len(piece)
    decisions = await store.fold_batch(first, now=now)
    assert [d.outcome for d in decisions] == [Outcome.APPLIED] * 5
    more = [delta(rid, 3, offset, " MIT too."), delta(rid, 4, offset + 9, " And BSD.")]
    await store.fold_batch(more, now=now)
    await store.fold_batch(more, now=now)  # redelivered: nothing is written twice
    text = "".join(pieces) + " MIT too. And BSD."
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT seq, start_offset, body FROM response_chunks WHERE response_id = %s ORDER BY seq", (rid,)
        ).fetchall()
    assert rows == [(0, 0, "".join(pieces)), (1, offset, " MIT too. And BSD.")]
    assert sum(len(r[2]) for r in rows) == len(text)  # the text is stored once, never rewritten
    sl = await store.read(rid, since=3, attempt=1)
    assert sl is not None and sl.text == text[3:] and sl.state.text_length == len(text)


async def test_a_gap_in_a_batch_is_reported_and_nothing_after_it_is_stored(store: PostgresStore):
    rid = uuid.uuid4()
    decisions = await store.fold_batch([request(rid), started(rid), delta(rid, 1, 2, "cd")], now=datetime.now(UTC))
    assert decisions[-1].outcome is Outcome.GAP
    await store.fold_batch([delta(rid, 0, 0, "ab"), delta(rid, 1, 2, "cd")], now=datetime.now(UTC))
    sl = await store.read(rid)
    assert sl is not None and sl.text == "abcd"


async def test_text_postgres_cannot_hold_is_stored_as_replacement_characters_keeping_offsets(store: PostgresStore):
    rid = uuid.uuid4()
    await store.fold_batch([request(rid), started(rid), delta(rid, 0, 0, "a\x00b\ud800c")], now=datetime.now(UTC))
    await store.fold_batch([delta(rid, 1, 5, "dé")], now=datetime.now(UTC))
    sl = await store.read(rid, since=2, attempt=1)
    assert sl is not None and sl.text == "b\ufffdcdé" and sl.state.text_length == 7


async def test_two_replicas_creating_the_same_answer_at_once_both_commit_one_row(
    database_url: str, store: PostgresStore
):
    other = await PostgresStore.open(database_url, max_size=2)
    try:
        for _ in range(5):
            rid = uuid.uuid4()
            batch = [request(rid), RetrievalStarted(event_id=f"{rid}:retrieval-started", response_id=rid)]
            await asyncio.gather(
                store.fold_batch(batch, now=datetime.now(UTC)), other.fold_batch(batch, now=datetime.now(UTC))
            )
            sl = await store.read(rid)
            assert sl is not None and sl.state.status is ResponseStatus.RETRIEVING
    finally:
        await other.close()


async def test_retention_deletes_answers_older_than_the_age_with_their_text(store: PostgresStore, database_url: str):
    old, new = uuid.uuid4(), uuid.uuid4()
    long_ago = datetime.now(UTC) - timedelta(days=40)
    await store.fold_batch(
        [request(old, at=long_ago), started(old), delta(old, 0, 0, "old answer")], now=long_ago + timedelta(seconds=1)
    )
    await store.fold_batch([request(new), started(new), delta(new, 0, 0, "new answer")], now=datetime.now(UTC))
    with psycopg.connect(database_url, autocommit=True) as conn:  # the conversation went quiet long ago too
        conn.execute(
            "UPDATE conversations SET updated_at = %s WHERE id = (SELECT conversation_id FROM responses WHERE id = %s)",
            (long_ago, old),
        )
    assert await store.delete_older_than(30 * 86400) == 1
    assert await store.read(old) is None
    kept = await store.read(new)
    assert kept is not None and kept.text == "new answer"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM response_chunks WHERE response_id = %s", (old,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM conversations").fetchone() == (1,)


async def test_stalled_lists_only_running_answers_without_recent_change(store: PostgresStore):
    quiet, busy, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    then = datetime.now(UTC) - timedelta(minutes=20)
    await store.fold_batch([request(quiet), started(quiet)], now=then)
    await store.fold_batch([request(done), started(done), delta(done, 0, 0, "x")], now=then)
    await store.fold_batch([request(busy), started(busy)], now=datetime.now(UTC))
    await store.fold_batch([CancelRequested(event_id=f"{done}:cancel", response_id=done, user_id="alice")], now=then)
    stuck = await store.stalled(datetime.now(UTC) - timedelta(minutes=10), 100)
    assert [s.response_id for s in stuck] == [quiet]
    assert await store.in_flight_count() == 2
