"""How the client shows an answer: the growing text, the sources, the timings, the final status. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from services.core.contracts import Passage
from services.core.views import ResponseStatus, ResponseView

__all__ = ["TextPrinter", "format_sources", "format_timings", "format_status", "SUCCESS"]

SUCCESS = frozenset({ResponseStatus.COMPLETED, ResponseStatus.TRUNCATED})


class TextPrinter:
    """Writes the answer as it grows; on a restart it says so and writes the new text from the start."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.text = ""

    def append(self, piece: str) -> None:
        if piece:
            self.text += piece
            self.out.write(piece)
            self.out.flush()

    def restart(self, attempt: int, text: str) -> None:
        if self.text:
            self.out.write(f"\n\n[the answer restarted (attempt {attempt}); here it is again from the start]\n\n")
        self.text = ""
        self.append(text)

    def end(self) -> None:
        if self.text and not self.text.endswith("\n"):
            self.out.write("\n")
        self.out.flush()


def _seconds(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.2f} s"


def format_sources(sources: Sequence[Passage]) -> list[str]:
    if not sources:
        return ["Sources: none"]
    lines = ["Sources:"]
    for i, p in enumerate(sources, 1):
        where = f"§ {p.heading}, chunk {p.position}" if p.heading else f"chunk {p.position}"
        lines.append(f"  [{i}] {p.source} — {where} — score {p.score:.3f}")
    return lines


def format_timings(view: ResponseView, *, client_first_text_s: float | None, client_total_s: float | None) -> str:
    line = (
        f"Timings: model TTFT {_seconds(view.model_ttft_ms)} · user-perceived TTFT {_seconds(view.user_ttft_ms)}"
        f" · total {_seconds(view.total_ms)}"
    )
    if client_total_s is not None:
        first = "–" if client_first_text_s is None else f"{client_first_text_s:.2f} s"
        line += f" (here: first text after {first}, done after {client_total_s:.2f} s)"
    return line


def format_status(view: ResponseView) -> str:
    status = view.status.value
    if view.status == ResponseStatus.COMPLETED:
        tokens = f", {view.usage.completion_tokens} tokens" if view.usage and view.usage.completion_tokens else ""
        model = f" by {view.model}" if view.model else ""
        return f"Status: completed{model}{tokens}"
    if view.status == ResponseStatus.TRUNCATED:
        return "Status: truncated — the model stopped at its length limit; the text above is complete up to there"
    kept = f" (after {view.text_length} characters, kept above)" if view.text_length else ""
    if view.error:
        return f"Status: {status}{kept} — {view.error.code}: {view.error.message}"
    if view.status == ResponseStatus.CONTENT_FILTERED:
        return f"Status: content_filtered{kept} — the provider's content filter stopped the answer"
    if view.status == ResponseStatus.CANCELLED:
        return f"Status: cancelled{kept}"
    return f"Status: {status}{kept}"
