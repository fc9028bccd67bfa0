"""Follow one answer by polling the status service: ``since``/``attempt`` cursors, ``poll_after_ms`` pacing.

A status service that goes away is retried with back-off (``Reconnecting…``) for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from services.cli.client import ApiFailure, RelayClient, Unreachable
from services.cli.render import TextPrinter
from services.core.views import ResponseStatus, ResponseView

__all__ = ["Followed", "follow"]

_MIN_WAIT_S, _MAX_WAIT_S = 0.05, 5.0


@dataclass
class Followed:
    """What following produced: the last view, the whole text, and what this client measured."""

    view: ResponseView
    text: str
    first_text_s: float | None
    total_s: float
    restarts: int = 0
    polls: int = field(default=0)


def follow(
    client: RelayClient,
    response_id: str,
    *,
    out: TextIO,
    notes: TextIO,
    reconnect_for_s: float,
    not_found_grace_s: float = 0.0,
    show_progress: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Followed:
    """Poll until the answer is terminal, writing its text to ``out`` as it grows."""
    printer = TextPrinter(out)
    started = time.monotonic()
    since, attempt = 0, None
    first_text: float | None = None
    restarts = polls = 0
    outage_since: float | None = None
    backoff = 0.5
    last_status: ResponseStatus | None = None
    while True:
        try:
            view = client.poll(response_id, since=since, attempt=attempt)
        except (Unreachable, httpx.TransportError) as exc:
            outage_since = outage_since or time.monotonic()
            if time.monotonic() - outage_since > reconnect_for_s:
                raise exc if isinstance(exc, Unreachable) else Unreachable("status", client.status_url, exc) from exc
            notes.write(f"Reconnecting to the status service at {client.status_url}…\n")
            notes.flush()
            sleep(backoff)
            backoff = min(backoff * 2, _MAX_WAIT_S)
            continue
        except ApiFailure as exc:
            if exc.status == 404 and time.monotonic() - started < not_found_grace_s:
                sleep(0.25)
                continue
            if exc.status >= 500:
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since <= reconnect_for_s:
                    notes.write(f"The status service answered {exc.status}; retrying…\n")
                    sleep(backoff)
                    backoff = min(backoff * 2, _MAX_WAIT_S)
                    continue
            raise
        polls += 1
        if outage_since is not None:
            notes.write("Reconnected.\n")
            outage_since, backoff = None, 0.5
        if show_progress and view.status != last_status and not view.terminal:
            notes.write(f"[{view.status.value}]\n")
            notes.flush()
        last_status = view.status
        if view.restarted:
            restarts += 1
            printer.restart(view.attempt, view.text)
        else:
            printer.append(view.text)
        if printer.text and first_text is None:
            first_text = time.monotonic() - started
        since, attempt = view.next_offset, view.attempt
        if view.terminal:
            printer.end()
            return Followed(view, printer.text, first_text, time.monotonic() - started, restarts, polls)
        wait_ms = view.poll_after_ms if view.poll_after_ms > 0 else 250
        sleep(min(max(wait_ms / 1000, _MIN_WAIT_S), _MAX_WAIT_S))
