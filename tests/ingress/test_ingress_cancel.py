"""POST /api/response/{id}/cancel: one CancelRequested per answer, 404 for unknown or foreign ids."""

from __future__ import annotations

import uuid

import pytest
from ingress_support import stored_events
from nats.js import JetStreamContext

from services.core import bus
from services.core.contracts import (
    CancelRequested,
    FailureCode,
    FinishReason,
    GenerationStarted,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
    subject_for_cancel,
    subject_for_events,
)


async def _ask(ingress, user: str = "alice") -> str:
    r = await ingress.http.post("/api/chat", json={"message": "a long answer, please"}, headers={"X-User-Id": user})
    assert r.status_code == 202
    return str(r.json()["response_id"])


async def test_cancel_publishes_one_cancel_requested_and_repeating_it_changes_nothing(
    ingress, js: JetStreamContext
) -> None:
    rid = await _ask(ingress)

    first = await ingress.http.post(f"/api/response/{rid}/cancel", headers={"X-User-Id": "alice"})
    second = await ingress.http.post(f"/api/response/{rid}/cancel", headers={"X-User-Id": "alice"})

    assert first.status_code == second.status_code == 202
    assert first.json() == {"response_id": rid, "status": "queued", "cancelled": True, "message": "cancel requested"}
    assert second.json()["cancelled"] is True and second.json()["message"] == "cancel already requested"
    (cancel,) = await stored_events(js, subject_for_cancel(rid))
    assert isinstance(cancel, CancelRequested)
    assert (cancel.event_id, str(cancel.response_id), cancel.user_id) == (f"{rid}:cancel", rid, "alice")


async def test_cancel_reports_the_running_status_it_saw(ingress, js: JetStreamContext) -> None:
    rid = await _ask(ingress)
    await bus.publish_event(
        js,
        subject_for_events(rid),
        GenerationStarted(event_id=f"{rid}:1:started", response_id=uuid.UUID(rid), attempt=1, model="m", worker="w"),
    )

    r = await ingress.http.post(f"/api/response/{rid}/cancel", headers={"X-User-Id": "alice"})

    assert r.json()["status"] == "generating" and r.json()["cancelled"] is True


async def test_cancel_of_an_unknown_id_is_404(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post(f"/api/response/{uuid.uuid4()}/cancel")

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert await stored_events(js) == []


async def test_cancel_of_another_users_response_is_404_and_publishes_nothing(ingress, js: JetStreamContext) -> None:
    rid = await _ask(ingress, user="alice")

    r = await ingress.http.post(f"/api/response/{rid}/cancel", headers={"X-User-Id": "mallory"})

    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"no response {rid}"
    assert await stored_events(js, subject_for_cancel(rid)) == []


async def test_cancel_of_a_malformed_id_says_it_is_not_a_uuid(ingress, js: JetStreamContext) -> None:
    r = await ingress.http.post("/api/response/not-an-id/cancel")

    assert r.status_code == 422
    assert "response_id: Input should be a valid UUID" in r.json()["error"]["message"]


def _terminal(rid: str, kind: str):
    response_id = uuid.UUID(rid)
    if kind == "completed":
        return ResponseCompleted(
            event_id=f"{rid}:1:completed", response_id=response_id, attempt=1, finish_reason=FinishReason.STOP,
            model="m", total_ms=10, text_length=5, delta_count=1,
        )  # fmt: skip
    if kind == "truncated":
        return ResponseCompleted(
            event_id=f"{rid}:1:completed", response_id=response_id, attempt=1, finish_reason=FinishReason.LENGTH,
            model="m", total_ms=10, text_length=5, delta_count=1,
        )  # fmt: skip
    if kind == "failed":
        return ResponseFailed(
            event_id=f"{rid}:1:failed",
            response_id=response_id,
            attempt=1,
            code=FailureCode.PROVIDER_ERROR,
            message="boom",
        )
    return ResponseCancelled(event_id=f"{rid}:1:cancelled", response_id=response_id, attempt=1, text_length=3)


@pytest.mark.parametrize(
    ("kind", "status", "cancelled", "message"),
    [
        ("completed", "completed", False, "the answer had already completed"),
        ("truncated", "truncated", False, "the answer had already completed (truncated at the model's length limit)"),
        ("failed", "failed", False, "the answer had already failed"),
        ("cancelled", "cancelled", True, "the answer was already cancelled"),
    ],
)
async def test_cancel_of_an_ended_answer_says_so_and_publishes_nothing(
    ingress, js: JetStreamContext, kind: str, status: str, cancelled: bool, message: str
) -> None:
    rid = await _ask(ingress)
    await bus.publish_event(js, subject_for_events(rid), _terminal(rid, kind))

    r = await ingress.http.post(f"/api/response/{rid}/cancel", headers={"X-User-Id": "alice"})

    assert r.status_code == 202
    assert r.json() == {"response_id": rid, "status": status, "cancelled": cancelled, "message": message}
    assert await stored_events(js, subject_for_cancel(rid)) == []
