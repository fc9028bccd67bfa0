"""The scripted provider speaks the OpenAI Chat Completions API well enough for the official client, in every shape."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from services.devstack.ports import free_port, wait_for_port
from services.devstack.scripted_provider import (
    Script,
    ScriptedProvider,
    finish_chunk,
    no_choices_chunk,
    text_chunk,
    usage_chunk,
)

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is copyleft?"}]
MULTIBYTE = ("漢字かな交じり文🙂👍🏽e\u0301a\u0308 " * 60)[:1000]


@pytest.fixture
def provider() -> Iterator[ScriptedProvider]:
    """A scripted provider on a free port."""
    with ScriptedProvider() as p:
        yield p


def client(p: ScriptedProvider, *, max_retries: int = 0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=p.base_url, api_key="test", max_retries=max_retries, timeout=20)


async def collect(p: ScriptedProvider, *, include_usage: bool = True, max_retries: int = 0) -> list:
    c = client(p, max_retries=max_retries)
    stream = await c.chat.completions.create(
        model="scripted", messages=MESSAGES, stream=True, stream_options={"include_usage": include_usage}
    )
    return [chunk async for chunk in stream]


def text_of(chunks: list) -> str:
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)


async def test_streams_tokens_then_finish_then_usage_only_chunk(provider: ScriptedProvider) -> None:
    provider.script(
        Script(tokens=["Copy", "left", " is", " a", " licence."], usage={"prompt_tokens": 7, "completion_tokens": 5})
    )
    chunks = await collect(provider)
    assert text_of(chunks) == "Copyleft is a licence."
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (7, 5, 12)


async def test_sends_no_usage_chunk_unless_the_request_asks(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["a", "b"]))
    chunks = await collect(provider, include_usage=False)
    assert text_of(chunks) == "ab" and all(ch.usage is None for ch in chunks)


async def test_records_each_request_body(provider: ScriptedProvider) -> None:
    await collect(provider)
    (call,) = provider.calls
    assert call.model == "scripted" and call.messages == MESSAGES
    assert call.stream and call.stream_options == {"include_usage": True}
    assert call.completed and not call.disconnected


async def test_answers_without_streaming_when_not_asked_to(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["Plain", " answer"], finish_reason="length"))
    r = await client(provider).chat.completions.create(model="scripted", messages=MESSAGES)
    assert r.choices[0].message.content == "Plain answer"
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 2


async def test_keeps_to_the_token_timeline(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["a", "b", "c"], first_token_delay_s=0.4, token_interval_s=0.2))
    c = client(provider)
    start = time.monotonic()
    stream = await c.chat.completions.create(model="scripted", messages=MESSAGES, stream=True)
    arrivals = []
    async for ch in stream:
        if ch.choices and ch.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3
    assert arrivals[0] >= 0.38 and arrivals[2] >= 0.78  # never early; lateness is not asserted


async def test_sends_odd_chunk_shapes_verbatim(provider: ScriptedProvider) -> None:
    provider.script(
        Script(
            chunks=[
                no_choices_chunk(),
                text_chunk("partial"),
                text_chunk(None),
                finish_chunk("content_filter"),
                usage_chunk(3, 1),
            ]
        )
    )
    chunks = await collect(provider)
    assert chunks[0].choices == []
    assert text_of(chunks) == "partial"
    assert chunks[2].choices[0].delta.content is None
    assert chunks[3].choices[0].finish_reason == "content_filter" and chunks[3].choices[0].delta.content is None
    assert chunks[4].choices == [] and chunks[4].usage.total_tokens == 4


async def test_multibyte_text_survives_writes_that_cut_characters(provider: ScriptedProvider) -> None:
    tokens = [MULTIBYTE[i : i + 7] for i in range(0, len(MULTIBYTE), 7)]
    provider.script(Script(tokens=tokens, split_bytes=[13, 29, 61, 97], carry_split=True, split_pause_s=0.001))
    # the raw body really arrives in pieces that are not whole characters
    async with httpx.AsyncClient(timeout=30) as raw:
        body = {"model": "scripted", "messages": MESSAGES, "stream": True}
        async with raw.stream("POST", provider.base_url + "/chat/completions", json=body) as resp:
            pieces = [piece async for piece in resp.aiter_raw()]
    cut = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            cut += 1
    assert cut > 0, f"no piece cut a character ({len(pieces)} pieces)"
    chunks = await collect(provider)
    assert text_of(chunks) == MULTIBYTE and "\ufffd" not in text_of(chunks)


async def test_drop_closes_the_connection_mid_stream_without_finish_or_done(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["one ", "two ", "three"], drop_after=2))
    c = client(provider)
    stream = await c.chat.completions.create(model="scripted", messages=MESSAGES, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for ch in stream:
            if ch.choices:
                assert ch.choices[0].finish_reason is None
                got.append(ch.choices[0].delta.content or "")
    assert "".join(got) == "one two "
    assert provider.calls[0].items_sent == 2


async def test_drop_can_end_the_body_cleanly_without_finish_reason(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["one ", "two ", "three"], drop_after=1, drop_mode="end"))
    chunks = await collect(provider)
    assert text_of(chunks) == "one " and all(ch.choices[0].finish_reason is None for ch in chunks if ch.choices)


async def test_rate_limits_n_times_then_succeeds(provider: ScriptedProvider) -> None:
    provider.script(
        Script.http_error(429, retry_after_ms=10), Script.http_error(429, retry_after_ms=10), Script(tokens=["ok"])
    )
    with pytest.raises(openai.RateLimitError) as err:
        await collect(provider)
    assert err.value.status_code == 429 and err.value.body["type"] == "rate_limit_exceeded"
    chunks = await collect(provider, max_retries=2)  # the client's own retry: one 429, then success
    assert text_of(chunks) == "ok"
    assert [c.status for c in provider.calls] == [429, 429, 200]


async def test_server_errors_carry_openai_error_json(provider: ScriptedProvider) -> None:
    provider.script(Script.http_error(500, "the model fell over"), Script.http_error(400, "bad messages"))
    with pytest.raises(openai.InternalServerError) as err:
        await collect(provider)
    assert "the model fell over" in str(err.value)
    with pytest.raises(openai.BadRequestError):
        await collect(provider)


async def test_stall_sends_nothing_until_the_client_leaves_and_sees_it_go(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["first", "never"], stall_after=1))
    stream = await client(provider).chat.completions.create(model="scripted", messages=MESSAGES, stream=True)
    got = []

    async def read() -> None:
        async for ch in stream:
            if ch.choices and ch.choices[0].delta.content:
                got.append(ch.choices[0].delta.content)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(read(), timeout=1.0)
    closed_at = time.monotonic()
    await stream.close()
    (call,) = await provider.until(lambda calls: calls[0].disconnected, timeout=5)
    assert got == ["first"] and call.items_sent == 1
    assert call.disconnected_at is not None and call.disconnected_at - closed_at < 1.0


async def test_sees_the_client_close_a_stream_early(provider: ScriptedProvider) -> None:
    provider.script(Script(tokens=["x"] * 200, token_interval_s=0.02))
    stream = await client(provider).chat.completions.create(model="scripted", messages=MESSAGES, stream=True)
    n = 0
    async for _ in stream:
        n += 1
        if n == 5:
            break
    closed_at = time.monotonic()
    await stream.close()
    (call,) = await provider.until(lambda calls: calls[0].disconnected, timeout=5)
    assert not call.completed and call.items_sent < 200
    assert call.disconnected_at is not None and call.disconnected_at - closed_at < 1.0


async def test_lists_models_and_embeds_deterministically(provider: ScriptedProvider) -> None:
    c = client(provider)
    assert [m.id for m in (await c.models.list()).data] == ["scripted"]
    a = await c.embeddings.create(model="e", input=["copyleft licence", "copyleft licence", "unrelated words"])
    vecs = [d.embedding for d in a.data]
    assert len(vecs[0]) == 384 and vecs[0] == vecs[1] and vecs[0] != vecs[2]
    assert provider.calls == []  # only chat completions count as calls


def test_works_from_sync_code_with_the_sync_client() -> None:
    with ScriptedProvider() as p:
        p.script(Script(tokens=["sync", " ok"]))
        c = openai.OpenAI(base_url=p.base_url, api_key="x", max_retries=0)
        text = "".join(
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            if ch.choices
        )
        assert text == "sync ok"
        assert p.wait_for(lambda calls: len(calls) == 1 and calls[0].completed, timeout=5)[0].model == "m"


def test_default_echo_answer_is_deterministic_per_question(provider: ScriptedProvider) -> None:
    c = openai.OpenAI(base_url=provider.base_url, api_key="x", max_retries=0)
    a = c.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    b = c.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    other = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Something else?"}])
    assert a == b and a and "What is copyleft?" in a
    assert other.choices[0].message.content != a


def test_runs_as_a_module_and_stops_on_sigterm() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "services.devstack.scripted_provider", "--port", str(port), "--tokens-per-s", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        wait_for_port(port, timeout=20, alive=lambda: proc.poll() is None)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        chunks = list(c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        assert "What is copyleft?" in "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
