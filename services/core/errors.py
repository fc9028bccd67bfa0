"""What can go wrong inside a handler, and what the handler does about it.

RelayError
├── TransientError   nak with back-off: the same message will be tried again
└── PermanentError   terminate the message; publish a failure event with a readable cause
"""

from __future__ import annotations

from services.core.contracts import FailureCode

__all__ = ["RelayError", "TransientError", "PermanentError"]


class RelayError(Exception):
    def __init__(self, message: str, *, code: FailureCode = FailureCode.INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransientError(RelayError):
    """Try again later (dependency down, rate limited)."""


class PermanentError(RelayError):
    """Retrying cannot help; end the answer as failed with this cause."""
