"""What the scripted provider answers (:class:`Script`, raw chunk shapes) and what it records (:class:`Call`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Script", "Call", "text_chunk", "finish_chunk", "usage_chunk", "no_choices_chunk", "echo_script"]


def text_chunk(text: str | None, *, role: str | None = None) -> dict[str, Any]:
    """A chunk whose delta carries ``text`` (``None``: a content-less delta)."""
    delta: dict[str, Any] = {"content": text}
    if role:
        delta["role"] = role
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def finish_chunk(reason: str, text: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The usage-only last chunk OpenAI sends with ``stream_options.include_usage``: empty ``choices``."""
    total = prompt_tokens + completion_tokens
    return {
        "choices": [],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total},
    }


def no_choices_chunk() -> dict[str, Any]:
    return {"choices": []}


@dataclass(frozen=True)
class Script:
    """What one call answers. Items are ``tokens`` (or raw ``chunks``), sent on a timeline.

    Item *i* is sent at ``timeline[i]`` seconds after the request, else at
    ``first_token_delay_s + i * token_interval_s``. After the items: the finish chunk, the usage
    chunk (when the request asked for it, or ``send_usage``), ``data: [DONE]``. ``drop_after`` /
    ``stall_after`` count items; ``split_bytes`` cuts the SSE body into TCP writes of that many
    bytes (a list cycles), cutting UTF-8 characters; with ``carry_split`` a write may span events.
    """

    tokens: Sequence[str] = ("Hello", ",", " world", ".")
    chunks: Sequence[Mapping[str, Any]] | None = None  # raw chunk shapes instead of tokens/finish/usage
    first_token_delay_s: float = 0.0
    token_interval_s: float = 0.0
    timeline: Sequence[float] | None = None
    finish_reason: str | None = "stop"
    usage: Mapping[str, int] | None = None  # None: counted from the request and the tokens
    send_usage: bool | None = None  # None: as the request's stream_options.include_usage says
    role_chunk: bool = True  # the first, content-less ``{"role": "assistant"}`` chunk real servers send
    done: bool = True
    split_bytes: int | Sequence[int] | None = None
    carry_split: bool = False
    split_pause_s: float = 0.002
    drop_after: int | None = None
    drop_mode: Literal["close", "end"] = "close"  # close: cut the TCP connection; end: end the body cleanly
    stall_after: int | None = None  # after this many items send nothing until the client leaves
    status: int = 200
    error: Mapping[str, Any] | None = None  # the error body's ``error`` object for status >= 400
    headers: Mapping[str, str] = field(default_factory=dict)
    ascii_json: bool = False
    model: str | None = None  # the model the chunks name (default: the requested one)

    @classmethod
    def http_error(cls, status: int = 429, message: str | None = None, *, retry_after_ms: int | None = None) -> Script:
        kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "authentication_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        body = {"message": message or f"scripted HTTP {status}", "type": kind, "param": None, "code": kind}
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        return cls(status=status, error=body, headers=headers)

    @property
    def items(self) -> list[Mapping[str, Any]]:
        return list(self.chunks) if self.chunks is not None else [text_chunk(t) for t in self.tokens]

    def send_at(self, i: int) -> float:
        if self.timeline is not None:
            return float(self.timeline[i])
        return self.first_token_delay_s + i * self.token_interval_s

    def text(self) -> str:
        """The content this script sends (what a client should end up with)."""
        out = []
        for item in self.items:
            for choice in item.get("choices") or []:
                out.append((choice.get("delta") or {}).get("content") or "")
        return "".join(out)


def echo_script(
    body: Mapping[str, Any], *, tokens_per_s: float = 50.0, words: int = 40, first_token_ms: float = 100.0
) -> Script:
    """The default answer: deterministic words about the last user message, at ``tokens_per_s``."""
    question = next(
        (str(m.get("content", "")) for m in reversed(body.get("messages") or []) if m.get("role") == "user"), ""
    )
    seed = int(hashlib.sha256(question.encode()).hexdigest(), 16)
    vocab = "the passages say that a licence grants rights under conditions notice source copy work [1] [2]".split()
    picked = [vocab[(seed >> (3 * i)) % len(vocab)] for i in range(max(0, words - 4))]
    text = f"Scripted answer to: {question[:80]}. " + " ".join(picked) + "."
    tokens = [t + " " for t in text.split(" ")]
    tokens[-1] = tokens[-1].rstrip()
    interval = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
    return Script(tokens=tokens, first_token_delay_s=first_token_ms / 1000, token_interval_s=interval)


@dataclass
class Call:
    """One request the provider received, and what became of it."""

    index: int
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float  # time.monotonic()
    status: int = 200
    items_sent: int = 0
    completed: bool = False  # the whole scripted response was written
    disconnected: bool = False  # the client went away before the end
    disconnected_at: float | None = None
    ended_at: float | None = None

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def stream_options(self) -> dict[str, Any] | None:
        return self.body.get("stream_options")
