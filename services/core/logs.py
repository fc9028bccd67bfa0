"""Structured logging: the response id is bound to every line; JSON when not on a terminal."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

__all__ = ["configure_logging", "bound"]

_EMPTY: dict[str, str] = {}  # never mutated: bound() always sets a new dict
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("relay_log_context", default=_EMPTY)  # noqa: B039


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Bind fields (e.g. ``response_id``) to every log line written inside the block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items()}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.relay = _context.get()
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "relay", {}),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = getattr(record, "relay", {})
        return base + ("".join(f" {k}={v}" for k, v in ctx.items()) if ctx else "")


def configure_logging(service: str, level: str = "INFO", json_logs: bool | None = None) -> None:
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        _JsonFormatter(service) if json_logs else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
