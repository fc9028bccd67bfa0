"""POST /api/chat on a real ingress and a real nats-server: the 202 and what lands in the stream."""

from __future__ import annotations

import json
import uuid

from ingress_support import stored_events
from nats.js import JetStreamContext

from services.core.contracts import ChatRequested, subject_for_request
from services.core.views import ChatAccepted


async def test_chat_is_accepted_with_urls_and_headers_once_durable_in_the_stream(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post("/api/chat", json={"message": "What does the GPL say about patents?"})

    assert r.status_code == 202, r.text
    body = ChatAccepted.model_validate(r.json())
    rid = body.response_id
    assert body.status == "queued"
    assert body.poll_url == f"/api/response/{rid}"
    assert body.final_url == f"/api/response/{rid}/final"
    assert body.cancel_url == f"/api/response/{rid}/cancel"
    assert r.headers["location"] == body.poll_url
    assert r.headers["retry-after"] == "1"
    assert uuid.UUID(str(rid)).version == 4

    events = await stored_events(js)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ChatRequested)
    assert event.event_id == f"{rid}:requested"
    assert event.response_id == rid
    assert event.conversation_id == body.conversation_id
    assert event.user_id == "anonymous"
    assert event.message == "What does the GPL say about patents?"
    assert event.model == "smollm2-135m-instruct"
    assert event.idempotency_key is None
    assert await stored_events(js, subject_for_request(rid)) == events


async def test_chat_keeps_the_given_conversation_user_and_model(ingress, js: JetStreamContext) -> None:
    conversation = uuid.uuid4()
    r = await ingress.http.post(
        "/api/chat",
        json={"message": "and a follow-up", "conversation_id": str(conversation), "model": "gpt-4o-mini"},
        headers={"X-User-Id": "alice@example.com"},
    )

    assert r.status_code == 202, r.text
    assert r.json()["conversation_id"] == str(conversation)
    (event,) = await stored_events(js)
    assert isinstance(event, ChatRequested)
    assert (event.conversation_id, event.user_id, event.model) == (conversation, "alice@example.com", "gpt-4o-mini")


async def test_chat_without_idempotency_key_gets_a_fresh_response_each_time(ingress, js: JetStreamContext) -> None:
    first = await ingress.http.post("/api/chat", json={"message": "same words"})
    second = await ingress.http.post("/api/chat", json={"message": "same words"})

    assert first.json()["response_id"] != second.json()["response_id"]
    assert first.json()["conversation_id"] != second.json()["conversation_id"]
    assert len(await stored_events(js)) == 2


async def test_returned_urls_carry_the_public_base_url(start_ingress, js: JetStreamContext) -> None:
    async with start_ingress(public_base_url="https://relay.example.com/") as ingress:
        r = await ingress.http.post("/api/chat", json={"message": "hi"})

    rid = r.json()["response_id"]
    assert r.json()["poll_url"] == f"https://relay.example.com/api/response/{rid}"
    assert r.headers["location"] == f"https://relay.example.com/api/response/{rid}"


async def test_poll_urls_point_at_the_status_service_when_it_has_its_own_address(start_ingress, js) -> None:
    async with start_ingress(
        public_base_url="http://127.0.0.1:8701", status_base_url="http://127.0.0.1:8702"
    ) as ingress:
        r = await ingress.http.post("/api/chat", json={"message": "hi"})

    rid = r.json()["response_id"]
    assert r.headers["location"] == r.json()["poll_url"] == f"http://127.0.0.1:8702/api/response/{rid}"
    assert r.json()["final_url"] == f"http://127.0.0.1:8702/api/response/{rid}/final"
    assert r.json()["cancel_url"] == f"http://127.0.0.1:8701/api/response/{rid}/cancel"


async def test_a_longest_message_of_emoji_fits_the_default_body_limit(ingress, js: JetStreamContext) -> None:
    message = "😀" * ingress.settings.max_message_chars  # ASCII-escaped JSON: 12 bytes each
    r = await ingress.http.post(
        "/api/chat", content=json.dumps({"message": message}).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 202, r.text


async def test_message_of_exactly_the_limit_is_accepted(start_ingress, js: JetStreamContext) -> None:
    async with start_ingress(max_message_chars=50) as ingress:
        r = await ingress.http.post("/api/chat", json={"message": "é" * 50})

    assert r.status_code == 202, r.text
    (event,) = await stored_events(js)
    assert isinstance(event, ChatRequested) and event.message == "é" * 50


async def test_probes_and_api_reference_are_served(ingress, js: JetStreamContext) -> None:
    await ingress.http.post("/api/chat", json={"message": "count me"})

    assert (await ingress.http.get("/health")).json() == {"status": "ok"}
    assert (await ingress.http.get("/ready")).json() == {"status": "ready"}
    metrics = (await ingress.http.get("/metrics")).text
    assert 'relay_ingress_submissions_total{outcome="accepted"}' in metrics
    assert 'relay_http_requests_total{method="POST",route="/api/chat",status="202"}' in metrics
    assert (await ingress.http.get("/docs")).status_code == 200
    spec = (await ingress.http.get("/openapi.json")).json()
    chat = spec["paths"]["/api/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatRequest")
    assert {p["name"] for p in chat["parameters"]} >= {"idempotency-key", "x-user-id"}
    assert {"202", "409", "413", "422", "503"} <= set(chat["responses"])
    assert "/api/response/{response_id}/cancel" in spec["paths"]
