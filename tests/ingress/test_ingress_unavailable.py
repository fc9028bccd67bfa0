"""JetStream away: POST answers 503 at once with Retry-After and leaves nothing behind; /ready tells the truth."""

from __future__ import annotations

import signal
import time
import uuid

from ingress_support import eventually, ingress_settings, stored_events
from nats.js import JetStreamContext

from services.core import contracts
from services.devstack.nats import NatsServer
from services.ingress.app import open_request_log
from services.ingress.jetstream import NatsUnreachableError


async def _ready(ingress) -> bool:
    return (await ingress.http.get("/ready")).status_code == 200


async def _not_ready(ingress) -> bool:
    return (await ingress.http.get("/ready")).status_code == 503


async def test_post_while_nats_is_down_is_503_and_nothing_is_published_after_restart(
    ingress, js: JetStreamContext, nats_server: NatsServer
) -> None:
    nats_server.stop()
    await eventually(lambda: _not_ready(ingress), what="/ready reporting NATS down")
    assert "not connected to NATS" in (await ingress.http.get("/ready")).json()["detail"]

    started = time.monotonic()
    plain = await ingress.http.post("/api/chat", json={"message": "lost?"})
    keyed = await ingress.http.post("/api/chat", json={"message": "lost?"}, headers={"Idempotency-Key": "k1"})
    elapsed = time.monotonic() - started
    cancel = await ingress.http.post(f"/api/response/{uuid.uuid4()}/cancel")
    assert cancel.status_code == 503 and "repeating a cancel is harmless" in cancel.json()["error"]["message"]

    for r in (plain, keyed):
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "queue_unavailable"
        assert "not connected to NATS; nothing was stored" in r.json()["error"]["message"]
        assert "same Idempotency-Key" in r.json()["error"]["message"]
    assert elapsed < ingress.settings.publish_timeout_s  # refused at once, not after a timeout

    nats_server.start()
    await eventually(lambda: _ready(ingress), what="/ready after the NATS restart")
    assert await stored_events(js) == []  # nothing was buffered and replayed on reconnect

    again = await ingress.http.post("/api/chat", json={"message": "lost?"}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202
    assert len(await stored_events(js)) == 1


async def test_unanswered_publish_times_out_into_503_and_a_keyed_retry_is_safe(
    ingress, js: JetStreamContext, nats_server: NatsServer
) -> None:
    assert nats_server.proc is not None
    nats_server.proc.send_signal(signal.SIGSTOP)  # connected, but nobody answers
    try:
        unkeyed = await ingress.http.post("/api/chat", json={"message": "slow"})
        keyed = await ingress.http.post("/api/chat", json={"message": "slow"}, headers={"Idempotency-Key": "k2"})
    finally:
        nats_server.proc.send_signal(signal.SIGCONT)

    assert unkeyed.status_code == keyed.status_code == 503
    # The publish went out and no ack came back: the answer says it cannot know.
    assert (
        "did not acknowledge in time; the request may or may not have been stored" in unkeyed.json()["error"]["message"]
    )
    await eventually(lambda: _ready(ingress), what="/ready after the pause")
    retry = await ingress.http.post("/api/chat", json={"message": "slow"}, headers={"Idempotency-Key": "k2"})
    again = await ingress.http.post("/api/chat", json={"message": "slow"}, headers={"Idempotency-Key": "k2"})
    assert retry.status_code == again.status_code == 202
    assert retry.json() == again.json()
    keyed_events = [e for e in await stored_events(js) if getattr(e, "idempotency_key", None) == "k2"]
    assert len(keyed_events) == 1


async def test_missing_stream_makes_ready_fail_and_post_answer_503(ingress, js: JetStreamContext) -> None:
    await js.delete_stream(contracts.STREAM)

    ready = await ingress.http.get("/ready")
    r = await ingress.http.post("/api/chat", json={"message": "where does it go?"})

    assert ready.status_code == 503 and "stream RELAY does not exist" in ready.json()["detail"]
    assert r.status_code == 503
    assert "JetStream has no stream RELAY answering; nothing was stored" in r.json()["error"]["message"]


async def test_start_up_gives_up_with_a_clear_error_when_nats_never_answers(
    start_ingress, nats_server: NatsServer
) -> None:
    nats_server.stop()
    settings = ingress_settings(
        nats_server.url, nats_connect_attempts=2, nats_connect_timeout_s=0.5, nats_retry_wait_s=0.1
    )
    try:
        await open_request_log(settings)
    except NatsUnreachableError as exc:
        message = str(exc)
    else:
        raise AssertionError("connected to a stopped server")
    assert f"cannot reach NATS at {nats_server.url} after 2 attempts" in message
    assert "set NATS_URL" in message
