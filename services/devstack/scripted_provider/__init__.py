"""A scriptable OpenAI-compatible HTTP server: the one fake of the project, at the OpenAI boundary.

A real HTTP/1.1 server on loopback (asyncio, in a background thread) speaking
``POST /v1/chat/completions`` (SSE stream or one JSON body), ``GET /v1/models`` and
``POST /v1/embeddings``. Each call takes the next queued :class:`Script` (the last one sticks;
with none queued the deterministic echo answer is used) and is recorded as a :class:`Call`::

    with ScriptedProvider() as p:
        p.script(Script.http_error(429), Script(tokens=["Hel", "lo"], token_interval_s=0.05))
        AsyncOpenAI(base_url=p.base_url, api_key="x")  # ... talk to it
        p.calls[-1].messages, p.calls[-1].disconnected

``python -m services.devstack.scripted_provider --port N`` runs it alone (echo answers, tokens/s
configurable) for manual runs and load benchmarks.
"""

from services.devstack.scripted_provider.script import (
    Call,
    Script,
    echo_script,
    finish_chunk,
    no_choices_chunk,
    text_chunk,
    usage_chunk,
)
from services.devstack.scripted_provider.server import ScriptedProvider

__all__ = [
    "Script",
    "Call",
    "ScriptedProvider",
    "text_chunk",
    "finish_chunk",
    "usage_chunk",
    "no_choices_chunk",
    "echo_script",
]
