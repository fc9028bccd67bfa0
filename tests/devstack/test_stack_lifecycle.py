"""The stack starts its real parts, wires the services to them, restarts one part, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from services.core import bus
from services.devstack.ports import free_port, port_in_use
from services.devstack.settings import PROJECT_ROOT
from services.devstack.stack import Stack
from services.devstack.supervisor import PartFailedError

STANDIN = Path(__file__).with_name("standin_service.py")


def _standin(name: str, *flags: str) -> list[str]:
    return [sys.executable, str(STANDIN), name, *flags]


async def test_stack_starts_nats_with_jetstream_and_postgres_then_stops_them_without_stray_processes(tmp_path, strays):
    stack = Stack.isolated(tmp_path, services=(), model=False)
    stack.start()
    try:
        nc = await bus.connect(stack.urls["nats"], name="test")
        account = await nc.jetstream().account_info()
        await nc.close()
        with psycopg.connect(stack.urls["database"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("relay",)
        assert account.limits is not None
        assert 'sync_interval: "1s"' in (tmp_path / "nats" / "nats.conf").read_text()
        assert (tmp_path / "pg" / "PG_VERSION").exists()
        assert strays(tmp_path), "the parts run with their data in the state folder"
    finally:
        stack.stop()

    assert not strays(tmp_path)
    assert not port_in_use(stack.settings.nats_port) and not port_in_use(stack.settings.pg_port)
    assert not (tmp_path / "stack.pid").exists()


def test_stack_wires_each_service_to_the_parts_and_restarts_one_alone(tmp_path, strays):
    provider = "http://127.0.0.1:9/v1"  # never called: stand-ins only report what they were given
    names = ("status", "retriever", "generator", "ingress")
    stack = Stack.isolated(
        tmp_path, services=names, env={"OPENAI_BASE_URL": provider}, commands={n: _standin(n) for n in names}
    )
    with stack:
        envs = {n: httpx.get(stack.urls[n] + "/env").json() for n in names}
        assert {e["NATS_URL"] for e in envs.values()} == {stack.urls["nats"]}
        assert envs["status"]["DATABASE_URL"] == stack.urls["database"]
        assert envs["generator"]["OPENAI_BASE_URL"] == provider
        assert Path(envs["retriever"]["RETRIEVER_SEED_DIR"]).is_dir()
        assert envs["retriever"]["QDRANT_PATH"] == str(tmp_path / "qdrant")
        assert envs["ingress"]["INGRESS_PORT"] == str(stack.settings.ingress_port)
        assert stack.urls["model"] == provider, "a provider in env means no offline model"
        assert stack.model is None

        stack.stop_service("status")
        assert not port_in_use(stack.settings.status_port)
        assert httpx.get(stack.urls["ingress"] + "/ready").status_code == 200

        stack.start_service("status")
        assert httpx.get(stack.urls["status"] + "/ready").status_code == 200

        stack.stop_service("generator", kill=True)
        stack.start_service("generator")
        assert httpx.get(stack.urls["generator"] + "/ready").status_code == 200

    assert not strays(tmp_path) and not strays(STANDIN)


def test_stack_names_the_part_that_never_gets_ready_quotes_its_log_and_stops_the_rest(tmp_path, strays):
    stack = Stack.isolated(
        tmp_path,
        services=("status", "ingress"),
        model=False,
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
        commands={"status": _standin("status"), "ingress": _standin("ingress", "--never-ready")},
        ready_timeout_s=3,
    )

    with pytest.raises(PartFailedError) as err:
        stack.start()

    message = str(err.value)
    assert "ingress was not ready" in message and "the stand-in is never ready" in message
    assert "ingress stand-in listening" in message, "the failure quotes the part's last log lines"
    assert not strays(tmp_path) and not strays(STANDIN)


def test_relay_up_stops_everything_on_sigint(tmp_path, strays):
    ports = {var: str(free_port()) for var in ("RELAY_NATS_PORT", "RELAY_PG_PORT", "RELAY_MODEL_PORT")}
    env = {**os.environ, **ports, "RELAY_STATE_DIR": str(tmp_path), "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    for var in ("NATS_URL", "DATABASE_URL"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.devstack.stack", "--services", "none", "--no-ui"],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        seen: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("is up" in line for line in seen):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
        assert any("is up" in line for line in seen), "".join(seen)
        assert strays(tmp_path)

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, rest
    assert rest.index("nats stopped") < rest.index("postgres stopped"), rest
    assert not strays(tmp_path)
