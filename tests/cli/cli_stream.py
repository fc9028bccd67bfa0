"""Read what the CLI's requests left in the RELAY stream."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.core import contracts
from services.core.contracts import Event


async def stored_events(js: JetStreamContext, prefix: str = "") -> list[Event]:
    info = await js.stream_info(contracts.STREAM)
    out: list[Event] = []
    for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        try:
            msg = await js.get_msg(contracts.STREAM, seq=seq)
        except NotFoundError:
            continue
        if (msg.subject or "").startswith(prefix) and msg.data:
            out.append(contracts.decode_event(msg.data))
    return out


async def stored_requests(js: JetStreamContext) -> list[contracts.ChatRequested]:
    return [e for e in await stored_events(js, contracts.REQUESTS + ".") if isinstance(e, contracts.ChatRequested)]
