"""How the chat words things, free of Streamlit: status labels, failure causes, timings, citations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from services.core.contracts import FailureCode, Passage
from services.core.views import ResponseStatus
from ui.state import TurnState

__all__ = [
    "Outcome",
    "STATUS_LABELS",
    "status_key",
    "describe_outcome",
    "format_duration",
    "timing_line",
    "citation_label",
    "citation_labels",
    "passage_markdown",
    "ago",
    "short_title",
]

STATUS_LABELS: dict[str, str] = {
    "unsent": "Not sent",
    ResponseStatus.QUEUED: "Queued",
    ResponseStatus.RETRIEVING: "Searching the documents",
    ResponseStatus.GENERATING: "Generating",
    ResponseStatus.COMPLETED: "Done",
    ResponseStatus.TRUNCATED: "Cut off",
    ResponseStatus.CONTENT_FILTERED: "Filtered",
    ResponseStatus.FAILED: "Failed",
    ResponseStatus.CANCELLED: "Cancelled",
}

_CAUSES: dict[str, str] = {
    FailureCode.PROVIDER_UNAVAILABLE: "The model server is unavailable",
    FailureCode.PROVIDER_ERROR: "The model server returned an error",
    FailureCode.PROVIDER_DISCONNECTED: "The model server dropped the connection mid-answer",
    FailureCode.PROVIDER_TIMEOUT: "The model stopped responding (timed out)",
    FailureCode.RETRIEVAL_FAILED: "Searching the documents failed",
    FailureCode.HISTORY_UNAVAILABLE: "The earlier turns of this conversation could not be loaded",
    FailureCode.DELIVERY_EXHAUSTED: "No worker could finish this answer",
    FailureCode.STALLED: "The answer stalled (timed out)",
    FailureCode.INTERNAL: "Something went wrong inside the relay",
}


@dataclass(frozen=True)
class Outcome:
    """A notice under an answer that did not simply complete."""

    kind: Literal["error", "warning", "info"]
    title: str
    message: str
    retry: bool  # offer to ask the same question again as a fresh answer


def status_key(turn: TurnState) -> str:
    return "unsent" if turn.status is None else str(turn.status)


def describe_outcome(turn: TurnState) -> Outcome | None:
    """None while running or after a plain completion; otherwise what happened and why."""
    if turn.status is None:
        return Outcome(
            "error",
            "Your question was not sent",
            turn.send_error or "the relay could not be reached",
            turn.send_retryable,
        )
    message = turn.error.message if turn.error else ""
    partial = " The text so far is kept above." if turn.text and "kept" not in message else ""
    match turn.status:
        case ResponseStatus.FAILED:
            code = turn.error.code if turn.error else FailureCode.INTERNAL
            title = _CAUSES.get(code, f"The answer failed ({code})")
            return Outcome("error", title, (message or "no further detail") + partial, retry=True)
        case ResponseStatus.TRUNCATED:
            return Outcome(
                "warning",
                "The answer was cut off at the model's length limit",
                message or "Ask for a shorter answer, or retry.",
                True,
            )
        case ResponseStatus.CONTENT_FILTERED:
            return Outcome(
                "warning",
                "The answer was stopped by the content filter",
                (message or "The model's provider withheld it.") + partial,
                True,
            )
        case ResponseStatus.CANCELLED:
            return Outcome(
                "info", "You cancelled this answer", (message or "Nothing more will be generated.") + partial, True
            )
    return None


def format_duration(ms: float | None) -> str:
    if ms is None:
        return "–"
    s = max(0.0, ms / 1000.0)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, rest = divmod(int(round(s)), 60)
    return f"{m} min {rest} s"


def timing_line(turn: TurnState, now: datetime | None = None) -> str:
    """``first token 0.8 s · 6.1 s total`` when done; ``… · 4.2 s elapsed`` while running."""
    if turn.response_id is None:
        return ""
    parts = []
    if turn.user_ttft_ms is not None:
        parts.append(f"first token {format_duration(turn.user_ttft_ms)}")
    if turn.terminal:
        if turn.total_ms is not None:
            parts.append(f"{format_duration(turn.total_ms)} total")
    elif turn.created_at is not None:
        elapsed = ((now or datetime.now(UTC)) - turn.created_at).total_seconds() * 1000
        parts.append(f"{format_duration(elapsed)} elapsed")
    return " · ".join(parts)


def citation_label(number: int, passage: Passage) -> str:
    """``[1] GPL-3.txt — 5. Conveying Modified Source Versions`` (or the part number when untitled)."""
    where = passage.heading.strip() if passage.heading and passage.heading.strip() else f"part {passage.position + 1}"
    return f"[{number}] {passage.source} — {where}"


def citation_labels(passages: list[Passage]) -> list[str]:
    """One label per passage, numbered from 1; two passages of the same section also name their part."""
    labels = [citation_label(n, p) for n, p in enumerate(passages, 1)]
    bare = [label.split("] ", 1)[1] for label in labels]
    return [
        f"{label} (part {p.position + 1})" if bare.count(b) > 1 and p.heading else label
        for label, b, p in zip(labels, bare, passages, strict=True)
    ]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")


def passage_markdown(text: str) -> str:
    """A passage as readable Markdown: hard-wrapped lines joined into paragraphs, nothing interpreted."""
    paragraphs = [
        " ".join(line.strip() for line in block.splitlines() if line.strip()) for block in re.split(r"\n\s*\n", text)
    ]
    return "\n\n".join(_MD_SPECIAL.sub(r"\\\1", p) for p in paragraphs if p)


def ago(then: datetime, now: datetime | None = None) -> str:
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return then.strftime("%d %b")


def short_title(text: str, limit: int = 48) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"
