"""How the page words outcomes, timings and citations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.core.contracts import Passage
from services.core.views import ErrorDetail, ResponseStatus
from ui import present
from ui.state import TurnState

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def failed(code: str, message: str = "detail", text: str = "") -> TurnState:
    return TurnState(
        "q", uuid.uuid4(), status=ResponseStatus.FAILED, text=text, error=ErrorDetail(code=code, message=message)
    )


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("provider_unavailable", "unavailable"),
        ("provider_timeout", "timed out"),
        ("provider_disconnected", "dropped the connection"),
        ("stalled", "timed out"),
        ("retrieval_failed", "documents"),
    ],
)
def test_a_failure_names_its_cause_and_offers_a_retry(code: str, words: str) -> None:
    outcome = present.describe_outcome(failed(code, "The model server refused the connection."))
    assert outcome is not None and outcome.kind == "error" and outcome.retry
    assert words in outcome.title
    assert "refused the connection" in outcome.message


def test_an_unknown_failure_code_is_still_shown() -> None:
    outcome = present.describe_outcome(failed("quota_exceeded"))
    assert outcome is not None and "quota_exceeded" in outcome.title


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (ResponseStatus.TRUNCATED, "cut off"),
        (ResponseStatus.CONTENT_FILTERED, "content filter"),
        (ResponseStatus.CANCELLED, "cancelled"),
    ],
)
def test_truncated_filtered_and_cancelled_answers_say_so(status: ResponseStatus, words: str) -> None:
    outcome = present.describe_outcome(TurnState("q", uuid.uuid4(), status=status, text="partial"))
    assert outcome is not None and words in outcome.title and outcome.kind != "error"


def test_partial_text_is_said_to_be_kept() -> None:
    outcome = present.describe_outcome(failed("provider_disconnected", text="Half an ans"))
    assert outcome is not None and "kept" in outcome.message


def test_a_completed_or_running_answer_has_no_notice() -> None:
    assert present.describe_outcome(TurnState("q", uuid.uuid4(), status=ResponseStatus.COMPLETED, text="ok")) is None
    assert present.describe_outcome(TurnState("q", uuid.uuid4(), status=ResponseStatus.GENERATING)) is None


def test_an_unsent_question_says_why_and_whether_retrying_helps() -> None:
    down = present.describe_outcome(TurnState.unsent("q", "k", "relay down", retryable=True))
    refused = present.describe_outcome(TurnState.unsent("q", "k", "message too long", retryable=False))
    assert down is not None and down.retry and "relay down" in down.message
    assert refused is not None and not refused.retry and "too long" in refused.message


@pytest.mark.parametrize(("ms", "text"), [(None, "–"), (840, "0.8 s"), (12_400, "12 s"), (125_000, "2 min 5 s")])
def test_durations_read_naturally(ms: float | None, text: str) -> None:
    assert present.format_duration(ms) == text


def test_timing_shows_first_token_and_elapsed_while_running_then_total() -> None:
    t = TurnState(
        "q", uuid.uuid4(), status=ResponseStatus.GENERATING, user_ttft_ms=800, created_at=NOW - timedelta(seconds=4.2)
    )
    assert present.timing_line(t, NOW) == "first token 0.8 s · 4.2 s elapsed"
    t.status, t.total_ms = ResponseStatus.COMPLETED, 6100
    assert present.timing_line(t, NOW) == "first token 0.8 s · 6.1 s total"


def test_citation_label_names_source_and_section_or_part() -> None:
    with_heading = Passage(
        text="x", source="GPL-3.txt", position=4, heading="5. Conveying Modified Source Versions", score=0.8
    )
    without = Passage(text="x", source="BSD.txt", position=0, score=0.5)
    assert present.citation_label(1, with_heading) == "[1] GPL-3.txt — 5. Conveying Modified Source Versions"
    assert present.citation_label(2, without) == "[2] BSD.txt — part 1"


def test_passage_markdown_joins_wrapped_lines_and_interprets_nothing() -> None:
    md = present.passage_markdown("  1. Definitions.\n\n*Program* means\nthe [work] #1.\n")
    assert md == "1\\. Definitions\\.\n\n\\*Program\\* means the \\[work\\] \\#1\\."


def test_relative_times_and_short_titles() -> None:
    assert present.ago(NOW - timedelta(seconds=5), NOW) == "just now"
    assert present.ago(NOW - timedelta(minutes=3), NOW) == "3 min ago"
    assert present.short_title("a " * 40, 10) == "a a a a a…"


def test_two_passages_of_the_same_section_are_told_apart_by_their_part() -> None:
    a = Passage(text="x", source="CC0-1.0.txt", position=5, heading="3. Public License Fallback", score=0.9)
    b = Passage(text="y", source="CC0-1.0.txt", position=6, heading="3. Public License Fallback", score=0.8)
    c = Passage(text="z", source="CC0-1.0.txt", position=0, heading="Statement of Purpose", score=0.7)
    assert present.citation_labels([a, b, c]) == [
        "[1] CC0-1.0.txt — 3. Public License Fallback (part 6)",
        "[2] CC0-1.0.txt — 3. Public License Fallback (part 7)",
        "[3] CC0-1.0.txt — Statement of Purpose",
    ]


def test_a_server_message_that_already_says_the_text_is_kept_is_not_repeated() -> None:
    outcome = present.describe_outcome(
        failed("provider_disconnected", "Closed early; the text so far is kept.", "Half")
    )
    assert outcome is not None and outcome.message.count("kept") == 1
