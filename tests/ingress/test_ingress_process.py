"""``python -m services.ingress`` as its own process: configured by environment, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile

import httpx
from ingress_support import stored_events
from nats.js import JetStreamContext

from services.devstack.nats import NatsServer
from services.devstack.ports import free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGRESS_", "OPENAI_", "RELAY_"))}
    return {**env, "LOG_JSON": "false", **extra}


async def _run(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ingress",
        env=env,
        cwd=tempfile.gettempdir(),  # away from any .env file of the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_ingress_process_serves_from_env_and_exits_zero_on_sigterm(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    port = free_port()
    proc = await _run(_env(NATS_URL=nats_server.url, INGRESS_PORT=str(port), INGRESS_MAX_MESSAGE_CHARS="5"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(300):  # bounded: 30 s
                try:
                    if (await http.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the ingress process never became ready")
            too_long = await http.post("/api/chat", json={"message": "longer than five"})
            ok = await http.post("/api/chat", json={"message": "short"})
        assert too_long.status_code == 422 and "the limit is 5 characters" in too_long.text
        assert ok.status_code == 202
        assert len(await stored_events(js)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0


async def test_ingress_process_exits_with_a_clear_message_when_nats_is_unreachable() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    proc = await _run(
        _env(
            NATS_URL=url,
            INGRESS_PORT=str(free_port()),
            INGRESS_NATS_CONNECT_ATTEMPTS="2",
            INGRESS_NATS_CONNECT_TIMEOUT_S="0.5",
        )
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 1
    assert f"cannot reach NATS at {url} after 2 attempts" in err.decode()


async def test_ingress_process_refuses_the_placeholder_secret_in_production() -> None:
    proc = await _run(_env(RELAY_ENV="production"))
    _, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 2
    assert "INGRESS_ID_SECRET is still the placeholder" in err.decode()
