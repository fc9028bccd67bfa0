"""The page model without Streamlit: merging text by offset and attempt, back-off, idempotency keys, poll schedule."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest

from services.core.views import ConversationView, ResponseStatus, ResponseView, TurnView
from ui.state import ChatState, Connection, TurnState, backoff_delay, idempotency_key, merge_text

RID, CID = uuid.uuid4(), uuid.uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def view(text: str, offset: int, *, attempt: int = 1, total: int | None = None, restarted: bool = False,
         status: ResponseStatus = ResponseStatus.GENERATING, poll_after_ms: int = 250) -> ResponseView:  # fmt: skip
    return ResponseView(
        response_id=RID, conversation_id=CID, status=status, terminal=status in {ResponseStatus.COMPLETED, ResponseStatus.FAILED},
        attempt=attempt, text=text, offset=offset, next_offset=offset + len(text),
        text_length=total if total is not None else offset + len(text), restarted=restarted,
        created_at=NOW, updated_at=NOW, poll_after_ms=poll_after_ms,
    )  # fmt: skip


def test_merge_appends_text_that_starts_where_ours_ends() -> None:
    m = merge_text("Hello", 1, view(", world", 5))
    assert (m.text, m.attempt, m.redrawn, m.again) == ("Hello, world", 1, False, False)


def test_merge_drops_the_overlap_of_a_repeated_slice() -> None:
    """A poll answered twice (a retried request) must not double any character."""
    assert merge_text("Hello, wo", 1, view("lo, world", 3)).text == "Hello, world"
    assert merge_text("Hello, world", 1, view("Hello", 0)).text == "Hello, world"


def test_merge_keeps_ours_and_asks_again_when_the_slice_starts_beyond_it() -> None:
    m = merge_text("Hel", 1, view("world", 7))
    assert (m.text, m.again) == ("Hel", True)


def test_merge_redraws_when_a_new_attempt_restarted_the_text() -> None:
    m = merge_text("First attempt's te", 1, view("Second", 0, attempt=2, restarted=True))
    assert (m.text, m.attempt, m.redrawn) == ("Second", 2, True)


def test_merge_redraws_on_a_different_attempt_even_without_the_flag() -> None:
    assert merge_text("old text", 1, view("new", 0, attempt=2)).text == "new"


def test_merge_forgets_ours_when_a_restart_does_not_start_at_zero() -> None:
    m = merge_text("old", 1, view("tail", 4, attempt=2, restarted=True))
    assert (m.text, m.attempt, m.again) == ("", None, True)


def test_merge_of_an_unknown_attempt_takes_the_whole_text() -> None:
    """After a reload the page holds the conversation's text but not its attempt: the first poll is from 0."""
    m = merge_text("Hello", None, view("Hello, world", 0))
    assert (m.text, m.attempt, m.redrawn) == ("Hello, world", 1, False)


def test_merge_counts_unicode_characters_not_bytes() -> None:
    assert merge_text("日本語", 1, view("🙂é", 3)).text == "日本語🙂é"


@pytest.mark.parametrize("seed", range(20))
def test_polling_in_random_slices_with_repeats_rebuilds_the_exact_text(seed: int) -> None:
    """Whatever slices the server answers (overlapping, repeated, stale), the page ends with the text exactly."""
    rng = random.Random(seed)
    final = "".join(rng.choice("ab c日本🙂\n") for _ in range(300))
    text, attempt = "", None
    visible = 0
    for _ in range(2000):
        visible = min(len(final), visible + rng.randint(0, 25))
        since = len(text) if attempt is not None else 0
        start = max(0, since - rng.choice([0, 0, 0, 3, 10]))  # sometimes a stale/overlapping slice
        m = merge_text(text, attempt, view(final[start:visible], start, total=visible))
        text, attempt = m.text, m.attempt
        assert final.startswith(text)
        if visible == len(final) and text == final:
            break
    assert text == final


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=0.5, cap=4.0, jitter=0.0) for n in range(0, 8)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_only_shortens_the_wait() -> None:
    assert backoff_delay(3, base=0.5, cap=4.0, jitter=0.2, rand=lambda: 1.0) == pytest.approx(1.6)
    assert backoff_delay(3, base=0.5, cap=4.0, jitter=0.2, rand=lambda: 0.0) == 2.0
    assert backoff_delay(10_000) <= 4.0


def test_connection_waits_after_each_failure_and_is_ready_again_when_recovered() -> None:
    conn = Connection()
    assert conn.ready(0.0) and not conn.reconnecting
    delay = conn.failed(100.0, "refused", base=1.0, cap=8.0)
    assert conn.reconnecting and conn.failures == 1
    assert not conn.ready(100.0) and conn.ready(100.0 + delay)
    conn.failed(101.0, "refused", base=1.0, cap=8.0)
    assert conn.failures == 2 and conn.retry_at > 101.0 + 1.0 * 0.8 * 2 - 1e-9
    conn.recovered()
    assert conn.ready(0.0) and not conn.reconnecting and conn.last_error is None


def test_idempotency_key_is_the_same_for_the_same_turn_and_question() -> None:
    assert idempotency_key("c1", 2, "Why?") == idempotency_key("c1", 2, "Why?")


@pytest.mark.parametrize(("ref", "turn", "message"), [("c2", 2, "Why?"), ("c1", 3, "Why?"), ("c1", 2, "Why not?")])
def test_idempotency_key_differs_for_another_conversation_turn_or_question(ref: str, turn: int, message: str) -> None:
    assert idempotency_key(ref, turn, message) != idempotency_key("c1", 2, "Why?")


def test_idempotency_key_is_printable_ascii_within_ingress_limits() -> None:
    key = idempotency_key(f"new-{uuid.uuid4().hex}", 12, "日本語 " * 2000)
    assert key.isascii() and key.isprintable() and 1 <= len(key) <= 255


def test_a_retry_gets_a_new_key_because_it_is_a_new_turn() -> None:
    chat = ChatState("u", CID)
    first = chat.key_for("Why?")
    chat.turns.append(TurnState("Why?", RID, status=ResponseStatus.FAILED, synced=True, idempotency_key=first))
    assert chat.key_for("Why?") != first


def test_a_new_conversation_is_named_by_its_draft_until_the_server_gives_an_id() -> None:
    a, b = ChatState("u"), ChatState("u")
    assert a.key_for("Hi") != b.key_for("Hi")  # two "New conversation"s never share a key
    assert a.key_for("Hi") == a.key_for("Hi")


def test_turn_is_settled_only_when_terminal_with_all_of_its_text() -> None:
    t = TurnState("q", RID)
    t.apply(view("Hel", 0, total=3))
    assert not t.settled
    t.apply(view("lo", 3, total=5, status=ResponseStatus.COMPLETED, poll_after_ms=0))
    assert t.settled and t.text == "Hello"
    gap = TurnState("q", RID)
    gap.apply(view("Hel", 0, total=10, status=ResponseStatus.COMPLETED, poll_after_ms=0))
    assert not gap.settled  # terminal, but 7 characters still to fetch


def test_a_reloaded_conversation_resumes_running_turns_from_offset_zero() -> None:
    chat = ChatState.opening("u", CID)
    done = TurnView(
        response_id=uuid.uuid4(), question="a", status=ResponseStatus.COMPLETED, text="done", created_at=NOW
    )
    running = TurnView(response_id=RID, question="b", status=ResponseStatus.GENERATING, text="par", created_at=NOW)
    chat.load(ConversationView(conversation_id=CID, turns=[done, running]))
    assert chat.loaded and chat.busy and chat.first_live() == 1
    assert chat.turns[0].settled and chat.turns[1].text == "par" and chat.turns[1].since == 0


def test_schedule_follows_the_soonest_server_advice_and_repolls_at_once_after_a_gap() -> None:
    chat = ChatState("u")
    chat.schedule(10.0, [view("a", 0, poll_after_ms=1000), view("b", 0, poll_after_ms=250)], again=False)
    assert chat.next_poll_at == pytest.approx(10.25)
    assert not chat.due(10.2) and chat.due(10.25)
    chat.schedule(10.0, [view("a", 0)], again=True)
    assert chat.due(10.0)


def test_not_due_while_the_connection_backs_off() -> None:
    chat = ChatState("u")
    chat.conn.failed(5.0, "down", base=2.0, cap=2.0)
    assert not chat.due(5.5)
