"""The delta coalescer: the first text goes out at once, later text at most every ``flush_ms`` or ``flush_chars``.

Pure apart from the clock, which is a parameter. Offsets count Unicode code points (``len(str)``),
never bytes, and ``seq`` numbers the deltas of one attempt from 0.

    c = Coalescer(flush_ms=50, flush_chars=256)
    c.add("Hel")        -> Delta(seq=0, offset=0, text="Hel")   first text: at once
    c.add("lo")         -> None                                  held until due_at()
    c.flush()           -> Delta(seq=1, offset=3, text="lo")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Delta", "Coalescer"]


@dataclass(frozen=True)
class Delta:
    seq: int
    offset: int  # code points of the attempt's text before this piece
    text: str


class Coalescer:
    def __init__(self, *, flush_ms: float, flush_chars: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.flush_s = flush_ms / 1000.0
        self.flush_chars = flush_chars
        self.clock = clock
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last_emit: float | None = None
        self.seq = 0  # deltas emitted so far
        self.emitted_chars = 0  # code points emitted so far (the next delta's offset)

    @property
    def pending_chars(self) -> int:
        return self._pending_chars

    def add(self, text: str) -> Delta | None:
        """Take a piece of text; returns a delta when one is due now (else the text waits)."""
        if not text:
            return None
        self._pending.append(text)
        self._pending_chars += len(text)
        now = self.clock()
        if self._last_emit is None or self._pending_chars >= self.flush_chars or now - self._last_emit >= self.flush_s:
            return self._emit(now)
        return None

    def due_at(self) -> float | None:
        """When the held text must go out (clock time), or None when nothing is held."""
        if not self._pending:
            return None
        assert self._last_emit is not None  # the first text is never held
        return self._last_emit + self.flush_s

    def flush(self) -> Delta | None:
        """Emit whatever is held (at the flush tick, and at the end of the stream)."""
        return self._emit(self.clock()) if self._pending else None

    def _emit(self, now: float) -> Delta:
        text = "".join(self._pending)
        delta = Delta(seq=self.seq, offset=self.emitted_chars, text=text)
        self._pending.clear()
        self._pending_chars = 0
        self._last_emit = now
        self.seq += 1
        self.emitted_chars += len(text)
        return delta
