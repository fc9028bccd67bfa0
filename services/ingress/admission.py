"""What ingress accepts, decided without any I/O: message, model, user id, idempotency key, ids.

Every refusal is a ``Rejection`` carrying the HTTP status, an error code and a sentence that says
what is wrong, so the route only has to turn it into the shared error body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
import uuid
from collections.abc import Sequence

from services.core.contracts import ChatRequested
from services.core.views import has_lone_surrogate

__all__ = [
    "Rejection",
    "check_message",
    "resolve_model",
    "check_user_id",
    "check_idempotency_key",
    "derive_response_id",
    "same_request",
]

_USER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


class Rejection(Exception):
    """A request ingress refuses: ``status`` (4xx), a stable ``code`` and a readable ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _visible(text: str) -> bool:
    """Anything but white space, control and format characters (NUL, zero-width space...)."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in text)


def check_message(message: str, *, max_chars: int) -> str:
    """The question as published; refuses an empty one and one over the limit (Unicode characters)."""
    if has_lone_surrogate(message):
        raise Rejection(
            422, "invalid_text", "message contains an invalid Unicode escape (a lone surrogate such as \\ud800)"
        )
    if not _visible(message):
        raise Rejection(
            422, "empty_message", "message must not be empty (it holds only blanks or invisible characters)"
        )
    if len(message) > max_chars:
        raise Rejection(
            422,
            "message_too_long",
            f"message is {len(message)} characters long; the limit is {max_chars} characters",
        )
    return message


def resolve_model(requested: str | None, *, allowed: Sequence[str], default: str) -> str:
    if requested is None:
        return default
    if requested not in allowed:
        raise Rejection(422, "unknown_model", f"unknown model {requested!r}; allowed models: {', '.join(allowed)}")
    return requested


def check_user_id(header: str | None) -> str:
    if header is None:
        return "anonymous"
    if not _USER_ID.fullmatch(header):
        raise Rejection(
            400,
            "invalid_user_id",
            "X-User-Id must be 1-128 characters of letters, digits and _ . @ -",
        )
    return header


def check_idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(header):
        raise Rejection(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-255 printable ASCII characters (got {len(header)} characters)",
        )
    return header


def derive_response_id(secret: bytes, user_id: str, key: str) -> uuid.UUID:
    """The same key from the same user gives the same id; without the secret nobody can guess it."""
    digest = hmac.new(secret, f"{user_id}\0{key}".encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def same_request(stored: ChatRequested, *, message: str, model: str, conversation_id: uuid.UUID | None) -> str | None:
    """None when a replayed key carries the stored request; else which part differs."""
    if stored.message != message:
        return "a different message"
    if stored.model != model:
        return f"model {stored.model!r}"
    if conversation_id is not None and conversation_id != stored.conversation_id:
        return f"conversation {stored.conversation_id}"
    return None
