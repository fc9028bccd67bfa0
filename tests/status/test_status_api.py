"""The polling API end to end: events published to a real JetStream, folded into a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from status_helpers import PASSAGE, Pipeline, StatusService, eventually, make_settings, run_status

from services.core.contracts import FailureCode, FinishReason

pytestmark = pytest.mark.asyncio


async def test_poll_with_since_returns_only_the_new_text_as_it_streams(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    first = await status.wait_for(rid, lambda v: v["status"] == "queued")
    assert first["poll_after_ms"] == 1000 and first["text"] == "" and first["terminal"] is False
    await pipeline.retrieve(req)
    await status.wait_for(rid, lambda v: v["status"] == "retrieving" and v["sources"])
    await pipeline.start(rid)
    await pipeline.deltas(rid, ["The license ", "allows "])
    v = await status.wait_for(rid, lambda v: v["text_length"] == 19)
    assert v["status"] == "generating" and v["poll_after_ms"] == 250 and v["attempt"] == 1
    assert v["text"] == "The license allows " and v["offset"] == 0 and v["next_offset"] == 19
    assert v["model_ttft_ms"] == 42.0 and v["user_ttft_ms"] is not None and v["user_ttft_ms"] >= 0

    await pipeline.deltas(rid, ["copying", " and changes."])
    v = await status.wait_for(rid, lambda v: v["text_length"] == 39)
    part = await status.poll(rid, since=19, attempt=1)
    assert (part["text"], part["offset"], part["next_offset"], part["restarted"]) == (
        "copying and changes.",
        19,
        39,
        False,
    )
    mid = await status.poll(rid, since=23, attempt=1)  # inside a stored chunk
    assert mid["text"] == "ing and changes." and mid["offset"] == 23
    end = await status.poll(rid, since=39, attempt=1)
    assert end["text"] == "" and end["next_offset"] == 39

    await pipeline.complete(rid)
    done = await status.wait_for(rid, lambda v: v["terminal"])
    assert done["status"] == "completed" and done["poll_after_ms"] == 0 and done["finish_reason"] == "stop"
    assert done["text"] == "The license allows copying and changes."
    assert done["usage"] == {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}
    assert done["total_ms"] == 1234.0 and [p["source"] for p in done["sources"]] == [PASSAGE.source]


async def test_offsets_count_unicode_characters_across_cjk_emoji_and_combining_marks(
    status: StatusService, pipeline: Pipeline
):
    pieces = ["日本語で", "答えます。", "👩‍👩‍👧", " e\u0301\u0301", "🎉", "한국어 ", "Ω≈ç√"]
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    received, since = "", 0
    for piece in pieces:
        await pipeline.deltas(rid, [piece])
        target = since + len(piece)
        v = await status.wait_for(rid, lambda v, t=target: v["text_length"] >= t)
        v = await status.poll(rid, since=since, attempt=1)
        assert v["offset"] == since
        received += v["text"]
        since = v["next_offset"]
    full = "".join(pieces)
    assert received == full and since == len(full) and "\ufffd" not in received
    # an offset in the middle of the family emoji (after the first ZWJ) returns the exact remainder
    cut = len("日本語で答えます。") + 2
    assert (await status.poll(rid, since=cut, attempt=1))["text"] == full[cut:]


async def test_a_new_attempt_restarts_the_text_and_a_client_of_the_old_one_is_told_to_redraw(
    status: StatusService, pipeline: Pipeline
):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid, attempt=1)
    await pipeline.deltas(rid, ["first try, half"], attempt=1)
    old = await status.wait_for(rid, lambda v: v["text_length"] == 15)
    await pipeline.start(rid, attempt=2)
    await pipeline.deltas(rid, ["second"], attempt=2)
    await status.wait_for(rid, lambda v: v["attempt"] == 2 and v["text_length"] == 6)
    v = await status.poll(rid, since=old["next_offset"], attempt=1)
    assert v["restarted"] is True and v["offset"] == 0 and v["text"] == "second" and v["attempt"] == 2
    # a client that forgot its attempt but is past the end is told the same
    v = await status.poll(rid, since=15)
    assert v["restarted"] is True and v["text"] == "second"
    # a client already on the new attempt is not
    v = await status.poll(rid, since=3, attempt=2)
    assert v["restarted"] is False and v["text"] == "ond"


async def test_the_same_delta_published_twice_under_different_message_ids_is_folded_once(
    status: StatusService, pipeline: Pipeline
):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    delta = pipeline.delta_event(rid, "once ")
    await pipeline.event(f"relay.events.{rid}", delta)
    await pipeline.event(f"relay.events.{rid}", delta.model_copy(update={"event_id": f"{delta.event_id}:copy"}))
    await pipeline.deltas(rid, ["only"])
    await pipeline.complete(rid)
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert v["text"] == "once only" and v["status"] == "completed"


async def test_events_of_a_stale_attempt_are_ignored(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid, attempt=2)
    await pipeline.deltas(rid, ["current"], attempt=2)
    await pipeline.start(rid, attempt=1)  # a zombie worker of an older delivery
    await pipeline.deltas(rid, ["zombie text"], attempt=1)
    await pipeline.complete(rid, attempt=1)
    await pipeline.complete(rid, attempt=2)
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert (v["status"], v["attempt"], v["text"]) == ("completed", 2, "current")


async def test_cancel_ends_the_answer_cancelled_with_the_partial_text(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    await pipeline.deltas(rid, ["partial answer"])
    await status.wait_for(rid, lambda v: v["text_length"] == 14)
    await pipeline.cancel(rid)
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert v["status"] == "cancelled" and v["text"] == "partial answer" and v["poll_after_ms"] == 0
    await pipeline.deltas(rid, [" that kept coming"])
    await pipeline.complete(rid)
    final = await status.get(f"/api/response/{rid}/final")
    assert (
        final.status_code == 200 and final.json()["status"] == "cancelled" and final.json()["text"] == "partial answer"
    )


@pytest.mark.parametrize(
    "pieces, finish, status_, error_code",
    [
        (["cut off mid"], FinishReason.LENGTH, "truncated", None),
        ([], FinishReason.CONTENT_FILTER, "content_filtered", "content_filter"),
        ([], FinishReason.STOP, "failed", "provider_error"),
    ],
)
async def test_each_provider_ending_is_its_own_visible_state(
    status: StatusService, pipeline: Pipeline, pieces, finish, status_, error_code
):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    await pipeline.deltas(rid, pieces)
    await pipeline.complete(rid, finish=finish)
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert v["status"] == status_ and v["finish_reason"] == finish.value and v["text"] == "".join(pieces)
    assert (v["error"] or {}).get("code") == error_code
    assert v["usage"]["total_tokens"] == 37  # usage is kept whatever the ending
    final = await status.get(f"/api/response/{rid}/final")
    assert final.status_code == 200 and final.json()["status"] == status_


async def test_a_failure_keeps_the_partial_text_and_says_why(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    await pipeline.deltas(rid, ["so far"])
    await pipeline.fail(rid, FailureCode.PROVIDER_DISCONNECTED, "The model server closed the stream.")
    v = await status.wait_for(rid, lambda v: v["terminal"])
    assert v["status"] == "failed" and v["text"] == "so far"
    assert v["error"] == {"code": "provider_disconnected", "message": "The model server closed the stream."}
    final = (await status.get(f"/api/response/{rid}/final")).json()
    assert final["error"]["code"] == "provider_disconnected" and final["text"] == "so far"


async def test_final_answers_202_with_the_current_state_while_running(status: StatusService, pipeline: Pipeline):
    req = await pipeline.request()
    rid = req.response_id
    await pipeline.start(rid)
    await pipeline.deltas(rid, ["growing"])
    await status.wait_for(rid, lambda v: v["text_length"] == 7)
    r = await status.get(f"/api/response/{rid}/final")
    assert r.status_code == 202 and r.json()["status"] == "generating" and r.json()["text"] == "growing"
    assert r.headers["retry-after"] and r.headers["cache-control"] == "no-store"
    await pipeline.complete(rid)
    await status.wait_for(rid, lambda v: v["terminal"])
    r = await status.get(f"/api/response/{rid}/final")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "completed" and body["text"] == "growing"
    assert body["completed_at"] and body["usage"]["completion_tokens"] == 7 and body["sources"] == []


async def test_a_poll_right_after_accept_answers_queued_before_anything_is_folded(
    nats_server, database_url, js, pipeline: Pipeline
):
    settings = make_settings(nats_server.url, database_url, consume=False)  # nothing folds in this run
    async with run_status(settings) as status:
        req = await pipeline.request(user="alice")
        rid = req.response_id
        v = await status.poll(rid)
        assert v["status"] == "queued" and v["conversation_id"] == str(req.conversation_id) and v["text"] == ""
        assert v["poll_after_ms"] == 1000
        final = await status.get(f"/api/response/{rid}/final")
        assert final.status_code == 202 and final.json()["status"] == "queued"
        assert (await status.get(f"/api/response/{rid}", user="bob")).status_code == 404
    async with run_status(make_settings(nats_server.url, database_url)) as status:  # now the fold catches up
        assert (await status.wait_for(rid, lambda v: v["status"] == "queued"))["response_id"] == str(rid)


async def test_unknown_and_foreign_ids_are_404_with_a_json_body(status: StatusService, pipeline: Pipeline):
    req = await pipeline.answer(["mine"], user="alice")
    rid = req.response_id
    await status.wait_for(rid, lambda v: v["terminal"])
    for path in (f"/api/response/{uuid.uuid4()}", f"/api/response/{rid}", f"/api/response/{rid}/final",
                 f"/api/conversation/{req.conversation_id}", "/api/response/not-a-uuid"):  # fmt: skip
        user = "anonymous" if path.endswith("not-a-uuid") else "bob"
        r = await status.get(path, user=user)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found" and r.headers["cache-control"] == "no-store"
    r = await status.get(f"/api/response/{uuid.uuid4()}", user="anonymous")
    assert r.status_code == 404


async def test_an_invalid_user_header_is_a_400_that_says_what_is_wrong(status: StatusService):
    for bad in ("", "a b", "x" * 129, "ünï"):
        r = await status.http.get(f"/api/response/{uuid.uuid4()}", headers={"X-User-Id": bad.encode("utf-8")})
        assert r.status_code == 400, bad
        assert "X-User-Id" in r.json()["error"]["message"]
    r = await status.get("/api/response/" + str(uuid.uuid4()), since=-1)
    assert r.status_code == 422


async def test_the_conversation_lists_its_turns_and_the_user_sees_recent_conversations_first(
    status: StatusService, pipeline: Pipeline
):
    one = await pipeline.answer(["first answer"], message="first question")
    await status.wait_for(one.response_id, lambda v: v["terminal"])
    two = await pipeline.request(message="follow-up", conversation=one.conversation_id)
    await pipeline.start(two.response_id)
    await pipeline.deltas(two.response_id, ["still going"])
    await status.wait_for(two.response_id, lambda v: v["text_length"] == 11)
    other = await pipeline.answer(["elsewhere"], message="a new topic " * 20)
    await status.wait_for(other.response_id, lambda v: v["terminal"])
    theirs = await pipeline.answer(["not yours"], user="bob")
    await status.wait_for(theirs.response_id, lambda v: v["terminal"], user="bob")

    conv = (await status.get(f"/api/conversation/{one.conversation_id}")).json()
    assert conv["conversation_id"] == str(one.conversation_id)
    assert [(t["question"], t["status"], t["text"]) for t in conv["turns"]] == [
        ("first question", "completed", "first answer"),
        ("follow-up", "generating", "still going"),
    ]
    assert conv["turns"][0]["sources"][0]["source"] == PASSAGE.source
    recent = (await status.get("/api/conversations", limit=10)).json()
    assert [c["conversation_id"] for c in recent] == [str(other.conversation_id), str(one.conversation_id)]
    assert recent[1]["turn_count"] == 2 and recent[1]["title"] == "first question"
    assert len(recent[0]["title"]) <= 80
    assert len((await status.get("/api/conversations", limit=1)).json()) == 1
    assert [c["conversation_id"] for c in (await status.get("/api/conversations", user="bob")).json()] == [
        str(theirs.conversation_id)
    ]


async def test_probes_and_metrics(status: StatusService, pipeline: Pipeline):
    req = await pipeline.answer(["measured"])
    await status.wait_for(req.response_id, lambda v: v["terminal"])
    assert (await status.get("/health")).json() == {"status": "ok"}
    assert (await status.get("/ready")).json() == {"status": "ready"}
    text = (await status.get("/metrics")).text

    def value(prefix: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        assert lines, prefix
        return float(lines[0].rsplit(" ", 1)[1])

    assert value("relay_user_ttft_seconds_count") >= 1
    assert value("relay_status_fold_lag_seconds_count") >= 1
    assert value('relay_events_consumed_total{consumer="status"') >= 1
    assert "relay_answers_in_flight" in text
    assert 'relay_http_requests_total{method="GET",route="/api/response/{response_id}"' in text
    schema = (await status.get("/openapi.json")).json()
    assert "/api/response/{response_id}" in schema["paths"] and "/api/conversations" in schema["paths"]
    await eventually(lambda: _check_failures(status), timeout=5)


async def _check_failures(status: StatusService) -> bool:
    return "relay_failures_total" in (await status.get("/metrics")).text


@pytest.mark.parametrize("params", [{"since": 2**31}, {"since": 10**20}, {"since": 1, "attempt": 2**31}])
async def test_offsets_beyond_what_the_store_can_hold_are_a_422_not_an_outage(
    status: StatusService, pipeline: Pipeline, params: dict
):
    req = await pipeline.request()
    await status.wait_for(req.response_id, lambda v: v["status"] == "queued")
    r = await status.get(f"/api/response/{req.response_id}", **params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"


async def test_someone_sending_another_users_conversation_id_gets_a_conversation_of_their_own(
    status: StatusService, pipeline: Pipeline
):
    alices = await pipeline.answer(["for alice"], message="alice asks")
    await status.wait_for(alices.response_id, lambda v: v["terminal"])
    bobs = await pipeline.answer(["for bob"], user="bob", message="bob asks", conversation=alices.conversation_id)
    await status.wait_for(bobs.response_id, lambda v: v["terminal"], user="bob")

    as_alice = (await status.get(f"/api/conversation/{alices.conversation_id}")).json()
    as_bob = (await status.get(f"/api/conversation/{alices.conversation_id}", user="bob")).json()
    assert [t["question"] for t in as_alice["turns"]] == ["alice asks"]
    assert [t["question"] for t in as_bob["turns"]] == ["bob asks"]
    bob_recent = (await status.get("/api/conversations", user="bob")).json()
    assert [c["conversation_id"] for c in bob_recent] == [str(alices.conversation_id)]
    assert bob_recent[0]["title"] == "bob asks"
