"""Idempotency-Key: the same key from the same user is one response id and one message in the stream."""

from __future__ import annotations

import asyncio
import uuid

from ingress_support import stored_events
from nats.js import JetStreamContext

from services.core.contracts import ChatRequested
from services.ingress.admission import derive_response_id


async def test_repeated_key_returns_the_same_response_and_conversation_and_publishes_once(
    ingress, js: JetStreamContext
) -> None:
    headers = {"Idempotency-Key": "retry-me-1", "X-User-Id": "alice"}
    first = await ingress.http.post("/api/chat", json={"message": "What is copyleft?"}, headers=headers)
    second = await ingress.http.post("/api/chat", json={"message": "What is copyleft?"}, headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers["location"] == first.json()["poll_url"]
    (event,) = await stored_events(js)
    assert isinstance(event, ChatRequested)
    assert str(event.response_id) == first.json()["response_id"]
    assert event.idempotency_key == "retry-me-1"


async def test_response_id_is_derived_from_user_and_key_with_the_secret(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post(
        "/api/chat", json={"message": "q"}, headers={"Idempotency-Key": "k", "X-User-Id": "alice"}
    )

    expected = derive_response_id(b"secret-for-tests", "alice", "k")
    assert r.json()["response_id"] == str(expected)
    assert expected != derive_response_id(b"another-secret", "alice", "k")


async def test_same_key_from_another_user_is_a_different_response(ingress, js: JetStreamContext) -> None:
    a = await ingress.http.post(
        "/api/chat", json={"message": "q"}, headers={"Idempotency-Key": "shared", "X-User-Id": "alice"}
    )
    b = await ingress.http.post(
        "/api/chat", json={"message": "q"}, headers={"Idempotency-Key": "shared", "X-User-Id": "bob"}
    )

    assert a.status_code == b.status_code == 202
    assert a.json()["response_id"] != b.json()["response_id"]
    events = await stored_events(js)
    assert sorted(e.user_id for e in events if isinstance(e, ChatRequested)) == ["alice", "bob"]


async def test_key_reused_for_a_different_message_is_refused_with_409(ingress, js: JetStreamContext) -> None:
    headers = {"Idempotency-Key": "once"}
    await ingress.http.post("/api/chat", json={"message": "first question"}, headers=headers)
    r = await ingress.http.post("/api/chat", json={"message": "another question"}, headers=headers)

    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "Idempotency-Key 'once' was already used for another request (a different message)" in error["message"]
    assert len(await stored_events(js)) == 1


async def test_concurrent_copies_with_one_key_collapse_into_one_request(ingress, js: JetStreamContext) -> None:
    headers = {"Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(ingress.http.post("/api/chat", json={"message": "pressed twice"}, headers=headers) for _ in range(4))
    )

    assert {r.status_code for r in answers} == {202}
    assert len({r.text for r in answers}) == 1  # same response id and the same new conversation id
    assert len(await stored_events(js)) == 1


async def test_repeat_after_the_duplicate_window_still_finds_the_stored_request(
    start_ingress, js: JetStreamContext
) -> None:
    conversation = str(uuid.uuid4())
    body = {"message": "late retry", "conversation_id": conversation}
    async with start_ingress(RELAY_DUPLICATE_WINDOW_S=1) as ingress:  # the ingress re-declares the stream with it
        first = await ingress.http.post("/api/chat", json=body, headers={"Idempotency-Key": "late"})
        await asyncio.sleep(1.5)  # JetStream forgets the Nats-Msg-Id: only the stored request can answer now
        second = await ingress.http.post("/api/chat", json=body, headers={"Idempotency-Key": "late"})

    assert first.json() == second.json()
    assert len(await stored_events(js)) == 1
