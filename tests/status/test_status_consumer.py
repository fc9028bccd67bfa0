"""The consumer loop and the jobs around it: history RPC, sweeper, gaps, poison messages, restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NATS
from status_helpers import Pipeline, StatusService, eventually, make_settings, run_status

from services.core import bus, contracts
from services.core.contracts import FailureCode
from services.devstack.ports import free_port
from services.devstack.postgres import LocalPostgres

pytestmark = pytest.mark.asyncio


async def test_history_rpc_returns_the_finished_earlier_turns_oldest_first(
    status: StatusService, pipeline: Pipeline, nc: NATS
):
    one = await pipeline.answer(["Apache is permissive."], message="Is Apache permissive?")
    conv = one.conversation_id
    two = await pipeline.request(message="And GPL?", conversation=conv)
    await pipeline.start(two.response_id)
    await pipeline.fail(two.response_id, FailureCode.PROVIDER_ERROR, "boom")
    three = await pipeline.answer(["It is copyleft."], message="What is GPL then?", conversation=conv)
    current = await pipeline.request(message="Compare them.", conversation=conv)
    await status.wait_for(current.response_id, lambda v: v["status"] == "queued")
    await status.wait_for(three.response_id, lambda v: v["terminal"])

    async def ask(**body: object) -> dict:
        reply = await nc.request(contracts.HISTORY_RPC_SUBJECT, json.dumps(body).encode(), timeout=10)
        return json.loads(reply.data)

    got = await ask(conversation_id=str(conv), user_id="alice", before_response_id=str(current.response_id), limit=10)
    assert got == {
        "turns": [
            {"question": "Is Apache permissive?", "answer": "Apache is permissive."},
            {"question": "What is GPL then?", "answer": "It is copyleft."},
        ]
    }
    last = await ask(conversation_id=str(conv), user_id="alice", before_response_id=str(current.response_id), limit=1)
    assert last["turns"] == [{"question": "What is GPL then?", "answer": "It is copyleft."}]
    before_three = await ask(conversation_id=str(conv), user_id="alice", before_response_id=str(three.response_id))
    assert [t["question"] for t in before_three["turns"]] == ["Is Apache permissive?"]
    assert (await ask(conversation_id=str(conv), user_id="mallory", before_response_id=None))["turns"] == []
    assert (await ask(conversation_id="nope", user_id="alice"))["error"]["code"] == "invalid_request"


async def test_the_sweeper_fails_an_answer_that_stopped_making_progress(
    nats_server, database_url, js, pipeline: Pipeline
):
    settings = make_settings(nats_server.url, database_url, stall_after_s=1.0, sweep_every_s=0.2)
    async with run_status(settings) as status:
        req = await pipeline.request()
        await pipeline.start(req.response_id)
        await pipeline.deltas(req.response_id, ["and then nothing"])
        v = await status.wait_for(req.response_id, lambda v: v["terminal"], timeout=30)
        assert v["status"] == "failed" and v["error"]["code"] == "stalled" and v["text"] == "and then nothing"
        assert "no progress" in v["error"]["message"]
        stalled = await js.get_last_msg(contracts.STREAM, contracts.subject_for_events(req.response_id))
        assert stalled.headers and stalled.headers["Nats-Msg-Id"] == f"{req.response_id}:1:stalled"


async def test_deltas_published_out_of_order_are_refolded_in_order(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    d = [pipeline.delta_event(rid, t) for t in ("one ", "two ", "three")]
    for event in (d[2], d[0], d[1]):
        await pipeline.event(contracts.subject_for_events(rid), event)
    await pipeline.complete(rid)
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert v["status"] == "completed" and v["text"] == "one two three"


async def test_an_undecodable_message_is_terminated_and_folding_goes_on(
    status: StatusService, pipeline: Pipeline, js, caplog
):
    rid = uuid.uuid4()
    await js.publish(contracts.subject_for_events(rid), b"{not json", headers={"Nats-Msg-Id": "garbage-1"})
    await js.publish(contracts.subject_for_events(rid), b'{"type": "generation.delta"}', headers={"Nats-Msg-Id": "g2"})
    req = await pipeline.answer(["still fine"])
    v = await status.wait_for(req.response_id, lambda v: v["terminal"])
    assert v["text"] == "still fine"

    async def settled() -> bool:
        info = await js.consumer_info(contracts.STREAM, "status")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(settled)
    assert any("undecodable" in r.getMessage() for r in caplog.records)


async def test_an_event_the_database_refuses_is_isolated_and_terminated_without_blocking_others(
    status: StatusService, pipeline: Pipeline, js
):
    bad = await pipeline.request()
    await status.wait_for(bad.response_id, lambda v: v["status"] == "queued")
    poison = contracts.GenerationStarted(
        event_id=f"{bad.response_id}:huge:started", response_id=bad.response_id, attempt=2**40, model="m", worker="w"
    )  # an attempt number PostgreSQL's integer cannot hold
    await pipeline.event(contracts.subject_for_events(bad.response_id), poison)
    good = await pipeline.answer(["unaffected"])
    v = await status.wait_for(good.response_id, lambda v: v["terminal"])
    assert v["text"] == "unaffected"
    await pipeline.start(bad.response_id)
    await pipeline.deltas(bad.response_id, ["goes on"])
    await pipeline.complete(bad.response_id)
    v = await status.wait_for(bad.response_id, lambda v: v["terminal"])
    assert (v["status"], v["attempt"], v["text"]) == ("completed", 1, "goes on")

    async def settled() -> bool:
        info = await js.consumer_info(contracts.STREAM, "status")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(settled)


async def test_folding_survives_a_database_restart_without_losing_or_doubling_text(
    tmp_path: Path, nats_server, js, pipeline: Pipeline
):
    with LocalPostgres(tmp_path / "own-pg", fsync=False) as pg:
        database_url = pg.create_database("relay")
        settings = make_settings(nats_server.url, database_url, db_timeout_s=1.0)
        async with run_status(settings) as status:
            req = await pipeline.request()
            rid = req.response_id
            await pipeline.start(rid)
            await pipeline.deltas(rid, ["before the restart, "])
            await status.wait_for(rid, lambda v: v["text_length"] == 20)
            await asyncio.to_thread(pg.stop)
            await pipeline.deltas(rid, ["while it was down, "])
            r = await status.get(f"/api/response/{rid}")
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
            await asyncio.sleep(1.0)  # let the consumer fail a flush or two
            await asyncio.to_thread(pg.start)
            await pipeline.deltas(rid, ["and after."])
            await pipeline.complete(rid)
            v = await status.wait_for(rid, lambda v: v["terminal"], timeout=60)
            assert v["status"] == "completed"
            assert v["text"] == "before the restart, while it was down, and after."


async def test_the_service_runs_as_a_process_and_stops_cleanly_on_sigterm(nats_server, database_url, js):
    port = free_port()
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
        "STATUS_PORT": str(port),
        "RELAY_STREAM_MAX_AGE_S": "3600",
        "LOG_JSON": "true",
    }
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.status"], env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def ready() -> bool:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
                try:
                    return (await http.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=60, every=0.2)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, out  # a graceful stop is a clean exit
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        assert any(ln["msg"].startswith("status service ready") and ln["service"] == "status" for ln in lines), out
        assert lines[-1]["msg"] == "status service stopped", out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_an_answer_whose_every_delivery_died_ends_delivery_exhausted_at_once(
    status: StatusService, pipeline: Pipeline, js
):
    # a generator consumer that gives up after one unacknowledged delivery of one second
    await bus.ensure_consumer(js, contracts.STREAM, contracts.generator_consumer(ack_wait_s=1, max_deliver=1))
    sub = await js.pull_subscribe_bind("generator", stream=contracts.STREAM)
    req = await pipeline.request()
    await pipeline.retrieve(req)
    await pipeline.start(req.response_id, attempt=1)
    (msg,) = await sub.fetch(1, timeout=5)  # taken by a worker that then dies: never acked
    assert msg.metadata.num_delivered == 1

    view = await status.wait_for(req.response_id, lambda v: v["terminal"], timeout=30)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "delivery_exhausted"
    assert "interrupted" in view["error"]["message"]
