"""Long answers stay with one replica, crashed answers come back as a new attempt, shutdown hands work back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from generator_support import Recorder, consumer_info, submit, text_of
from nats.js import JetStreamContext

from services.core.contracts import GenerationStarted, ResponseCompleted
from services.devstack.scripted_provider import Script, ScriptedProvider


def started(recorder: Recorder, rid: Any) -> list[GenerationStarted]:
    return [e for e in recorder.of(rid) if isinstance(e, GenerationStarted)]


@pytest.mark.slow
async def test_long_answers_are_not_redelivered(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    # three answers of ~40 s each, AckWait 10 s, two replicas
    tokens = [f"t{i} " for i in range(80)]
    provider.script(Script(tokens=tokens, first_token_delay_s=0.5, token_interval_s=0.5))
    await replicas(ack_wait_s=10, worker_id="one")
    await replicas(ack_wait_s=10, worker_id="two")
    sent = [await submit(js, f"long question {i}") for i in range(3)]
    for ev in sent:
        end = await recorder.until_terminal(ev.response_id, timeout=120)
        assert isinstance(end, ResponseCompleted) and text_of(recorder.of(ev.response_id)) == "".join(tokens)
    assert len(provider.calls) == 3
    assert sorted(c.messages[-1]["content"].rsplit(" ", 1)[-1] for c in provider.calls) == ["0", "1", "2"]
    for ev in sent:
        assert [s.attempt for s in started(recorder, ev.response_id)] == [1]
        assert len(recorder.terminal(ev.response_id)) == 1
    info = await consumer_info(js)
    assert info.config.ack_wait == 10 and info.num_redelivered == 0 and info.num_ack_pending == 0


async def test_crashed_generator_answer_is_regenerated_whole_as_attempt_two(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    first = Script(tokens=[f"a{i} " for i in range(200)], token_interval_s=0.02)
    second = Script(tokens=["The ", "second ", "attempt's ", "own ", "text."])
    provider.script(first, second)
    doomed = await replicas(ack_wait_s=2, worker_id="doomed")
    ev = await submit(js)
    rid = ev.response_id
    await recorder.until(lambda: len(text_of(recorder.of(rid), 1)) > 10)
    await doomed.crash()  # no ack, no nak, no terminal event
    assert recorder.terminal(rid) == []
    await provider.until(lambda calls: calls[0].disconnected, timeout=5)

    await replicas(ack_wait_s=2, worker_id="fresh")
    end = await recorder.until_terminal(rid, timeout=30)
    assert isinstance(end, ResponseCompleted) and end.attempt == 2 and end.event_id == f"{rid}:2:completed"
    assert text_of(recorder.of(rid), 2) == "The second attempt's own text." == "".join(second.tokens)
    assert end.text_length == len(text_of(recorder.of(rid), 2))
    assert [(s.attempt, s.worker) for s in started(recorder, rid)] == [(1, "doomed"), (2, "fresh")]
    assert len(provider.calls) == 2


async def test_shutdown_lets_a_short_answer_finish_under_its_attempt(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["finishing "] * 10, token_interval_s=0.1))
    replica = await replicas(drain_s=20)
    ev = await submit(js)
    await recorder.until(lambda: bool(text_of(recorder.of(ev.response_id))))
    await replica.stop()
    end = recorder.terminal(ev.response_id)
    assert len(end) == 1 and isinstance(end[0], ResponseCompleted) and end[0].attempt == 1
    info = await consumer_info(js)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_shutdown_hands_an_unfinished_answer_to_another_replica(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["slow "] * 200, token_interval_s=0.05), Script(tokens=["taken ", "over"]))
    leaving = await replicas(drain_s=0.5, worker_id="leaving")
    ev = await submit(js)
    rid = ev.response_id
    await recorder.until(lambda: bool(text_of(recorder.of(rid))))
    await leaving.stop(timeout=20)
    assert recorder.terminal(rid) == []
    await provider.until(lambda calls: calls[0].disconnected, timeout=5)
    await replicas(worker_id="staying")
    end = await recorder.until_terminal(rid, timeout=20)  # nak'ed at once: no AckWait to sit out
    assert isinstance(end, ResponseCompleted) and end.attempt == 2 and text_of(recorder.of(rid), 2) == "taken over"


async def test_a_full_replica_leaves_further_requests_to_other_replicas(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["busy "] * 40, token_interval_s=0.05))
    await replicas(concurrency=1, worker_id="small")
    a = await submit(js, "first")
    await recorder.until(lambda: bool(started(recorder, a.response_id)))
    b = await submit(js, "second")
    await asyncio.sleep(1.0)  # a replica holding more than its slots would have taken it by now
    assert started(recorder, b.response_id) == []
    assert (await consumer_info(js, settle_s=0)).num_ack_pending == 1
    await replicas(concurrency=1, worker_id="other")
    await recorder.until(lambda: bool(started(recorder, b.response_id)), timeout=10)
    assert started(recorder, b.response_id)[0].worker == "other"
    for ev in (a, b):
        assert isinstance(await recorder.until_terminal(ev.response_id, timeout=20), ResponseCompleted)
