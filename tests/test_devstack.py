"""The local parts start for real and the bus topology is declared idempotently."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from services.core import bus, contracts


async def test_stream_deduplicates_by_event_id(js):
    rid = uuid.uuid4()
    ev = contracts.ChatRequested(
        event_id=f"{rid}:requested", response_id=rid, conversation_id=uuid.uuid4(), user_id="u", message="hi", model="m"
    )
    await bus.publish_event(js, contracts.subject_for_request(rid), ev)
    await bus.publish_event(js, contracts.subject_for_request(rid), ev)
    info = await js.stream_info(contracts.STREAM)
    assert info.state.messages == 1
    assert await bus.last_event_on(js, contracts.subject_for_request(rid)) == ev
    assert await bus.last_event_on(js, contracts.subject_for_request(uuid.uuid4())) is None


async def test_consumer_drift_is_updated_or_refused_with_a_message(js):
    await bus.ensure_consumer(js, contracts.STREAM, contracts.generator_consumer(ack_wait_s=30))
    await bus.ensure_consumer(js, contracts.STREAM, contracts.generator_consumer(ack_wait_s=30))  # idempotent
    await bus.ensure_consumer(js, contracts.STREAM, contracts.generator_consumer(ack_wait_s=10))
    info = await js.consumer_info(contracts.STREAM, "generator")
    assert info.config.ack_wait == pytest.approx(10)
    with pytest.raises(bus.TopologyDriftError, match="ack_wait"):
        await bus.ensure_consumer(
            js, contracts.STREAM, contracts.generator_consumer(ack_wait_s=12), update_on_drift=False
        )


def test_postgres_gives_each_test_its_own_database(database_url):
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
