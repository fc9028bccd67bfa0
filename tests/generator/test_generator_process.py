"""``python -m services.generator`` on its own: configured by the environment, probes, SIGTERM drains it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from generator_support import Recorder, submit, text_of
from nats.js import JetStreamContext

from services.core.contracts import ResponseCompleted
from services.devstack.nats import NatsServer
from services.devstack.ports import free_port
from services.devstack.scripted_provider import Script, ScriptedProvider


@pytest.fixture
def generator_process(
    nats_server: NatsServer, provider: ScriptedProvider, tmp_path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The generator as a child process, configured only by environment variables."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GENERATOR_", "OPENAI_"))},
        "NATS_URL": nats_server.url,
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_MODEL": "scripted",
        "GENERATOR_PORT": str(port),
        "GENERATOR_WORKER_ID": "proc",
        "GENERATOR_HISTORY_ATTEMPTS": "1",
        "RELAY_STREAM_MAX_AGE_S": "3600",
        "LOG_JSON": "true",
    }
    log = open(tmp_path / "generator.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.generator"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the generator exited"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the generator never became ready")


async def test_generator_process_answers_and_finishes_its_answer_on_sigterm(
    js: JetStreamContext,
    provider: ScriptedProvider,
    recorder: Recorder,
    generator_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = generator_process
    tokens = [f"part{i} " for i in range(30)]
    provider.script(Script(tokens=tokens, token_interval_s=0.05))
    await wait_ready(port, proc)
    ev = await submit(js)
    await recorder.until(lambda: bool(text_of(recorder.of(ev.response_id))), timeout=30)
    async with httpx.AsyncClient(timeout=5) as http:
        assert "relay_answers_in_flight 1.0" in (await http.get(f"http://127.0.0.1:{port}/metrics")).text

    proc.send_signal(signal.SIGTERM)  # mid-answer: the drain lets it finish
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0
    end = await recorder.until_terminal(ev.response_id, timeout=5)
    assert isinstance(end, ResponseCompleted) and end.attempt == 1
    assert text_of(recorder.of(ev.response_id)) == "".join(tokens)
