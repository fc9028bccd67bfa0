"""Ends answers whose work JetStream gave up on: every delivery of the request died unacknowledged.

JetStream publishes a MAX_DELIVERIES advisory when a consumer's message reached ``max_deliver``
without an ack (each worker that took it crashed or was killed). Nobody is left to say what
happened, so the status service publishes ``ResponseFailed(delivery_exhausted)`` right away instead
of waiting for the stall sweeper.
"""

from __future__ import annotations

import json
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from services.core import bus, contracts, logs
from services.core.contracts import FailureCode

__all__ = ["ADVISORY_SUBJECT", "watch_exhausted_deliveries", "failure_for"]

log = logging.getLogger(__name__)

ADVISORY_SUBJECT = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{contracts.STREAM}.*"
_WORKERS = {"retriever": "finding passages", "generator": "generating the answer"}


def failure_for(event: contracts.Event, consumer: str, deliveries: int) -> contracts.ResponseFailed | None:
    """The failure to publish for a request a worker consumer gave up on (None: not ours to end)."""
    if consumer not in _WORKERS:
        return None
    attempt = deliveries if consumer == "generator" else 0
    return contracts.ResponseFailed(
        event_id=f"{event.response_id}:{attempt}:exhausted",
        response_id=event.response_id,
        attempt=attempt,
        code=FailureCode.DELIVERY_EXHAUSTED,
        message=(
            f"The answer was abandoned: {deliveries} tries at {_WORKERS[consumer]} were each interrupted "
            "(the worker stopped or crashed). Please ask again."
        ),
    )


async def watch_exhausted_deliveries(nc: NATS, js: JetStreamContext) -> Subscription:
    async def on_advisory(msg: Msg) -> None:
        try:
            advisory = json.loads(msg.data)
            consumer, seq = str(advisory["consumer"]), int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", 0))
            raw = await js.get_msg(contracts.STREAM, seq)
            event = contracts.decode_event(raw.data or b"")
            failed = failure_for(event, consumer, deliveries)
            if failed is None:
                return
            with logs.bound(response_id=event.response_id):
                log.warning("%s gave up after %d deliveries; ending the answer", consumer, deliveries)
                await bus.publish_event(js, contracts.subject_for_events(event.response_id), failed)
        except Exception as exc:  # the stall sweeper still ends it later
            log.warning("could not act on a max-deliveries advisory: %s", exc)

    return await nc.subscribe(ADVISORY_SUBJECT, queue="status", cb=on_advisory)
