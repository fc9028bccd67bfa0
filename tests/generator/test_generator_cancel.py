"""Cancel: every replica hears it; the one streaming the answer closes the provider stream within a second."""

from __future__ import annotations

import time
import uuid
from typing import Any

from generator_support import Recorder, consumer_info, submit, text_of
from nats.js import JetStreamContext

from services.core import bus, contracts
from services.core.contracts import CancelRequested, GenerationStarted, ResponseCancelled
from services.devstack.scripted_provider import Script, ScriptedProvider


async def cancel(js: JetStreamContext, rid: uuid.UUID) -> None:
    """What ingress does for ``POST /api/response/{id}/cancel``."""
    event = CancelRequested(event_id=f"{rid}:cancel", response_id=rid, user_id="alice")
    await bus.publish_event(js, contracts.subject_for_cancel(rid), event)


async def test_cancel_mid_stream_stops_the_provider_and_ends_the_answer_cancelled(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=[f"w{i} " for i in range(400)], token_interval_s=0.05))
    await replicas(worker_id="a")
    await replicas(worker_id="b")  # the other replica hears the cancel too and must ignore it
    ev = await submit(js)
    rid = ev.response_id
    await recorder.until(lambda: len(text_of(recorder.of(rid))) >= 20)
    cancelled_at = time.monotonic()
    await cancel(js, rid)

    end = await recorder.until_terminal(rid, timeout=10)
    (call,) = await provider.until(lambda calls: calls[0].disconnected, timeout=5)
    assert call.disconnected_at is not None and call.disconnected_at - cancelled_at < 1.0
    assert not call.completed and call.items_sent < 400
    events = recorder.of(rid)
    assert isinstance(end, ResponseCancelled) and end.event_id == f"{rid}:1:cancelled"
    assert end.text_length == len(text_of(events)) >= 20
    assert events[-1] is end and len(recorder.terminal(rid)) == 1
    info = await consumer_info(js)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_cancel_before_generation_skips_the_model(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    ev = await submit(js)
    await cancel(js, ev.response_id)
    await replicas()
    later = await submit(js, "a later question")  # processed after the cancelled one: proves it was handled
    await recorder.until_terminal(later.response_id)
    assert len(provider.calls) == 1 and "a later question" in provider.calls[0].messages[-1]["content"]
    assert recorder.of(ev.response_id) == []
    info = await consumer_info(js)
    assert info.num_ack_pending == 0


async def test_cancel_of_another_answer_leaves_this_one_alone(
    js: JetStreamContext, provider: ScriptedProvider, replicas: Any, recorder: Recorder
) -> None:
    provider.script(Script(tokens=["x "] * 30, token_interval_s=0.02))
    await replicas()
    ev = await submit(js)
    await recorder.until(lambda: any(isinstance(e, GenerationStarted) for e in recorder.of(ev.response_id)))
    await cancel(js, uuid.uuid4())
    end = await recorder.until_terminal(ev.response_id)
    assert end.type == "response.completed" and text_of(recorder.of(ev.response_id)) == "x " * 30
