"""Background jobs of the status service: the stall sweeper, the in-flight gauge and retention.

The sweeper never writes the database itself: it publishes ``ResponseFailed(code=stalled)`` to the
answer's events subject, so the fold stays the one write path (and its rules still apply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from services.core import bus, contracts, logs, metrics
from services.core.contracts import FailureCode, ResponseFailed
from services.status.store import ResponseStore

__all__ = ["sweep_once", "run_sweeper", "run_retention"]

log = logging.getLogger(__name__)


def _stall_message(stall_after_s: float) -> str:
    span = f"{stall_after_s / 60:.0f} minutes" if stall_after_s >= 120 else f"{stall_after_s:.0f} seconds"
    return f"The answer made no progress for {span} and was stopped. Please ask again."


async def sweep_once(store: ResponseStore, js: JetStreamContext, *, stall_after_s: float, limit: int = 500) -> int:
    """Publish a stalled failure for every running answer unchanged for longer than ``stall_after_s``."""
    cutoff = datetime.now(UTC) - timedelta(seconds=stall_after_s)
    stuck = await store.stalled(cutoff, limit)
    for state in stuck:
        event = ResponseFailed(
            event_id=f"{state.response_id}:{state.attempt}:stalled",
            response_id=state.response_id,
            attempt=state.attempt,
            code=FailureCode.STALLED,
            message=_stall_message(stall_after_s),
        )
        with logs.bound(response_id=state.response_id):
            log.warning("answer stalled in %s since %s: failing it", state.status, state.updated_at.isoformat())
        await bus.publish_event(js, contracts.subject_for_events(state.response_id), event)
    return len(stuck)


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless ``stop`` is set first; True when it is time to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def run_sweeper(
    store: ResponseStore,
    js: JetStreamContext,
    *,
    stall_after_s: float,
    every_s: float,
    caught_up: Callable[[], bool],
    stop: asyncio.Event,
) -> None:
    """Refresh the in-flight gauge every few seconds; sweep every ``every_s`` once trustworthy.

    Only sweep when the consumer has drained its backlog and this process has run for a whole stall
    period: before that, "no change" may only mean "not folded yet".
    """
    started = time.monotonic()
    last_sweep = 0.0
    tick = min(every_s, 5.0)
    while not await _sleep(stop, tick):
        try:
            metrics.IN_FLIGHT.set(await store.in_flight_count())
            now = time.monotonic()
            if now - last_sweep >= every_s and now - started >= stall_after_s and caught_up():
                last_sweep = now
                swept = await sweep_once(store, js, stall_after_s=stall_after_s)
                if swept:
                    log.info("swept %d stalled answers", swept)
        except Exception as exc:
            log.warning("sweeper round failed: %s", exc)


async def run_retention(store: ResponseStore, *, max_age_s: float, every_s: float, stop: asyncio.Event) -> None:
    """Delete answers older than ``max_age_s``: shortly after start, then every ``every_s``."""
    delay = min(10.0, every_s)
    while not await _sleep(stop, delay):
        delay = every_s
        try:
            deleted = await store.delete_older_than(max_age_s)
            if deleted:
                log.info("retention deleted %d answers older than %.1f days", deleted, max_age_s / 86400)
        except Exception as exc:
            log.warning("retention clean-up failed: %s", exc)
