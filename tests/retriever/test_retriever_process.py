"""``python -m services.retriever`` as its own process: ready, answers, stops on SIGTERM, refuses a wrong collection."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from retriever_support import ask, consumer_settled, last_on

from services.core import contracts
from services.core.contracts import ContextRetrieved
from services.devstack.nats import NatsServer
from services.devstack.ports import free_port
from services.retriever.qdrant_store import QdrantStore, open_qdrant_client


def _env(nats_server: NatsServer, qdrant: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "NATS_URL": nats_server.url,
        "RELAY_STREAM_MAX_AGE_S": "3600",
        "RETRIEVER_PORT": str(port),
        "RETRIEVER_QDRANT_PATH": str(qdrant),
        "RETRIEVER_EMBEDDING_CACHE": "",
        "RETRIEVER_SEED_DIR": "",
        "LOG_JSON": "false",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _start(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.retriever"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "exited"
            try:
                if (await http.get(url + "/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the retriever process was not ready in time")


async def test_the_retriever_process_answers_and_stops_cleanly_on_sigterm(
    nats_server: NatsServer, js: JetStreamContext, tmp_path: Path, spawn: list
) -> None:
    port = free_port()
    proc = _start(_env(nats_server, tmp_path / "qdrant", port), tmp_path)
    spawn.append(proc)
    url = f"http://127.0.0.1:{port}"
    await _wait_ready(url, proc)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        r = await http.post("/api/documents", json={"documents": [{"source": "a.txt", "text": "The sky is blue."}]})
        assert r.status_code == 200, r.text
    request = await ask(js, "what colour is the sky?")
    context = await last_on(js, contracts.subject_for_context(request.response_id))
    assert isinstance(context, ContextRetrieved) and context.passages[0].source == "a.txt"
    await consumer_settled(js)

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    # the Qdrant folder was released: it opens again
    reopened = open_qdrant_client(url=None, api_key=None, path=str(tmp_path / "qdrant"))
    await reopened.close()


async def test_a_collection_of_another_size_stops_the_start_with_what_to_do(
    nats_server: NatsServer, tmp_path: Path, spawn: list
) -> None:
    other = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=str(tmp_path / "qdrant")),
        collection="relay_documents",
        dimension=1536,
        embedder_name="openai:text-embedding-3-small",
    )
    await other.ensure_collection()
    await other.close()

    proc = _start(_env(nats_server, tmp_path / "qdrant", free_port()), tmp_path)
    spawn.append(proc)
    code = await asyncio.to_thread(proc.wait, 60)
    output = proc.stdout.read() if proc.stdout else ""
    assert code == 1, output
    assert "1536-dimensional" in output and "384-dimensional" in output
    assert "RETRIEVER_COLLECTION" in output and "Traceback" not in output


async def test_invalid_settings_stop_the_start_with_a_message(
    nats_server: NatsServer, tmp_path: Path, spawn: list
) -> None:
    env = {**_env(nats_server, tmp_path / "qdrant", free_port()), "RETRIEVER_EMBEDDER": "openai"}
    proc = _start(env, tmp_path)
    spawn.append(proc)
    assert await asyncio.to_thread(proc.wait, 30) == 2
    assert "RETRIEVER_EMBEDDINGS_DIMENSION" in (proc.stdout.read() if proc.stdout else "")
