"""The generator on real NATS against the scripted provider: what it publishes for each way an answer can end."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
from generator_support import PASSAGES, Recorder, consumer_info, deltas_of, submit, text_of
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.core import contracts
from services.core.contracts import (
    DeltaEmitted,
    FailureCode,
    FinishReason,
    FirstTokenEmitted,
    GenerationStarted,
    ResponseCompleted,
    ResponseFailed,
    Usage,
)
from services.devstack.ports import free_port
from services.devstack.scripted_provider import (
    Script,
    ScriptedProvider,
    finish_chunk,
    no_choices_chunk,
    text_chunk,
    usage_chunk,
)

ANSWER = ["Copyleft ", "keeps ", "derived ", "works ", "under ", "the ", "same ", "licence ", "[1]."]


async def test_generator_completes_with_the_exact_text_usage_and_ordered_events(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=ANSWER, token_interval_s=0.005, usage={"prompt_tokens": 120, "completion_tokens": 9}))
    await replicas(worker_id="gen-a")
    ev = await submit(js)
    rid = ev.response_id
    done = await recorder.until_terminal(rid)
    events = recorder.of(rid)

    assert isinstance(done, ResponseCompleted)
    assert text_of(events) == "".join(ANSWER)
    assert done.finish_reason is FinishReason.STOP and done.usage == Usage(
        prompt_tokens=120, completion_tokens=9, total_tokens=129
    )
    assert done.text_length == len("".join(ANSWER)) and done.delta_count == len(deltas_of(events, 1))
    assert done.model == "scripted" and done.model_ttft_ms is not None and done.total_ms >= done.model_ttft_ms
    started, first = events[0], events[1]
    assert isinstance(started, GenerationStarted) and started.worker == "gen-a" and started.attempt == 1
    assert isinstance(first, FirstTokenEmitted) and first.model_ttft_ms == done.model_ttft_ms
    assert events[-1] is done and all(isinstance(e, DeltaEmitted) for e in events[2:-1])
    ids = [e.event_id for e in events]
    assert (
        ids[:3] == [f"{rid}:1:started", f"{rid}:1:first-token", f"{rid}:1:delta:0"] and ids[-1] == f"{rid}:1:completed"
    )
    # the first token was not held back by coalescing; later ones were coalesced (fewer deltas than tokens)
    assert deltas_of(events, 1)[0].text == ANSWER[0] and len(deltas_of(events, 1)) < len(ANSWER)
    info = await consumer_info(js)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.delivered.consumer_seq == 1


async def test_generator_sends_instructions_passages_history_and_the_question(
    js: JetStreamContext, nc: NATS, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    asked: list[dict[str, Any]] = []

    async def history(msg: Any) -> None:
        asked.append(json.loads(msg.data))
        await msg.respond(
            json.dumps({"turns": [{"question": "Earlier question?", "answer": "Earlier answer."}]}).encode()
        )

    sub = await nc.subscribe(contracts.HISTORY_RPC_SUBJECT, cb=history)
    provider.script(Script(tokens=["ok"]))
    await replicas()
    ev = await submit(js, "And the MIT licence?")
    await recorder.until_terminal(ev.response_id)
    await sub.unsubscribe()

    assert asked == [
        {
            "conversation_id": str(ev.request.conversation_id),
            "user_id": "alice",
            "before_response_id": str(ev.response_id),
            "limit": 6,
        }
    ]
    messages = provider.calls[0].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "[1]" in messages[0]["content"]
    assert messages[1]["content"] == "Earlier question?" and messages[2]["content"] == "Earlier answer."
    assert PASSAGES[0].text in messages[3]["content"] and "[2] (MIT.txt" in messages[3]["content"]
    assert messages[3]["content"].endswith("Question: And the MIT licence?")


async def test_generator_answers_without_history_when_the_status_service_is_silent(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["no history needed"]))
    await replicas(history_attempts=2)
    ev = await submit(js)
    done = await recorder.until_terminal(ev.response_id)
    assert isinstance(done, ResponseCompleted)
    assert [m["role"] for m in provider.calls[0].messages] == ["system", "user"]


async def test_generator_fails_response_when_provider_closes_mid_stream(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=ANSWER, token_interval_s=0.02, drop_after=4))
    await replicas()
    ev = await submit(js)
    failed = await recorder.until_terminal(ev.response_id)
    events = recorder.of(ev.response_id)
    assert isinstance(failed, ResponseFailed) and failed.code is FailureCode.PROVIDER_DISCONNECTED
    partial = "".join(ANSWER[:4])
    assert text_of(events) == partial and failed.text_length == len(partial)
    assert "text so far is kept" in failed.message
    assert not any(isinstance(e, ResponseCompleted) for e in events)
    assert events.index(failed) == len(events) - 1  # after every partial delta
    assert len(provider.calls) == 1  # not retried: text was already shown


async def test_generator_ends_each_odd_chunk_shape_in_its_own_terminal_event(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    shapes = {
        "empty choices + usage-only last chunk": Script(
            chunks=[
                no_choices_chunk(),
                text_chunk("", role="assistant"),
                text_chunk("Fine."),
                finish_chunk("stop"),
                usage_chunk(10, 2),
            ]
        ),
        "length": Script(
            tokens=["Cut ", "short"], finish_reason="length", usage={"prompt_tokens": 5, "completion_tokens": 2}
        ),
        "content filter, no text": Script(
            chunks=[text_chunk(None, role="assistant"), finish_chunk("content_filter"), usage_chunk(7, 0)]
        ),
        "no text, stop": Script(chunks=[finish_chunk("stop"), usage_chunk(3, 0)]),
    }
    provider.respond_with(lambda body: shapes[body["messages"][-1]["content"].rsplit("Question: ", 1)[1]])
    await replicas()
    sent = {name: await submit(js, name) for name in shapes}
    ends = {name: await recorder.until_terminal(ev.response_id) for name, ev in sent.items()}
    assert all(isinstance(e, ResponseCompleted) for e in ends.values()), ends

    a, b, c, d = (ends[n] for n in shapes)
    assert isinstance(a, ResponseCompleted) and isinstance(b, ResponseCompleted)
    assert isinstance(c, ResponseCompleted) and isinstance(d, ResponseCompleted)
    assert (a.finish_reason, a.text_length, a.usage) == (
        FinishReason.STOP,
        5,
        Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12),
    )
    assert text_of(recorder.of(sent["empty choices + usage-only last chunk"].response_id)) == "Fine."
    assert (b.finish_reason, b.text_length, b.usage and b.usage.total_tokens) == (FinishReason.LENGTH, 9, 7)
    assert (c.finish_reason, c.text_length, c.delta_count, c.model_ttft_ms) == (FinishReason.CONTENT_FILTER, 0, 0, None)
    assert c.usage == Usage(prompt_tokens=7, completion_tokens=0, total_tokens=7)
    assert (d.finish_reason, d.text_length) == (FinishReason.STOP, 0)  # the status fold calls this a failure
    for ev in sent.values():
        assert len(recorder.terminal(ev.response_id)) == 1


async def test_generator_completes_after_the_provider_rate_limits_twice(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(
        Script.http_error(429, retry_after_ms=50), Script.http_error(429, retry_after_ms=50), Script(tokens=ANSWER)
    )
    await replicas(provider_max_retries=2)
    ev = await submit(js)
    done = await recorder.until_terminal(ev.response_id)
    assert isinstance(done, ResponseCompleted) and text_of(recorder.of(ev.response_id)) == "".join(ANSWER)
    assert [c.status for c in provider.calls] == [429, 429, 200]


async def test_generator_retries_as_a_new_attempt_then_fails_as_unavailable_on_the_last_delivery(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script.http_error(503))
    await replicas(max_deliver=2, retry_delay_s=0.3)
    ev = await submit(js)
    failed = await recorder.until_terminal(ev.response_id, timeout=30)
    events = recorder.of(ev.response_id)
    assert isinstance(failed, ResponseFailed) and failed.code is FailureCode.PROVIDER_UNAVAILABLE
    assert failed.attempt == 2 and failed.event_id == f"{ev.response_id}:2:failed"
    assert [e.attempt for e in events if isinstance(e, GenerationStarted)] == [1, 2]
    assert len(provider.calls) == 2 and failed.text_length == 0


async def test_generator_times_out_a_stalled_provider(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["Begun ", "but never finished"], stall_after=1))
    await replicas(stall_timeout_s=1.0)
    ev = await submit(js)
    failed = await recorder.until_terminal(ev.response_id)
    assert isinstance(failed, ResponseFailed) and failed.code is FailureCode.PROVIDER_TIMEOUT
    assert text_of(recorder.of(ev.response_id)) == "Begun " and failed.text_length == 6
    await provider.until(lambda calls: calls[0].disconnected, timeout=5)


async def test_multibyte_text_split_across_byte_boundaries_arrives_exactly(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    rng = random.Random(7)
    alphabet = list("漢字仮名交じり文한국어") + ["🙂", "👍🏽", "👩‍💻", "🇩🇪", "e\u0301", "a\u0308\u0323", "ß", " "]
    text = "".join(rng.choice(alphabet) for _ in range(1400))[:2000]
    tokens, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        tokens.append(text[i : i + n])
        i += n
    provider.script(Script(tokens=tokens, split_bytes=[1, 2, 3, 5, 7, 11, 64], carry_split=True, split_pause_s=0.0))
    await replicas(flush_chars=64)
    ev = await submit(js)
    done = await recorder.until_terminal(ev.response_id, timeout=60)
    got = text_of(recorder.of(ev.response_id))
    assert isinstance(done, ResponseCompleted)
    assert got == text and "\ufffd" not in got and done.text_length == len(text)


async def test_generator_serves_probes_and_metrics(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    port = free_port()
    provider.script(Script(tokens=["measured"]))
    replica = await replicas(port=port)
    ev = await submit(js)
    await recorder.until_terminal(ev.response_id)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        for _ in range(50):
            try:
                ready = await http.get("/ready")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert ready.status_code == 200 and (await http.get("/health")).status_code == 200
        metrics = (await http.get("/metrics")).text
    for name in (
        "relay_model_ttft_seconds_count",
        "relay_answer_total_seconds_count",
        "relay_provider_calls_total",
        "relay_answers_in_flight",
        "relay_failures_total",
    ):
        assert name in metrics
    assert 'relay_provider_calls_total{outcome="completed"}' in metrics
    await replica.stop()
