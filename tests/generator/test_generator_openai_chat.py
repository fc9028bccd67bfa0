"""The OpenAI adapter against a real HTTP server: typed pieces for every chunk shape, errors mapped to causes."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.core.contracts import FailureCode, FinishReason, Usage
from services.core.errors import PermanentError, TransientError
from services.devstack.scripted_provider import (
    Script,
    ScriptedProvider,
    finish_chunk,
    no_choices_chunk,
    text_chunk,
    usage_chunk,
)
from services.generator.openai_chat import FinishPiece, OpenAIChat, Piece, TextPiece, UsagePiece

MESSAGES = [{"role": "user", "content": "What is copyleft?"}]


def chat(p: ScriptedProvider, **kwargs: object) -> OpenAIChat:
    return OpenAIChat(base_url=p.base_url, api_key="no-key-needed", **{"max_retries": 0, **kwargs})  # type: ignore[arg-type]


async def pieces(model: OpenAIChat) -> list[Piece]:
    try:
        return [p async for p in model.stream(MESSAGES, model="scripted")]
    finally:
        await model.close()


async def test_yields_text_then_finish_then_usage_and_asks_for_usage(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["Copy", "left"], usage={"prompt_tokens": 9, "completion_tokens": 2}))
    got = await pieces(chat(provider))
    assert got == [
        TextPiece("Copy"),
        TextPiece("left"),
        FinishPiece(FinishReason.STOP, "stop"),
        UsagePiece(Usage(prompt_tokens=9, completion_tokens=2, total_tokens=11)),
    ]
    (call,) = provider.calls
    assert call.stream and call.stream_options == {"include_usage": True} and call.messages == MESSAGES
    assert call.model == "scripted"


async def test_odd_chunks_give_no_empty_text_and_keep_usage(provider: ScriptedProvider) -> None:
    provider.script(
        Script(
            chunks=[
                no_choices_chunk(),
                text_chunk(""),
                text_chunk(None),
                text_chunk("ok"),
                finish_chunk("length"),
                usage_chunk(4, 1),
            ]
        )
    )
    got = await pieces(chat(provider))
    assert got == [
        TextPiece("ok"),
        FinishPiece(FinishReason.LENGTH, "length"),
        UsagePiece(Usage(prompt_tokens=4, completion_tokens=1, total_tokens=5)),
    ]


async def test_content_filter_without_text_is_a_finish_not_an_error(provider: ScriptedProvider) -> None:
    provider.script(Script(chunks=[text_chunk("", role="assistant"), finish_chunk("content_filter")]))
    assert await pieces(chat(provider)) == [FinishPiece(FinishReason.CONTENT_FILTER, "content_filter")]


async def test_unknown_finish_reasons_map_to_other(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["x"], finish_reason="eos_token"))
    assert FinishPiece(FinishReason.OTHER, "eos_token") in await pieces(chat(provider))


async def test_rate_limits_are_retried_by_the_client_with_back_off(provider: ScriptedProvider) -> None:
    provider.script(
        Script.http_error(429, retry_after_ms=20), Script.http_error(429, retry_after_ms=20), Script(tokens=["fine"])
    )
    got = await pieces(chat(provider, max_retries=2))
    assert TextPiece("fine") in got and [c.status for c in provider.calls] == [429, 429, 200]


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_busy_or_failing_server_is_transient(provider: ScriptedProvider, status: int) -> None:
    provider.script(Script.http_error(status))
    with pytest.raises(TransientError) as err:
        await pieces(chat(provider))
    assert err.value.code is FailureCode.PROVIDER_UNAVAILABLE


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_refused_request_is_permanent_provider_error(provider: ScriptedProvider, status: int) -> None:
    provider.script(Script.http_error(status, "model 'x' does not exist"))
    with pytest.raises(PermanentError) as err:
        await pieces(chat(provider))
    assert err.value.code is FailureCode.PROVIDER_ERROR and str(status) in err.value.message


async def test_unreachable_server_is_transient() -> None:
    with ScriptedProvider() as p:
        url = p.base_url
    model = OpenAIChat(base_url=url, api_key="k", max_retries=0, connect_timeout_s=2)
    with pytest.raises(TransientError) as err:
        await pieces(model)
    assert err.value.code is FailureCode.PROVIDER_UNAVAILABLE


async def test_connection_cut_after_text_is_provider_disconnected(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["one ", "two ", "three"], drop_after=2))
    got: list[Piece] = []
    model = chat(provider)
    with pytest.raises(PermanentError) as err:
        async for p in model.stream(MESSAGES, model="scripted"):
            got.append(p)
    assert err.value.code is FailureCode.PROVIDER_DISCONNECTED
    assert got == [TextPiece("one "), TextPiece("two ")]


async def test_clean_end_without_finish_reason_after_text_is_provider_disconnected(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["one ", "two"], drop_after=1, drop_mode="end"))
    with pytest.raises(PermanentError) as err:
        await pieces(chat(provider))
    assert err.value.code is FailureCode.PROVIDER_DISCONNECTED


async def test_connection_cut_before_any_text_is_transient(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["never"], drop_after=0))
    with pytest.raises(TransientError):
        await pieces(chat(provider))


async def test_cut_after_the_finish_reason_still_completes(provider: ScriptedProvider) -> None:
    provider.script(Script(chunks=[text_chunk("done"), finish_chunk("stop"), usage_chunk(1, 1)], drop_after=2))
    assert await pieces(chat(provider)) == [TextPiece("done"), FinishPiece(FinishReason.STOP, "stop")]


async def test_no_token_within_the_stall_limit_is_provider_timeout(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["first", "never"], stall_after=1))
    start = time.monotonic()
    with pytest.raises(PermanentError) as err:
        await pieces(chat(provider, stall_timeout_s=0.8))
    assert err.value.code is FailureCode.PROVIDER_TIMEOUT
    assert 0.7 < time.monotonic() - start < 10
    await provider.until(lambda calls: calls[0].disconnected, timeout=5)


async def test_stall_before_the_first_token_is_provider_timeout(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["never"], stall_after=0))
    with pytest.raises(PermanentError) as err:
        await pieces(chat(provider, stall_timeout_s=0.5))
    assert err.value.code is FailureCode.PROVIDER_TIMEOUT


async def test_cancelling_the_reader_closes_the_http_stream(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["x"] * 500, token_interval_s=0.02))
    model = chat(provider)
    seen = asyncio.Event()

    async def read() -> None:
        async for _ in model.stream(MESSAGES, model="scripted"):
            seen.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(seen.wait(), 10)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (call,) = await provider.until(lambda calls: calls[0].disconnected, timeout=5)
    assert call.disconnected_at is not None and call.disconnected_at - cancelled_at < 1.0
    await model.close()


async def test_token_cap_and_temperature_reach_the_provider_only_when_configured(provider: ScriptedProvider) -> None:
    await pieces(chat(provider, max_tokens=160, temperature=0.2))
    await pieces(chat(provider))
    capped, default = provider.calls
    assert capped.body["max_tokens"] == 160 and capped.body["temperature"] == 0.2
    assert "max_tokens" not in default.body and "temperature" not in default.body


async def test_a_server_that_takes_the_request_and_never_answers_is_a_stall_asked_once() -> None:
    requests: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.read(65536))
        await asyncio.sleep(60)  # never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = OpenAIChat(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=2, stall_timeout_s=1.5)
    start = time.monotonic()
    try:
        with pytest.raises(PermanentError) as caught:
            await pieces(model)
    finally:
        server.close()
    assert caught.value.code is FailureCode.PROVIDER_TIMEOUT
    assert time.monotonic() - start < 10
    assert len(requests) == 1  # the client's retries do not hammer a server that is stuck


async def test_a_chunk_that_is_not_a_chat_completion_is_a_provider_error_not_a_disconnect(
    provider: ScriptedProvider,
) -> None:
    provider.script(
        Script(chunks=[text_chunk("Hal"), {"choices": "notalist"}, finish_chunk("stop")], finish_reason=None)
    )
    with pytest.raises(PermanentError) as caught:
        await pieces(chat(provider))
    assert caught.value.code is FailureCode.PROVIDER_ERROR
    assert "not a chat completion" in caught.value.message
