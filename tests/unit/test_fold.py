"""The status fold on its own: every event order, duplicates, stale attempts, gaps, end states, Unicode."""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.contracts import (
    CancelRequested,
    ChatRequested,
    ContextRetrieved,
    DeltaEmitted,
    Event,
    FailureCode,
    FinishReason,
    FirstTokenEmitted,
    GenerationStarted,
    Passage,
    ResponseCancelled,
    ResponseCompleted,
    ResponseFailed,
    RetrievalStarted,
    Usage,
)
from services.core.views import ResponseStatus
from services.status.fold import EMPTY_ANSWER_MESSAGE, Outcome, ResponseState, apply

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RID = uuid.UUID("00000000-0000-4000-8000-000000000001")
CID = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
PASSAGE = Passage(text="You may convey verbatim copies.", source="GPL-3.txt", position=3, score=0.9)


# --- event builders (the ids and subjects of DESIGN.md) -----------------------------------------


def requested(user: str = "alice") -> ChatRequested:
    return ChatRequested(
        event_id=f"{RID}:requested", response_id=RID, conversation_id=CID, user_id=user, message="Q?", model="m",
        occurred_at=T0,
    )  # fmt: skip


def retrieval_started() -> RetrievalStarted:
    return RetrievalStarted(event_id=f"{RID}:retrieval-started", response_id=RID, occurred_at=T0 + timedelta(seconds=1))


def context() -> ContextRetrieved:
    return ContextRetrieved(event_id=f"{RID}:context", response_id=RID, request=requested(), passages=(PASSAGE,))


def started(attempt: int = 1) -> GenerationStarted:
    return GenerationStarted(
        event_id=f"{RID}:{attempt}:started", response_id=RID, attempt=attempt, model="m", worker="w"
    )


def first_token(attempt: int = 1, ttft: float = 120.0) -> FirstTokenEmitted:
    return FirstTokenEmitted(
        event_id=f"{RID}:{attempt}:first-token", response_id=RID, attempt=attempt, model_ttft_ms=ttft
    )


def deltas(pieces: Sequence[str], attempt: int = 1) -> list[DeltaEmitted]:
    out, offset = [], 0
    for seq, text in enumerate(pieces):
        out.append(
            DeltaEmitted(
                event_id=f"{RID}:{attempt}:delta:{seq}",
                response_id=RID,
                attempt=attempt,
                seq=seq,
                offset=offset,
                text=text,
            )
        )
        offset += len(text)
    return out


def completed(text_length: int, attempt: int = 1, finish: FinishReason = FinishReason.STOP) -> ResponseCompleted:
    return ResponseCompleted(
        event_id=f"{RID}:{attempt}:completed", response_id=RID, attempt=attempt, finish_reason=finish,
        usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15), model="m", model_ttft_ms=120.0,
        total_ms=900.0, text_length=text_length, delta_count=0,
    )  # fmt: skip


def failed(attempt: int = 1, code: FailureCode = FailureCode.PROVIDER_DISCONNECTED, text_length: int | None = None):
    return ResponseFailed(
        event_id=f"{RID}:{attempt}:failed", response_id=RID, attempt=attempt, code=code, message="it broke",
        text_length=text_length,
    )  # fmt: skip


def cancel(user: str = "alice") -> CancelRequested:
    return CancelRequested(event_id=f"{RID}:cancel", response_id=RID, user_id=user)


def cancelled(text_length: int, attempt: int = 1) -> ResponseCancelled:
    return ResponseCancelled(
        event_id=f"{RID}:{attempt}:cancelled", response_id=RID, attempt=attempt, text_length=text_length
    )


def run(pieces: Sequence[str], attempt: int = 1, finish: FinishReason = FinishReason.STOP) -> list[Event]:
    """One answer as the services publish it, in stream order."""
    return [
        requested(), retrieval_started(), context(), started(attempt), first_token(attempt),
        *deltas(pieces, attempt), completed(sum(map(len, pieces)), attempt, finish),
    ]  # fmt: skip


# --- a tiny stand-in for the store and JetStream redelivery --------------------------------------


@dataclass
class Folded:
    state: ResponseState | None = None
    chunks: dict[int, list[str]] = field(default_factory=dict)  # attempt → appended pieces
    outcomes: list[Outcome] = field(default_factory=list)

    def text(self) -> str:
        assert self.state is not None
        return "".join(self.chunks.get(self.state.attempt, []))

    def apply(self, event: Event) -> Outcome:
        d = apply(self.state, event, now=T0 + timedelta(seconds=2))
        self.outcomes.append(d.outcome)
        if d.outcome is not Outcome.APPLIED:
            assert d.state == self.state, "a non-applied event must not change the state"
            assert not d.appends
            return d.outcome
        assert d.state is not None
        if d.state.attempt != (self.state.attempt if self.state else 0):
            self.chunks.pop(d.state.attempt, None)
        for a in d.appends:
            have = "".join(self.chunks.get(a.attempt, []))
            assert a.offset == len(have), "appends must be contiguous: never rewrite, never skip"
            self.chunks.setdefault(a.attempt, []).append(a.text)
        self.state = d.state
        assert len(self.text()) == d.state.text_length
        return d.outcome


def fold_with_redelivery(events: Iterable[Event]) -> Folded:
    """Fold in the given order; a gap goes to the back of the queue, as a nak'ed message would."""
    f, queue = Folded(), deque(events)
    budget = 50 * len(queue) + 10
    while queue and budget:
        budget -= 1
        event = queue.popleft()
        if f.apply(event) is Outcome.GAP:
            queue.append(event)
    assert not queue, f"gaps never resolved: {[e.event_id for e in queue]}"
    return f


def summary(f: Folded) -> tuple[object, ...]:
    s = f.state
    assert s is not None
    return (
        s.status,
        s.attempt,
        f.text(),
        s.text_length,
        s.sources,
        s.finish_reason,
        s.usage,
        s.error_code,
        s.model_ttft_ms,
    )


# --- the happy path and every order ----------------------------------------------------------


def test_in_order_run_completes_with_the_exact_text_sources_usage_and_timings():
    f = fold_with_redelivery(run(["Hello", ", ", "world"]))
    s = f.state
    assert s is not None and s.status is ResponseStatus.COMPLETED and s.terminal
    assert f.text() == "Hello, world" and s.text_length == 12 and s.next_seq == 3
    assert s.sources == (PASSAGE,) and s.usage == Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    assert s.model_ttft_ms == 120.0 and s.total_ms == 900.0 and s.finish_reason is FinishReason.STOP
    assert s.user_ttft_ms == 2000.0  # accepted at T0, first token folded at T0 + 2 s
    assert s.completed_at is not None and s.error_code is None
    assert Outcome.GAP not in f.outcomes


def test_every_order_of_a_run_ends_in_the_same_state():
    # 7 events, 5,040 orders (retrieval events in any position are covered by the property tests below)
    events = [e for e in run(["a", "bc", "def"]) if e.type not in ("context.retrieved", "retrieval.started")]
    expected = summary(fold_with_redelivery(events))
    assert expected[:3] == (ResponseStatus.COMPLETED, 1, "abcdef")
    for order in itertools.permutations(events):
        assert summary(fold_with_redelivery(order)) == expected, [e.event_id for e in order]


def test_context_arriving_in_any_position_still_sets_the_sources():
    events = run(["x", "y"])
    for i in range(1, len(events)):
        order = [e for e in events if e.type != "context.retrieved"]
        order.insert(i, context())
        assert fold_with_redelivery(order).state.sources == (PASSAGE,)  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_interleaving_with_duplicates_and_a_restart_folds_to_the_newer_attempt(data):
    pieces1 = data.draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4), label="attempt 1")
    pieces2 = data.draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4), label="attempt 2")
    stream = [
        requested(), retrieval_started(), context(), started(1), first_token(1), *deltas(pieces1, 1),  # a zombie
        started(2), first_token(2, 80.0), *deltas(pieces2, 2), completed(sum(map(len, pieces2)), 2),
    ]  # fmt: skip
    dupes = data.draw(st.lists(st.sampled_from(stream), max_size=6), label="redelivered")
    order = data.draw(st.permutations(stream + dupes), label="order")
    f = fold_with_redelivery(order)
    assert f.state is not None
    assert (f.state.status, f.state.attempt, f.text()) == (ResponseStatus.COMPLETED, 2, "".join(pieces2))
    assert f.state.sources == (PASSAGE,) and f.state.model_ttft_ms == 120.0


# --- duplicates ------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(1, 10))
def test_applying_any_event_twice_changes_nothing(cut):
    events = run(["one ", "two ", "three"])
    f = fold_with_redelivery(events[:cut])
    before, text = f.state, f.text()
    for e in events[:cut]:
        assert f.apply(e) in (Outcome.DUPLICATE, Outcome.IGNORED)
    assert f.state == before and f.text() == text


def test_the_same_delta_under_another_message_id_is_folded_once():
    f = fold_with_redelivery(run(["ab", "cd"])[:-1])
    again = deltas(["ab", "cd"])[1].model_copy(update={"event_id": "republished"})
    assert f.apply(again) is Outcome.DUPLICATE
    assert f.text() == "abcd"


def test_an_overlapping_delta_appends_only_the_new_tail():
    f = fold_with_redelivery([requested(), started(), *deltas(["abc"])])
    overlap = DeltaEmitted(event_id="x", response_id=RID, attempt=1, seq=1, offset=1, text="bcdé")
    assert f.apply(overlap) is Outcome.APPLIED
    assert f.text() == "abcdé" and f.state.text_length == 5  # type: ignore[union-attr]


# --- gaps ------------------------------------------------------------------------------------


def test_events_before_the_request_are_gaps():
    for e in run(["a"])[1:] + [cancel()]:
        assert apply(None, e).outcome is Outcome.GAP


def test_a_delta_beyond_the_stored_text_is_a_gap_until_the_missing_piece_arrives():
    d = deltas(["ab", "cd", "ef"])
    f = fold_with_redelivery([requested(), started(), d[0]])
    assert f.apply(d[2]) is Outcome.GAP and f.text() == "ab"
    assert f.apply(d[1]) is Outcome.APPLIED and f.apply(d[2]) is Outcome.APPLIED
    assert f.text() == "abcdef"


def test_a_completion_claiming_more_text_than_stored_waits_for_the_deltas():
    f = fold_with_redelivery([requested(), started(), *deltas(["ab"])])
    assert f.apply(completed(4)) is Outcome.GAP and f.state.status is ResponseStatus.GENERATING  # type: ignore[union-attr]


def test_events_of_a_newer_attempt_before_its_start_are_gaps():
    f = fold_with_redelivery([requested(), started(1)])
    for e in (first_token(2), *deltas(["x"], 2), completed(1, 2), cancelled(1, 2), failed(2, text_length=3)):
        assert f.apply(e) is Outcome.GAP


def test_a_failure_with_more_partial_text_than_stored_waits_for_the_deltas():
    f = fold_with_redelivery([requested(), started(), *deltas(["ab"])])
    assert f.apply(failed(text_length=3)) is Outcome.GAP
    assert f.apply(failed(text_length=2)) is Outcome.APPLIED and f.text() == "ab"


# --- attempts ---------------------------------------------------------------------------------


def test_a_newer_attempt_restarts_the_text_and_older_events_are_ignored():
    f = fold_with_redelivery([requested(), started(1), *deltas(["old text"], 1)])
    d = apply(f.state, started(2))
    assert d.outcome is Outcome.APPLIED and d.restarted
    f.apply(started(2))
    assert f.state.attempt == 2 and f.state.text_length == 0 and f.text() == ""  # type: ignore[union-attr]
    for stale in (
        started(1),
        first_token(1),
        *deltas(["old text", " more"], 1),
        completed(13, 1),
        failed(1),
        cancelled(0, 1),
    ):
        assert f.apply(stale) is Outcome.IGNORED
    for e in (*deltas(["new"], 2), completed(3, 2)):
        assert f.apply(e) is Outcome.APPLIED
    assert f.state.status is ResponseStatus.COMPLETED and f.text() == "new"  # type: ignore[union-attr]


def test_the_first_start_is_not_a_restart():
    f = fold_with_redelivery([requested(), retrieval_started()])
    assert not apply(f.state, started(1)).restarted


def test_a_newer_attempt_failing_before_it_started_ends_the_answer_under_that_attempt():
    f = fold_with_redelivery([requested(), started(1), *deltas(["partial"], 1)])
    assert f.apply(failed(3, FailureCode.DELIVERY_EXHAUSTED)) is Outcome.APPLIED
    s = f.state
    assert s.status is ResponseStatus.FAILED and s.attempt == 3 and s.error_code == "delivery_exhausted"  # type: ignore[union-attr]
    assert f.text() == ""


def test_a_retriever_failure_at_attempt_zero_fails_a_queued_answer():
    f = fold_with_redelivery([requested(), retrieval_started()])
    f.apply(failed(0, FailureCode.RETRIEVAL_FAILED))
    assert f.state.status is ResponseStatus.FAILED and f.state.error_code == "retrieval_failed"  # type: ignore[union-attr]


# --- states move forward; end states -----------------------------------------------------------


def test_states_only_move_forward():
    f = fold_with_redelivery([requested(), started(), *deltas(["a"])])
    assert f.apply(retrieval_started()) is Outcome.DUPLICATE
    assert f.state.status is ResponseStatus.GENERATING  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "ending, status",
    [
        (completed(1), ResponseStatus.COMPLETED),
        (completed(1, finish=FinishReason.LENGTH), ResponseStatus.TRUNCATED),
        (completed(1, finish=FinishReason.CONTENT_FILTER), ResponseStatus.CONTENT_FILTERED),
        (failed(), ResponseStatus.FAILED),
        (cancel(), ResponseStatus.CANCELLED),
        (cancelled(1), ResponseStatus.CANCELLED),
    ],
)
def test_a_terminal_state_never_changes(ending, status):
    f = fold_with_redelivery([requested(), started(), *deltas(["a"]), ending])
    ended, text = f.state, f.text()
    assert ended.status is status  # type: ignore[union-attr]
    later = [retrieval_started(), started(1), started(2), first_token(), *deltas(["a", "b"]), completed(2), failed(),
             failed(2), cancel(), cancelled(2), completed(1, finish=FinishReason.LENGTH)]  # fmt: skip
    for e in later:
        assert f.apply(e) in (Outcome.IGNORED, Outcome.DUPLICATE)
    assert f.state == ended and f.text() == text


def test_an_empty_stop_completion_is_a_failure_never_a_silent_empty_answer():
    f = fold_with_redelivery([requested(), started(), completed(0)])
    s = f.state
    assert s.status is ResponseStatus.FAILED and s.error_code == "provider_error"  # type: ignore[union-attr]
    assert s.error_message == EMPTY_ANSWER_MESSAGE  # type: ignore[union-attr]
    assert s.usage is not None  # usage is stored even when the answer failed  # type: ignore[union-attr]


def test_truncated_and_content_filtered_are_distinct_visible_outcomes():
    t = fold_with_redelivery([requested(), started(), *deltas(["cut off"]), completed(7, finish=FinishReason.LENGTH)])
    assert t.state.status is ResponseStatus.TRUNCATED and t.text() == "cut off"  # type: ignore[union-attr]
    assert t.state.finish_reason is FinishReason.LENGTH and t.state.error_code is None  # type: ignore[union-attr]
    c = fold_with_redelivery([requested(), started(), completed(0, finish=FinishReason.CONTENT_FILTER)])
    assert c.state.status is ResponseStatus.CONTENT_FILTERED and c.state.error_code == "content_filter"  # type: ignore[union-attr]


def test_cancel_keeps_the_partial_text_and_later_deltas_are_ignored():
    f = fold_with_redelivery([requested(), started(), *deltas(["partial "])])
    assert f.apply(cancel()) is Outcome.APPLIED
    assert f.state.status is ResponseStatus.CANCELLED and f.text() == "partial "  # type: ignore[union-attr]
    assert f.apply(deltas(["partial ", "more"])[1]) is Outcome.IGNORED
    assert f.apply(cancelled(12)) is Outcome.IGNORED
    assert f.apply(cancel()) is Outcome.DUPLICATE
    assert f.text() == "partial "


def test_cancel_of_a_queued_answer_ends_it():
    f = fold_with_redelivery([requested()])
    f.apply(cancel())
    assert f.state.status is ResponseStatus.CANCELLED  # type: ignore[union-attr]


def test_a_cancel_from_another_user_is_ignored():
    f = fold_with_redelivery([requested(), started()])
    assert f.apply(cancel(user="mallory")) is Outcome.IGNORED
    assert f.state.status is ResponseStatus.GENERATING  # type: ignore[union-attr]


def test_cancelled_by_the_generator_waits_for_its_partial_text():
    f = fold_with_redelivery([requested(), started(), *deltas(["ab"])])
    assert f.apply(cancelled(3)) is Outcome.GAP
    f.apply(DeltaEmitted(event_id="d1", response_id=RID, attempt=1, seq=1, offset=2, text="c"))
    assert f.apply(cancelled(3)) is Outcome.APPLIED and f.text() == "abc"


def test_user_ttft_is_set_once_by_the_first_visible_text():
    d = deltas(["a", "b"])
    f = Folded()
    for e in (requested(), started()):
        f.apply(e)
    first = apply(f.state, d[0], now=T0 + timedelta(milliseconds=1500))
    assert first.first_token and first.state.user_ttft_ms == 1500.0  # type: ignore[union-attr]
    second = apply(first.state, d[1], now=T0 + timedelta(seconds=9))
    assert not second.first_token and second.state.user_ttft_ms == 1500.0  # type: ignore[union-attr]


def test_an_empty_delta_adds_nothing():
    f = fold_with_redelivery([requested(), started()])
    assert (
        f.apply(DeltaEmitted(event_id="e", response_id=RID, attempt=1, seq=0, offset=0, text="")) is Outcome.DUPLICATE
    )
    assert f.state.user_ttft_ms is None  # type: ignore[union-attr]


# --- Unicode: offsets count code points ---------------------------------------------------------

UNICODE_PIECES = [
    "日本語の",
    "テキスト",
    "👩‍👩‍👧 family",
    " e\u0301",
    "\u0301\u0301",
    "🎉🎉",
    "한국어",
    "Z\u0351\u0362",
]


def test_unicode_offsets_count_code_points_not_bytes_or_graphemes():
    pieces = UNICODE_PIECES
    f = fold_with_redelivery(run(pieces))
    text = "".join(pieces)
    assert f.text() == text and f.state.text_length == len(text)  # type: ignore[union-attr]
    assert f.state.text_length != len(text.encode())  # type: ignore[union-attr]
    assert "\ufffd" not in f.text()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=6), min_size=1, max_size=8),
    st.randoms(),
)
def test_any_unicode_text_in_any_order_reassembles_exactly(pieces, rnd):
    events = run(pieces)
    rnd.shuffle(events)
    f = fold_with_redelivery(events)
    assert f.text() == "".join(pieces) and f.state.status is ResponseStatus.COMPLETED  # type: ignore[union-attr]


def test_an_overlapping_delta_splits_at_a_code_point_inside_an_emoji_sequence():
    f = fold_with_redelivery([requested(), started(), *deltas(["👩‍"])])  # woman + zero-width joiner: 2 code points
    f.apply(DeltaEmitted(event_id="x", response_id=RID, attempt=1, seq=1, offset=1, text="\u200d👩‍👧"))
    assert f.text() == "👩‍👩‍👧"
