"""Bad input to POST /api/chat (issue 2, scenario 5): a 4xx whose message names the problem, nothing published."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from ingress_support import stored_events
from nats.js import JetStreamContext


def _error(r: httpx.Response) -> tuple[str, str]:
    body = r.json()
    assert set(body) == {"error"}, body
    return body["error"]["code"], body["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "status", "code", "says"),
    [
        ({"message": ""}, 422, "empty_message", "message must not be empty"),
        ({"message": "  \n\t "}, 422, "empty_message", "message must not be empty"),
        ({"message": "x" * 8001}, 422, "message_too_long", "message is 8001 characters long; the limit is 8000"),
        ({"message": 42}, 422, "invalid_request", "message: Input should be a valid string"),
        (
            {"message": "hi", "conversation_id": "not-a-uuid"},
            422,
            "invalid_request",
            "conversation_id: Input should be a valid UUID",
        ),
        ({"message": "hi", "model": ["gpt"]}, 422, "invalid_request", "model: Input should be a valid string"),
        ({"message": "hi", "temperature": 2}, 422, "invalid_request", "temperature: Extra inputs are not permitted"),
        ({}, 422, "invalid_request", "message: Field required"),
        (["message", "hi"], 422, "invalid_request", "the body must be a JSON object"),
        (
            {"message": "hi", "model": "gpt-9"},
            422,
            "unknown_model",
            "unknown model 'gpt-9'; allowed models: smollm2-135m-instruct, gpt-4o-mini",
        ),
    ],
)
async def test_bad_body_is_refused_with_a_message_naming_the_problem_and_nothing_is_published(
    ingress, js: JetStreamContext, payload: object, status: int, code: str, says: str
) -> None:
    r = await ingress.http.post("/api/chat", json=payload)

    assert r.status_code == status, r.text
    assert _error(r)[0] == code
    assert says in _error(r)[1]
    assert await stored_events(js) == []


async def test_invalid_json_is_refused_saying_the_body_is_not_json(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post(
        "/api/chat", content=b'{"message": "unfinished', headers={"content-type": "application/json"}
    )

    assert r.status_code == 422
    code, message = _error(r)
    assert code == "invalid_request" and message.startswith("the body is not valid JSON")
    assert await stored_events(js) == []


async def test_body_that_is_not_declared_json_is_refused_with_415(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post("/api/chat", content=b'{"message": "hi"}', headers={"content-type": "text/plain"})

    assert r.status_code == 415
    assert "Content-Type: application/json" in _error(r)[1] and "text/plain" in _error(r)[1]
    assert await stored_events(js) == []


async def test_one_megabyte_message_is_refused_with_413_naming_the_size_and_the_limit(
    ingress, js: JetStreamContext
) -> None:
    body = json.dumps({"message": "x" * 1_000_000}).encode()
    r = await ingress.http.post("/api/chat", content=body, headers={"content-type": "application/json"})

    assert r.status_code == 413
    code, message = _error(r)
    assert code == "body_too_large"
    assert f"is {len(body)} bytes" in message and "the limit is 131072 bytes (INGRESS_MAX_BODY_BYTES)" in message
    assert await stored_events(js) == []


async def test_chunked_body_without_length_is_cut_off_at_the_limit(ingress, js: JetStreamContext) -> None:
    async def one_megabyte() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(16):
            yield b"x" * 65536
        yield b'"}'

    r = await ingress.http.post("/api/chat", content=one_megabyte(), headers={"content-type": "application/json"})

    assert r.status_code == 413
    assert "larger than that; the limit is 131072 bytes" in _error(r)[1]
    assert await stored_events(js) == []


async def test_huge_declared_length_is_refused_before_any_body_is_sent(ingress, js: JetStreamContext) -> None:
    host, port = ingress.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    )
    await writer.drain()

    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # the body is never sent
    writer.close()

    assert head.startswith(b"HTTP/1.1 413 ")
    assert await stored_events(js) == []


async def test_message_limit_is_configurable_and_counts_characters_not_bytes(
    start_ingress, js: JetStreamContext
) -> None:
    async with start_ingress(max_message_chars=10) as ingress:
        r = await ingress.http.post("/api/chat", json={"message": "日本語のテキストです。"})  # 11 characters, 33 bytes

    assert r.status_code == 422
    assert _error(r)[1] == "message is 11 characters long; the limit is 10 characters"
    assert await stored_events(js) == []


@pytest.mark.parametrize(
    ("headers", "code", "says"),
    [
        ({"X-User-Id": "bob smith"}, "invalid_user_id", "X-User-Id must be 1-128 characters"),
        ({"X-User-Id": "u" * 129}, "invalid_user_id", "X-User-Id must be 1-128 characters"),
        ({"Idempotency-Key": "k" * 256}, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable"),
        ({"Idempotency-Key": ""}, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable"),
    ],
)
async def test_malformed_headers_are_refused_with_400(
    ingress, js: JetStreamContext, headers: dict[str, str], code: str, says: str
) -> None:
    r = await ingress.http.post("/api/chat", json={"message": "hi"}, headers=headers)

    assert r.status_code == 400, r.text
    assert _error(r)[0] == code and says in _error(r)[1]
    assert await stored_events(js) == []


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        pytest.param(b'{"message": "hi \\ud800"}', "lone surrogate", id="lone-surrogate"),
        pytest.param(b'{"message": "\\u200b\\u0000 "}', "must not be empty", id="only-invisible-characters"),
    ],
)
async def test_text_that_cannot_be_a_question_is_refused_and_nothing_published(
    ingress, js: JetStreamContext, raw: bytes, needle: str
) -> None:
    r = await ingress.http.post("/api/chat", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert needle in _error(r)[1]
    assert await stored_events(js) == []


async def test_a_body_that_is_not_utf8_says_so(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post(
        "/api/chat", content=b'{"message": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "UTF-8" in _error(r)[1]
    assert await stored_events(js) == []
